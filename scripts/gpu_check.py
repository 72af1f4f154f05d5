"""GPU check of the whole Wan2.1-I2V-14B path at full size, random weights, one memory preset per process.

    python scripts/gpu_check.py --prepare-wheels .whl  # here (pip + PyPI): the wheels the GPU machine lacks
    python scripts/gpu_check.py                      # H200: presets 24GB, 48GB, 80GB+, 16GB at 49x480x832, < 10 min
    python scripts/gpu_check.py --dry-run            # CPU: 1 layer, tiny encoders, 5x32x32, one preset (CI, < 60 s)
    python scripts/gpu_check.py --presets 80GB+ --frames 81 --out DIR

The wheel step. The GPU machine's image has torch, accelerate, peft and transformers but no diffusers, ftfy (which
diffusers' Wan pipeline calls to clean prompts) or bitsandbytes (8-bit AdamW of the 16GB/24GB presets), and it
cannot reach a package index. ``--prepare-wheels DIR`` (DIR inside this repository, ignored by git) downloads, for
CPython 3.12 on x86-64 Linux, the versions installed here of diffusers, ftfy and wcwidth, and bitsandbytes with
every GPU library dropped but ``libbitsandbytes_cuda130.so`` (the image's torch is built for CUDA 13.0; the whole
wheel is ~43 MB, too big to travel). What travels to that machine (tracked + untracked-not-ignored files + the
carried wheels) must stay under 64 MiB: the step measures it, leaves bitsandbytes out when it would pass the limit
minus a safety margin, and prints the total and the exact command to run there. Without bitsandbytes the check
still runs: the 16GB/24GB presets then train with ``optimizer="adamw"`` (a ``wan_config`` override, planned with
the same override) and each record says so. A machine without diffusers or ftfy gets one line saying so at the
start, not a failure in every process.

What runs, per preset, in a fresh spawned process (so peak statistics and the memory cap are that preset's own):

1. the GPU is capped to the preset's tier (``torch.cuda.set_per_process_memory_fraction``, before anything is
   allocated: 24 GB of an H200 behave as a 24 GB card, up to the CUDA context and cuBLAS workspaces);
2. ``build``: the full 14B transformer (bf16, ``_keep_in_fp32_modules`` fp32, as ``from_pretrained`` gives it),
   UMT5-XXL encoder (bf16), CLIP ViT-H/14 (fp32) and the Wan VAE (fp32), each built on the meta device and filled
   with cheap random values on the CPU (:func:`loraedit_nb.bench.random_init`); a word-level tokenizer; UniPC.
   A :class:`~loraedit_nb.models.Backbone` with ``execution_device=cuda``: weights stay on the CPU (staged
   placement, as ``load_backbone`` leaves a real model). The planner's prediction for this transformer config,
   clip and preset (:func:`loraedit_nb.planner.plan`) is recorded beside every measured peak;
3. ``cache``: :func:`loraedit_nb.training.cache_samples` of a random clip with a moving-box mask
   (:func:`loraedit_nb.regimes.motion_sample`): VAE, then UMT5, then CLIP, one at a time on the GPU;
4. ``train``: :func:`loraedit_nb.training.train_lora` with ``wan_config(memory_preset=P, steps=3)``; s/step over
   the steps after the first (warm-up), MFU/HFU from :func:`loraedit_nb.bench.train_step_flops`; the LoRA is saved
   (``LoraRun.save``) to a scratch folder outside ``OUT`` (~0.15-0.3 GB at 14B, more than ``$OUT`` may return);
5. ``edit``: :func:`loraedit_nb.inference.edit_video` with the trained LoRA, 2 denoising steps, ``memory_preset=P``,
   in the training process (it keeps what training placed);

then, in another fresh process under the same cap:

6. ``fresh_edit``: a new backbone (weights on the CPU, as the CLI's ``edit`` loads one), the saved LoRA folder
   (None when training failed) and ``memory_preset=None``, the default, which on a GPU is ``"auto"``: the tier is
   measured from the cap, as on a card of that size. It records the preset ``auto`` chose and its block count.

Peak GPU memory (``torch.cuda.max_memory_allocated``, reset between stages; ``max_memory_reserved`` beside it),
the planner's ``predicted_gpu_gb`` (cache: caching, train: training, edit / fresh_edit: editing) and seconds per
stage are written to ``OUT/preset_<P>.json`` after every stage (a killed process leaves what it had) and to
``OUT/gpu_check.json`` after every preset. ``OUT`` = ``--out``, else ``$OUT``, else ``outputs/gpu_check``.
A stage that fails (out of memory, an exception) is recorded as such and the next stage still runs (training on
random cached samples if caching failed; editing with no LoRA if training failed). Each process runs under its own
timeout (``--preset-timeout-s``, default 180 s, or less when the budget has less left), so a hang costs one preset;
a total budget (``--budget-s``, default 540 s) skips what would start too late.

Time per preset on one H200 (16 CPU cores), estimated, not measured (no GPU was available when this was written):
process start + imports ~10 s; building 47 GB of random weights ~20-30 s; fp8 cast on the CPU (16/24/48GB) ~10 s;
pinning swapped blocks (16/24GB) ~5 s; caching (two fp32 VAE encodes of 49x480x832, UMT5, CLIP) ~15 s; 3 training
steps ~20-30 s (2.9 PFLOP executed per step); editing (2 steps x CFG, VAE encode + decode) ~30 s; the fresh edit
another ~60-80 s (start, build, placement, edit): ~3 min per preset, so 540 s covers about three presets. The
16GB preset runs last: the budget drops it first (its plan is the tightest, 14.5 GB of 14.7 usable in training).
The CPU dry run pads prompts to 32 tokens instead of 512 (``--text-tokens``) and runs 2 training steps and 1
denoising step: ~60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import csv
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import inspect
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

PRESET_ORDER = ("24GB", "48GB", "80GB+", "16GB")
PROMPT = "a red car drives along a wet road past a row of trees, evening light"
DRY_RUN = dict(layers=1, tiny_encoders=True, frames=5, height=32, width=32, presets=["80GB+"], budget_s=300.0,
               text_tokens=32, train_steps=2, edit_steps=1)
NEEDED = ("torch", "accelerate", "transformers", "peft", "diffusers", "ftfy")  # every preset imports or calls these
STAGE_PLAN = {"cache": "caching", "train": "training", "edit": "editing", "fresh_edit": "editing"}

# Published sizes (= loraedit_nb/configs/umt5-xxl.encoder.json, clip-vit-h-14.vision.json, wan2.1.vae.json)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                feed_forward_proj="gated-gelu")
CLIP_VIT_H14 = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                    patch_size=14, image_size=224, hidden_act="gelu")

# ----------------------------------------------------------------------------------------------- wheels (run here)
WHEELS = ("diffusers", "ftfy", "wcwidth")  # needed there; wcwidth is ftfy's one requirement the image lacks
OPTIONAL_WHEELS = ("bitsandbytes",)  # only 8-bit AdamW needs it: left out first when the copy would not fit
BNB_KEEP = "cuda130"  # the GPU image's torch is +cu130; bitsandbytes falls back within a CUDA major version
TRAVEL_LIMIT = 64 * 2**20  # what the device tool copies to the GPU machine, tracked files included
TRAVEL_MARGIN = 4 * 2**20  # room for files that change between this step and the run
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")  # bitsandbytes ships manylinux_2_24 only
GPU_LIBRARY = re.compile(r"libbitsandbytes_(cuda|rocm|hip|xpu|mps)\w*\.(so|dll|dylib)$")


def download_wheel(name: str, version: str, dest: Path) -> Path:
    """``name==version`` as a CPython 3.12 x86-64 Linux wheel (what the GPU machine runs), downloaded into
    ``dest`` with pip (no dependencies). Returns the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *(x for p in PLATFORMS for x in ("--platform", p)), "-d", str(dest),
           f"{name}=={version}"]
    subprocess.run(cmd, check=True, timeout=600)
    found = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip downloaded no {name} {version} wheel into {dest}")
    return found[0]


