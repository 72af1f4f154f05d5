"""The toy and tiny backbones: the embedded toy model's architecture pieces and the tiny random stacks tests build.

* :class:`PatchifyVAE` — a lossless space-time "VAE" (below);
* :class:`XPredWanTransformer3DModel` — the toy's ``WanTransformer3DModel`` that predicts the clean sample;
* :func:`tiny_random_backbone` (Wan2.1-I2V at tiny random sizes) and :func:`tiny_random_hunyuan`
  (HunyuanVideo-I2V), built from config with nothing downloaded.

The toy backbone itself is pretrained by :mod:`loraedit_nb.toyworld.pretrain` and loaded from ``data/toy_backbone``
by :func:`loraedit_nb.backbones.load_backbone`.

**PatchifyVAE.** A lossless space-time "VAE" with ``AutoencoderKLWan``'s interface and Wan's latent geometry.

Wan's VAE keeps frame 0 alone and compresses every following 4 frames into one latent frame, and shrinks space by
8. On a CPU that VAE is the bottleneck and would need hours of training for a toy world. This class only
*rearranges* pixels: frame 0 is repeated 4 times, then every ``4 x s x s`` block of a colour channel becomes ``4 s^2``
latent channels. Reconstruction is exact, encoding is free, and — because the geometry (4x temporal with frame 0
alone, s x spatial, ``z_dim`` channels, ``latents_mean/std``) and the interface (``encode(x).latent_dist.mode()``,
``decode(z).sample``) are Wan's — diffusers' ``WanImageToVideoPipeline`` and this package's condition builder run
on it unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoTransformer3DModel,
    UniPCMultistepScheduler,
    WanTransformer3DModel,
)
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

from .base import Backbone, _word_tokenizer, clip_image_processor_class
from .hunyuan import SPECIAL_TOKENS, TINY_HUNYUAN_DEFAULTS, TINY_TEMPLATE, prompt_template_for

TINY_DEFAULTS = dict(height=64, width=64, num_frames=9, steps=4, guidance=1.0, flow_shift=3.0, fps=8)


class PatchifyVAE(ModelMixin, ConfigMixin):
    """Exact space-time patchify. ``encode``: ``(B, 3, 1 + 4k, H, W)`` -> ``(B, 3*4*s*s, 1 + k, H/s, W/s)``.

    Values pass through unchanged (pixels in [-1, 1] become latents in [-1, 1]); ``latents_mean = 0`` and
    ``latents_std = 1`` so the pipeline's normalisation is the identity.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(self, in_channels: int = 3, scale_factor_spatial: int = 2, scale_factor_temporal: int = 4,
                 z_dim: int | None = None, latents_mean: list[float] | None = None,
                 latents_std: list[float] | None = None):
        super().__init__()
        z = in_channels * scale_factor_temporal * scale_factor_spatial**2
        if z_dim is not None and z_dim != z:
            raise ValueError(f"z_dim must be {z} for in_channels={in_channels}, s={scale_factor_spatial}")
        self.register_to_config(z_dim=z, latents_mean=latents_mean or [0.0] * z, latents_std=latents_std or [1.0] * z)
        # ModelMixin reads dtype/device from parameters or buffers, and save_pretrained needs one tensor to write:
        # this buffer carries both duties and nothing else
        self.register_buffer("anchor", torch.zeros(1))

    # diffusers' VAEs offer these memory switches; a rearrangement needs none of them
    def enable_tiling(self, *args, **kwargs):
        pass

    def disable_tiling(self):
        pass

    def enable_slicing(self):
        pass

    def disable_slicing(self):
        pass

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        B, C, T, H, W = x.shape
        tc, s = c.scale_factor_temporal, c.scale_factor_spatial
        if (T - 1) % tc or H % s or W % s:
            raise ValueError(f"PatchifyVAE needs T = {tc}k+1 and H, W multiples of {s}; got T={T}, {H}x{W}")
        L, h, w = (T - 1) // tc + 1, H // s, W // s
        x = torch.cat([x[:, :, :1].expand(-1, -1, tc - 1, -1, -1), x], dim=2)  # frame 0 fills a whole group
        x = x.reshape(B, C, L, tc, h, s, w, s).permute(0, 1, 3, 5, 7, 2, 4, 6)
        return x.reshape(B, C * tc * s * s, L, h, w)

    def unpatchify(self, z: torch.Tensor) -> torch.Tensor:
        c = self.config
        B, Z, L, h, w = z.shape
        tc, s, C = c.scale_factor_temporal, c.scale_factor_spatial, c.in_channels
        x = z.reshape(B, C, tc, s, s, L, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(B, C, tc * L, h * s, w * s)
        # frame 0 was stored 4 times; averaging the copies turns a model's errors on them into a consensus
        return torch.cat([x[:, :, :tc].mean(2, keepdim=True), x[:, :, tc:]], dim=2)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        z = self.patchify(x)
        # mean = z, log-variance = -inf (clamped to -30 by diffusers): a point mass, so mode() == sample() == z
        dist = DiagonalGaussianDistribution(torch.cat([z, torch.full_like(z, -30.0)], dim=1), deterministic=True)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        x = self.unpatchify(z)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False, return_dict: bool = True,
                generator=None):
        return self.decode(self.encode(sample).latent_dist.mode(), return_dict=return_dict)


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


