"""Shell workflow for rented-GPU users: the same functions the notebooks call.

    python -m loraedit_nb train --video clip.mp4 --mask mask.npz --prompt "..." --out runs/NAME [--backbone ...]
    python -m loraedit_nb edit --run runs/NAME --edited-frame first.png [--edited-frames DIR] --out edited.mp4
    python -m loraedit_nb mask --video clip.mp4 --point X,Y [--point X,Y,FRAME,neg] [--box ...] --out mask.npz

``train`` writes into the run folder: ``source.npz`` (the prepared clip exactly as trained on, float32, and its
fps: what ``edit`` reads), ``source.mp4`` (the same clip as H.264, to watch), ``mask.npz`` (the prepared mask),
``run.json`` (backbone, sizes, prompt, sampled frame indices), training checkpoints (re-running ``train`` resumes)
and the final LoRA (``lora/``, diffusers format). ``edit --out DIR/CLIP.mp4`` writes ``CLIP.mp4`` (the edit),
``CLIP_comparison.mp4`` (source | mask | edit) and ``CLIP.json`` (seed and settings) into DIR; by default
``edited.mp4``, ``edited_comparison.mp4`` and ``edited.json`` in the run folder.

User errors are printed as one line naming the fix in flags (``python -m loraedit_nb``; set
``LORAEDIT_TRACEBACK=1`` for the traceback), input warnings as one ``warning:`` line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import masks as M
from .video import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    InputError,
    InputWarning,
    check_frame_count,
    check_image,
    check_size,
    read_image,
    read_video,
    resize_and_crop,
    sample_indices,
)


@contextmanager
def in_flags():
    """Within a shell command, errors and warnings that name a fix name it as this CLI's flags (:class:`InputError`
    / :class:`InputWarning` carry both wordings), and input warnings print as one ``warning:`` line."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if isinstance(message, InputWarning):
            print(f"warning: {message.for_cli()}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)
    warnings.showwarning = show
    try:
        yield
    except InputError as e:
        raise InputError(e.problem, e.args[2] or e.args[1]) from e
    finally:
        warnings.showwarning = shown


def _mask_fix(mask_shape: tuple, video_shape: tuple, frames: int, height: int, width: int) -> tuple[str, str]:
    """(Python fix, CLI fix) for a mask that fits neither the video nor the prepared clip."""
    n, mh, mw = mask_shape
    T0, H0, W0 = video_shape
    sizes = []
    if n != frames:
        sizes.append(("frames", n))
    if (mh, mw) != (H0, W0) and (mh, mw) != (height, width):
        sizes += [("height", mh), ("width", mw)]
    try:  # only sizes that a prepared clip can have
        check_frame_count(n)
        check_size(mh, mw)
        usable = n <= T0
    except ValueError:
        usable = False
    other = f"otherwise make the mask with one frame per video frame ({T0} frames of {H0}x{W0})"
    if not usable or not sizes:
        return (f"Make the mask with one frame per video frame ({T0} frames of {H0}x{W0}), or at the prepared clip's "
                f"{frames} x {height} x {width}.", f"Make the mask with one frame per video frame ({T0} frames of "
                f"{H0}x{W0}), or at the prepared clip's {frames} x {height} x {width} (--frames/--height/--width).")
    py = ", ".join(f"{k}={v}" for k, v in sizes)
    cli = " ".join(f"--{k} {v}" for k, v in sizes)
    return (f"If it was made for a clip prepared at {n} x {mh} x {mw}, prepare at that size ({py}); {other}.",
            f"If it was made for a clip prepared at {n} x {mh} x {mw}, add {cli}; {other}.")


def prepare_clip(video_path: str, mask_path: str, frames: int, height: int, width: int
                 ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Read a video and its mask, sample ``frames`` (4k+1) uniformly and resize-to-cover + crop both the same way.

    The mask (True/white = edit) may be at the video's frame count and size, already sampled to ``frames`` at the
    video's size, or at the prepared size ``(frames, height, width)``. Returns (video float32 ``(frames, height,
    width, 3)`` in [0, 1], mask bool ``(frames, height, width)``, fps of the sampled clip, sampled indices)."""
    check_frame_count(frames)
    check_size(height, width)
    video, fps = read_video(video_path)
    mask = M.load(mask_path)
    T0, H0, W0 = video.shape[:3]
    idx = sample_indices(T0, frames)
    clip = resize_and_crop(video[idx], height, width)
    fits = {(T0, H0, W0), (frames, H0, W0), (frames, height, width)}
    if tuple(mask.shape) not in fits:
        py, cli = _mask_fix(tuple(mask.shape), (T0, H0, W0), frames, height, width)
        raise InputError(f"the mask is {mask.shape[0]} frames of {mask.shape[1]}x{mask.shape[2]} (HxW) but the video "
                         f"is {T0} frames of {H0}x{W0} and the prepared clip {frames} frames of {height}x{width}.",
                         py, cli=cli)
    m = M.prepare_mask(mask[idx] if len(mask) == T0 and len(mask) != frames else mask, frames, height, width)
    return clip, m, fps * frames / T0, idx


def read_edited_frames(folder: str | Path, frames: int) -> dict[int, np.ndarray]:
    """Edited frames from a folder, each named by its index in the *prepared* clip (``16.png``, ``00016.png``):
    ``{i: (H, W, 3)}``, or ``(H, W, 4)`` RGBA for images with transparency (composited over the source frame i by
    :func:`fit_edited_frames` / ``edit_video``: transparent = unchanged)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"edited-frames folder not found: {folder}")
    out = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        m = re.search(r"(\d+)$", p.stem)
        if not m:
            raise ValueError(f"{p.name}: name edited frames by their frame index, e.g. 00016.png")
        i = int(m.group(1))
        if i >= frames:
            raise ValueError(f"{p.name}: frame index {i} is out of range for the {frames}-frame clip (0..{frames - 1})")
        out[i] = read_image(p, alpha=True)
    if not out:
        raise ValueError(f"no image files in {folder}")
    return out


