"""Backbone families: one module per family, a base they share, a loader above them.

========================  ======================================================================================
module                    holds
========================  ======================================================================================
:mod:`.latents`           the VAE's latent geometry, pixel -> latent mask packing, encode/decode of latents
:mod:`.base`              the ``Adapter`` interface, ``Backbone``, the family registry (``adapter_for``), helpers
:mod:`.wan`               Wan2.1-I2V: condition packing (4 mask channels), ``MaskedWanI2VPipeline``, loading
:mod:`.hunyuan`           HunyuanVideo-I2V (33-channel latent_concat): 1-channel mask, its masked pipeline, loading
:mod:`.toy`               the toy backbone's ``PatchifyVAE`` and x0-predicting transformer; the tiny random stacks
:mod:`.loader`            ``load_backbone``: names, folders and Hub ids -> the right family
========================  ======================================================================================

Imports only go down that table's dependency order (latents <- base <- wan, hunyuan <- toy <- loader); the
package's concept modules (``conditioning``, ``regimes``, ``loss``, ``training``, ``inference``, ``evaluation``)
import :mod:`.base` and :mod:`.latents`, never a family. Importing this package registers every family.
"""

from .base import (
    DATA_DIR,
    META_FILE,
    TINY_BACKBONES,
    TOY_DIR,
    Adapter,
    Backbone,
    ClipSizeWarning,
    adapter_for,
    clip_image_processor_class,
    collate_context,
    place,
    register_family,
    resolve_device,
)
from .hunyuan import HUNYUAN_I2V, HunyuanI2VAdapter, MaskedHunyuanI2VPipeline
from .loader import load_backbone
from .toy import PatchifyVAE, XPredWanTransformer3DModel, tiny_random_backbone, tiny_random_hunyuan
from .wan import (
    WAN,
    WAN22_A14B,
    WAN22_TI2V,
    WAN_480P,
    WAN_720P,
    WAN_DEFAULTS,
    WAN_NEGATIVE_PROMPT,
    WAN_TARGETS,
    MaskedWanI2VPipeline,
    WanAdapter,
    condition_from_tensors,
)

__all__ = [
    "DATA_DIR", "META_FILE", "TINY_BACKBONES", "TOY_DIR", "Adapter", "Backbone", "ClipSizeWarning", "adapter_for",
    "clip_image_processor_class", "collate_context", "place", "register_family", "resolve_device", "HUNYUAN_I2V",
    "HunyuanI2VAdapter", "MaskedHunyuanI2VPipeline", "load_backbone", "PatchifyVAE", "XPredWanTransformer3DModel",
    "tiny_random_backbone", "tiny_random_hunyuan", "WAN", "WAN_480P", "WAN_720P", "WAN22_A14B", "WAN22_TI2V",
    "WAN_DEFAULTS", "WAN_NEGATIVE_PROMPT", "WAN_TARGETS", "MaskedWanI2VPipeline", "WanAdapter",
    "condition_from_tensors",
]
