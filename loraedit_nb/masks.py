"""Spatiotemporal masks.

.. important:: **Mask polarity.** In this package a mask is a boolean ``(T, H, W)`` array where

   * ``True``  = the region to **edit** (the model *generates* it),
   * ``False`` = the region to **preserve** (copied from the source video).

   Wan2.1-I2V's own mask channels use the opposite sense (1 = keep / given, 0 = generate), and VACE uses
   1 = generate. The flip happens in exactly one place, :func:`loraedit_nb.conditioning.keep_mask`, so user code
   never deals with Wan's convention. (Users trip on this: Wan2.1 #479, VACE #108 on GitHub.)

Every operation here takes and returns that boolean convention. Masks can be made in code (boxes, points via
``from_first_frame`` + ``propagate_flow``) so notebooks run headless, or painted with
:mod:`loraedit_nb.widgets`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .video import InputError, InputWarning, warn_user

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, x1/y1 exclusive


class MaskPolarityWarning(InputWarning):
    """The edit region covers most of every frame: the mask is probably inverted (True must mean *edit*)."""


class PlainI2VMaskWarning(InputWarning):
    """The mask marks everything after frame 0 for generation: editing becomes plain image-to-video. Intended by
    I2V baselines (:func:`loraedit_nb.conditioning.i2v_edit_mask`), which filter this category."""


def _threshold_hint(mask: np.ndarray, vals: np.ndarray) -> str:
    """The threshold that fits the mask's value range (half of it): ``> 0.5`` on 0..1, ``> 127`` on 0..255."""
    lo, hi = vals[0].item(), vals[-1].item()
    if lo < 0:
        return "mask > 0 if these are signed scores/logits"
    top = 1 if hi <= 1 else 255 if hi <= 255 else (np.iinfo(mask.dtype).max if mask.dtype.kind in "iu" else hi)
    return f"mask > {0.5 if top == 1 else top // 2} (half of its 0..{top} range)"


def check_mask(mask: np.ndarray, video: np.ndarray | None = None, *, name: str = "mask") -> np.ndarray:
    """Validate a mask and return it as bool ``(T, H, W)``.

    Accepts bool, or a numeric array holding only 0/1 (or 0/255). Anything else (soft, anti-aliased masks) raises
    with the threshold that fits its value range (``mask > 0.5`` for 0..1, ``mask > 127`` for 0..255): threshold
    it yourself so the choice is visible. With ``video`` given, shapes must agree.
    """
    mask = np.asarray(mask)
    if mask.ndim == 4 and mask.shape[-1] in (1, 3, 4):
        raise InputError(f"{name} has shape {mask.shape}, an image-like (T, H, W, C) array; masks are (T, H, W).",
                         f"Use {name}[..., 0] (or the alpha channel, {name}[..., 3], for a painted RGBA layer).")
    if mask.ndim != 3:
        raise InputError(f"{name} must have shape (T, H, W), got {mask.shape}.",
                         f"For one frame use {name}[None], or from_first_frame({name}, T) to repeat it."
                         if mask.ndim == 2 else "")
    if mask.dtype != bool:
        vals = np.unique(mask)
        if np.isin(vals, [0, 1]).all():
            mask = mask.astype(bool)
        elif np.isin(vals, [0, 255]).all():
            mask = mask == 255
        else:
            raise InputError(
                f"{name} is not binary: {mask.dtype} values {vals[0]:g}..{vals[-1]:g}, {len(vals)} distinct (a soft or "
                "anti-aliased mask?); masks are bool, 0/1 or 0/255.",
                f"Threshold it explicitly, e.g. {_threshold_hint(mask, vals)}; True = region to edit.")
    if video is not None:
        if mask.shape != tuple(video.shape[:3]):
            raise InputError(
                f"{name} shape {mask.shape} does not match video (T, H, W) = {tuple(video.shape[:3])}.",
                "Make the mask from the prepared video; for a mask of the original clip prepare it the same way, "
                f"prepare_mask(mask, {', '.join(map(str, video.shape[:3]))}); for the same frames at another "
                f"resolution, resize_mask(mask, {video.shape[1]}, {video.shape[2]}).")
    return mask


