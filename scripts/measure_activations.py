"""Measure, on the CPU, the activation memory that :mod:`loraedit_nb.planner` extrapolates to full-size clips.

    python scripts/measure_activations.py [--part wan|hunyuan|vae|all] [--json PATH] [--real-fp8]

What is measured (printed as JSON; ``planner.py`` hard-codes the figures):

* **Transformer.** Real-width blocks (Wan2.1-14B: d 5120, ffn 13824, 40 heads; HunyuanVideo-13B: d 3072, one
  dual-stream and one single-stream block) inside the real diffusers model cut to 1-2 layers, bf16 weights (the
  ``_keep_in_fp32_modules`` fp32, as ``from_pretrained`` keeps them; values are zeros: memory does not depend on
  them), LoRA rank 16 from ``loraedit_nb.lora.add_lora`` (fp32), gradient checkpointing on, forward under
  ``torch.autocast("cpu", bf16)``, forward and backward inside ``loraedit_nb.training.step_precision`` (peft's input
  cast off in the checkpoint recompute too) — the training configuration —
  once with bf16 base weights and once with fp8 layerwise casting before the LoRA (training's order). A step =
  ``loraedit_nb.loss.flow_matching_loss`` + ``backward``; the real context (Wan 512 text + 257 image tokens, Hunyuan
  544 text tokens), 128 and 256 video tokens, each run twice (the first builds oneDNN's cached primitives).
  * ``step_peak``: peak live bytes of a step of the 1-layer model above what existed before (weights, inputs): one
    block's checkpoint recompute + backward (all it saves, its temporaries, under fp8 the bf16 copies of its
    weights) + head, embeddings, loss, one checkpointed input. An :func:`envelope` over the token count, checked
    by a run at 384 tokens;
  * ``keep``: what one more checkpointed block adds after the forward (2 layers minus 1): its inputs;
  * ``saved``: autograd's saved tensors of one block without checkpointing (``saved_tensors_hooks``, unique
    storages, parameters excluded; as in the audit's Appendix A.5);
  * ``infer_peak``: peak of a no-grad forward of the 1-layer model (bf16, no autocast) with the LoRA in fp32 (peft
    casts each adapted input to fp32) and in bf16 (as editing loads it).
  The fp8 rows emulate the float8 cast with a copy (:func:`copy_casting`: same hooks, same bf16 copies; CPU float8
  casts are slow); ``--real-fp8`` uses float8 storage (at 256 Wan tokens both give 777.04 MB).
* **VAE encode / decode** (fp32, no grad) at two small sizes with the full channel widths: Wan 1 + 4 frames (its
  causal chunks: memory depends on H*W, not on T), Hunyuan one 17-frame temporal tile; an envelope over the pixel
  area. The planner adds what grows with T (the video in, the output being concatenated) and Hunyuan's causal
  attention mask (O((H*W)^2), analytic).

"Live bytes" = glibc ``mallinfo2()`` (heap in use + mmapped chunks), recorded after every aten op by a
``TorchDispatchMode`` (forward and backward): temporaries inside one kernel are not seen. An op's live bytes are
linear in the token count (CPU attention is PyTorch's flash kernel: no n x n matrix, like flash / memory-efficient
attention on the GPU), so two sizes give each op's line and the peak at any size is their maximum
(:func:`envelope`). CPU and CUDA autocast op lists differ a little (the blocks do their norms in fp32 explicitly).

About 6 minutes on 2 cores (Wan 1.5, Hunyuan 2.5, VAEs 2), ~8 GB RAM. Run on 2026-12-01 for planner.py's figures.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def live_bytes() -> int:
    """Bytes currently allocated by malloc (heap in use + mmapped chunks): every CPU tensor is in there."""
    m = _libc.mallinfo2()
    return m.uordblks + m.hblkhd


class PeakMode(TorchDispatchMode):
    """Record :func:`live_bytes` after every aten op (forward and backward), relative to the start."""

    def __enter__(self):
        gc.collect()
        self.base = live_bytes()
        self.trace: list[int] = []
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.trace.append(live_bytes() - self.base)
        return out

    @property
    def delta(self) -> int:
        return max(self.trace, default=0)


def envelope(n1: int, t1: list[int], n2: int, t2: list[int]) -> list[tuple[int, float]]:
    """The peak as a function of the size ``n``, from two runs of the same op sequence: each op's live bytes are
    linear in ``n`` (``fixed + per_unit * n``, from its value in both runs), and the peak is their maximum, a convex
    piecewise-linear function. Returns the (fixed, per_unit) pairs that are the maximum somewhere in 1..1e7 (the
    upper envelope), so the peak of a much larger ``n`` is not a straight line through two peaks that may sit at
    different ops."""
    if len(t1) != len(t2):
        raise RuntimeError(f"op sequences differ between the two sizes ({len(t1)} vs {len(t2)} ops)")
    pairs = [((a * n2 - b * n1) / (n2 - n1), (b - a) / (n2 - n1)) for a, b in zip(t1, t2, strict=True)]
    keep = {max(range(len(pairs)), key=lambda i: pairs[i][0] + pairs[i][1] * n) for n in np.geomspace(1, 1e7, 400)}
    return sorted({(round(pairs[i][0]), round(pairs[i][1], 1)) for i in keep}, key=lambda p: p[1])


def at(env: list[tuple[int, float]], n: float) -> float:
    """Evaluate an :func:`envelope` at ``n``."""
    return max(f + s * n for f, s in env)


def fit(ns, ys) -> dict:
    """Least-squares ``y = a n + b``; ``resid`` = the largest misfit in bytes."""
    a, b = np.polyfit(np.asarray(ns, float), np.asarray(ys, float), 1)
    resid = max(abs(a * n + b - y) for n, y in zip(ns, ys, strict=True))
    return {"per_token": round(float(a), 1), "fixed": round(float(b)), "resid": round(float(resid)),
            "points": dict(zip(map(int, ns), map(int, ys), strict=True))}


# ----------------------------------------------------------------------------------------------- models
def _keep_fp32(model) -> None:
    """``from_pretrained(torch_dtype=bf16)`` keeps ``_keep_in_fp32_modules`` in fp32: a parameter or buffer whose
    name has one as a part (``diffusers/models/model_loading_utils.py``)."""
    keep = model._keep_in_fp32_modules or []
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and any(k in name.split(".") for k in keep):
            t.data = t.data.float()


def build(family: str, n_dual: int = 2, n_single: int = 2):
    from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    from loraedit_nb.bench import HUNYUAN_13B_CONFIG, WAN_14B_CONFIG

    torch.manual_seed(0)
    with torch.device("meta"):  # no init on the CPU (slow at this width)
        if family == "wan":
            m = WanTransformer3DModel(**{**WAN_14B_CONFIG, "num_layers": n_dual})
        else:
            m = HunyuanVideoTransformer3DModel(**{**HUNYUAN_13B_CONFIG, "num_layers": n_dual,
                                                  "num_single_layers": n_single})
    m.to(torch.bfloat16).to_empty(device="cpu")
    for p in m.parameters():  # zeros: memory does not depend on the values (and no NaN/denormal slow paths)
        p.data.zero_()
    if family == "wan":  # its only buffers (the rope tables), recomputed
        c = WAN_14B_CONFIG
        m.rope = WanRotaryPosEmbed(c["attention_head_dim"], c["patch_size"], c["rope_max_seq_len"])
    _keep_fp32(m)
    # block 0's inputs come from frozen embedders; make them need a gradient, as a middle block's inputs do
    for name in ("patch_embedding", "x_embedder", "context_embedder"):
        if hasattr(m, name):
            getattr(m, name).register_forward_hook(lambda mod, a, o: _needs_grad(o))
    return m.eval()


def _needs_grad(o):
    if torch.is_grad_enabled() and torch.is_tensor(o) and o.is_floating_point() and not o.requires_grad:
        return o.detach().requires_grad_(True)
    return None


def sample(family: str, n: int, g: torch.Generator) -> tuple:
    """(z0, cond, context) for ``n`` video tokens: one latent frame of 16 x (n / 16) latent pixels (patch 2x2)."""
    h, w = 16, n // 4
    z0 = torch.randn(1, 16, 1, h, w, generator=g)
    if family == "wan":
        cond = torch.randn(1, 20, 1, h, w, generator=g)
        ctx = {"encoder_hidden_states": torch.randn(1, 512, 4096, generator=g),
               "encoder_hidden_states_image": torch.randn(1, 257, 1280, generator=g)}
    else:
        cond = torch.randn(1, 17, 1, h, w, generator=g)
        ctx = {"encoder_hidden_states": torch.randn(1, 544, 4096, generator=g),
               "encoder_attention_mask": torch.ones(1, 544), "pooled_projections": torch.randn(1, 768, generator=g)}
    return z0, cond, ctx


@contextlib.contextmanager
def layers(model, family: str, n_dual: int, n_single: int):
    """Run the model with only its first ``n_dual`` (Wan: all) / ``n_single`` blocks."""
    names = ("blocks",) if family == "wan" else ("transformer_blocks", "single_transformer_blocks")
    old = {k: getattr(model, k) for k in names}
    for k, n in zip(names, (n_dual, n_single), strict=False):
        setattr(model, k, torch.nn.ModuleList(list(old[k])[:n]))
    try:
        yield model
    finally:
        for k, v in old.items():
            setattr(model, k, v)


def _clear_grads(model) -> None:
    for p in model.parameters():
        p.grad = None
    gc.collect()


def train_step(model, z0, cond, ctx) -> tuple[list[int], int]:
    """One training step as ``train_lora`` runs it (``training_step_loss`` then ``backward``, both inside
    ``step_precision``): (live-bytes trace, live bytes after the forward), relative to the start."""
    from loraedit_nb.training import step_precision, training_step_loss

    _clear_grads(model)
    g = torch.Generator().manual_seed(1)
    t = torch.rand(1, generator=g)
    noise = torch.randn(z0.shape, generator=g)
    with PeakMode() as pm, step_precision(model, torch.bfloat16):
        loss = training_step_loss(model, z0, cond, ctx, t, noise, None, torch.bfloat16)
        gc.collect()
        after_fwd = live_bytes() - pm.base
        loss.backward()
    del loss
    _clear_grads(model)
    return pm.trace, after_fwd


def infer(model, z0, cond, ctx) -> tuple[list[int], int]:
    """A no-grad forward (bf16, no autocast, as the pipeline runs it): (trace, 0)."""
    from loraedit_nb.loss import flow_matching_loss

    g = torch.Generator().manual_seed(1)
    with torch.no_grad(), PeakMode() as pm:
        flow_matching_loss(model, z0, cond, ctx, torch.rand(1, generator=g), torch.randn(z0.shape, generator=g))
    return pm.trace, 0


def twice(fn, *args):
    """The second of two runs: the first creates oneDNN's cached primitives for the shapes (kept memory)."""
    fn(*args)
    return fn(*args)


