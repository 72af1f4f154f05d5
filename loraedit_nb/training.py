"""Mask-aware LoRA training: one engine for the toy backbone (CPU, minutes) and Wan2.1-I2V-14B (one GPU).

``train_lora(backbone, samples, config)`` fine-tunes a LoRA on motion-regime and/or appearance-regime samples
(:mod:`loraedit_nb.regimes`) with rectified flow matching and the dual-role region weights (:mod:`loraedit_nb.loss`).

The paper's low-cost strategy, as implemented here:

* every video, condition, text and image embedding is encoded **once** and cached; training steps touch only the
  transformer, and the VAE and encoders can leave the GPU (``offload_encoders``);
* gradient checkpointing of transformer blocks; bf16 base weights with fp32 LoRA parameters; optional fp8 storage
  of the frozen base (diffusers layerwise casting), 8-bit AdamW (bitsandbytes, CUDA) and block swapping from
  pinned host memory (:class:`~loraedit_nb.memory.BlockSwapper`) for <= 24 GB cards.

Checkpoints (LoRA weights, optimiser state, RNG state, step) are written atomically as safetensors; re-running
with the same ``output_dir`` resumes and gives the same LoRA as an uninterrupted run. The final LoRA is saved in
diffusers' format (``WanImageToVideoPipeline.load_lora_weights`` loads it). Runs unchanged under
``accelerate launch`` (data parallel over samples).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .backbones.base import collate_context
from .conditioning import encode
from .lora import add_lora, lora_state_dict, read_lora_meta, save_lora, set_lora_state
from .loss import flow_matching_loss, region_weights, sample_timesteps
from .memory import (
    MEMORY_PRESETS,  # also re-exported (the presets used to live here)
    to_host,
)
from .regimes import Sample, augment_colour
from .video import to_model


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
    colour_aug: str | None = None  # None | "permute" | "hue" | "mix": appearance-agnostic motion (beyond the paper)
    colour_aug_variants: int = 8  # cached augmented copies per motion sample (encoded once)
    targets: tuple[str, ...] | str | None = None  # None = the backbone family's (adapter.lora_targets); str = regex
    gradient_checkpointing: bool = True
    fp8_base: bool = False  # diffusers layerwise casting: fp8 storage of frozen base weights (LoRA stays fp32)
    optimizer: str = "adamw"  # "adamw" | "adamw8bit" (bitsandbytes: pip install -e ".[gpu]")
    blocks_to_swap: int | str = 0  # transformer blocks kept in pinned host memory, streamed in per use; "auto" =
    #   the planner's count for the clip (memory.BlockSwapper)
    memory_preset: str | None = None  # the tier this config was made for (recorded; wan_config applies it)
    release_text_encoder: bool = False  # drop the text encoder from host RAM once the prompts are cached
    offload_checkpoints: bool = False  # checkpointed block inputs to pinned host memory (torch save_on_cpu)
    vae_tiling: bool = False  # tiled VAE encoding while caching (HunyuanVideo's VAE needs 18 GB at 480p untiled)
    block_offload: bool = False  # removed: diffusers group offloading discarded LoRA updates (use blocks_to_swap)
    checkpoint_every: int = 0  # 0 = only at the end
    expert: str | None = None  # two-expert backbones (Wan2.2-I2V-A14B): "high" (t >= boundary) or "low"; see
    #   train_experts for both
    log_every: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.rank < 1 or self.batch_size < 1:
            raise ValueError("steps, rank and batch_size must be >= 1")
        if self.block_offload:
            raise ValueError("block_offload was removed: diffusers' group offloading restores every block from a copy "
                             "made once, so the LoRA never trained. Use blocks_to_swap=N (or 'auto', or "
                             "memory_preset='24GB'), which keeps the LoRA on the GPU")
        if self.optimizer not in ("adamw", "adamw8bit"):
            raise ValueError(f"optimizer must be 'adamw' or 'adamw8bit', got {self.optimizer!r}")
        if self.blocks_to_swap != "auto" and (not isinstance(self.blocks_to_swap, int) or self.blocks_to_swap < 0):
            raise ValueError(f"blocks_to_swap must be an int >= 0 or 'auto', got {self.blocks_to_swap!r}")
        if self.blocks_to_swap and not self.gradient_checkpointing:
            raise ValueError("blocks_to_swap needs gradient_checkpointing=True: without it autograd keeps every "
                             "block's weights for backward, so swapping would save nothing")
        self.betas = tuple(self.betas)
        if self.targets is not None and not isinstance(self.targets, str):
            self.targets = tuple(self.targets)
        if self.expert not in (None, "high", "low"):
            raise ValueError(f"expert must be 'high', 'low' or None, got {self.expert!r}")


def toy_config(**overrides) -> TrainConfig:
    """Toy-scale defaults: about a minute on 2 CPU cores. Colour augmentation is on: without it a LoRA trained on
    one clip memorises the source object's colour and paints it back over the edit (seen in the project's probes
    and again on the shipped base: a blue star comes back blue under a green first frame). With augmentation the
    LoRA must copy the appearance from frame 0, which takes more steps: 300 steps left a faint blob (motion cosine
    0.4), 1200 steps a greenish object on the source path (0.89). The mode is ``"mix"`` (results/toy_lever_probes.md:
    on three recolour edits, two training seeds, region PSNR 16.6 dB vs 14.1-14.6 with ``"permute"``, object pixels
    near the edited colour 0.70-0.72 vs 0.55-0.56, frames where the object vanished 11-24 of 96 vs 27-31)."""
    base = TrainConfig(steps=800, rank=8, lr=2e-3, batch_size=4, gradient_checkpointing=False, colour_aug="mix",
                       colour_aug_variants=16, log_every=10)
    return replace(base, **overrides)


def wan_config(memory_preset: str | None = None, **overrides) -> TrainConfig:
    """The paper's setting for Wan2.1-I2V-14B: rank 16, alpha 16, AdamW 1e-4, betas (0.9, 0.99), wd 0.01, clip 1,
    batch 1, 100 steps, uniform t, plain MSE. Colour augmentation stays off until the evaluation measures it.
    ``memory_preset``: ``"16GB" | "24GB" | "48GB" | "80GB+" | "auto"`` (:data:`loraedit_nb.memory.MEMORY_PRESETS`)
    picks the memory options for that GPU tier; ``"auto"`` the largest tier this rank's GPU has room for
    (:func:`loraedit_nb.memory.auto_preset`: the same answer before and after a run in the same process)."""
    if memory_preset is not None:
        from .memory import get_preset

        p = get_preset(memory_preset)  # "auto": this rank's GPU, once per process (memory.auto_preset)
        overrides = {**dict(fp8_base=p.fp8_base, blocks_to_swap=p.train_blocks_to_swap,
                            gradient_checkpointing=p.gradient_checkpointing, optimizer=p.optimizer,
                            release_text_encoder=p.release_text_encoder, offload_checkpoints=p.offload_checkpoints,
                            vae_tiling=p.vae_tiling,
                            memory_preset=p.name), **overrides}
    return replace(TrainConfig(), **overrides)


def default_config(backbone, **overrides) -> TrainConfig:
    """Toy-scale settings for the embedded and tiny backbones, the paper's (``wan_config``) for real models of
    either family (HunyuanVideo-I2V uses the same presets: its 13B transformer is sized like Wan's 14B)."""
    if backbone.is_tiny:
        return toy_config(**overrides)
    if backbone.device.type == "cuda" and "memory_preset" not in overrides:
        overrides["memory_preset"] = "auto"  # the largest tier the card has room for (memory.auto_preset)
    return wan_config(**overrides)


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
    motion/naive sample is cached ``colour_aug_variants`` extra times, recoloured (prompt colour word follows).

    Staged: each encoder comes to ``backbone.device`` for its own pass and goes back after (VAE, then the text
    encoder for the distinct prompts, then the image encoder), so on a real backbone no two of them share the GPU.
    The results are kept on the CPU; training moves one batch at a time."""
    from contextlib import ExitStack

    from tqdm.auto import tqdm

    from .memory import onload

    rng = np.random.default_rng(config.seed + 10_000)
    expanded: list[Sample] = []
    for s in samples:
        expanded.append(s)
        if config.colour_aug and s.regime in ("motion", "naive"):
            expanded += [augment_colour(s, rng, config.colour_aug) for _ in range(config.colour_aug_variants)]
    device = backbone.device
    adapter = backbone.adapter
    latents = []
    if config.vae_tiling and hasattr(backbone.vae, "enable_tiling"):
        backbone.vae.enable_tiling()
    with onload(backbone.vae, device):
        for s in tqdm(expanded, desc="encoding videos (VAE, once)", disable=not progress, leave=False):
            z0 = encode(backbone.vae, to_model(s.target, device=device))
            cond = adapter.condition(backbone.vae, to_model(s.condition, device=device),
                                     torch.from_numpy(s.keep)[None, None].to(device))
            latents.append((z0.cpu(), cond.cpu()))
    if adapter.family == "wan":  # all distinct prompts in one pass of the text encoder
        backbone.encode_prompt(list(dict.fromkeys(s.prompt for s in expanded)))
    memo: dict = {}  # text encodings shared between samples with the same prompt (and image, where it counts)
    out = []
    with ExitStack() as stack:
        for m in adapter.context_modules(backbone):
            stack.enter_context(onload(m, device))
        for s, (z0, cond) in zip(expanded, latents, strict=True):
            ctx = backbone.encode_context(s.prompt, s.image, memo)
            ctx = {k: None if v is None else v.cpu() for k, v in ctx.items()}
            out.append(CachedSample(z0, cond, ctx, s.regime, s.prompt))
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
    memory: dict = field(default_factory=dict)  # peak memory, blocks swapped, swap counts
    experts: dict[str, LoraRun] | None = None  # Wan2.2-I2V-A14B: one run per expert ("high", "low")

    def save(self, path: str | os.PathLike, backbone) -> Path:
        """Write the LoRA in diffusers' format. A pair of expert LoRAs goes to ``path/high`` and ``path/low``; stock
        diffusers loads them with ``pipe.load_lora_weights(path/high)`` and ``pipe.load_lora_weights(path/low,
        load_into_transformer_2=True)``; :func:`~loraedit_nb.inference.edit_video` takes ``path``."""
        if self.experts:
            for e, run in self.experts.items():
                run.save(Path(path) / e, backbone.expert(e) if backbone.transformer_2 is not None else backbone)
            self.path = Path(path)
            return self.path
        self.path = save_lora(path, self.state_dict, transformer=backbone.transformer, rank=self.config.rank,
                              alpha=self.config.alpha or self.config.rank, targets=self.config.targets,
                              extra={"train_config": _json_config(self.config), "steps": len(self.history)})
        return self.path


def _json_config(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def memory_report(backbone, n_trainable: int, config: TrainConfig) -> dict:
    """Parameter counts and what the weights take where, in GB: base weights on the execution device (in their
    storage dtype, so fp8-cast weights count 1 byte and the layers diffusers leaves in bf16/fp32 count theirs), base
    weights swapped in from host memory, and the LoRA with its gradient and optimiser state (estimate)."""
    tr = backbone.transformer
    dev = backbone.device
    frozen = [p for p in tr.parameters() if not p.requires_grad]
    on_dev = sum(p.numel() * p.element_size() for p in frozen if p.device.type == dev.type)
    on_host = sum(p.numel() * p.element_size() for p in frozen if p.device.type != dev.type)
    per_param = 4 + 4 + (8 if config.optimizer == "adamw" else 2)  # fp32 param + grad + 2 moments (8-bit: 1 B each)
    return {"trainable_params": n_trainable, "frozen_params": sum(p.numel() for p in frozen),
            "gpu_weights_bytes": on_dev, "host_weights_bytes": on_host,
            "gpu_weights_gb": round(on_dev / 1e9, 3), "host_weights_gb": round(on_host / 1e9, 3),
            "estimated_weights_gb": round((on_dev + on_host) / 1e9, 3),
            "estimated_lora_and_optimizer_gb": round(n_trainable * per_param / 1e9, 4)}


def peak_memory(device: torch.device | None = None) -> dict:
    """Peak host RSS, and the peak CUDA allocation on ``device`` when it is a GPU, in GB."""
    out = {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)}
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        out["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    return out


# ----------------------------------------------------------------------------------------------- checkpoints
CHECKPOINT_NAME = "checkpoint.pt"


def _rng_path(ckpt: Path, rank: int) -> Path:
    return ckpt.with_name(f"rng_rank{rank}.pt")


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-write never leaves a broken checkpoint


def _save_checkpoint(path: Path, transformer, optimizer, step: int, history: list, config: TrainConfig) -> None:
    """LoRA weights, the optimiser's whole state (nested, as ``state_dict()`` gives it: bitsandbytes' 8-bit AdamW
    keeps a dict of quantisation state per parameter), step, history and config, in one atomic ``torch.save``."""
    _atomic_save({"lora": lora_state_dict(transformer), "optimizer": _to_cpu(optimizer.state_dict()), "step": step,
                  "history": history, "config": _json_config(config)}, path)


def _save_rng(ckpt: Path, gen: torch.Generator, rank: int, step: int) -> None:
    """Every rank saves its own sampling RNG: restoring rank 0's on all ranks would make them draw the same batch."""
    _atomic_save({"state": gen.get_state(), "step": step}, _rng_path(ckpt, rank))


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _load_checkpoint(path: Path, transformer, optimizer, gen: torch.Generator, rank: int, device
                     ) -> tuple[int, list]:
    from peft.utils import set_peft_model_state_dict

    ck = torch.load(path, map_location="cpu", weights_only=True)
    sd = {k: v.to(device) for k, v in ck["lora"].items()}
    set_peft_model_state_dict(getattr(transformer, "module", transformer), sd)
    optimizer.load_state_dict(ck["optimizer"])  # optimisers move their state to each parameter's device
    step = int(ck["step"])
    rp = _rng_path(path, rank)
    rng = torch.load(rp, map_location="cpu", weights_only=True) if rp.exists() else None
    if rng is not None and int(rng["step"]) == step:
        gen.set_state(rng["state"])
    else:  # e.g. resumed on more ranks than saved: a fresh, distinct stream per rank (and say so)
        warnings.warn(f"no RNG state of rank {rank} for step {step} in {path.parent}: reseeding this rank",
                      stacklevel=2)
        gen.manual_seed(_config_seed(ck) * 1000 + rank + 7919 * step)
    return step, list(ck["history"])