def warn_if_degenerate(mask: np.ndarray, *, context: str = "editing") -> None:
    """Warn (not raise), at most once per call, for legal but unusual masks ``(T, H, W)`` (True = edit): nothing
    to edit; everything after frame 0 (plain I2V, :class:`PlainI2VMaskWarning`); more than half of every frame
    (an inverted mask, :class:`MaskPolarityWarning`). Warnings name the caller's line, not this package's."""
    cover = mask.reshape(len(mask), -1).mean(axis=1)
    if not mask.any():
        warn_user(InputWarning(f"the mask is empty: nothing will be generated while {context} (the source is "
                               "kept).", "Mark the region to edit with True (white)."))
    elif len(mask) > 1 and mask[1:].all():
        warn_user(PlainI2VMaskWarning(
            f"the mask covers every frame after the first: {context} becomes plain image-to-video (no background "
            "is preserved).",
            "That is right for an I2V baseline (conditioning.i2v_edit_mask): silence it there with "
            "warnings.simplefilter('ignore', PlainI2VMaskWarning). Otherwise mark only the region to edit "
            "(True = edit).",
            cli="Mark only the region to edit in the mask (white = edit)."))
    elif cover.min() > 0.5:
        warn_user(MaskPolarityWarning(
            f"the edit mask covers more than half of every frame ({100 * cover.min():.0f} % to "
            f"{100 * cover.max():.0f} %) while {context}: True = the region to EDIT (generated), False = kept "
            "from the source.",
            "If you marked the part to keep, invert it: mask = ~mask. If you mean to regenerate most of the "
            "frame, silence this with warnings.simplefilter('ignore', MaskPolarityWarning).",
            cli="If you marked the part to keep, invert the mask (white = edit): swap black and white in the mask "
                "images, or save ~mask to the .npz/.npy."))


# ----------------------------------------------------------------------------------------------- construction
def empty(num_frames: int, height: int, width: int) -> np.ndarray:
    return np.zeros((num_frames, height, width), dtype=bool)


def from_first_frame(frame_mask: np.ndarray, num_frames: int) -> np.ndarray:
    """Repeat a ``(H, W)`` mask over ``num_frames`` -> ``(T, H, W)`` (for static regions)."""
    frame_mask = np.asarray(frame_mask).astype(bool)
    if frame_mask.ndim != 2:
        raise ValueError(f"frame_mask must be (H, W), got {frame_mask.shape}")
    return np.repeat(frame_mask[None], num_frames, axis=0)