def saved_by_block(model, block, z0, cond, ctx) -> dict:
    """Bytes autograd saves inside ``block`` (no checkpointing), unique storages, parameters excluded (a parameter
    saved in another dtype than it is stored in — the bf16 compute copy of an fp8 weight — counts)."""
    from peft.helpers import disable_input_dtype_casting

    from loraedit_nb.loss import flow_matching_loss

    params = list(model.parameters())
    stored = {id(p): p.dtype for p in params}
    home = {p.untyped_storage().data_ptr() for p in params}  # a copy made during the pass is not a weight
    seen: dict[int, tuple[int, torch.dtype, tuple]] = {}
    keep: list = []  # holds every counted storage, so that no address is reused during the pass

    def pack(t):
        s = t.untyped_storage()
        weights = home & {p.untyped_storage().data_ptr() for p in params if p.dtype == stored[id(p)]}
        if s.data_ptr() not in weights and s.data_ptr() not in seen:
            seen[s.data_ptr()] = (s.nbytes(), t.dtype, tuple(t.shape))
            keep.append(t.detach())
        return t

    ctxs = []
    h1 = block.register_forward_pre_hook(lambda m, a: ctxs.append(torch.autograd.graph.saved_tensors_hooks(
        pack, lambda t: t)) or ctxs[-1].__enter__())
    h2 = block.register_forward_hook(lambda m, a, o: ctxs.pop().__exit__(None, None, None))
    model.disable_gradient_checkpointing()
    g = torch.Generator().manual_seed(1)
    try:
        with disable_input_dtype_casting(model), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = flow_matching_loss(model, z0, cond, ctx, torch.rand(1, generator=g), torch.randn(z0.shape))
    finally:
        h1.remove()
        h2.remove()
        model.enable_gradient_checkpointing()
    keep.clear()
    del loss
    _clear_grads(model)
    by_dtype: dict[str, int] = {}
    for nbytes, dt, _ in seen.values():
        k = str(dt).replace("torch.", "")
        by_dtype[k] = by_dtype.get(k, 0) + nbytes
    big = sorted(seen.values(), key=lambda v: -v[0])[:3]
    return {"total": sum(v[0] for v in seen.values()), "by_dtype": by_dtype,
            "largest": [f"{b} B {str(d).replace('torch.', '')} {list(s)}" for b, d, s in big]}


