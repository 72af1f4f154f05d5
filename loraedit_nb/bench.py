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


# ----------------------------------------------------------------------------------------------- full-size Wan
WAN_14B_CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36,
                      out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                      qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120,
                      rope_max_seq_len=1024)  # Wan2.1-I2V-14B-480P/720P transformer config (published)


def transformer_flops(cfg: dict, frames: int, height: int, width: int, *, text_len: int = 512,
                      image_tokens: int = 257) -> dict:
    """Analytic FLOPs of one Wan transformer forward (2 FLOPs per multiply-add); a training step counts 3x.

    Per block: self-attention projections (4 d^2 per token) and scores (2 N^2 d), text/image cross-attention
    (q, o per video token; k, v per context token; 2 N C d scores), FFN (2 d f per token)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    f, L = cfg["ffn_dim"], cfg["num_layers"]
    pt, ph, pw = cfg["patch_size"]
    n = ((frames - 1) // 4 + 1) // pt * (height // 8 // ph) * (width // 8 // pw)
    ctx = text_len + (image_tokens if cfg.get("image_dim") else 0)
    macs = L * (n * (6 * d * d + 2 * d * f) + ctx * 2 * d * d + 2 * n * n * d + 2 * n * ctx * d)
    fwd = 2 * macs
    return {"tokens": n, "forward_flops": fwd, "train_step_flops": 3 * fwd}


# HunyuanVideo-I2V-33ch transformer config (published sizes; guidance_embeds assumed off: the 33ch model is run with
# guidance 1 by its authors, and the guidance embedder is a few MB either way)
HUNYUAN_13B_CONFIG = dict(in_channels=33, out_channels=16, num_attention_heads=24, attention_head_dim=128,
                          num_layers=20, num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2,
                          patch_size_t=1, qk_norm="rms_norm", guidance_embeds=False, text_embed_dim=4096,
                          pooled_projection_dim=768, rope_theta=256.0, rope_axes_dim=(16, 56, 56),
                          image_condition_type="latent_concat")


def hunyuan_flops(cfg: dict, frames: int, height: int, width: int, *, text_len: int = 256 + 288) -> dict:
    """Analytic FLOPs of one HunyuanVideo transformer forward (2 FLOPs per multiply-add); training counts 3x.

    Dual-stream blocks: per token (video and text, own weights) q/k/v/o 4 d^2 + MLP 2 r d^2; single-stream blocks:
    fused q/k/v/MLP-in (3 + r) d^2 + out (1 + r) d^2 per token; joint attention 2 (N + C)^2 d in every block.
    ``text_len``: Llava text (256) + the image's semantic tokens (576, every 2nd kept)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    r = cfg["mlp_ratio"]
    p, pt = cfg["patch_size"], cfg["patch_size_t"]
    n = ((frames - 1) // 4 + 1) // pt * (height // 8 // p) * (width // 8 // p)
    tot = n + text_len
    per_tok = (4 + 2 * r) * d * d
    macs = cfg["num_layers"] * (tot * per_tok + 2 * tot * tot * d) \
        + cfg["num_single_layers"] * (tot * (4 + 2 * r) * d * d + 2 * tot * tot * d)
    fwd = 2 * macs
    return {"tokens": n, "forward_flops": fwd, "train_step_flops": 3 * fwd}


FULL_MODELS = {"wan14b": (WAN_14B_CONFIG, transformer_flops), "hunyuan13b": (HUNYUAN_13B_CONFIG, hunyuan_flops)}

from .training import MEMORY_PRESETS  # noqa: E402,F401  (documented beside the measurements)


def _full_model(model: str, layers: int | None, device, dtype):
    """The full-size transformer with random weights, built on the meta device then materialised (no download)."""
    import torch
    from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel

    base, flops = FULL_MODELS[model]
    if model == "wan14b":
        cfg = dict(base, **({"num_layers": layers} if layers else {}))
        cls = WanTransformer3DModel
    else:
        cfg = dict(base, **({"num_layers": layers, "num_single_layers": 2 * layers} if layers else {}))
        cls = HunyuanVideoTransformer3DModel
    with torch.device("meta"):
        tr = cls(**cfg)
    tr = tr.to_empty(device=device).to(dtype)
    with torch.no_grad():
        for p in tr.parameters():
            p.normal_(0, 0.02)
    if model == "wan14b":  # rope buffers are not parameters: rebuild them on the device
        tr.rope = type(tr.rope)(cfg["attention_head_dim"], cfg["patch_size"], cfg["rope_max_seq_len"]).to(device)
    return tr, cfg, flops


def _full_inputs(model: str, cfg: dict, frames: int, height: int, width: int, dev, dtype):
    """Random latents, condition and context shaped as the family's pipeline feeds its transformer."""
    import torch

    L, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    z0 = torch.randn(1, 16, L, h, w, device=dev)
    if model == "wan14b":
        cond = torch.randn(1, 20, L, h, w, device=dev)
        ctx = {"encoder_hidden_states": torch.randn(1, 512, 4096, device=dev, dtype=dtype),
               "encoder_hidden_states_image": torch.randn(1, 257, 1280, device=dev, dtype=dtype)}
    else:
        cond = torch.randn(1, 17, L, h, w, device=dev)
        ctx = {"encoder_hidden_states": torch.randn(1, 544, 4096, device=dev, dtype=dtype),
               "encoder_attention_mask": torch.ones(1, 544, device=dev),
               "pooled_projections": torch.randn(1, 768, device=dev, dtype=dtype)}
    return z0, cond, ctx


def _full_rows(frames: int, height: int, width: int, option: str, steps: int, layers: int | None,
                   peak_tflops: float, model: str, q) -> None:
    """One training-step measurement of a full-size transformer (Wan 14B / Hunyuan 13B) with random weights."""
    import torch

    from .adapters import adapter_for
    from .lora import add_lora
    from .loss import flow_matching_loss

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16
    tr, cfg, flops = _full_model(model, layers, torch.device("cpu") if option == "block_offload" else dev, dtype)
    if option == "fp8":
        tr.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    add_lora(tr, rank=16, targets=adapter_for(tr).lora_targets)
    if option != "no_ckpt":
        tr.enable_gradient_checkpointing()
    if option == "block_offload":
        tr.enable_group_offload(onload_device=dev, offload_type="block_level", num_blocks_per_group=1,
                                use_stream=dev.type == "cuda")
    params = [p for p in tr.parameters() if p.requires_grad]
    if option == "adam8bit":
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit(params, lr=1e-4)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4)
    z0, cond, ctx = _full_inputs(model, cfg, frames, height, width, dev, dtype)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype):
            loss = flow_matching_loss(tr, z0, cond, ctx, torch.rand(1, device=dev), torch.randn_like(z0))
        loss.backward()
        opt.step()
        opt.zero_grad()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    fl = flops(cfg, frames, height, width)
    s = sum(times) / len(times)
    q.put({"stage": "wan_full_train_step", "backbone": f"{model}-random{'' if not layers else f'-{layers}L'}",
           "frames": frames, "size": f"{height}x{width}", "option": option, "s_per_step": s,
           "tflops_per_s": fl["train_step_flops"] / s / 1e12, "mfu": fl["train_step_flops"] / s / (peak_tflops * 1e12),
           "peak_cuda_gb": torch.cuda.max_memory_allocated() / 1e9 if dev.type == "cuda" else None,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tokens": fl["tokens"]})


def run_wan_full(frames_list=(17, 33, 49, 81), options=("ckpt", "fp8", "block_offload", "adam8bit", "no_ckpt"),
                 steps: int = 2, layers: int | None = None, height: int = 480, width: int = 832,
                 peak_tflops: float = 989.0, model: str = "wan14b") -> list[dict]:
    """Full-size training-step benchmark with random weights (``model``: ``"wan14b"`` = Wan2.1-I2V-14B,
    ``"hunyuan13b"`` = HunyuanVideo-I2V-33ch), one process per row. GPU script; ``layers=1`` and a small size make a
    CPU dry run. Failed rows (e.g. OOM) are recorded with their error."""
    rows = []
    for T in frames_list:
        for opt in options:
            try:
                rows.append(_run(_full_rows, T, height, width, opt, steps, layers, peak_tflops, model))
            except Exception as e:  # an OOM in a child shows up as a dead queue
                rows.append({"stage": "wan_full_train_step", "backbone": model, "frames": T, "option": opt,
                             "error": str(e)[:200]})
    return rows


def _run(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    try:
        row = q.get(timeout=900)
    except Exception as e:
        p.join(5)
        raise RuntimeError(f"benchmark process died (exit code {p.exitcode}): out of memory?") from e
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
        if r["stage"] == "wan_full_train_step":
            if "error" in r:
                out.append(f"| {r.get('backbone', 'wan14b')} | {r['frames']}f | train step, {r['option']} | - | - | "
                           f"failed: {r['error']} "
                           "| - |")
            else:
                mem = f"{r['peak_cuda_gb']:.1f} GB GPU" if r.get("peak_cuda_gb") else f"{r['peak_rss_mb']:.0f}"
                out.append(f"| {r['backbone']} | {r['frames']}f {r['size']} | train step, {r['option']} "
                           f"(MFU {100 * r['mfu']:.1f} %) | on | {r['option'] != 'no_ckpt'} | {r['s_per_step']:.3f} "
                           f"| {mem} |")
            continue
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
    p.add_argument("--wan-full", action="store_true", help="full-size Wan2.1-I2V-14B, random weights (GPU)")
    p.add_argument("--hunyuan-full", action="store_true", help="full-size HunyuanVideo-I2V-33ch, random weights (GPU)")
    p.add_argument("--frames", type=int, nargs="+", default=[17, 33, 49, 81])
    p.add_argument("--options", nargs="+", default=["ckpt", "fp8", "block_offload", "adam8bit", "no_ckpt"])
    p.add_argument("--layers", type=int, help="override the layer count (CPU dry run: 1)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100/H200: 989)")
    a = p.parse_args(argv)
    if a.wan_full or a.hunyuan_full:
        rows = []
        for model, on in (("wan14b", a.wan_full), ("hunyuan13b", a.hunyuan_full)):
            if on:
                rows += run_wan_full(tuple(a.frames), tuple(a.options), layers=a.layers, height=a.height,
                                     width=a.width, peak_tflops=a.peak_tflops, model=model)
    else:
        rows = run(a.quick)
    print(table(rows))
    path = Path(a.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
