"""Video I/O and the one array convention of this package.

**Convention.** A video is a float32 numpy array of shape ``(T, H, W, 3)`` with values in ``[0, 1]``.
Conversion to diffusers' ``(B, C, T, H, W)`` tensors in ``[-1, 1]`` happens only at the model boundary
(:func:`to_model` / :func:`from_model`).

Wan's causal VAE keeps frame 0 alone and compresses every following group of 4 frames into one latent frame,
so a clip must have ``4k + 1`` frames. Its spatial compression (x8) times the transformer's 2x2 patches asks for
``H`` and ``W`` that are multiples of 16.
"""

from __future__ import annotations

import glob
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

VIDEO_EXTS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _ffmpeg() -> str:
    """Path of an ffmpeg binary: the system one or the one imageio-ffmpeg ships (no system install needed)."""
    import shutil

    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _mediapy():
    import mediapy

    mediapy.set_ffmpeg(_ffmpeg())
    return mediapy


# ----------------------------------------------------------------------------------------------- user errors
class _NamesTheFix:
    """What is wrong (``problem``) and how to fix it, in Python terms (``str(e)``) and, where the CLI has flags for
    it, in the CLI's terms (:meth:`for_cli`; the shell commands print that one)."""

    def __init__(self, problem: str, fix: str = "", cli: str | None = None):
        super().__init__(problem, fix, cli)  # all three in args: survives pickling (worker processes)

    @property
    def problem(self) -> str:
        return self.args[0]

    def __str__(self) -> str:
        return " ".join(a for a in self.args[:2] if a)

    def for_cli(self) -> str:
        return f"{self.args[0]} {self.args[2]}" if self.args[2] else str(self)


class InputError(_NamesTheFix, ValueError):
    """Bad input (a ValueError) whose message names the fix; :meth:`for_cli` names it as command-line flags."""


