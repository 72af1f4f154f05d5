"""Measure, on the CPU, the activation memory that :mod:`loraedit_nb.planner` extrapolates to full-size clips.

    python scripts/measure_activations.py [--part wan|hunyuan|vae|all] [--json PATH]

What is measured (figures printed as JSON; ``planner.py`` hard-codes them):

* **Transformer, training step.** Real-width blocks (Wan2.1-14B: d 5120, ffn 13824, 40 heads; HunyuanVideo-13B:
  d 3072, one dual-stream and one single-stream block) inside the real diffusers model with 1-2 layers, random bf16
  weights (the ``_keep_in_fp32_modules`` kept fp32, as ``from_pretrained`` does), LoRA rank 16 attached with
  ``loraedit_nb.lora.add_lora`` (fp32), gradient checkpointing on, forward under ``torch.autocast("cpu", bf16)``
  inside ``peft.helpers.disable_input_dtype_casting`` — the training configuration — with and without fp8 layerwise
  casting (``loraedit_nb.memory.apply_fp8`` before the LoRA, as training does). One step =
  ``loraedit_nb.loss.flow_matching_loss`` + ``backward``. Small token counts (64/128/256 video tokens) and the real
  context (Wan: 512 text + 257 image tokens; Hunyuan: 544 text tokens), then a linear fit ``bytes = a * n + b``.
  * ``step_peak``: peak live bytes during the step above what was allocated before (weights, inputs): with one
    layer of each kind this is one block's recompute + backward (all it saves, its temporaries, the bf16 compute
    copies of fp8 weights) + the head, embeddings and loss + one checkpointed input;
  * ``keep``: what each further checkpointed block adds (``step_peak`` with 2 layers minus with 1): its input;
  * ``saved``: autograd's saved tensors of one block without checkpointing (``saved_tensors_hooks``, unique
    storages, parameters excluded) — what one block holds while its backward runs (cf. the audit's Appendix A.5);
  * ``infer_peak``: peak of a no-grad forward of the 1-layer model (bf16, no autocast), LoRA fp32 with peft's input
    cast (what a just-trained LoRA does) and LoRA bf16 (a LoRA loaded with diffusers).
* **VAE encode / decode** (fp32, no grad) of a short clip at two small sizes with the full channel widths: Wan
  1 + 4 frames (its causal chunks: memory depends on H*W, not on T), Hunyuan one 17-frame temporal tile. Fitted
  per pixel of area; the planner adds the parts that grow with T (the output being concatenated) and Hunyuan's
  causal attention mask (O((H*W)^2), analytic).

"Live bytes" = glibc ``mallinfo2()`` (in-use heap + mmapped), sampled after every aten op by a
``TorchDispatchMode``: temporaries inside a single kernel are not seen. CPU attention is PyTorch's flash kernel
(no n x n matrix, like flash / memory-efficient attention on the GPU); autocast's CPU and CUDA op lists differ a
little (the Wan / Hunyuan blocks do their norms in fp32 explicitly, so little depends on it).

Takes about 3-5 CPU minutes on 2 cores (needs ~8 GB RAM). Run 2026-12-01 for the figures in planner.py.
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
    """Track the peak of :func:`live_bytes` after every aten op (forward and backward)."""

    def __enter__(self):
        gc.collect()
        self.base = self.peak = live_bytes()
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, live_bytes())
        return out

    @property
    def delta(self) -> int:
        return self.peak - self.base


def fit(ns, ys) -> dict:
    """Least-squares ``y = a n + b``; ``resid`` = the largest misfit in bytes."""
    a, b = np.polyfit(np.asarray(ns, float), np.asarray(ys, float), 1)
    resid = max(abs(a * n + b - y) for n, y in zip(ns, ys, strict=True))
    return {"per_token": round(float(a), 1), "fixed": round(float(b)), "resid": round(float(resid)),
            "points": dict(zip(map(int, ns), map(int, ys), strict=True))}


# ----------------------------------------------------------------------------------------------- models
def _keep_fp32(model) -> None:
    """``from_pretrained(torch_dtype=bf16)`` keeps ``_keep_in_fp32_modules`` in fp32 (a name part matches)."""
    keep = model._keep_in_fp32_modules or []
    for name, mod in model.named_modules():
        if any(k in name.split(".") for k in keep):
            mod.float()


def build(family: str, n_dual: int = 2, n_single: int = 2):
    from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel

    from loraedit_nb.bench import HUNYUAN_13B_CONFIG, WAN_14B_CONFIG

    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    torch.manual_seed(0)
    with torch.device("meta"):  # random values: memory does not depend on them (fast: no init on the CPU)
        if family == "wan":
            m = WanTransformer3DModel(**{**WAN_14B_CONFIG, "num_layers": n_dual})
        else:
            m = HunyuanVideoTransformer3DModel(**{**HUNYUAN_13B_CONFIG, "num_layers": n_dual,
                                                  "num_single_layers": n_single})
    m.to(torch.bfloat16).to_empty(device="cpu")
    for p in m.parameters():
        p.data.uniform_(-0.02, 0.02)
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


def train_step(model, z0, cond, ctx) -> tuple[int, int]:
    """One training step's (peak, after-forward) live bytes above the start."""
    from peft.helpers import disable_input_dtype_casting

    from loraedit_nb.loss import flow_matching_loss

    _clear_grads(model)
    g = torch.Generator().manual_seed(1)
    t = torch.rand(1, generator=g)
    noise = torch.randn(z0.shape, generator=g)
    with PeakMode() as pm:
        with disable_input_dtype_casting(model), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = flow_matching_loss(model, z0, cond, ctx, t, noise)
        gc.collect()
        after_fwd = live_bytes() - pm.base
        loss.backward()
    del loss
    _clear_grads(model)
    return pm.delta, after_fwd


