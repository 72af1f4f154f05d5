"""Where the README and notebooks load backbones from: ``from loraedit_nb.models import load_backbone``.

The code lives in :mod:`loraedit_nb.backbones` (one module per family, a shared base, the loader); this module
re-exports its public names so that imports written against earlier versions keep working.

* ``"toy"`` (default) — the embedded model pretrained by this project on the toy world (``data/toy_backbone``):
  a ``WanTransformer3DModel`` at tiny width, a lossless ``PatchifyVAE`` with Wan's latent geometry, and a tiny UMT5
  text encoder over a word-level toy vocabulary. Runs on a CPU in seconds.
* ``"tiny-random"`` / ``"tiny-hunyuan"`` — the diffusers classes of Wan2.1-I2V / HunyuanVideo-I2V at tiny random
  sizes, built from config, for tests.
* ``"Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"`` / ``-720P-``, ``"hunyuan-i2v"`` — the real models from the Hub (GPU).
* a local folder written by ``Backbone.save_pretrained`` (or any diffusers Wan I2V folder).
"""

from .backbones import *  # noqa: F403 - this module is the public alias of the package
from .backbones import __all__  # noqa: F401
from .backbones.base import REAL_BACKBONE, _no_weight_bars, _word_tokenizer  # noqa: F401 - used by scripts
from .backbones.toy import TINY_DEFAULTS  # noqa: F401
from .backbones.wan import wan_defaults_for  # noqa: F401
