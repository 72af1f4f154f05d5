"""Pretrain the embedded toy I2V backbone from scratch on toy-world clips (CPU hours; resumable).

    python -m loraedit_nb.toyworld.pretrain --run pretrain_runs/toy --steps 40000
    python -m loraedit_nb.toyworld.pretrain --run pretrain_runs/toy --steps 40000   # again: resumes

What is trained, and why this way:

* **Architecture = Wan2.1-I2V's**: a ``WanTransformer3DModel`` (tiny width) reading Wan's 16+4+16-style input
  ``[noisy latent | 4-channel packed mask | condition latent]``, a lossless :class:`PatchifyVAE` with Wan's latent
  geometry (x4 time after frame 0, x2 space), a tiny UMT5 text encoder over a word-level vocabulary.
* **Conditioning as Wan was trained**: frame-level masks only — first frame given (I2V) or first and last frame
  given (Wan's first-last-frame mode). Never per-pixel holes: that the un-tuned model follows spatial masks only
  weakly is the paper's Fig. 2 finding, which the notebooks show LoRA-Edit fixing.
* **Rectified flow matching**: ``z_t = (1 - t) z0 + t eps``, velocity target ``eps - z0``, timestep ``1000 t``,
  ``t ~ sigmoid(N(0.3, 1))``. The transformer predicts the clean sample internally
  (:class:`~loraedit_nb.backbones.toy.XPredWanTransformer3DModel`), which the probes found essential at this scale.
  Generated (unknown) latent cells weigh 3x in the loss: the given ones are trivial to copy.
* **Captions state the motion** (``"a red disc moves left and up, fast"``), so frame 0 + caption determine the
  clip and the tiny model has one answer to learn. 10 % of captions are dropped (empty) so CFG works.
* A curriculum: linear motion, one object first; then all motions and a distractor.
* ``--world v2``: what the notebooks and evaluations ask for — one object in 80 % of clips, the moving
  motions (linear, circle) drawn twice as often, and the extra background kinds (vignette, value noise).
* ``--init-from CKPT`` starts a new run from another run's EMA weights, grown without changing what the model
  computes (:func:`grow_state`) when ``--layers`` / ``--ffn`` ask for a bigger transformer.

Progress is logged every 50 steps; a checkpoint (model, EMA, optimiser, RNG states, step) is written atomically
every few minutes, and the EMA weights are exported to ``data/toy_backbone`` in diffusers format.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..backbones import TOY_DIR, Backbone, PatchifyVAE, XPredWanTransformer3DModel, condition_from_tensors
from ..backbones.base import _word_tokenizer
from ..conditioning import encode, pack_mask
from ..loss import flow_matching_loss
from .scenes import ALL_BG_KINDS, VOCAB, sample_batch


@dataclass
class ToyModelConfig:
    size: int = 32
    frames: int = 9
    spatial: int = 2
    dim: int = 128
    head_dim: int = 32
    ffn: int = 256
    layers: int = 4
    text_dim: int = 64
    text_layers: int = 2
    max_sequence_length: int = 32  # target clause <= 12 tokens, two-object captions <= 21


@dataclass
class PretrainConfig:
    run: str = "pretrain_runs/toy"
    steps: int = 40000
    batch: int = 16
    lr: float = 1e-3
    text_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 200
    decay_from: float = 0.7  # fraction of `steps` after which the LR decays linearly to 5 %
    rewarm_from: int = 0  # a continuation: warm the LR up again from this step (0 = only at the start)
    ema: float = 0.999
    p_first_last: float = 0.25
    p_drop_caption: float = 0.1
    unknown_weight: float = 3.0
    object_weight: float = 1.0  # generated cells an object covers weigh this much more (1 = off; toy_v2 used 4)
    curriculum_until: float = 0.25  # fraction of steps with linear motion + one object only
    seed: int = 0
    checkpoint_minutes: float = 5.0
    export_minutes: float = 15.0
    export_dir: str = str(TOY_DIR)
    threads: int = 2
    world: str = "v1"  # "v2": see the module docstring
    p_two_objects: float = 0.2  # v2 only (v1 draws 1 or 2 objects uniformly)
    max_minutes: float = 0.0  # stop (checkpoint + export) after this much training time in this process; 0 = no limit
    init_from: str = ""  # a checkpoint.pt whose EMA weights start this run (grown to `model` if needed)
    model: ToyModelConfig = field(default_factory=ToyModelConfig)


TOY_DEFAULTS = dict(height=32, width=32, num_frames=9, steps=20, guidance=1.0, flow_shift=2.0, fps=6)


def build_toy_backbone(mc: ToyModelConfig, seed: int = 0) -> Backbone:
    """A freshly initialised toy backbone (the architecture :func:`pretrain` trains)."""
    from diffusers import UniPCMultistepScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    vae = PatchifyVAE(scale_factor_spatial=mc.spatial)
    z = vae.config.z_dim
    transformer = XPredWanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=mc.dim // mc.head_dim, attention_head_dim=mc.head_dim,
        in_channels=2 * z + vae.config.scale_factor_temporal, out_channels=z, text_dim=mc.text_dim, freq_dim=64,
        ffn_dim=mc.ffn, num_layers=mc.layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        image_dim=None, rope_max_seq_len=64)
    tokenizer = _word_tokenizer(list(VOCAB))
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=mc.text_dim, d_kv=mc.text_dim // 4, d_ff=2 * mc.text_dim,
        num_layers=mc.text_layers, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0))
    d = TOY_DEFAULTS
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        flow_shift=d["flow_shift"])
    return Backbone("toy", transformer, vae, scheduler, tokenizer, text_encoder,
                    max_sequence_length=mc.max_sequence_length,
                    defaults=dict(d, height=mc.size, width=mc.size, num_frames=mc.frames))


V1_MOTIONS = ("static", "linear", "circle", "pulse", "spin")
V2_MOTIONS = ("static", "linear", "linear", "circle", "circle", "pulse", "spin")  # repeats weight the draw


def sample_clips(cfg: PretrainConfig, rng: np.random.Generator, curriculum: bool):
    """One batch of training clips ``(videos, masks, captions)`` from the configured world."""
    S, T, n = cfg.model.size, cfg.model.frames, cfg.batch
    if curriculum:
        return sample_batch(n, rng, size=S, frames=T, motions=("linear",), n_objects=1)
    if cfg.world == "v1":
        return sample_batch(n, rng, size=S, frames=T, motions=V1_MOTIONS, n_objects=(1, 2))
    if cfg.world != "v2":
        raise ValueError(f"unknown world {cfg.world!r}; choose 'v1' or 'v2'")
    n2 = int(rng.binomial(n, cfg.p_two_objects))
    parts = [sample_batch(k, rng, size=S, frames=T, motions=V2_MOTIONS, n_objects=o, bg_kinds=ALL_BG_KINDS)
             for k, o in ((n - n2, 1), (n2, 2)) if k]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            [c for p in parts for c in p[2]])


def grow_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state`` (a smaller transformer of the same family) into ``model`` so that it computes the same function.

    Same-shape tensors are copied. A wider FFN keeps the old units and gives the new ones zero output weights;
    blocks beyond the old depth keep their fresh init except zero output projections (self-attention,
    cross-attention, FFN), so each new block adds nothing to the residual stream until training moves them.
    Returns the names of the tensors that were grown or zeroed. Raises if a name is missing from ``model`` or
    a shape shrinks.
    """
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ValueError(f"the checkpoint has tensors this model lacks (not a smaller toy model?): {unknown[:4]}")
    changed = []
    with torch.no_grad():
        for k, v in own.items():
            if k in state and state[k].shape == v.shape:
                v.copy_(state[k])
                continue
            changed.append(k)
            if k in state:  # widened: copy the overlap, silence the new FFN units
                old = state[k]
                if any(a > b for a, b in zip(old.shape, v.shape, strict=True)):
                    raise ValueError(f"{k}: cannot shrink {tuple(old.shape)} to {tuple(v.shape)}")
                if k.endswith("ffn.net.2.weight"):
                    v.zero_()
                v[tuple(slice(0, a) for a in old.shape)].copy_(old)
            elif k.endswith(("attn1.to_out.0.weight", "attn1.to_out.0.bias", "attn2.to_out.0.weight",
                             "attn2.to_out.0.bias", "ffn.net.2.weight", "ffn.net.2.bias")):
                v.zero_()  # a new block: identity on the residual stream
    return changed


