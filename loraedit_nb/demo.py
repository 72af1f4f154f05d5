"""The main job (``make demo`` / ``python -m loraedit_nb demo``): the notebooks' pipeline, headless, on the
embedded default backbone. Writes videos, pictures and a report under ``outputs/``.

Stages: (1) the shipped real clip — source, mask, the condition LoRA-Edit feeds the model for training
(original first frame) and for inference (edited first frame), Wan's packed mask; (2) a toy-world clip with its
exact mask and ground-truth edit, and what the *un-tuned* toy I2V model makes of it (plain I2V, and with the
spatial mask — the paper's Fig. 2 question); (3) the five notebooks, executed headless; (4) LoRA-Edit on that
clip: the motion-regime LoRA notebook 02 trained on it (trained here when notebook 02 did not make it), then the
edit from the edited first frame, scored against the exact ground truth.

Nothing stops the run: a stage or notebook that fails (an error, a cell past its timeout, a dead kernel) is
reported and the rest still run. ``report.md`` / ``report.json`` are rewritten after every stage and notebook, so
they exist whatever happens; :func:`run_demo` returns the names of what failed.
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
from .notebook_runner import Heartbeat
from .video import hstack, write_image, write_video
from .viz import frames_strip, packed_mask_image, upscale

NOTEBOOK_CELL_TIMEOUT = 600  # seconds per cell; every notebook cell takes well under a minute on 2 idle cores


def run_demo(out: str | Path = "outputs", backbone: str = "toy", seed: int = 0, notebooks: bool = True, *,
             stages: bool = True, notebook_paths: list[Path] | None = None,
             cell_timeout: int | None = NOTEBOOK_CELL_TIMEOUT) -> list[str]:
    """Run the main job into ``out``; returns what failed (stage or notebook names; empty = all ok).

    ``stages=False`` skips the package-level stages 1, 2 and 4 (only the notebooks run); ``notebook_paths`` runs those
    notebooks instead of the five; ``cell_timeout`` is nbclient's per-cell limit in seconds (None: no limit)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rep: dict = {"backbone": backbone, "seed": seed, "stages": {}, "failed": []}
    sections: dict[str, list[str]] = {}

    def write_report(final: bool = False) -> None:
        rep["wall_seconds"] = round(time.time() - t0, 1)
        head = ["# loraedit_nb demo report", "", f"Backbone: `{backbone}`. Seed {seed}.", ""]
        if rep["failed"]:
            head += [f"**FAILED: {', '.join(rep['failed'])}** (details below).", ""]
        tail = [f"Wall time: {rep['wall_seconds']} s{'' if final else ' so far (still running)'}."]
        body = [ln for k in ("sample", "toyworld", "notebooks", "lora_edit") for ln in sections.get(k, [])]
        (out / "report.json").write_text(json.dumps(rep, indent=1, default=str))
        (out / "report.md").write_text("\n".join(head + body + tail) + "\n")

    def stage(name: str, fn) -> None:
        print(f"stage {name} ...", flush=True)
        t = time.time()
        try:
            with Heartbeat(f"stage {name}", 0 if name == "notebooks" else 20):  # notebooks print their own
                fn()
        except Exception as e:  # report it and go on: one broken stage must not hide the others' results
            rep["failed"].append(f"stage {name}")
            rep["stages"][name] = {"error": f"{type(e).__name__}: {e}"}
            sections[name] = [f"## Stage {name}: FAILED", "", f"`{type(e).__name__}: {e}`", ""]
            print(f"  stage {name} FAILED: {type(e).__name__}: {e}", flush=True)
        else:
            print(f"  stage {name}: {time.time() - t:.1f} s", flush=True)
        write_report()

    ctx: dict = {}
    write_report()
    if stages:
        stage("sample", lambda: _stage_sample(out, backbone, ctx, rep, sections))
        stage("toyworld", lambda: _stage_toyworld(out, seed, ctx, rep, sections))
    if notebooks:
        stage("notebooks", lambda: _stage_notebooks(out, notebook_paths, cell_timeout, rep, sections, write_report))
    if stages:
        stage("lora_edit", lambda: _stage_lora_edit(out, seed, ctx, rep, sections))
    write_report(final=True)
    print((out / "report.md").read_text())
    return rep["failed"]


