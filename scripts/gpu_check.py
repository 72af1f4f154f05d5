"""GPU check of the whole Wan2.1-I2V-14B path at full size, random weights, one memory preset per process.

    python scripts/gpu_check.py                      # H200: presets 24GB, 48GB, 80GB+, 16GB at 49x480x832, < 10 min
    python scripts/gpu_check.py --dry-run            # CPU: 1 layer, tiny encoders, 5x32x32, one preset (CI, < 60 s)
    python scripts/gpu_check.py --presets 80GB+ --frames 81 --out DIR

What runs, per preset, in a fresh spawned process (so peak statistics and the memory cap are that preset's own):

1. the GPU is capped to the preset's tier (``torch.cuda.set_per_process_memory_fraction``, before anything is
   allocated: 24 GB of an H200 behave as a 24 GB card, up to the CUDA context and cuBLAS workspaces);
2. ``build``: the full 14B transformer (bf16, ``_keep_in_fp32_modules`` fp32, as ``from_pretrained`` gives it),
   UMT5-XXL encoder (bf16), CLIP ViT-H/14 (fp32) and the Wan VAE (fp32), each built on the meta device and filled
   with cheap random values on the CPU (:func:`loraedit_nb.bench.random_init`); a word-level tokenizer; UniPC.
   A :class:`~loraedit_nb.models.Backbone` with ``execution_device=cuda``: weights stay on the CPU (staged
   placement, as ``load_backbone`` leaves a real model);
3. ``cache``: :func:`loraedit_nb.training.cache_samples` of a random clip with a moving-box mask
   (:func:`loraedit_nb.regimes.motion_sample`): VAE, then UMT5, then CLIP, one at a time on the GPU;
4. ``train``: :func:`loraedit_nb.training.train_lora` with ``wan_config(memory_preset=P, steps=3)``; s/step over
   the steps after the first (warm-up), MFU/HFU from :func:`loraedit_nb.bench.train_step_flops`;
5. ``edit``: :func:`loraedit_nb.inference.edit_video` with the trained LoRA, 2 denoising steps, ``memory_preset=P``.

Peak GPU memory (``torch.cuda.max_memory_allocated``, reset between stages; ``max_memory_reserved`` beside it) and
seconds per stage are written to ``OUT/preset_<P>.json`` after every stage (a killed process leaves what it had)
and to ``OUT/gpu_check.json`` after every preset. ``OUT`` = ``--out``, else ``$OUT``, else ``outputs/gpu_check``.
A stage that fails (out of memory, an exception) is recorded as such and the next stage still runs (training on
random cached samples if caching failed; editing with no LoRA if training failed). A total time budget
(``--budget-s``, default 540 s) skips the presets that would start too late and kills one that runs past it.

Time per preset on one H200 (16 CPU cores), estimated, not measured (no GPU was available when this was written):
process start + imports ~10 s; building 47 GB of random weights ~20-30 s; fp8 cast on the CPU (16/24/48GB) ~10 s;
pinning swapped blocks (16/24GB) ~5 s; caching (two fp32 VAE encodes of 49x480x832, UMT5, CLIP) ~15 s; 3 training
steps ~20-30 s (2.9 PFLOP executed per step); editing (2 steps x CFG, VAE encode + decode) ~30 s: ~2 min per
preset, ~8-9 min for the four. The 16GB preset runs last: the budget guard drops it first.

Needs on the GPU machine: torch with CUDA, diffusers, transformers, peft, accelerate, and bitsandbytes for the
16GB/24GB presets (8-bit AdamW; without it their training stage records the ImportError).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import resource
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

PRESET_ORDER = ("24GB", "48GB", "80GB+", "16GB")
PROMPT = "a red car drives along a wet road past a row of trees, evening light"
DRY_RUN = dict(layers=1, tiny_encoders=True, frames=5, height=32, width=32, presets=["80GB+"], budget_s=300.0)

# Published sizes (= loraedit_nb/configs/umt5-xxl.encoder.json, clip-vit-h-14.vision.json, wan2.1.vae.json)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                feed_forward_proj="gated-gelu")
CLIP_VIT_H14 = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                    patch_size=14, image_size=224, hidden_act="gelu")


# ----------------------------------------------------------------------------------------------- the backbone
def build_text_encoder(vocab: int | None = None, tiny: bool = False):
    """UMT5-XXL encoder, random bf16 (11.4 GB). ``tiny``: 1 layer at full width, vocabulary ``vocab`` (the word
    tokenizer's size) instead of 256k."""
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    from loraedit_nb.bench import random_init

    cfg = dict(UMT5_XXL, **(dict(num_layers=1, vocab_size=vocab or 64) if tiny else {}))
    # transformers keeps UMT5's "wo" in fp32 only when loading in fp16: in bf16 everything is bf16
    return random_init(lambda: UMT5EncoderModel(UMT5Config(**cfg)), "cpu", torch.bfloat16, seed=1).eval()


def build_image_encoder(tiny: bool = False):
    """CLIP ViT-H/14 vision tower, random fp32 (2.5 GB; fp32 as the Hub loader and diffusers' Wan docs use it).
    ``tiny``: 2 layers (the pipeline reads the second-to-last hidden state)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = dict(CLIP_VIT_H14, **(dict(num_hidden_layers=2) if tiny else {}))
    from loraedit_nb.bench import random_init

    return random_init(lambda: CLIPVisionModel(CLIPVisionConfig(**cfg)), "cpu", torch.float32, seed=2).eval()


def build_vae():
    """The Wan2.1 VAE (``AutoencoderKLWan()`` defaults = the published one), random fp32. Random weights give
    meaningless latents but the real cost: encode/decode memory and time do not depend on the values."""
    import torch
    from diffusers import AutoencoderKLWan

    from loraedit_nb.bench import random_init

    return random_init(lambda: AutoencoderKLWan(), "cpu", torch.float32, seed=3).eval()


def build_backbone(device, layers: int | None = None, tiny_encoders: bool = False):
    """A full-size random Wan2.1-I2V-14B :class:`~loraedit_nb.models.Backbone`, every weight on the CPU and
    ``execution_device=device``. ``layers``: transformer depth (default 40); ``tiny_encoders``: 1-2-layer UMT5/CLIP
    (CPU dry run). The text encoder can be released and rebuilt (``release_text_encoder`` of the 16/24GB presets)."""
    import torch
    from diffusers import UniPCMultistepScheduler
    from transformers import CLIPImageProcessor

    from loraedit_nb.backbones import WAN_DEFAULTS, WAN_NEGATIVE_PROMPT, Backbone, place
    from loraedit_nb.backbones.base import _word_tokenizer
    from loraedit_nb.bench import full_transformer

    words = re.findall(r"[\w']+|[^\w\s]", f"{PROMPT} {WAN_NEGATIVE_PROMPT}")
    tok = _word_tokenizer(words)
    tr, _ = full_transformer("wan14b", layers)

    def text_encoder():
        return build_text_encoder(len(tok), tiny_encoders)

    bb = Backbone("wan14b-random", tr, build_vae(),
                  UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
                  tok, text_encoder(), build_image_encoder(tiny_encoders), CLIPImageProcessor(),
                  max_sequence_length=512, defaults=dict(WAN_DEFAULTS), text_encoder_loader=text_encoder)
    return place(bb, torch.device(device))


def random_clip(frames: int, height: int, width: int, seed: int = 0):
    """(video (T, H, W, 3) float32 in [0, 1], mask (T, H, W) bool with a box moving right, edited first frame)."""
    import numpy as np

    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width] / max(height, width)
    bg = np.stack([0.4 + 0.2 * np.sin(9 * xx), 0.4 + 0.2 * np.cos(7 * yy), 0.5 + 0.1 * np.sin(5 * (xx + yy))], -1)
    video = np.repeat(bg[None], frames, 0) + 0.03 * r.standard_normal((frames, height, width, 3))
    mask = np.zeros((frames, height, width), bool)
    bh, bw = max(2, height // 4), max(2, width // 5)
    for t in range(frames):
        x0 = int((width - bw) * t / max(1, frames - 1))
        y0 = height // 3
        video[t, y0:y0 + bh, x0:x0 + bw] = (0.9, 0.15, 0.1)
        mask[t, y0:y0 + bh, x0:x0 + bw] = True
    video = np.clip(video, 0, 1).astype(np.float32)
    first = video[0].copy()
    first[mask[0]] = (0.1, 0.3, 0.9)  # the edit: the box recoloured blue
    return video, mask, first


# ----------------------------------------------------------------------------------------------- one preset
def safe_name(preset: str) -> str:
    """A file-name-safe preset name ("80GB+" -> "80GBplus")."""
    return re.sub(r"[^A-Za-z0-9._-]", "", preset.replace("+", "plus"))


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def _gpu_reset(cuda: bool) -> None:
    import gc

    import torch

    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _stage(rec: dict, name: str, fn, cuda: bool, path: Path):
    """Run one stage: its seconds, peak GPU memory since the stage began, peak host RSS so far, and its own figures
    (``fn`` returns ``(result, info)``); an exception is recorded (one line + traceback tail), not raised. The
    preset's JSON is rewritten after every stage. Returns the result, or None when the stage failed."""
    import torch

    _gpu_reset(cuda)
    t0 = time.perf_counter()
    result, entry = None, {}
    try:
        result, info = fn()
        entry = {"ok": True, **info}
    except Exception as e:  # noqa: BLE001 - a failed stage is a result of the check
        from loraedit_nb.bench import error_line

        entry = {"ok": False, "error": error_line(e), "traceback": "\n".join(traceback.format_exc().splitlines()[-6:])}
    if cuda:
        torch.cuda.synchronize()
        entry.update(peak_cuda_gb=round(torch.cuda.max_memory_allocated() / 1e9, 3),
                     peak_cuda_reserved_gb=round(torch.cuda.max_memory_reserved() / 1e9, 3))
    entry.update(seconds=round(time.perf_counter() - t0, 2),
                 peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))
    rec["stages"][name] = entry
    _write_json(path, rec)
    status = "ok" if entry["ok"] else f"FAILED: {entry['error']}"
    peak = f", peak {entry['peak_cuda_gb']:.1f} GB GPU" if cuda else ""
    print(f"[gpu_check] {rec['preset']} {name}: {status} ({entry['seconds']:.1f} s{peak})", flush=True)
    return result