def twice(fn, *args):
    """The second of two runs: the first creates oneDNN's cached primitives for the shapes (kept memory)."""
    fn(*args)
    return fn(*args)


def saved_by_block(model, block, z0, cond, ctx) -> dict:
    """Bytes autograd saves inside ``block`` (no checkpointing), unique storages, parameters excluded."""
    from peft.helpers import disable_input_dtype_casting

    from loraedit_nb.loss import flow_matching_loss

    stored = {id(p): p.dtype for p in model.parameters()}  # a parameter saved in another dtype (fp8 storage, bf16
    seen: dict[int, tuple[int, torch.dtype, tuple]] = {}  # compute copy) is an activation: it is counted
    keep: list = []  # holds every counted storage, so that no address is reused during the pass

    def pack(t):
        if isinstance(t, torch.nn.Parameter) and stored.get(id(t)) == t.dtype:
            return t
        s = t.untyped_storage()
        if s.data_ptr() not in seen:
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
    del loss, keep
    _clear_grads(model)
    by_dtype: dict[str, int] = {}
    for nbytes, dt, _ in seen.values():
        by_dtype[str(dt).replace("torch.", "")] = by_dtype.get(str(dt).replace("torch.", ""), 0) + nbytes
    big = sorted(seen.values(), key=lambda v: -v[0])[:3]
    return {"total": sum(v[0] for v in seen.values()), "by_dtype": by_dtype,
            "largest": [f"{b} B {str(d).replace('torch.', '')} {list(s)}" for b, d, s in big]}


def infer(model, z0, cond, ctx) -> int:
    from loraedit_nb.loss import flow_matching_loss

    g = torch.Generator().manual_seed(1)
    with torch.no_grad(), PeakMode() as pm:
        flow_matching_loss(model, z0, cond, ctx, torch.rand(1, generator=g), torch.randn(z0.shape, generator=g))
    return pm.delta