def _record_hash(data: bytes) -> str:
    """A RECORD hash: ``sha256=`` + urlsafe base64 without padding (the wheel format's)."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def trim_bnb_wheel(src: Path, dest_dir: Path, keep: str = BNB_KEEP) -> Path:
    """A copy of the bitsandbytes wheel ``src`` in ``dest_dir`` (same file name) without the GPU libraries
    (``libbitsandbytes_cuda*/rocm*/xpu*...``) other than ``libbitsandbytes_<keep>``; the CPU library and the
    Python files stay. RECORD is rewritten for what is left, so pip installs it as any wheel. ValueError when
    ``src`` has no ``<keep>`` library (the wheel would load nothing on that machine)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / src.name
    tmp = out.with_name(out.name + ".tmp")
    rows, kept = [], False
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        record = next(i.filename for i in zin.infolist() if i.filename.endswith(".dist-info/RECORD"))
        for info in zin.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            wanted = base.startswith(f"libbitsandbytes_{keep}.")
            if info.filename == record or (GPU_LIBRARY.search(base) and not wanted):
                continue
            kept |= wanted
            data = zin.read(info)
            info.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(info, data)  # the original entry's date and permissions
            if not info.is_dir():
                rows.append((info.filename, _record_hash(data), str(len(data))))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([*rows, (record, "", "")])
        zout.writestr(zin.getinfo(record), buf.getvalue())  # last, as the wheel format recommends
    if not kept:
        tmp.unlink()
        raise ValueError(f"{src.name} has no libbitsandbytes_{keep} library")
    os.replace(tmp, out)
    return out


