"""Latent-space helpers every backbone family shares: the VAE's geometry, packing a pixel-rate keep mask to latent
frames, and VAE encode/decode of normalised latents.

Below the families: :mod:`.base`, :mod:`.wan` and :mod:`.hunyuan` import this module, it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..memory import module_device


# ----------------------------------------------------------------------------------------------- latent geometry
@dataclass(frozen=True)
class LatentGeometry:
    """How a VAE maps pixels to latents: ``temporal`` (4 for Wan), ``spatial`` (8 for Wan), ``z_dim`` channels."""

    temporal: int
    spatial: int
    z_dim: int

    @classmethod
    def of(cls, vae) -> LatentGeometry:
        """Read from the VAE config: Wan's names (``scale_factor_*``, ``z_dim``) or HunyuanVideo's
        (``*_compression_ratio``, ``latent_channels``)."""
        c = vae.config
        t = c.get("scale_factor_temporal", c.get("temporal_compression_ratio", 4))
        s = c.get("scale_factor_spatial", c.get("spatial_compression_ratio", 8))
        return cls(int(t), int(s), int(c.get("z_dim", c.get("latent_channels"))))

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        return (num_frames - 1) // self.temporal + 1, height // self.spatial, width // self.spatial


def pack_mask(keep: torch.Tensor, geometry: LatentGeometry, *, reduce: str = "nearest") -> torch.Tensor:
    """Pack a pixel-rate keep mask to Wan's latent mask channels.

    ``keep``: ``(B, 1, T, H, W)`` or ``(T, H, W)``, 1 = keep, 0 = generate (Wan's sense, see :func:`keep_mask`).
    Returns float ``(B, temporal, 1 + (T - 1) / temporal, H / s, W / s)``: channel c of latent frame t >= 1 holds
    pixel frame ``temporal * (t - 1) + 1 + c``; latent frame 0 holds pixel frame 0 in every channel.

    ``reduce="nearest"`` resizes like the official code and diffusers; ``reduce="any"`` marks a latent cell
    "generate" if any of its pixels is to be generated (a dilation that never leaks source pixels of the region).
    """
    if keep.ndim == 3:
        keep = keep[None, None]
    keep = keep.float()
    B, _, T, H, W = keep.shape
    tc, s = geometry.temporal, geometry.spatial
    h, w = H // s, W // s
    if reduce == "nearest":
        m = F.interpolate(keep, size=(T, h, w), mode="nearest")
    elif reduce == "any":
        m = -F.max_pool3d(-keep, kernel_size=(1, s, s), stride=(1, s, s))
    else:
        raise ValueError(f"reduce must be 'nearest' or 'any', got {reduce!r}")
    m = torch.cat([m[:, :, :1].repeat_interleave(tc, dim=2), m[:, :, 1:]], dim=2)  # (B, 1, tc * T_lat, h, w)
    return m.view(B, -1, tc, h, w).transpose(1, 2)


def unpack_mask(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_mask` at latent resolution: ``(B, tc, T_lat, h, w)`` -> ``(B, 1, T, h, w)``."""
    B, tc, L, h, w = packed.shape
    m = packed.transpose(1, 2).reshape(B, 1, tc * L, h, w)
    return torch.cat([m[:, :, :1], m[:, :, tc:]], dim=2)


def latent_stats(vae, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, 1 / std)`` as ``(1, z, 1, 1, 1)`` tensors from the VAE config: Wan normalises latents per channel
    (``latents_mean`` / ``latents_std``); HunyuanVideo scales them by one ``scaling_factor``."""
    c = vae.config
    z = LatentGeometry.of(vae).z_dim
    if c.get("latents_mean") is None:
        mean = torch.full((1, z, 1, 1, 1), float(c.get("shift_factor") or 0.0), dtype=dtype, device=device)
        return mean, torch.full((1, z, 1, 1, 1), float(c.scaling_factor), dtype=dtype, device=device)
    mean = torch.tensor(c.latents_mean, dtype=dtype, device=device).view(1, z, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(c.latents_std, dtype=dtype, device=device).view(1, z, 1, 1, 1)
    return mean, inv_std


def encode(vae, pixels: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """VAE-encode ``(B, 3, T, H, W)`` in [-1, 1] to *normalised* latents ``(B, z, T_lat, H/s, W/s)``.

    Uses the posterior mode (``sample=False``) as diffusers' I2V pipeline does for the condition.
    """
    vae_dtype = getattr(vae, "dtype", torch.float32)
    dist = vae.encode(pixels.to(device=module_device(vae), dtype=vae_dtype)).latent_dist
    lat = dist.sample(generator) if sample else dist.mode()
    mean, inv_std = latent_stats(vae, lat.device, torch.float32)
    return (lat.float() - mean) * inv_std


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents -> pixels ``(B, 3, T, H, W)`` in [-1, 1] (clamped)."""
    mean, inv_std = latent_stats(vae, latents.device, torch.float32)
    x = latents.float() / inv_std + mean
    out = vae.decode(x.to(device=module_device(vae), dtype=getattr(vae, "dtype", torch.float32)), return_dict=False)[0]
    return out.float().clamp(-1, 1)


def check_no_keyframes(keep: torch.Tensor, temporal: int, *, model: str, why: str) -> None:
    """Refuse a later frame given whole (an edited keyframe, first-last-frame mode) when the other frames of its
    latent frame are not, for a family whose mask is one value per latent frame (``why``): it cannot say "this one
    of the 4 frames is given", and the min over the 4 would silently drop it. ``keep``: ``(B, 1, T, H, W)``."""
    whole = keep[:, 0, 1:].flatten(2).amin(-1) > 0.5  # (B, T - 1): later frames given entirely
    if not whole.any():
        return
    grouped = whole.view(whole.shape[0], -1, temporal)  # the 4 pixel frames of each latent frame >= 1
    partial = grouped.any(-1) & ~grouped.all(-1)
    if partial.any():
        b, k = (int(i) for i in partial.nonzero()[0])
        frames = [1 + temporal * k + j for j in range(temporal) if grouped[b, k, j]]
        raise ValueError(
            f"frame(s) {frames} are given whole, but {model} has {why} (pixel frames {1 + temporal * k}.."
            f"{temporal * (k + 1)}), so a single given frame cannot be expressed and would be dropped. On {model}, "
            "train on edited later frames (appearance regime) without placing them in the condition "
            "(place_edited_frames=False), or use Wan2.1 / Wan2.2-I2V-A14B, whose 4 mask channels can.")