def fit_edited_frames(edited: Mapping[int, np.ndarray], video: np.ndarray, resize: bool) -> dict[int, np.ndarray]:
    """Edited frames for training on the prepared ``video``: resized/cropped like it with ``resize``, RGBA
    composited over the source frame at the same index -> ``{i: (H, W, 3)}`` float32."""
    H, W = video.shape[1:3]
    out = {}
    for i, f in edited.items():
        if f.shape[:2] != (H, W):
            if not resize:
                raise InputError(f"edited frame {i} is {f.shape[1]}x{f.shape[0]} but the prepared clip is {W}x{H} "
                                 "(WxH).", f"Pass resize_and_crop(frame, {H}, {W}) (the clip's transform).",
                                 cli=f"Add --resize-edits to resize/crop it with the clip's transform, or save it "
                                     f"at {W}x{H}.")
            f = resize_and_crop(f, H, W)
        out[i] = check_image(f, f"edited frame {i}", background=video[i])
    return out


def is_tiny_name(backbone: str) -> bool:
    from .models import TINY_BACKBONES

    return backbone in TINY_BACKBONES


def resolve_runtime(a: argparse.Namespace, backbone: str) -> tuple:
    """(dtype, device, memory preset) for a CLI run. On a CUDA machine a real backbone defaults to bfloat16 on the GPU
    with ``--memory-preset auto`` (float32 would be 91 GB of weights for the 14B model); tiny ones stay on the CPU in
    float32 unless told otherwise."""
    import torch

    real_gpu = torch.cuda.is_available() and not is_tiny_name(backbone)
    device = a.device if a.device is not None else ("cuda" if real_gpu else None)
    on_cuda = device is not None and str(device).startswith("cuda")
    dtype = a.dtype or ("bfloat16" if on_cuda and not is_tiny_name(backbone) else "float32")
    preset = a.memory_preset if a.memory_preset is not None else ("auto" if on_cuda and not is_tiny_name(backbone)
                                                                  else None)
    if preset is not None and not on_cuda and not is_tiny_name(backbone):
        raise ValueError(f"--memory-preset {preset} is for a GPU, but this run is on the CPU: add --device cuda")
    return getattr(torch, dtype), device, preset


