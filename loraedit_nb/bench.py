"""Benchmarks that print figures (not timed tests): ``python -m loraedit_nb.bench [--quick] [--json PATH]``.

Each configuration runs in its own process, so peak host RSS is that configuration's own. Rows:

* **training step, cached vs uncached**: cached = the engine's way (latents, condition, text embedding encoded
  once; a step runs only the transformer); uncached = re-encoding the clip, condition and prompt every step (what a
  naive loop does). With and without gradient checkpointing.
* **denoising step** (one transformer call + scheduler step through the pipeline) and **VAE decode** per clip.

Backbones: ``toy`` (the embedded default: lossless patchify VAE, so encoding is nearly free) and ``tiny-wan``
(tiny random ``AutoencoderKLWan``: the real VAE's structure, where encoding costs what it costs on a CPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path


def _setup(backbone: str, frames: int, size: int):
    import torch

    from .models import load_backbone, tiny_random_backbone
    from .regimes import motion_sample

    torch.set_num_threads(2)
    if backbone == "tiny-wan":
        bb = tiny_random_backbone(image_encoder=False, seed=0)
    else:
        bb = load_backbone(backbone)
    import numpy as np

    yy, xx = np.mgrid[:size, :size] / size
    video = np.stack([np.stack([xx, yy, 0.5 + 0.4 * np.sin(6 * xx + t / 2)], -1) for t in range(frames)])
    video = video.astype(np.float32)
    mask = np.zeros((frames, size, size), bool)
    for t in range(frames):
        c = int(size * (0.3 + 0.4 * t / frames))
        mask[t, size // 3 : size // 3 + size // 4, c - size // 8 : c + size // 8] = True
    return bb, motion_sample(video, mask, "a red disc moves right, fast")


def _train_rows(backbone: str, frames: int, size: int, cached: bool, ckpt: bool, steps: int, q) -> None:
    import torch

    from .conditioning import condition_from_tensors, encode
    from .lora import add_lora
    from .loss import flow_matching_loss, sample_timesteps
    from .training import cache_samples, toy_config
    from .video import to_model

    bb, s = _setup(backbone, frames, size)
    cfg = toy_config(colour_aug=None, batch_size=1, rank=8)
    t0 = time.perf_counter()
    c = cache_samples(bb, [s], cfg, progress=False)[0]
    t_cache = time.perf_counter() - t0
    tr = bb.transformer
    add_lora(tr, rank=8)
    if ckpt:
        tr.enable_gradient_checkpointing()
    tr.train()
    opt = torch.optim.AdamW([p for p in tr.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        if cached:
            z0, cond, text = c.latents, c.condition, c.text
        else:
            with torch.no_grad():
                z0 = encode(bb.vae, to_model(s.target))
                cond = condition_from_tensors(bb.vae, to_model(s.condition), torch.from_numpy(s.keep)[None, None])
                text = bb.encode_prompt(s.prompt)
        t = sample_timesteps(1, generator=g)
        loss = flow_matching_loss(tr, z0, cond, text, t, torch.randn(z0.shape, generator=g))
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - t0)
    q.put({"stage": "train_step", "backbone": backbone, "frames": frames, "size": size, "cached": cached,
           "grad_ckpt": ckpt, "s_per_step": sum(times) / len(times), "cache_s": t_cache if cached else None,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _infer_rows(backbone: str, frames: int, size: int, steps: int, q) -> None:
    import torch

    from .conditioning import decode
    from .inference import generate

    bb, s = _setup(backbone, frames, size)
    times = []

    def cb(pipe, i, t, kw):
        times.append(time.perf_counter())
        return {}
    t0 = time.perf_counter()
    generate(bb, s.target, s.mask_region, steps=steps, guidance=1.0, progress=False, callback_on_step_end=cb)
    total = time.perf_counter() - t0
    per_step = (times[-1] - times[0]) / max(1, len(times) - 1)
    lat = torch.randn(1, bb.vae.config.z_dim, (frames - 1) // 4 + 1, size // bb.geometry.spatial,
                      size // bb.geometry.spatial)
    t0 = time.perf_counter()
    with torch.no_grad():
        decode(bb.vae, lat)
    q.put({"stage": "inference", "backbone": backbone, "frames": frames, "size": size, "denoise_s_per_step": per_step,
           "decode_s": time.perf_counter() - t0, "total_s": total, "steps": steps,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _run(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    row = q.get(timeout=900)
    p.join()
    return row


def run(quick: bool = False) -> list[dict]:
    rows = []
    steps = 2 if quick else 10
    configs = [("toy", 9, 32)] + ([] if quick else [("tiny-wan", 9, 64)])
    for bb, T, S in configs:
        for cached in (True, False):
            for ckpt in ((False,) if quick else (False, True)):
                rows.append(_run(_train_rows, bb, T, S, cached, ckpt, steps))
        rows.append(_run(_infer_rows, bb, T, S, 4 if quick else 10))
    return rows


def table(rows: list[dict]) -> str:
    out = ["| backbone | clip | stage | caching | grad ckpt | s/step | peak RSS MB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        clip = f"{r['frames']}x{r['size']}x{r['size']}"
        if r["stage"] == "train_step":
            out.append(f"| {r['backbone']} | {clip} | LoRA train step | {'on' if r['cached'] else 'off'} | "
                       f"{'on' if r['grad_ckpt'] else 'off'} | {r['s_per_step']:.4f} | {r['peak_rss_mb']:.0f} |")
        else:
            out.append(f"| {r['backbone']} | {clip} | denoise step (+decode {r['decode_s']:.3f} s) | - | - | "
                       f"{r['denoise_s_per_step']:.4f} | {r['peak_rss_mb']:.0f} |")
    speed = {}
    for r in rows:
        if r["stage"] == "train_step" and not r["grad_ckpt"]:
            speed.setdefault(r["backbone"], {})[r["cached"]] = r["s_per_step"]
    for bb, d in speed.items():
        if True in d and False in d:
            out.append(f"\ncaching speed-up ({bb}): {d[False] / d[True]:.1f}x per training step")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps, toy backbone only (CI smoke)")
    p.add_argument("--json", default="outputs/bench/bench.json")
    a = p.parse_args(argv)
    rows = run(a.quick)
    print(table(rows))
    path = Path(a.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