def travel_bytes(root: Path = ROOT, exclude: Path | None = None) -> int:
    """Bytes of what the device tool copies from ``root`` besides carried paths: tracked and
    untracked-not-ignored files (as they are now in the work tree) and a ``shared/`` folder. Files under
    ``exclude`` (the wheel folder, counted on its own) are left out."""
    names = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.decode().split("\0")
    files = {root / n for n in names if n}
    if (root / "shared").is_dir():  # it travels whether git ignores it or not
        files |= {p for p in (root / "shared").rglob("*") if not p.is_dir()}
    skip = exclude.resolve() if exclude else None
    return sum(p.lstat().st_size for p in files
               if p.exists() and not (skip and p.resolve().is_relative_to(skip)))


def choose_wheels(tree_bytes: int, wheel_bytes: dict[str, int], optional=OPTIONAL_WHEELS,
                  limit: int = TRAVEL_LIMIT, margin: int = TRAVEL_MARGIN) -> dict:
    """Which wheels travel: every required one (ValueError when they alone pass ``limit - margin`` beside
    ``tree_bytes``), then each of ``optional``, in order, that still fits. Returns ``{"keep", "dropped",
    "tree_bytes", "wheel_bytes", "total_bytes", "limit_bytes", "margin_bytes"}`` (bytes)."""
    room = limit - margin - tree_bytes
    keep = [n for n in wheel_bytes if n not in optional]
    total = sum(wheel_bytes[n] for n in keep)
    if total > room:
        raise ValueError(f"the tree ({tree_bytes / 2**20:.1f} MiB) and the required wheels ({total / 2**20:.1f} MiB) "
                         f"pass the {limit / 2**20:.0f} MiB copy limit minus {margin / 2**20:.0f} MiB: carry less")
    for n in (n for n in optional if n in wheel_bytes):
        if total + wheel_bytes[n] <= room:
            keep.append(n)
            total += wheel_bytes[n]
    return {"keep": keep, "dropped": [n for n in wheel_bytes if n not in keep], "tree_bytes": tree_bytes,
            "wheel_bytes": total, "total_bytes": tree_bytes + total, "limit_bytes": limit, "margin_bytes": margin}


def device_command(wheel_dir: str, args: str = "") -> str:
    """The device tool's ``run`` call that installs the wheels in ``wheel_dir`` (relative to the repository) and
    runs the check (as the device README installs carried wheels: no index, no dependencies, a target folder)."""
    cmd = (f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
           f"{wheel_dir}/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 "
           f"scripts/gpu_check.py{' ' + args if args else ''}")
    return f"run(command={json.dumps(cmd)}, carry=[{json.dumps(wheel_dir)}], timeout_s=600)"


def prepare_wheels(dest: str | os.PathLike, keep: str = BNB_KEEP, margin: int = TRAVEL_MARGIN) -> dict:
    """Download the wheels the GPU machine lacks (the versions installed here) into ``dest`` (a folder of this
    repository; its other ``*.whl`` are removed, since two versions of one package stop the install there),
    bitsandbytes trimmed to ``libbitsandbytes_<keep>`` and left out when the copy would pass the limit. Prints
    and returns the sizes, the choice and the command to run there."""
    dest = Path(dest).resolve()
    if not dest.is_relative_to(ROOT) or dest == ROOT:
        raise ValueError(f"--prepare-wheels needs a folder inside the repository ({ROOT}), got {dest}")
    rel = dest.relative_to(ROOT).as_posix()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name in (*WHEELS, *OPTIONAL_WHEELS):
            w = download_wheel(name, importlib.metadata.version(name), Path(tmp))
            files[name] = trim_bnb_wheel(w, Path(tmp) / "trimmed", keep) if name == "bitsandbytes" else w
        sizes = {n: f.stat().st_size for n, f in files.items()}
        choice = choose_wheels(travel_bytes(ROOT, dest), sizes, margin=margin)
        for old in dest.glob("*.whl"):
            old.unlink()
        for n in choice["keep"]:
            shutil.copy2(files[n], dest / files[n].name)
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", rel + "/x.whl"]).returncode == 0
    report = {**choice, "wheels": {files[n].name: sizes[n] for n in files}, "dir": rel,
              "bitsandbytes": f"trimmed to libbitsandbytes_{keep}" if "bitsandbytes" in choice["keep"] else
              "left out: 16GB/24GB train with optimizer='adamw'", "command": device_command(rel)}
    for name, size in report["wheels"].items():
        print(f"[gpu_check] {'kept   ' if (dest / name).exists() else 'dropped'} {name}: {size / 1e6:.2f} MB")
    print(f"[gpu_check] bitsandbytes: {report['bitsandbytes']}")
    print(f"[gpu_check] copied to the GPU machine: tree {choice['tree_bytes'] / 1e6:.2f} MB + wheels "
          f"{choice['wheel_bytes'] / 1e6:.2f} MB = {choice['total_bytes'] / 2**20:.1f} MiB of "
          f"{choice['limit_bytes'] / 2**20:.0f} MiB (margin {choice['margin_bytes'] / 2**20:.0f} MiB)")
    if not ignored:
        print(f"[gpu_check] note: git does not ignore {rel}/: add '/{rel}/' to .git/info/exclude")
    print(f"[gpu_check] on the GPU machine: {report['command']}")
    return report