def _train_info(run, layers: int | None, frames: int, height: int, width: int, peak_tflops: float) -> dict:
    """What the train stage records: s/step (steps after the first), per-step seconds and losses, MFU/HFU
    (:func:`loraedit_nb.bench.train_step_flops` at this depth), swap figures and the preset's training options."""
    from loraedit_nb.bench import WAN_14B_CONFIG, train_step_flops

    cfg = dict(run.config.__dict__)
    times = [h["seconds"] for h in run.history[1:]] or [h["seconds"] for h in run.history]
    s = sum(times) / len(times)
    fl = train_step_flops(dict(WAN_14B_CONFIG, **({"num_layers": layers} if layers else {})), frames, height,
                          width, rank=run.config.rank, checkpointing=run.config.gradient_checkpointing)
    # train_lora resets the peak statistics before its first step, so the stage's peak is the step loop's too;
    # the set-up before it (fp8 cast on the CPU, the move to the GPU) holds the same weights without activations
    mem = {("loop_" + k if k.startswith("peak_") else k): v for k, v in run.memory.items()}
    return {"s_per_step": round(s, 4), "step_seconds": [h["seconds"] for h in run.history],
            "losses": [round(h["loss"], 5) for h in run.history], "mfu": fl["model_flops"] / s / (peak_tflops * 1e12),
            "hfu": fl["executed_flops"] / s / (peak_tflops * 1e12), "train_memory": mem,
            "config": {k: cfg[k] for k in ("fp8_base", "blocks_to_swap", "optimizer", "gradient_checkpointing",
                                          "release_text_encoder", "memory_preset")}}


