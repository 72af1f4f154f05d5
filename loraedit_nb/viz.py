"""Pictures of the tensors the model sees (for notebooks and the demo report)."""

from __future__ import annotations

import numpy as np
import torch


def packed_mask_image(packed: torch.Tensor, *, scale: int = 4, gap: int = 1, border: int = 2) -> np.ndarray:
    """Wan's packed mask ``(1, 4, T_lat, h, w)`` (1 = keep) as one image: rows = the 4 mask channels, columns =
    latent frames; white = keep, black = generate, tiles separated by ``gap`` and framed by ``border`` pixels of
    mid-grey (an all-white column stays visible on a white page). Returns float ``(H, W, 3)`` in [0, 1]."""
    m = packed[0].detach().float().cpu().numpy()  # (C, L, h, w)
    C, L, h, w = m.shape
    H, W = C * (h * scale + gap) - gap + 2 * border, L * (w * scale + gap) - gap + 2 * border
    img = np.full((H, W), 0.5, np.float32)
    for c in range(C):
        for t in range(L):
            tile = np.kron(m[c, t], np.ones((scale, scale), np.float32))
            y, x = border + c * (h * scale + gap), border + t * (w * scale + gap)
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


def show_masks(images: dict[str, np.ndarray], *, height: float = 2.2, cmap: str = "gray", xlabel: str | None = None,
               ylabel: str | None = None):
    """Masks (``(H, W)`` arrays in [0, 1], white = 1) side by side with matplotlib, each drawn in a dark frame so an
    all-white mask stays visible on a white page, titles wrapped so they never run into each other. Returns the
    figure (shown inline by notebooks)."""
    import textwrap

    import matplotlib.pyplot as plt

    n = len(images)
    ratios = [im.shape[1] / im.shape[0] for im in images.values()]
    fig, axes = plt.subplots(1, n, figsize=(max(sum(ratios) * height + 0.6 * n, 3.0), height + 0.8),
                             gridspec_kw={"width_ratios": ratios}, squeeze=False)
    for ax, (title, im) in zip(axes[0], images.items(), strict=True):
        ax.imshow(np.asarray(im, np.float32), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title("\n".join(textwrap.wrap(title, 28)), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(True)
            side.set_color("#444")
            side.set_linewidth(1.5)
        if xlabel:
            ax.set_xlabel(xlabel, fontsize=8)
        if ylabel:
            ax.set_ylabel(ylabel, fontsize=8)
    fig.tight_layout()
    return fig
