"""LoRA-Edit's two training regimes, as (condition, mask, target) samples — the mask's *dual role*.

What the mask hides decides what the LoRA learns:

* **Motion regime** (one sample per source clip): condition = the original first frame + frames 1..T-1 with the
  edit region grey; mask = keep everywhere except the edit region on frames >= 1; target = the full original
  video. The LoRA must re-create the hidden region from its context, so it learns the source *motion* and to read
  the mask as "keep here, generate there".
* **Appearance regime** (one sample per user-edited frame i): a one-frame sample whose condition is the source
  frame i with the region grey, mask = generate inside the region, target = the *edited* frame i. The LoRA learns
  what the edited object looks like at later times (an object that turns, a flower that blooms).
* **Naive** (the paper's L_naive baseline, for comparisons): plain I2V conditioning (first frame + grey, no
  spatial mask), target = the full video.

Samples live in pixel space here (float ``(T, H, W, 3)`` in [0, 1]); :mod:`loraedit_nb.training` encodes them once
(VAE, text, CLIP) and caches the latents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .conditioning import CheckedClip, check_clip, condition_video_of, i2v_edit_mask, keep_of
from .masks import warn_if_degenerate
from .video import check_frame_count, check_image, check_video


@dataclass
class Sample:
    """One training example in pixel space.

    ``condition``: ``(T, H, W, 3)`` pseudo-video in [0, 1]; ``keep``: ``(T, H, W)`` float, Wan's sense (1 = keep);
    ``target``: ``(T, H, W, 3)``; ``image``: ``(H, W, 3)`` frame for the CLIP image embedding (backbones with one);
    ``prompt``: caption; ``regime``: ``"motion" | "appearance" | "naive"``; ``frame_index``: source frame of an
    appearance sample; ``mask_region``: the edit region ``(T, H, W)`` bool (for colour augmentation's prompt).
    """

    condition: np.ndarray
    keep: np.ndarray
    target: np.ndarray
    image: np.ndarray
    prompt: str
    regime: str
    frame_index: int | None = None
    mask_region: np.ndarray | None = None


def motion_sample(video: np.ndarray, mask: np.ndarray, prompt: str) -> Sample:
    """The motion-regime sample of a source clip (see module doc). ``mask``: bool ``(T, H, W)``, True = edit."""
    clip = check_clip(video, mask)
    video, mask = clip.video, clip.mask
    if not mask[1:].any():
        raise ValueError("the mask leaves nothing to generate after frame 0, so the motion regime has nothing to "
                         "learn: mark the object to edit (True = edit) on the frames where it appears")
    warn_if_degenerate(mask, context="training")  # plain I2V or an inverted mask: said at the caller's line
    return Sample(condition=condition_video_of(clip), keep=keep_of(mask), target=video, image=video[0],
                  prompt=prompt, regime="motion", mask_region=mask)


def appearance_samples(video: np.ndarray, mask: np.ndarray, edited_frames: Mapping[int, np.ndarray],
                       prompt: str | Mapping[int, str]) -> list[Sample]:
    """One-frame appearance samples from user-edited frames ``{i: (H, W, 3)}`` (see module doc).

    ``prompt``: one caption of the edited video, or one per frame index. The CLIP image is the *source* frame i,
    as in the official code (it describes the scene; the edit is what the LoRA must learn).
    """
    clip = check_clip(video, mask)
    video, mask = clip.video, clip.mask
    if not edited_frames:
        raise ValueError("give at least one edited frame, e.g. {0: edited_first_frame}")
    out = []
    T, H, W = mask.shape
    for i, frame in sorted(edited_frames.items()):
        if not -T <= i < T:
            raise ValueError(f"edited frame index {i} is out of range for a {T}-frame video (0..{T - 1})")
        # RGBA: transparent = the unchanged source frame, as at inference
        frame = check_image(frame, f"edited frame {i}", background=video[i])
        if frame.shape != (H, W, 3):
            raise ValueError(f"edited frame {i} has shape {frame.shape}, the video's frames are {(H, W, 3)}: resize/"
                             f"crop it with the same transform as the video (resize_and_crop(frame, {H}, {W}))")
        if not mask[i].any():
            raise ValueError(f"the mask is empty on frame {i}, so its edited frame cannot teach anything: "
                             "mask the edited region on that frame")
        region = mask[i : i + 1]
        cond = np.where(region[..., None], np.float32(0.5), video[i : i + 1]).astype(np.float32)
        out.append(Sample(condition=cond, keep=keep_of(region, keep_first_frame=False), target=frame[None],
                          image=video[i], prompt=prompt[i] if isinstance(prompt, Mapping) else prompt,
                          regime="appearance", frame_index=i % T, mask_region=region))
    return out


def naive_sample(video: np.ndarray, prompt: str) -> Sample:
    """The paper's L_naive baseline: plain I2V conditioning (first frame only), target = the whole video."""
    video = check_video(video)
    check_frame_count(len(video))
    clip = CheckedClip(video, i2v_edit_mask(*video.shape[:3]))  # a mask made here is valid by construction
    m = clip.mask
    return Sample(condition=condition_video_of(clip), keep=keep_of(m), target=video, image=video[0],
                  prompt=prompt, regime="naive", mask_region=m)


# ----------------------------------------------------------------------------------------------- colour aug
COLOUR_WORDS = {
    "red": (1.0, 0.1, 0.1), "green": (0.1, 0.9, 0.1), "blue": (0.15, 0.25, 1.0), "yellow": (1.0, 0.95, 0.1),
    "magenta": (1.0, 0.1, 1.0), "cyan": (0.1, 1.0, 1.0), "white": (1.0, 1.0, 1.0), "orange": (1.0, 0.55, 0.05),
}


def colour_transform(rng: np.random.Generator, mode: str = "mix"):
    """A random colour map applied identically to condition, target and image (appearance-agnostic motion).

    ``"permute"``: RGB channel permutation + per-channel inversion (strong; the toy recipe's default before ``"mix"``);
    ``"hue"``: rotation of the hue around the grey axis by a random angle (milder; keeps luminance);
    ``"mix"``: ``"permute"`` half the time, else a hue rotation followed by a lift toward white or a dip toward
    black — it also reaches the colours the first two never make (white, pastels, orange, yellow, dark tones),
    which LoRAs trained with ``"permute"`` failed to carry (results/toy_lever_probes.md).
    Returns a function ``f(array[..., 3]) -> array[..., 3]``; ``"permute"`` and ``"hue"`` keep neutral grey (0.5)
    fixed, ``"mix"``'s lift does not (:func:`augment_colour` leaves the grey fill alone in every mode).
    """
    if mode == "permute":
        perm = rng.permutation(3)
        flip = rng.random(3) < 0.5

        def f(x):
            y = x[..., perm]
            return np.where(flip, 1.0 - y, y).astype(np.float32)
        return f
    if mode == "hue":
        a = rng.uniform(0, 2 * np.pi)
        # rotation about the (1,1,1) axis: Rodrigues' formula
        k = np.ones(3) / np.sqrt(3)
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        R = np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K

        def f(x):
            return np.clip((x - 0.5) @ R.T + 0.5, 0, 1).astype(np.float32)
        return f
    if mode == "mix":
        if rng.random() < 0.5:
            return colour_transform(rng, "permute")
        hue = colour_transform(rng, "hue")
        s = float(rng.uniform(-0.5, 0.7))  # > 0: toward white by s; < 0: toward black by -s

        def f(x):
            y = hue(x)
            return np.clip(y + s * (1 - y) if s > 0 else y * (1 + s), 0, 1).astype(np.float32)
        return f
    raise ValueError(f"colour augmentation mode must be 'permute', 'hue' or 'mix', got {mode!r}")


def nearest_colour_word(rgb: np.ndarray) -> str:
    names = list(COLOUR_WORDS)
    d = [np.abs(np.asarray(COLOUR_WORDS[n]) - rgb).sum() for n in names]
    return names[int(np.argmin(d))]


def object_colour(pixels: np.ndarray) -> np.ndarray:
    """The object's colour among ``(N, 3)`` region pixels: the mean of the most saturated half. A dilated or box
    mask also holds background, whose mean would name the wrong colour (a yellow disc read as orange)."""
    chroma = pixels.max(-1) - pixels.min(-1)
    if chroma.max() < 0.2:  # an unsaturated object (white/grey): take the brightest pixels instead
        key = pixels.mean(-1)
    else:
        key = chroma
    return pixels[key >= np.median(key)].mean(0)


def recolour_prompt(prompt: str, before: np.ndarray, after: np.ndarray) -> str:
    """Swap the prompt's colour word for the object's colour after augmentation: the colour word of
    ``before`` (mean colour of the region) is replaced by the nearest named colour of ``after``."""
    old, new = nearest_colour_word(before), nearest_colour_word(after)
    if old == new or not re.search(rf"\b{old}\b", prompt):
        return prompt
    return re.sub(rf"\b{old}\b", new, prompt, count=1)


def augment_colour(sample: Sample, rng: np.random.Generator, mode: str = "mix") -> Sample:
    """A colour-augmented copy of a sample; the prompt's colour word follows the edit region's new colour."""
    f = colour_transform(rng, mode)
    region = sample.mask_region
    prompt = sample.prompt
    if region is not None and region.any():
        # the object's colour is read where it is visible in the target; frame 0 of a motion sample is unmasked
        t = int(np.flatnonzero(region.reshape(len(region), -1).any(1))[-1])
        before = object_colour(sample.target[t][region[t]])
        prompt = recolour_prompt(prompt, before, f(before[None])[0])
    # the grey fill must stay grey (it means "unknown"): transform only the known pixels
    known = sample.keep[..., None] > 0.5
    cond = np.where(known, f(sample.condition), sample.condition)
    return Sample(condition=cond.astype(np.float32), keep=sample.keep, target=f(sample.target), image=f(sample.image),
                  prompt=prompt, regime=sample.regime, frame_index=sample.frame_index, mask_region=region)
