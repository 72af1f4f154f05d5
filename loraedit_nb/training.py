"""Mask-aware LoRA training: one engine for the toy backbone (CPU, minutes) and Wan2.1-I2V-14B (one GPU).

``train_lora(backbone, samples, config)`` fine-tunes a LoRA on motion-regime and/or appearance-regime samples
(:mod:`loraedit_nb.regimes`) with rectified flow matching and the dual-role region weights (:mod:`loraedit_nb.loss`).

The paper's low-cost strategy, as implemented here:

* every video, condition, text and image embedding is encoded **once** and cached; training steps touch only the
  transformer, and the VAE and encoders can leave the GPU (``offload_encoders``);
* gradient checkpointing of transformer blocks; bf16 base weights with fp32 LoRA parameters; optional fp8 storage
  of the frozen base (diffusers layerwise casting), 8-bit AdamW (bitsandbytes, CUDA) and block offloading to the
  CPU (diffusers group offloading) for <= 24 GB cards.

Checkpoints (LoRA weights, optimiser state, RNG state, step) are written atomically as safetensors; re-running
with the same ``output_dir`` resumes and gives the same LoRA as an uninterrupted run. The final LoRA is saved in
diffusers' format (``WanImageToVideoPipeline.load_lora_weights`` loads it). Runs unchanged under
``accelerate launch`` (data parallel over samples).
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .adapters import collate_context
from .conditioning import encode
from .lora import add_lora, lora_state_dict, read_lora_meta, save_lora, set_lora_state
from .loss import flow_matching_loss, region_weights, sample_timesteps
from .regimes import Sample, augment_colour
from .video import to_model

CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass
class TrainConfig:
    """Every training knob in one place. ``toy_config()`` / ``wan_config()`` give the two scales' defaults."""

    steps: int = 100
    rank: int = 16
    alpha: float | None = None  # None = rank (the official code forces alpha = rank)
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    batch_size: int = 1
    timesteps: str = "uniform"  # "uniform" (official) | "logit_normal"
    shift: float = 1.0  # t' = s t / (1 + (s - 1) t); 1 = none (official)
    w_generate: float = 1.0  # dual-role loss: weight on the region to generate
    w_keep: float = 1.0  # ... and on the region that is given. (1, 1) = the official plain MSE
    appearance_ratio: float | None = None  # P(appearance batch) in joint runs; None = by sample count
    appearance_repeats: int = 9  # official: edited-frame samples repeated x9 beside the video sample
    colour_aug: str | None = None  # None | "permute" | "hue": appearance-agnostic motion (beyond the paper)
    colour_aug_variants: int = 8  # cached augmented copies per motion sample (encoded once)
    targets: tuple[str, ...] | str | None = None  # None = the backbone family's (adapter.lora_targets); str = regex
    gradient_checkpointing: bool = True
    fp8_base: bool = False  # diffusers layerwise casting: fp8 storage of frozen base weights
    optimizer: str = "adamw"  # "adamw" | "adamw8bit" (bitsandbytes, CUDA only)
    block_offload: bool = False  # diffusers group offloading of transformer blocks to CPU (CUDA only)
    offload_encoders: bool = True  # move VAE/text/image encoders off the GPU after caching
    checkpoint_every: int = 0  # 0 = only at the end
    log_every: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.rank < 1 or self.batch_size < 1:
            raise ValueError("steps, rank and batch_size must be >= 1")
        self.betas = tuple(self.betas)
        if self.targets is not None and not isinstance(self.targets, str):
            self.targets = tuple(self.targets)


def toy_config(**overrides) -> TrainConfig:
    """Toy-scale defaults: about a minute on 2 CPU cores. Colour augmentation is on: without it a LoRA trained on
    one clip memorises the source object's colour and paints it back over the edit (seen in the project's probes
    and again on the shipped base: a blue star comes back blue under a green first frame). With augmentation the
    LoRA must copy the appearance from frame 0, which takes more steps: 300 steps left a faint blob (motion cosine
    0.4), 1200 steps a greenish object on the source path (0.89)."""
    base = TrainConfig(steps=800, rank=8, lr=2e-3, batch_size=4, gradient_checkpointing=False, colour_aug="permute",
                       colour_aug_variants=16, log_every=10)
    return replace(base, **overrides)


