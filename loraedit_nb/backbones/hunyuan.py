"""HunyuanVideo-I2V as a second backbone: LoRA-Edit's mask and condition mapped onto its image conditioning.

How diffusers' ``HunyuanVideoImageToVideoPipeline`` conditions on the image (``transformer.config.
image_condition_type``):

* ``"latent_concat"`` (``hunyuanvideo-community/HunyuanVideo-I2V-33ch``): the transformer reads 33 channels per
  latent voxel, ``[noisy latent (16) | image latent (16) | mask (1)]``. The image latent is the VAE latent of the
  first frame on latent frame 0 and **zero** on every later latent frame; the mask is 1 on latent frame 0 and 0
  after. This is the variant LoRA-Edit maps onto, and the one ``load_backbone("hunyuan-i2v")`` loads.
* ``"token_replace"`` (``hunyuanvideo-community/HunyuanVideo-I2V``, 16 channels): the first latent frame's tokens
  are *replaced* by the clean image latent (with their own timestep-0 modulation). There is no mask channel, so a
  spatiotemporal mask has nowhere to go without changing the architecture — LoRA-Edit's premise. Loading such a
  checkpoint raises an error that says so.

The mapping (``latent_concat``):

=================================  ============================================================================
LoRA-Edit                          HunyuanVideo-I2V-33ch
=================================  ============================================================================
condition video (source with the   VAE latent of the condition video, multiplied by the latent keep mask: kept
edit region greyed; frame 0 whole) voxels carry the source, generated voxels are **0** — Hunyuan's own "nothing
                                   given" value (the stock pipeline zeroes frames >= 1). 1:1 for a first-frame-only
                                   mask; for spatial masks the zero fill replaces Wan's encoded grey.
mask, 4 channels per latent frame  **1 channel** per latent frame: a latent voxel counts as kept only if *all* the
(one per pixel frame)              pixel frames it covers are kept (min over the 4), so nothing of the edit region
                                   ever leaks in through the condition. An approximation: Wan sees which of the 4
                                   frames are kept; Hunyuan sees only "all of them or not".
edited later frames placed in the  **not expressible**: a given frame shares its latent frame (and its one mask
condition; first-last-frame mode   channel) with 3 generated ones. Refused with a message; the appearance regime
                                   (training on edited frames) works as on Wan.
first frame                        latent frame 0, encoded from frame 0 alone as the stock pipeline encodes the
                                   image (the VAE's GroupNorm spans time, so frame 0 inside the clip would encode
                                   differently) — exact, tested against the stock pipeline.
text + CLIP image tokens           Llava text encoder that *sees the conditioning image* (its image tokens join
                                   the prompt) + pooled CLIP text. Training encodes each sample's prompt with its
                                   first frame; inference with the edited first frame. Appearance samples show it
                                   the *source* frame (as the official Wan code shows CLIP) while their target is
                                   the edited one: on Hunyuan ~288 tokens of the unedited frame then sit in the
                                   text stream. Unmeasured; an ablation on the real model would settle it.
output frames                      all ``T`` frames are decoded. (The stock pipeline drops the first 4 decoded
                                   frames of its output, as the official code does; LoRA-Edit needs every frame
                                   aligned with the source, so we decode the full latent ourselves.)
=================================  ============================================================================

Training target and timesteps are the same as Wan's (rectified flow, velocity ``eps - x0``, timestep ``1000 t``),
so :mod:`loraedit_nb.loss` and :mod:`loraedit_nb.training` run unchanged through :class:`HunyuanI2VAdapter`.
The tiny random configuration for tests is built in :mod:`.toy`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoImageToVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE

from ..memory import StagedPipelineMixin, onload
from .base import Adapter, Backbone, _pil, clip_image_processor_class, place, register_family
from .latents import LatentGeometry, check_no_keyframes, encode, pack_mask
from .weights import LoadOptions, load_transformer

HUNYUAN_I2V = "hunyuanvideo-community/HunyuanVideo-I2V-33ch"
# 480p settings (the paper's resolution); the 33ch model is run without CFG by its authors (guidance 1)
HUNYUAN_DEFAULTS = dict(height=480, width=832, num_frames=49, steps=50, guidance=1.0, flow_shift=7.0, fps=16)
TINY_HUNYUAN_DEFAULTS = dict(height=64, width=64, num_frames=9, steps=4, guidance=1.0, flow_shift=7.0, fps=8)

# LoRA on every Linear of the dual-stream and single-stream blocks (attention of both streams + MLPs), the analogue
# of the official Wan targets; the token refiner (text side) and the final projection are left alone. A regex, so
# that the top-level ``proj_out`` and the refiner's ``attn.to_q`` are not caught by suffix matching.
HUNYUAN_TARGETS = (r".*(transformer_blocks|single_transformer_blocks)\.\d+\.("
                   r"attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
                   r"|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2)|proj_mlp|proj_out)")


# ----------------------------------------------------------------------------------------------- the condition
def pack_mask_1ch(keep: torch.Tensor, geometry: LatentGeometry, *, reduce: str = "nearest") -> torch.Tensor:
    """Pixel-rate keep mask ``(B, 1, T, H, W)`` (1 = keep) -> Hunyuan's one mask channel ``(B, 1, L, h, w)``:
    kept only where every pixel frame of the latent frame is kept (see the module docstring)."""
    return pack_mask(keep, geometry, reduce=reduce).amin(1, keepdim=True)


def hunyuan_condition(vae, cond_pixels: torch.Tensor, keep: torch.Tensor, *, reduce: str = "nearest"
                      ) -> torch.Tensor:
    """``cond_pixels`` ``(B, 3, T, H, W)`` in [-1, 1] + ``keep`` ``(B, 1, T, H, W)`` -> ``(B, z + 1, L, h, w)`` =
    ``cat([condition latent * mask, mask])``, the channels after the noisy latent in Hunyuan's 33-channel input.
    A later frame given alone (keyframe) raises: see :func:`check_no_keyframes`."""
    check_no_keyframes(keep, LatentGeometry.of(vae).temporal, model="HunyuanVideo-I2V",
                       why="one mask channel per latent frame")
    lat = encode(vae, cond_pixels)
    # latent frame 0 from frame 0 alone, as the stock pipeline encodes the image: Hunyuan's VAE normalises over
    # time (GroupNorm), so frame 0's latent inside a clip differs from the image's own
    lat[:, :, :1] = encode(vae, cond_pixels[:, :, :1])
    m = pack_mask_1ch(keep.to(lat.device), LatentGeometry.of(vae), reduce=reduce).to(lat.dtype)
    return torch.cat([lat * m, m], dim=1)


# ----------------------------------------------------------------------------------------------- pipeline
class MaskedHunyuanI2VPipeline(StagedPipelineMixin, HunyuanVideoImageToVideoPipeline):
    """``HunyuanVideoImageToVideoPipeline`` that takes a prepared condition ``(B or 1, z + 1, L, h, w)``.

    The stock ``__call__`` runs unchanged (prompt encoding with the image, scheduler, true CFG, callbacks); a
    forward pre-hook on the transformer swaps the condition channels of its input (``[image latent | mask]``) for
    LoRA-Edit's. With ``condition=`` the full latent is decoded (all T frames, see the module docstring) and
    returned as float ``(B, T, H, W, 3)`` in [0, 1]; without it the pipeline is the stock one.
    """

    def encode_prompt(self, *args, **kwargs):
        with self._encoders_for("text_encoder", "text_encoder_2"):
            return super().encode_prompt(*args, **kwargs)

    @torch.no_grad()
    def __call__(self, *args, condition: torch.Tensor | None = None, **kwargs):
        if condition is None:
            return super().__call__(*args, **kwargs)
        z = self.transformer.config.out_channels

        def swap(module, args_, kw):
            hs = kw["hidden_states"] if "hidden_states" in kw else args_[0]
            if hs.shape[1] != z + condition.shape[1] or hs.shape[2:] != condition.shape[2:]:
                raise ValueError(f"condition {tuple(condition.shape)} does not fit the transformer input "
                                 f"{tuple(hs.shape)}: build it from the clip passed as height/width/num_frames")
            hs = torch.cat([hs[:, :z], condition.to(hs).expand(hs.shape[0], -1, -1, -1, -1)], dim=1)
            if "hidden_states" in kw:
                kw["hidden_states"] = hs
                return args_, kw
            return (hs, *args_[1:]), kw

        final = {}
        user_cb = kwargs.pop("callback_on_step_end", None)
        kwargs.pop("output_type", None)  # the full latent is decoded here, always to float frames
        inputs = list(kwargs.pop("callback_on_step_end_tensor_inputs", None) or getattr(user_cb, "tensor_inputs", None)
                      or ["latents"])
        if "latents" not in inputs:
            inputs.append("latents")

        def keep_latents(pipe, i, t, kw):
            out = user_cb(pipe, i, t, kw) if user_cb is not None else {}
            final["latents"] = out.get("latents", kw["latents"]) if out else kw["latents"]
            return out or {}

        handle = self.transformer.register_forward_pre_hook(swap, with_kwargs=True)
        with self._room_to_decode():  # previews from a callback and the final decode
            try:
                super().__call__(*args, callback_on_step_end=keep_latents,
                                 callback_on_step_end_tensor_inputs=inputs, output_type="latent", **kwargs)
            finally:
                handle.remove()
            lat = final["latents"].to(self.vae.dtype) / self.vae_scaling_factor
            video = self.vae.decode(lat, return_dict=False)[0]
        return self.video_processor.postprocess_video(video, output_type="np")


# ----------------------------------------------------------------------------------------------- adapter
class HunyuanI2VAdapter(Adapter):
    """HunyuanVideo-I2V (``latent_concat``): condition ``(B, z + 1, L, h, w)`` = ``[latent * mask | mask]``."""

    family = "hunyuan"
    supports_keyframes = False  # one mask channel per latent frame: see check_no_keyframes
    lora_targets = HUNYUAN_TARGETS
    pipeline_class = HunyuanVideoImageToVideoPipeline

    @classmethod
    def for_transformer(cls, transformer) -> HunyuanI2VAdapter:
        c = getattr(transformer, "module", transformer).config
        kind = c.get("image_condition_type")
        if kind != "latent_concat":
            raise ValueError(
                f"this HunyuanVideo transformer conditions on the image by {kind!r}, which has no mask channel, so "
                "LoRA-Edit's spatiotemporal mask cannot be fed to it without changing the architecture. Use the "
                f"latent-concat variant ({HUNYUAN_I2V}, 33 input channels).")
        return cls()

    def mask_channels(self, vae) -> int:
        return 1

    def condition(self, vae, cond_pixels, keep, *, reduce="nearest"):
        return hunyuan_condition(vae, cond_pixels, keep, reduce=reduce)

    def mask_part(self, condition):
        return condition[:, -1:]

    def encode_context(self, backbone, prompt, image, memo=None):
        memo = {} if memo is None else memo
        if image is None:
            raise ValueError("HunyuanVideo-I2V's text encoder needs the conditioning image with the prompt")
        key = (prompt, hashlib.sha1(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest())
        if key not in memo:
            pipe = self.pipeline(backbone)
            with torch.no_grad():
                emb, pooled, mask = pipe.encode_prompt(
                    image=_pil(image), prompt=prompt, prompt_template=backbone.prompt_template,
                    max_sequence_length=backbone.max_sequence_length, device=backbone.device,
                    image_embed_interleave=2)
            guidance = None
            if backbone.transformer.config.guidance_embeds:  # embedded guidance, as the pipeline passes it
                guidance = torch.tensor([backbone.defaults.get("embedded_guidance", 1.0) * 1000.0])
            memo[key] = {"encoder_hidden_states": emb.float(), "encoder_attention_mask": mask.float(),
                         "pooled_projections": pooled.float(), "guidance": guidance}
        return memo[key]

    def pipeline(self, backbone, cls=None):
        cls = cls or self.pipeline_class
        return cls(text_encoder=backbone.text_encoder, tokenizer=backbone.tokenizer,
                   transformer=backbone.transformer, vae=backbone.vae, scheduler=backbone.scheduler,
                   text_encoder_2=backbone.text_encoder_2, tokenizer_2=backbone.tokenizer_2,
                   image_processor=backbone.image_processor)

    def generate(self, backbone, condition, first_frame, *, prompt, negative_prompt, num_frames, height, width,
                 steps, guidance, flow_shift, generator, callback_on_step_end=None, progress=True):
        pipe = self.staged_pipeline(backbone, MaskedHunyuanI2VPipeline, flow_shift, progress)
        cfg = guidance > 1.0  # true CFG, as Wan's pipeline does it: a missing negative prompt is the empty one
        with onload(backbone.vae, backbone.device):
            out = pipe(image=_pil(first_frame), prompt=prompt,
                       negative_prompt=(negative_prompt or "") if cfg else None,
                       true_cfg_scale=guidance if cfg else 1.0,
                       guidance_scale=backbone.defaults.get("embedded_guidance", 1.0), condition=condition,
                       height=height, width=width, num_frames=num_frames, num_inference_steps=steps,
                       prompt_template=backbone.prompt_template, max_sequence_length=backbone.max_sequence_length,
                       generator=generator, callback_on_step_end=callback_on_step_end)
        return np.asarray(out[0], dtype=np.float32)


register_family("hunyuan", lambda tr: isinstance(tr, HunyuanVideoTransformer3DModel), HunyuanI2VAdapter.for_transformer)


# ----------------------------------------------------------------------------------------------- tiny + Hub
SPECIAL_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>")
TINY_TEMPLATE = ("<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video according to the "
                 "reference image:<|eot_id|>\n\n<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n")


def prompt_template_for(tokenizer, template: str, image_tokens: int) -> dict:
    """The pipeline's ``prompt_template`` dict for a tokenizer: where the image placeholder sits and how many
    template tokens precede the user text (``crop_start``), counted with that tokenizer."""
    pre = tokenizer(template.split("{}")[0]).input_ids
    start = pre.index(tokenizer.convert_tokens_to_ids("<image>"))
    return {"template": template, "crop_start": len(pre), "image_emb_start": start,
            "image_emb_end": start + image_tokens, "image_emb_len": image_tokens}


def load_hunyuan_hub(repo_id: str, dtype, device, opts: LoadOptions = LoadOptions()):  # pragma: no cover - Hub
    """The real HunyuanVideo-I2V-33ch in diffusers format (~26 GB bf16 transformer, 13 GB straight into fp8 with
    ``opts.fp8``, + 15 GB Llava + CLIP + VAE). The Llava text encoder also reads the conditioning image, so it is
    kept (``opts.stream_text_encoder`` does not apply)."""
    cfg = HunyuanVideoTransformer3DModel.load_config(repo_id, subfolder="transformer")  # a few KB
    if cfg.get("image_condition_type") != "latent_concat":  # refuse token_replace before the 26 GB download
        HunyuanI2VAdapter.for_transformer(type("T", (), {"config": cfg})())
    transformer = load_transformer(HunyuanVideoTransformer3DModel, repo_id, "transformer", dtype, fp8=opts.fp8)
    proc = clip_image_processor_class().from_pretrained(repo_id, subfolder="image_processor")
    pipe = HunyuanVideoImageToVideoPipeline.from_pretrained(repo_id, transformer=transformer, image_processor=proc,
                                                            torch_dtype=dtype)
    pipe.vae.to(torch.float32)
    bb = Backbone(repo_id, pipe.transformer, pipe.vae, pipe.scheduler, pipe.tokenizer, pipe.text_encoder, None,
                  pipe.image_processor, max_sequence_length=256, defaults=dict(HUNYUAN_DEFAULTS),
                  tokenizer_2=pipe.tokenizer_2, text_encoder_2=pipe.text_encoder_2,
                  prompt_template=dict(DEFAULT_PROMPT_TEMPLATE))
    return place(bb, device)  # weights stay on the CPU; stages bring what they need to the GPU


def load_hunyuan_folder(path, meta: dict, dtype, device, opts: LoadOptions = LoadOptions()) -> Backbone:
    """A HunyuanVideo-I2V backbone folder written by :meth:`Backbone.save_pretrained`."""
    from transformers import AutoTokenizer, CLIPTextModel, LlavaForConditionalGeneration


    missing = [c for c in ("text_encoder_2", "tokenizer_2", "image_processor") if not (path / c).is_dir()]
    if missing:
        raise FileNotFoundError(f"{path} holds a HunyuanVideo transformer but lacks {missing}")
    bb = Backbone(meta.get("name", path.name),
                  load_transformer(HunyuanVideoTransformer3DModel, path, "transformer", dtype, fp8=opts.fp8),
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
