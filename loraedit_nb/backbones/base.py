"""The base of every backbone family: the :class:`Adapter` interface, the :class:`Backbone` that holds a family's
diffusers components, the family registry, and small helpers the families share.

This module imports no family. Each family module (:mod:`.wan`, :mod:`.hunyuan`) defines its adapter and calls
:func:`register_family`; :func:`adapter_for` then picks a transformer's family from the registry. The package's
concept modules (conditioning, training, loss, inference, ...) talk to a backbone only through this interface:

* ``condition(vae, cond_pixels, keep)`` — LoRA-Edit's condition (masked video + mask) packed the way *this*
  transformer reads it; the transformer's input is always ``cat([noisy latent, condition], dim=1)``;
* ``keep_fraction(condition)`` — the latent-rate keep mask inside that condition (for the dual-role loss weights);
* ``encode_context(backbone, prompt, image)`` — the keyword arguments the transformer takes besides the latents
  (text embeddings, and whatever else the family needs: CLIP image tokens for Wan, an attention mask and pooled
  CLIP text for Hunyuan, whose text encoder also looks at the conditioning image);
* ``lora_targets`` — which Linear layers get a LoRA;
* ``pipeline_class`` / ``generate(...)`` — inference through the family's diffusers pipeline;
* ``negative_prompt(backbone)`` — the default negative prompt at inference.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import memory  # memory.onload looked up at call time: tests spy on it
from ..video import InputError, InputWarning, warn_user
from .latents import LatentGeometry

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "data"
TOY_DIR = DATA_DIR / "toy_backbone"
META_FILE = "loraedit_nb.json"
# Backbones that run at toy scale (toy-scale training settings, no Hub negative prompt, moved to a device whole)
TINY_BACKBONES = ("toy", "tiny-random", "tiny-hunyuan", "tiny-wan22-a14b", "tiny-wan22-ti2v")
REAL_BACKBONE = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"  # named in messages that suggest a real backbone


class Adapter:
    """Base class: the interface (see the module docstring). Subclasses fill every method."""

    family: str = "?"
    lora_targets: tuple[str, ...] = ()
    pipeline_class: type = object
    default_negative_prompt: str = ""
    supports_keyframes: bool = True  # can a single later frame be given (keyframes, first-last-frame mode)?

    def mask_channels(self, vae) -> int:
        raise NotImplementedError

    def condition(self, vae, cond_pixels: torch.Tensor, keep: torch.Tensor, *, reduce: str = "nearest"
                  ) -> torch.Tensor:
        raise NotImplementedError

    def mask_part(self, condition: torch.Tensor) -> torch.Tensor:
        """The mask channels inside a condition, ``(B, mask_channels, L, h, w)``, 1 = keep."""
        raise NotImplementedError

    def keep_fraction(self, condition: torch.Tensor) -> torch.Tensor:
        """The keep share of each latent voxel ``(B, 1, L, h, w)`` (mean over the mask channels)."""
        return self.mask_part(condition).float().mean(1, keepdim=True)

    def encode_context(self, backbone, prompt: str, image: np.ndarray | None, memo: dict | None = None
                       ) -> dict[str, torch.Tensor | None]:
        raise NotImplementedError

    def pipeline(self, backbone, cls: type | None = None):
        raise NotImplementedError

    def context_modules(self, backbone) -> list[torch.nn.Module]:
        """The encoders ``encode_context`` runs once the prompts are cached (brought to the GPU for that pass)."""
        return [m for m in (backbone.text_encoder, backbone.text_encoder_2, backbone.image_encoder) if m is not None]

    def generate(self, backbone, condition: torch.Tensor, first_frame: np.ndarray, *, prompt: str,
                 negative_prompt: str | None, num_frames: int, height: int, width: int, steps: int,
                 guidance: float, flow_shift: float | None, generator: torch.Generator,
                 callback_on_step_end: Callable | None = None, progress: bool = True) -> np.ndarray:
        raise NotImplementedError

    def staged_pipeline(self, backbone, cls: type, flow_shift: float | None, progress: bool = True):
        """The family's (masked) pipeline class over the backbone's components, set up to compute on the execution
        device with encoders brought there one at a time (:class:`~loraedit_nb.memory.StagedPipelineMixin`), the
        transformer evicted for the components the editing preset says (``Backbone.evict_for``), and the sampler's
        flow shift."""
        pipe = self.pipeline(backbone, cls)
        pipe._staged_device = backbone.device
        pipe._evict_for = backbone.evict_for
        pipe.scheduler = with_flow_shift(backbone.scheduler, flow_shift)
        pipe.set_progress_bar_config(disable=not progress, leave=False)
        return pipe

    def negative_prompt(self, backbone) -> str:
        """The negative prompt :func:`~loraedit_nb.inference.edit_video` uses when none is given."""
        return self.default_negative_prompt

    def model_input(self, zt: torch.Tensor, condition: torch.Tensor, t: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: what the transformer reads for noisy latents ``zt`` at ``t`` ``(B,)`` in (0, 1) — the input
        ``cat([zt, condition])`` and timesteps ``1000 t`` for the mask-channel families."""
        return torch.cat([zt, condition.to(zt.dtype)], 1), t * 1000

    def loss_mask(self, condition: torch.Tensor) -> torch.Tensor | None:
        """Latent cells ``(B, 1, L, h, w)`` that count in the loss (None = all): families that replace given tokens
        by clean latents (Wan2.2-TI2V) leave those out."""
        return None


