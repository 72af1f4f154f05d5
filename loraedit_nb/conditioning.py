"""The Wan I2V condition with a spatiotemporal mask — LoRA-Edit's only change to the model's input.

Wan2.1-I2V's transformer reads 36 channels per latent voxel::

    [ noisy latent (z) | mask (4) | condition latent (z) ]      z = vae.config.z_dim (16 for Wan)

diffusers' ``WanImageToVideoPipeline`` builds the condition from *the first frame followed by zero (grey) frames*
and a mask that is 1 on the first frame only. LoRA-Edit replaces both:

* **condition video** — the source video with the edit region filled with neutral grey (0 in [-1, 1]) on every
  frame after the first; frame 0 is kept whole (the original frame in training, the *edited* frame at inference);
* **mask** — in Wan's sense (1 = keep/given, 0 = generate): 1 outside the edit region and on the whole first frame,
  0 inside the region.

This module builds both in pixel space. Packing them to latent rate is the backbone family's job
(``backbone.adapter.condition``): Wan resizes each frame's mask to the latent H x W (nearest), repeats frame 0
four times and puts every group of 4 frames into its 4 mask channels -> ``(B, 4, 1 + (T - 1) / 4, H / s, W / s)``
(:func:`loraedit_nb.backbones.latents.pack_mask`, :func:`loraedit_nb.backbones.wan.condition_from_tensors`);
HunyuanVideo keeps one channel (:mod:`loraedit_nb.backbones.hunyuan`). The geometry (``s``, the temporal factor,
``z``) is read from the VAE's config, so the same code runs the real VAEs and the toy backbone's.

User masks are True = edit (see :mod:`loraedit_nb.masks`); :func:`keep_mask` (its body :func:`keep_of`) is the
one place that flips them. Public functions validate their inputs once (:func:`check_clip`) and hand a
:class:`CheckedClip` to the ``*_of`` functions, which trust it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .backbones.base import default_adapter
from .backbones.latents import (  # noqa: F401 - re-exported: the latent side of the condition
    LatentGeometry,
    decode,
    encode,
    latent_stats,
    pack_mask,
    unpack_mask,
)
from .masks import check_mask
from .video import check_frame_count, check_image, check_size, check_video, to_model

GREY = 0.5  # neutral grey in [0, 1] == 0.0 in the model's [-1, 1]: what Wan's zero frames and LoRA-Edit's fill are


# ----------------------------------------------------------------------------------------------- checked input
@dataclass(frozen=True)
class CheckedClip:
    """A source clip and its edit mask, validated once by :func:`check_clip` at a public entry (``motion_sample``,
    ``appearance_samples``, ``build_condition``, ``generate``, ``edit_video``) and handed inward: ``video`` float32
    ``(T, H, W, 3)`` in [0, 1] with T = 4k + 1 and H, W multiples of 16; ``mask`` bool ``(T, H, W)``, True = edit.
    The functions that take one trust it."""

    video: np.ndarray
    mask: np.ndarray


def check_clip(video: np.ndarray, mask: np.ndarray, name: str = "video") -> CheckedClip:
    """Validate a clip and its mask once (every bad input is refused with the fix, see :mod:`loraedit_nb.video`
    and :func:`loraedit_nb.masks.check_mask`)."""
    video = check_video(video, name)
    check_frame_count(len(video))
    check_size(*video.shape[1:3])
    return CheckedClip(video, check_mask(mask, video))


# ----------------------------------------------------------------------------------------------- pixel space
def keep_mask(edit_mask: np.ndarray, *, keep_first_frame: bool = True,
              keyframes: Mapping[int, object] | None = None) -> np.ndarray:
    """User mask (True = edit) -> Wan-sense pixel mask, float32 ``(T, H, W)``, **1 = keep**, 0 = generate.

    Frame 0 is kept whole (``keep_first_frame``): it carries the (edited) first frame. Frames listed in
    ``keyframes`` (e.g. user-edited later frames, or the last frame in first-last-frame mode) are kept whole too.
    """
    return keep_of(check_mask(edit_mask), keep_first_frame=keep_first_frame, keyframes=keyframes)


def keep_of(edit_mask: np.ndarray, *, keep_first_frame: bool = True, keyframes=None) -> np.ndarray:
    """:func:`keep_mask` of a checked bool ``(T, H, W)`` mask (True = edit): float32, 1 = keep."""
    keep = (~edit_mask).astype(np.float32)
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
    return condition_video_of(CheckedClip(video, check_mask(edit_mask, video)), first_frame, keyframes)


def condition_video_of(clip: CheckedClip, first_frame=None, keyframes=None) -> np.ndarray:
    """:func:`condition_video` of a checked clip (the first frame and keyframes are checked here: only this uses
    them)."""
    video = clip.video
    cond = np.where(clip.mask[..., None], np.float32(GREY), video).astype(np.float32)
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


# ----------------------------------------------------------------------------------------------- the condition
def build_condition(vae, video: np.ndarray, edit_mask: np.ndarray, first_frame: np.ndarray | None = None, *,
                    keyframes: Mapping[int, np.ndarray] | None = None, reduce: str = "nearest",
                    adapter=None) -> torch.Tensor:
    """LoRA-Edit's condition for one clip: ``(video, mask, first_frame)`` + a VAE -> ``(1, 4 + z, T_lat, h, w)``.

    ``video``: float ``(T, H, W, 3)`` in [0, 1] with T = 4k + 1 and H, W multiples of 16. ``edit_mask``: bool
    ``(T, H, W)``, True = edit. ``first_frame``: ``(H, W, 3)``, the original first frame (training) or the edited
    one (inference); default: the video's frame 0. ``keyframes``: extra whole frames to give at their indices.
    With ``edit_mask`` True on every frame after the first this is exactly diffusers' own I2V condition.
    ``adapter``: the family's packing (``backbone.adapter``; default Wan's; HunyuanVideo: ``(1, z + 1, T_lat, h,
    w)``).
    """
    return condition_of(vae, check_clip(video, edit_mask), first_frame, keyframes=keyframes, reduce=reduce,
                        adapter=adapter)


def condition_of(vae, clip: CheckedClip, first_frame: np.ndarray | None = None, *,
                 keyframes: Mapping[int, np.ndarray] | None = None, reduce: str = "nearest",
                 adapter=None) -> torch.Tensor:
    """:func:`build_condition` of a checked clip (:func:`check_clip`)."""
    cond = condition_video_of(clip, first_frame, keyframes)
    keep = keep_of(clip.mask, keyframes=keyframes)
    pack = (adapter or default_adapter()).condition
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