def train_overrides(a: argparse.Namespace) -> dict:
    """TrainConfig overrides from the ``train`` flags (only those given)."""
    over = {k: v for k, v in dict(steps=a.steps, rank=a.rank, lr=a.lr, batch_size=a.batch_size, seed=a.seed,
                                   w_generate=a.w_generate, w_keep=a.w_keep, checkpoint_every=a.checkpoint_every,
                                   fp8_base=a.fp8 or None).items()
            if v is not None}
    if a.blocks_to_swap is not None:
        over["blocks_to_swap"] = a.blocks_to_swap if a.blocks_to_swap == "auto" else int(a.blocks_to_swap)
    if a.colour_aug is not None:
        over["colour_aug"] = None if a.colour_aug == "none" else a.colour_aug
    if a.adam8bit:
        over["optimizer"] = "adamw8bit"
    if a.no_grad_ckpt:
        over["gradient_checkpointing"] = False
    return over


def _must_exist(**paths: str | None) -> None:
    """Fail on a mistyped path before the (possibly minutes-long) backbone load."""
    for flag, p in paths.items():
        if p is not None and not Path(p).exists():
            raise FileNotFoundError(f"--{flag.replace('_', '-')} {p}: no such file or folder")


def cmd_train(a: argparse.Namespace) -> None:
    with in_flags():
        _train(a)


def _train(a: argparse.Namespace) -> None:
    from . import models, training
    from .regimes import appearance_samples, motion_sample
    from .video import write_video

    _must_exist(video=a.video, mask=a.mask, edited_frames=a.edited_frames)
    dtype, device, preset = resolve_runtime(a, a.backbone)
    bb = models.load_backbone(a.backbone, dtype=dtype, device=device, memory_preset=preset)  # stored as it runs
    d = bb.defaults
    frames, height, width = a.frames or d["num_frames"], a.height or d["height"], a.width or d["width"]
    check_frame_count(frames)
    check_size(height, width)
    bb.check_clip_size(frames, height, width)  # before hours of steps at a size the backbone cannot handle
    run = Path(a.out)
    video, mask, fps, idx = prepare_clip(a.video, a.mask, frames, height, width)
    M.warn_if_degenerate(mask, context="training")
    with warnings.catch_warnings():  # warn_if_degenerate said it above, in this CLI's words
        warnings.simplefilter("ignore", M.InputWarning)
        samples = [motion_sample(video, mask, a.prompt)]
    edited = {}
    if a.edited_frames:
        edited = fit_edited_frames(read_edited_frames(a.edited_frames, frames), video, a.resize_edits)
        samples += appearance_samples(video, mask, edited, a.appearance_prompt or a.prompt)
    run.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be good
    write_video(run / "source.mp4", video, fps)  # to watch (H.264, lossy)
    np.savez_compressed(run / "source.npz", video=video, fps=np.float32(fps))  # exact float32: what edit reads
    M.save_npz(run / "mask.npz", mask)
    over = train_overrides(a)
    if preset is not None:
        over["memory_preset"] = preset
    cfg = training.default_config(bb, **over)
    (run / "run.json").write_text(json.dumps({
        "backbone": a.backbone, "video": str(a.video), "mask": str(a.mask), "prompt": a.prompt, "frames": frames,
        "height": height, "width": width, "fps": fps, "source_indices": idx.tolist(),
        "memory_preset": cfg.memory_preset, "edited_frames": sorted(edited)}, indent=1))
    result = training.train_lora(bb, samples, cfg, output_dir=run)
    print(f"{training.summarize(result)}; LoRA saved to {run / 'lora'}")


def read_run_clip(run: Path) -> tuple[np.ndarray, float]:
    """The prepared clip exactly as training saw it (``source.npz``, float32); runs written before it existed only
    have the H.264 ``source.mp4`` (lossy: a note says so)."""
    if (run / "source.npz").exists():
        with np.load(run / "source.npz") as z:
            return z["video"].astype(np.float32), float(z["fps"])
    print(f"note: {run} has no source.npz (an older run): editing the H.264 source.mp4, which differs slightly "
          "from the clip trained on; re-run train to write it", file=sys.stderr)
    return read_video(run / "source.mp4")


