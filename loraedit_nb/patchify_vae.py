"""A lossless space-time "VAE" with ``AutoencoderKLWan``'s interface and Wan's latent geometry (toy backbone).

Wan's VAE keeps frame 0 alone and compresses every following 4 frames into one latent frame, and shrinks space by
8. On a CPU that VAE is the bottleneck and would need hours of training for a toy world. This class only
*rearranges* pixels: frame 0 is repeated 4 times, then every ``4 x s x s`` block of a colour channel becomes ``4 s^2``
latent channels. Reconstruction is exact, encoding is free, and — because the geometry (4x temporal with frame 0
alone, s x spatial, ``z_dim`` channels, ``latents_mean/std``) and the interface (``encode(x).latent_dist.mode()``,
``decode(z).sample``) are Wan's — diffusers' ``WanImageToVideoPipeline`` and this package's condition builder run
on it unchanged.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin


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