def run_preset(preset: str, opts: dict, path: str) -> dict:
    """Everything for one preset, in this (fresh) process: cap, build, cache, train, edit. Returns the record
    (also written to ``path`` after every stage)."""
    import numpy as np
    import torch

    from loraedit_nb.bench import cap_gpu_memory, full_samples
    from loraedit_nb.inference import edit_video
    from loraedit_nb.memory import MEMORY_PRESETS
    from loraedit_nb.regimes import motion_sample
    from loraedit_nb.training import cache_samples, train_lora, wan_config

    path = Path(path)
    cap = cap_gpu_memory(MEMORY_PRESETS[preset].gpu_gb, opts.get("emulate_tier"))  # before any allocation
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    T, H, W = opts["frames"], opts["height"], opts["width"]
    rec = {"preset": preset, "tier_gb": cap, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
           "clip": f"{T}x{H}x{W}", "layers": opts.get("layers") or 40, "tiny_encoders": opts["tiny_encoders"],
           "torch": torch.__version__, "stages": {}}
    if cuda:
        rec["card_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    cfg = wan_config(memory_preset=preset, steps=opts["train_steps"])
    video, mask, first = random_clip(T, H, W)

    def build():
        bb = build_backbone(dev, opts.get("layers"), opts["tiny_encoders"])
        n = {k: sum(p.numel() for p in m.parameters()) for k, m in
             (("transformer", bb.transformer), ("text_encoder", bb.text_encoder), ("image_encoder", bb.image_encoder),
              ("vae", bb.vae))}
        return bb, {"params": n}
    bb = _stage(rec, "build", build, cuda, path)
    if bb is None:
        return rec

    def cache():
        cached = cache_samples(bb, [motion_sample(video, mask, PROMPT)], cfg, progress=False)
        return cached, {"latents": list(cached[0].latents.shape), "condition": list(cached[0].condition.shape)}
    cached = _stage(rec, "cache", cache, cuda, path)
    if cached is None:  # still measure training, on random samples of the same shapes
        cached = full_samples("wan14b", T, H, W)
        rec["train_samples"] = "random (caching failed)"

    def train():
        run = train_lora(bb, cached, cfg, progress=False)
        return run, _train_info(run, opts.get("layers"), T, H, W, opts["peak_tflops"])
    run = _stage(rec, "train", train, cuda, path)

    def edit():
        if "memory_preset" not in inspect.signature(edit_video).parameters:
            raise RuntimeError("loraedit_nb.inference.edit_video has no memory_preset= keyword yet: the edit stage "
                               "cannot place the model for the tier")
        res = edit_video(bb, run, video, mask, first, prompt=PROMPT, steps=opts["edit_steps"], seed=0,
                         memory_preset=preset, progress=False)
        out = np.asarray(res.video)
        return res, {"lora": "trained" if run is not None else "none (training failed)", "output": list(out.shape),
                     "finite": bool(np.isfinite(out).all()),
                     "settings": {k: v for k, v in res.settings.items() if k != "negative_prompt"}}
    _stage(rec, "edit", edit, cuda, path)
    rec["ok"] = all(s["ok"] for s in rec["stages"].values())
    _write_json(path, rec)
    return rec


# ----------------------------------------------------------------------------------------------- the parent
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=list(PRESET_ORDER), help="in this order, one process each")
    p.add_argument("--frames", type=int, default=49)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--layers", type=int, help="transformer depth (default 40; CPU dry run: 1)")
    p.add_argument("--tiny-encoders", action="store_true", help="1-2-layer UMT5 / CLIP (CPU dry run)")
    p.add_argument("--train-steps", type=int, default=3, help="training steps (the first one is warm-up)")
    p.add_argument("--edit-steps", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="total seconds: presets that would start later are skipped, one running past it is killed")
    p.add_argument("--min-preset-s", type=float, default=60.0,
                   help="do not start a preset with less than this much budget left")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100/H200: 989)")
    p.add_argument("--emulate-tier", action=argparse.BooleanOptionalAction, default=None,
                   help="cap GPU memory to each tier (default: when the card is bigger than the tier)")
    p.add_argument("--out", help="output folder (default: $OUT, else outputs/gpu_check)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU smoke: 1 layer, tiny encoders, 5x32x32, preset 80GB+ (unless --presets is given)")
    return p