class InputWarning(_NamesTheFix, UserWarning):
    """Legal but probably unintended input. Filter all of the package's input warnings with
    ``warnings.simplefilter("ignore", InputWarning)`` or one kind by its subclass."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(warning: Warning) -> None:
    """``warnings.warn`` attributed to the first caller outside this package: the warning names the user's line
    (the notebook cell, the script) rather than ours, and repeats from one such line are shown once."""
    frame, level = sys._getframe(1), 2  # stacklevel 2 = warn_user's caller
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)


# ----------------------------------------------------------------------------------------------- checks
def check_frame_count(num_frames: int) -> int:
    """Raise unless ``num_frames`` is ``4k + 1`` (Wan's VAE: frame 0 alone, then groups of 4)."""
    if num_frames < 1 or (num_frames - 1) % 4 != 0:
        lo = max(1, (num_frames - 1) // 4 * 4 + 1)
        raise InputError(
            f"frame count {num_frames} is not of the form 4k+1 (Wan's VAE compresses time by 4 after the first "
            "frame).", f"Use {lo} or {lo + 4} frames, e.g. sample_frames(video, {lo + 4 if lo < 5 else lo}).",
            cli=f"Use --frames {lo} or --frames {lo + 4}.")
    return num_frames


def check_size(height: int, width: int) -> tuple[int, int]:
    """Raise unless ``height`` and ``width`` are positive multiples of 16 (VAE x8 times 2x2 patches)."""
    if height <= 0 or width <= 0 or height % 16 or width % 16:
        fix_h, fix_w = max(16, height // 16 * 16), max(16, width // 16 * 16)
        raise InputError(
            f"size {height}x{width} (HxW) is not a multiple of 16.",
            f"Resize/crop to e.g. {fix_h}x{fix_w} with resize_and_crop(video, {fix_h}, {fix_w}).",
            cli=f"Use e.g. --height {fix_h} --width {fix_w} (the clip is resized to cover that size, then "
                "centre-cropped).")
    return height, width


def _unit_range(x: np.ndarray, name: str) -> np.ndarray:
    """uint8 -> /255; float must already lie in [0, 1]. Returns float32."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    dtype, x = x.dtype, x.astype(np.float32, copy=False)
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise InputError(f"{name} values must lie in [0, 1], got [{lo:.3f}, {hi:.3f}] ({dtype}).",
                         "If it is in [-1, 1] use from_model(); if it is 0..255 pass uint8 or divide by 255.")
    return x


def check_video(video: np.ndarray, name: str = "video") -> np.ndarray:
    """Validate the package's convention: float ``(T, H, W, 3)`` in ``[0, 1]``; returns it as float32.

    uint8 input is accepted and scaled by 1/255 (an unambiguous fix). An alpha channel ``(T, H, W, 4)`` is refused:
    what lies behind transparent pixels is the caller's choice (:func:`composite_alpha`).
    """
    video = np.asarray(video)
    if video.ndim == 3 and video.shape[-1] in (3, 4):
        raise InputError(f"{name} must be frames (T, H, W, 3), got one image of shape {video.shape}.",
                         f"For a one-frame video use {name}[None].")
    if video.ndim == 4 and video.shape[-1] == 4:
        raise InputError(f"{name} has 4 channels (RGBA, shape {video.shape}); videos are RGB (T, H, W, 3).",
                         "Choose what shows through transparent pixels: composite_alpha(video, background), "
                         "e.g. background=1.0 for white.")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise InputError(f"{name} must have shape (T, H, W, 3) with channels last, got {video.shape}.",
                         "From a (T, 3, H, W) array use video.transpose(0, 2, 3, 1).")
    return _unit_range(video, name)


def check_image(image: np.ndarray, name: str = "image", *, background: np.ndarray | None = None) -> np.ndarray:
    """Validate one image: float ``(H, W, 3)`` in ``[0, 1]`` (uint8 is scaled by 1/255); returns float32 RGB.

    RGBA ``(H, W, 4)`` is composited over ``background`` (``(H, W, 3)`` or a scalar grey) with :func:`composite_alpha`.
    Without ``background`` a fully opaque alpha is dropped (nothing is lost) and any transparency is refused: the
    package never guesses what lies behind it. :func:`loraedit_nb.inference.edit_video` passes the *source* frame
    as background, so in an edited frame transparent = unchanged source.
    """
    image = np.asarray(image)
    if image.ndim == 4 and image.shape[0] == 1:
        raise InputError(f"{name} must be one image (H, W, 3), got a one-frame batch {image.shape}.",
                         "Pass image[0].")
    if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[-1] not in (3, 4):
        raise InputError(f"{name} has shape {image.shape}: channels first.",
                         "Images are (H, W, 3): pass image.transpose(1, 2, 0).")
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        grey = " For a grey image use np.repeat(image[..., None], 3, -1)." if image.ndim == 2 else ""
        raise InputError(f"{name} must be an image of shape (H, W, 3), got {image.shape}.{grey}")
    if image.shape[-1] == 4:
        if background is None:
            alpha = _unit_range(image[..., 3], f"{name}'s alpha")
            if alpha.min() < 1:
                raise InputError(
                    f"{name} is RGBA with transparent pixels (alpha < 1 on {100 * float((alpha < 1).mean()):.0f} % "
                    "of it) and nothing was given to show through them.",
                    "Pass background= (an (H, W, 3) frame or a grey level) to check_image / composite_alpha; "
                    "edit_video does it for edited frames, with the source frame behind them.")
            return _unit_range(image[..., :3], name)
        return composite_alpha(image, background)
    return _unit_range(image, name)


def composite_alpha(rgba: np.ndarray, background: np.ndarray | float) -> np.ndarray:
    """Straight-alpha "over": ``rgb * a + background * (1 - a)`` for ``(..., 4)`` RGBA (uint8 or float in [0, 1])
    over ``background`` (an array broadcastable to ``(..., 3)`` in [0, 1], or a scalar grey) -> float32 ``(..., 3)``.
    """
    rgba = np.asarray(rgba)
    if rgba.shape[-1] != 4:
        raise InputError(f"composite_alpha takes RGBA (..., 4), got {rgba.shape}.")
    x = _unit_range(rgba, "RGBA image")
    bg = np.asarray(background, np.float32)
    if bg.ndim and bg.shape[-1] == 4:
        bg = bg[..., :3]
    try:
        bg = np.broadcast_to(bg, x.shape[:-1] + (3,))
    except ValueError:
        raise InputError(f"the background {bg.shape} does not fit the RGBA image {rgba.shape}.",
                         "Give a frame of the same height and width (resize/crop it first) or a scalar grey."
                         ) from None
    a = x[..., 3:]
    return (x[..., :3] * a + bg * (1 - a)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- reading
def read_image(path: str | os.PathLike, *, alpha: bool = False) -> np.ndarray:
    """Read one image file as float32 ``(H, W, 3)`` in ``[0, 1]`` (grey expanded to RGB).

    Transparency is never dropped silently (PIL would show black behind it): an opaque alpha channel is dropped,
    an image with transparent pixels is refused, unless ``alpha=True``, which returns ``(H, W, 4)`` RGBA (straight
    alpha) for the caller to composite, e.g. an edited frame passed to ``edit_video`` (transparent = unchanged
    source).
    """
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    with Image.open(path) as im:
        if "A" in im.getbands() or "transparency" in im.info:  # RGBA, LA, or a palette with a transparent index
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
            if alpha and rgba[..., 3].min() < 1:
                return rgba
            if rgba[..., 3].min() < 1:
                raise InputError(
                    f"{path.name} has transparent pixels (alpha < 1 on {100 * float((rgba[..., 3] < 1).mean()):.0f}"
                    " % of it); reading it as RGB would turn them black.",
                    "Flatten it onto a background in your image editor, or read it with read_image(path, "
                    "alpha=True) and composite it (composite_alpha; edit_video does so with the source frame).")
            return rgba[..., :3]
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read a video file (mp4/webm/mov/mkv/avi/gif) or a folder of PNG/JPG frames (sorted by name).

    Returns ``(video, fps)`` with ``video`` float32 ``(T, H, W, 3)`` in ``[0, 1]``. A folder has no frame rate: 24 is
    returned.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path} (give a video file or a folder of PNG/JPG frames)")
    if path.is_dir():
        files = sorted(f for f in glob.glob(str(path / "*")) if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise ValueError(f"folder {path} holds no frames with extensions {IMAGE_EXTS}")
        files = files[:max_frames] if max_frames else files
        frames = [read_image(f) for f in files]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"frames in {path} differ in size: {sorted(shapes)}; resize them to one size first")
        return np.stack(frames), 24.0
    ext = path.suffix.lower()
    if ext == ".gif":
        import imageio.v3 as iio
        from PIL import Image

        with Image.open(path) as im:
            fps = 1000.0 / im.info.get("duration", 100) if im.info.get("duration") else 10.0
        arr = iio.imread(path, index=None)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.shape[-1] == 4 and arr[..., 3].min() < 255:
            raise InputError(f"{path.name} has transparent pixels; reading it as RGB would invent what lies behind.",
                             "Flatten it onto a background first (e.g. ffmpeg -i in.gif -vf format=rgb24 out.mp4).")
        video = arr[..., :3].astype(np.float32) / 255.0
    elif ext in VIDEO_EXTS:
        video, fps = _read_ffmpeg(path, max_frames)
    else:
        raise ValueError(f"unsupported video file {path}: use one of {VIDEO_EXTS} or a folder of frames")
    if max_frames:
        video = video[:max_frames]
    if len(video) == 0:
        raise ValueError(f"video {path} has no frames")
    return video, fps


def _read_ffmpeg(path: Path, max_frames: int | None) -> tuple[np.ndarray, float]:
    """Decode with imageio-ffmpeg (its own ffmpeg binary; mediapy's reader passes options ffmpeg >= 8 rejects)."""
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
        w, h = meta["size"]
        frames = []
        for buf in gen:
            frames.append(np.frombuffer(buf, np.uint8).reshape(h, w, 3))
            if max_frames and len(frames) >= max_frames:
                break
        gen.close()
    except Exception as e:  # ffmpeg's own message is long; say what failed first
        raise ValueError(f"could not decode video {path}: {str(e)[-500:]}") from e
    if not frames:
        raise ValueError(f"video {path} has no frames")
    return np.stack(frames).astype(np.float32) / 255.0, float(meta.get("fps") or 24.0)


def _write_ffmpeg(path: Path, u8: np.ndarray, fps: float) -> None:
    import imageio_ffmpeg

    T, H, W, _ = u8.shape
    w = imageio_ffmpeg.write_frames(str(path), (W, H), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                                    pix_fmt_out="yuv420p", quality=None, bitrate=None, macro_block_size=1,
                                    output_params=["-crf", "12", "-preset", "veryfast"], ffmpeg_log_level="error")
    w.send(None)
    for f in u8:
        w.send(np.ascontiguousarray(f))
    w.close()


def write_video(path: str | os.PathLike, video: np.ndarray, fps: float = 8.0, *, upscale: int = 1) -> Path:
    """Write ``video`` (float ``(T, H, W, 3)`` in [0, 1]) to ``path`` atomically (via a hidden temporary file beside
    it): ``.gif``, or H.264 (yuv420p, CRF 12: lossy) for ``.mp4``/``.mov``/``.mkv``; odd heights/widths get one
    edge-replicated row/column (H.264 needs even sizes). For a lossless copy save the array (``np.savez``).

    ``upscale`` repeats pixels (nearest) so tiny toy-world clips stay crisp in players. Returns the path.
    """
    if Path(path).suffix.lower() not in (".gif", ".mp4", ".mov", ".mkv"):
        raise InputError(f"cannot write video {path}: the extension decides the format.",
                         "Use .mp4 (H.264), .mov, .mkv or .gif.")
    video = check_video(video)
    if upscale > 1:
        video = video.repeat(upscale, axis=1).repeat(upscale, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    u8 = (np.clip(video, 0, 1) * 255 + 0.5).astype(np.uint8)
    if path.suffix.lower() == ".gif":
        import imageio.v3 as iio

        iio.imwrite(tmp, u8, duration=1000.0 / fps, loop=0)
    else:
        # H.264 with yuv420p needs even sizes; pad by edge replication rather than fail
        ph, pw = u8.shape[1] % 2, u8.shape[2] % 2
        if ph or pw:
            u8 = np.pad(u8, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        _write_ffmpeg(tmp, u8, fps)
    os.replace(tmp, path)
    return path


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write one float ``(H, W, 3)`` image in [0, 1] (or ``(H, W, 4)`` RGBA, kept as RGBA) to ``path``, 8 bits per
    channel, in the format its extension names (PNG lossless, JPG lossy). Creates the folder; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


# ----------------------------------------------------------------------------------------------- sampling/cropping
def sample_indices(total: int, num_frames: int) -> np.ndarray:
    """Uniform temporal sampling as in the official code: index ``i * total / num_frames`` (first frame kept)."""
    check_frame_count(num_frames)
    if total < num_frames:
        fit = max(1, (total - 1) // 4 * 4 + 1)
        raise InputError(f"the video has {total} frames, fewer than the {num_frames} asked for.",
                         f"Ask for {fit} frames instead.", cli=f"Use --frames {fit}.")
    return (np.arange(num_frames) * total / num_frames).astype(int)


def sample_frames(video: np.ndarray, num_frames: int) -> np.ndarray:
    """Uniformly pick ``num_frames`` (4k+1) frames of ``video`` ``(T, H, W, 3)`` -> ``(num_frames, H, W, 3)``."""
    return video[sample_indices(len(video), num_frames)]


def resize_and_crop(video: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to cover ``height x width`` (keeping aspect), then centre-crop. Works on ``(T,H,W,C)`` or ``(H,W,C)``.

    Sizes must be multiples of 16 (see :func:`check_size`). Area interpolation when shrinking, linear when growing.
    """
    import cv2

    check_size(height, width)
    single = video.ndim == 3
    frames = video[None] if single else video
    h0, w0 = frames.shape[1:3]
    scale = max(height / h0, width / w0)
    nh, nw = max(height, round(h0 * scale)), max(width, round(w0 * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    top, left = (nh - height) // 2, (nw - width) // 2
    out = []
    for f in frames:
        r = f if (nh, nw) == (h0, w0) else cv2.resize(f, (nw, nh), interpolation=interp)
        if r.ndim == 2:
            r = r[..., None]
        out.append(r[top : top + height, left : left + width])
    out = np.stack(out).astype(frames.dtype, copy=False)
    return out[0] if single else out


def prepare_video(video: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
    """Sample ``num_frames`` (4k+1) uniformly, then resize-to-cover and centre-crop to ``height x width``."""
    return resize_and_crop(sample_frames(check_video(video), num_frames), height, width)


# ----------------------------------------------------------------------------------------------- model boundary
def to_model(video: np.ndarray, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(T, H, W, 3)`` in [0, 1] -> diffusers' ``(1, 3, T, H, W)`` in [-1, 1]."""
    video = check_video(video)
    t = torch.from_numpy(np.ascontiguousarray(video)).permute(3, 0, 1, 2)[None]
    return (t * 2 - 1).to(device=device, dtype=dtype)


def from_model(tensor: torch.Tensor) -> np.ndarray:
    """diffusers' ``(1, 3, T, H, W)`` (or ``(3, T, H, W)``) in [-1, 1] -> ``(T, H, W, 3)`` float32 in [0, 1]."""
    if tensor.ndim == 5:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected batch size 1, got {tensor.shape[0]}; convert items one by one")
        tensor = tensor[0]
    x = ((tensor.detach().float().cpu() + 1) / 2).clamp(0, 1)
    return x.permute(1, 2, 3, 0).numpy()


# ----------------------------------------------------------------------------------------------- display
def show_video(video: np.ndarray, *, title: str | None = None, fps: float = 8.0, height: int | None = 192, **kw):
    """Play one video inline in a notebook (wraps ``mediapy.show_video``); small clips are scaled up to ``height``."""
    return _mediapy().show_video(check_video(video), title=title, fps=fps, height=height, **kw)


def show_videos(videos: Mapping[str, np.ndarray] | Sequence[np.ndarray], *, fps: float | None = None,
                height: int | None = 192, columns: int | None = None, **kw):
    """Play several videos side by side (wraps ``mediapy.show_videos``); accepts ``{title: video}``.

    ``fps`` None: 8 frames per second, or 4 for clips of 9 frames or fewer (the toy world's), which would otherwise
    loop every second — too fast to see what happens to frame 0 or a colour that changes over time."""
    if isinstance(videos, Mapping):
        videos = {k: check_video(v, k) for k, v in videos.items()}
        longest = max((len(v) for v in videos.values()), default=0)
    else:
        videos = [check_video(v) for v in videos]
        longest = max((len(v) for v in videos), default=0)
    if fps is None:
        fps = 4.0 if longest <= 9 else 8.0
    return _mediapy().show_videos(videos, fps=fps, height=height, columns=columns, **kw)


def show_images(images: Mapping[str, np.ndarray], *, height: int | None = 160, **kw):
    """Show images side by side (wraps ``mediapy.show_images``)."""
    return _mediapy().show_images(dict(images), height=height, **kw)


def hstack(*videos: np.ndarray, gap: int = 2, labels: Sequence[str] | None = None, scale: int = 1) -> np.ndarray:
    """Concatenate equal-length videos side by side with a white ``gap`` -> one comparison video.

    ``scale``: repeat pixels (nearest) first, so 32 px toy clips stay legible. ``labels``: one caption per panel,
    written in a white band above it (the text shrinks, then is cut with "...", to fit its panel), so a multi-panel
    video says what each panel is. Returns float ``(T, H', W', 3)`` in [0, 1]."""
    if len({v.shape[0] for v in videos}) != 1 or len({v.shape[1] for v in videos}) != 1:
        raise ValueError(f"videos must share T and H to be stacked, got {[v.shape for v in videos]}")
    if labels is not None and len(labels) != len(videos):
        raise ValueError(f"give one label per video: {len(labels)} labels for {len(videos)} videos")
    videos = tuple(check_video(v) for v in videos)
    if scale > 1:
        videos = tuple(v.repeat(scale, axis=1).repeat(scale, axis=2) for v in videos)
    T, H = videos[0].shape[:2]
    parts = []
    for i, v in enumerate(videos):
        if i:
            parts.append(np.ones((T, H, gap, 3), np.float32))
        parts.append(v)
    out = np.concatenate(parts, axis=2)
    if labels is None:
        return out
    import cv2

    band = np.full((18, out.shape[2], 3), 255, np.uint8)
    font, x = cv2.FONT_HERSHEY_SIMPLEX, 0
    for v, text in zip(videos, labels, strict=True):
        w = v.shape[2]

        def width(t: str, size: float) -> int:
            return cv2.getTextSize(t, font, size, 1)[0][0]

        size = 0.42
        while size > 0.3 and width(text, size) > w - 4:
            size -= 0.02
        while len(text) > 4 and width(text, size) > w - 4:  # still too long: cut it
            text = text[:-4].rstrip() + "..."
        cv2.putText(band, text, (x + max(2, (w - width(text, size)) // 2), 13), font, size, (25, 25, 25), 1,
                    cv2.LINE_AA)
        x += w + gap
    band = band.astype(np.float32) / 255
    return np.concatenate([np.repeat(band[None], T, 0), out], axis=1)