def _stage_sample(out: Path, backbone: str, ctx: dict, rep: dict, sections: dict) -> None:
    # 1. the real sample: what LoRA-Edit feeds the model
    bb = ctx["bb"] = load_backbone(backbone)
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
    write_video(d / "comparison.mp4", hstack(s.video, masks.overlay(s.video, s.mask), cond_infer,
                                             labels=("source", "mask (red = edit)", "condition (editing)")), fps)
    write_image(d / "edited_first_frame.png", s.edited_first_frame)
    write_image(d / "packed_mask.png", packed_mask_image(packed[:, : bb.geometry.temporal], scale=1))
    keep_frac = float(packed[0, :4].mean())
    rep["stages"]["sample"] = {"video": list(s.video.shape), "mask_fraction": float(s.mask.mean()),
                               "condition": list(packed.shape), "packed_keep_fraction": keep_frac}
    sections["sample"] = [
        "## 1. Real clip (Big Buck Bunny, CC-BY): the condition", "",
        f"- source {s.video.shape[0]} frames {s.video.shape[1]}x{s.video.shape[2]}; mask covers "
        f"{100 * s.mask.mean():.1f} % of pixels (True = edit)",
        f"- condition tensor `{tuple(packed.shape)}` = 4 mask channels + {packed.shape[1] - 4} latent "
        f"channels; {100 * keep_frac:.1f} % of packed mask cells are 'keep'",
        "- files: `sample/source.mp4`, `sample/mask_overlay.mp4`, `sample/condition_training.mp4` "
        "(original first frame, region grey), `sample/condition_inference.mp4` (edited first frame), "
        "`sample/comparison.mp4`, `sample/packed_mask.png`", ""]


def _stage_toyworld(out: Path, seed: int, ctx: dict, rep: dict, sections: dict) -> None:
    # 2. the toy world: exact ground truth, and the un-tuned model's answer
    from .data import load_clip

    bb = ctx["bb"]
    dflt = bb.defaults
    size, frames = dflt.get("height", 32), dflt.get("num_frames", 9)
    # notebook 02's clip (scene 11, object mask grown by 1 px), with a recolour edit: stage 3 reuses its LoRA
    clip = ctx["clip"] = load_clip("toy", frames=frames, height=size, width=size, scene_seed=11, mask_dilate=1,
                                   kind="recolour")
    scene, edit, region = clip.edit.source, clip.edit, clip.mask
    d = out / "toyworld"
    up, tfps = 4, dflt.get("fps", 6)
    i2v = generate(bb, scene.video, i2v_edit_mask(*scene.mask.shape), edit.edited_frames[0], prompt=edit.caption,
                   seed=seed, progress=False)
    spatial = generate(bb, scene.video, region, edit.edited_frames[0], prompt=edit.caption, seed=seed,
                       progress=False)
    write_video(d / "source.mp4", scene.video, tfps, upscale=up)
    write_video(d / "gt_edit.mp4", edit.video, tfps, upscale=up)
    write_video(d / "untuned_i2v.mp4", i2v, tfps, upscale=up)
    write_video(d / "untuned_spatial_mask.mp4", spatial, tfps, upscale=up)
    write_video(d / "comparison.mp4", hstack(scene.video, masks.overlay(scene.video, region, outline=False),
                                            edit.video, i2v, spatial, scale=up,
                                            labels=("source", "mask", "true edit", "plain I2V", "spatial mask")), tfps)
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
    sections["toyworld"] = [
        "## 2. Toy world: the un-tuned toy I2V model", "",
        f"Source caption: *{scene.caption}*. Edit (recolour): *{edit.caption}*.", "",
        "| run | PSNR vs GT edit (dB) | PSNR keep region vs source (dB) |", "|---|---|---|",
        f"| plain I2V from the edited first frame | {stats['psnr_i2v_vs_gt']:.2f} | "
        f"{stats['psnr_keep_region_i2v']:.2f} |",
        f"| + spatial mask (background given) | {stats['psnr_spatial_vs_gt']:.2f} | "
        f"{stats['psnr_keep_region_spatial']:.2f} |", "",
        "Files: `toyworld/comparison.mp4` (source | mask | ground-truth edit | plain I2V | with spatial mask), "
        "`toyworld/strip.png`.", ""]


def _stage_notebooks(out: Path, paths, cell_timeout, rep: dict, sections: dict, write_report) -> None:
    # 3. the notebooks, executed headless; the report is rewritten after each one
    from .notebook_runner import run_all

    def on_result(runs) -> None:
        rep["stages"]["notebooks"] = {r.name: {"status": r.status, "seconds": r.seconds, "error": r.error}
                                      for r in runs}
        rep["failed"] = [f for f in rep["failed"] if not f.startswith("notebook ")]
        rep["failed"] += [f"notebook {r.name}" for r in runs if r.error]
        sections["notebooks"] = (
            ["## 3. Notebooks (executed headless; executed copies and HTML in `notebooks/`)", "",
             "| notebook | status | wall time (s) |", "|---|---|---|"]
            + [f"| {r.name} | {r.status} | {r.seconds} |" for r in runs] + [""]
            + [f"- **{r.name}** failed: {r.error.splitlines()[0][:500]}" for r in runs if r.error]
            + ([""] if any(r.error for r in runs) else []))
        write_report()

    run_all(out / "notebooks", paths, timeout=cell_timeout, on_result=on_result)