# ----------------------------------------------------------------------------------------------- packages there
def package_versions(names=(*NEEDED, "bitsandbytes")) -> dict[str, str | None]:
    """``{name: version}`` of each package importable here, None for a missing one. Found without importing
    (importing bitsandbytes would start CUDA in this parent process, beside the children's)."""
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n) if importlib.util.find_spec(n) else None
        except importlib.metadata.PackageNotFoundError:
            out[n] = "unknown"  # importable without metadata: a source checkout on the path
    return out


def run_overrides(preset: str, optimizer: str | None) -> dict:
    """The ``wan_config`` overrides of one preset's run: the optimiser when one is forced (``--optimizer``, or
    "adamw" without bitsandbytes) and differs from the preset's; ``{}`` otherwise."""
    from loraedit_nb.memory import MEMORY_PRESETS

    return {"optimizer": optimizer} if optimizer and optimizer != MEMORY_PRESETS[preset].optimizer else {}


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


def build_backbone(device, layers: int | None = None, tiny_encoders: bool = False, text_tokens: int = 512):
    """A full-size random Wan2.1-I2V-14B :class:`~loraedit_nb.models.Backbone`, every weight on the CPU and
    ``execution_device=device``. ``layers``: transformer depth (default 40); ``tiny_encoders``: 1-2-layer UMT5/CLIP
    (CPU dry run); ``text_tokens``: the length prompts are padded to (Wan: 512). The text encoder can be released
    and rebuilt (``release_text_encoder`` of the 16/24GB presets)."""
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
                  max_sequence_length=text_tokens, defaults=dict(WAN_DEFAULTS), text_encoder_loader=text_encoder)
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


# ----------------------------------------------------------------------------------------------- predictions
def predict(config: dict, frames: int, height: int, width: int, preset: str, overrides: dict | None = None) -> dict:
    """The planner's figures for a ``transformer.config`` dict, a clip and ``preset`` with the run's ``overrides``
    (``wan_config`` keywords that are :class:`~loraedit_nb.memory.MemoryPreset` fields, e.g. the optimiser): GB
    per stage, block counts, usable GB, whether it fits, and ``for`` (what was planned: the preset with its
    overrides, or the plain preset name where the planner refuses a preset instance)."""
    from loraedit_nb.memory import MEMORY_PRESETS
    from loraedit_nb.planner import plan

    planned_for = preset
    if overrides:
        try:
            p = plan(config, frames, height, width, dataclasses.replace(MEMORY_PRESETS[preset], **overrides))
            planned_for = f"{preset} with {overrides}"
        except (TypeError, ValueError):  # a planner that takes preset names only: the overrides are not planned
            p = plan(config, frames, height, width, preset)
            planned_for = f"{preset} (the planner took no overrides: {overrides} not planned)"
    else:
        p = plan(config, frames, height, width, preset)
    return {"for": planned_for, "stages": {k: s.peak_gpu_gb for k, s in p.stages.items()}, "usable_gb":
            round(p.usable_gb, 2), "fits": p.fits, "train_blocks_to_swap": p.train_blocks_to_swap,
            "edit_blocks_to_swap": p.edit_blocks_to_swap}


def _simulated(preset: str, opts: dict) -> dict:
    """The full-size simulation's peaks for this row (results/simulated_memory.json), so that a GPU run also
    calibrates the simulator; a reason instead where no simulated row applies (fewer layers, other options)."""
    if opts.get("layers") or opts.get("overrides") or opts.get("tiny_encoders"):
        return {"none": "the simulated table is for the full-size stack with the preset's own options"}
    from loraedit_nb.simulation import recorded

    row = recorded("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", preset, opts["frames"], opts["height"], opts["width"])
    return row or {"none": "this preset and clip were not simulated (scripts/simulate_table.py)"}