def tiny_random_backbone(*, seed: int = 0, image_encoder: bool = True, vae: str = "wan",
                         words: list[str] | None = None, layers: int = 2, variant: str = "wan21") -> Backbone:
    """Tiny random Wan-family stack built from config (nothing downloaded), for tests.

    ``variant``: ``"wan21"`` (Wan2.1-I2V: 36-style input, CLIP branch if ``image_encoder``); ``"wan22-a14b"``
    (Wan2.2-I2V-A14B: the same input, no CLIP branch, two experts split at ``boundary_ratio`` 0.9);
    ``"wan22-ti2v"`` (Wan2.2-TI2V-5B: a 48-channel ``AutoencoderKLWan`` with ``patch_size`` 2 and x16 spatial, a
    transformer reading the 48 latent channels alone, token-replacement conditioning).
    ``vae="wan"``: a tiny ``AutoencoderKLWan`` (x8 spatial, x4 temporal, z=16, real Wan geometry).
    ``vae="patchify"``: the toy backbone's lossless VAE (x2 spatial). ``image_encoder``: include the CLIP branch.
    ``layers``: transformer blocks (more for block-swapping tests).
    """
    if variant not in ("wan21", "wan22-a14b", "wan22-ti2v"):
        raise ValueError(f"variant must be 'wan21', 'wan22-a14b' or 'wan22-ti2v', got {variant!r}")
    image_encoder = image_encoder and variant == "wan21"  # Wan2.2 has no CLIP image branch
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
    )

    torch.manual_seed(seed)
    text_dim, clip_dim = 32, 32
    if variant == "wan22-ti2v":  # Wan2.2's VAE layout (residual, 2x2 input patches, x16) at tiny width
        v = AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                             temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                             out_channels=12, patch_size=2, scale_factor_spatial=16,
                             latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
    elif vae == "wan":
        v = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                             temperal_downsample=[False, True, True])
    elif vae == "patchify":
        v = PatchifyVAE(scale_factor_spatial=2)
    else:
        raise ValueError(f"vae must be 'wan' or 'patchify', got {vae!r}")
    z = v.config.z_dim
    heads, head_dim = 2, 12

    def expert():
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim,
            in_channels=z if variant == "wan22-ti2v" else 2 * z + 4, out_channels=z, text_dim=text_dim, freq_dim=32,
            ffn_dim=48, num_layers=layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            image_dim=clip_dim if image_encoder else None,
            added_kv_proj_dim=heads * head_dim if image_encoder else None, rope_max_seq_len=64)
    transformer = expert()
    transformer_2 = expert() if variant == "wan22-a14b" else None
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
    for m in (transformer, transformer_2, v, text_encoder, enc):
        if m is not None:
            m.eval()
    name = {"wan21": "tiny-random", "wan22-a14b": "tiny-wan22-a14b", "wan22-ti2v": "tiny-wan22-ti2v"}[variant]
    defaults = dict(TINY_DEFAULTS, **({"height": 64, "width": 96} if variant == "wan22-ti2v" else {}))
    # image_dim set -> Wan's attention splits text at a hard-coded 512 tokens, so text must be 512 long
    return Backbone(name, transformer, v, scheduler, tokenizer, text_encoder, enc, proc,
                    max_sequence_length=512 if image_encoder else 16, defaults=defaults,
                    transformer_2=transformer_2, boundary_ratio=0.9 if transformer_2 is not None else None)


def tiny_random_hunyuan(*, seed: int = 0, words: list[str] | None = None):
    """Tiny random HunyuanVideo-I2V stack (33-channel ``latent_concat`` transformer, causal Hunyuan VAE with the real
    x8 / x4 geometry, Llava text encoder that sees the image, CLIP text encoder) built from config, for tests."""
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    torch.manual_seed(seed)
    words = words or ("a the red green blue yellow disc square moves circles left right up down , fast slow "
                      "system user assistant describe video according to reference image :").split()
    tokenizer = _word_tokenizer(words, special=SPECIAL_TOKENS, eos=False)
    tokenizer_2 = _word_tokenizer(words)
    image_size, patch = 32, 8
    llava = LlavaForConditionalGeneration(LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=image_size, patch_size=patch),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                pad_token_id=0),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=0, vision_feature_layer=-2,
        vision_feature_select_strategy="default"))
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer_2), hidden_size=8, intermediate_size=16,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                        eos_token_id=1, pad_token_id=0, bos_token_id=3))
    proc = clip_image_processor_class()(size={"shortest_edge": image_size},
                              crop_size={"height": image_size, "width": image_size})
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        norm_num_groups=4, spatial_compression_ratio=8, temporal_compression_ratio=4, mid_block_add_attention=True)
    z = vae.config.latent_channels
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=2 * z + 1, out_channels=z, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(2, 2, 4), guidance_embeds=False, image_condition_type="latent_concat")
    for m in (transformer, vae, llava, clip):
        m.eval()
    n_img = (image_size // patch) ** 2  # Llava "default" strategy drops CLS
    return Backbone("tiny-hunyuan", transformer, vae, FlowMatchEulerDiscreteScheduler(shift=7.0), tokenizer, llava,
                    None, proc, max_sequence_length=16, defaults=dict(TINY_HUNYUAN_DEFAULTS),
                    tokenizer_2=tokenizer_2, text_encoder_2=clip,
                    prompt_template=prompt_template_for(tokenizer, TINY_TEMPLATE, n_img))