def _config_seed(ck: dict) -> int:
    return int(ck.get("config", {}).get("seed", 0))


# ----------------------------------------------------------------------------------------------- training
def _init_from(transformer, init) -> None:
    """Continue from an earlier LoRA (the official appearance stage continues the motion LoRA)."""
    from safetensors.torch import load_file

    if isinstance(init, LoraRun):
        sd = init.state_dict
    else:
        p = Path(init)
        read_lora_meta(p)
        from .lora import lora_weight_file

        raw = load_file(str(lora_weight_file(p)))
        sd = {k.removeprefix("transformer."): v for k, v in raw.items()}
    set_lora_state(transformer, sd)


def _build_optimizer(params, cfg: TrainConfig):
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise ImportError("optimizer='adamw8bit' needs bitsandbytes: pip install -e \".[gpu]\" (or pip install "
                          "bitsandbytes), or use optimizer='adamw'") from e
    return bnb.optim.AdamW8bit(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def effective_preset(cfg: TrainConfig):
    """The memory preset this config trains under: its tier (``memory_preset``, default 24GB) with the config's own
    options in place of the preset's (``wan_config("24GB", offload_checkpoints=False)`` keeps 8 GB of checkpointed
    inputs on the GPU, so the planner must count them when it picks the swap count)."""
    return replace(MEMORY_PRESETS[cfg.memory_preset or "24GB"], fp8_base=cfg.fp8_base,
                   gradient_checkpointing=cfg.gradient_checkpointing, optimizer=cfg.optimizer,
                   offload_checkpoints=cfg.offload_checkpoints, release_text_encoder=cfg.release_text_encoder,
                   train_blocks_to_swap=cfg.blocks_to_swap)


def resolve_swap(backbone, cfg: TrainConfig, frames: int, height: int, width: int) -> int:
    """``blocks_to_swap`` as a number: ``"auto"`` asks the planner for the fewest blocks that fit the tier at this
    clip size with the config's own options (no swapping on a CPU or a tiny backbone, where there is no GPU memory
    to save)."""
    if cfg.blocks_to_swap != "auto":
        return int(cfg.blocks_to_swap)
    if backbone.is_tiny or backbone.device.type != "cuda":
        return 0
    from .planner import plan

    p = plan(dict(backbone.transformer.config), frames, height, width, effective_preset(cfg), rank=cfg.rank,
             batch_size=cfg.batch_size)
    return p.train_blocks_to_swap


def _print_plan(backbone, cfg: TrainConfig, frames: int, height: int, width: int) -> None:
    """The planner's figures for this run, printed when a real-size run starts (the same as ``plan`` prints)."""
    if backbone.is_tiny or cfg.memory_preset is None:
        return
    try:
        from .planner import plan

        p = plan(dict(backbone.transformer.config), frames, height, width, effective_preset(cfg), rank=cfg.rank,
                 batch_size=cfg.batch_size)
    except (ImportError, ValueError) as e:
        print(f"(no memory plan for this backbone: {e})")
        return
    print(p.table())


def expert_view(backbone, expert: str | None):
    """``(backbone, (t_lo, t_hi))`` to train for ``expert``: a two-expert backbone (Wan2.2-I2V-A14B) seen as the
    one expert (``transformer`` = it, sharing every other component and the prompt cache) and the flow-time range
    it denoises — ``"high"``: ``t >= boundary_ratio``, ``"low"``: below. One-expert backbones: unchanged, (0, 1)."""
    if backbone.transformer_2 is None:
        if expert is not None:
            raise ValueError(f"expert={expert!r} is for two-expert backbones (Wan2.2-I2V-A14B); {backbone.name} has "
                             "one transformer: leave expert=None")
        return backbone, (0.0, 1.0)
    if expert is None:
        raise ValueError(f"{backbone.name} has two experts (high noise: t >= {backbone.boundary_ratio}, low noise: "
                         "below): pick one with expert='high' or 'low', or train both (train_lora does with "
                         "expert=None); the high-noise expert is where layout and motion form, so it must learn "
                         "LoRA-Edit's mask too")
    return backbone.expert(expert), backbone.expert_range(expert)


def train_experts(backbone, samples: Sequence[Sample | CachedSample], config: TrainConfig | None = None,
                  experts: Sequence[str] = ("high", "low"), **kw) -> LoraRun:
    """Wan2.2-I2V-A14B: one LoRA per expert, each trained for ``config.steps`` on samples whose timestep falls in
    its own range, one after the other (only one 14B expert needs the GPU at a time); :func:`train_lora` does this
    for a two-expert backbone when ``config.expert`` is None. ``kw`` as :func:`train_lora`; an ``output_dir`` gets
    one sub-folder per expert (each resumable) and the pair in ``output_dir/lora``. Returns one :class:`LoraRun`
    whose ``experts`` holds the run of each; its ``history`` runs on through both (entries say which expert)."""
    cfg = config or default_config(backbone)
    out = kw.pop("output_dir", None)
    init = kw.pop("init_lora", None)
    user_cb = kw.pop("callback", None)
    runs, history, seconds = {}, [], 0.0
    for i, e in enumerate(experts):
        part = None if init is None else (init.experts or {}).get(e) if isinstance(init, LoraRun) else Path(init) / e
        # callbacks see one run: steps go on through both experts, previews use the whole two-expert backbone
        cb = None if user_cb is None else (lambda step, loss, _, off=i * cfg.steps: user_cb(off + step, loss, backbone))
        run = train_lora(backbone, samples, replace(cfg, expert=e), init_lora=part, callback=cb,
                         output_dir=None if out is None else Path(out) / e, **kw)
        history += [{**h, "step": h["step"] + i * cfg.steps, "expert": e} for h in run.history]
        runs[e], seconds = run, seconds + run.seconds
        if backbone.device.type != "cpu":  # the next expert gets the GPU to itself
            to_host(backbone.expert(e).transformer)
    pair = LoraRun({}, replace(cfg, expert=None), history, seconds=seconds, experts=runs,
                   memory={e: r.memory for e, r in runs.items()})
    if out is not None:
        pair.save(Path(out) / "lora", backbone)
    return pair


def train_lora(backbone, samples: Sequence[Sample | CachedSample], config: TrainConfig | None = None, *,
               output_dir: str | os.PathLike | None = None, init_lora: LoraRun | str | os.PathLike | None = None,
               callback: Callable[[int, float, object], None] | None = None, callback_every: int = 0,
               progress: bool = True, stop_after: int | None = None) -> LoraRun:
    """Fine-tune a LoRA on LoRA-Edit samples. Returns a :class:`LoraRun`; the LoRA stays attached and active on
    ``backbone.transformer`` (adapter ``"default"``) so that inference right after uses it.

    ``samples``: from :func:`~loraedit_nb.regimes.motion_sample` / ``appearance_samples`` / ``naive_sample``, or
    already encoded :class:`CachedSample` (the benchmark does that); with both regimes present each step draws an
    appearance batch with probability ``config.appearance_ratio`` (default: the official mix, edited frames repeated
    ``appearance_repeats`` times beside each video sample).
    ``output_dir``: checkpoints go there every ``checkpoint_every`` steps and the final LoRA to
    ``output_dir/lora``; an existing checkpoint there is resumed. ``init_lora``: continue from an earlier LoRA.
    ``callback(step, loss, backbone)`` runs every ``callback_every`` steps (notebook previews).
    ``stop_after``: stop (after checkpointing) at this step, as an interruption would (used by tests).

    Stages on a real backbone (weights on the CPU, ``backbone.device`` = the GPU): the encoders come to the GPU one
    at a time for caching; then the transformer, fp8-cast on the CPU first if ``fp8_base``, goes to the GPU with
    ``blocks_to_swap`` of its blocks left in pinned host memory (:class:`~loraedit_nb.memory.BlockSwapper`); LoRA
    parameters are fp32 and stay on the GPU; steps run under bf16 autocast with peft's fp32 input upcast off.
    """
    cfg = config or default_config(backbone)
    if backbone.transformer_2 is not None and cfg.expert is None:  # Wan2.2-I2V-A14B: both experts, in turn
        return train_experts(backbone, samples, cfg, output_dir=output_dir, init_lora=init_lora, callback=callback,
                             callback_every=callback_every, progress=progress, stop_after=stop_after)
    session = _set_up(backbone, samples, cfg, output_dir, init_lora, progress)
    interrupted = _step_loop(session, callback, callback_every, progress, stop_after)
    return _finish(session, interrupted)


# The three parts of a run, each readable alone: _set_up (check, cache, place, LoRA, optimiser, resume) ->
# _step_loop (draw a batch, one step, log, checkpoint) -> _finish (unwrap, save).
@dataclass
class _Session:
    """Everything a training run's step loop reads and updates."""

    backbone: object  # the backbone as trained (a two-expert backbone's expert view)
    cfg: TrainConfig
    accelerator: object
    dev: torch.device
    transformer: torch.nn.Module
    model: torch.nn.Module  # the transformer, DDP-wrapped with several processes
    optimizer: object
    params: list
    video_pool: list[CachedSample]
    app_pool: list[CachedSample]
    ratio: float  # P(an appearance batch)
    t_range: tuple[float, float]  # flow times this run learns (an expert: its own)
    compute: torch.dtype | None  # autocast dtype (bf16 for a real model), None for fp32
    gen: torch.Generator
    swapper: object
    n_swap: int
    ckpt: Path | None
    out_dir: Path | None
    t_start: float
    step: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def _set_up(backbone, samples, cfg: TrainConfig, output_dir, init_lora, progress: bool) -> _Session:
    """Check the inputs, encode the samples once, place the transformer for the tier with a fresh seeded LoRA, build
    the optimiser and resume from ``output_dir``'s checkpoint if there is one."""
    from accelerate import Accelerator, DistributedType

    backbone, t_range = expert_view(backbone, cfg.expert)
    if cfg.targets is None:  # the family's LoRA targets, recorded in the run's config and the saved LoRA
        cfg = replace(cfg, targets=backbone.adapter.lora_targets)
    _check_run(backbone, samples, cfg)
    t_start = time.time()
    dev = backbone.device
    accelerator = Accelerator(cpu=dev.type == "cpu")
    if accelerator.distributed_type == DistributedType.FSDP:
        raise RuntimeError("FSDP is not supported: the frozen base and the fp32 LoRA cannot be flattened together. "
                           "Use DDP (accelerate launch --multi_gpu), or one GPU with memory_preset='24GB' "
                           "(fp8 + block swapping)")
    if dev.type == "cuda":  # this rank's device (accelerate pins each rank to its local GPU)
        dev = accelerator.device
        backbone.execution_device = dev
    main = accelerator.is_main_process
    video_pool, app_pool, ratio = _pools(backbone, samples, cfg, progress and main)
    frames, height, width = _clip_size(backbone, (video_pool or app_pool)[0])
    if main and progress:
        _print_plan(backbone, cfg, frames, height, width)
    n_swap = resolve_swap(backbone, cfg, frames, height, width)
    if n_swap and accelerator.num_processes > 1:
        raise RuntimeError("block swapping is single-GPU only (DDP cannot wrap weights that live on the CPU): "
                           "use blocks_to_swap=0 with several GPUs, or one GPU")
    tr = backbone.transformer
    n_trainable, swapper = _place_with_lora(tr, cfg, init_lora, n_swap, dev)
    params = [p for p in tr.parameters() if p.requires_grad]
    optimizer = _build_optimizer(params, cfg)
    model = tr
    if accelerator.num_processes > 1:  # DDP over samples; one process keeps the model (prepare would move blocks)
        model, optimizer = accelerator.prepare(tr, optimizer)
    out_dir = Path(output_dir) if output_dir is not None else None
    s = _Session(backbone, cfg, accelerator, dev, tr, model, optimizer, params, video_pool, app_pool, ratio, t_range,
                 tr.dtype if tr.dtype in (torch.bfloat16, torch.float16) else None,
                 torch.Generator().manual_seed(cfg.seed * 1000 + accelerator.process_index), swapper, n_swap,
                 out_dir / CHECKPOINT_NAME if out_dir is not None else None, out_dir, t_start)
    if s.ckpt is not None and s.ckpt.exists():
        s.step, s.history = _load_checkpoint(s.ckpt, model, optimizer, s.gen, accelerator.process_index, dev)
        if main and progress:
            print(f"resuming from {s.ckpt} at step {s.step}/{cfg.steps}")
    if main and progress:
        mem = memory_report(backbone, n_trainable, cfg)
        print(f"LoRA rank {cfg.rank}: {n_trainable:,} trainable / {mem['frozen_params']:,} frozen parameters; "
              f"{mem['gpu_weights_gb']} GB base weights on {dev}, {mem['host_weights_gb']} GB swapped in from host "
              f"({n_swap} blocks); ~{mem['estimated_lora_and_optimizer_gb']} GB LoRA/optimiser; "
              f"{len(video_pool)} video + {len(app_pool)} appearance cached samples, P(appearance)={ratio:.2f}")
    return s


def _check_run(backbone, samples, cfg: TrainConfig) -> None:
    """Refuse what would fail hours later (no samples, a clip size the backbone cannot run); warn about fp8 without
    checkpointing."""
    if not samples:
        raise ValueError("no training samples: build some with motion_sample / appearance_samples")
    sizes = [s.target.shape[:3] for s in samples if hasattr(s, "target")]  # (T, H, W) of raw samples
    if sizes:  # a size the backbone cannot run fails here, not after hours; beyond its training it warns
        backbone.check_clip_size(*max(sizes))
    if cfg.fp8_base and not cfg.gradient_checkpointing:
        warnings.warn("fp8_base without gradient checkpointing saves little: autograd keeps the bf16 compute copy "
                      "of every weight until backward. Keep gradient_checkpointing=True.", stacklevel=4)


def _pools(backbone, samples, cfg: TrainConfig, progress: bool) -> tuple[list, list, float]:
    """(video samples, appearance samples, P(appearance batch)), encoded once (:func:`cache_samples`); the text
    encoder is released after when the config says so."""
    cached = [s for s in samples if isinstance(s, CachedSample)]
    raw = [s for s in samples if not isinstance(s, CachedSample)]
    if raw:
        cached += cache_samples(backbone, raw, cfg, progress=progress)
    if cfg.release_text_encoder and backbone.release_text_encoder() and progress:
        print("text encoder released after caching the prompts (reloaded from disk if a new prompt comes)")
    video_pool = [c for c in cached if c.regime == "motion"] + [c for c in cached if c.regime == "naive"]
    app_pool = [c for c in cached if c.regime == "appearance"]
    if app_pool and video_pool:
        ratio = cfg.appearance_ratio
        if ratio is None:  # official mix: each edited frame repeated x9 beside one video sample per clip
            n_video = sum(1 for s in samples if s.regime in ("motion", "naive"))
            n_app = len(app_pool) * cfg.appearance_repeats
            ratio = n_app / (n_app + n_video)
    else:
        ratio = 1.0 if app_pool else 0.0
    return video_pool, app_pool, ratio


def _clip_size(backbone, sample: CachedSample) -> tuple[int, int, int]:
    """(frames, height, width) in pixels of a cached sample, from its latent shape and the VAE's geometry."""
    z = sample.latents.shape
    geo = backbone.geometry if backbone.vae is not None else None
    t, sp = (geo.temporal, geo.spatial) if geo else (4, 8)
    return (z[2] - 1) * t + 1, z[3] * sp, z[4] * sp


def _place_with_lora(tr, cfg: TrainConfig, init_lora, n_swap: int, dev) -> tuple[int, object]:
    """A fresh seeded fp32 LoRA on the transformer (fp8 base cast on the CPU first), optionally continued from
    ``init_lora``, then the transformer on ``dev`` with ``n_swap`` blocks swapped. Returns (trainable parameters,
    the swapper or None)."""
    from .memory import apply_fp8, enable_block_swap, fix_lora_dtype

    if getattr(tr, "peft_config", None):
        tr.delete_adapters(list(tr.peft_config))  # a fresh LoRA per run; continuing is explicit (init_lora)
    if cfg.fp8_base:
        apply_fp8(tr)  # on the CPU for a real backbone: the transformer reaches the GPU already in fp8
    with torch.random.fork_rng(devices=[]):  # seeded LoRA init (A is random): runs are reproducible
        torch.manual_seed(cfg.seed)
        n_trainable = add_lora(tr, rank=cfg.rank, alpha=cfg.alpha, targets=cfg.targets)
        fix_lora_dtype(tr, torch.float32, reinit=cfg.fp8_base)  # peft made the LoRA float8 on an fp8 base
    if init_lora is not None:
        _init_from(tr, init_lora)
    if cfg.gradient_checkpointing:
        tr.enable_gradient_checkpointing()
    swapper = enable_block_swap(tr, n_swap, dev)  # n_swap = 0: the whole transformer goes to the device
    fix_lora_dtype(tr, torch.float32, device=dev)
    tr.train()
    return n_trainable, swapper


def _draw_batch(s: _Session) -> tuple[str, tuple]:
    """("video" | "appearance", the step's tensors on the device): a batch drawn from one regime's pool, its
    timesteps (within the run's flow-time range), noise and the dual-role region weights."""
    cfg, dev = s.cfg, s.dev
    use_app = bool(s.app_pool) and (not s.video_pool or torch.rand(1, generator=s.gen).item() < s.ratio)
    pool = s.app_pool if use_app else s.video_pool
    idx = torch.randint(len(pool), (cfg.batch_size,), generator=s.gen).tolist()
    z0 = torch.cat([pool[i].latents for i in idx]).to(dev)
    cond = torch.cat([pool[i].condition for i in idx]).to(dev)
    context = collate_context([pool[i].context for i in idx], dev)
    t = sample_timesteps(cfg.batch_size, scheme=cfg.timesteps, shift=cfg.shift, generator=s.gen)
    t = s.t_range[0] + (s.t_range[1] - s.t_range[0]) * t  # an expert learns only its own timesteps
    noise = torch.randn(z0.shape, generator=s.gen).to(dev)
    weight = region_weights(cond, w_generate=cfg.w_generate, w_keep=cfg.w_keep, adapter=s.backbone.adapter)
    return ("appearance" if use_app else "video"), (z0, cond, context, t.to(dev), noise, weight)


def _optimizer_step(s: _Session, batch: tuple) -> float:
    """Forward, backward, clip, step; returns the loss."""
    cfg = s.cfg
    with step_precision(s.transformer, s.compute):  # forward and backward: the checkpoint recompute is in backward
        loss = training_step_loss(s.model, *batch, s.compute,
                                  offload_checkpoints=cfg.offload_checkpoints and cfg.gradient_checkpointing)
        s.accelerator.backward(loss)
    if cfg.grad_clip:
        s.accelerator.clip_grad_norm_(s.params, cfg.grad_clip)
    s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _step_loop(s: _Session, callback, callback_every: int, progress: bool, stop_after: int | None) -> bool:
    """Steps until ``cfg.steps`` (or ``stop_after``: then True, as an interruption), logging, calling back and
    checkpointing as configured."""
    from tqdm.auto import tqdm

    from .memory import quiet_checkpoint_warning

    cfg, dev = s.cfg, s.dev
    quiet_checkpoint_warning()
    bar = tqdm(total=cfg.steps, initial=s.step, desc="LoRA training", disable=not progress or not s.main)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        while s.step < cfg.steps:
            t_step = time.perf_counter()
            regime, batch = _draw_batch(s)
            loss = _optimizer_step(s, batch)
            s.step += 1
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            s.history.append({"step": s.step, "loss": loss, "regime": regime,
                              "seconds": round(time.perf_counter() - t_step, 4)})
            bar.update(1)
            if s.step % max(1, cfg.log_every) == 0 or s.step == cfg.steps:
                bar.set_postfix(loss=f"{np.mean([h['loss'] for h in s.history[-cfg.log_every:]]):.4f}")
            if s.step == 1 and s.main and progress:
                bar.write(f"memory after the first step: {peak_memory(dev)}")
            if callback is not None and callback_every and s.step % callback_every == 0:
                callback(s.step, loss, s.backbone)
            stop = stop_after is not None and s.step >= stop_after
            if s.ckpt is not None and ((cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0)
                                       or s.step == cfg.steps or stop):
                s.ckpt.parent.mkdir(parents=True, exist_ok=True)
                _save_rng(s.ckpt, s.gen, s.accelerator.process_index, s.step)
                if s.main:
                    _save_checkpoint(s.ckpt, s.model, s.optimizer, s.step, s.history, cfg)
            if stop:
                return True
        return False
    finally:
        bar.close()


def _finish(s: _Session, interrupted: bool) -> LoraRun:
    """The LoRA as a :class:`LoraRun` (memory figures included), saved to ``output_dir/lora`` unless interrupted;
    the transformer left in eval mode with the LoRA attached, pinned buffers handed back."""
    from .memory import release_pinned_cache

    s.accelerator.wait_for_everyone()
    tr = s.accelerator.unwrap_model(s.model) if s.model is not s.transformer else s.transformer
    tr.eval()
    if s.cfg.gradient_checkpointing:
        tr.disable_gradient_checkpointing()
    release_pinned_cache()  # save_on_cpu's pinned checkpoint buffers stay cached by torch otherwise (~8 GB)
    run = LoraRun(lora_state_dict(tr), s.cfg, s.history, seconds=time.time() - s.t_start)
    run.memory = {**peak_memory(s.dev), "blocks_to_swap": s.n_swap, **(s.swapper.summary() if s.swapper else {})}
    if s.out_dir is not None and s.main and not interrupted:
        run.save(s.out_dir / "lora", s.backbone)
        (s.out_dir / "history.json").write_text(json.dumps(s.history))
    return run


@contextlib.contextmanager
def step_precision(transformer, compute_dtype: torch.dtype | None) -> Iterator[None]:
    """What a whole training step (forward *and* backward) runs under when it computes in ``compute_dtype``:

    * peft's fp32 input cast stays off in backward too. With gradient checkpointing each block's forward runs again
      inside backward, and with the cast back on every adapted input is cast to fp32 and saved as a second bf16 copy
      (same values, same gradients): ~108 kB per video token on Wan 14B, 2.2 GB at 49 frames;
    * the model's ``_keep_in_fp32_modules`` that hold Linears (Wan's time embedder) compute in fp32 with autocast
      off, as they do at inference, where no autocast runs; under bf16 autocast they would compute in bf16.

    A no-op for fp32 training (the toy backbone)."""
    if compute_dtype is None:
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    model = getattr(transformer, "module", transformer)
    handles = _fp32_modules_without_autocast(model)
    try:
        with disable_input_dtype_casting(model):
            yield
    finally:
        for h in handles:
            h.remove()


def _fp32_modules_without_autocast(model) -> list:
    """Hooks that switch autocast off around each ``_keep_in_fp32_modules`` submodule holding a Linear."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    handles, done = [], []
    for name, mod in model.named_modules():
        if not (keep & set(name.split("."))) or any(name.startswith(d + ".") for d in done):
            continue
        if not any(isinstance(m, torch.nn.Linear) for m in mod.modules()):
            continue
        done.append(name)
        was: list[tuple[str, bool]] = []

        def pre(m, args, was=was):
            dev = next(m.parameters()).device.type
            was.append((dev, torch.is_autocast_enabled(dev)))
            torch.set_autocast_enabled(dev, False)

        def post(m, args, out, was=was):
            dev, on = was.pop()
            torch.set_autocast_enabled(dev, on)
        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    return handles


def training_step_loss(transformer, z0, cond, context, t, noise, weight, compute_dtype: torch.dtype | None, *,
                       offload_checkpoints: bool = False):
    """One step's loss as training computes it: under ``compute_dtype`` autocast (bf16 for a real backbone) with
    peft's input upcast off, so the fp32 LoRA's matmuls run in bf16 and autograd saves no fp32 copy of every adapted
    activation (+48 % saved memory otherwise); plain fp32 for the toy. ``scripts/measure_activations.py`` calls this
    too. Run the backward inside :func:`step_precision`, as :func:`train_lora` does, or the checkpoint recompute
    casts again.

    ``offload_checkpoints``: the forward runs under ``torch.autograd.graph.save_on_cpu``. With gradient
    checkpointing the only tensors it saves are each block's inputs (the blocks' own activations are recomputed in
    backward, outside this context, and stay on the GPU), so this moves exactly the checkpointed inputs — 40 x
    tokens x 5120 x 2 bytes, 8.1 GB at 49 frames for Wan 14B — to pinned host memory and back in backward (about
    0.7 s of PCIe traffic per step against ~30 s of compute on a 24 GB card)."""
    from peft.helpers import disable_input_dtype_casting

    ctx = contextlib.ExitStack()
    if offload_checkpoints:
        ctx.enter_context(torch.autograd.graph.save_on_cpu(pin_memory=z0.device.type == "cuda"))
    if compute_dtype is not None:
        ctx.enter_context(torch.autocast(z0.device.type, dtype=compute_dtype))
        ctx.enter_context(disable_input_dtype_casting(getattr(transformer, "module", transformer)))
    with ctx:
        return flow_matching_loss(transformer, z0, cond, context, t, noise, weight)


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