def object_cells(masks: np.ndarray, geometry) -> torch.Tensor:
    """``(B, T, H, W)`` bool object masks -> ``(B, 1, L, h, w)`` float: 1 on latent cells an object touches in any
    of their pixel frames, grown by one cell (where it moves from and to)."""
    absent = torch.from_numpy(~masks)[:, None].float()  # "keep" = no object, so pack_mask's 'any' pools objects
    present = 1 - pack_mask(absent, geometry, reduce="any").amin(1, keepdim=True)
    return torch.nn.functional.max_pool3d(present, (1, 3, 3), stride=1, padding=(0, 1, 1))


def frame_level_keep(batch: int, frames: int, height: int, width: int, first_last: np.ndarray) -> torch.Tensor:
    """Wan-sense keep masks ``(B, 1, T, H, W)``: frame 0 given; also the last frame where ``first_last``."""
    keep = torch.zeros(batch, 1, frames, height, width)
    keep[:, :, 0] = 1
    keep[torch.from_numpy(first_last), :, -1] = 1
    return keep


def _lr_factor(step: int, cfg: PretrainConfig) -> float:
    warm = min(1.0, (step + 1 - cfg.rewarm_from) / cfg.warmup) if step >= cfg.rewarm_from else 1.0
    start = cfg.decay_from * cfg.steps
    decay = 1.0 if step < start else max(0.05, 1 - (step - start) / max(1, cfg.steps - start))
    return warm * decay


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def slim_checkpoint(path: Path) -> tuple[int, int]:
    """Rewrite a checkpoint without the optimiser's moments, atomically: about half its size, small enough to commit
    (the grown toy model's full checkpoint is 30 MB). Resuming from it starts AdamW afresh and warms the learning
    rate up again from its step (see :func:`pretrain`). Returns the sizes in bytes before and after."""
    path = Path(path)
    before = path.stat().st_size
    st = torch.load(path, weights_only=False)
    st.pop("optimizer", None)
    _save_atomic(st, path)
    return before, path.stat().st_size