def _predict_or_error(*args) -> dict:
    """:func:`predict`, or ``{"error": ...}``: a planner failure must not cost the measurements."""
    try:
        return predict(*args)
    except Exception as e:  # noqa: BLE001 - recorded, the check goes on
        from loraedit_nb.bench import error_line

        return {"error": error_line(e)}


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
    """Run one stage: its seconds, peak GPU memory since the stage began, peak host RSS so far, the planner's
    prediction for it (``rec["plan"]``, :data:`STAGE_PLAN`) and its own figures (``fn`` returns ``(result,
    info)``; info may replace the prediction); an exception is recorded (one line + traceback tail), not raised.
    The preset's JSON is rewritten after every stage. Returns the result, or None when the stage failed."""
    import torch

    _gpu_reset(cuda)
    pred = rec.get("plan", {}).get("stages", {}).get(STAGE_PLAN.get(name))
    simulated = rec.get("simulated", {}).get("stages", {}).get(STAGE_PLAN.get(name))
    t0 = time.perf_counter()
    result, entry = None, {}
    try:
        result, info = fn()
        entry = {"ok": True, "predicted_gpu_gb": pred, **info}
    except Exception as e:  # noqa: BLE001 - a failed stage is a result of the check
        from loraedit_nb.bench import error_line

        entry = {"ok": False, "error": error_line(e), "predicted_gpu_gb": pred,
                 "traceback": "\n".join(traceback.format_exc().splitlines()[-6:])}
    if cuda:
        torch.cuda.synchronize()
        entry.update(peak_cuda_gb=round(torch.cuda.max_memory_allocated() / 1e9, 3),
                     peak_cuda_reserved_gb=round(torch.cuda.max_memory_reserved() / 1e9, 3))
    entry.update(seconds=round(time.perf_counter() - t0, 2),
                 peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))
    if entry["predicted_gpu_gb"] is None:
        del entry["predicted_gpu_gb"]
    if simulated is not None:
        entry["simulated_gpu_gb"] = simulated
    rec["stages"][name] = entry
    _write_json(path, rec)
    status = "ok" if entry["ok"] else f"FAILED: {entry['error']}"
    peak = f", peak {entry['peak_cuda_gb']:.1f} GB GPU" if cuda else ""
    plan = f", plan {entry['predicted_gpu_gb']:.1f} GB" if "predicted_gpu_gb" in entry else ""
    plan += f", simulated {entry['simulated_gpu_gb']:.1f} GB" if "simulated_gpu_gb" in entry else ""
    print(f"[gpu_check] {rec['preset']} {name}: {status} ({entry['seconds']:.1f} s{peak}{plan})", flush=True)
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


def _save_lora(run, bb, folder: Path) -> dict:
    """Save the trained LoRA for the fresh edit: ``{"lora_dir", "lora_mb"}``, or ``{"lora_save_error"}`` (the
    fresh edit then runs without one; training itself succeeded)."""
    try:
        path = Path(run.save(folder, bb))
        size = sum(p.stat().st_size for p in (path.rglob("*") if path.is_dir() else [path]) if p.is_file())
        return {"lora_dir": str(path), "lora_mb": round(size / 1e6, 1)}
    except Exception as e:  # noqa: BLE001 - recorded, the check goes on
        from loraedit_nb.bench import error_line

        return {"lora_save_error": error_line(e)}


def _edit_info(res, lora_label: str) -> dict:
    """What an edit stage records: the LoRA it used, the output's shape and finiteness, the edit's settings (the
    placement chosen among them)."""
    import numpy as np

    out = np.asarray(res.video)
    return {"lora": lora_label, "output": list(out.shape), "finite": bool(np.isfinite(out).all()),
            "settings": {k: v for k, v in res.settings.items() if k != "negative_prompt"}}


