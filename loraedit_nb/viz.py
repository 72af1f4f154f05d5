"""Pictures of the tensors the model sees (for notebooks and the demo report)."""

from __future__ import annotations

import numpy as np
import torch


def packed_mask_image(packed: torch.Tensor, *, scale: int = 4, gap: int = 1) -> np.ndarray:
    """Wan's packed mask ``(1, 4, T_lat, h, w)`` (1 = keep) as one grey image: rows = the 4 mask channels,
    columns = latent frames; white = keep, black = generate. Returns float ``(H, W, 3)`` in [0, 1]."""
    m = packed[0].detach().float().cpu().numpy()  # (4, L, h, w)
    C, L, h, w = m.shape
    H, W = C * (h * scale + gap) - gap, L * (w * scale + gap) - gap
    img = np.full((H, W), 0.5, np.float32)
    for c in range(C):
        for t in range(L):
            tile = np.kron(m[c, t], np.ones((scale, scale), np.float32))
            y, x = c * (h * scale + gap), t * (w * scale + gap)
            img[y : y + h * scale, x : x + w * scale] = tile
    return np.repeat(img[..., None], 3, -1)


def frames_strip(video: np.ndarray, every: int = 1, gap: int = 1) -> np.ndarray:
    """Frames ``0, every, 2*every, ...`` of a ``(T, H, W, 3)`` video side by side, as one image."""
    frames = list(video[::every])
    H = frames[0].shape[0]
    parts = []
    for i, f in enumerate(frames):
        if i:
            parts.append(np.ones((H, gap, 3), np.float32))
        parts.append(f)
    return np.concatenate(parts, 1)


def upscale(video: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of a ``(..., H, W, 3)`` array so tiny clips stay crisp on screen."""
    return video.repeat(factor, axis=-3).repeat(factor, axis=-2) if factor > 1 else video