def cmd_edit(a: argparse.Namespace) -> None:
    with in_flags():
        _edit(a)


def _edit(a: argparse.Namespace) -> None:
    from .inference import edit_video, save_edit
    from .models import load_backbone

    run = Path(a.run)
    if not (run / "run.json").exists():
        raise FileNotFoundError(f"{run} is not a run folder (no run.json): train first with "
                                f"`python -m loraedit_nb train ... --out {run}`")
    if a.out is not None and Path(a.out).suffix.lower() in set(VIDEO_EXTS + IMAGE_EXTS) - {".mp4"}:
        raise InputError(f"--out {a.out}: the edit is written as H.264.", "Give an .mp4 path or a folder.")
    _must_exist(edited_frame=a.edited_frame, edited_frames=a.edited_frames)
    info = json.loads((run / "run.json").read_text())
    backbone = a.backbone or info["backbone"]
    dtype, device, preset = resolve_runtime(a, backbone)
    bb = load_backbone(backbone, dtype=dtype, device=device, memory_preset=preset)
    video, fps = read_run_clip(run)
    mask = M.load(run / "mask.npz")
    first = read_image(a.edited_frame, alpha=True)  # RGBA: edit_video composites it over the source frame 0
    edited = read_edited_frames(a.edited_frames, len(video)) if a.edited_frames else None
    lora = None if a.no_lora else run / "lora"
    res = edit_video(bb, lora, video, mask, first, edited_frames=edited, place_edited_frames=a.place_edited_frames,
                     prompt=a.prompt if a.prompt is not None else info.get("prompt", ""), steps=a.steps,
                     guidance=a.guidance, flow_shift=a.flow_shift, seed=a.seed, composite=a.composite,
                     honour_given=a.honour_given,
                     resize_edits=a.resize_edits, vae_tiling=a.vae_tiling, vae_slicing=a.vae_tiling,
                     memory_preset=preset)
    files = save_edit(res, a.out or run / "edited.mp4", video, mask, fps=fps)
    print(f"edited video: {files['edited']}\ncomparison (source | mask | edited): {files['comparison']}\n"
          f"seed {res.seed}, {res.seconds:.1f} s")


def cmd_evaluate(a: argparse.Namespace) -> None:
    from .comparisons import CORE, VARIANTS, run_comparison, summary_table, toy_cases
    from .models import load_backbone
    from .training import toy_config

    variants = {"core": CORE, "all": VARIANTS}.get(a.variants) or tuple(a.variants.split(","))
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variants {bad}; choose from {VARIANTS} (or 'core' / 'all')")
    bb = load_backbone(a.backbone) if a.workers <= 1 else a.backbone
    cfg = toy_config(**({"steps": a.steps} if a.steps else {}))
    seeds = [int(x) for x in a.seeds.split(",")] if a.seeds else [a.seed]
    rows = run_comparison(bb, toy_cases(a.cases), variants, cfg, out=a.out, seeds=seeds, workers=a.workers)
    print(summary_table(rows, variants))
    print(f"{len(rows)} edits evaluated; results in {a.out}/results.json, table in {a.out}/results.md")


def cmd_first_frame(a: argparse.Namespace) -> None:
    """Edit frame 0 by an instruction (FLUX.1 Kontext), keeping everything outside the mask."""
    import torch

    from .first_frame import KONTEXT, change_outside, edit_first_frame, load_editor, tiny_editor
    from .video import read_image, write_image

    frame = read_image(a.image)
    mask = None
    if a.mask:
        m = M.load(a.mask)
        mask = m[0] if m.ndim == 3 else m
    if a.tiny:
        editor = tiny_editor()
    else:
        cuda = torch.cuda.is_available()
        editor = load_editor(a.editor or KONTEXT, dtype=torch.bfloat16 if cuda else torch.float32,
                             device="cuda" if cuda else "cpu", offload=cuda, fp8=a.fp8)
    out = edit_first_frame(frame, a.instruction, editor=editor, mask=mask, steps=a.steps, guidance=a.guidance,
                           seed=a.seed)
    path = write_image(a.out, out)
    where = f"; change outside the mask {change_outside(frame, out, mask):.4f}" if mask is not None else ""
    print(f"edited first frame: {path}{where}")


