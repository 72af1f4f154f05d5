"""The main job (``make demo`` / ``python -m loraedit_nb demo``): the notebooks' pipeline, headless, on the
embedded default backbone. Writes videos, pictures and a report under ``outputs/``.

Stages: (1) the shipped real clip — source, mask, the condition LoRA-Edit feeds the model for training
(original first frame) and for inference (edited first frame), Wan's packed mask; (2) a toy-world clip with its
exact mask and ground-truth edit, and what the *un-tuned* toy I2V model makes of it (plain I2V, and with the
spatial mask — the paper's Fig. 2 question); (3) LoRA-Edit on that clip: a motion-regime LoRA, then the edit from
the edited first frame, scored against the exact ground truth.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import masks
from .conditioning import build_condition, condition_video, i2v_edit_mask
from .data import load_sample
from .evaluation import psnr
from .inference import generate
from .models import load_backbone
from .video import hstack, write_image, write_video
from .viz import frames_strip, packed_mask_image, upscale


def run_demo(out: str | Path = "outputs", backbone: str = "toy", seed: int = 0, notebooks: bool = True) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rep: dict = {"backbone": backbone, "seed": seed, "stages": {}}
    lines = ["# loraedit_nb demo report", "", f"Backbone: `{backbone}`. Seed {seed}.", ""]
    bb = load_backbone(backbone)

    # 1. the real sample: what LoRA-Edit feeds the model -------------------------------------------------
    s = load_sample()
    d = out / "sample"
    cond_train = condition_video(s.video, s.mask)  # original first frame: the motion-regime condition
    cond_infer = condition_video(s.video, s.mask, s.edited_first_frame)  # edited first frame: inference
    packed = build_condition(bb.vae, s.video, s.mask, s.edited_first_frame)
    fps = s.fps
    write_video(d / "source.mp4", s.video, fps)
    write_video(d / "mask_overlay.mp4", masks.overlay(s.video, s.mask), fps)
    write_video(d / "condition_training.mp4", cond_train, fps)
    write_video(d / "condition_inference.mp4", cond_infer, fps)
    write_video(d / "comparison.mp4", hstack(s.video, masks.overlay(s.video, s.mask), cond_infer), fps)
    write_image(d / "edited_first_frame.png", s.edited_first_frame)
    write_image(d / "packed_mask.png", packed_mask_image(packed[:, : bb.geometry.temporal], scale=1))
    keep_frac = float(packed[0, :4].mean())
    rep["stages"]["sample"] = {"video": list(s.video.shape), "mask_fraction": float(s.mask.mean()),
                               "condition": list(packed.shape), "packed_keep_fraction": keep_frac}
    lines += ["## 1. Real clip (Big Buck Bunny, CC-BY): the condition", "",
              f"- source {s.video.shape[0]} frames {s.video.shape[1]}x{s.video.shape[2]}; mask covers "
              f"{100 * s.mask.mean():.1f} % of pixels (True = edit)",
              f"- condition tensor `{tuple(packed.shape)}` = 4 mask channels + {packed.shape[1] - 4} latent "
              f"channels; {100 * keep_frac:.1f} % of packed mask cells are 'keep'",
              "- files: `sample/source.mp4`, `sample/mask_overlay.mp4`, `sample/condition_training.mp4` "
              "(original first frame, region grey), `sample/condition_inference.mp4` (edited first frame), "
              "`sample/comparison.mp4`, `sample/packed_mask.png`", ""]

    # 2. the toy world: exact ground truth, and the un-tuned model's answer -------------------------------
    from .toyworld import make_edit, render_scene, sample_scene

    dflt = bb.defaults
    size, frames = dflt.get("height", 32), dflt.get("num_frames", 9)
    spec = sample_scene(seed + 11, motions=("linear",))
    scene = render_scene(spec, size=size, frames=frames)
    edit = make_edit(spec, "recolour", size=size, frames=frames, seed=seed)
    d = out / "toyworld"
    up, tfps = 4, dflt.get("fps", 6)
    i2v = generate(bb, scene.video, i2v_edit_mask(*scene.mask.shape), edit.edited_frames[0], prompt=edit.caption,
                   seed=seed, progress=False)
    spatial = generate(bb, scene.video, masks.dilate(edit.mask, 1), edit.edited_frames[0], prompt=edit.caption,
                       seed=seed, progress=False)
    region = masks.dilate(edit.mask, 1)
    write_video(d / "source.mp4", scene.video, tfps, upscale=up)
    write_video(d / "gt_edit.mp4", edit.video, tfps, upscale=up)
    write_video(d / "untuned_i2v.mp4", i2v, tfps, upscale=up)
    write_video(d / "untuned_spatial_mask.mp4", spatial, tfps, upscale=up)
    write_video(d / "comparison.mp4", hstack(scene.video, masks.overlay(scene.video, region, outline=False),
                                            edit.video, i2v, spatial), tfps, upscale=up)
    write_image(d / "strip.png", upscale(np.concatenate(
        [frames_strip(v) for v in (scene.video, edit.video, i2v, spatial)], 0), up))
    keep = ~region
    stats = {
        "caption": scene.caption, "edited_caption": edit.caption,
        "psnr_i2v_vs_gt": psnr(i2v, edit.video), "psnr_spatial_vs_gt": psnr(spatial, edit.video),
        "psnr_keep_region_i2v": psnr(i2v, scene.video, keep),
        "psnr_keep_region_spatial": psnr(spatial, scene.video, keep),
        "psnr_edit_region_spatial_vs_gt": psnr(spatial, edit.video, region),
    }
    rep["stages"]["toyworld"] = stats
    lines += ["## 2. Toy world: the un-tuned toy I2V model", "",
              f"Source caption: *{scene.caption}*. Edit (recolour): *{edit.caption}*.", "",
              "| run | PSNR vs GT edit (dB) | PSNR keep region vs source (dB) |", "|---|---|---|",
              f"| plain I2V from the edited first frame | {stats['psnr_i2v_vs_gt']:.2f} | "
              f"{stats['psnr_keep_region_i2v']:.2f} |",
              f"| + spatial mask (background given) | {stats['psnr_spatial_vs_gt']:.2f} | "
              f"{stats['psnr_keep_region_spatial']:.2f} |", "",
              "Files: `toyworld/comparison.mp4` (source | mask | ground-truth edit | plain I2V | with spatial mask), "
              "`toyworld/strip.png`.", ""]

    # 3. LoRA-Edit on the same toy clip: motion-regime LoRA, then the edit -----------------------------------
    from .comparisons import Case, run_variant
    from .inference import EditResult, save_edit

    case = Case("demo_recolour", "recolour", scene.video, region, edit.video, dict(edit.edited_frames),
                scene.caption, edit.caption)
    d = out / "lora_edit"
    res = {v: run_variant(bb, case, v, seed=seed) for v in ("untuned", "motion")}
    lora_video = res["motion"].pop("video")
    base_video = res["untuned"].pop("video")
    save_edit(EditResult(lora_video, seed, edit.caption), d / "edited.mp4", scene.video, region, fps=tfps, upscale=up)
    write_video(d / "vs_ground_truth.mp4", hstack(scene.video, edit.video, base_video, lora_video), tfps, upscale=up)
    rep["stages"]["lora_edit"] = res
    m, b = res["motion"], res["untuned"]
    lines += ["## 3. LoRA-Edit on the toy clip (motion-regime LoRA, toy defaults)", "",
              "| | un-tuned I2V | LoRA-Edit |", "|---|---|---|",
              f"| edit-region PSNR vs ground-truth edit (dB) | {b['gt_psnr_region']:.2f} | {m['gt_psnr_region']:.2f} |",
              f"| background PSNR vs source (dB) | {b['bg_psnr']:.2f} | {m['bg_psnr']:.2f} |",
              f"| whole-frame PSNR vs ground truth (dB) | {b['gt_psnr']:.2f} | {m['gt_psnr']:.2f} |",
              f"| seconds (incl. LoRA training) | {b['seconds']:.1f} | {m['seconds']:.1f} |", "",
              "Files: `lora_edit/edited.mp4`, `lora_edit/edited_comparison.mp4` (source | mask | edited), "
              "`lora_edit/vs_ground_truth.mp4` (source | ground truth | un-tuned | LoRA-Edit).", ""]

    # 4. the five notebooks, executed headless -----------------------------------------------------------------
    if notebooks:
        from .notebook_runner import run_all

        nb_times = run_all(out / "notebooks")
        rep["stages"]["notebooks"] = nb_times
        lines += ["## 4. Notebooks (executed headless; HTML copies in `notebooks/`)", "",
                  "| notebook | wall time (s) |", "|---|---|"] + [f"| {k} | {v} |" for k, v in nb_times.items()] + [""]

    rep["wall_seconds"] = round(time.time() - t0, 1)
    lines.append(f"Wall time: {rep['wall_seconds']} s.")
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out