@contextlib.contextmanager
def copy_casting():
    """fp8 layerwise casting's memory behaviour without CPU float8 casts (slow): diffusers' own hooks on diffusers'
    own choice of layers, but "casting" = a fresh bf16 copy of the weight before the layer runs (what autograd
    saves) and the stored tensor put back after. The stored weights are parameters either way (not counted)."""
    from diffusers.hooks.layerwise_casting import LayerwiseCastingHook

    def pre(self, module, *args, **kwargs):
        module._stored = [(p, p.data) for p in module.parameters(recurse=False)]
        for p, d in module._stored:
            p.data = d.clone()
        return args, kwargs

    def post(self, module, output):
        for p, d in module._stored:
            p.data = d
        del module._stored
        return output

    old = LayerwiseCastingHook.pre_forward, LayerwiseCastingHook.post_forward
    LayerwiseCastingHook.pre_forward, LayerwiseCastingHook.post_forward = pre, post
    try:
        yield
    finally:
        LayerwiseCastingHook.pre_forward, LayerwiseCastingHook.post_forward = old


def peaks(model, family, samples, ns, check, r, fn, name, validate=True):
    """Run ``fn`` (a training step or an inference forward) on the 1-layer model at both sizes; store its envelope
    in ``r[name]`` (checked against a run at ``check`` tokens). Returns the after-forward bytes at both sizes."""
    with layers(model, family, 1, 1):
        (t1, a1), (t2, a2) = (twice(fn, model, *samples[n]) for n in ns)
        env = envelope(ns[0], t1, ns[1], t2)
        r[name] = {"envelope": env, "at_20280_GB": round(at(env, 20280) / 1e9, 3)}
        if validate:
            tc, _ = twice(fn, model, *samples[check])
            r[name]["check"] = {"n": check, "measured": max(tc), "predicted": round(at(env, check))}
    return a1, a2


