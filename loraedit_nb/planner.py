"""Predicted peak GPU memory per stage (caching, training, editing) and host RAM, from shipped configs, no download.

``python -m loraedit_nb plan --backbone Wan-AI/Wan2.1-I2V-14B-480P-Diffusers --frames 49 --memory-preset 24GB``;
training calls :func:`plan` with ``dict(transformer.config)`` to turn ``blocks_to_swap="auto"`` into a number.

Where the figures come from (each constant below says which):

* **parameters** — every model is built on the meta device from its published config in ``configs/`` and counted;
  what fp8 stores in fp8 is diffusers' own rule (``enable_layerwise_casting`` run on that meta model, after the
  ``_keep_in_fp32_modules`` of ``from_pretrained(torch_dtype=bf16)``), LoRA sizes follow peft's matching of the
  family's targets. Cached per config.
* **activations** — measured on the CPU at real width by ``scripts/measure_activations.py`` (training step of one
  block with LoRA r16, autocast bf16, gradient checkpointing; inference forward; VAE encode/decode at full channel
  width) and extrapolated over the token count / pixel area as upper envelopes of per-op linear live-byte lines.
  Attention is flash / memory-efficient (no n x n matrix) on the GPU as it was on the CPU.
* **stage semantics** — what :mod:`loraedit_nb.memory`, :func:`loraedit_nb.training.cache_samples` and
  :func:`loraedit_nb.inference.prepare_for_editing` do (one encoder on the GPU at a time while caching; no encoder
  during training; block swapping keeps two swapped blocks on the GPU; editing offload per preset).

Not modelled: CUDA kernel workspaces inside one op (cuDNN/cuBLAS; covered by the margin), allocator fragmentation
beyond the margin, other processes on the card. GB = 1e9 bytes (as :data:`loraedit_nb.memory.GB`); a "24 GB" card
has 24 GiB = 25.8 GB, which is extra slack on top of :data:`USABLE_FRACTION`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .backbones.hunyuan import HUNYUAN_TARGETS
from .backbones.wan import WAN_TARGETS
from .memory import GB, MEMORY_PRESETS, PINNED_ROUND_THRESHOLD_MB, MemoryPreset

CONFIG_DIR = Path(__file__).parent / "configs"
USABLE_FRACTION = 0.92  # a stage fits when its peak <= tier_gb * this
MARGIN_FIXED_GB = 1.5  # CUDA context, cuBLAS/cuDNN workspaces, caching-allocator fragmentation ...
MARGIN_FRACTION = 0.10  # ... plus 10 % of the stage's tensors
HOST_BASELINE_GB = 3.0  # the process itself: Python, torch + CUDA libraries
OPTIMIZER_BYTES = {"adamw": 8, "adamw8bit": 2}  # per LoRA parameter (2 moments fp32 / uint8); + fp32 param + grad

# ----------------------------------------------------------------------------------------------- measured figures
# scripts/measure_activations.py on the CPU (torch 2.13.0, diffusers 0.42.1, peft 0.21.2): infer_*, keep, saved and
# the VAE figures measured 2026-12-01 (313 s on 2 cores); train_* re-measured 2026-12-03 with the backward inside
# training.step_precision, as train_lora now runs it (Wan 499 s, Hunyuan 781 s + its fp8 rows, 1 thread).
# Envelopes: (fixed bytes, bytes per video token) pairs; the peak at n video tokens is max(fixed + per_token * n).
# Real widths (Wan2.1-14B d 5120 / ffn 13824; HunyuanVideo-13B d 3072, one dual- + one single-stream block), real
# context (Wan 512 text + 257 image tokens; Hunyuan 544 text tokens), batch 1.
#  train_*: peak of one training step of the 1-layer model above its weights: one block's recompute + backward (its
#           saved activations, gradients, temporaries; under fp8 the bf16 compute copies of its weights) + head,
#           embeddings, loss, one checkpointed input and that layer's LoRA grads. LoRA r16 fp32 (add_lora), forward
#           under autocast(bf16), forward and backward inside peft's disable_input_dtype_casting (with the cast back
#           on in the checkpoint recompute, as before, Wan took 508.7 kB/token: each adapted input cast to fp32 and
#           saved again), gradient checkpointing on. Checked at 384 tokens: predicted = measured within 10 kB. The
#           peak is at the end of the block's checkpoint recompute (all it saves + the forward's live locals + the
#           output's gradient): Wan 405.2 kB/token. fp8 rows: layerwise casting with a copy in place of the
#           float8 cast (same hooks, same bf16 copies; CPU float8 casts are slow): at 256 tokens the emulation and a
#           real float8 run both give 777.04 MB (Wan).
#  infer_*: peak of a no-grad forward (bf16, LoRA bf16 as loaded for editing) above weights and inputs.
#  keep: what each further checkpointed block holds (its inputs) — measured 10.2 kB/token Wan (= d * 2), 6.15
#        kB/token + 3.5 MB Hunyuan (= d * 2 per video and per text token): the analytic d * 2 is used.
#  saved: autograd's saved tensors of one block (used only without checkpointing): Wan 292.6 kB/token + 37.8 MB,
#         Hunyuan dual 136.7 kB/token + 77 MB (incl. the 544 text tokens), single 136.6 kB/token + 75 MB.
ACTIVATIONS = {
    "wan": {
        "train_bf16": ((81_577_504, 206_161.0), (38_622_960, 405_243.1)),
        "train_fp8": ((636_910_672, 333_537.1), (636_335_648, 405_253.5)),
        "infer_bf16": ((57_517_472, 53_012.2), (26_058_016, 114_455.0), (15_571_664, 125_713.8)),
        "infer_fp8": ((157_158_992, 70_432.2), (157_141_936, 80_671.5), (15_569_264, 125_727.9)),
        "saved_block_per_token": 292_612.0,
    },
    "hunyuan": {
        "train_bf16": ((119_872_992, 216_465.1),),
        "train_fp8": ((554_732_960, 148_956.5), (544_382_496, 167_396.9), (339_203_008, 204_225.8),
                      (251_986_128, 216_480.8)),
        "infer_bf16": ((61_332_032, 106_246.0), (41_279_648, 112_389.9)),
        "infer_fp8": ((149_028_496, 93_968.1), (41_276_000, 112_402.6)),
        "saved_block_per_token": 136_682.0,
    },
}
REFERENCE_WIDTH = {"wan": 5120, "hunyuan": 3072}  # the d the figures were measured at (others: scaled by d)
# VAE, fp32, no grad, full channel widths (Wan at 128x224 and 192x336, Hunyuan at 48x80 and 64x112); envelopes
# over the pixel area H*W: (fixed bytes, bytes per pixel). Wan: a first frame + one 4-frame causal chunk (its memory
# does not grow with T); Hunyuan: one 17-frame temporal tile (encode) / 5-latent-frame tile (decode), diffusers'
# framewise defaults. At 480x832: Wan encode 4.8 GB, decode 7.3 GB; Hunyuan encode 17.9 GB, decode 31.6 GB.
VAE_ACTIVATIONS = {
    "wan": {"encode": ((1_002_214, 10_560.9), (1_000_368, 10_944.9), (994_070, 11_713.1), (990_499, 12_097.2)),
            "decode": ((1_012_080, 17_175.1), (1_008_586, 17_943.2), (1_006_448, 18_327.2))},
    "hunyuan": {"encode": ((1_495_328, 20_376.5), (1_438_569, 44_829.6)),
                "decode": ((2_927_890, 79_158.3),)},
}
VAE_TILE_PX = 256 * 256  # diffusers' Wan / Hunyuan tiling: 256 px tiles, stride 192


def envelope(env, n: float) -> float:
    """Bytes at size ``n`` of a measured envelope (pairs of fixed, per-unit)."""
    return max(f + s * n for f, s in env)


# ----------------------------------------------------------------------------------------------- families
@dataclass(frozen=True)
class Family:
    """One backbone family: its component configs (``configs/*.json``), load dtypes and sequence lengths."""

    name: str  # "wan" | "hunyuan"
    transformer: str
    text_encoder: str
    text_encoder_2: str | None
    image_encoder: str | None
    vae: str
    text_tokens: int  # tokens through the text encoder
    context_tokens: int  # context tokens the transformer attends to (text + image)
    text_releasable: bool  # the loader can re-create the text encoder (release_text_encoder frees it)
    guidance_passes: int  # transformer forwards per denoising step in editing (CFG: 2, run one after the other)
    latent_channels: int = 16
    condition_channels: int = 20  # Wan: 4 mask + 16; Hunyuan: 16 + 1; Wan2.2-TI2V: 48 + 1
    measured: str = ""  # whose measured activation figures apply (default: name); others are scaled by width
    vae_spatial: int = 8  # pixels per latent cell (Wan2.2-TI2V: 16)
    experts: int = 1  # transformers of this size (Wan2.2-I2V-A14B: 2, one on the GPU at a time)
    vae_scale: tuple[float, float] = (1.0, 1.0)  # (encode, decode) factor on the measured VAE figures (estimates)
    prompt_in_pipeline: bool = False  # editing encodes the prompt inside the pipeline call, beside the VAE (Hunyuan)
    #   rather than before it through the backbone's prompt cache (Wan)
    # load dtypes (bytes per parameter), as backbones/wan.py / hunyuan.py load them
    dtype_bytes: dict = field(default_factory=dict)


WAN = Family("wan", "wan2.1-i2v-14b.transformer", "umt5-xxl.encoder", None, "clip-vit-h-14.vision", "wan2.1.vae",
             text_tokens=512, context_tokens=512 + 257, text_releasable=True, guidance_passes=2,
             dtype_bytes={"text_encoder": 2, "image_encoder": 4, "vae": 4})
# Llava sees 256 text + 103 template tokens + the image's 576 (one <image> placeholder replaced); the transformer
# gets 256 text + 288 image tokens (every 2nd). hunyuan.load_hunyuan_hub sets no text_encoder_loader: not released.
HUNYUAN = Family("hunyuan", "hunyuanvideo-i2v-33ch.transformer", "llava-llama-3-8b.text_encoder",
                 "clip-vit-l-14.text", None, "hunyuanvideo.vae", text_tokens=256 + 103 + 575, context_tokens=544,
                 text_releasable=False, guidance_passes=1, condition_channels=17, prompt_in_pipeline=True,
                 dtype_bytes={"text_encoder": 2, "text_encoder_2": 2, "vae": 4})
# Wan2.2 (not measured on a GPU by this project): the Wan figures, scaled by width. A14B = Wan2.1-I2V-14B's
# transformer without CLIP, twice (the experts take turns on the GPU; host RAM holds both). TI2V-5B: 3072 wide,
# tokens of 32 px (x16 VAE), 48 latent channels; its VAE convolves at half resolution after 2x2 input patches with
# 160 (encoder) / 256 (decoder) base channels against Wan2.1's 96 at full resolution, so the Wan2.1 VAE encode
# figures are scaled by 160/96/4 — an estimate, said in every plan's notes. The decode's 256/96/4 was 2.2x too
# low: the full-size simulation (results/simulated_memory.json) counts 11.2 GB of untiled decode activations at
# 49 and at 81 frames x 480 x 832, which a factor of 1.45 on the Wan2.1 envelope reproduces within 2 %.
WAN22_A14B = Family("wan22-a14b", "wan2.2-i2v-a14b.transformer", "umt5-xxl.encoder", None, None, "wan2.1.vae",
                    text_tokens=512, context_tokens=512, text_releasable=True, guidance_passes=2, measured="wan",
                    experts=2, dtype_bytes={"text_encoder": 2, "vae": 4})
WAN22_TI2V = Family("wan22-ti2v", "wan2.2-ti2v-5b.transformer", "umt5-xxl.encoder", None, None, "wan2.2.vae",
                    text_tokens=512, context_tokens=512, text_releasable=True, guidance_passes=2,
                    latent_channels=48, condition_channels=49, measured="wan", vae_spatial=16,
                    vae_scale=(160 / 96 / 4, 1.45), dtype_bytes={"text_encoder": 2, "vae": 4})
BACKBONES = {
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": WAN, "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers": WAN,
    "wan2.1-i2v-14b": WAN, "hunyuan-i2v": HUNYUAN, "hunyuanvideo-community/HunyuanVideo-I2V-33ch": HUNYUAN,
    "Wan-AI/Wan2.2-I2V-A14B-Diffusers": WAN22_A14B, "wan22-i2v-a14b": WAN22_A14B,
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": WAN22_TI2V, "wan22-ti2v-5b": WAN22_TI2V,
}


def _m(fam: Family) -> str:
    return fam.measured or fam.name


def load_config(name: str) -> dict:
    """A shipped config file (``configs/<name>.json``): ``_class_name``, ``_library``, ``config`` ..."""
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


def _class(spec: dict):
    return getattr(importlib.import_module(spec["_library"]), spec["_class_name"])


def _meta_model(spec: dict):
    import torch

    cls = _class(spec)
    with torch.device("meta"):
        if "_config_class" in spec:
            return cls(getattr(importlib.import_module(spec["_library"]), spec["_config_class"])(**spec["config"]))
        return cls(**spec["config"])


@functools.cache
def component_params(name: str) -> int:
    """Parameter count of a shipped component (built on the meta device)."""
    return sum(p.numel() for p in _meta_model(load_config(name)).parameters())


@dataclass(frozen=True)
class TransformerStats:
    """Sizes of a transformer in bytes as stored: ``bf16`` = as loaded (``_keep_in_fp32_modules`` fp32, the rest
    bf16); ``fp8`` = after ``enable_layerwise_casting(float8_e4m3fn)``."""

    params: int
    fp8_params: int  # stored in fp8 under layerwise casting
    d: int  # hidden width
    block_bytes_bf16: tuple[int, ...]  # per block, in execution order (memory.transformer_blocks)
    block_bytes_fp8: tuple[int, ...]
    other_bytes_bf16: int  # embedders, norms, projection (never swapped)
    other_bytes_fp8: int
    lora_per_rank: int  # LoRA parameters per unit of rank (sum of in + out over the targeted Linears)

    @property
    def n_blocks(self) -> int:
        return len(self.block_bytes_bf16)

    def lora_params(self, rank: int) -> int:
        return rank * self.lora_per_rank


def _is_target(name: str, targets) -> bool:
    """peft's matching: a regex string must match the whole name; a list matches names equal or ending in '.x'."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


@functools.lru_cache(maxsize=16)
def _transformer_stats(key: str) -> TransformerStats:
    import torch

    spec = json.loads(key)
    model = _meta_model(spec)
    keep = model._keep_in_fp32_modules or []
    for name, p in model.named_parameters():  # from_pretrained(torch_dtype=bf16); the _keep_in_fp32_modules stay
        fp32 = any(k in name.split(".") for k in keep)  # fp32 (a name part matches: model_loading_utils.py)
        p.data = p.data.to(torch.float32 if fp32 else torch.bfloat16)
    from .memory import transformer_blocks

    blocks = transformer_blocks(model)

    def nbytes(mod) -> int:
        return sum(p.numel() * p.element_size() for p in mod.parameters())

    bf16 = [nbytes(b) for b in blocks]
    other_bf16 = nbytes(model) - sum(bf16)
    targets = _lora_targets(spec["config"])
    lora = sum(m.in_features + m.out_features for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and _is_target(name, targets))
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)  # diffusers' rule
    fp8 = [nbytes(b) for b in blocks]
    return TransformerStats(
        params=sum(p.numel() for p in model.parameters()),
        fp8_params=sum(p.numel() for p in model.parameters() if p.dtype == torch.float8_e4m3fn),
        d=spec["config"]["num_attention_heads"] * spec["config"]["attention_head_dim"],
        block_bytes_bf16=tuple(bf16), block_bytes_fp8=tuple(fp8), other_bytes_bf16=other_bf16,
        other_bytes_fp8=nbytes(model) - sum(fp8), lora_per_rank=lora)


def _lora_targets(cfg: dict):
    return HUNYUAN_TARGETS if "num_single_layers" in cfg else WAN_TARGETS


def transformer_stats(config: dict | str) -> TransformerStats:
    """:class:`TransformerStats` of a shipped transformer (its config's name), a spec like the shipped files
    (``_class_name``, ``_library``, ``config``) or a ``transformer.config`` dict."""
    spec = load_config(config) if isinstance(config, str) else config if "config" in config else resolve(config)[1]
    return _transformer_stats(json.dumps(spec, sort_keys=True, default=list))


def resolve(backbone: str | dict) -> tuple[Family, dict]:
    """(family, transformer spec) for a name or a ``transformer.config`` dict; ValueError for anything else."""
    if isinstance(backbone, dict):
        cfg = {k: v for k, v in backbone.items() if not k.startswith("_")}
        if "num_single_layers" in cfg:
            fam = HUNYUAN
        elif ("image_dim" in cfg or "added_kv_proj_dim" in cfg) and cfg.get("in_channels") == cfg.get("out_channels"):
            fam = WAN22_TI2V
        elif "image_dim" in cfg and cfg.get("image_dim") is None:
            fam = WAN22_A14B
        elif "image_dim" in cfg or "added_kv_proj_dim" in cfg:
            fam = WAN
        else:
            raise ValueError("a transformer config dict must be Wan's (has 'image_dim' / 'added_kv_proj_dim') or "
                             "HunyuanVideo's (has 'num_single_layers')")
        spec = load_config(fam.transformer)
        params = inspect.signature(_class(spec).__init__).parameters
        spec = {**spec, "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k in params}}
        return fam, spec
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}: the planner knows {sorted(BACKBONES)} or a transformer "
                         "config dict")
    fam = BACKBONES[backbone]
    return fam, load_config(fam.transformer)


# ----------------------------------------------------------------------------------------------- results
@dataclass
class StagePlan:
    """One stage's predicted peak GPU memory (GB) and its named contributions (GB, summing to the peak)."""

    peak_gpu_gb: float
    parts: dict[str, float]
    at: str = ""  # which component is on the GPU at the peak (stages that run one component at a time)


@dataclass
class Plan:
    """Predicted memory of a LoRA-Edit run: per stage peak GPU GB, host RAM GB, blocks swapped, and whether it fits
    the preset's tier (every stage's peak <= ``tier_gb * USABLE_FRACTION``)."""

    backbone: str
    frames: int
    height: int
    width: int
    preset: str
    tier_gb: float
    stages: dict[str, StagePlan]
    host_ram_gb: float
    host_parts: dict[str, float]
    train_blocks_to_swap: int
    edit_blocks_to_swap: int
    n_blocks: int
    fits: bool
    notes: list[str]
    video_tokens: int = 0
    host_moment: str = ""  # when host RAM peaks: "load" | "training" | "editing"
    edit_evicts: list[str] = field(default_factory=list)  # components an edit runs with the transformer moved out

    @property
    def usable_gb(self) -> float:
        return self.tier_gb * USABLE_FRACTION

    def to_json(self) -> dict:
        d = asdict(self)
        d["usable_gb"] = round(self.usable_gb, 2)
        d["stage_fits"] = {k: s.peak_gpu_gb <= self.usable_gb for k, s in self.stages.items()}
        return d

    def table(self) -> str:
        """Human-readable lines (the ``plan`` subcommand; train_lora prints them when a real-size run starts)."""
        fmt = lambda parts: ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if v >= 0.005)  # noqa: E731
        lines = [f"memory plan: {self.backbone} {self.frames}x{self.height}x{self.width} ({self.video_tokens} video "
                 f"tokens), preset {self.preset}: usable {self.usable_gb:.1f} of {self.tier_gb:g} GB",
                 f"  {'stage':<9} {'peak GB':>8}  fits"]
        for name, s in self.stages.items():
            ok = "yes" if s.peak_gpu_gb <= self.usable_gb else "NO"
            at = f"[{s.at}] " if s.at else ""
            lines.append(f"  {name:<9} {s.peak_gpu_gb:8.2f}  {ok:<4} {at}{fmt(s.parts)}")
        lines.append(f"  blocks swapped: training {self.train_blocks_to_swap}/{self.n_blocks}, editing "
                     f"{self.edit_blocks_to_swap}/{self.n_blocks}; editing moves the transformer out for: "
                     f"{', '.join(self.edit_evicts) or 'nothing'}")
        lines.append(f"  host RAM {self.host_ram_gb:.1f} GB at {self.host_moment} (per process: N GPUs under "
                     f"accelerate launch load N copies): {fmt(self.host_parts)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _stage(parts: dict[str, float], margin: bool = True) -> StagePlan:
    """Bytes -> GB, plus the margin (:data:`MARGIN_FIXED_GB` + :data:`MARGIN_FRACTION` of the tensors)."""
    gb = {k: v / GB for k, v in parts.items()}
    if margin:
        gb["margin"] = MARGIN_FIXED_GB + MARGIN_FRACTION * sum(gb.values())
    gb = {k: round(v, 3) for k, v in gb.items()}
    return StagePlan(round(sum(gb.values()), 2), gb)


# ----------------------------------------------------------------------------------------------- stage models
@dataclass(frozen=True)
class _Clip:
    frames: int
    height: int
    width: int
    latent_frames: int
    tokens: int

    @property
    def area(self) -> int:
        return self.height * self.width

    @property
    def latent_voxels(self) -> int:
        return self.latent_frames * (self.height // 8) * (self.width // 8)


def _clip(spec: dict, frames: int, height: int, width: int, spatial: int = 8) -> _Clip:
    if frames < 1 or (frames - 1) % 4:
        raise ValueError(f"frames must be 4k + 1 (the VAE's temporal stride), got {frames}")
    cfg = spec["config"]
    p = cfg.get("patch_size", (1, 2, 2))
    pt, ph, pw = (cfg.get("patch_size_t", 1), p, p) if isinstance(p, int) else tuple(p)
    px = spatial * max(ph, pw)  # pixels per token side
    if height % px or width % px or height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive multiples of {px} (one token), got {height}x{width}")
    lat = (frames - 1) // 4 + 1
    return _Clip(frames, height, width, lat, lat // pt * (height // spatial // ph) * (width // spatial // pw))


def _act(fam: Family, stats: TransformerStats, kind: str, n: int) -> float:
    """Measured activation bytes (``kind`` = train_bf16 / train_fp8 / infer_bf16 / infer_fp8) at ``n`` tokens,
    scaled by the width for a transformer that is not the measured one."""
    return envelope(ACTIVATIONS[_m(fam)][kind], n) * stats.d / REFERENCE_WIDTH[_m(fam)]


def _keep(fam: Family, stats: TransformerStats, n: int) -> float:
    """Bytes one checkpointed block keeps: its bf16 input(s), d * 2 per token (Hunyuan: video + text stream)."""
    return (n + (fam.context_tokens if fam.name == "hunyuan" else 0)) * stats.d * 2


def pinned_bytes(n: int) -> int:
    """Host bytes torch's pinned allocator takes for an ``n``-byte allocation as
    :func:`~loraedit_nb.memory.configure_pinned_memory` sets it up: a power of two up to the threshold, exact
    above (torch's default rounds every size: x1.5 on average). Swapped blocks are one allocation each."""
    return 1 << max(0, n - 1).bit_length() if n <= PINNED_ROUND_THRESHOLD_MB * 2**20 else n


def _offloaded_inputs(fam: Family, stats: TransformerStats, n: int) -> list[int]:
    """Bytes of each tensor ``save_on_cpu`` copies to pinned memory per checkpointed block: the hidden-state
    stream(s) (:func:`_keep`), the context (a copy per block, although on the GPU it is one shared tensor) and the
    time projection (6 x d, fp32; TI2V's expand_timesteps gives every token its own, 6 x d x n in bf16: 5.8 GB of
    pinned memory at 49 frames that the full-size simulation counted and this had left out)."""
    ctx = 0 if fam.name == "hunyuan" else fam.context_tokens * stats.d * 2  # Hunyuan's text stream is in _keep
    temb = 6 * stats.d * n * 2 if fam.name == "wan22-ti2v" else 6 * stats.d * 4
    return [int(_keep(fam, stats, n)), ctx, temb]


def _weights(stats: TransformerStats, fp8: bool, k: int) -> tuple[float, float]:
    """(resident weights, swap buffers) in bytes with the first ``k`` blocks swapped: two swapped blocks are on
    the GPU at a time (the one running + the one prefetched)."""
    blocks = stats.block_bytes_fp8 if fp8 else stats.block_bytes_bf16
    other = stats.other_bytes_fp8 if fp8 else stats.other_bytes_bf16
    return other + sum(blocks[k:]), sum(sorted(blocks[:k])[-2:])


def _context_bytes(fam: Family) -> float:
    """A sample's cached context on the GPU (fp32): Wan 512 x 4096 text + 257 x 1280 image; Hunyuan 544 x 4096."""
    if fam.name == "hunyuan":
        return (544 * 4096 + 768) * 4
    return (512 * 4096 + (257 * 1280 if fam.image_encoder else 0)) * 4


def training_stage(fam: Family, stats: TransformerStats, clip: _Clip, preset: MemoryPreset, k: int, rank: int,
                   batch_size: int) -> StagePlan:
    """Training: the transformer in storage form minus ``k`` swapped blocks (+ buffers), LoRA + grads + optimiser,
    checkpointed block inputs, one block's recompute + backward (measured), the batch's tensors, margin."""
    fp8 = preset.fp8_base
    weights, buffers = _weights(stats, fp8, k)
    n, B = clip.tokens, batch_size
    act = _act(fam, stats, "train_bf16", n)
    copies = _act(fam, stats, "train_fp8", n) - act if fp8 else 0.0  # bf16 copies of one block's fp8 weights
    if preset.gradient_checkpointing:
        ckpt = (stats.n_blocks - 1) * _keep(fam, stats, n)
    else:  # every block's saved activations at once (block swapping is refused then)
        ckpt, act = 0.0, act + (stats.n_blocks - 1) * ACTIVATIONS[_m(fam)]["saved_block_per_token"] * n
    if preset.gradient_checkpointing and preset.offload_checkpoints:
        ckpt = 0.0  # save_on_cpu: the inputs wait in pinned host memory (host_ram); the one in use is in `act`
    lat = clip.latent_voxels
    sample = B * (lat * (3 * fam.latent_channels + fam.condition_channels) * 4 + _context_bytes(fam))
    return _stage({"weights": weights, "swap_buffers": buffers,
                   "lora_optimizer": stats.lora_params(rank) * (8 + OPTIMIZER_BYTES[preset.optimizer]),
                   "checkpointed_inputs": B * ckpt, "block_activations": B * act, "fp8_compute_copies": copies,
                   "sample_tensors": sample})


def _encoder_bytes(fam: Family, which: str) -> tuple[float, float]:
    """(weights, activation peak) bytes of a text / image encoder at its sequence length. Activations are analytic
    and small next to the weights: per token a few hidden-size tensors + the FFN intermediate, eager attention
    scores (fp32), all hidden states kept (the pipelines read hidden_states[-2] / an inner layer), Llava's logits."""
    name = getattr(fam, which)
    if name is None:
        return 0.0, 0.0
    spec = load_config(name)["config"]
    b = fam.dtype_bytes[which]
    c = spec.get("text_config", spec)
    d = c.get("hidden_size", c.get("d_model"))
    f = c.get("intermediate_size", c.get("d_ff"))
    layers = c.get("num_hidden_layers", c.get("num_layers"))
    heads = c.get("num_attention_heads", c.get("num_heads"))
    t = {"text_encoder": fam.text_tokens, "text_encoder_2": 77, "image_encoder": 257}[which]
    logits = t * c["vocab_size"] * b if "text_config" in spec else 0  # Llava runs its LM head
    act = t * (6 * d + 3 * f) * b + heads * t * t * 4 * 2 + (layers + 1) * t * d * b + logits
    return component_params(name) * b, act


def _vae_bytes(fam: Family, clip: _Clip, op: str, tiling: bool) -> float:
    """Peak activation bytes of a VAE encode / decode of the clip (fp32): the measured envelope at the clip's area
    (one tile's with ``tiling``) + the parts that grow with T (the input video for encode; the output video being
    concatenated: twice for Wan, three times for Hunyuan's tile rows) + Hunyuan's causal attention mask (5 L^2
    bytes: bool + fp32, L = 5 latent frames x the latent tile's pixels), which peaks in the mid-block."""
    area = min(clip.area, VAE_TILE_PX) if tiling else clip.area
    video = clip.frames * 3 * clip.area * 4
    conv = envelope(VAE_ACTIVATIONS[_m(fam)][op], area) * fam.vae_scale[op == "decode"]
    if fam.name == "hunyuan":
        L = 5 * area // 64
        conv = max(conv, 5 * L * L)
    if op == "encode":
        return conv + video
    grow = (2 if _m(fam) == "wan" else 3) * video
    if tiling:  # every decoded tile is kept until they are blended: ~1.7x the video, then the blend and the cat
        grow = 4 * video + (2 * clip.frames * 3 * area * 4 if _m(fam) == "wan" else 0)
    return conv + grow


def caching_stage(fam: Family, clip: _Clip, vae_tiling: bool = False) -> StagePlan:
    """Caching (``cache_samples``): the VAE encodes target and condition (untiled, as the code does today), then
    the text encoder(s) (Hunyuan: Llava + CLIP-L together, with the image), then Wan's CLIP image encoder — one at a
    time."""
    vae_w = component_params(fam.vae) * 4
    cands = {"vae": {"vae_weights": vae_w, "vae_encode": _vae_bytes(fam, clip, "encode", vae_tiling)}}
    tw, ta = _encoder_bytes(fam, "text_encoder")
    t2w, t2a = _encoder_bytes(fam, "text_encoder_2")
    cands["text"] = {"text_encoder": tw + t2w, "encoder_activations": max(ta, t2a)}
    if fam.image_encoder:
        iw, ia = _encoder_bytes(fam, "image_encoder")
        cands["image"] = {"image_encoder": iw, "encoder_activations": ia}
    return _worst({k: _stage(v) for k, v in cands.items()})


def _worst(stages: dict[str, StagePlan]) -> StagePlan:
    """The largest of the sub-stages that run one after the other (one component on the GPU at a time)."""
    worst = max(stages, key=lambda k: stages[k].peak_gpu_gb)
    return StagePlan(stages[worst].peak_gpu_gb, stages[worst].parts, worst)


EVICTABLE = ("text_encoder", "text_encoder_2", "image_encoder", "vae")  # what an edit may run with the transformer out


def _editing_parts(fam: Family, stats: TransformerStats, clip: _Clip, preset: MemoryPreset, k: int, rank: int,
                   fp8: bool) -> tuple[dict, dict]:
    """(the denoising stage's parts, ``{component: (its parts alone, its parts beside the resident transformer)}``)
    in bytes, as ``prepare_for_editing`` places an offloading preset. The VAE stays on the GPU for the pipeline
    call (so its weights count beside what runs inside it); between transformer forwards one swapped block is
    pending (the wrap-around prefetch for the next step), during one two are (running + prefetched)."""
    weights, buffers = _weights(stats, fp8, k)
    pending = sum(sorted((stats.block_bytes_fp8 if fp8 else stats.block_bytes_bf16)[:k])[-1:])
    lat = clip.latent_voxels
    # latents, noise predictions (CFG: cond + uncond), scheduler state, the condition; prompt embeddings cond + uncond
    pipe = lat * (6 * fam.latent_channels + fam.condition_channels) * 4 + 2 * _context_bytes(fam)
    vae_w = component_params(fam.vae) * 4
    lora = stats.lora_params(rank) * 2
    tr = {"transformer": weights, "swap_buffers": buffers, "lora": lora,
          "transformer_activations": _act(fam, stats, "infer_fp8" if fp8 else "infer_bf16", clip.tokens),
          "pipeline_tensors": pipe, "vae_weights": vae_w}
    resident = {"transformer": weights, "swap_buffers": pending, "lora": lora, "pipeline_tensors": pipe}
    vae_act = max(_vae_bytes(fam, clip, op, preset.vae_tiling) for op in ("encode", "decode"))
    alone = {"vae": {"vae_weights": vae_w, "vae_activations": vae_act, "latents": lat * fam.latent_channels * 4}}
    for w in ("text_encoder", "text_encoder_2", "image_encoder"):
        wb, ab = _encoder_bytes(fam, w)
        if wb:  # the image encoder always runs inside the pipeline call, Hunyuan's text encoders too
            inside = w == "image_encoder" or fam.prompt_in_pipeline
            alone[w] = {w: wb, "encoder_activations": ab, **({"vae_weights": vae_w} if inside else {})}
    return tr, {c: (parts, {**resident, **parts}) for c, parts in alone.items()}


def editing_evictions(fam: Family, stats: TransformerStats, clip: _Clip, preset: MemoryPreset, k: int, rank: int,
                      fp8: bool | None = None) -> frozenset[str]:
    """The components an edit runs with the transformer's resident weights moved to the host: those whose stage
    beside them would not fit the tier (:data:`USABLE_FRACTION`). Nothing for ``edit_offload="none"``; on the big
    tiers the encoders fit beside the transformer and moving 33 GB out and back for each would only cost time.
    ``fp8``: the transformer's storage (default: the preset's)."""
    if preset.edit_offload == "none":
        return frozenset()
    fp8 = preset.edit_fp8 if fp8 is None else fp8
    _, comps = _editing_parts(fam, stats, clip, preset, k, rank, fp8)
    usable = preset.gpu_gb * USABLE_FRACTION
    return frozenset(c for c, (_, beside) in comps.items() if _stage(beside).peak_gpu_gb > usable)


def editing_stage(fam: Family, stats: TransformerStats, clip: _Clip, preset: MemoryPreset, k: int,
                  rank: int) -> StagePlan:
    """Editing as ``prepare_for_editing`` places it: ``none`` = everything resident, the stage running adds its
    activations; ``model`` = the transformer on the GPU, each encoder and the VAE brought beside it, or run with the
    transformer moved out where they do not fit beside it (:func:`editing_evictions`); ``blocks`` = ``model`` +
    ``k`` blocks swapped."""
    fp8 = preset.edit_fp8
    tr, comps = _editing_parts(fam, stats, clip, preset, k, rank, fp8)
    if preset.edit_offload == "none":  # every component resident; the one running adds its activations
        encoders = {c: alone for c, (alone, _) in comps.items() if c != "vae"}
        vae = comps["vae"][0]
        act = max(tr["transformer_activations"] + tr["pipeline_tensors"], vae["vae_activations"] + vae["latents"],
                  *(e["encoder_activations"] for e in encoders.values()))
        return _stage({"transformer": tr["transformer"], "lora": tr["lora"],
                       "encoders": sum(e[c] for c, e in encoders.items()) + tr["vae_weights"], "activations": act})
    out = editing_evictions(fam, stats, clip, preset, k, rank, fp8)
    stages = {"transformer": _stage(tr)}
    for c, (alone, beside) in comps.items():
        if fam.experts > 1 and c != "vae":  # the expert switch places an expert at the first denoising step: the
            stages[c] = _stage(alone)  # prompts are encoded before it (found by the full-size simulation)
            continue
        stages[c if c in out else f"{c} beside the transformer"] = _stage(alone if c in out else beside)
    return _worst(stages)


def planned_evictions(transformer_config: dict, frames: int, height: int, width: int,
                      memory_preset: str | MemoryPreset, k: int, *, fp8: bool | None = None,
                      rank: int = 16) -> frozenset[str]:
    """:func:`editing_evictions` for a live ``transformer.config`` (what ``prepare_for_editing`` asks)."""
    preset = MEMORY_PRESETS[memory_preset] if isinstance(memory_preset, str) else memory_preset
    fam, spec = resolve(transformer_config)
    stats = transformer_stats(spec)
    return editing_evictions(fam, stats, _clip(spec, frames, height, width, fam.vae_spatial), preset, k, rank, fp8)


# ----------------------------------------------------------------------------------------------- planning
def choose_blocks_to_swap(peak_gb, n_blocks: int, usable_gb: float) -> tuple[int, bool]:
    """The fewest blocks to swap (the first N) so that ``peak_gb(N) <= usable_gb``: ``(N, True)``; when even all
    ``n_blocks`` swapped do not fit, ``(n_blocks, False)``. ``peak_gb``: N -> the stage's peak in GB."""
    for k in range(n_blocks + 1):
        if peak_gb(k) <= usable_gb:
            return k, True
    return n_blocks, False


def _swap_count(setting: int | str, peak_gb, n_blocks: int, usable_gb: float) -> int:
    if setting == "auto":
        return choose_blocks_to_swap(peak_gb, n_blocks, usable_gb)[0]
    return max(0, min(int(setting), n_blocks))


def host_ram(fam: Family, stats: TransformerStats, preset: MemoryPreset, k_train: int,
             offloaded_inputs_gb: float = 0.0) -> tuple[str, dict]:
    """(moment, parts in GB) of the host RAM peak over :func:`host_moments`."""
    moments = host_moments(fam, stats, preset, k_train, offloaded_inputs_gb)
    worst = max(moments, key=lambda m: sum(moments[m].values()))
    return worst, {k: round(v, 3) for k, v in moments[worst].items()}


def host_moments(fam: Family, stats: TransformerStats, preset: MemoryPreset, k_train: int,
                 offloaded_inputs_gb: float = 0.0) -> dict[str, dict[str, float]]:
    """Host RAM parts in GB at each moment, for a backbone loaded with this preset
    (``load_backbone(..., memory_preset=)``): at **load** every component as the loader stores it (the transformer
    bf16, or straight into fp8 where the preset trains and edits in fp8, :attr:`MemoryPreset.loads_fp8`; Wan's text
    encoder not at all where it is streamed onto the GPU for new prompts, :attr:`MemoryPreset.streams_text_encoder`);
    during **training** the pinned copies of the swapped blocks + the encoders still held (the text encoder is freed
    with ``release_text_encoder`` where it can be re-loaded); while **editing** with offload every component not on
    the GPU (transformer in its edit storage)."""
    streamed = preset.streams_text_encoder and fam.text_releasable
    enc = {w: component_params(getattr(fam, w)) * fam.dtype_bytes[w] / GB
           for w in ("text_encoder", "text_encoder_2", "image_encoder")
           if getattr(fam, w) and not (w == "text_encoder" and streamed)}
    vae = component_params(fam.vae) * 4 / GB
    base = {"process": HOST_BASELINE_GB}
    loaded, _ = _weights(stats, preset.loads_fp8, 0)
    loaded /= GB
    if fam.experts > 1:  # the experts not on the GPU wait in host RAM (as loaded) the whole time
        base["other_experts"] = loaded * (fam.experts - 1)
    moments = {"load": {**base, "transformer": loaded, **enc, "vae": vae}}
    train_blocks = stats.block_bytes_fp8 if preset.fp8_base else stats.block_bytes_bf16
    held = {w: v for w, v in enc.items() if not (w == "text_encoder" and preset.release_text_encoder
                                                  and fam.text_releasable)}
    moments["training"] = {**base, "swapped_blocks_pinned": sum(map(pinned_bytes, train_blocks[:k_train])) / GB,
                           **held, "vae": vae}
    if offloaded_inputs_gb:
        moments["training"]["checkpointed_inputs_pinned"] = offloaded_inputs_gb
    if preset.edit_offload == "none":
        moments["editing"] = dict(base)
    else:
        w, _ = _weights(stats, preset.edit_fp8, 0)
        moments["editing"] = {**base, "transformer": w / GB, **enc, "vae": vae}
    return moments


def plan(backbone: str | dict, frames: int = 49, height: int = 480, width: int = 832,
         memory_preset: str | MemoryPreset = "24GB", *, rank: int = 16, batch_size: int = 1,
         edit_fp8: bool | None = None) -> Plan:
    """Predicted memory of caching, training and editing ``frames x height x width`` clips on ``backbone`` (a name
    of :data:`BACKBONES` or a ``transformer.config`` dict) under ``memory_preset`` (a key of
    :data:`loraedit_nb.memory.MEMORY_PRESETS`; "auto" is the caller's to resolve), or a :class:`MemoryPreset`
    with a run's own options (``training.effective_preset``: a config that overrides the preset's fp8, optimiser or
    checkpoint offload is planned with those). ``"auto"`` block counts become the fewest blocks that make the stage
    fit ``tier_gb * USABLE_FRACTION``. ``edit_fp8``: the storage the edit finds the transformer in, where it
    differs from the preset's (an edit in the same process after a 48GB training run finds it already in fp8:
    ``True``); None = the preset's."""
    if isinstance(memory_preset, MemoryPreset):
        preset = memory_preset
    elif memory_preset in MEMORY_PRESETS:
        preset = MEMORY_PRESETS[memory_preset]
    else:
        raise ValueError(f"memory_preset must be one of {list(MEMORY_PRESETS)}, got {memory_preset!r} (resolve "
                         "'auto' with memory.get_preset first)")
    loaded_with = preset  # how load_backbone stored the weights (host RAM): the preset's own choice
    if edit_fp8 is not None and edit_fp8 != preset.edit_fp8:
        preset = replace(preset, edit_fp8=edit_fp8)
    fam, spec = resolve(backbone)
    stats = transformer_stats(spec)
    clip = _clip(spec, frames, height, width, fam.vae_spatial)
    usable = preset.gpu_gb * USABLE_FRACTION
    L = stats.n_blocks

    def train(k):
        return training_stage(fam, stats, clip, preset, k, rank, batch_size)

    def edit(k):
        return editing_stage(fam, stats, clip, preset, k, rank)

    k_train = _swap_count(preset.train_blocks_to_swap, lambda k: train(k).peak_gpu_gb, L, usable)
    k_edit = _swap_count(preset.edit_blocks_to_swap, lambda k: edit(k).peak_gpu_gb, L, usable) \
        if preset.edit_offload == "blocks" else 0
    stages = {"caching": caching_stage(fam, clip, preset.vae_tiling), "training": train(k_train),
              "editing": edit(k_edit)}
    off = batch_size * (L - 1) * sum(map(pinned_bytes, _offloaded_inputs(fam, stats, clip.tokens))) / GB \
        if preset.gradient_checkpointing and preset.offload_checkpoints else 0.0
    moment, host = host_ram(fam, stats, loaded_with, k_train, round(off, 3))
    name = backbone if isinstance(backbone, str) else f"{fam.name} transformer config"
    notes = _notes(fam, stats, clip, preset, stages, usable, k_train, k_edit, rank, batch_size)
    if fam.experts > 1:
        notes.append(f"{fam.experts} experts of this size: one on the GPU at a time (the figures are for one); host "
                     "RAM holds the others")
    if fam.vae_scale != (1.0, 1.0):
        notes.append("VAE activations are an estimate (Wan2.1's measured figures scaled by channel width and the "
                     "2x2 input patches), not measured")
    if stats.d != REFERENCE_WIDTH[_m(fam)]:
        notes.append(f"activation figures were measured at width {REFERENCE_WIDTH[_m(fam)]} and are scaled to "
                     f"{stats.d}: rough for a model of another size")
    evicts = sorted(editing_evictions(fam, stats, clip, preset, k_edit, rank))
    return Plan(name, frames, height, width, preset.name, float(preset.gpu_gb), stages,
                round(sum(host.values()), 2), host, k_train, k_edit, L,
                all(s.peak_gpu_gb <= usable for s in stages.values()), notes, clip.tokens, moment, evicts)


def _notes(fam, stats, clip, preset, stages, usable, k_train, k_edit, rank, batch_size) -> list[str]:
    """What to do about each stage that does not fit (one line each)."""
    out = []
    for name, s in stages.items():
        if s.peak_gpu_gb <= usable:
            continue
        what = f"{name} needs {s.peak_gpu_gb:.1f} GB > {usable:.1f} GB usable on {preset.name}"
        if s.at:
            what += f" (at the {s.at})"
        if name == "training":
            fit = [f for f in range(clip.frames - 4, 0, -4) if training_stage(
                fam, stats, _Clip(f, clip.height, clip.width, (f - 1) // 4 + 1,
                                  clip.tokens // clip.latent_frames * ((f - 1) // 4 + 1)),
                preset, stats.n_blocks, rank, batch_size).peak_gpu_gb <= usable]
            what += f" even with all {stats.n_blocks} blocks swapped" if k_train == stats.n_blocks else ""
            what += (f": train on at most {fit[0]} frames at {clip.height}x{clip.width}" if fit else
                     ": no frame count fits at this size") + ", a smaller size, or a larger tier"
        elif name == "caching" and s.at == "vae":
            tiled = _stage({"vae_weights": component_params(fam.vae) * 4,
                            "vae_encode": _vae_bytes(fam, clip, "encode", True)}).peak_gpu_gb
            what += (f": with VAE tiling while caching (vae.enable_tiling()) the encode needs {tiled:.1f} GB; or a "
                     "larger tier")
        elif name == "caching":
            what += f": the {s.at} encoder alone does not fit this tier (run it on a larger card or the CPU)"
        elif s.parts.get("vae_activations", 0) > s.peak_gpu_gb / 3 or s.parts.get("activations", 0) > 10:
            tiled = editing_stage(fam, stats, clip, replace(preset, vae_tiling=True), k_edit, rank).peak_gpu_gb
            what += f": with VAE tiling it would be {tiled:.1f} GB; or more offload, fewer frames, a larger tier"
        else:
            what += f": the {s.at or 'transformer'} alone does not fit; a larger tier"
        out.append(what)
    return out


# ----------------------------------------------------------------------------------------------- every preset
PRESET_TABLE_ROWS = (("Wan2.1-I2V-14B", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", ("16GB", "24GB", "48GB", "80GB+")),
                     ("HunyuanVideo-I2V", "hunyuan-i2v", ("24GB", "48GB", "80GB+")))
_SHORT = {"text_encoder": "text encoder", "text_encoder_2": "CLIP-L", "image_encoder": "CLIP", "vae": "VAE"}


def _most_frames(backbone: str, preset: str, upto: int, height: int, width: int) -> int:
    """The most frames (4k + 1, at most ``upto``) whose every stage fits the tier; 0 when none does."""
    return next((f for f in range(upto, 0, -4) if plan(backbone, f, height, width, preset).fits), 0)


def preset_table(height: int = 480, width: int = 832) -> str:
    """The table of predicted peaks per backbone and preset in ``docs/memory.md`` (Markdown), made from
    :func:`plan`: a test keeps that page equal to it (``python -m loraedit_nb plan --preset-table`` prints it)."""
    lines = ["| backbone | preset | frames | caching | training (blocks swapped) | editing (swapped) | editing moves "
             "the transformer out for | host RAM | 81 frames fit? |", "|---|---|---|---|---|---|---|---|---|"]
    for label, name, presets in PRESET_TABLE_ROWS:
        for preset in presets:
            p = plan(name, 49, height, width, preset)
            frames = "49" if p.fits else f"{_most_frames(name, preset, 49, height, width)} (edits 49)"
            p81 = plan(name, 81, height, width, preset)
            if p81.fits:
                fit81 = f"yes ({p81.train_blocks_to_swap} blocks swapped)" if p81.train_blocks_to_swap else "yes"
            else:
                most = _most_frames(name, preset, 81, height, width)
                fit81 = f"no ({most} is the most)" if most > 49 else "no"
            st = p.stages
            out = ", ".join(_SHORT[c] for c in p.edit_evicts) or "nothing"
            lines.append(f"| {label} | `{preset}` | {frames} | {st['caching'].peak_gpu_gb:.1f} | "
                         f"{st['training'].peak_gpu_gb:.1f} ({p.train_blocks_to_swap}/{p.n_blocks}) | "
                         f"{st['editing'].peak_gpu_gb:.1f} ({p.edit_blocks_to_swap}) | {out} | "
                         f"{p.host_ram_gb:.0f} GB | {fit81} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- CLI
def add_parser(sub) -> None:
    """Add ``plan`` to an argparse subparsers object (``python -m loraedit_nb plan ...``)."""
    p = sub.add_parser("plan", help="predicted peak GPU memory per stage and host RAM (no download)")
    p.add_argument("--backbone", default="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", help=f"one of {sorted(BACKBONES)}")
    p.add_argument("--frames", type=int, default=49)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--memory-preset", default="24GB", choices=list(MEMORY_PRESETS))
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--preset-table", action="store_true",
                   help="print the table (docs/memory.md) of every backbone and preset at --height x --width instead")
    p.set_defaults(func=_cmd_plan)


def _cmd_plan(a) -> None:
    if a.preset_table:
        print(preset_table(a.height, a.width))
        return
    pl = plan(a.backbone, a.frames, a.height, a.width, a.memory_preset, rank=a.rank, batch_size=a.batch_size)
    print(json.dumps(pl.to_json(), indent=1) if a.json else pl.table())
