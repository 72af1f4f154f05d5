"""Wan2.1-I2V (and the toy backbone, which has Wan's architecture): the family's adapter, condition packing, masked
pipeline and loading.

Wan2.1-I2V's transformer reads 36 channels per latent voxel::

    [ noisy latent (z) | mask (4) | condition latent (z) ]      z = vae.config.z_dim (16 for Wan)

LoRA-Edit's condition (:mod:`loraedit_nb.conditioning`) goes into the last ``4 + z`` channels:
:func:`condition_from_tensors` packs the pixel keep mask into the 4 mask channels (one per pixel frame of a latent
frame, :func:`~loraedit_nb.backbones.latents.pack_mask`) and encodes the condition video.
:class:`MaskedWanI2VPipeline` is diffusers' stock ``WanImageToVideoPipeline`` with one change: ``prepare_latents``
returns that condition instead of "first frame + zeros". Scheduler, classifier-free guidance, prompt encoding,
callbacks and offloading are diffusers' own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanTransformer3DModel,
)
from diffusers.utils.torch_utils import randn_tensor

from ..memory import StagedPipelineMixin, evicted_all, onload
from .base import (
    Adapter,
    Backbone,
    _pil,
    clip_image_processor_class,
    place,
    register_family,
)
from .latents import LatentGeometry, check_no_keyframes, encode, pack_mask
from .weights import LoadOptions, load_transformer, pretrained_loader

WAN_480P = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
WAN_720P = "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"
WAN22_A14B = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
WAN22_TI2V = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
# Official sampling settings (Wan-Video/Wan2.2 wan/configs/wan_i2v_A14B.py, wan_ti2v_5B.py): A14B 40 steps, shift 5,
# guidance 3.5 for both experts, boundary 0.9, 16 fps; TI2V-5B 50 steps, shift 5, guidance 5, 24 fps. Sizes are the
# paper's 480p (TI2V's token grid needs multiples of 32: 832 x 480 is 26 x 15 tokens).
WAN22_A14B_DEFAULTS = dict(height=480, width=832, num_frames=49, steps=40, guidance=3.5, flow_shift=5.0, fps=16)
WAN22_TI2V_DEFAULTS = dict(height=480, width=832, num_frames=49, steps=50, guidance=5.0, flow_shift=5.0, fps=24)
WAN_DEFAULTS = dict(height=480, width=832, num_frames=49, steps=30, guidance=5.0, flow_shift=5.0, fps=16)

# Wan's standard negative prompt (what the paper's code passes at inference)
WAN_NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly "
    "drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy "
    "background, three legs, many people in the background, walking backwards"
)

# LoRA targets, as the paper's official code: every Linear of every block — self-attention, text cross-attention,
# FFN — except the image cross-attention's K/V (``attn2.add_k_proj`` / ``add_v_proj``, the official k_img / v_img)
WAN_TARGETS = (
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
    "ffn.net.0.proj", "ffn.net.2",
)


# ----------------------------------------------------------------------------------------------- the condition
def condition_from_tensors(vae, cond_pixels: torch.Tensor, keep: torch.Tensor, *, reduce: str = "nearest"
                           ) -> torch.Tensor:
    """Batched core: ``cond_pixels`` ``(B, 3, T, H, W)`` in [-1, 1] and ``keep`` ``(B, 1, T, H, W)`` (1 = keep) ->
    the 20-channel (for Wan) condition ``(B, 4 + z, T_lat, H/s, W/s)`` = ``cat([packed mask, condition latent])``.
    """
    geo = LatentGeometry.of(vae)
    lat = encode(vae, cond_pixels)
    m = pack_mask(keep.to(lat.device), geo, reduce=reduce).to(lat.dtype)
    return torch.cat([m, lat], dim=1)


def token_keep(keep: torch.Tensor, geometry: LatentGeometry, patch: tuple[int, int] = (2, 2)) -> torch.Tensor:
    """Wan2.2-TI2V's hard token mask from a pixel keep mask ``(B, 1, T, H, W)`` (1 = keep): ``(B, 1, L, h, w)`` in
    {0, 1} at latent resolution, 1 only where a whole transformer token is kept — all ``temporal`` pixel frames of
    its latent frame (the union of the edit region over them) and its whole ``s * patch`` pixel square (32 px for
    TI2V-5B: x16 VAE, 2x2 patches; the pipeline reads token timesteps at ``[:, ::2, ::2]``, so the mask must be
    constant over each patch). Latent frame 0 holds pixel frame 0 alone."""
    B, _, T, H, W = keep.shape
    tc, s = geometry.temporal, geometry.spatial
    ph, pw = patch
    if H % (s * ph) or W % (s * pw):
        raise ValueError(f"Wan2.2-TI2V reads the mask per {s * ph} x {s * pw} px token: the clip is {W}x{H} (WxH); "
                         f"resize/crop it to multiples of {s * ph} px (prepare_video(video, T, H, W))")
    frames = torch.cat([keep[:, :, :1].expand(-1, -1, tc, -1, -1), keep[:, :, 1:]], dim=2).float()
    L = frames.shape[2] // tc
    whole = frames.reshape(B, L, tc, H, W).amin(2)  # kept on every pixel frame of the latent frame
    tok = -F.max_pool2d(-whole, kernel_size=(s * ph, s * pw))  # kept on every pixel of the token
    return tok.repeat_interleave(ph, dim=-2).repeat_interleave(pw, dim=-1)[:, None]


def ti2v_condition(vae, cond_pixels: torch.Tensor, keep: torch.Tensor, *, reduce: str = "nearest"
                   ) -> torch.Tensor:
    """Wan2.2-TI2V-5B's LoRA-Edit condition: ``cond_pixels`` ``(B, 3, T, H, W)`` in [-1, 1] + ``keep`` ``(B, 1, T,
    H, W)`` -> ``(B, z + 1, L, h, w)`` = ``cat([condition latent, token keep mask])``. Kept tokens are replaced by
    the condition latent (timestep 0), the others are generated; :func:`token_keep` says which. Latent frame 0 is
    encoded from frame 0 alone, as the stock pipeline encodes the image. ``reduce`` is accepted for the common
    interface and ignored: a token is kept only if all of it is (never leaks the edit region)."""
    check_no_keyframes(keep, LatentGeometry.of(vae).temporal, model="Wan2.2-TI2V",
                       why="one token mask per latent frame")
    lat = encode(vae, cond_pixels)
    lat[:, :, :1] = encode(vae, cond_pixels[:, :, :1])
    m = token_keep(keep.to(lat.device), LatentGeometry.of(vae)).to(lat.dtype)
    return torch.cat([lat, m], dim=1)


# ----------------------------------------------------------------------------------------------- pipeline
class MaskedWanI2VPipeline(StagedPipelineMixin, WanImageToVideoPipeline):
    """``WanImageToVideoPipeline`` that takes a prepared condition.

    Call with ``condition=`` a ``(B or 1, 4 + z, T_lat, h, w)`` tensor from
    :func:`loraedit_nb.conditioning.build_condition` (or ``condition_from_tensors`` for batches); everything else
    is the stock ``__call__``. Without ``condition`` it behaves exactly like the stock pipeline.
    The same class runs Wan2.2: with ``transformer_2`` + ``boundary_ratio`` (I2V-A14B, two experts) nothing changes
    here; with ``expand_timesteps`` (TI2V-5B) the condition is ``(B or 1, z + 1, T_lat, h, w)``
    (:func:`ti2v_condition`) and ``prepare_latents`` returns the stock 3-tuple ``(latents, condition latent,
    mask)`` with the mask widened from "frame 0" to LoRA-Edit's token mask (1 = generate).
    """

    _lora_condition: torch.Tensor | None = None

    def __call__(self, *args, condition: torch.Tensor | None = None, **kwargs):
        self._lora_condition = condition
        try:
            with self._room_to_decode():
                return super().__call__(*args, **kwargs)
        finally:
            self._lora_condition = None

    def encode_prompt(self, *args, **kwargs):
        with self._encoders_for("text_encoder"):
            return super().encode_prompt(*args, **kwargs)

    def encode_image(self, *args, **kwargs):
        with self._encoders_for("image_encoder"):
            return super().encode_image(*args, **kwargs)

    def prepare_latents(self, image, batch_size, num_channels_latents=16, height=480, width=832, num_frames=81,
                        dtype=None, device=None, generator=None, latents=None, last_image=None):
        cond = self._lora_condition
        if cond is None:
            return super().prepare_latents(image, batch_size, num_channels_latents, height, width, num_frames,
                                           dtype, device, generator, latents, last_image)
        shape = (batch_size, num_channels_latents, (num_frames - 1) // self.vae_scale_factor_temporal + 1,
                 height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial)
        tokens = bool(self.config.expand_timesteps)
        channels = num_channels_latents + (1 if tokens else self.vae_scale_factor_temporal)
        if tuple(cond.shape[2:]) != shape[2:] or cond.shape[1] != channels:
            raise ValueError(
                f"condition shape {tuple(cond.shape)} does not fit a {num_frames}-frame {height}x{width} video "
                f"(expected (B, {channels}, {shape[2]}, {shape[3]}, {shape[4]})): build it from the same clip you "
                "pass as height/width/num_frames, with this backbone's adapter")
        if cond.shape[0] not in (1, batch_size):
            raise ValueError(f"condition batch {cond.shape[0]} must be 1 or {batch_size}")
        # same call as the stock pipeline so that a given generator yields the same noise
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype) if latents is None \
            else latents.to(device=device, dtype=dtype)
        cond = cond.to(device=device, dtype=dtype)
        if cond.shape[0] != batch_size:
            cond = cond.expand(batch_size, -1, -1, -1, -1)
        if tokens:  # the loop blends (1 - m) * condition + m * latents and gives token i the timestep m_i * t
            return latents, cond[:, :num_channels_latents], 1 - cond[:, num_channels_latents:]
        return latents, cond


# ----------------------------------------------------------------------------------------------- adapter
class WanAdapter(Adapter):
    """Wan2.1-I2V (and the toy backbone, which has Wan's architecture).

    Condition ``(B, 4 + z, L, h, w)`` = ``cat([packed mask (4 channels: one per pixel frame of the latent frame),
    condition latent])`` — :func:`loraedit_nb.conditioning.condition_from_tensors`. Context: UMT5 text
    (``encoder_hidden_states``) and, on the 14B model, CLIP image tokens (``encoder_hidden_states_image``).
    """

    family = "wan"
    default_negative_prompt = WAN_NEGATIVE_PROMPT
    expand_timesteps = False  # Wan2.2-TI2V's token-replacement conditioning (WanTI2VAdapter)

    def negative_prompt(self, backbone) -> str:
        return "" if backbone.is_tiny else self.default_negative_prompt  # tiny vocabularies lack its words

    lora_targets = WAN_TARGETS
    pipeline_class = WanImageToVideoPipeline

    def mask_channels(self, vae) -> int:
        return LatentGeometry.of(vae).temporal

    def condition(self, vae, cond_pixels, keep, *, reduce="nearest"):
        return condition_from_tensors(vae, cond_pixels, keep, reduce=reduce)

    def mask_part(self, condition):
        # the 4 mask channels lead (Wan's temporal factor is 4 for every Wan-family VAE, toy included)
        return condition[:, :4]

    def context_modules(self, backbone):
        return [backbone.image_encoder] if backbone.image_encoder is not None else []  # text: Backbone.prompt_cache

    def encode_context(self, backbone, prompt, image, memo=None):
        memo = {} if memo is None else memo
        if prompt not in memo:
            memo[prompt] = backbone.encode_prompt(prompt).float()
        img = backbone.encode_image(image).float() if backbone.has_image_encoder else None
        return {"encoder_hidden_states": memo[prompt], "encoder_hidden_states_image": img}

    def pipeline(self, backbone, cls=None):
        cls = cls or self.pipeline_class
        return cls(tokenizer=backbone.tokenizer, text_encoder=backbone.text_encoder, vae=backbone.vae,
                   scheduler=backbone.scheduler, image_processor=backbone.image_processor,
                   image_encoder=backbone.image_encoder, transformer=backbone.transformer,
                   transformer_2=backbone.transformer_2, boundary_ratio=backbone.boundary_ratio,
                   expand_timesteps=self.expand_timesteps)

    def generate(self, backbone, condition, first_frame, *, prompt, negative_prompt, num_frames, height, width,
                 steps, guidance, flow_shift, generator, callback_on_step_end=None, progress=True):
        pipe = self.staged_pipeline(backbone, MaskedWanI2VPipeline, flow_shift, progress)
        # prompts through the backbone's cache: the text encoder runs (or is reloaded) only for a new prompt
        prompts = [prompt] + ([negative_prompt or ""] if guidance > 1 else [])
        new = "text_encoder" in backbone.evict_for and any(p not in backbone.prompt_cache for p in prompts)
        with evicted_all((backbone.transformer, backbone.transformer_2), backbone.device, new):  # A14B: both
            emb = backbone.encode_prompt(prompt)
            neg = backbone.encode_prompt(negative_prompt or "") if guidance > 1 else None
        with onload(backbone.vae, backbone.device):
            out = pipe(image=_pil(first_frame), prompt_embeds=emb, negative_prompt_embeds=neg, condition=condition,
                       height=height, width=width, num_frames=num_frames, num_inference_steps=steps,
                       guidance_scale=guidance, max_sequence_length=backbone.max_sequence_length, output_type="np",
                       generator=generator, callback_on_step_end=callback_on_step_end).frames
        return np.asarray(out[0], dtype=np.float32)


WAN = WanAdapter()


class WanTI2VAdapter(WanAdapter):
    """Wan2.2-TI2V-5B: no mask channels; the image condition is *token replacement* (diffusers' ``expand_timesteps``).

    Condition ``(B, z + 1, L, h, w)`` = ``cat([condition latent, token keep mask])`` (:func:`ti2v_condition`). Kept
    tokens are the condition's clean latents at timestep 0, the others are noisy with the sampled timestep; the
    transformer reads the 48 latent channels alone. Training builds the same input (:meth:`model_input`) and counts
    only generated tokens in the loss (:meth:`loss_mask`): kept tokens are clean and must not count.
    """

    expand_timesteps = True
    supports_keyframes = False  # one token mask per latent frame (check_no_keyframes)

    def mask_channels(self, vae) -> int:
        return 1

    def condition(self, vae, cond_pixels, keep, *, reduce="nearest"):
        return ti2v_condition(vae, cond_pixels, keep, reduce=reduce)

    def mask_part(self, condition):
        return condition[:, -1:]

    def model_input(self, zt: torch.Tensor, condition: torch.Tensor, t: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = zt.shape[1]
        gen = 1 - condition[:, z:].to(zt.dtype)
        x = (1 - gen) * condition[:, :z].to(zt.dtype) + gen * zt
        # one timestep per token, read at the patch's top-left cell, as the pipeline does (the mask is per token)
        ts = gen[:, 0, :, ::2, ::2].flatten(1) * (t.to(zt.dtype) * 1000)[:, None]
        return x, ts

    def loss_mask(self, condition: torch.Tensor) -> torch.Tensor:
        return 1 - condition[:, -1:]


WAN_TI2V = WanTI2VAdapter()


def _wan_adapter(transformer) -> WanAdapter:
    c = getattr(getattr(transformer, "module", transformer), "config", None)  # None: the default family's adapter
    if c is not None and c.get("in_channels") == c.get("out_channels"):
        return WAN_TI2V  # Wan2.2-TI2V reads the latents alone (no mask channels)
    return WAN


register_family("wan", lambda tr: isinstance(tr, WanTransformer3DModel), _wan_adapter, default=True)


# ----------------------------------------------------------------------------------------------- loading
def wan_defaults_for(transformer, name: str) -> dict:
    """Sampler/size defaults of a Wan folder without our metadata: 720P checkpoints get 1280x720."""
    d = dict(WAN_DEFAULTS)
    if "720" in name or "720" in str(transformer.config.get("_name_or_path", "")):
        d.update(height=720, width=1280)
    return d


def load_wan_hub(repo_id: str, dtype, device, opts: LoadOptions = LoadOptions()) -> Backbone:  # pragma: no cover
    """The real Wan2.1-I2V-14B in diffusers format (needs the Hub). ~33 GB bf16 transformer (16.8 GB loaded straight
    into fp8 with ``opts.fp8``) + 11 GB UMT5 (none with ``opts.stream_text_encoder``) + 2.5 GB CLIP (fp32) + VAE,
    all on the CPU: the stages move to the GPU only what they need (see :mod:`loraedit_nb.memory`)."""
    from transformers import CLIPVisionModel, UMT5EncoderModel

    image_encoder = CLIPVisionModel.from_pretrained(repo_id, subfolder="image_encoder", dtype=torch.float32)
    vae = AutoencoderKLWan.from_pretrained(repo_id, subfolder="vae", torch_dtype=torch.float32)
    proc = clip_image_processor_class().from_pretrained(repo_id, subfolder="image_processor")
    text = pretrained_loader(UMT5EncoderModel, repo_id, "text_encoder", dtype=dtype)
    pipe = WanImageToVideoPipeline.from_pretrained(
        repo_id, vae=vae, image_encoder=image_encoder, image_processor=proc, torch_dtype=dtype,
        transformer=load_transformer(WanTransformer3DModel, repo_id, "transformer", dtype, fp8=opts.fp8),
        text_encoder=None if opts.stream_text_encoder else text())
    defaults = dict(WAN_DEFAULTS)
    if "720P" in repo_id:
        defaults.update(height=720, width=1280)
    bb = Backbone(repo_id, pipe.transformer, pipe.vae, pipe.scheduler, pipe.tokenizer, pipe.text_encoder,
                  pipe.image_encoder, pipe.image_processor, max_sequence_length=512, defaults=defaults,
                  text_encoder_loader=text, text_encoder_streamed=opts.stream_text_encoder)
    return place(bb, device)


def load_wan22_hub(repo_id: str, dtype, device, opts: LoadOptions = LoadOptions()) -> Backbone:
    """Wan2.2 in diffusers format: I2V-A14B (two 14B experts + the Wan2.1 VAE, ~57 GB bf16 of experts on the CPU,
    one on the GPU at a time; 29 GB with ``opts.fp8``) or TI2V-5B (one 5B transformer + the 48-channel x16 VAE).
    No CLIP image encoder: the edited first frame reaches the model through the VAE condition and the prompt only.
    ``repo_id`` may be a local copy of the Hub folder (tested on one written by the stock pipeline's
    ``save_pretrained``)."""
    from transformers import UMT5EncoderModel

    vae = AutoencoderKLWan.from_pretrained(repo_id, subfolder="vae", torch_dtype=torch.float32)
    text = pretrained_loader(UMT5EncoderModel, repo_id, "text_encoder", dtype=dtype)
    experts = {"transformer": load_transformer(WanTransformer3DModel, repo_id, "transformer", dtype, fp8=opts.fp8)}
    if WanImageToVideoPipeline.load_config(repo_id).get("transformer_2", [None])[0] is not None:
        experts["transformer_2"] = load_transformer(WanTransformer3DModel, repo_id, "transformer_2", dtype,
                                                    fp8=opts.fp8)
    pipe = WanImageToVideoPipeline.from_pretrained(repo_id, vae=vae, torch_dtype=dtype, **experts,
                                                   text_encoder=None if opts.stream_text_encoder else text())
    ti2v = bool(pipe.config.expand_timesteps)
    defaults = dict(WAN22_TI2V_DEFAULTS if ti2v else WAN22_A14B_DEFAULTS)
    bb = Backbone(repo_id, pipe.transformer, pipe.vae, pipe.scheduler, pipe.tokenizer, pipe.text_encoder, None, None,
                  max_sequence_length=512, defaults=defaults, transformer_2=pipe.transformer_2,
                  boundary_ratio=pipe.config.boundary_ratio, text_encoder_loader=text,
                  text_encoder_streamed=opts.stream_text_encoder)
    return place(bb, device)


def load_wan_folder(path: Path, meta: dict, transformer_class: type, vae_class: type, dtype, device,
                    opts: LoadOptions = LoadOptions()) -> Backbone:
    """A Wan-family backbone folder (ours, or any diffusers Wan I2V folder) with the given transformer/VAE classes
    (the loader maps class names to classes: Wan's, or the toy's), stored as ``opts`` says."""
    from transformers import AutoTokenizer, CLIPVisionModel, UMT5EncoderModel

    sname = json.loads((path / "scheduler" / "scheduler_config.json").read_text()).get("_class_name", "")
    scls = FlowMatchEulerDiscreteScheduler if sname == "FlowMatchEulerDiscreteScheduler" else UniPCMultistepScheduler
    transformer = load_transformer(transformer_class, path, "transformer", dtype, fp8=opts.fp8)
    transformer_2 = None
    if (path / "transformer_2").is_dir():  # Wan2.2-I2V-A14B's low-noise expert
        transformer_2 = load_transformer(transformer_class, path, "transformer_2", dtype, fp8=opts.fp8).eval()
    vae = vae_class.from_pretrained(path / "vae", torch_dtype=torch.float32)
    text = pretrained_loader(UMT5EncoderModel, path / "text_encoder", None, dtype=dtype)
    enc = proc = None
    if (path / "image_encoder").is_dir():  # fp32, as for the Hub model and in diffusers' Wan docs
        enc = CLIPVisionModel.from_pretrained(path / "image_encoder", dtype=torch.float32)
        proc = clip_image_processor_class().from_pretrained(path / "image_processor")
    bb = Backbone(meta.get("name", path.name), transformer, vae, scls.from_pretrained(path / "scheduler"),
                  AutoTokenizer.from_pretrained(path / "tokenizer"),
                  None if opts.stream_text_encoder else text(), enc, proc,
                  max_sequence_length=int(meta.get("max_sequence_length", 512)),
                  defaults=meta.get("defaults") or wan_defaults_for(transformer, path.name),
                  text_encoder_loader=text, transformer_2=transformer_2,
                  boundary_ratio=meta.get("boundary_ratio"), text_encoder_streamed=opts.stream_text_encoder)
    for m in (bb.transformer, *bb.encoders):
        m.eval()
    return place(bb, device)