def measure_transformer(family: str, ns=(128, 256), check: int = 384, real_fp8: bool = False) -> dict:
    """Training-step peak, saved bytes, checkpoint keep and inference peak of real-width blocks (module docstring)
    for bf16 base weights and for fp8 layerwise casting (:func:`copy_casting` unless ``real_fp8``). Peaks are
    :func:`envelope` s over the video-token count, checked against a run at ``check`` tokens."""
    from loraedit_nb.backbones.hunyuan import HUNYUAN_TARGETS
    from loraedit_nb.backbones.wan import WAN_TARGETS
    from loraedit_nb.lora import add_lora
    from loraedit_nb.memory import fix_lora_dtype

    g = torch.Generator().manual_seed(0)
    samples = {n: sample(family, n, g) for n in (*ns, check)}
    more = [(2, 1)] if family == "wan" else [(2, 1), (1, 2)]
    out: dict = {}
    for key in ("bf16", "fp8"):
        t0 = time.perf_counter()
        r: dict = {}
        emulate = key == "fp8" and not real_fp8
        with copy_casting() if emulate else contextlib.nullcontext():  # before the hooks exist: they bind it
            model = build(family)
            if key == "fp8":  # memory.apply_fp8 (layerwise casting), then the LoRA: training's order
                model.enable_layerwise_casting(storage_dtype=torch.bfloat16 if emulate else torch.float8_e4m3fn,
                                               compute_dtype=torch.bfloat16)
        add_lora(model, rank=16, targets=WAN_TARGETS if family == "wan" else HUNYUAN_TARGETS)
        fix_lora_dtype(model)
        model.enable_gradient_checkpointing()
        model.train()
        run = (model, family, samples, ns, check, r)
        after = peaks(*run, train_step, "step_peak")
        for name, shape in zip(["keep"] if family == "wan" else ["keep_dual", "keep_single"], more, strict=True):
            with layers(model, family, *shape):  # one more block of this kind: what its checkpoint keeps
                two = [twice(train_step, model, *samples[n])[1] for n in ns]
            r[name] = fit(ns, [b - a for a, b in zip(after, two, strict=True)])
        with layers(model, family, 1, 1):
            blocks = {"block": model.blocks[0]} if family == "wan" else {
                "dual": model.transformer_blocks[0], "single": model.single_transformer_blocks[0]}
            for bname, block in blocks.items():
                sv = [saved_by_block(model, block, *samples[n]) for n in ns]
                r["saved_" + bname] = fit(ns, [s["total"] for s in sv])
                r["saved_" + bname]["at_max_n"] = {k: sv[-1][k] for k in ("by_dtype", "largest")}
        model.eval()
        peaks(*run, infer, "infer_peak_lora_fp32", validate=key == "bf16")  # just trained: peft casts to fp32
        fix_lora_dtype(model, torch.bfloat16)  # loaded by diffusers: the LoRA in the model's dtype
        peaks(*run, infer, "infer_peak_lora_bf16", validate=False)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        out[key] = r
        print(json.dumps({family: {key: r}}), flush=True)
        del model
        gc.collect()
    return out


