"""The Wan I2V condition with a spatiotemporal mask — LoRA-Edit's only change to the model's input.

Wan2.1-I2V's transformer reads 36 channels per latent voxel::

    [ noisy latent (z) | mask (4) | condition latent (z) ]      z = vae.config.z_dim (16 for Wan)

diffusers' ``WanImageToVideoPipeline`` builds the condition from *the first frame followed by zero (grey) frames*
and a mask that is 1 on the first frame only. LoRA-Edit replaces both:

* **condition video** — the source video with the edit region filled with neutral grey (0 in [-1, 1]) on every
  frame after the first; frame 0 is kept whole (the original frame in training, the *edited* frame at inference);
* **mask** — in Wan's sense (1 = keep/given, 0 = generate): 1 outside the edit region and on the whole first frame,
  0 inside the region.

Pixel-rate masks are packed to latent rate the Wan way: resize each frame's mask to the latent H x W (nearest),
repeat frame 0 four times, then put every group of 4 frames into the 4 mask channels ->
``(B, 4, 1 + (T - 1) / 4, H / s, W / s)``. The geometry (``s``, the temporal factor, ``z``) is read from the VAE's
config, so the same code runs the real Wan VAE and the toy backbone's VAE.

User masks are True = edit (see :mod:`loraedit_nb.masks`); :func:`keep_mask` is the one place that flips them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .masks import check_mask
from .memory import module_device
from .video import check_frame_count, check_image, check_size, check_video

GREY = 0.5  # neutral grey in [0, 1] == 0.0 in the model's [-1, 1]: what Wan's zero frames and LoRA-Edit's fill are


# ----------------------------------------------------------------------------------------------- pixel space
def keep_mask(edit_mask: np.ndarray, *, keep_first_frame: bool = True,
              keyframes: Mapping[int, object] | None = None) -> np.ndarray:
    """User mask (True = edit) -> Wan-sense pixel mask, float32 ``(T, H, W)``, **1 = keep**, 0 = generate.

    Frame 0 is kept whole (``keep_first_frame``): it carries the (edited) first frame. Frames listed in
    ``keyframes`` (e.g. user-edited later frames, or the last frame in first-last-frame mode) are kept whole too.
    """
    keep = (~check_mask(edit_mask)).astype(np.float32)
    if keep_first_frame:
        keep[0] = 1.0
    for t in keyframes or {}:
        keep[t] = 1.0
    return keep


def condition_video(video: np.ndarray, edit_mask: np.ndarray, first_frame: np.ndarray | None = None, *,
                    keyframes: Mapping[int, np.ndarray] | None = None) -> np.ndarray:
    """The pseudo-video the model is conditioned on, ``(T, H, W, 3)`` in [0, 1].

    ``video``: the source ``(T, H, W, 3)``. ``edit_mask``: bool ``(T, H, W)``, True = edit. ``first_frame``:
    ``(H, W, 3)`` placed whole at frame 0 (default: the source's frame 0; at inference: the edited frame).
    ``keyframes``: ``{t: (H, W, 3)}`` frames placed whole at index t (edited later frames / last frame).
    Everything the mask marks for editing on other frames becomes grey (0.5).
    """
    video = check_video(video)
    edit_mask = check_mask(edit_mask, video)
    cond = np.where(edit_mask[..., None], np.float32(GREY), video).astype(np.float32)
    cond[0] = video[0] if first_frame is None else _check_frame(first_frame, video, "first_frame")
    for t, frame in (keyframes or {}).items():
        if not -len(video) <= t < len(video):
            raise ValueError(f"keyframe index {t} is out of range for a {len(video)}-frame video (0..{len(video)-1})")
        cond[t] = _check_frame(frame, video, f"keyframe {t}")
    return cond


def _check_frame(frame: np.ndarray, video: np.ndarray, name: str) -> np.ndarray:
    frame = check_image(frame, name)  # one (H, W, 3) image; RGBA with transparency is refused with the fix
    if frame.shape != video.shape[1:]:
        raise ValueError(
            f"{name} has shape {frame.shape} but the video's frames are {video.shape[1:]}. Resize/crop it with the "
            f"same transform as the video: resize_and_crop(frame, {video.shape[1]}, {video.shape[2]})."
        )
    return frame


# ----------------------------------------------------------------------------------------------- latent geometry
@dataclass(frozen=True)
class LatentGeometry:
    """How a VAE maps pixels to latents: ``temporal`` (4 for Wan), ``spatial`` (8 for Wan), ``z_dim`` channels."""

    temporal: int
    spatial: int
    z_dim: int

    @classmethod
    def of(cls, vae) -> LatentGeometry:
        """Read from the VAE config: Wan's names (``scale_factor_*``, ``z_dim``) or HunyuanVideo's
        (``*_compression_ratio``, ``latent_channels``)."""
        c = vae.config
        t = c.get("scale_factor_temporal", c.get("temporal_compression_ratio", 4))
        s = c.get("scale_factor_spatial", c.get("spatial_compression_ratio", 8))
        return cls(int(t), int(s), int(c.get("z_dim", c.get("latent_channels"))))

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        return (num_frames - 1) // self.temporal + 1, height // self.spatial, width // self.spatial


def pack_mask(keep: torch.Tensor, geometry: LatentGeometry, *, reduce: str = "nearest") -> torch.Tensor:
    """Pack a pixel-rate keep mask to Wan's latent mask channels.

    ``keep``: ``(B, 1, T, H, W)`` or ``(T, H, W)``, 1 = keep, 0 = generate (Wan's sense, see :func:`keep_mask`).
    Returns float ``(B, temporal, 1 + (T - 1) / temporal, H / s, W / s)``: channel c of latent frame t >= 1 holds
    pixel frame ``temporal * (t - 1) + 1 + c``; latent frame 0 holds pixel frame 0 in every channel.

    ``reduce="nearest"`` resizes like the official code and diffusers; ``reduce="any"`` marks a latent cell
    "generate" if any of its pixels is to be generated (a dilation that never leaks source pixels of the region).
    """
    if keep.ndim == 3:
        keep = keep[None, None]
    keep = keep.float()
    B, _, T, H, W = keep.shape
    tc, s = geometry.temporal, geometry.spatial
    h, w = H // s, W // s
    if reduce == "nearest":
        m = F.interpolate(keep, size=(T, h, w), mode="nearest")
    elif reduce == "any":
        m = -F.max_pool3d(-keep, kernel_size=(1, s, s), stride=(1, s, s))
    else:
        raise ValueError(f"reduce must be 'nearest' or 'any', got {reduce!r}")
    m = torch.cat([m[:, :, :1].repeat_interleave(tc, dim=2), m[:, :, 1:]], dim=2)  # (B, 1, tc * T_lat, h, w)
    return m.view(B, -1, tc, h, w).transpose(1, 2)


def unpack_mask(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_mask` at latent resolution: ``(B, tc, T_lat, h, w)`` -> ``(B, 1, T, h, w)``."""
    B, tc, L, h, w = packed.shape
    m = packed.transpose(1, 2).reshape(B, 1, tc * L, h, w)
    return torch.cat([m[:, :, :1], m[:, :, tc:]], dim=2)


def latent_stats(vae, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, 1 / std)`` as ``(1, z, 1, 1, 1)`` tensors from the VAE config: Wan normalises latents per channel
    (``latents_mean`` / ``latents_std``); HunyuanVideo scales them by one ``scaling_factor``."""
    c = vae.config
    z = LatentGeometry.of(vae).z_dim
    if c.get("latents_mean") is None:
        mean = torch.full((1, z, 1, 1, 1), float(c.get("shift_factor") or 0.0), dtype=dtype, device=device)
        return mean, torch.full((1, z, 1, 1, 1), float(c.scaling_factor), dtype=dtype, device=device)
    mean = torch.tensor(c.latents_mean, dtype=dtype, device=device).view(1, z, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(c.latents_std, dtype=dtype, device=device).view(1, z, 1, 1, 1)
    return mean, inv_std


def encode(vae, pixels: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """VAE-encode ``(B, 3, T, H, W)`` in [-1, 1] to *normalised* latents ``(B, z, T_lat, H/s, W/s)``.

    Uses the posterior mode (``sample=False``) as diffusers' I2V pipeline does for the condition.
    """
    vae_dtype = getattr(vae, "dtype", torch.float32)
    dist = vae.encode(pixels.to(device=module_device(vae), dtype=vae_dtype)).latent_dist
    lat = dist.sample(generator) if sample else dist.mode()
    mean, inv_std = latent_stats(vae, lat.device, torch.float32)
    return (lat.float() - mean) * inv_std


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents -> pixels ``(B, 3, T, H, W)`` in [-1, 1] (clamped)."""
    mean, inv_std = latent_stats(vae, latents.device, torch.float32)
    x = latents.float() / inv_std + mean
    out = vae.decode(x.to(device=module_device(vae), dtype=getattr(vae, "dtype", torch.float32)), return_dict=False)[0]
    return out.float().clamp(-1, 1)


# ----------------------------------------------------------------------------------------------- the condition
def condition_from_tensors(vae, cond_pixels: torch.Tensor, keep: torch.Tensor, *, reduce: str = "nearest"
                           ) -> torch.Tensor:
    """Batched core: ``cond_pixels`` ``(B, 3, T, H, W)`` in [-1, 1] and ``keep`` ``(B, 1, T, H, W)`` (1 = keep) ->
    the 20-channel (for Wan) condition ``(B, 4 + z, T_lat, H/s, W/s)`` = ``cat([packed mask, condition latent])``.
    """
    geo = LatentGeometry.of(vae)
    lat = encode(vae, cond_pixels)
    m = pack_mask(keep.to(lat.device), geo, reduce=reduce).to(lat.dtype)
    return torch.cat([m, lat], dim=1)


def build_condition(vae, video: np.ndarray, edit_mask: np.ndarray, first_frame: np.ndarray | None = None, *,
                    keyframes: Mapping[int, np.ndarray] | None = None, reduce: str = "nearest",
                    adapter=None) -> torch.Tensor:
    """LoRA-Edit's condition for one clip: ``(video, mask, first_frame)`` + a VAE -> ``(1, 4 + z, T_lat, h, w)``.

    ``video``: float ``(T, H, W, 3)`` in [0, 1] with T = 4k + 1 and H, W multiples of 16. ``edit_mask``: bool
    ``(T, H, W)``, True = edit. ``first_frame``: ``(H, W, 3)``, the original first frame (training) or the edited
    one (inference); default: the video's frame 0. ``keyframes``: extra whole frames to give at their indices.
    With ``edit_mask`` True on every frame after the first this is exactly diffusers' own I2V condition.
    ``adapter``: another family's packing (``backbone.adapter``; HunyuanVideo: ``(1, z + 1, T_lat, h, w)``).
    """
    video = check_video(video)
    check_frame_count(len(video))
    check_size(*video.shape[1:3])
    cond = condition_video(video, edit_mask, first_frame, keyframes=keyframes)
    keep = keep_mask(edit_mask, keyframes=keyframes)
    from .video import to_model

    pack = condition_from_tensors if adapter is None else adapter.condition
    with torch.no_grad():
        return pack(vae, to_model(cond), torch.from_numpy(keep)[None, None], reduce=reduce)


def i2v_edit_mask(num_frames: int, height: int, width: int, *, last_frame: bool = False) -> np.ndarray:
    """The edit mask that makes LoRA-Edit's condition equal plain I2V (everything after frame 0 is generated);
    ``last_frame=True`` keeps the last frame too (Wan's first-last-frame mode)."""
    m = np.ones((num_frames, height, width), dtype=bool)
    m[0] = False
    if last_frame:
        m[-1] = False
    return m