def _start(preset: str, opts: dict, rec: dict | None = None) -> tuple[dict, bool, object]:
    """A child's first steps: cap the GPU to the preset's tier (before any allocation), then the record (a new
    one, or ``rec`` to add to). Returns ``(record, cuda, device)``."""
    import torch

    from loraedit_nb.bench import cap_gpu_memory
    from loraedit_nb.memory import MEMORY_PRESETS

    cap = cap_gpu_memory(MEMORY_PRESETS[preset].gpu_gb, opts.get("emulate_tier"))
    cuda = torch.cuda.is_available()
    if rec is None:
        rec = {"preset": preset, "tier_gb": cap, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
               "clip": f"{opts['frames']}x{opts['height']}x{opts['width']}", "layers": opts.get("layers") or 40,
               "tiny_encoders": opts["tiny_encoders"], "text_tokens": opts["text_tokens"], "torch": torch.__version__,
               "overrides": opts.get("overrides", {}), **({"note": opts["note"]} if opts.get("note") else {}),
               "pid": os.getpid(), "stages": {}}
        if cuda:
            rec["card_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    return rec, cuda, torch.device("cuda" if cuda else "cpu")


def run_preset(preset: str, opts: dict, path: str, lora_dir: str) -> dict:
    """Everything for one preset that runs in one (fresh) process: cap, build, cache, train (+ save the LoRA to
    ``lora_dir``), edit. ``opts["overrides"]``: ``wan_config`` overrides (planned with them too). Returns the
    record (also written to ``path`` after every stage)."""
    from loraedit_nb.bench import full_samples
    from loraedit_nb.inference import edit_video
    from loraedit_nb.regimes import motion_sample
    from loraedit_nb.training import cache_samples, train_lora, wan_config

    path = Path(path)
    rec, cuda, dev = _start(preset, opts)
    T, H, W = opts["frames"], opts["height"], opts["width"]
    cfg = wan_config(memory_preset=preset, steps=opts["train_steps"], **opts.get("overrides", {}))
    video, mask, first = random_clip(T, H, W)

    def build():
        bb = build_backbone(dev, opts.get("layers"), opts["tiny_encoders"], opts["text_tokens"])
        n = {k: sum(p.numel() for p in m.parameters()) for k, m in
             (("transformer", bb.transformer), ("text_encoder", bb.text_encoder), ("image_encoder", bb.image_encoder),
              ("vae", bb.vae))}
        return bb, {"params": n}
    bb = _stage(rec, "build", build, cuda, path)
    if bb is None:
        return rec
    rec["plan"] = _predict_or_error(dict(bb.transformer.config), T, H, W, preset, opts.get("overrides"))
    rec["simulated"] = _simulated(preset, opts)

    def cache():
        cached = cache_samples(bb, [motion_sample(video, mask, PROMPT)], cfg, progress=False)
        return cached, {"latents": list(cached[0].latents.shape), "condition": list(cached[0].condition.shape)}
    cached = _stage(rec, "cache", cache, cuda, path)
    if cached is None:  # still measure training, on random samples of the same shapes
        cached = full_samples("wan14b", T, H, W)
        rec["train_samples"] = "random (caching failed)"

    def train():
        run = train_lora(bb, cached, cfg, progress=False)
        info = _train_info(run, opts.get("layers"), T, H, W, opts["peak_tflops"])
        return run, {**info, **_save_lora(run, bb, Path(lora_dir))}
    run = _stage(rec, "train", train, cuda, path)

    def edit():
        if "memory_preset" not in inspect.signature(edit_video).parameters:
            raise RuntimeError("loraedit_nb.inference.edit_video has no memory_preset= keyword yet: the edit stage "
                               "cannot place the model for the tier")
        res = edit_video(bb, run, video, mask, first, prompt=PROMPT, steps=opts["edit_steps"], seed=0,
                         memory_preset=preset, progress=False)
        return res, _edit_info(res, "trained" if run is not None else "none (training failed)")
    _stage(rec, "edit", edit, cuda, path)
    rec["ok"] = all(s["ok"] for s in rec["stages"].values())
    _write_json(path, rec)
    return rec


def run_fresh_edit(preset: str, opts: dict, path: str, lora: str | None) -> dict:
    """The ``fresh_edit`` stage, in a fresh process under the preset's cap: a new backbone (weights on the CPU,
    as the CLI's ``edit`` loads one) edited with the saved LoRA folder ``lora`` (None: the un-tuned model) and
    ``memory_preset=None`` (the default: "auto" on a GPU, no placement on the CPU). Adds the stage to the record
    in ``path`` (the preset process's) and returns the record."""
    from loraedit_nb.inference import edit_video
    from loraedit_nb.memory import MEMORY_PRESETS

    path = Path(path)
    rec, cuda, dev = _start(preset, opts, json.loads(path.read_text()))
    T, H, W = opts["frames"], opts["height"], opts["width"]
    video, mask, first = random_clip(T, H, W)

    def fresh_edit():
        t0 = time.perf_counter()
        bb = build_backbone(dev, opts.get("layers"), opts["tiny_encoders"], opts["text_tokens"])
        built = time.perf_counter() - t0
        res = edit_video(bb, lora, video, mask, first, prompt=PROMPT, steps=opts["edit_steps"], seed=0,
                         memory_preset=None, progress=False)
        info = _edit_info(res, "saved folder" if lora else "none (training failed)")
        chosen = res.settings.get("memory_preset")
        info.update(build_seconds=round(built, 2), chosen_preset=chosen,
                    blocks_to_swap=res.settings.get("blocks_to_swap", 0), pid=os.getpid())
        if chosen in MEMORY_PRESETS and chosen != preset:  # "auto" picked another tier: predict for that one
            p = _predict_or_error(dict(bb.transformer.config), T, H, W, chosen)
            info.update(predicted_gpu_gb=p.get("stages", {}).get("editing"), predicted_for=chosen,
                        predicted_blocks_to_swap=p.get("edit_blocks_to_swap"))
        else:
            info["predicted_blocks_to_swap"] = rec.get("plan", {}).get("edit_blocks_to_swap")
        return res, info
    _stage(rec, "fresh_edit", fresh_edit, cuda, path)
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
    p.add_argument("--text-tokens", type=int, default=512, help="prompt length in tokens (Wan: 512; dry run: 32)")
    p.add_argument("--train-steps", type=int, default=3, help="training steps (the first one is warm-up)")
    p.add_argument("--edit-steps", type=int, default=2)
    p.add_argument("--optimizer", choices=("adamw", "adamw8bit"),
                   help="train every preset with this optimiser (default: the preset's; 'adamw' where the preset's "
                        "is 8-bit and bitsandbytes is missing)")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="total seconds: processes that would start later are skipped")
    p.add_argument("--preset-timeout-s", type=float, default=180.0,
                   help="each process (a preset's, its fresh edit's) is killed after this many seconds, or when "
                        "the budget runs out, whichever comes first")
    p.add_argument("--min-preset-s", type=float, default=60.0,
                   help="do not start a process with less than this much budget left")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100/H200: 989)")
    p.add_argument("--emulate-tier", action=argparse.BooleanOptionalAction, default=None,
                   help="cap GPU memory to each tier (default: when the card is bigger than the tier)")
    p.add_argument("--out", help="output folder (default: $OUT, else outputs/gpu_check)")
    p.add_argument("--lora-dir", help="keep the trained LoRAs here (default: a temporary folder, removed at the end; "
                                      "not OUT: a 14B LoRA is larger than what the GPU machine returns)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU smoke: 1 layer, tiny encoders, 5x32x32, preset 80GB+ (unless --presets is given)")
    p.add_argument("--prepare-wheels", metavar="DIR",
                   help="here, not on the GPU machine: write the wheels it lacks into DIR (a git-ignored folder of "
                        "this repository; its other *.whl are removed), print the size and the command, and exit")
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
        if "skipped" in s:
            parts.append(f"{name} skipped")
            continue
        mem = f" {s['peak_cuda_gb']:.1f}GB" if "peak_cuda_gb" in s else ""
        plan = f" (plan {s['predicted_gpu_gb']:.1f})" if s.get("predicted_gpu_gb") is not None else ""
        extra = f" {s['s_per_step']:.2f}s/step MFU {100 * s['mfu']:.0f}%" if s.get("s_per_step") else ""
        auto = f" auto={s['chosen_preset']}/{s['blocks_to_swap']} blocks" if s.get("chosen_preset") else ""
        parts.append(f"{name} {'ok' if s['ok'] else 'FAIL'} {s['seconds']:.0f}s{mem}{plan}{extra}{auto}")
    tail = f"  [{rec['error']}]" if "error" in rec else ""
    return f"{preset:>6}: " + "; ".join(parts) + tail