def measure_transformer(family: str, ns=(64, 128, 256)) -> dict:
    from loraedit_nb.hunyuan import HUNYUAN_TARGETS
    from loraedit_nb.lora import DEFAULT_TARGETS, add_lora
    from loraedit_nb.memory import apply_fp8, fix_lora_dtype

    g = torch.Generator().manual_seed(0)
    samples = {n: sample(family, n, g) for n in ns}
    shapes = [(1, 1)] + ([(2, 1)] if family == "wan" else [(2, 1), (1, 2)])
    out: dict = {}
    for fp8 in (False, True):
        t0 = time.perf_counter()
        model = build(family)
        if fp8:
            apply_fp8(model)
        add_lora(model, rank=16, targets=DEFAULT_TARGETS if family == "wan" else HUNYUAN_TARGETS)
        fix_lora_dtype(model)
        model.enable_gradient_checkpointing()
        model.train()
        key = "fp8" if fp8 else "bf16"
        res: dict = {}
        for shape in shapes:
            with layers(model, family, *shape):
                res[shape] = [twice(train_step, model, *samples[n]) for n in ns]
        r = {"step_peak": fit(ns, [p for p, _ in res[(1, 1)]]),
             "after_forward": fit(ns, [a for _, a in res[(1, 1)]])}
        names = ["keep"] if family == "wan" else ["keep_dual", "keep_single"]
        for name, shape in zip(names, shapes[1:], strict=True):
            r[name] = fit(ns, [p2 - p1 for (p2, _), (p1, _) in zip(res[shape], res[(1, 1)], strict=True)])
            r[name + "_after_forward"] = fit(ns, [a2 - a1 for (_, a2), (_, a1) in
                                                  zip(res[shape], res[(1, 1)], strict=True)])
        with layers(model, family, 1, 1):
            blocks = [model.blocks[0]] if family == "wan" else [model.transformer_blocks[0],
                                                                model.single_transformer_blocks[0]]
            for bname, block in zip(["block"] if family == "wan" else ["dual", "single"], blocks, strict=True):
                sv = [saved_by_block(model, block, *samples[n]) for n in ns]
                r["saved_" + bname] = fit(ns, [s["total"] for s in sv])
                r["saved_" + bname]["at_max_n"] = {k: sv[-1][k] for k in ("by_dtype", "largest")}
            model.eval()
            if not fp8:  # a just-trained LoRA: fp32, peft casts each adapted input to fp32
                r["infer_peak_lora_fp32"] = fit(ns, [twice(infer, model, *samples[n]) for n in ns])
            fix_lora_dtype(model, torch.bfloat16)  # a LoRA loaded by diffusers: in the model's dtype
            r["infer_peak_lora_bf16"] = fit(ns, [twice(infer, model, *samples[n]) for n in ns])
        r["seconds"] = round(time.perf_counter() - t0, 1)
        out[key] = r
        print(json.dumps({family: {key: r}}), flush=True)
        del model
        gc.collect()
    return out


# ----------------------------------------------------------------------------------------------- VAEs
def measure_vae(family: str) -> dict:
    from diffusers import AutoencoderKLHunyuanVideo, AutoencoderKLWan

    torch.manual_seed(0)
    if family == "wan":
        vae, frames, sizes = AutoencoderKLWan(base_dim=96, z_dim=16), 5, ((64, 112), (128, 224))
    else:
        vae, frames, sizes = AutoencoderKLHunyuanVideo(), 17, ((32, 56), (64, 112))
    vae.eval()
    enc, dec, areas = [], [], []
    t0 = time.perf_counter()
    for h, w in sizes:
        x = torch.rand(1, 3, frames, h, w) * 2 - 1
        with torch.no_grad(), PeakMode() as pm:
            z = vae.encode(x).latent_dist.mode()
        enc.append(pm.delta)
        del x
        with torch.no_grad(), PeakMode() as pm:
            y = vae.decode(z).sample
        dec.append(pm.delta)
        del y, z
        areas.append(h * w)
    r = {"frames": frames, "encode": fit(areas, enc), "decode": fit(areas, dec),
         "encode_per_px_at_max": round(enc[-1] / areas[-1], 1), "decode_per_px_at_max": round(dec[-1] / areas[-1], 1),
         "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps({f"vae_{family}": r}), flush=True)
    return r


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("wan", "hunyuan", "vae", "all"), default="all")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    out: dict = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
    t0 = time.perf_counter()
    if a.part in ("wan", "all"):
        out["wan"] = measure_transformer("wan")
    if a.part in ("hunyuan", "all"):
        out["hunyuan"] = measure_transformer("hunyuan")
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