# ----------------------------------------------------------------------------------------------- family registry
_FAMILIES: list[tuple[str, Callable[[Any], bool], Callable[[Any], Adapter]]] = []
_DEFAULT: list[Callable[[Any], Adapter]] = []


def register_family(name: str, matches: Callable[[Any], bool], make: Callable[[Any], Adapter], *,
                    default: bool = False) -> None:
    """Called by each family module at import: ``matches(transformer)`` says whether a (unwrapped) transformer is
    this family's, ``make(transformer)`` returns its adapter. ``default``: the family for transformers no family
    claims (Wan: any ``WanTransformer3DModel`` subclass, and test doubles)."""
    global _FAMILIES
    _FAMILIES = [f for f in _FAMILIES if f[0] != name] + [(name, matches, make)]
    if default:
        _DEFAULT[:] = [make]


def adapter_for(transformer: Any) -> Adapter:
    """The adapter of a transformer's family (a DDP/accelerate wrapper's ``.module`` is looked through)."""
    inner = getattr(transformer, "module", transformer)
    for _, matches, make in _FAMILIES:
        if matches(inner):
            return make(transformer)
    if _DEFAULT:
        return _DEFAULT[0](transformer)
    raise RuntimeError("no backbone family is registered: import loraedit_nb.backbones (it imports every family)")


def default_adapter() -> Adapter:
    """The default family's adapter (Wan): what :func:`~loraedit_nb.conditioning.build_condition` packs for when
    it is given a VAE but no adapter."""
    return adapter_for(None)


def collate_context(contexts: Sequence[dict[str, torch.Tensor | None]], device=None) -> dict:
    """Stack per-sample contexts (each with batch 1) along the batch; ``None`` entries stay ``None``."""
    out = {}
    for k in contexts[0]:
        vals = [c[k] for c in contexts]
        out[k] = None if vals[0] is None else torch.cat(vals).to(device)
    return out


def _pil(frame: np.ndarray):
    from PIL import Image

    return Image.fromarray((np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8))


def with_flow_shift(scheduler, flow_shift: float | None):
    """A copy of ``scheduler`` with another flow shift (UniPC: ``flow_shift``; FlowMatchEuler: ``shift``)."""
    if flow_shift is None:
        return scheduler
    key = "flow_shift" if "flow_shift" in scheduler.config else "shift"
    return type(scheduler).from_config(scheduler.config, **{key: flow_shift})


# ----------------------------------------------------------------------------------------------- Backbone
class ClipSizeWarning(InputWarning):
    """A clip larger than the toy backbone was trained on: slow (cost grows with the tokens) and poor output."""


