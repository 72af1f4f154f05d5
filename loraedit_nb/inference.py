"""Mask-aware I2V inference built on diffusers' ``WanImageToVideoPipeline``.

:class:`MaskedWanI2VPipeline` is the stock pipeline with one change: ``prepare_latents`` returns LoRA-Edit's
condition (masked source video + spatiotemporal mask, :mod:`loraedit_nb.conditioning`) instead of "first frame +
zeros". Scheduler, classifier-free guidance, prompt encoding, callbacks and offloading are diffusers' own.
"""

from __future__ import annotations

import torch
from diffusers import WanImageToVideoPipeline
from diffusers.utils.torch_utils import randn_tensor


class MaskedWanI2VPipeline(WanImageToVideoPipeline):
    """``WanImageToVideoPipeline`` that takes a prepared condition.

    Call with ``condition=`` a ``(B or 1, 4 + z, T_lat, h, w)`` tensor from
    :func:`loraedit_nb.conditioning.build_condition` (or ``condition_from_tensors`` for batches); everything else
    is the stock ``__call__``. Without ``condition`` it behaves exactly like the stock pipeline.
    """

    _lora_condition: torch.Tensor | None = None

    def __call__(self, *args, condition: torch.Tensor | None = None, **kwargs):
        self._lora_condition = condition
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self._lora_condition = None

    def prepare_latents(self, image, batch_size, num_channels_latents=16, height=480, width=832, num_frames=81,
                        dtype=None, device=None, generator=None, latents=None, last_image=None):
        cond = self._lora_condition
        if cond is None:
            return super().prepare_latents(image, batch_size, num_channels_latents, height, width, num_frames,
                                           dtype, device, generator, latents, last_image)
        shape = (batch_size, num_channels_latents, (num_frames - 1) // self.vae_scale_factor_temporal + 1,
                 height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial)
        if tuple(cond.shape[2:]) != shape[2:] or cond.shape[1] != num_channels_latents + self.vae_scale_factor_temporal:
            raise ValueError(
                f"condition shape {tuple(cond.shape)} does not fit a {num_frames}-frame {height}x{width} video "
                f"(expected (B, {num_channels_latents + self.vae_scale_factor_temporal}, {shape[2]}, {shape[3]}, "
                f"{shape[4]})): build it from the same clip you pass as height/width/num_frames")
        if cond.shape[0] not in (1, batch_size):
            raise ValueError(f"condition batch {cond.shape[0]} must be 1 or {batch_size}")
        # same call as the stock pipeline so that a given generator yields the same noise
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype) if latents is None \
            else latents.to(device=device, dtype=dtype)
        cond = cond.to(device=device, dtype=dtype)
        if cond.shape[0] != batch_size:
            cond = cond.expand(batch_size, -1, -1, -1, -1)
        return latents, cond


def with_flow_shift(scheduler, flow_shift: float | None):
    """A copy of ``scheduler`` with another flow shift (UniPC: ``flow_shift``; FlowMatchEuler: ``shift``)."""
    if flow_shift is None:
        return scheduler
    key = "flow_shift" if "flow_shift" in scheduler.config else "shift"
    return type(scheduler).from_config(scheduler.config, **{key: flow_shift})


def _pil(frame):
    import numpy as np
    from PIL import Image

    return Image.fromarray((np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8))


@torch.no_grad()
def generate(backbone, video, mask, first_frame=None, *, prompt: str = "", negative_prompt: str | None = None,
             keyframes=None, steps: int | None = None, guidance: float | None = None,
             flow_shift: float | None = None, seed: int = 0, callback_on_step_end=None,
             progress: bool = True):
    """Run the (possibly LoRA-adapted) I2V model on LoRA-Edit's condition; returns float ``(T, H, W, 3)`` in [0, 1].

    ``video``/``mask``/``first_frame``/``keyframes`` as in :func:`loraedit_nb.conditioning.build_condition`
    (``first_frame`` = the edited first frame at inference). Sampler settings default to ``backbone.defaults``.
    """
    import numpy as np

    from .conditioning import build_condition

    d = backbone.defaults
    steps = steps or d.get("steps", 30)
    guidance = d.get("guidance", 5.0) if guidance is None else guidance
    flow_shift = d.get("flow_shift") if flow_shift is None else flow_shift
    first = video[0] if first_frame is None else first_frame
    cond = build_condition(backbone.vae, video, mask, first, keyframes=keyframes)
    pipe = backbone.pipeline(MaskedWanI2VPipeline)
    pipe.scheduler = with_flow_shift(backbone.scheduler, flow_shift)
    pipe.set_progress_bar_config(disable=not progress, leave=False)
    T, H, W = video.shape[:3]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe(image=_pil(first), prompt=prompt, negative_prompt=negative_prompt, condition=cond, height=H,
               width=W, num_frames=T, num_inference_steps=steps, guidance_scale=guidance,
               max_sequence_length=backbone.max_sequence_length, output_type="np", generator=gen,
               callback_on_step_end=callback_on_step_end).frames
    return np.asarray(out[0], dtype=np.float32)