# ----------------------------------------------------------------------------------------------- VAEs
def measure_vae(family: str) -> dict:
    """Peak live bytes of a no-grad fp32 encode and decode (second of two runs) at two small sizes (full channel
    widths), as an :func:`envelope` over the pixel area H*W; Wan: 1 + 4 frames (one causal chunk of each kind),
    Hunyuan: one 17-frame temporal tile (its mid-block attention mask, O(area^2), is negligible here: the planner
    adds it)."""
    from diffusers import AutoencoderKLHunyuanVideo, AutoencoderKLWan

    torch.manual_seed(0)
    if family == "wan":
        vae, frames, sizes = AutoencoderKLWan(base_dim=96, z_dim=16), 5, ((128, 224), (192, 336))
    else:
        vae, frames, sizes = AutoencoderKLHunyuanVideo(), 17, ((48, 80), (64, 112))
    vae.eval()
    t0 = time.perf_counter()
    enc, dec = [], []
    def run(op, x):
        with torch.no_grad(), PeakMode() as pm:
            y = vae.encode(x).latent_dist.mode() if op == "encode" else vae.decode(x).sample
        return pm.trace, y

    for h, w in sizes:
        x = torch.rand(1, 3, frames, h, w) * 2 - 1
        tr, z = twice(run, "encode", x)
        enc.append(tr)
        del x
        dec.append(twice(run, "decode", z)[0])
        del z
    (h1, w1), (h2, w2) = sizes
    r = {"frames": frames, "sizes": sizes}
    for name, tr in (("encode", enc), ("decode", dec)):
        env = envelope(h1 * w1, tr[0], h2 * w2, tr[1])
        r[name] = {"envelope": env, "at_480x832_GB": round(at(env, 480 * 832) / 1e9, 3),
                   "peaks": [max(t) for t in tr]}
    r["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({f"vae_{family}": r}), flush=True)
    return r


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("wan", "hunyuan", "vae", "all"), default="all")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--real-fp8", action="store_true", help="fp8 storage for the fp8 rows (slow on CPU)")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    out: dict = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
    t0 = time.perf_counter()
    if a.part in ("wan", "all"):
        out["wan"] = measure_transformer("wan", real_fp8=a.real_fp8)
    if a.part in ("hunyuan", "all"):
        out["hunyuan"] = measure_transformer("hunyuan", real_fp8=a.real_fp8)
    if a.part in ("vae", "all"):
        out["vae_wan"] = measure_vae("wan")
        out["vae_hunyuan"] = measure_vae("hunyuan")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return out


if __name__ == "__main__":
    main()
