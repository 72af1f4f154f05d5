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


# ----------------------------------------------------------------------------------------------- checks
def check_frame_count(num_frames: int) -> int:
    """Raise unless ``num_frames`` is ``4k + 1`` (Wan's VAE: frame 0 alone, then groups of 4)."""
    if num_frames < 1 or (num_frames - 1) % 4 != 0:
        lo = max(1, (num_frames - 1) // 4 * 4 + 1)
        raise ValueError(
            f"frame count {num_frames} is not of the form 4k+1 (Wan's VAE compresses time by 4 after the first "
            f"frame). Use {lo} or {lo + 4}, e.g. sample_frames(video, {lo + 4 if lo < 5 else lo})."
        )
    return num_frames


def check_size(height: int, width: int) -> tuple[int, int]:
    """Raise unless ``height`` and ``width`` are positive multiples of 16 (VAE x8 times 2x2 patches)."""
    if height <= 0 or width <= 0 or height % 16 or width % 16:
        fix_h, fix_w = max(16, height // 16 * 16), max(16, width // 16 * 16)
        raise ValueError(
            f"size {height}x{width} (HxW) is not a multiple of 16. Resize/crop to e.g. {fix_h}x{fix_w} with "
            f"resize_and_crop(video, {fix_h}, {fix_w})."
        )
    return height, width


def check_video(video: np.ndarray, name: str = "video") -> np.ndarray:
    """Validate the package's convention: float ``(T, H, W, 3)`` in ``[0, 1]``; returns it as float32.

    uint8 input is accepted and scaled by 1/255 (an unambiguous fix).
    """
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (T, H, W, 3), got {video.shape}. For one image use image[None].")
    if video.dtype == np.uint8:
        return video.astype(np.float32) / 255.0
    video = video.astype(np.float32, copy=False)
    lo, hi = float(video.min()), float(video.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(
            f"{name} values must lie in [0, 1], got [{lo:.3f}, {hi:.3f}]. If it is in [-1, 1] use "
            "from_model(); if it is 0..255 pass uint8 or divide by 255."
        )
    return video


# ----------------------------------------------------------------------------------------------- reading
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as float32 ``(H, W, 3)`` in ``[0, 1]`` (alpha dropped, grey expanded to RGB)."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    with Image.open(path) as im:
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
    """Write ``video`` (float ``(T, H, W, 3)`` in [0, 1]) to an mp4 (H.264) or gif, atomically.

    ``upscale`` repeats pixels (nearest) so tiny toy-world clips stay crisp in players. Returns the path.
    """
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
    """Write one float ``(H, W, 3)`` image in [0, 1] as PNG/JPG."""
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
        raise ValueError(
            f"the video has {total} frames, fewer than the {num_frames} asked for; ask for "
            f"{max(1, (total - 1) // 4 * 4 + 1)} frames instead"
        )
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


def show_videos(videos: Mapping[str, np.ndarray] | Sequence[np.ndarray], *, fps: float = 8.0,
                height: int | None = 192, columns: int | None = None, **kw):
    """Play several videos side by side (wraps ``mediapy.show_videos``); accepts ``{title: video}``."""
    if isinstance(videos, Mapping):
        videos = {k: check_video(v, k) for k, v in videos.items()}
    else:
        videos = [check_video(v) for v in videos]
    return _mediapy().show_videos(videos, fps=fps, height=height, columns=columns, **kw)


def show_images(images: Mapping[str, np.ndarray], *, height: int | None = 160, **kw):
    """Show images side by side (wraps ``mediapy.show_images``)."""
    return _mediapy().show_images(dict(images), height=height, **kw)


def hstack(*videos: np.ndarray, gap: int = 2) -> np.ndarray:
    """Concatenate equal-length videos side by side with a white ``gap`` -> one comparison video."""
    if len({v.shape[0] for v in videos}) != 1 or len({v.shape[1] for v in videos}) != 1:
        raise ValueError(f"videos must share T and H to be stacked, got {[v.shape for v in videos]}")
    T, H = videos[0].shape[:2]
    parts = []
    for i, v in enumerate(videos):
        if i:
            parts.append(np.ones((T, H, gap, 3), np.float32))
        parts.append(check_video(v))
    return np.concatenate(parts, axis=2)