class _PlacementAndExperts:
    """What a :class:`Backbone` does with where its weights are: the execution device, moving every component,
    and Wan2.2-I2V-A14B's two experts seen one at a time. Data lives in :class:`Backbone`."""

    @property
    def encoders(self) -> list[torch.nn.Module]:
        """Every module besides the transformer (VAE, text and image encoders): what is offloaded or moved with it."""
        return [m for m in (self.vae, self.text_encoder, self.text_encoder_2, self.image_encoder) if m is not None]

    @property
    def device(self) -> torch.device:
        """The execution device: where training steps and denoising run (not necessarily where weights sit)."""
        if self.execution_device is not None:
            return torch.device(self.execution_device)
        return memory.module_device(self.transformer)

    def to(self, device=None, dtype=None) -> Backbone:
        """Move every component (weights and all) to ``device``; ``dtype`` applies to the transformer."""
        # .to(device) alone when no dtype is asked: .to(dtype=None) makes diffusers warn about fp32 modules
        self.transformer.to(device) if dtype is None else self.transformer.to(device=device, dtype=dtype)
        for m in self.encoders:
            m.to(device=device)
        if device is not None:
            self.execution_device = torch.device(device)
        return self

    EXPERTS = ("high", "low")

    def expert(self, which: str) -> Backbone:
        """A two-expert backbone (Wan2.2-I2V-A14B) seen as one expert: ``"high"`` (``transformer``, flow times
        ``t >= boundary_ratio``) or ``"low"`` (``transformer_2``, below), sharing every other component and the
        prompt cache. Training and LoRA loading work on this view as on a one-transformer backbone."""
        if self.transformer_2 is None or which not in self.EXPERTS:
            raise ValueError(f"expert {which!r}: {self.name} has "
                             + ("two experts, 'high' and 'low'" if self.transformer_2 is not None else
                                "one transformer (experts are for Wan2.2-I2V-A14B)"))
        return replace(self, transformer=self.transformer if which == "high" else self.transformer_2,
                       transformer_2=None, boundary_ratio=None, prompt_cache=self.prompt_cache)

    def expert_range(self, which: str) -> tuple[float, float]:
        """The flow times ``(lo, hi)`` in (0, 1) an expert denoises (``t = timestep / 1000``)."""
        b = float(self.boundary_ratio)
        return (b, 1.0) if which == "high" else (0.0, b)


class _Encoders:
    """What a :class:`Backbone` does with its text and image encoders: prompt and CLIP embeddings (brought to the
    execution device for the call), and releasing / reloading the text encoder."""

    def ensure_text_encoder(self, device: torch.device | str | None = None) -> None:
        """Re-create the text encoder after :meth:`release_text_encoder` (a new prompt came), on the host, or
        with ``device`` straight onto that device (``text_encoder_streamed``: no copy in host RAM)."""
        if self.text_encoder is None:
            if self.text_encoder_loader is None:
                raise RuntimeError(f"{self.name}'s text encoder was released and cannot be reloaded: load the "
                                   "backbone again")
            if not self.text_encoder_streamed:
                print(f"reloading {self.name}'s text encoder for a new prompt")
            self.text_encoder = self.text_encoder_loader(device) if device is not None else self.text_encoder_loader()

    def release_text_encoder(self) -> bool:
        """Drop the text encoder from memory once the prompts are cached (UMT5-XXL: 11.4 GB of host RAM). A later
        new prompt reloads it from disk. Only backbones that can reload it release it; returns whether it did."""
        if self.text_encoder is None or self.text_encoder_loader is None or self.adapter.family != "wan":
            return False
        self.text_encoder = None
        import gc

        gc.collect()
        return True

    def encode_context(self, prompt: str, image=None, memo: dict | None = None) -> dict:
        """Everything the transformer takes besides the latents, for one sample (batch 1): text embeddings and
        the family's extras. ``image``: float ``(H, W, 3)`` in [0, 1], the frame the image branch sees."""
        return self.adapter.encode_context(self, prompt, image, memo)

    @torch.no_grad()
    def encode_prompt(self, prompts: str | list[str]) -> torch.Tensor:
        """Wan: text embeddings ``(B, max_sequence_length, text_dim)`` exactly as the pipeline computes them."""
        if self.adapter.family != "wan":
            raise TypeError(f"{self.name}'s text encoder also reads the conditioning image: use "
                            "backbone.encode_context(prompt, image)")
        single = isinstance(prompts, str)
        prompts = [prompts] if single else list(prompts)
        new = [p for p in dict.fromkeys(prompts) if p not in self.prompt_cache]
        if new:  # the text encoder comes to the execution device only for prompts not seen before
            streamed = self.text_encoder is None and self.text_encoder_streamed
            self.ensure_text_encoder(self.device if streamed else None)  # streamed: from disk onto the device
            try:
                with memory.onload(self.text_encoder, self.device):
                    emb = self.pipeline()._get_t5_prompt_embeds(new, max_sequence_length=self.max_sequence_length,
                                                                device=self.device, dtype=self.transformer.dtype)
            finally:
                if streamed:  # it was loaded for these prompts only: gone before the next stage needs the room
                    self.text_encoder = None
                    memory.free_device_cache(self.device)
            for p, e in zip(new, emb, strict=True):
                self.prompt_cache[p] = e[None].cpu()
        return torch.cat([self.prompt_cache[p] for p in prompts]).to(self.device, self.transformer.dtype)

    @torch.no_grad()
    def encode_image(self, image) -> torch.Tensor | None:
        """CLIP image tokens ``(1, N, image_dim)`` of one frame (float ``(H, W, 3)`` in [0, 1]), or None when the
        backbone has no image branch (toy)."""
        if not self.has_image_encoder:
            return None
        if isinstance(image, np.ndarray):
            image = _pil(image)
        with memory.onload(self.image_encoder, self.device):
            return self.pipeline().encode_image(image, self.device).to(self.transformer.dtype)


