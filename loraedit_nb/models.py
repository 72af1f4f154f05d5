"""Backbones behind one loader: the real Wan2.1-I2V-14B, the project's pretrained toy model, tiny random configs.

``load_backbone(name_or_path)`` returns a :class:`Backbone` holding diffusers components (transformer, VAE,
scheduler, tokenizer + text encoder, optional CLIP image encoder). Every training and inference function of the
package takes a Backbone, so the same code runs at both scales:

* ``"toy"`` (default) — the embedded model pretrained by this project on the toy world (``data/toy_backbone``):
  a ``WanTransformer3DModel`` at tiny width, a lossless :class:`~loraedit_nb.patchify_vae.PatchifyVAE` with Wan's
  latent geometry, and a tiny UMT5 text encoder over a word-level toy vocabulary. Runs on a CPU in seconds.
* ``"tiny-random"`` — the same diffusers classes as Wan2.1-I2V (``AutoencoderKLWan``, 36-channel transformer with
  CLIP image branch, UMT5, CLIP vision) at tiny random sizes, built from config. For unit tests.
* ``"Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"`` / ``-720P-`` — the real model from the Hub (GPU; ~33 GB bf16
  transformer). Never called in tests: no hub here.
* a local folder written by :meth:`Backbone.save_pretrained` (or any diffusers Wan I2V folder).
* ``"hunyuan-i2v"`` (= ``hunyuanvideo-community/HunyuanVideo-I2V-33ch``) and ``"tiny-hunyuan"`` — the second
  backbone family, HunyuanVideo-I2V, through :mod:`loraedit_nb.hunyuan`.

What differs between the families (condition packing, mask channels, text/image context, LoRA targets, pipeline)
is in one adapter object per family, ``Backbone.adapter`` (:mod:`loraedit_nb.adapters`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanTransformer3DModel,
)

from .conditioning import LatentGeometry
from .patchify_vae import PatchifyVAE
from .video import InputError, InputWarning, warn_user

WAN_480P = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
WAN_720P = "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
TOY_DIR = DATA_DIR / "toy_backbone"
META_FILE = "loraedit_nb.json"

# Wan's standard negative prompt (what the paper's code passes at inference)
WAN_NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly "
    "drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy "
    "background, three legs, many people in the background, walking backwards"
)


class XPredWanTransformer3DModel(WanTransformer3DModel):
    """``WanTransformer3DModel`` whose network predicts the clean latent; ``forward`` returns Wan's velocity.

    Identical modules, names and LoRA targets as the parent; only the output is re-parametrised:
    ``v = (z_t - x0_hat) / t`` with ``z_t = (1 - t) x0 + t eps`` (so ``v = eps - x0`` exactly when x0_hat is right).
    Used by the toy backbone: a tiny model trained for CPU-hours learns to copy given content far more reliably
    when it predicts the sample than the velocity (seen in the project's probes). The pipeline, schedulers, CFG
    and the training loss all still see velocities, as for real Wan.
    """

    t_min = 0.05  # t -> 0 would blow up the division; below this the step is tiny anyway

    def forward(self, hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image=None,
                return_dict: bool = True, attention_kwargs: dict[str, Any] | None = None):
        x0_hat = super().forward(hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image,
                                 return_dict=False, attention_kwargs=attention_kwargs)[0]
        z_t = hidden_states[:, : self.config.out_channels]
        t = (timestep.float() / 1000.0).clamp(min=self.t_min).view(-1, *([1] * (z_t.ndim - 1)))
        v = (z_t.float() - x0_hat.float()) / t
        v = v.to(x0_hat.dtype)
        if not return_dict:
            return (v,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=v)


TRANSFORMER_CLASSES = {c.__name__: c for c in (WanTransformer3DModel, XPredWanTransformer3DModel)}


class ClipSizeWarning(InputWarning):
    """A clip larger than the toy backbone was trained on: slow (cost grows with the tokens) and poor output."""
VAE_CLASSES = {c.__name__: c for c in (AutoencoderKLWan, PatchifyVAE)}


@dataclass
class Backbone:
    """An I2V backbone: diffusers components plus the few settings the package needs to drive them.

    ``defaults`` holds the sizes and sampler settings that suit this backbone (toy: 32x32, 9 frames, CPU seconds;
    Wan: 832x480, 49 frames, 30 steps, guidance 5, flow shift 5).
    """

    name: str
    transformer: WanTransformer3DModel
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
    # Where compute runs. Real backbones load on the CPU and set this: each stage then brings only what it needs to
    # the GPU (memory.onload, memory.enable_block_swap), so loading never needs more GPU memory than the tier.
    execution_device: torch.device | None = None
    text_encoder_loader: Any = None  # re-creates a released text encoder (release_text_encoder); None = keep it
    prompt_cache: dict = field(default_factory=dict, repr=False)  # prompt -> text embedding (CPU), Wan
    evict_for_encoders: bool = False  # editing presets with offload: the transformer leaves room for an encoder

    @property
    def encoders(self) -> list[torch.nn.Module]:
        """Every module besides the transformer (VAE, text and image encoders): what is offloaded or moved with it."""
        return [m for m in (self.vae, self.text_encoder, self.text_encoder_2, self.image_encoder) if m is not None]

    @property
    def is_tiny(self) -> bool:
        """The embedded toy model or a tiny random stack: toy-scale training settings, no Hub negative prompt."""
        return self.name in TINY_BACKBONES

    @property
    def adapter(self):
        """The family adapter (:mod:`loraedit_nb.adapters`): Wan's, or Hunyuan's for a Hunyuan transformer."""
        from .adapters import adapter_for

        return adapter_for(self.transformer)

    @property
    def geometry(self) -> LatentGeometry:
        return LatentGeometry.of(self.vae)

    @property
    def has_image_encoder(self) -> bool:
        return self.transformer.config.get("image_dim") is not None

    @property
    def device(self) -> torch.device:
        """The execution device: where training steps and denoising run (not necessarily where weights sit)."""
        if self.execution_device is not None:
            return torch.device(self.execution_device)
        from .memory import module_device

        return module_device(self.transformer)

    @property
    def trained_size(self) -> tuple[int, int, int] | None:
        """``(frames, height, width)`` the weights were trained at, where it is that narrow: the toy model was
        pretrained only at its default size (9 x 32 x 32, :mod:`loraedit_nb.toyworld.pretrain`). None otherwise."""
        d = self.defaults
        return (d["num_frames"], d["height"], d["width"]) if self.name == "toy" else None

    def check_clip_size(self, frames: int, height: int, width: int) -> None:
        """Refuse a clip ``frames x height x width`` the transformer cannot run, warn for one beyond what the
        weights were trained at. Training and editing entry points call this before any work.

        The hard limit is Wan's rotary position table: ``WanRotaryPosEmbed`` holds ``rope_max_seq_len`` positions
        per axis (frames, height, width of the latent token grid) and slices ``[:n]`` of it, so a grid longer than
        that along any axis fails deep in diffusers (``shape '[1, 1, 72, -1]' is invalid``). Tokens per axis are
        ``(frames - 1) / temporal + 1`` over ``patch_t`` and ``size / spatial / patch``: the toy (x2 VAE, 2x2
        patches, 64 positions) runs at most 253 frames and 256 x 256 px; Wan (x8, 1024 positions) 16384 px.
        """
        cfg = self.transformer.config
        limit = cfg.get("rope_max_seq_len")  # Wan; HunyuanVideo computes its rotary table per call (no limit)
        g = self.geometry
        patch = cfg.get("patch_size") or (1, 2, 2)
        p_t, p_h, p_w = patch if not isinstance(patch, int) else (cfg.get("patch_size_t") or 1, patch, patch)

        def grid(f: int, h: int, w: int) -> dict[str, int]:  # latent tokens along each axis
            return {"frames": ((f - 1) // g.temporal + 1) // p_t, "height": h // g.spatial // p_h,
                    "width": w // g.spatial // p_w}

        tokens = grid(frames, height, width)
        trained = self.trained_size
        d = self.defaults
        f0, h0, w0 = trained or (d.get("num_frames", 9), d.get("height", 32), d.get("width", 32))
        fix = (f"Fix: prepare the clip at {f0} x {h0} x {w0}: prepare_video(video, {f0}, {h0}, {w0}) and "
               f"prepare_mask(mask, {f0}, {h0}, {w0}); or use a real backbone ({WAN_480P}).")
        cli = f"Fix: use --frames {f0} --height {h0} --width {w0}; or --backbone {WAN_480P}."
        if limit is not None and max(tokens.values()) > limit:
            axis = max(tokens, key=tokens.get)
            raise InputError(
                f"the {self.name} backbone cannot run a {frames} x {height} x {width} clip (frames x H x W): its "
                f"transformer has rotary positions for at most {limit} latent tokens along each axis "
                f"(rope_max_seq_len), i.e. at most {(limit * p_t - 1) * g.temporal + 1} frames and "
                f"{limit * p_h * g.spatial} x {limit * p_w * g.spatial} px, and this clip needs {tokens[axis]} along "
                f"the {axis}.", fix, cli=cli)
        if trained is not None and (frames > f0 or height > h0 or width > w0):
            ratio = np.prod(list(tokens.values())) / max(1, np.prod(list(grid(f0, h0, w0).values())))
            warn_user(ClipSizeWarning(
                f"the {self.name} backbone was trained only on {f0}-frame {h0} x {w0} clips; this one is {frames} x "
                f"{height} x {width} (frames x H x W), {ratio:.0f}x the tokens: every training and denoising step "
                "costs that much compute or more (attention grows with its square) and the output degrades (grey, "
                "blocky noise at 17 x 112 x 256).", fix, cli=cli))

    def ensure_text_encoder(self) -> None:
        """Re-create the text encoder after :meth:`release_text_encoder` (a new prompt came)."""
        if self.text_encoder is None:
            if self.text_encoder_loader is None:
                raise RuntimeError(f"{self.name}'s text encoder was released and cannot be reloaded: load the "
                                   "backbone again")
            print(f"reloading {self.name}'s text encoder for a new prompt")
            self.text_encoder = self.text_encoder_loader()

    def release_text_encoder(self) -> bool:
        """Drop the text encoder from memory once the prompts are cached (UMT5-XXL: 11.4 GB of host RAM). A later
        new prompt reloads it from disk. Only backbones that can reload it release it; returns whether it did."""
        if self.text_encoder is None or self.text_encoder_loader is None or self.adapter.family != "wan":
            return False
        self.text_encoder = None
        import gc

        gc.collect()
        return True

    def pipeline(self, cls: type | None = None):
        """A diffusers pipeline sharing these components (no copies). ``cls`` defaults to the family's stock I2V
        pipeline (``WanImageToVideoPipeline`` / ``HunyuanVideoImageToVideoPipeline``)."""
        return self.adapter.pipeline(self, cls)

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
        from .memory import onload

        single = isinstance(prompts, str)
        prompts = [prompts] if single else list(prompts)
        new = [p for p in dict.fromkeys(prompts) if p not in self.prompt_cache]
        if new:  # the text encoder comes to the execution device only for prompts not seen before
            self.ensure_text_encoder()
            with onload(self.text_encoder, self.device):
                emb = self.pipeline()._get_t5_prompt_embeds(new, max_sequence_length=self.max_sequence_length,
                                                            device=self.device, dtype=self.transformer.dtype)
            for p, e in zip(new, emb, strict=True):
                self.prompt_cache[p] = e[None].cpu()
        return torch.cat([self.prompt_cache[p] for p in prompts]).to(self.device, self.transformer.dtype)

    @torch.no_grad()
    def encode_image(self, image) -> torch.Tensor | None:
        """CLIP image tokens ``(1, N, image_dim)`` of one frame (float ``(H, W, 3)`` in [0, 1]), or None when the
        backbone has no image branch (toy)."""
        if not self.has_image_encoder:
            return None
        import numpy as np

        from .adapters import _pil
        from .memory import onload

        if isinstance(image, np.ndarray):
            image = _pil(image)
        with onload(self.image_encoder, self.device):
            return self.pipeline().encode_image(image, self.device).to(self.transformer.dtype)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write every component in diffusers format (safetensors) + a small ``loraedit_nb.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(path / "transformer")
        self.vae.save_pretrained(path / "vae")
        self.scheduler.save_pretrained(path / "scheduler")
        self.tokenizer.save_pretrained(path / "tokenizer")
        self.text_encoder.save_pretrained(path / "text_encoder")
        if self.image_encoder is not None:
            self.image_encoder.save_pretrained(path / "image_encoder")
        if self.image_processor is not None:
            self.image_processor.save_pretrained(path / "image_processor")
        if self.text_encoder_2 is not None:
            self.text_encoder_2.save_pretrained(path / "text_encoder_2")
            self.tokenizer_2.save_pretrained(path / "tokenizer_2")
        meta = {"name": self.name, "max_sequence_length": self.max_sequence_length, "defaults": self.defaults,
                "prompt_template": self.prompt_template,
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

    def to(self, device=None, dtype=None) -> Backbone:
        """Move every component (weights and all) to ``device``; ``dtype`` applies to the transformer."""
        # .to(device) alone when no dtype is asked: .to(dtype=None) makes diffusers warn about fp32 modules
        self.transformer.to(device) if dtype is None else self.transformer.to(device=device, dtype=dtype)
        for m in self.encoders:
            m.to(device=device)
        if device is not None:
            self.execution_device = torch.device(device)
        return self


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


# ----------------------------------------------------------------------------------------------- defaults
WAN_DEFAULTS = dict(height=480, width=832, num_frames=49, steps=30, guidance=5.0, flow_shift=5.0, fps=16)
TINY_BACKBONES = ("toy", "tiny-random", "tiny-hunyuan")
TINY_DEFAULTS = dict(height=64, width=64, num_frames=9, steps=4, guidance=1.0, flow_shift=3.0, fps=8)


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


def tiny_random_backbone(*, seed: int = 0, image_encoder: bool = True, vae: str = "wan",
                         words: list[str] | None = None, layers: int = 2) -> Backbone:
    """Tiny random Wan2.1-I2V stack built from config (nothing downloaded), for tests.

    ``vae="wan"``: a tiny ``AutoencoderKLWan`` (x8 spatial, x4 temporal, z=16, real Wan geometry).
    ``vae="patchify"``: the toy backbone's lossless VAE (x2 spatial). ``image_encoder``: include the CLIP branch.
    ``layers``: transformer blocks (more for block-swapping tests).
    """
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
    )

    torch.manual_seed(seed)
    text_dim, clip_dim = 32, 32
    if vae == "wan":
        v = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                             temperal_downsample=[False, True, True])
    elif vae == "patchify":
        v = PatchifyVAE(scale_factor_spatial=2)
    else:
        raise ValueError(f"vae must be 'wan' or 'patchify', got {vae!r}")
    z = v.config.z_dim
    heads, head_dim = 2, 12
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, in_channels=2 * z + 4,
        out_channels=z, text_dim=text_dim, freq_dim=32, ffn_dim=48, num_layers=layers, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", image_dim=clip_dim if image_encoder else None,
        added_kv_proj_dim=heads * head_dim if image_encoder else None, rope_max_seq_len=64)
    words = words or "a the red green blue yellow disc square moves circles left right up down , fast slow".split()
    tokenizer = _word_tokenizer(words)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=text_dim, d_kv=8, d_ff=64,
                                               num_layers=1, num_heads=4, relative_attention_num_buckets=8))
    enc = proc = None
    if image_encoder:
        enc = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=clip_dim, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, image_size=32, patch_size=8))
        proc = clip_image_processor_class()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    for m in (transformer, v, text_encoder, enc):
        if m is not None:
            m.eval()
    # image_dim set -> Wan's attention splits text at a hard-coded 512 tokens, so text must be 512 long
    return Backbone("tiny-random", transformer, v, scheduler, tokenizer, text_encoder, enc, proc,
                    max_sequence_length=512 if image_encoder else 16, defaults=dict(TINY_DEFAULTS))


def _load_folder(path: Path, dtype, device) -> Backbone:
    from transformers import AutoTokenizer, CLIPVisionModel, UMT5EncoderModel

    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).exists() else {}
    missing = [c for c in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer") if not (path / c).is_dir()]
    if missing:
        raise FileNotFoundError(f"{path} is not a backbone folder: missing {missing}. Write one with "
                                "Backbone.save_pretrained(), or give a Hub id such as " + WAN_480P)
    tname = _class_name(path / "transformer", meta.get("transformer_class"))
    if tname == "HunyuanVideoTransformer3DModel":
        return _load_hunyuan_folder(path, meta, dtype, device)
    tcls = TRANSFORMER_CLASSES[tname]
    vcls = VAE_CLASSES[_class_name(path / "vae", meta.get("vae_class"))]
    sname = json.loads((path / "scheduler" / "scheduler_config.json").read_text()).get("_class_name", "")
    scls = FlowMatchEulerDiscreteScheduler if sname == "FlowMatchEulerDiscreteScheduler" else UniPCMultistepScheduler
    transformer = tcls.from_pretrained(path / "transformer", torch_dtype=dtype)
    vae = vcls.from_pretrained(path / "vae", torch_dtype=torch.float32)

    def load_text_encoder():
        return UMT5EncoderModel.from_pretrained(path / "text_encoder", dtype=dtype).eval()
    enc = proc = None
    if (path / "image_encoder").is_dir():  # fp32, as for the Hub model and in diffusers' Wan docs
        enc = CLIPVisionModel.from_pretrained(path / "image_encoder", dtype=torch.float32)
        proc = clip_image_processor_class().from_pretrained(path / "image_processor")
    bb = Backbone(meta.get("name", path.name), transformer, vae, scls.from_pretrained(path / "scheduler"),
                  AutoTokenizer.from_pretrained(path / "tokenizer"), load_text_encoder(), enc, proc,
                  max_sequence_length=int(meta.get("max_sequence_length", 512)),
                  defaults=meta.get("defaults") or wan_defaults_for(transformer, path.name),
                  text_encoder_loader=load_text_encoder)
    for m in (bb.transformer, *bb.encoders):
        m.eval()
    return place(bb, device)


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


def wan_defaults_for(transformer, name: str) -> dict:
    """Sampler/size defaults of a Wan folder without our metadata: 720P checkpoints get 1280x720."""
    d = dict(WAN_DEFAULTS)
    if "720" in name or "720" in str(transformer.config.get("_name_or_path", "")):
        d.update(height=720, width=1280)
    return d


def _load_hunyuan_folder(path: Path, meta: dict, dtype, device) -> Backbone:
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoTransformer3DModel
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE
    from transformers import AutoTokenizer, CLIPTextModel, LlavaForConditionalGeneration

    from .hunyuan import HUNYUAN_DEFAULTS

    missing = [c for c in ("text_encoder_2", "tokenizer_2", "image_processor") if not (path / c).is_dir()]
    if missing:
        raise FileNotFoundError(f"{path} holds a HunyuanVideo transformer but lacks {missing}")
    bb = Backbone(meta.get("name", path.name),
                  HunyuanVideoTransformer3DModel.from_pretrained(path / "transformer", torch_dtype=dtype),
                  AutoencoderKLHunyuanVideo.from_pretrained(path / "vae", torch_dtype=torch.float32),
                  FlowMatchEulerDiscreteScheduler.from_pretrained(path / "scheduler"),
                  AutoTokenizer.from_pretrained(path / "tokenizer"),
                  LlavaForConditionalGeneration.from_pretrained(path / "text_encoder", dtype=dtype), None,
                  clip_image_processor_class().from_pretrained(path / "image_processor"),
                  max_sequence_length=int(meta.get("max_sequence_length", 256)),
                  defaults=meta.get("defaults") or dict(HUNYUAN_DEFAULTS),
                  tokenizer_2=AutoTokenizer.from_pretrained(path / "tokenizer_2"),
                  text_encoder_2=CLIPTextModel.from_pretrained(path / "text_encoder_2", dtype=dtype),
                  prompt_template=meta.get("prompt_template") or dict(DEFAULT_PROMPT_TEMPLATE))
    bb.adapter  # noqa: B018 - refuses a token_replace transformer with a clear message
    for m in (bb.transformer, *bb.encoders):
        m.eval()
    return place(bb, device)


def _class_name(folder: Path, fallback: str | None) -> str:
    cfg = folder / "config.json"
    name = json.loads(cfg.read_text()).get("_class_name") if cfg.exists() else None
    return name or fallback or "WanTransformer3DModel"


def _load_hub(repo_id: str, dtype, device) -> Backbone:  # pragma: no cover - needs the Hub and a GPU
    """The real Wan2.1-I2V-14B in diffusers format. ~33 GB bf16 transformer + 11 GB UMT5 + 2.5 GB CLIP (fp32) + VAE,
    all loaded on the CPU: the stages move to the GPU only what they need (see :mod:`loraedit_nb.memory`)."""
    from transformers import CLIPVisionModel, UMT5EncoderModel

    image_encoder = CLIPVisionModel.from_pretrained(repo_id, subfolder="image_encoder", dtype=torch.float32)
    vae = AutoencoderKLWan.from_pretrained(repo_id, subfolder="vae", torch_dtype=torch.float32)
    proc = clip_image_processor_class().from_pretrained(repo_id, subfolder="image_processor")
    pipe = WanImageToVideoPipeline.from_pretrained(repo_id, vae=vae, image_encoder=image_encoder, image_processor=proc,
                                                   torch_dtype=dtype)
    defaults = dict(WAN_DEFAULTS)
    if "720P" in repo_id:
        defaults.update(height=720, width=1280)
    bb = Backbone(repo_id, pipe.transformer, pipe.vae, pipe.scheduler, pipe.tokenizer, pipe.text_encoder,
                  pipe.image_encoder, pipe.image_processor, max_sequence_length=512, defaults=defaults,
                  text_encoder_loader=lambda: UMT5EncoderModel.from_pretrained(
                      repo_id, subfolder="text_encoder", dtype=dtype).eval())
    return place(bb, device)


def load_backbone(name_or_path: str | os.PathLike = "toy", dtype: torch.dtype = torch.float32,
                  device: str | torch.device | None = None) -> Backbone:
    """Load a backbone by name (``"toy"``, ``"tiny-random"``, ``"tiny-hunyuan"``, ``"hunyuan-i2v"``), Hub id, or
    local folder.

    ``dtype`` applies to the transformer and encoders (the VAE stays float32, as diffusers recommends for Wan).
    Use ``torch.bfloat16`` and ``device="cuda"`` for the 14B model: its weights are then loaded on the **CPU** and
    ``device`` becomes the execution device; training and editing bring each component to the GPU only for its own
    stage, in the storage form of the memory preset (``memory_preset=``), so no tier needs room for all 47 GB.
    Tiny backbones move to ``device`` whole. Under ``accelerate launch`` ``"cuda"`` means this rank's GPU.
    """
    name = str(name_or_path)
    if name == "tiny-hunyuan":
        from .hunyuan import tiny_random_hunyuan

        bb = tiny_random_hunyuan()
        return place(bb.to(None, dtype) if dtype != torch.float32 else bb, device)
    if name in ("hunyuan-i2v", "hunyuanvideo-community/HunyuanVideo-I2V-33ch"):
        from .hunyuan import HUNYUAN_I2V, load_hunyuan_hub

        return load_hunyuan_hub(HUNYUAN_I2V, dtype, device)
    if name == "tiny-random":
        bb = tiny_random_backbone()
        return place(bb.to(None, dtype) if dtype != torch.float32 else bb, device)
    if name == "toy":
        if not (TOY_DIR / "transformer").is_dir():
            raise FileNotFoundError(
                f"the toy backbone is missing from {TOY_DIR}. It ships with the repository; if you deleted it, "
                "re-create it with `python -m loraedit_nb.toyworld.pretrain` (CPU hours) or restore data/ from git.")
        with _no_weight_bars():
            return _load_folder(TOY_DIR, dtype, device)
    path = Path(name).expanduser()
    if path.exists():
        return _load_folder(path, dtype, device)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        if "hunyuan" in name.lower():
            from .hunyuan import load_hunyuan_hub

            return load_hunyuan_hub(name, dtype, device)
        return _load_hub(name, dtype, device)
    raise FileNotFoundError(f"no backbone {name!r}: use 'toy', 'tiny-random', 'tiny-hunyuan', 'hunyuan-i2v', a "
                            f"local folder or a Hub id like {WAN_480P!r}")