MEMORY_PRESETS = {
    # memory options per GPU tier for Wan2.1-I2V-14B at 480p (not yet measured on a GPU: see the README)
    "24GB": dict(fp8_base=True, block_offload=True, gradient_checkpointing=True, optimizer="adamw8bit"),
    "48GB": dict(fp8_base=True, block_offload=False, gradient_checkpointing=True, optimizer="adamw"),
    "80GB+": dict(fp8_base=False, block_offload=False, gradient_checkpointing=True, optimizer="adamw"),
}


def wan_config(memory_preset: str | None = None, **overrides) -> TrainConfig:
    """The paper's setting for Wan2.1-I2V-14B: rank 16, alpha 16, AdamW 1e-4, betas (0.9, 0.99), wd 0.01, clip 1,
    batch 1, 100 steps, uniform t, plain MSE. Colour augmentation stays off until the evaluation measures it.
    ``memory_preset``: ``"24GB" | "48GB" | "80GB+"`` picks the memory options for that GPU tier."""
    if memory_preset is not None:
        if memory_preset not in MEMORY_PRESETS:
            raise ValueError(f"memory_preset must be one of {list(MEMORY_PRESETS)}, got {memory_preset!r}")
        overrides = {**MEMORY_PRESETS[memory_preset], **overrides}
    return replace(TrainConfig(), **overrides)


def default_config(backbone, **overrides) -> TrainConfig:
    """Toy-scale settings for the embedded and tiny backbones, the paper's (``wan_config``) for real models of
    either family (HunyuanVideo-I2V uses the same presets: its 13B transformer is sized like Wan's 14B)."""
    return toy_config(**overrides) if backbone.is_tiny else wan_config(**overrides)


# ----------------------------------------------------------------------------------------------- caching
@dataclass
class CachedSample:
    """A sample after encoding: everything a training step needs, nothing it has to recompute."""

    latents: torch.Tensor  # (1, z, L, h, w) normalised VAE latents of the target
    condition: torch.Tensor  # (1, C, L, h, w) the family's condition (Wan: 4 mask + z latent channels)
    context: dict  # the transformer's other inputs, batch 1 (Wan: text (1, S, d) + CLIP tokens or None)
    regime: str
    prompt: str

    @property
    def text(self) -> torch.Tensor:
        return self.context["encoder_hidden_states"]