def box_mask(height: int, width: int, box: Box) -> np.ndarray:
    """``(H, W)`` mask, True inside ``box = (x0, y0, x1, y1)`` (clipped to the frame)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} is empty: need x0 < x1 and y0 < y1 (pixels, x1/y1 exclusive)")
    m = np.zeros((height, width), dtype=bool)
    m[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)] = True
    return m


def from_boxes(boxes: Sequence[Box | Sequence[Box] | None], height: int, width: int) -> np.ndarray:
    """One entry per frame: a box, a list of boxes, or None (nothing on that frame) -> ``(T, H, W)``."""
    out = np.zeros((len(boxes), height, width), dtype=bool)
    for t, b in enumerate(boxes):
        if b is None:
            continue
        for bb in ([b] if np.ndim(b[0]) == 0 else b):
            out[t] |= box_mask(height, width, bb)
    return out


def interpolate_boxes(keyframes: dict[int, Box], num_frames: int, height: int, width: int) -> np.ndarray:
    """Boxes given on a few frames, linearly interpolated (held constant outside) -> ``(T, H, W)`` mask."""
    if not keyframes:
        raise ValueError("give at least one keyframe box, e.g. {0: (x0, y0, x1, y1)}")
    ks = sorted(keyframes)
    arr = np.array([keyframes[k] for k in ks], dtype=float)
    boxes = [tuple(np.interp(t, ks, arr[:, i]) for i in range(4)) for t in range(num_frames)]
    return from_boxes(boxes, height, width)


def disc(height: int, width: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """``(H, W)`` disc mask around ``centre = (x, y)`` (for click-like masks made in code)."""
    yy, xx = np.mgrid[:height, :width]
    return (xx + 0.5 - centre[0]) ** 2 + (yy + 0.5 - centre[1]) ** 2 <= radius**2


# ----------------------------------------------------------------------------------------------- morphology
def _kernel(radius: int):
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def dilate(mask: np.ndarray, radius: int = 2) -> np.ndarray:
    """Grow the edit region of every frame by ``radius`` pixels (elliptic kernel)."""
    import cv2

    if radius <= 0:
        return mask.copy()
    k = _kernel(radius)
    return np.stack([cv2.dilate(m.astype(np.uint8), k) > 0 for m in mask])


def erode(mask: np.ndarray, radius: int = 2) -> np.ndarray:
    """Shrink the edit region of every frame by ``radius`` pixels."""
    import cv2

    if radius <= 0:
        return mask.copy()
    k = _kernel(radius)
    return np.stack([cv2.erode(m.astype(np.uint8), k) > 0 for m in mask])


def temporal_union(mask: np.ndarray) -> np.ndarray:
    """The union of all frames, repeated on every frame (a static region that covers the whole motion)."""
    return np.repeat(mask.any(axis=0, keepdims=True), len(mask), axis=0)


def to_boxes(mask: np.ndarray, *, expand_ratio: float = 0.1, min_area: int = 50) -> np.ndarray:
    """Replace each connected component of each frame by its bounding box, grown by ``expand_ratio`` of its width
    and height (centred). Components under ``min_area`` pixels are dropped.

    This is what the paper's official code does to SAM2 masks (10 % expansion, 50 px minimum): boxes leave the
    model room to change the object's shape.
    """
    import cv2

    T, H, W = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    for t in range(T):
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask[t].astype(np.uint8), connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            if area < min_area:
                continue
            dw, dh = w * expand_ratio / 2, h * expand_ratio / 2
            x0, y0 = int(np.floor(x - dw)), int(np.floor(y - dh))
            x1, y1 = int(np.ceil(x + w + dw)), int(np.ceil(y + h + dh))
            out[t, max(0, y0) : min(H, y1), max(0, x0) : min(W, x1)] = True
    return out


def prepare_mask(mask: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
    """The mask twin of :func:`loraedit_nb.video.prepare_video`: sample the same ``num_frames`` frames and apply
    the same resize-to-cover + centre crop, then re-binarise (> 0.5) -> bool ``(num_frames, height, width)``."""
    from .video import resize_and_crop, sample_frames

    m = sample_frames(check_mask(mask).astype(np.float32)[..., None], num_frames)
    return resize_and_crop(m, height, width)[..., 0] > 0.5


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of every frame (keeps the mask binary)."""
    import cv2

    return np.stack([cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
                     for m in mask])


# ----------------------------------------------------------------------------------------------- propagation
class TrackJumpWarning(InputWarning):
    """A propagated mask jumped in area or position between two frames: the tracking probably failed there."""