def _missing_line(versions: dict[str, str | None]) -> str | None:
    """One line about the packages a preset needs that this machine lacks, or None when nothing is missing."""
    missing = [n for n in NEEDED if versions.get(n) is None]
    if not missing:
        return None
    return (f"missing on this machine: {', '.join(missing)} (every preset needs them): on a machine with pip run "
            f"'python scripts/gpu_check.py --prepare-wheels .whl' and install them here as it prints")


def _child(target, *args, timeout: float, path: Path) -> dict:
    """``target(*args)`` in a fresh process (:func:`loraedit_nb.bench._run`) with ``timeout``; a process that dies
    or is killed gives what it wrote to ``path`` plus the error."""
    from loraedit_nb.bench import _run

    rec = _run(target, *args, timeout=timeout)
    if "stages" not in rec and path.exists():  # the process died or was killed: keep what it wrote
        rec = {**json.loads(path.read_text()), "error": rec.get("error")}
    return rec


def _fresh_edit(preset: str, rec: dict, opts: dict, path: Path, timeout: float | None) -> dict:
    """The preset's ``fresh_edit`` stage in its own process (``timeout`` None: skipped for the budget); skipped
    when the preset's process did not build the backbone (a fresh one would fail the same way)."""
    stages = rec.setdefault("stages", {})
    skip = ("the preset's process did not build the backbone" if not stages.get("build", {}).get("ok") else
            "time budget" if timeout is None else None)
    if skip:
        stages["fresh_edit"] = {"ok": False, "skipped": skip}
        return {**rec, "ok": False}
    train = stages.get("train", {})
    lora = train.get("lora_dir") if train.get("ok") and Path(train.get("lora_dir", "")).exists() else None
    out = _child(run_fresh_edit, preset, opts, str(path), lora, timeout=timeout, path=path)
    err = out.pop("error", None)  # the fresh process's own failure belongs to its stage
    stages = out.setdefault("stages", {})
    stages.setdefault("fresh_edit", {"ok": False, "error": err or "no record"})["timeout_s"] = timeout
    out["ok"] = all(s["ok"] for s in stages.values())
    return {**rec, **out}  # the parent's fields (the preset process's error, its timeout) stay

