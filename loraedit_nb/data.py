"""Small inputs shipped in ``data/``: the real sample clip (Big Buck Bunny, CC-BY) and its mask and edit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import masks
from .models import DATA_DIR
from .video import read_image, read_video


@dataclass
class Sample:
    """A source clip with everything a user brings to LoRA-Edit.

    ``video`` float32 ``(T, H, W, 3)`` in [0, 1]; ``mask`` bool ``(T, H, W)`` (True = edit);
    ``edited_first_frame`` ``(H, W, 3)``; prompts describe the source and the edited video.
    """

    name: str
    video: np.ndarray
    mask: np.ndarray
    edited_first_frame: np.ndarray
    prompt: str
    source_prompt: str
    fps: float


def load_sample(name: str = "bunny") -> Sample:
    """Load a shipped sample from ``data/sample`` (re-create with ``scripts/make_sample_data.py``)."""
    folder = DATA_DIR / "sample"
    meta_path = folder / "sample.json"
    if name != "bunny" or not meta_path.exists():
        raise FileNotFoundError(f"no sample {name!r} in {folder}; the shipped one is 'bunny'")
    meta = json.loads(meta_path.read_text())
    video, fps = read_video(folder / meta["video"])
    mask = masks.load(folder / meta["mask"])
    edited = read_image(folder / meta["edited_first_frame"])
    masks.check_mask(mask, video)
    return Sample(name, video, mask, edited, meta["prompt"], meta["source_prompt"], meta.get("fps", fps))


def data_path(*parts: str) -> Path:
    return DATA_DIR.joinpath(*parts)
