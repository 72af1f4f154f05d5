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


@dataclass
class Clip:
    """A clip ready for the notebooks at a chosen size: source, mask (True = edit), the user's edited frames and,
    for the toy world, the exact ground-truth edit (``edit``: the :class:`~loraedit_nb.toyworld.Edit`)."""

    video: np.ndarray
    mask: np.ndarray
    ground_truth: np.ndarray | None
    prompt: str
    edited_prompt: str
    edited_frames: dict[int, np.ndarray]
    edit: object | None = None


def load_clip(clip: str = "toy", *, frames: int, height: int, width: int, scene_seed: int = 11,
              mask_dilate: int = 1, kind: str = "colour_shift") -> Clip:
    """``"toy"``: toy-world scene ``scene_seed`` (linear motion) with a ``kind`` edit, mask = the edit region grown
    by ``mask_dilate`` px (square: ``height`` must equal ``width``). ``"bunny"``: the shipped real clip and its edited
    first frame, sampled and cropped to ``frames x height x width``."""
    from .video import prepare_video, resize_and_crop

    if clip == "toy":
        from .toyworld import make_edit, sample_scene
        from .video import InputError

        if height != width:  # the toy world renders square clips only: never hand back another size than asked
            raise InputError(f"the toy clip is square, but height={height} and width={width} were asked for.",
                             f"Use height=width (e.g. {height}), or clip='bunny' for another aspect.")

        e = make_edit(sample_scene(scene_seed, motions=("linear",)), kind, size=height, frames=frames)
        return Clip(e.source.video, masks.dilate(e.mask, mask_dilate), e.video, e.source.caption, e.caption,
                    dict(e.edited_frames), e)
    if clip == "bunny":
        s = load_sample()
        return Clip(prepare_video(s.video, frames, height, width), masks.prepare_mask(s.mask, frames, height, width),
                    None, s.source_prompt, s.prompt, {0: resize_and_crop(s.edited_first_frame, height, width)})
    raise ValueError(f"clip must be 'toy' or 'bunny', got {clip!r}")


def data_path(*parts: str) -> Path:
    return DATA_DIR.joinpath(*parts)
