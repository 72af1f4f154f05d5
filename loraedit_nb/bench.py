"""Benchmarks that print figures (not timed tests).

    python -m loraedit_nb bench [--quick] [--json PATH]                   # toy / tiny-Wan rows, CPU
    python -m loraedit_nb bench --wan-full [--hunyuan-full] [--frames 17 49] [--presets 80GB+ 24GB]   # GPU
    python -m loraedit_nb.bench ...                                       # the same

Each row runs in its own process, so peak host RSS and peak GPU memory are that row's own, and a row that dies
(out of memory, an exception) is reported within seconds as an error row. Rows are printed as they finish.

Small rows (CPU):

* **training step, cached vs uncached**: cached = the engine's way (latents, condition, text embedding encoded
  once; a step runs only the transformer); uncached = re-encoding the clip, condition and prompt every step (what a
  naive loop does). With and without gradient checkpointing.
* **denoising step** (one transformer call + scheduler step through the pipeline) and **VAE decode** per clip.
  Backbones: ``toy`` (the embedded default: lossless patchify VAE, so encoding is nearly free) and ``tiny-wan``
  (tiny random ``AutoencoderKLWan``: the real VAE's structure, where encoding costs what it costs on a CPU).

Full-size rows (``--wan-full`` = Wan2.1-I2V-14B, ``--hunyuan-full`` = HunyuanVideo-I2V-33ch, random weights, no
download): one row per (frames x option). An option is a memory preset (:data:`loraedit_nb.memory.MEMORY_PRESETS`:
``16GB``, ``24GB``, ``48GB``, ``80GB+``) or a raw variant (``no_ckpt``: the 80GB+ settings without gradient
checkpointing; ``swap<N>``: the 48GB settings with exactly N blocks swapped). Each row runs
:func:`loraedit_nb.training.train_lora` itself — the exact training code path (staged placement, fp8 cast on the
CPU, block swapping, autocast, 8-bit AdamW, gradient clipping) — on random already-encoded samples, and reads
s/step from ``run.history`` (first step skipped: allocator and kernel warm-up) and peak memory from ``run.memory``.
On a card bigger than the preset's tier the row caps itself to the tier
(``torch.cuda.set_per_process_memory_fraction``, ``--emulate-tier``, on by default), so an H200 row tells whether
the preset fits a 24 GB card. MFU counts the FLOPs a LoRA step on a frozen base needs (:func:`train_step_flops`);
HFU also counts the forward recomputed by gradient checkpointing.

On a CPU ``--layers 1`` and a small clip make a dry run of the same code path (``blocks_to_swap="auto"`` resolves
to 0 there; ``swap<N>`` swaps on the CPU too). A ~10-minute H200 run: ``--wan-full --frames 49 --presets 80GB+
48GB 24GB --steps 2``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import resource
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from .memory import MEMORY_PRESETS  # noqa: F401  (the presets the full-size rows measure)


# ----------------------------------------------------------------------------------------------- small rows (CPU)
def _setup(backbone: str, frames: int, size: int):
    import numpy as np
    import torch

    from .models import load_backbone, tiny_random_backbone
    from .regimes import motion_sample

    torch.set_num_threads(2)
    if backbone == "tiny-wan":
        bb = tiny_random_backbone(image_encoder=False, seed=0)
    else:
        bb = load_backbone(backbone)
    yy, xx = np.mgrid[:size, :size] / size
    video = np.stack([np.stack([xx, yy, 0.5 + 0.4 * np.sin(6 * xx + t / 2)], -1) for t in range(frames)])
    video = video.astype(np.float32)
    mask = np.zeros((frames, size, size), bool)
    for t in range(frames):
        c = int(size * (0.3 + 0.4 * t / frames))
        mask[t, size // 3 : size // 3 + size // 4, c - size // 8 : c + size // 8] = True
    return bb, motion_sample(video, mask, "a red disc moves right, fast")


def _train_rows(backbone: str, frames: int, size: int, cached: bool, ckpt: bool, steps: int) -> dict:
    """One small training-step row: s/step with the clip encoded once (cached) or every step (uncached)."""
    import torch

    from .backbones import condition_from_tensors
    from .conditioning import encode
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
    return {"stage": "train_step", "backbone": backbone, "frames": frames, "size": size, "cached": cached,
            "grad_ckpt": ckpt, "s_per_step": sum(times) / len(times), "cache_s": t_cache if cached else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _infer_rows(backbone: str, frames: int, size: int, steps: int) -> dict:
    """One small inference row: s per denoising step through the pipeline, and one VAE decode."""
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
    return {"stage": "inference", "backbone": backbone, "frames": frames, "size": size,
            "denoise_s_per_step": per_step, "decode_s": time.perf_counter() - t0, "total_s": total, "steps": steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ----------------------------------------------------------------------------------------------- model configs
WAN_14B_CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36,
                      out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                      qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120,
                      rope_max_seq_len=1024)  # Wan2.1-I2V-14B-480P/720P transformer config (published)

# HunyuanVideo-I2V-33ch transformer config (published sizes; guidance_embeds assumed off: the 33ch model is run with
# guidance 1 by its authors, and the guidance embedder is a few MB either way)
HUNYUAN_13B_CONFIG = dict(in_channels=33, out_channels=16, num_attention_heads=24, attention_head_dim=128,
                          num_layers=20, num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2,
                          patch_size_t=1, qk_norm="rms_norm", guidance_embeds=False, text_embed_dim=4096,
                          pooled_projection_dim=768, rope_theta=256.0, rope_axes_dim=(16, 56, 56),
                          image_condition_type="latent_concat")

FULL_MODELS = {"wan14b": WAN_14B_CONFIG, "hunyuan13b": HUNYUAN_13B_CONFIG}
WAN_TEXT_LEN, WAN_IMAGE_TOKENS = 512, 257  # UMT5 tokens (padded), CLIP ViT-H/14 tokens at 224 px
HUNYUAN_TEXT_LEN = 256 + 288  # Llava text (256) + the image's semantic tokens (576, every 2nd kept)


# ----------------------------------------------------------------------------------------------- FLOPs
def _tokens(frames: int, height: int, width: int, pt: int, ph: int, pw: int) -> int:
    """Video tokens: the x4 temporal / x8 spatial VAE latent, then the transformer's patch."""
    return ((frames - 1) // 4 + 1) // pt * (height // 8 // ph) * (width // 8 // pw)


def _lora(m: int, rank: int, fan_in: int, fan_out: int) -> int:
    """Forward FLOPs of one rank-``rank`` LoRA on ``m`` tokens: x A (in -> r), then (x A) B (r -> out)."""
    return 2 * m * rank * (fan_in + fan_out)


def _wan_parts(cfg: dict, frames: int, height: int, width: int, rank: int, text_len: int = WAN_TEXT_LEN,
               image_tokens: int = WAN_IMAGE_TOKENS) -> dict:
    """Forward FLOPs of the Wan transformer's blocks, split by what a LoRA step does with them in backward.

    Per block, ``n`` video tokens, ``ctx`` = text + CLIP tokens, d = model width, f = FFN width:
    ``video_gemm`` = self-attention q/k/v/o (4 d^2), cross-attention q/o (2 d^2), FFN (2 d f) per video token: their
    input gradient is needed (the LoRA below them trains); ``context_gemm`` = cross-attention K/V of the text and
    image tokens (2 d^2 per context token): the context is constant, so no gradient flows into them; ``attention`` =
    the attention core (QK^T and PV: 2 n^2 d self + 2 n ctx d cross multiply-adds); ``lora`` = the LoRA's own GEMMs on
    the default targets (self q/k/v/o, cross q/o on the video tokens, cross k/v on the text tokens, FFN in/out).
    The patch/condition/time embedders and the head are left out (< 0.1 % at 480p)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    f, L = cfg["ffn_dim"], cfg["num_layers"]
    n = _tokens(frames, height, width, *cfg["patch_size"])
    ctx = text_len + (image_tokens if cfg.get("image_dim") else 0)
    lora = 6 * _lora(n, rank, d, d) + _lora(n, rank, d, f) + _lora(n, rank, f, d) + 2 * _lora(text_len, rank, d, d)
    return {"tokens": n, "layers": L, "video_gemm": L * 2 * n * (6 * d * d + 2 * d * f),
            "context_gemm": L * 2 * ctx * 2 * d * d, "attention": L * 2 * (2 * n * n * d + 2 * n * ctx * d),
            "lora": L * lora}


def _hunyuan_parts(cfg: dict, frames: int, height: int, width: int, rank: int,
                   text_len: int = HUNYUAN_TEXT_LEN) -> dict:
    """As :func:`_wan_parts` for HunyuanVideo: every block (dual- and single-stream) runs ``(4 + 2 r) d^2`` of GEMMs
    per token over the video *and* text tokens (dual: q/k/v/o + MLP on each stream's own weights; single: fused
    q/k/v/MLP-in + out) and joint attention ``2 (n + C)^2 d``. The LoRA targets cover both streams, so after the
    first block the text tokens carry gradients too: all GEMMs need their input gradient (``video_gemm``; the text
    refiner, embedders and head are left out, < 1 %)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    r = cfg["mlp_ratio"]
    rd = int(r * d)
    p, pt = cfg["patch_size"], cfg["patch_size_t"]
    n = _tokens(frames, height, width, pt, p, p)
    tot = n + text_len
    blocks = cfg["num_layers"] + cfg["num_single_layers"]
    gemm = 2 * tot * (4 + 2 * r) * d * d
    attn = 2 * 2 * tot * tot * d
    dual = 4 * _lora(tot, rank, d, d) + _lora(tot, rank, d, rd) + _lora(tot, rank, rd, d)  # each stream its own
    single = 3 * _lora(tot, rank, d, d) + _lora(tot, rank, d, rd) + _lora(tot, rank, d + rd, d)
    return {"tokens": n, "layers": blocks, "video_gemm": int(blocks * gemm), "context_gemm": 0,
            "attention": blocks * attn, "lora": cfg["num_layers"] * dual + cfg["num_single_layers"] * single}


def _parts(cfg: dict, frames: int, height: int, width: int, rank: int) -> dict:
    return (_hunyuan_parts if "num_single_layers" in cfg else _wan_parts)(cfg, frames, height, width, rank)


def train_step_flops(cfg: dict, frames: int, height: int, width: int, rank: int = 16,
                     checkpointing: bool = True) -> dict:
    """FLOPs (2 per multiply-add) of one LoRA training step on a frozen base, batch 1, for either family's config
    (``WAN_14B_CONFIG`` / ``HUNYUAN_13B_CONFIG``).

    * ``forward_flops``: one forward (base GEMMs + attention core + LoRA);
    * ``model_flops`` — what the step *needs*, used for **MFU**, without the checkpointing recompute: the forward;
      backward input-gradient GEMMs only (1x the base GEMMs whose input carries a gradient; a frozen base computes
      no weight gradients, and the constant text/image context gets none); attention core backward (2x its
      forward); LoRA backward (~2x its forward: its weight gradients and input gradient);
    * ``executed_flops`` — what runs, used for **HFU**: ``model_flops`` + the forward again under gradient
      checkpointing (each block is recomputed in backward);
    * ``dense_3x_flops``: the usual "3 x forward" of a fully trained model (what this benchmark used to count:
      it overstates a LoRA step by the weight-gradient GEMMs a frozen base never runs).

    Wan2.1-14B, 49 frames 480x832: 2.51 PFLOP (3x), 2.03 needed, 2.87 executed with checkpointing."""
    p = _parts(cfg, frames, height, width, rank)
    base = p["video_gemm"] + p["context_gemm"] + p["attention"]
    fwd = base + p["lora"]
    model = fwd + p["video_gemm"] + 2 * p["attention"] + 2 * p["lora"]
    return {"tokens": p["tokens"], "forward_flops": fwd, "model_flops": model,
            "executed_flops": model + (fwd if checkpointing else 0), "dense_3x_flops": 3 * base}


def transformer_flops(cfg: dict, frames: int, height: int, width: int, *, text_len: int = WAN_TEXT_LEN,
                      image_tokens: int = WAN_IMAGE_TOKENS) -> dict:
    """Analytic FLOPs of one Wan transformer forward without LoRA (2 FLOPs per multiply-add): self-attention
    projections (4 d^2 per token) and scores (2 N^2 d), text/image cross-attention (q, o per video token; k, v per
    context token; 2 N C d scores), FFN (2 d f per token). A training step: :func:`train_step_flops`."""
    p = _wan_parts(cfg, frames, height, width, 0, text_len, image_tokens)
    return {"tokens": p["tokens"], "forward_flops": p["video_gemm"] + p["context_gemm"] + p["attention"]}


def hunyuan_flops(cfg: dict, frames: int, height: int, width: int, *, text_len: int = HUNYUAN_TEXT_LEN) -> dict:
    """Analytic FLOPs of one HunyuanVideo transformer forward without LoRA (see :func:`_hunyuan_parts`)."""
    p = _hunyuan_parts(cfg, frames, height, width, 0, text_len)
    return {"tokens": p["tokens"], "forward_flops": p["video_gemm"] + p["attention"]}


# ----------------------------------------------------------------------------------------------- random weights
_POOL: dict = {}


def _pool(device, size: int = 1 << 24):
    """A fixed N(0, 1) fp32 pool (64 MB) that random weights are copied from: copying runs at memory speed, while
    ``normal_`` on a CPU draws each number (~2x slower) and transformers' ``_init_weights`` far slower still."""
    import torch

    key = str(device)
    if key not in _POOL:
        _POOL[key] = torch.randn(size, generator=torch.Generator().manual_seed(1234)).to(device)
    return _POOL[key]


def _fill_random_(t, name: str, gen) -> None:
    """Cheap init in place: biases 0, 1-D weights (norms, scales) 1, matrices N(0, 1/fan_in) from the pool at a
    random offset (fan_in = all but the first dim, so activations keep unit scale through random layers)."""
    import torch

    if name.endswith("bias"):
        t.zero_()
        return
    if t.ndim <= 1:
        t.fill_(1.0)
        return
    pool = _pool(t.device)
    half = pool.numel() // 2
    flat = t.view(-1)
    start = int(torch.randint(0, half, (1,), generator=gen))
    for s in range(0, flat.numel(), half):
        e = min(flat.numel(), s + half)
        flat[s:e].copy_(pool[start:start + (e - s)])
    t.mul_(t[0].numel() ** -0.5)


def materialize_(module, device="cpu", dtype=None, *, keep_fp32: Sequence[str] | None = None, seed: int = 0):
    """Give every meta-device parameter of ``module`` real storage on ``device``, directly in its final dtype
    (``dtype``; never fp32 first), filled by :func:`_fill_random_`. ``keep_fp32``: module/parameter names kept in
    fp32 the way diffusers' ``from_pretrained`` keeps ``_keep_in_fp32_modules`` (a name equal to one component of
    the dotted parameter path). Tied parameters stay tied. Buffers (built for real, e.g. rope tables) move to
    ``device`` as they are. Returns ``module``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    keep = set(keep_fp32 or ())
    done: dict[int, torch.nn.Parameter] = {}
    with torch.no_grad():
        for mname, sub in module.named_modules():
            for pname, p in list(sub._parameters.items()):
                if p is None:
                    continue
                if id(p) in done:  # a tied weight (e.g. UMT5's shared / embed_tokens)
                    sub._parameters[pname] = done[id(p)]
                    continue
                full = f"{mname}.{pname}" if mname else pname
                dt = p.dtype
                if p.is_floating_point() and dtype is not None:
                    dt = torch.float32 if keep.intersection(full.split(".")) else dtype
                t = torch.empty(p.shape, dtype=dt, device=device)
                _fill_random_(t, pname, gen)
                new = torch.nn.Parameter(t, requires_grad=p.requires_grad)
                sub._parameters[pname] = done[id(p)] = new
            for bname, b in list(sub._buffers.items()):
                if b is not None and b.device != torch.device(device):
                    sub._buffers[bname] = b.to(device)
    return module


def random_init(factory: Callable, device="cpu", dtype=None, *, keep_fp32: Sequence[str] | None = None,
                seed: int = 0):
    """``factory()`` built with its parameters on the meta device (no memory, no init), then
    :func:`materialize_`-d on ``device`` in ``dtype``: a full-size model with random weights in seconds."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):  # buffers built for real: Wan's rope tables are computed here
        m = factory()
    if hasattr(m, "tie_weights"):  # transformers: the meta patch re-creates every parameter, which unties them
        m.tie_weights()
    return materialize_(m, device, dtype, keep_fp32=keep_fp32, seed=seed)


def full_transformer(model: str, layers: int | None = None, device="cpu", dtype=None, seed: int = 0):
    """The full-size transformer of ``model`` (``"wan14b"`` / ``"hunyuan13b"``) with random weights, materialised
    directly in ``dtype`` (default bf16) with the class's ``_keep_in_fp32_modules`` in fp32, as
    ``from_pretrained(torch_dtype=bf16)`` gives it. ``layers``: reduced depth (Hunyuan: ``layers`` dual-stream and
    ``2 * layers`` single-stream blocks). Returns ``(transformer, config)``."""
    import torch
    from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel

    if model not in FULL_MODELS:
        raise KeyError(f"unknown full-size model {model!r}: use one of {list(FULL_MODELS)}")
    cfg = dict(FULL_MODELS[model])
    if model == "wan14b":
        cls = WanTransformer3DModel
        if layers:
            cfg["num_layers"] = layers
    else:
        cls = HunyuanVideoTransformer3DModel
        if layers:
            cfg.update(num_layers=layers, num_single_layers=2 * layers)
    tr = random_init(lambda: cls(**cfg), device, dtype or torch.bfloat16, keep_fp32=cls._keep_in_fp32_modules,
                     seed=seed)
    return tr.eval(), cfg


def full_samples(model: str, frames: int, height: int, width: int, n: int = 1, seed: int = 0) -> list:
    """Random :class:`~loraedit_nb.training.CachedSample`\\ s on the CPU, shaped as the family's pipeline feeds its
    transformer (what ``cache_samples`` would give): latents ``(1, 16, L, h, w)`` with ``L = (T - 1) / 4 + 1``,
    ``h, w = H / 8, W / 8``; Wan: condition ``(1, 20, L, h, w)`` = 4 mask channels (0/1) + 16 latent channels,
    context UMT5 text ``(1, 512, 4096)`` + CLIP ``(1, 257, 1280)``; Hunyuan: condition ``(1, 17, L, h, w)`` =
    latent x mask + 1 mask channel, context Llava text ``(1, 544, 4096)``, its attention mask and pooled CLIP text
    ``(1, 768)``. fp32, as the cache stores them."""
    import torch

    from .training import CachedSample

    g = torch.Generator().manual_seed(seed)
    L, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    out = []
    for _ in range(n):
        z0 = torch.randn(1, 16, L, h, w, generator=g)
        keep = (torch.rand(1, 1, L, h, w, generator=g) < 0.7).float()
        lat = torch.randn(1, 16, L, h, w, generator=g)
        if model == "wan14b":
            cond = torch.cat([keep.expand(1, 4, L, h, w), lat], 1)
            ctx = {"encoder_hidden_states": torch.randn(1, WAN_TEXT_LEN, 4096, generator=g),
                   "encoder_hidden_states_image": torch.randn(1, WAN_IMAGE_TOKENS, 1280, generator=g)}
        else:
            cond = torch.cat([lat * keep, keep], 1)
            ctx = {"encoder_hidden_states": torch.randn(1, HUNYUAN_TEXT_LEN, 4096, generator=g),
                   "encoder_attention_mask": torch.ones(1, HUNYUAN_TEXT_LEN),
                   "pooled_projections": torch.randn(1, 768, generator=g), "guidance": None}
        out.append(CachedSample(z0, cond, ctx, "motion", "random"))
    return out


# ----------------------------------------------------------------------------------------------- options, tiers
RAW_VARIANTS = ("no_ckpt", "swap<N>")


def option_config(option: str, steps: int, rank: int = 16):
    """``(TrainConfig, tier_gb)`` of a full-size row: a memory preset (tier = its card size) or a raw variant
    (tier None = the whole card). ``steps`` = training steps run (the first is warm-up)."""
    from .training import wan_config

    common = dict(steps=steps, colour_aug=None, rank=rank)
    if option in MEMORY_PRESETS:
        return wan_config(memory_preset=option, **common), MEMORY_PRESETS[option].gpu_gb
    if option == "no_ckpt":  # the 80GB+ settings without gradient checkpointing: what checkpointing saves
        return wan_config(memory_preset="80GB+", gradient_checkpointing=False, **common), None
    if option.startswith("swap") and option[4:].isdigit():  # fp8 + exactly N blocks swapped: the swap overhead
        return wan_config(memory_preset="48GB", blocks_to_swap=int(option[4:]), **common), None
    raise ValueError(f"unknown option {option!r}: use a memory preset {list(MEMORY_PRESETS)} or one of "
                     f"{list(RAW_VARIANTS)}")


def cap_gpu_memory(tier_gb: float | None, emulate: bool | None = None) -> float | None:
    """Emulate a ``tier_gb`` card on a bigger one: cap this process's CUDA allocator at that many GB (call before
    anything is allocated). ``emulate``: None = when the card is bigger than the tier; False = never. Returns the
    cap in GB, or None when there is no cap (no CUDA, no tier, a card no bigger than the tier). The cap covers
    PyTorch's allocator only (not the CUDA context or cuBLAS workspaces: a real card has ~0.5-1 GB less)."""
    import torch

    if tier_gb is None or emulate is False or not torch.cuda.is_available():
        return None
    total = torch.cuda.get_device_properties(0).total_memory
    if total <= tier_gb * 1e9:
        return None
    torch.cuda.set_per_process_memory_fraction(tier_gb * 1e9 / total)
    return float(tier_gb)


# ----------------------------------------------------------------------------------------------- full-size rows
def _full_rows(model: str, frames: int, height: int, width: int, option: str, steps: int, layers: int | None,
               peak_tflops: float, emulate_tier: bool | None = None, rank: int = 16) -> dict:
    """One full-size training row through :func:`~loraedit_nb.training.train_lora` (runs in its own process)."""
    import torch

    if model not in FULL_MODELS:  # before the heavy imports: a typo fails in seconds
        raise KeyError(f"unknown full-size model {model!r}: use one of {list(FULL_MODELS)}")
    from .models import Backbone
    from .training import train_lora

    cfg, tier = option_config(option, steps + 1, rank)
    cap = cap_gpu_memory(tier, emulate_tier)  # first: before anything touches the GPU
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tr, mcfg = full_transformer(model, layers)  # on the CPU, bf16: the staged placement of a real backbone
    name = f"{model}-random{f'-{layers}L' if layers else ''}"
    bb = Backbone(name, tr, None, None, None, None, execution_device=dev)
    run = train_lora(bb, full_samples(model, frames, height, width), cfg, progress=False)
    times = [h["seconds"] for h in run.history[1:]] or [run.history[0]["seconds"]]
    s = sum(times) / len(times)
    fl = train_step_flops(mcfg, frames, height, width, rank=cfg.rank, checkpointing=cfg.gradient_checkpointing)
    mem = dict(run.memory)
    return {"stage": "full_train_step", "backbone": name, "model": model, "frames": frames,
            "size": f"{height}x{width}", "option": option, "preset": cfg.memory_preset, "tier_gb": cap,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "s_per_step": s, "steps_timed": len(times), "tokens": fl["tokens"],
            "model_pflop": fl["model_flops"] / 1e15, "executed_pflop": fl["executed_flops"] / 1e15,
            "tflops_per_s": fl["model_flops"] / s / 1e12, "mfu": fl["model_flops"] / s / (peak_tflops * 1e12),
            "hfu": fl["executed_flops"] / s / (peak_tflops * 1e12), "loss": run.history[-1]["loss"],
            "fp8": cfg.fp8_base, "optimizer": cfg.optimizer, "grad_ckpt": cfg.gradient_checkpointing,
            "peak_cuda_gb": mem.pop("peak_cuda_gb", None), "peak_rss_gb": mem.pop("peak_rss_gb", None),
            "blocks_to_swap": mem.pop("blocks_to_swap", 0), "swaps": mem}


def run_full(model: str = "wan14b", frames_list: Sequence[int] = (17, 33, 49, 81),
             options: Sequence[str] = ("80GB+", "48GB", "24GB", "16GB", "no_ckpt"), steps: int = 2,
             layers: int | None = None, height: int = 480, width: int = 832, peak_tflops: float = 989.0,
             emulate_tier: bool | None = None, rank: int = 16, timeout: float = 1800.0,
             echo: bool = True) -> list[dict]:
    """Full-size training-step rows with random weights (``model``: ``"wan14b"`` = Wan2.1-I2V-14B,
    ``"hunyuan13b"`` = HunyuanVideo-I2V-33ch), one process per (frames, option), ``steps`` timed steps each after
    one warm-up step. A GPU benchmark; ``layers=1`` and a small size make a CPU dry run. Failed rows (out of
    memory, an exception, a dead process) come back at once as rows with ``"error"``; each row is printed as it
    finishes (``echo``)."""
    rows = []
    for T in frames_list:
        for opt in options:
            ident = {"stage": "full_train_step", "backbone": model, "model": model, "frames": T,
                     "size": f"{height}x{width}", "option": opt}
            row = {**ident, **_run(_full_rows, model, T, height, width, opt, steps, layers, peak_tflops,
                                   emulate_tier, rank, timeout=timeout)}
            if echo:
                print(progress_line(row), flush=True)
            rows.append(row)
    return rows


run_wan_full = run_full  # the earlier name


# ----------------------------------------------------------------------------------------------- processes
def error_line(e: BaseException) -> str:
    """A failure as one line: ``"out of memory"`` for a CUDA OOM, else the traceback's last line."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    if isinstance(e, oom) or "out of memory" in str(e).lower():
        return "out of memory"
    return traceback.format_exception_only(type(e), e)[-1].strip()[:300]


def _child(target: Callable, args: tuple, kwargs: dict, q) -> None:
    """Child-process entry: run ``target`` and put its row, or ``{"error": ...}`` (with the traceback's last
    frames in ``"traceback"``) when it raises, so the parent hears of a failure at once."""
    try:
        row = target(*args, **kwargs)
    except BaseException as e:  # noqa: BLE001 - every failure must reach the parent as a row
        tb = traceback.format_exc().strip().splitlines()
        row = {"error": error_line(e), "traceback": "\n".join(tb[-8:])}
    q.put(row)


def _run(target: Callable, *args, timeout: float = 1800.0, poll: float = 1.0, **kwargs) -> dict:
    """Run ``target(*args, **kwargs)`` in a fresh spawned process and return its row (a dict).

    Polls the child while waiting (``q.get(timeout=poll)`` in a loop, ``p.is_alive()``): a child that dies without
    a row (killed by the host's OOM killer, a crash in native code) gives ``{"error": ...}`` within ~``poll``
    seconds; one that runs past ``timeout`` seconds is killed and reported."""
    ctx = mp.get_context("spawn")  # a fresh CUDA context and allocator per row; fork is unsafe after CUDA/OpenMP
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(target, args, kwargs, q))
    t0 = time.monotonic()
    p.start()
    try:
        while True:
            try:
                return q.get(timeout=poll)
            except queue.Empty:
                pass
            if not p.is_alive():
                try:  # it may have put its row just before exiting
                    return q.get(timeout=2)
                except queue.Empty:
                    code = p.exitcode
                    why = " (killed: out of host memory?)" if code == -9 else ""
                    return {"error": f"benchmark process died with exit code {code}{why}"}
            if time.monotonic() - t0 > timeout:
                p.kill()
                return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()


def run(quick: bool = False) -> list[dict]:
    """The small CPU rows (toy; + tiny-Wan unless ``quick``)."""
    rows = []
    steps = 2 if quick else 10
    configs = [("toy", 9, 32)] + ([] if quick else [("tiny-wan", 9, 64)])
    for bb, T, S in configs:
        for cached in (True, False):
            for ckpt in ((False,) if quick else (False, True)):
                ident = {"stage": "train_step", "backbone": bb, "frames": T, "size": S, "cached": cached,
                         "grad_ckpt": ckpt}
                rows.append({**ident, **_run(_train_rows, bb, T, S, cached, ckpt, steps)})
                print(progress_line(rows[-1]), flush=True)
        rows.append({"stage": "inference", "backbone": bb, "frames": T, "size": S,
                     **_run(_infer_rows, bb, T, S, 4 if quick else 10)})
        print(progress_line(rows[-1]), flush=True)
    return rows


# ----------------------------------------------------------------------------------------------- output
def progress_line(r: dict) -> str:
    """One line per finished row (printed as rows finish)."""
    head = f"[bench] {r.get('backbone')} {r.get('frames')}f {r.get('size')} {r.get('option', r.get('stage'))}"
    if "error" in r:
        return f"{head}: FAILED: {r['error']}"
    if r["stage"] == "full_train_step":
        mem = f"{r['peak_cuda_gb']:.1f} GB GPU" if r.get("peak_cuda_gb") is not None else \
            f"{r.get('peak_rss_gb') or 0:.1f} GB RSS"
        return (f"{head}: {r['s_per_step']:.3f} s/step, MFU {100 * r['mfu']:.1f} %, HFU {100 * r['hfu']:.1f} %, "
                f"peak {mem}, {r['blocks_to_swap']} blocks swapped")
    if r["stage"] == "train_step":
        return f"{head}: {r['s_per_step']:.4f} s/step (cached={r['cached']}, ckpt={r['grad_ckpt']})"
    return f"{head}: {r['denoise_s_per_step']:.4f} s/denoising step, decode {r['decode_s']:.3f} s"


def _full_table(rows: list[dict]) -> list[str]:
    out = ["| backbone | clip | option | tier | fp8 / optim / ckpt | swapped | s/step | MFU | HFU | peak GPU |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        clip = f"{r['frames']}f {r['size']}"
        if "error" in r:
            out.append(f"| {r['backbone']} | {clip} | {r['option']} | - | - | - | failed: {r['error']} | - | - | - |")
            continue
        tier = f"{r['tier_gb']:.0f} GB" if r.get("tier_gb") else "card"
        mem = f"{r['peak_cuda_gb']:.1f} GB" if r.get("peak_cuda_gb") is not None else \
            f"(CPU, {r.get('peak_rss_gb') or 0:.1f} GB RSS)"
        out.append(f"| {r['backbone']} | {clip} | {r['option']} | {tier} | {r['fp8']} / {r['optimizer']} / "
                   f"{r['grad_ckpt']} | {r['blocks_to_swap']} | {r['s_per_step']:.3f} | {100 * r['mfu']:.1f} % | "
                   f"{100 * r['hfu']:.1f} % | {mem} |")
    return out


def _small_table(rows: list[dict]) -> list[str]:
    out = ["| backbone | clip | stage | caching | grad ckpt | s/step | peak RSS MB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        clip = f"{r['frames']}x{r['size']}x{r['size']}"
        if "error" in r:
            out.append(f"| {r['backbone']} | {clip} | {r['stage']} | - | - | failed: {r['error']} | - |")
        elif r["stage"] == "train_step":
            out.append(f"| {r['backbone']} | {clip} | LoRA train step | {'on' if r['cached'] else 'off'} | "
                       f"{'on' if r['grad_ckpt'] else 'off'} | {r['s_per_step']:.4f} | {r['peak_rss_mb']:.0f} |")
        else:
            out.append(f"| {r['backbone']} | {clip} | denoise step (+decode {r['decode_s']:.3f} s) | - | - | "
                       f"{r['denoise_s_per_step']:.4f} | {r['peak_rss_mb']:.0f} |")
    speed: dict = {}
    for r in rows:
        if r["stage"] == "train_step" and not r["grad_ckpt"] and "error" not in r:
            speed.setdefault(r["backbone"], {})[r["cached"]] = r["s_per_step"]
    for bb, d in speed.items():
        if True in d and False in d:
            out.append(f"\ncaching speed-up ({bb}): {d[False] / d[True]:.1f}x per training step")
    return out


def table(rows: list[dict]) -> str:
    """Markdown tables: full-size rows (if any), then the small rows (if any)."""
    full = [r for r in rows if r["stage"] == "full_train_step"]
    small = [r for r in rows if r["stage"] != "full_train_step"]
    out = (_full_table(full) if full else []) + ([""] if full and small else []) + (_small_table(small) if small
                                                                                      else [])
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------- command line
def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="fewer steps, toy backbone only (CI smoke)")
    p.add_argument("--json", default="outputs/bench/bench.json")
    p.add_argument("--wan-full", action="store_true", help="full-size Wan2.1-I2V-14B, random weights (GPU)")
    p.add_argument("--hunyuan-full", action="store_true", help="full-size HunyuanVideo-I2V-33ch, random weights (GPU)")
    p.add_argument("--frames", type=int, nargs="+", default=[17, 33, 49, 81])
    p.add_argument("--presets", "--options", dest="options", nargs="+",
                   default=["80GB+", "48GB", "24GB", "16GB", "no_ckpt"],
                   help=f"memory presets {list(MEMORY_PRESETS)} and/or raw variants: no_ckpt (80GB+ without "
                        "gradient checkpointing), swap<N> (48GB settings, exactly N blocks swapped)")
    p.add_argument("--steps", type=int, default=2,
                   help="timed training steps per row, after one warm-up step (0: one step, warm-up included)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--layers", type=int, help="override the layer count (CPU dry run: 1)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100/H200: 989)")
    p.add_argument("--emulate-tier", action=argparse.BooleanOptionalAction, default=None,
                   help="cap GPU memory to each preset's tier (default: when the card is bigger than the tier)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before a row's process is killed")


def run_from_args(a: argparse.Namespace) -> list[dict]:
    """What ``python -m loraedit_nb bench`` runs: the rows, the tables, the JSON file."""
    if a.wan_full or a.hunyuan_full:
        for o in a.options:  # refuse a typo before minutes of model building
            option_config(o, 2)
        rows = []
        for model, on in (("wan14b", a.wan_full), ("hunyuan13b", a.hunyuan_full)):
            if on:
                rows += run_full(model, tuple(a.frames), tuple(a.options), steps=a.steps, layers=a.layers,
                                 height=a.height, width=a.width, peak_tflops=a.peak_tflops,
                                 emulate_tier=a.emulate_tier, rank=a.rank, timeout=a.timeout)
    else:
        rows = run(a.quick)
    print(table(rows))
    path = Path(a.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    print(f"\nwrote {path}")
    return rows


def add_parser(sub) -> None:
    """Register ``bench`` on the ``python -m loraedit_nb`` subparsers (``func`` = :func:`run_from_args`)."""
    p = sub.add_parser("bench", help="benchmarks: small CPU rows, or full-size Wan/Hunyuan training rows (GPU)",
                       description=__doc__.split("\n")[0])
    _add_arguments(p)
    p.set_defaults(func=run_from_args)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m loraedit_nb.bench", description=__doc__.split("\n")[0])
    _add_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    main()
