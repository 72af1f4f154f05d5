"""One adapter object per backbone family: everything that differs between Wan2.1-I2V and HunyuanVideo-I2V.

The package's training and inference functions are backbone-agnostic: they ask ``backbone.adapter`` for

* ``condition(vae, cond_pixels, keep)`` — LoRA-Edit's condition (masked video + mask) packed the way *this*
  transformer reads it; the transformer's input is always ``cat([noisy latent, condition], dim=1)``;
* ``keep_fraction(condition)`` — the latent-rate keep mask inside that condition (for the dual-role loss weights);
* ``encode_context(backbone, prompt, image)`` — the keyword arguments the transformer takes besides the latents
  (text embeddings, and whatever else the family needs: CLIP image tokens for Wan, an attention mask and pooled
  CLIP text for Hunyuan, whose text encoder also looks at the conditioning image);
* ``lora_targets`` — which Linear layers get a LoRA;
* ``pipeline_class`` / ``generate(...)`` — inference through the family's diffusers pipeline.

:class:`WanAdapter` is here; the Hunyuan one lives in :mod:`loraedit_nb.hunyuan`. ``adapter_for(transformer)``
picks by the transformer's class, so a backbone loaded from any folder gets the right one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


class Adapter:
    """Base class: the interface (see the module docstring). Subclasses fill every method."""

    family: str = "?"
    lora_targets: tuple[str, ...] = ()
    pipeline_class: type = object
    default_negative_prompt: str = ""
    supports_keyframes: bool = True  # can a single later frame be given (keyframes, first-last-frame mode)?

    def mask_channels(self, vae) -> int:
        raise NotImplementedError

    def condition(self, vae, cond_pixels: torch.Tensor, keep: torch.Tensor, *, reduce: str = "nearest"
                  ) -> torch.Tensor:
        raise NotImplementedError

    def mask_part(self, condition: torch.Tensor) -> torch.Tensor:
        """The mask channels inside a condition, ``(B, mask_channels, L, h, w)``, 1 = keep."""
        raise NotImplementedError

    def keep_fraction(self, condition: torch.Tensor) -> torch.Tensor:
        """The keep share of each latent voxel ``(B, 1, L, h, w)`` (mean over the mask channels)."""
        return self.mask_part(condition).float().mean(1, keepdim=True)

    def encode_context(self, backbone, prompt: str, image: np.ndarray | None, memo: dict | None = None
                       ) -> dict[str, torch.Tensor | None]:
        raise NotImplementedError

    def pipeline(self, backbone, cls: type | None = None):
        raise NotImplementedError

    def context_modules(self, backbone) -> list[torch.nn.Module]:
        """The encoders ``encode_context`` runs once the prompts are cached (brought to the GPU for that pass)."""
        return [m for m in (backbone.text_encoder, backbone.text_encoder_2, backbone.image_encoder) if m is not None]

    def generate(self, backbone, condition: torch.Tensor, first_frame: np.ndarray, *, prompt: str,
                 negative_prompt: str | None, num_frames: int, height: int, width: int, steps: int,
                 guidance: float, flow_shift: float | None, generator: torch.Generator,
                 callback_on_step_end: Callable | None = None, progress: bool = True) -> np.ndarray:
        raise NotImplementedError


def collate_context(contexts: Sequence[dict[str, torch.Tensor | None]], device=None) -> dict:
    """Stack per-sample contexts (each with batch 1) along the batch; ``None`` entries stay ``None``."""
    out = {}
    for k in contexts[0]:
        vals = [c[k] for c in contexts]
        out[k] = None if vals[0] is None else torch.cat(vals).to(device)
    return out


def _pil(frame: np.ndarray):
    from PIL import Image

    return Image.fromarray((np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8))


class WanAdapter(Adapter):
    """Wan2.1-I2V (and the toy backbone, which has Wan's architecture).

    Condition ``(B, 4 + z, L, h, w)`` = ``cat([packed mask (4 channels: one per pixel frame of the latent frame),
    condition latent])`` — :func:`loraedit_nb.conditioning.condition_from_tensors`. Context: UMT5 text
    (``encoder_hidden_states``) and, on the 14B model, CLIP image tokens (``encoder_hidden_states_image``).
    """

    family = "wan"
    default_negative_prompt = ""  # the Hub model's is set in models.WAN_NEGATIVE_PROMPT (see negative_prompt())

    @property
    def lora_targets(self) -> tuple[str, ...]:  # type: ignore[override]
        from .lora import DEFAULT_TARGETS

        return DEFAULT_TARGETS

    @property
    def pipeline_class(self):  # type: ignore[override]
        from diffusers import WanImageToVideoPipeline

        return WanImageToVideoPipeline

    def mask_channels(self, vae) -> int:
        from .conditioning import LatentGeometry

        return LatentGeometry.of(vae).temporal

    def condition(self, vae, cond_pixels, keep, *, reduce="nearest"):
        from .conditioning import condition_from_tensors

        return condition_from_tensors(vae, cond_pixels, keep, reduce=reduce)

    def mask_part(self, condition):
        # the 4 mask channels lead (Wan's temporal factor is 4 for every Wan-family VAE, toy included)
        return condition[:, :4]

    def context_modules(self, backbone):
        return [backbone.image_encoder] if backbone.image_encoder is not None else []  # text: Backbone.prompt_cache

    def encode_context(self, backbone, prompt, image, memo=None):
        memo = {} if memo is None else memo
        if prompt not in memo:
            memo[prompt] = backbone.encode_prompt(prompt).float()
        img = backbone.encode_image(image).float() if backbone.has_image_encoder else None
        return {"encoder_hidden_states": memo[prompt], "encoder_hidden_states_image": img}

    def pipeline(self, backbone, cls=None):
        cls = cls or self.pipeline_class
        return cls(tokenizer=backbone.tokenizer, text_encoder=backbone.text_encoder, vae=backbone.vae,
                   scheduler=backbone.scheduler, image_processor=backbone.image_processor,
                   image_encoder=backbone.image_encoder, transformer=backbone.transformer)

    def generate(self, backbone, condition, first_frame, *, prompt, negative_prompt, num_frames, height, width,
                 steps, guidance, flow_shift, generator, callback_on_step_end=None, progress=True):
        from .inference import MaskedWanI2VPipeline, with_flow_shift
        from .memory import evicted, onload

        pipe = self.pipeline(backbone, MaskedWanI2VPipeline)
        pipe._staged_device = backbone.device  # compute there; encoders come one at a time (memory.onload)
        pipe._evict_transformer = backbone.evict_for_encoders
        pipe.scheduler = with_flow_shift(backbone.scheduler, flow_shift)
        pipe.set_progress_bar_config(disable=not progress, leave=False)
        # prompts through the backbone's cache: the text encoder runs (or is reloaded) only for a new prompt
        prompts = [prompt] + ([negative_prompt or ""] if guidance > 1 else [])
        new = backbone.evict_for_encoders and any(p not in backbone.prompt_cache for p in prompts)
        with evicted(backbone.transformer, backbone.device) if new else contextlib.nullcontext():
            emb = backbone.encode_prompt(prompt)
            neg = backbone.encode_prompt(negative_prompt or "") if guidance > 1 else None
        with onload(backbone.vae, backbone.device):
            out = pipe(image=_pil(first_frame), prompt_embeds=emb, negative_prompt_embeds=neg, condition=condition,
                       height=height, width=width, num_frames=num_frames, num_inference_steps=steps,
                       guidance_scale=guidance, max_sequence_length=backbone.max_sequence_length, output_type="np",
                       generator=generator, callback_on_step_end=callback_on_step_end).frames
        return np.asarray(out[0], dtype=np.float32)


WAN = WanAdapter()


def adapter_for(transformer: Any) -> Adapter:
    """The adapter for a transformer: Hunyuan's for ``HunyuanVideoTransformer3DModel``, Wan's otherwise."""
    from diffusers import HunyuanVideoTransformer3DModel

    if isinstance(getattr(transformer, "module", transformer), HunyuanVideoTransformer3DModel):
        from .hunyuan import HunyuanI2VAdapter

        return HunyuanI2VAdapter.for_transformer(transformer)
    return WAN