def parse_point(text: str):
    """``X,Y[,FRAME][,neg][,objN]`` -> :class:`loraedit_nb.segmentation.Click` (FRAME defaults to 0)."""
    from .segmentation import Click

    parts = [t.strip() for t in text.split(",") if t.strip()]
    flags = [t for t in parts[2:] if not re.fullmatch(r"-?\d+", t)]
    nums = [t for t in parts[2:] if re.fullmatch(r"-?\d+", t)]
    bad = [t for t in flags if t.lower() not in ("neg", "pos") and not re.fullmatch(r"obj\d+", t.lower())]
    try:
        x, y = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        bad = bad or [text]
    if bad or len(nums) > 1:
        raise InputError(f"--point {text}: cannot read it.", "",
                         cli="Write --point X,Y[,FRAME][,neg][,objN], e.g. --point 120,80 or --point 60,40,0,neg "
                             "(pixels of the clip as read, from the top left; FRAME defaults to 0).")
    obj = next((int(t[3:]) for t in flags if t.lower().startswith("obj")), 1)
    return Click(x, y, int(nums[0]) if nums else 0, positive="neg" not in [t.lower() for t in flags], obj=obj)


def parse_box(text: str):
    """``X0,Y0,X1,Y1[,FRAME][,objN]`` -> :class:`loraedit_nb.segmentation.BoxPrompt`."""
    from .segmentation import BoxPrompt

    parts = [t.strip() for t in text.split(",") if t.strip()]
    objs = [t for t in parts[4:] if re.fullmatch(r"obj\d+", t.lower())]
    rest = [t for t in parts[4:] if t not in objs]
    try:
        x0, y0, x1, y1 = (float(t) for t in parts[:4])
        frame = int(rest[0]) if rest else 0
        if len(rest) > 1:
            raise ValueError
    except ValueError:
        raise InputError(f"--box {text}: cannot read it.", "",
                         cli="Write --box X0,Y0,X1,Y1[,FRAME][,objN], e.g. --box 40,30,120,140 (two opposite "
                             "corners in pixels of the clip as read).") from None
    return BoxPrompt(x0, y0, x1, y1, frame, obj=int(objs[0][3:]) if objs else 1)


def cmd_mask(a: argparse.Namespace) -> None:
    """Click-to-track: SAM2 (or the flow stand-in) from points/boxes to a mask that ``train`` takes unchanged."""
    with in_flags():
        _mask(a)


def _mask(a: argparse.Namespace) -> None:
    import time

    from .segmentation import load_segmenter, segment_video
    from .video import hstack, write_video

    _must_exist(video=a.video)
    if not a.point and not a.box:
        raise InputError("no prompts.", "", cli="Add --point X,Y on the object (repeatable) or --box X0,Y0,X1,Y1.")
    prompts = [parse_point(t) for t in a.point or []] + [parse_box(t) for t in a.box or []]
    video, fps = read_video(a.video)
    T0 = len(video)
    if a.frames:  # only the frames train will sample: the mask is (frames, H, W), which train also accepts
        check_frame_count(a.frames)
        video = video[sample_indices(T0, a.frames)]
        fps = fps * a.frames / T0
    out = Path(a.out)
    if out.suffix.lower() != ".npz":
        raise InputError(f"--out {a.out}: the mask is written as .npz.", "", cli="Give --out NAME.npz.")
    seg = load_segmenter(a.segmenter, device=a.device)
    t0 = time.perf_counter()
    mask = segment_video(video, prompts, segmenter=seg, dilate=a.dilate, boxes_from_components=a.boxes_from_components,
                         expand_ratio=a.expand_ratio, min_area=a.min_area, flow_union=a.flow_union)
    took = time.perf_counter() - t0
    M.save_npz(out, mask)
    preview = out.with_suffix(".preview.mp4")
    write_video(preview, hstack(video, M.overlay(video, mask), labels=["source", "mask"]), fps)
    cover = mask.reshape(len(mask), -1).mean(axis=1)
    print(f"mask: {out} ({mask.shape[0]} frames of {mask.shape[1]}x{mask.shape[2]}, {100 * cover.mean():.1f} % "
          f"marked on average, {100 * cover.min():.1f}-{100 * cover.max():.1f} % per frame); preview: {preview}; "
          f"{seg.name}: {took / len(mask):.2f} s per frame")
    if not getattr(seg, "meaningful", True):
        print("note: the tiny random SAM2 has no trained weights: this mask is meaningless (plumbing only)",
              file=sys.stderr)
    hint = f" --frames {a.frames}" if a.frames else ""
    print(f"next: python -m loraedit_nb train --video {a.video} --mask {out}{hint} --prompt \"...\" --out runs/NAME")