@torch.no_grad()
def cache_samples(backbone, samples: Sequence[Sample], config: TrainConfig, progress: bool = True
                  ) -> list[CachedSample]:
    """Encode samples once (VAE for target and condition, text encoder, CLIP). With colour augmentation each
    motion/naive sample is cached ``colour_aug_variants`` extra times, recoloured (prompt colour word follows)."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(config.seed + 10_000)
    expanded: list[Sample] = []
    for s in samples:
        expanded.append(s)
        if config.colour_aug and s.regime in ("motion", "naive"):
            expanded += [augment_colour(s, rng, config.colour_aug) for _ in range(config.colour_aug_variants)]
    memo: dict = {}  # text encodings are shared between samples with the same prompt (and image, where it counts)
    out = []
    device = backbone.device
    adapter = backbone.adapter
    for s in tqdm(expanded, desc="encoding samples (once)", disable=not progress, leave=False):
        z0 = encode(backbone.vae, to_model(s.target, device=device))
        cond = adapter.condition(backbone.vae, to_model(s.condition, device=device),
                                 torch.from_numpy(s.keep)[None, None].to(device))
        out.append(CachedSample(z0, cond, backbone.encode_context(s.prompt, s.image, memo), s.regime, s.prompt))
    return out


# ----------------------------------------------------------------------------------------------- results
@dataclass
class LoraRun:
    """A trained LoRA: weights (peft key names), the config, the loss history and where it was saved."""

    state_dict: dict[str, torch.Tensor]
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    path: Path | None = None
    seconds: float = 0.0

    def save(self, path: str | os.PathLike, backbone) -> Path:
        self.path = save_lora(path, self.state_dict, transformer=backbone.transformer, rank=self.config.rank,
                              alpha=self.config.alpha or self.config.rank, targets=self.config.targets,
                              extra={"train_config": _json_config(self.config), "steps": len(self.history)})
        return self.path


def _json_config(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def memory_report(backbone, n_trainable: int, config: TrainConfig) -> dict:
    """Parameter counts and an estimate of training memory (weights + LoRA grads/Adam states), in GB."""
    tr = backbone.transformer
    frozen = sum(p.numel() * p.element_size() for p in tr.parameters() if not p.requires_grad)
    if config.fp8_base:
        frozen = sum(p.numel() for p in tr.parameters() if not p.requires_grad)  # 1 byte each
    train_bytes = n_trainable * 4 * (4 if config.optimizer == "adamw" else 2.5)  # param, grad, 2 moments
    return {"trainable_params": n_trainable,
            "frozen_params": sum(p.numel() for p in tr.parameters() if not p.requires_grad),
            "estimated_weights_gb": round(frozen / 1e9, 3),
            "estimated_lora_and_optimizer_gb": round(train_bytes / 1e9, 4)}


def peak_memory() -> dict:
    out = {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)}
    if torch.cuda.is_available():
        out["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
    return out


# ----------------------------------------------------------------------------------------------- checkpoints
def _save_checkpoint(path: Path, transformer, optimizer, gen: torch.Generator, step: int, history: list,
                     config: TrainConfig) -> None:
    from safetensors.torch import save_file

    tensors = {f"lora.{k}": v for k, v in lora_state_dict(transformer).items()}
    st = optimizer.state_dict()
    for idx, s in st["state"].items():
        for name, v in s.items():
            tensors[f"optim.{idx}.{name}"] = v.detach().cpu().contiguous() if torch.is_tensor(v) \
                else torch.tensor(v)
    tensors["rng.torch"] = gen.get_state()
    meta = {"step": str(step), "history": json.dumps(history), "param_groups": json.dumps(st["param_groups"]),
            "config": json.dumps(_json_config(config))}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)  # atomic: a crash mid-write never leaves a broken checkpoint


def _load_checkpoint(path: Path, transformer, optimizer, gen: torch.Generator) -> tuple[int, list]:
    from peft.utils import set_peft_model_state_dict
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    set_peft_model_state_dict(getattr(transformer, "module", transformer),
                              {k[5:]: v for k, v in tensors.items() if k.startswith("lora.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    gen.set_state(tensors["rng.torch"])
    return int(meta["step"]), json.loads(meta["history"])


# ----------------------------------------------------------------------------------------------- training
def _init_from(transformer, init) -> None:
    """Continue from an earlier LoRA (the official appearance stage continues the motion LoRA)."""
    from safetensors.torch import load_file

    if isinstance(init, LoraRun):
        sd = init.state_dict
    else:
        p = Path(init)
        read_lora_meta(p)
        from .lora import WEIGHT_NAME

        raw = load_file(str(p / WEIGHT_NAME if p.is_dir() else p))
        sd = {k.removeprefix("transformer."): v for k, v in raw.items()}
    set_lora_state(transformer, sd)


def _build_optimizer(params, cfg: TrainConfig):
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw8bit":
        if not torch.cuda.is_available():
            raise RuntimeError("optimizer='adamw8bit' needs CUDA (bitsandbytes); use 'adamw' on CPU")
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise ImportError("optimizer='adamw8bit' needs bitsandbytes: pip install bitsandbytes") from e
        return bnb.optim.AdamW8bit(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'adamw' or 'adamw8bit', got {cfg.optimizer!r}")


def train_lora(backbone, samples: Sequence[Sample], config: TrainConfig | None = None, *,
               output_dir: str | os.PathLike | None = None, init_lora: LoraRun | str | os.PathLike | None = None,
               callback: Callable[[int, float, object], None] | None = None, callback_every: int = 0,
               progress: bool = True, stop_after: int | None = None) -> LoraRun:
    """Fine-tune a LoRA on LoRA-Edit samples. Returns a :class:`LoraRun`; the LoRA stays attached and active on
    ``backbone.transformer`` (adapter ``"default"``) so that inference right after uses it.

    ``samples``: from :func:`~loraedit_nb.regimes.motion_sample` / ``appearance_samples`` / ``naive_sample``; with
    both regimes present each step draws an appearance batch with probability ``config.appearance_ratio``
    (default: the official mix, edited frames repeated ``appearance_repeats`` times beside each video sample).
    ``output_dir``: checkpoints go there every ``checkpoint_every`` steps and the final LoRA to
    ``output_dir/lora``; an existing checkpoint there is resumed. ``init_lora``: continue from an earlier LoRA.
    ``callback(step, loss, backbone)`` runs every ``callback_every`` steps (notebook previews).
    ``stop_after``: stop (after checkpointing) at this step, as an interruption would (used by tests).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    cfg = config or default_config(backbone)
    if cfg.targets is None:  # the family's LoRA targets, recorded in the run's config and the saved LoRA
        cfg = replace(cfg, targets=backbone.adapter.lora_targets)
    if not samples:
        raise ValueError("no training samples: build some with motion_sample / appearance_samples")
    t_start = time.time()
    accelerator = Accelerator(cpu=backbone.device.type == "cpu" and not torch.cuda.is_available())
    out_dir = Path(output_dir) if output_dir is not None else None

    cached = cache_samples(backbone, samples, cfg, progress=progress and accelerator.is_main_process)
    if cfg.offload_encoders and backbone.device.type == "cuda":
        for m in backbone.encoders:
            m.to("cpu")
        torch.cuda.empty_cache()
    groups = {r: [c for c in cached if c.regime == r] for r in ("motion", "appearance", "naive")}
    video_pool = groups["motion"] + groups["naive"]
    app_pool = groups["appearance"]
    if app_pool and video_pool:
        ratio = cfg.appearance_ratio
        if ratio is None:  # official mix: each edited frame repeated x9 beside one video sample per clip
            n_video = sum(1 for s in samples if s.regime in ("motion", "naive"))
            n_app = len(app_pool) * cfg.appearance_repeats
            ratio = n_app / (n_app + n_video)
    else:
        ratio = 1.0 if app_pool else 0.0

    tr = backbone.transformer
    adapter = backbone.adapter
    if getattr(tr, "peft_config", None):
        tr.delete_adapters(list(tr.peft_config))  # a fresh LoRA per run; continuing is explicit (init_lora)
    if cfg.fp8_base:
        tr.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    with torch.random.fork_rng(devices=[]):  # seeded LoRA init (A is random): runs are reproducible
        torch.manual_seed(cfg.seed)
        n_trainable = add_lora(tr, rank=cfg.rank, alpha=cfg.alpha, targets=cfg.targets)
    if init_lora is not None:
        _init_from(tr, init_lora)
    if cfg.gradient_checkpointing:
        tr.enable_gradient_checkpointing()
    if cfg.block_offload:
        if backbone.device.type != "cuda":
            raise RuntimeError("block_offload needs a CUDA device (it streams blocks from CPU memory to the GPU)")
        tr.enable_group_offload(onload_device=backbone.device, offload_type="block_level", num_blocks_per_group=1,
                                use_stream=True)
    tr.train()
    params = [p for p in tr.parameters() if p.requires_grad]
    optimizer = _build_optimizer(params, cfg)
    tr_p, optimizer = accelerator.prepare(tr, optimizer)

    gen = torch.Generator().manual_seed(cfg.seed * 1000 + accelerator.process_index)
    step, history = 0, []
    ckpt = out_dir / CHECKPOINT_NAME if out_dir is not None else None
    if ckpt is not None and ckpt.exists():
        step, history = _load_checkpoint(ckpt, tr_p, optimizer, gen)
        if accelerator.is_main_process and progress:
            print(f"resuming from {ckpt} at step {step}/{cfg.steps}")
    mem = memory_report(backbone, n_trainable, cfg)
    if accelerator.is_main_process and progress:
        print(f"LoRA rank {cfg.rank}: {n_trainable:,} trainable / {mem['frozen_params']:,} frozen parameters; "
              f"~{mem['estimated_weights_gb']} GB weights + {mem['estimated_lora_and_optimizer_gb']} GB LoRA/optimiser;"
              f" {len(video_pool)} video + {len(app_pool)} appearance cached samples, P(appearance)={ratio:.2f}")

    # diffusers' gradient checkpointing triggers torch's use_reentrant notice on every step: silence it here only
    warnings.filterwarnings("ignore", message=".*torch.utils.checkpoint.*use_reentrant.*")
    bar = tqdm(total=cfg.steps, initial=step, desc="LoRA training", disable=not progress or
               not accelerator.is_main_process)
    interrupted = False
    while step < cfg.steps:
        use_app = bool(app_pool) and (not video_pool or torch.rand(1, generator=gen).item() < ratio)
        pool = app_pool if use_app else video_pool
        idx = torch.randint(len(pool), (cfg.batch_size,), generator=gen).tolist()
        z0 = torch.cat([pool[i].latents for i in idx]).to(accelerator.device)
        cond = torch.cat([pool[i].condition for i in idx]).to(accelerator.device)
        context = collate_context([pool[i].context for i in idx], accelerator.device)
        t = sample_timesteps(cfg.batch_size, scheme=cfg.timesteps, shift=cfg.shift, generator=gen)
        noise = torch.randn(z0.shape, generator=gen).to(accelerator.device)
        weight = region_weights(cond, w_generate=cfg.w_generate, w_keep=cfg.w_keep, adapter=adapter)
        with accelerator.autocast():
            loss = flow_matching_loss(tr_p, z0, cond, context, t.to(accelerator.device), noise, weight)
        accelerator.backward(loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        lv = float(loss.detach())
        history.append({"step": step, "loss": lv, "regime": "appearance" if use_app else "video"})
        bar.update(1)
        if step % max(1, cfg.log_every) == 0 or step == cfg.steps:
            recent = [h["loss"] for h in history[-cfg.log_every:]]
            bar.set_postfix(loss=f"{np.mean(recent):.4f}")
        if step == 1 and accelerator.is_main_process and progress:
            pm = peak_memory()
            bar.write(f"memory after the first step: {pm}")
        if callback is not None and callback_every and step % callback_every == 0:
            callback(step, lv, backbone)
        stop = stop_after is not None and step >= stop_after
        if ckpt is not None and accelerator.is_main_process and (
                (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.steps or stop):
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            _save_checkpoint(ckpt, tr_p, optimizer, gen, step, history, cfg)
        if stop:
            interrupted = True
            break
    bar.close()
    accelerator.wait_for_everyone()
    tr = accelerator.unwrap_model(tr_p)
    tr.eval()
    if cfg.gradient_checkpointing:
        tr.disable_gradient_checkpointing()
    if cfg.offload_encoders and backbone.device.type == "cuda":
        for m in backbone.encoders:
            m.to(backbone.device)
    run = LoraRun(lora_state_dict(tr), cfg, history, seconds=time.time() - t_start)
    if out_dir is not None and accelerator.is_main_process and not interrupted:
        run.save(out_dir / "lora", backbone)
        (out_dir / "history.json").write_text(json.dumps(history))
    return run


@torch.no_grad()
def fixed_loss(backbone, cached: Sequence[CachedSample], ts: Sequence[float] = (0.2, 0.4, 0.6, 0.8), seed: int = 0,
               config: TrainConfig | None = None) -> float:
    """The training loss at fixed times and fixed noise over all cached samples: a noise-free progress measure."""
    cfg = config or TrainConfig()
    gen = torch.Generator().manual_seed(seed)
    tr = backbone.transformer
    vals = []
    for c in cached:
        for t in ts:
            noise = torch.randn(c.latents.shape, generator=gen).to(c.latents.device)
            w = region_weights(c.condition, w_generate=cfg.w_generate, w_keep=cfg.w_keep, adapter=backbone.adapter)
            vals.append(float(flow_matching_loss(tr, c.latents, c.condition, c.context, torch.tensor([t]), noise,
                                                 w)))
    return float(np.mean(vals))


def loss_curve(history: list[dict], window: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(steps, moving-average loss) for plotting."""
    if not history:
        return np.zeros(0), np.zeros(0)
    s = np.array([h["step"] for h in history])
    v = np.array([h["loss"] for h in history])
    w = max(1, min(window, len(v)))
    ma = np.convolve(v, np.ones(w) / w, mode="valid")
    return s[w - 1:], ma


def summarize(run: LoraRun) -> str:
    first = np.mean([h["loss"] for h in run.history[:10]]) if run.history else math.nan
    last = np.mean([h["loss"] for h in run.history[-10:]]) if run.history else math.nan
    return f"{len(run.history)} steps in {run.seconds:.0f} s; loss {first:.4f} -> {last:.4f}"


__all__ = [
    "TrainConfig", "toy_config", "wan_config", "default_config", "CachedSample", "cache_samples", "LoraRun",
    "train_lora", "loss_curve", "summarize", "memory_report",
]