def _options(argv: list[str] | None) -> argparse.Namespace:
    p = _parser()
    a = p.parse_args(argv)
    if a.dry_run:  # dry-run values where the command line left the defaults
        for k, v in DRY_RUN.items():
            if getattr(a, k) == p.get_default(k):
                setattr(a, k, v)
    from loraedit_nb.memory import MEMORY_PRESETS

    bad = [x for x in a.presets if x not in MEMORY_PRESETS]
    if bad:
        p.error(f"unknown preset(s) {bad}: choose from {list(MEMORY_PRESETS)}")
    return a


def _summary_line(preset: str, rec: dict) -> str:
    if "error" in rec and not rec.get("stages"):
        return f"{preset:>6}: FAILED: {rec['error']}"
    parts = []
    for name, s in rec.get("stages", {}).items():
        mem = f" {s['peak_cuda_gb']:.1f}GB" if "peak_cuda_gb" in s else ""
        extra = f" {s['s_per_step']:.2f}s/step MFU {100 * s['mfu']:.0f}%" if s.get("s_per_step") else ""
        parts.append(f"{name} {'ok' if s['ok'] else 'FAIL'} {s['seconds']:.0f}s{mem}{extra}")
    tail = f"  [{rec['error']}]" if "error" in rec else ""
    return f"{preset:>6}: " + "; ".join(parts) + tail