def _runtime_args(p: argparse.ArgumentParser) -> None:
    from .memory import PRESET_NAMES

    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="weights' dtype (default: bfloat16 for a real backbone on CUDA, else float32)")
    p.add_argument("--device", help="e.g. cuda, cuda:1, cpu (default: cuda for a real backbone when available)")
    p.add_argument("--memory-preset", choices=PRESET_NAMES,
                   help="GPU tier: what stays on the GPU in each stage (default: auto = the largest tier the card "
                        "has room for)")


def add_parsers(sub) -> None:
    ev = sub.add_parser("evaluate", help="baselines and ablations on toy-world edits with exact ground truth")
    ev.add_argument("--cases", type=int, default=8, help="number of seeded toy edits (recolour/shape/colour change)")
    ev.add_argument("--variants", default="all", help="'core', 'all' or a comma list of variant names")
    ev.add_argument("--backbone", default="toy")
    ev.add_argument("--steps", type=int, help="LoRA steps per trained variant (default: toy_config's)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--seeds", help="several seeds, e.g. 0,1,2 (training + sampling): the table gives spreads")
    ev.add_argument("--out", default="outputs/eval")
    ev.add_argument("--workers", type=int, default=1,
                    help="processes, one torch thread each (2 on a 2-core machine: ~2x faster than 1)")
    ev.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("train", help="fine-tune a mask-aware LoRA on a source clip (resumable)")
    t.add_argument("--video", required=True, help="source video file or folder of frames")
    t.add_argument("--mask", required=True, help="mask: .npz/.npy (T,H,W) bool or a folder of PNGs; white/True = edit")
    t.add_argument("--prompt", default="", help="caption of the source video")
    t.add_argument("--out", required=True, help="run folder, e.g. runs/NAME (re-running resumes)")
    t.add_argument("--backbone", default="toy",
                   help="'toy', 'hunyuan-i2v', a local folder, or e.g. Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
    t.add_argument("--frames", type=int, help="4k+1 frames to sample (default: the backbone's)")
    t.add_argument("--height", type=int)
    t.add_argument("--width", type=int)
    t.add_argument("--edited-frames", help="folder of edited frames named by index (appearance regime); "
                   "transparent pixels show the source frame")
    t.add_argument("--resize-edits", action="store_true", help="resize/crop edited frames to the clip's size")
    t.add_argument("--appearance-prompt", help="caption of the edited video (default: --prompt)")
    t.add_argument("--steps", type=int)
    t.add_argument("--rank", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--w-generate", type=float, help="dual-role loss weight on the generated region (default 1)")
    t.add_argument("--w-keep", type=float, help="dual-role loss weight on the kept region (default 1)")
    t.add_argument("--colour-aug", choices=["none", "permute", "hue", "mix"])
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--fp8", action="store_true", help="fp8 storage of the frozen base (layerwise casting)")
    t.add_argument("--adam8bit", action="store_true", help='8-bit AdamW (pip install -e ".[gpu]")')
    t.add_argument("--blocks-to-swap", help="transformer blocks streamed from pinned host memory: N or 'auto'")
    t.add_argument("--no-grad-ckpt", action="store_true", help="disable gradient checkpointing")
    _runtime_args(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("edit", help="edit a trained run's video from an edited first frame")
    e.add_argument("--run", required=True)
    e.add_argument("--edited-frame", required=True,
                   help="the edited first frame (PNG/JPG, the clip's size; transparent pixels show the source)")
    e.add_argument("--edited-frames", help="folder of edited later frames named by index")
    e.add_argument("--place-edited-frames", action="store_true", help="also put them into the condition")
    e.add_argument("--prompt", help="caption of the edited video (default: the run's prompt)")
    e.add_argument("--out", help="output .mp4 or folder (default: RUN/edited.mp4); CLIP_comparison.mp4 and "
                   "CLIP.json are written beside CLIP.mp4")
    e.add_argument("--steps", type=int)
    e.add_argument("--guidance", type=float)
    e.add_argument("--flow-shift", type=float)
    e.add_argument("--seed", type=int)
    e.add_argument("--composite", action="store_true", help="paste the source back outside the feathered mask")
    e.add_argument("--honour-given", action="store_true",
                   help="output frame 0 = the edited first frame and the source outside the mask, exactly")
    e.add_argument("--resize-edits", action="store_true", help="resize/crop edited frames to the clip's size")
    e.add_argument("--no-lora", action="store_true", help="the un-tuned model (for comparison)")
    e.add_argument("--vae-tiling", action="store_true", help="VAE tiling + slicing (large outputs, small GPUs)")
    e.add_argument("--backbone", help="override the run's backbone")
    _runtime_args(e)
    e.set_defaults(func=cmd_edit)

    m = sub.add_parser("mask", help="click-to-track: a LoRA-Edit mask from points/boxes with SAM2 (or optical flow)")
    m.add_argument("--video", required=True, help="source video file or folder of frames")
    m.add_argument("--point", action="append", metavar="X,Y[,FRAME][,neg][,objN]",
                   help="a click on the object, in pixels of the clip as read (repeatable); neg = not the object; "
                        "objN = object N (default 1)")
    m.add_argument("--box", action="append", metavar="X0,Y0,X1,Y1[,FRAME][,objN]",
                   help="a box around the object (one per object and frame)")
    m.add_argument("--dilate", type=int, default=0, help="grow the mask by N pixels")
    m.add_argument("--boxes-from-components", action="store_true",
                   help="the paper's post-processing: each component becomes its box grown by --expand-ratio")
    m.add_argument("--expand-ratio", type=float, default=0.1)
    m.add_argument("--min-area", type=int, default=50, help="drop components under this many pixels (with boxes)")
    m.add_argument("--flow-union", action="store_true", help="add the optical-flow propagation of the first "
                   "prompted frame")
    m.add_argument("--frames", type=int, help="track only the 4k+1 frames train samples (then pass the same "
                   "--frames to train); FRAME indices are in that sampled clip")
    m.add_argument("--segmenter", default="tiny", help="tiny|small|base-plus|large (SAM2.1), a Hub id, a local "
                   "folder, 'flow' (no weights) or 'random-tiny' (plumbing only)")
    m.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    m.add_argument("--out", required=True, help="mask .npz; a preview PATH.preview.mp4 is written beside it")
    m.set_defaults(func=cmd_mask)

    f = sub.add_parser("first-frame", help="edit frame 0 by an instruction (FLUX.1 Kontext), inside the mask")
    f.add_argument("--image", required=True, help="frame 0 of the clip (PNG/JPG), at the clip's size")
    f.add_argument("--instruction", required=True, help='what to change, e.g. "make the car red"')
    f.add_argument("--mask", help="the clip's mask (.npz / PNG folder; frame 0 is used): the edit stays inside it")
    f.add_argument("--editor", help="Hub id or local folder of a FluxKontextPipeline (default: FLUX.1-Kontext-dev)")
    f.add_argument("--tiny", action="store_true", help="a tiny random editor (plumbing only; no weights)")
    f.add_argument("--fp8", action="store_true", help="fp8 storage of the transformer (24 GB cards)")
    f.add_argument("--steps", type=int)
    f.add_argument("--guidance", type=float)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True, help="where to write the edited frame (PNG)")
    f.set_defaults(func=cmd_first_frame)