def main(argv: list[str] | None = None) -> dict:
    """Run the check; returns (and writes to ``OUT/gpu_check.json``) ``{"presets": {name: record}, ...}``.
    ``--prepare-wheels`` returns its report instead and runs nothing else."""
    a = _options(argv)
    if a.prepare_wheels:
        return prepare_wheels(a.prepare_wheels)
    out = Path(a.out or os.environ.get("OUT") or "outputs/gpu_check")
    out.mkdir(parents=True, exist_ok=True)
    opts = {k: getattr(a, k) for k in ("frames", "height", "width", "layers", "tiny_encoders", "text_tokens",
                                       "train_steps", "edit_steps", "peak_tflops", "emulate_tier")}
    versions = package_versions()
    summary = {"options": {**opts, "presets": a.presets, "budget_s": a.budget_s,
                           "preset_timeout_s": a.preset_timeout_s}, "packages": versions, "presets": {}}
    missing = _missing_line(versions)
    if missing:  # one line here instead of the same ImportError in every process
        print(f"[gpu_check] {missing}", flush=True)
        summary["error"] = missing
        _write_json(out / "gpu_check.json", summary)
        return summary
    optimizer = a.optimizer or ("adamw" if versions["bitsandbytes"] is None else None)
    if versions["bitsandbytes"] is None and not a.optimizer:
        print("[gpu_check] bitsandbytes is missing: presets with 8-bit AdamW train with optimizer='adamw' "
              "(recorded per preset)", flush=True)
    lora_root = Path(a.lora_dir) if a.lora_dir else Path(tempfile.mkdtemp(prefix="gpu_check_lora_"))
    t_start = time.monotonic()

    def timeout() -> float | None:  # this process's limit, None when too little budget is left to start it
        left = a.budget_s - (time.monotonic() - t_start)
        return min(a.preset_timeout_s, left) if left >= a.min_preset_s else None

    try:
        for preset in a.presets:
            limit = timeout()
            if limit is None:
                left = a.budget_s - (time.monotonic() - t_start)
                summary["presets"][preset] = {"skipped": f"time budget: {left:.0f} s of {a.budget_s:.0f} s left"}
                print(f"[gpu_check] {preset}: skipped ({left:.0f} s left)", flush=True)
                continue
            ov = run_overrides(preset, optimizer)
            note = (f"bitsandbytes missing: trained with {ov} instead of the preset's 8-bit AdamW"
                    if ov and versions["bitsandbytes"] is None and not a.optimizer else None)
            popts = {**opts, "overrides": ov, "note": note}
            path = out / f"preset_{safe_name(preset)}.json"
            path.unlink(missing_ok=True)
            rec = _child(run_preset, preset, popts, str(path), str(lora_root / safe_name(preset)), timeout=limit,
                         path=path)
            rec.update(timeout_s=limit, overrides=ov, **({"note": note} if note else {}))  # also when it died
            rec = _fresh_edit(preset, rec, popts, path, timeout())
            if not a.lora_dir:  # a 14B LoRA is ~0.15-0.3 GB: do not let four of them pile up
                shutil.rmtree(lora_root / safe_name(preset), ignore_errors=True)
            summary["presets"][preset] = rec
            summary["elapsed_s"] = round(time.monotonic() - t_start, 1)
            _write_json(out / "gpu_check.json", summary)
            print(f"[gpu_check] {_summary_line(preset, rec)}", flush=True)
    finally:
        if not a.lora_dir:
            shutil.rmtree(lora_root, ignore_errors=True)
    summary["elapsed_s"] = round(time.monotonic() - t_start, 1)
    _write_json(out / "gpu_check.json", summary)
    print(f"[gpu_check] done in {summary['elapsed_s']:.0f} s; wrote {out / 'gpu_check.json'}", flush=True)
    return summary


if __name__ == "__main__":
    sys.exit(1 if "error" in main() else 0)