def main(argv: list[str] | None = None) -> dict:
    """Run the check; returns (and writes to ``OUT/gpu_check.json``) ``{"presets": {name: record}, ...}``."""
    from loraedit_nb.bench import _run

    a = _options(argv)
    out = Path(a.out or os.environ.get("OUT") or "outputs/gpu_check")
    out.mkdir(parents=True, exist_ok=True)
    opts = {k: getattr(a, k) for k in ("frames", "height", "width", "layers", "tiny_encoders", "train_steps",
                                       "edit_steps", "peak_tflops", "emulate_tier")}
    t_start = time.monotonic()
    summary = {"options": {**opts, "presets": a.presets, "budget_s": a.budget_s}, "presets": {}}
    for preset in a.presets:
        left = a.budget_s - (time.monotonic() - t_start)
        if left < a.min_preset_s:
            summary["presets"][preset] = {"skipped": f"time budget: {left:.0f} s of {a.budget_s:.0f} s left"}
            print(f"[gpu_check] {preset}: skipped ({left:.0f} s left)", flush=True)
            continue
        path = out / f"preset_{safe_name(preset)}.json"
        path.unlink(missing_ok=True)
        rec = _run(run_preset, preset, opts, str(path), timeout=left)
        if "stages" not in rec and path.exists():  # the process died or was killed: keep what it wrote
            rec = {**json.loads(path.read_text()), "error": rec.get("error")}
        summary["presets"][preset] = rec
        summary["elapsed_s"] = round(time.monotonic() - t_start, 1)
        _write_json(out / "gpu_check.json", summary)
        print(f"[gpu_check] {_summary_line(preset, rec)}", flush=True)
    summary["elapsed_s"] = round(time.monotonic() - t_start, 1)
    _write_json(out / "gpu_check.json", summary)
    print(f"[gpu_check] done in {summary['elapsed_s']:.0f} s; wrote {out / 'gpu_check.json'}", flush=True)
    return summary


if __name__ == "__main__":
    main()