def _reused_notebook02_lora(bb, clip) -> Path | None:
    """Notebook 02's motion LoRA when it was trained on exactly this clip with these weights (its clip.json)."""
    from .data import load_clip
    from .models import DATA_DIR

    saved = DATA_DIR.parent / "outputs" / "notebooks" / "02"
    if not (saved / "clip.json").exists() or not (saved / "lora").exists():
        return None
    p = json.loads((saved / "clip.json").read_text())
    if p.get("BACKBONE") != "toy" or p.get("CLIP") != "toy" or p.get("WEIGHTS") != bb.fingerprint():
        return None
    theirs = load_clip("toy", frames=p["FRAMES"], height=p["HEIGHT"], width=p["WIDTH"],
                       scene_seed=p["SCENE_SEED"], mask_dilate=p["MASK_DILATE"])
    same = (theirs.video.shape == clip.video.shape and np.array_equal(theirs.video, clip.video)
            and np.array_equal(theirs.mask, clip.mask) and theirs.prompt == clip.prompt)
    return saved / "lora" if same else None


def _stage_lora_edit(out: Path, seed: int, ctx: dict, rep: dict, sections: dict) -> None:
    # 4. LoRA-Edit on the same toy clip: motion-regime LoRA (notebook 02's when it matches), then the edit
    from .comparisons import Case, run_variant
    from .inference import EditResult, save_edit

    bb, clip = ctx["bb"], ctx["clip"]
    scene, edit, region = clip.edit.source, clip.edit, clip.mask
    tfps, up = bb.defaults.get("fps", 6), 4
    case = Case("demo_recolour", "recolour", scene.video, region, edit.video, dict(edit.edited_frames),
                scene.caption, edit.caption, edit.mask)
    d = out / "lora_edit"
    reused = _reused_notebook02_lora(bb, clip)
    cache = {(case.name, "motion"): (reused, 0.0)} if reused is not None else None
    res = {v: run_variant(bb, case, v, seed=seed, lora_cache=cache) for v in ("untuned", "motion")}
    lora_video = res["motion"].pop("video")
    base_video = res["untuned"].pop("video")
    save_edit(EditResult(lora_video, seed, edit.caption), d / "edited.mp4", scene.video, region, fps=tfps, upscale=up)
    write_video(d / "vs_ground_truth.mp4", hstack(scene.video, edit.video, base_video, lora_video, scale=up,
                                                  labels=("source", "true edit", "un-tuned", "LoRA-Edit")), tfps)
    rep["stages"]["lora_edit"] = res | {"lora": str(reused) if reused else "trained here"}
    m, b = res["motion"], res["untuned"]
    how = (f"the motion LoRA notebook 02 trained on this clip (`{reused}`), reused" if reused else
           "a motion-regime LoRA trained here with the toy defaults (notebook 02's was not there to reuse)")
    sections["lora_edit"] = [
        "## 4. LoRA-Edit on the toy clip", "", f"LoRA: {how}.", "",
        "| | un-tuned I2V | LoRA-Edit |", "|---|---|---|",
        f"| edit-region PSNR vs ground-truth edit (dB) | {b['gt_psnr_region']:.2f} | {m['gt_psnr_region']:.2f} |",
        f"| background PSNR vs source (dB) | {b['bg_psnr']:.2f} | {m['bg_psnr']:.2f} |",
        f"| whole-frame PSNR vs ground truth (dB) | {b['gt_psnr']:.2f} | {m['gt_psnr']:.2f} |",
        f"| edit pixels within 0.35 (RGB) of the true edit, frames ≥ 1 | {b['gt_near_share']:.2f} | "
        f"{m['gt_near_share']:.2f} |",
        f"| frames where the edit vanished (of {len(scene.video) - 1}) | {b['vanished_frames']} | "
        f"{m['vanished_frames']} |",
        f"| seconds (edit{'' if reused else ' incl. LoRA training'}) | {b['seconds']:.1f} | {m['seconds']:.1f} |", "",
        "Files: `lora_edit/edited.mp4`, `lora_edit/edited_comparison.mp4` (source | mask | edited), "
        "`lora_edit/vs_ground_truth.mp4` (source | ground truth | un-tuned | LoRA-Edit).", ""]