@dataclass
class Backbone(_PlacementAndExperts, _Encoders):
    """An I2V backbone: diffusers components plus the few settings the package needs to drive them.

    ``defaults`` holds the sizes and sampler settings that suit this backbone (toy: 32x32, 9 frames, CPU seconds;
    Wan: 832x480, 49 frames, 30 steps, guidance 5, flow shift 5).
    """

    name: str
    transformer: torch.nn.Module
    vae: torch.nn.Module
    scheduler: Any
    tokenizer: Any
    text_encoder: torch.nn.Module
    image_encoder: torch.nn.Module | None = None
    image_processor: Any = None
    max_sequence_length: int = 512
    defaults: dict = field(default_factory=dict)
    tokenizer_2: Any = None  # Hunyuan: CLIP text tokenizer (pooled text)
    text_encoder_2: torch.nn.Module | None = None  # Hunyuan: CLIP text encoder
    prompt_template: dict | None = None  # Hunyuan: the Llava prompt template (where the image tokens go)
    transformer_2: torch.nn.Module | None = None  # Wan2.2-I2V-A14B: the low-noise expert (t < boundary)
    boundary_ratio: float | None = None  # Wan2.2-I2V-A14B: transformer for t >= ratio * 1000, transformer_2 below
    # Where compute runs. Real backbones load on the CPU and set this: each stage then brings only what it needs to
    # the GPU (memory.onload, memory.enable_block_swap), so loading never needs more GPU memory than the tier.
    execution_device: torch.device | None = None
    text_encoder_loader: Any = None  # re-creates a released text encoder (release_text_encoder); None = keep it
    # Wan on the 16/24GB presets: the text encoder is not kept at all (UMT5-XXL: 11.4 GB of host RAM). Each new
    # prompt loads it from disk straight onto the execution device (``text_encoder_loader(device)``); it is dropped
    # right after. load_backbone(..., memory_preset=) sets this where the preset releases the text encoder.
    text_encoder_streamed: bool = False
    prompt_cache: dict = field(default_factory=dict, repr=False)  # prompt -> text embedding (CPU), Wan
    # editing presets: the components ("text_encoder", "image_encoder", "vae", ...) that run with the transformer
    # moved out of the way because the planner found they do not fit beside it (prepare_for_editing sets it)
    evict_for: frozenset = frozenset()

    @property
    def is_tiny(self) -> bool:
        """The embedded toy model or a tiny random stack: toy-scale training settings, no Hub negative prompt."""
        return self.name in TINY_BACKBONES

    @property
    def adapter(self):
        """The family adapter (:func:`adapter_for`): Wan's, or Hunyuan's for a Hunyuan transformer."""
        return adapter_for(self.transformer)

    @property
    def geometry(self) -> LatentGeometry:
        return LatentGeometry.of(self.vae)

    @property
    def has_image_encoder(self) -> bool:
        return self.transformer.config.get("image_dim") is not None

    @property
    def trained_size(self) -> tuple[int, int, int] | None:
        """``(frames, height, width)`` the weights were trained at, where it is that narrow: the toy model was
        pretrained only at its default size (9 x 32 x 32, :mod:`loraedit_nb.toyworld.pretrain`). None otherwise."""
        d = self.defaults
        return (d["num_frames"], d["height"], d["width"]) if self.name == "toy" else None

    def pipeline(self, cls: type | None = None):
        """A diffusers pipeline sharing these components (no copies). ``cls`` defaults to the family's stock I2V
        pipeline (``WanImageToVideoPipeline`` / ``HunyuanVideoImageToVideoPipeline``)."""
        return self.adapter.pipeline(self, cls)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write every component in diffusers format (safetensors) + a small ``loraedit_nb.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(path / "transformer")
        self.vae.save_pretrained(path / "vae")
        self.scheduler.save_pretrained(path / "scheduler")
        self.tokenizer.save_pretrained(path / "tokenizer")
        (self.text_encoder or self.text_encoder_loader()).save_pretrained(path / "text_encoder")
        if self.image_encoder is not None:
            self.image_encoder.save_pretrained(path / "image_encoder")
        if self.image_processor is not None:
            self.image_processor.save_pretrained(path / "image_processor")
        if self.text_encoder_2 is not None:
            self.text_encoder_2.save_pretrained(path / "text_encoder_2")
            self.tokenizer_2.save_pretrained(path / "tokenizer_2")
        if self.transformer_2 is not None:
            self.transformer_2.save_pretrained(path / "transformer_2")
        meta = {"name": self.name, "max_sequence_length": self.max_sequence_length, "defaults": self.defaults,
                "prompt_template": self.prompt_template, "boundary_ratio": self.boundary_ratio,
                "transformer_class": type(self.transformer).__name__, "vae_class": type(self.vae).__name__,
                "scheduler_class": type(self.scheduler).__name__}
        (path / META_FILE).write_text(json.dumps(meta, indent=1))
        return path

    def fingerprint(self) -> str:
        """A short hash of the transformer's weights: tells a re-trained backbone from the one a saved LoRA was
        made on (the architecture check in :mod:`loraedit_nb.lora` cannot: same shapes)."""
        import hashlib

        h = hashlib.sha1()
        base = sorted((k.replace(".base_layer", ""), v) for k, v in self.transformer.state_dict().items()
                      if "lora_" not in k)  # the same with or without a LoRA attached
        for name, p in base[:: max(1, len(base) // 8)]:
            h.update(name.encode())
            h.update(p.detach().float().flatten()[:64].cpu().numpy().tobytes())
        return h.hexdigest()[:12]

    def check_clip_size(self, frames: int, height: int, width: int) -> None:
        """Refuse a clip the transformer cannot run, warn for one beyond what the weights were trained at
        (:func:`check_clip_size`). Training and editing entry points call this before any work."""
        check_clip_size(self, frames, height, width)


def check_clip_size(bb: Backbone, frames: int, height: int, width: int) -> None:
    """Refuse a clip ``frames x height x width`` the transformer cannot run, warn for one beyond what the
    weights were trained at. Training and editing entry points call this before any work.

    The hard limit is Wan's rotary position table: ``WanRotaryPosEmbed`` holds ``rope_max_seq_len`` positions
    per axis (frames, height, width of the latent token grid) and slices ``[:n]`` of it, so a grid longer than
    that along any axis fails deep in diffusers (``shape '[1, 1, 72, -1]' is invalid``). Tokens per axis are
    ``(frames - 1) / temporal + 1`` over ``patch_t`` and ``size / spatial / patch``: the toy (x2 VAE, 2x2
    patches, 64 positions) runs at most 253 frames and 256 x 256 px; Wan (x8, 1024 positions) 16384 px.
    """
    cfg = bb.transformer.config
    limit = cfg.get("rope_max_seq_len")  # Wan; HunyuanVideo computes its rotary table per call (no limit)
    g = bb.geometry
    patch = cfg.get("patch_size") or (1, 2, 2)
    p_t, p_h, p_w = patch if not isinstance(patch, int) else (cfg.get("patch_size_t") or 1, patch, patch)

    def grid(f: int, h: int, w: int) -> dict[str, int]:  # latent tokens along each axis
        return {"frames": ((f - 1) // g.temporal + 1) // p_t, "height": h // g.spatial // p_h,
                "width": w // g.spatial // p_w}

    tokens = grid(frames, height, width)
    trained = bb.trained_size
    d = bb.defaults
    f0, h0, w0 = trained or (d.get("num_frames", 9), d.get("height", 32), d.get("width", 32))
    fix = (f"Fix: prepare the clip at {f0} x {h0} x {w0}: prepare_video(video, {f0}, {h0}, {w0}) and "
           f"prepare_mask(mask, {f0}, {h0}, {w0}); or use a real backbone ({REAL_BACKBONE}).")
    cli = f"Fix: use --frames {f0} --height {h0} --width {w0}; or --backbone {REAL_BACKBONE}."
    if limit is not None and max(tokens.values()) > limit:
        axis = max(tokens, key=tokens.get)
        raise InputError(
            f"the {bb.name} backbone cannot run a {frames} x {height} x {width} clip (frames x H x W): its "
            f"transformer has rotary positions for at most {limit} latent tokens along each axis "
            f"(rope_max_seq_len), i.e. at most {(limit * p_t - 1) * g.temporal + 1} frames and "
            f"{limit * p_h * g.spatial} x {limit * p_w * g.spatial} px, and this clip needs {tokens[axis]} along "
            f"the {axis}.", fix, cli=cli)
    if trained is not None and (frames > f0 or height > h0 or width > w0):
        ratio = np.prod(list(tokens.values())) / max(1, np.prod(list(grid(f0, h0, w0).values())))
        warn_user(ClipSizeWarning(
            f"the {bb.name} backbone was trained only on {f0}-frame {h0} x {w0} clips; this one is {frames} x "
            f"{height} x {width} (frames x H x W), {ratio:.0f}x the tokens: every training and denoising step "
            "costs that much compute or more (attention grows with its square) and the output degrades (grey, "
            "blocky noise at 17 x 112 x 256).", fix, cli=cli))


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """``"cuda"`` under ``accelerate launch`` / torchrun means this rank's GPU (``LOCAL_RANK``), so that every rank
    loads and computes on its own device instead of all on ``cuda:0``."""
    if device is None:
        return None
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def place(bb: Backbone, device) -> Backbone:
    """Tiny backbones move whole; real ones stay on the CPU with ``execution_device`` set (staged placement)."""
    device = resolve_device(device)
    if device is None:
        return bb
    if bb.is_tiny or device.type == "cpu":
        return bb.to(device)
    bb.execution_device = device
    return bb


def _word_tokenizer(words: list[str], *, special: tuple[str, ...] = (), eos: bool = True):
    """A word-level tokenizer with T5's special tokens (pad 0, eos 1, unk 2), built offline. ``special``: extra
    tokens kept whole (Hunyuan's chat-template markers); ``eos``: append ``</s>`` to every text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in special:
        vocab.setdefault(w, len(vocab))
    for w in words:
        vocab.setdefault(w.lower(), len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if eos:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   additional_special_tokens=list(special) or None)


def clip_image_processor_class():
    """CLIP's image processor class, chosen so that loading prints no notice: without torchvision, transformers
    (>= 5) falls back to its PIL backend and warns at every load; we pick that backend directly (the same class the
    fallback uses, so the same outputs). With torchvision, or an older transformers, the default class."""
    import importlib.util

    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "CLIPImageProcessorPil"):
        return transformers.CLIPImageProcessorPil
    return transformers.CLIPImageProcessor


class _no_weight_bars:
    """Hide transformers' "Loading weights" bar while a tiny local model loads (it flashes for 22 tensors)."""

    def __enter__(self):
        from transformers.utils import logging as tlog

        self._was = tlog.is_progress_bar_enabled()
        tlog.disable_progress_bar()

    def __exit__(self, *exc):
        from transformers.utils import logging as tlog

        if self._was:
            tlog.enable_progress_bar()