def propagate_flow(video: np.ndarray, first_mask: np.ndarray, *, method: str = "farneback",
                   robust: bool = True, max_deviation: float = 1.5, warn: bool = True) -> np.ndarray:
    """Carry a frame-0 mask ``(H, W)`` through ``video`` ``(T, H, W, 3)`` with dense optical flow (no weights).

    For every frame the backward flow (frame t -> t-1) is computed with OpenCV's Farneback (default; it also
    moves flat, untextured regions) or DIS (``method="dis"``, faster on large frames, but it under-estimates the
    motion of flat regions) and the previous mask is sampled along it. Returns bool ``(T, H, W)``.

    ``robust`` (default): a pixel's own flow is trusted only where it passes a forward-backward consistency check
    and agrees (within ``max_deviation`` px) with the region's dominant motion (the median forward flow of the
    consistent pixels of the previous mask); elsewhere the region's dominant motion is used. Without it, an occluder
    passing in front of the object drags the mask along with it (``robust=False``: the plain per-pixel warp).
    ``warn``: a :class:`TrackJumpWarning` names the first frame where the region's area changes by more than 1.5x
    or its centre moves by more than a fifth of the frame's shorter side between two frames.
    Good for smooth motion; for fast or deforming objects paint or box the later frames too.
    """
    import cv2

    from .video import check_video

    video = check_video(video)
    first_mask = np.asarray(first_mask).astype(bool)
    if first_mask.shape != video.shape[1:3]:
        raise ValueError(f"first_mask shape {first_mask.shape} != frame size {video.shape[1:3]}")
    grey = [cv2.cvtColor((f * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in video]
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow_fn = dis.calc
    elif method == "farneback":
        def flow_fn(a, b, _):
            return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    else:
        raise ValueError(f"method must be 'dis' or 'farneback', got {method!r}")
    H, W = first_mask.shape
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    out = [first_mask]
    soft = first_mask.astype(np.float32)
    d, costs = np.zeros(2, np.float32), []
    for t in range(1, len(video)):
        back = flow_fn(grey[t], grey[t - 1], None)  # where each pixel of frame t was in frame t-1
        if robust and out[-1].any():
            fwd = flow_fn(grey[t - 1], grey[t], None)  # where each pixel of frame t-1 goes in frame t
            # the region's own motion, t-1 -> t, matched on its pixels that do not move unlike it (occluders)
            own = out[-1] & (np.hypot(fwd[..., 0] - d[0], fwd[..., 1] - d[1]) <= 4 + 0.5 * np.hypot(*d))
            new, cost = _region_shift(video[t - 1], video[t], own if own.sum() >= 0.2 * out[-1].sum() else out[-1],
                                      prior=d)
            # a match much worse than usual means the region is hidden at t (an occluder over it): keep its velocity
            d = d if costs and cost > 3 * min(costs) + 1e-4 else new
            costs.append(cost)
            # forward-backward consistency at frame t: back, then forward from there, returns to the start
            fx = cv2.remap(fwd[..., 0], gx + back[..., 0], gy + back[..., 1], cv2.INTER_LINEAR)
            fy = cv2.remap(fwd[..., 1], gx + back[..., 0], gy + back[..., 1], cv2.INTER_LINEAR)
            speed = np.hypot(back[..., 0], back[..., 1])
            consistent = np.hypot(back[..., 0] + fx, back[..., 1] + fy) < 0.5 + 0.05 * speed
            agree = consistent & (np.hypot(back[..., 0] + d[0], back[..., 1] + d[1]) <= max_deviation)
            back = np.where(agree[..., None], back, -d[None, None, :].astype(np.float32))
        soft = cv2.remap(soft, gx + back[..., 0], gy + back[..., 1], cv2.INTER_LINEAR, borderValue=0)
        out.append(soft > 0.5)
        soft = out[-1].astype(np.float32)  # re-binarise each step so the mask does not blur away
    mask = np.stack(out)
    if warn:
        _warn_jumps(mask)
    return mask


def propagate_both_ways(video: np.ndarray, frame_mask: np.ndarray, t: int, *, method: str = "farneback",
                        warn: bool = True) -> np.ndarray:
    """Carry frame ``t``'s mask ``(H, W)`` to every frame of ``video`` ``(T, H, W, 3)``: forward from ``t`` and
    backward (the clip reversed), each with :func:`propagate_flow`. Returns bool ``(T, H, W)`` with frame ``t`` =
    ``frame_mask``."""
    T = len(video)
    if not -T <= t < T:
        raise InputError(f"frame {t} is out of range for a {T}-frame video.", f"Use a frame index in 0..{T - 1}.")
    t %= T
    frame_mask = np.asarray(frame_mask).astype(bool)
    out = np.zeros((T, *frame_mask.shape), dtype=bool)
    out[t:] = propagate_flow(video[t:], frame_mask, method=method, warn=warn)
    if t > 0:
        out[: t + 1] = propagate_flow(video[t::-1], frame_mask, method=method, warn=warn)[::-1]
    return out


def _region_shift(prev: np.ndarray, cur: np.ndarray, region: np.ndarray, search: int | None = None, *,
                  prior: np.ndarray | None = None, smooth: float = 1e-3) -> tuple[np.ndarray, float]:
    """The translation ``(dx, dy)`` of the pixels ``region`` marks in ``prev`` to ``cur``: masked template matching
    of the region's bounding box (its own pixels only) within ``search`` px (default: a fifth of the frame's shorter
    side), refined to sub-pixel by a parabola fit. Edges carry the match, so it also moves flat, untextured objects
    that dense flow under-estimates. ``prior`` (the previous frame's shift) adds ``smooth`` per px^2 of change to the
    mean squared difference: objects keep their velocity, so an occluder covering much of the region cannot pull the
    match far. Returns the shift and the match's mean squared difference per pixel."""
    import cv2

    H, W = region.shape
    search = search or max(4, min(H, W) // 5)
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    tpl = np.ascontiguousarray(prev[y0:y1, x0:x1], dtype=np.float32)
    m = np.ascontiguousarray(np.repeat(region[y0:y1, x0:x1, None], 3, 2), dtype=np.float32)
    pad = cv2.copyMakeBorder(np.ascontiguousarray(cur, dtype=np.float32), search, search, search, search,
                             cv2.BORDER_REPLICATE)
    win = pad[y0:y1 + 2 * search, x0:x1 + 2 * search]
    cost = cv2.matchTemplate(win, tpl, cv2.TM_SQDIFF, mask=m) / max(1.0, float(m.sum()))
    raw = cost
    if prior is not None:
        oy, ox = np.mgrid[: cost.shape[0], : cost.shape[1]]
        cost = cost + smooth * ((ox - search - prior[0]) ** 2 + (oy - search - prior[1]) ** 2)
    iy, ix = np.unravel_index(np.argmin(cost), cost.shape)

    def refine(c_m, c_0, c_p):
        den = c_m - 2 * c_0 + c_p
        return 0.0 if den <= 0 else float(np.clip(0.5 * (c_m - c_p) / den, -0.5, 0.5))
    dx = ix - search + (refine(*cost[iy, ix - 1:ix + 2]) if 0 < ix < cost.shape[1] - 1 else 0.0)
    dy = iy - search + (refine(*cost[iy - 1:iy + 2, ix]) if 0 < iy < cost.shape[0] - 1 else 0.0)
    return np.array([dx, dy], np.float32), float(raw[iy, ix])


def _warn_jumps(mask: np.ndarray) -> None:
    area = mask.reshape(len(mask), -1).sum(1).astype(float)
    ys, xs = np.mgrid[: mask.shape[1], : mask.shape[2]]
    for t in range(1, len(mask)):
        a0, a1 = area[t - 1], area[t]
        why = ""
        if a0 > 0 and (a1 == 0 or max(a0, a1) / max(min(a0, a1), 1) > 1.5):
            why = f"its area went from {int(a0)} to {int(a1)} px"
        elif a0 > 0 and a1 > 0:
            c0 = np.array([xs[mask[t - 1]].mean(), ys[mask[t - 1]].mean()])
            c1 = np.array([xs[mask[t]].mean(), ys[mask[t]].mean()])
            if np.hypot(*(c1 - c0)) > min(mask.shape[1:]) / 5:
                why = f"its centre moved {np.hypot(*(c1 - c0)):.0f} px"
        if why:
            warn_user(TrackJumpWarning(
                f"the propagated mask jumps at frame {t}: {why} since frame {t - 1}; the tracking probably failed "
                "there (an occluder, fast motion, a cut).",
                f"Check frames {t - 1}-{t}: paint or box them (widgets.MaskPainter, masks.interpolate_boxes), and "
                "start the propagation again from a good frame."))
            return


# ----------------------------------------------------------------------------------------------- I/O
def save_npz(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write ``mask`` (bool ``(T, H, W)``, True = edit) losslessly to ``path``: a compressed ``.npz`` holding
    ``bits`` (the mask bit-packed, 1 bit per pixel) and ``shape``; written atomically. Read it with :func:`load`."""
    mask = check_mask(mask)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, bits=np.packbits(mask.ravel()), shape=np.array(mask.shape))
    os.replace(tmp, path)
    return path


def load_npz(path: str | os.PathLike) -> np.ndarray:
    """Read a mask written by :func:`save_npz` -> bool ``(T, H, W)``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mask file not found: {path}")
    with np.load(path) as z:
        shape = tuple(int(s) for s in z["shape"])
        return np.unpackbits(z["bits"])[: int(np.prod(shape))].reshape(shape).astype(bool)


def save_pngs(folder: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write one 8-bit grey PNG per frame into ``folder`` (created): white (255) = edit, black (0) = keep, named
    ``00000.png``, ``00001.png``... like the official code's ``source_masks/``. Returns the folder."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, m in enumerate(check_mask(mask)):
        Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{t:05d}.png")
    return folder


def _read_mask_frame(path: Path) -> np.ndarray:
    """One mask image -> bool ``(H, W)``: grey level > 127 = edit. With an alpha channel (strokes painted on a
    transparent layer) the grey level is multiplied by alpha first: transparent = not painted = keep."""
    from PIL import Image

    with Image.open(path) as im:
        if "A" in im.getbands() or "transparency" in im.info:
            la = np.asarray(im.convert("RGBA").convert("LA"), np.float32)
            return la[..., 0] * la[..., 1] / 255 > 127
        return np.asarray(im.convert("L")) > 127


def load_pngs(folder: str | os.PathLike) -> np.ndarray:
    """Read a folder of mask frames, sorted by name (any grey/RGB/RGBA PNG/JPG; > 50 % intensity = edit;
    transparent pixels = keep)."""
    from .video import IMAGE_EXTS

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"mask folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ValueError(f"no mask frames in {folder}")
    frames = [_read_mask_frame(f) for f in files]
    if len({f.shape for f in frames}) != 1:
        raise InputError(f"mask frames in {folder} differ in size: {sorted({f.shape for f in frames})}.",
                         "Give every frame the video's size.")
    return np.stack(frames)


def load(path: str | os.PathLike) -> np.ndarray:
    """Load a mask from ``.npz``, ``.npy`` or a folder of PNG frames."""
    path = Path(path)
    if path.is_dir():
        return load_pngs(path)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".npy":
        return check_mask(np.load(path))
    if not path.exists():
        raise FileNotFoundError(f"mask not found: {path}")
    raise ValueError(f"unsupported mask file {path}: use .npz, .npy or a folder of PNG frames")


# ----------------------------------------------------------------------------------------------- display
def overlay(video: np.ndarray, mask: np.ndarray, *, colour=(1.0, 0.2, 0.2), alpha: float = 0.45,
            outline: bool = True) -> np.ndarray:
    """Tint the edit region of ``video`` (for display): ``(T, H, W, 3)`` in [0, 1]."""
    import cv2

    mask = check_mask(mask, video)
    out = video.copy()
    c = np.asarray(colour, np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * c
    if outline:
        k = np.ones((3, 3), np.uint8)
        for t in range(len(mask)):
            edge = (cv2.dilate(mask[t].astype(np.uint8), k) > 0) & ~mask[t]
            out[t][edge] = c
    return out


def mask_video(mask: np.ndarray) -> np.ndarray:
    """The mask as a white-on-black video ``(T, H, W, 3)`` (white = edit)."""
    return np.repeat(check_mask(mask)[..., None].astype(np.float32), 3, axis=-1)