def export(bb: Backbone, ema_state: dict, out: Path, meta: dict) -> None:
    """Write the EMA weights as a diffusers-format backbone folder, atomically (tmp folder + rename)."""
    live = {k: v.detach().clone() for k, v in bb.transformer.state_dict().items()}
    live_t = {k: v.detach().clone() for k, v in bb.text_encoder.state_dict().items()}
    bb.transformer.load_state_dict(ema_state["transformer"])
    bb.text_encoder.load_state_dict(ema_state["text_encoder"])
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    bb.save_pretrained(tmp)
    (tmp / "pretrain.json").write_text(json.dumps(meta, indent=1))
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    bb.transformer.load_state_dict(live)
    bb.text_encoder.load_state_dict(live_t)


def pretrain(cfg: PretrainConfig) -> Path:
    torch.set_num_threads(cfg.threads)
    run = Path(cfg.run)
    run.mkdir(parents=True, exist_ok=True)
    mc = cfg.model
    bb = build_toy_backbone(mc, cfg.seed)
    tr, te, vae = bb.transformer, bb.text_encoder, bb.vae
    tr.train()
    te.train()
    opt = torch.optim.AdamW([
        {"params": list(tr.parameters()), "lr": cfg.lr, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
        # no weight decay on the text side: an unused word vector would otherwise be pushed to zero (probe v3)
        {"params": list(te.parameters()), "lr": cfg.text_lr, "weight_decay": 0.0, "base_lr": cfg.text_lr},
    ], betas=(0.9, 0.99))
    ema = {"transformer": {k: v.detach().clone() for k, v in tr.state_dict().items()},
           "text_encoder": {k: v.detach().clone() for k, v in te.state_dict().items()}}
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, wall, history = 0, 0.0, []
    ckpt = run / "checkpoint.pt"
    if cfg.init_from and not ckpt.exists():
        src = torch.load(cfg.init_from, weights_only=False)["ema"]
        grown = grow_state(tr, src["transformer"])
        te.load_state_dict(src["text_encoder"])
        ema = {"transformer": {k: v.detach().clone() for k, v in tr.state_dict().items()},
               "text_encoder": {k: v.detach().clone() for k, v in te.state_dict().items()}}
        print(f"started from the EMA weights of {cfg.init_from}; grown/zeroed tensors: {len(grown)}", flush=True)
    saved_cfg = run / "config.json"
    if ckpt.exists() and saved_cfg.exists():
        was = json.loads(saved_cfg.read_text()).get("model", {})
        if was and was != asdict(mc):
            raise ValueError(f"{ckpt} holds a model with {was}, this command builds {asdict(mc)}: pass the run's "
                             "own --layers/--ffn to resume it, or use a new --run with --init-from to grow it")
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        tr.load_state_dict(st["transformer"])
        te.load_state_dict(st["text_encoder"])
        if "optimizer" in st:
            opt.load_state_dict(st["optimizer"])
            for g, base in zip(opt.param_groups, (cfg.lr, cfg.text_lr), strict=True):
                g["base_lr"] = base  # this command's --lr / --text-lr, not the saved ones
        else:  # a slim checkpoint (slim_checkpoint): fresh AdamW moments, so the learning rate warms up again
            cfg = replace(cfg, rewarm_from=st["step"])
            print(f"{ckpt} holds no optimiser state (slim): AdamW starts afresh and the learning rate warms up "
                  f"again from step {st['step']}", flush=True)
        ema = st["ema"]
        rng.bit_generator.state = st["np_rng"]
        gen.set_state(st["torch_rng"])
        step, wall, history = st["step"], st["wall"], st["history"]
        print(f"resumed from {ckpt} at step {step} ({wall / 60:.1f} min trained so far)", flush=True)
    pipe_enc = bb.pipeline()  # only its prompt encoder is used: training sees text exactly as inference does
    n_params = sum(p.numel() for p in tr.parameters()) + sum(p.numel() for p in te.parameters())
    print(f"toy backbone: {n_params / 1e6:.2f} M params; config {json.dumps(asdict(cfg))}", flush=True)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    t_ckpt = t_export = time.time()
    t_last = time.time()
    ema_loss = history[-1][1] if history else None
    log = open(run / "log.txt", "a")
    T, S = mc.frames, mc.size
    t_start = time.time()
    while step < cfg.steps:
        t0 = time.time()
        curriculum = step < cfg.curriculum_until * cfg.steps
        videos, objects, caps = sample_clips(cfg, rng, curriculum)
        caps = ["" if u < cfg.p_drop_caption else c for u, c in zip(rng.random(cfg.batch), caps, strict=True)]
        x = torch.from_numpy(videos).permute(0, 4, 1, 2, 3) * 2 - 1
        keep = frame_level_keep(cfg.batch, T, S, S, rng.random(cfg.batch) < cfg.p_first_last)
        with torch.no_grad():
            cond = condition_from_tensors(vae, x * keep, keep)  # grey (0) wherever not given
            z0 = encode(vae, x)
            unknown = 1 - pack_mask(keep, bb.geometry).mean(1, keepdim=True)
        weight = 1 + (cfg.unknown_weight - 1) * unknown
        if cfg.object_weight != 1:
            weight = weight * (1 + (cfg.object_weight - 1) * unknown * object_cells(objects, bb.geometry))
        text = pipe_enc._get_t5_prompt_embeds(caps, max_sequence_length=mc.max_sequence_length,
                                              device=torch.device("cpu"), dtype=torch.float32)
        t = torch.sigmoid(torch.randn(cfg.batch, generator=gen) + 0.3)
        noise = torch.randn(z0.shape, generator=gen)
        loss = flow_matching_loss(tr, z0, cond, text, t, noise, weight)
        f = _lr_factor(step, cfg)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * f
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(tr.parameters()) + list(te.parameters()), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))  # EMA warm-up: early weights are forgotten fast
            for mod, key in ((tr, "transformer"), (te, "text_encoder")):
                for k, v in mod.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[key][k].mul_(d).add_(v.detach(), alpha=1 - d)
        step += 1
        wall += time.time() - t0
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if step % 50 == 0:
            history.append((step, ema_loss, wall))
            msg = (f"step {step}/{cfg.steps} loss_ema {ema_loss:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                   f"{(time.time() - t_last) / 50:.3f} s/step wall {wall / 60:.1f} min"
                   f"{' [curriculum]' if curriculum else ''}")
            t_last = time.time()
            print(msg, flush=True)
            log.write(msg + "\n")
            log.flush()
        now = time.time()
        done = step >= cfg.steps or (cfg.max_minutes > 0 and now - t_start > cfg.max_minutes * 60)
        if done or now - t_ckpt > cfg.checkpoint_minutes * 60:
            _save_atomic({"transformer": tr.state_dict(), "text_encoder": te.state_dict(),
                          "optimizer": opt.state_dict(), "ema": ema, "np_rng": rng.bit_generator.state,
                          "torch_rng": gen.get_state(), "step": step, "wall": wall, "history": history}, ckpt)
            t_ckpt = now
        if done or now - t_export > cfg.export_minutes * 60:
            meta = {"step": step, "wall_minutes": round(wall / 60, 1), "loss_ema": ema_loss,
                    "command": "python -m " + " ".join(["loraedit_nb.toyworld.pretrain"] + sys.argv[1:]),
                    "config": asdict(cfg)}
            export(bb, ema, Path(cfg.export_dir), meta)
            print(f"exported EMA weights at step {step} to {cfg.export_dir}", flush=True)
            t_export = now
        if done:
            break
    log.close()
    return Path(cfg.export_dir)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = PretrainConfig()
    for f in ("run", "steps", "batch", "lr", "text_lr", "seed", "checkpoint_minutes", "export_minutes",
              "export_dir", "threads", "curriculum_until", "decay_from", "rewarm_from", "world", "p_two_objects",
              "max_minutes",
              "init_from", "warmup", "object_weight", "unknown_weight"):
        p.add_argument("--" + f.replace("_", "-"), type=type(getattr(d, f)), default=getattr(d, f))
    for f in ("layers", "ffn"):
        p.add_argument("--" + f, type=int, default=getattr(d.model, f), help="transformer size (model config)")
    p.add_argument("--slim", action="store_true",
                   help="only rewrite --run's checkpoint.pt without optimiser state (to commit it), then exit")
    a = vars(p.parse_args(argv))
    if a.pop("slim"):
        before, after = slim_checkpoint(Path(a["run"]) / "checkpoint.pt")
        print(f"{a['run']}/checkpoint.pt: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB (no optimiser state)")
        return
    model = ToyModelConfig(layers=a.pop("layers"), ffn=a.pop("ffn"))
    cfg = PretrainConfig(**a, model=model)
    pretrain(cfg)


if __name__ == "__main__":
    main()
