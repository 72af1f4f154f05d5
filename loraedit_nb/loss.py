"""The training objective: rectified flow matching as Wan was trained, with LoRA-Edit's dual-role region weights.

* Noising: ``z_t = (1 - t) z0 + t eps``; target velocity ``eps - z0``; the transformer sees timestep ``1000 t``.
* ``t`` is sampled ``"uniform"`` (the official code), ``"logit_normal"`` (SD3-style), optionally shifted
  ``t' = s t / (1 + (s - 1) t)`` as diffusers-based Wan trainers do (s = 3 for 480p, 5 for 720p).
* **Dual-role loss.** The mask is an *instruction* (it goes into the 4 mask channels) and a *learning guide*:
  per-element weights computed from the packed mask put weight ``w_generate`` on the region the model must
  generate and ``w_keep`` on the region it is given. Default ``(1, 1)`` = plain MSE over the whole target latent,
  which is the official code's behaviour (the mask then acts only through the condition).
* **The first latent frame** is part of the loss, with the weight of a kept region. That is what diffusers' I2V
  implies: Wan2.1 never pastes the clean first frame back into the latents, so the model itself must reproduce
  it from the condition at every step (and for one-frame appearance samples, frame 0 *is* the target).
"""

from __future__ import annotations

import torch

from .backbones.base import adapter_for, default_adapter


def sample_timesteps(n: int, *, scheme: str = "uniform", shift: float = 1.0, logit_mean: float = 0.0,
                     logit_std: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` flow times ``t`` in (0, 1) (1 = pure noise)."""
    if scheme == "uniform":
        t = torch.rand(n, generator=generator)
    elif scheme == "logit_normal":
        t = torch.sigmoid(torch.randn(n, generator=generator) * logit_std + logit_mean)
    else:
        raise ValueError(f"timestep scheme must be 'uniform' or 'logit_normal', got {scheme!r}")
    if shift != 1.0:
        t = shift * t / (1 + (shift - 1) * t)
    return t.clamp(1e-4, 1 - 1e-4)


def region_weights(condition: torch.Tensor, *, w_generate: float = 1.0, w_keep: float = 1.0,
                   adapter=None) -> torch.Tensor | None:
    """Per-voxel loss weights ``(B, 1, L, h, w)`` from the packed mask inside ``condition`` (1 = keep), read by
    the backbone family's ``adapter`` (default Wan: the 4 leading mask channels; a latent voxel covers 4 pixel
    frames and its weight mixes the two by their share). Returns None for ``(1, 1)``: the default stays a plain
    mean."""
    if w_generate == 1.0 and w_keep == 1.0:
        return None
    keep = (adapter or default_adapter()).keep_fraction(condition)
    return w_keep * keep + w_generate * (1 - keep)


def flow_matching_loss(transformer, z0: torch.Tensor, cond: torch.Tensor, context: torch.Tensor | dict,
                       t: torch.Tensor, noise: torch.Tensor, weight: torch.Tensor | None = None,
                       image_embeds: torch.Tensor | None = None, adapter=None) -> torch.Tensor:
    """MSE between predicted and true velocity ``eps - z0`` (optionally weighted per voxel).

    ``z0`` ``(B, z, L, h, w)`` clean normalised latents; ``cond`` the family's condition (Wan ``(B, 4 + z, L, h,
    w)``, Hunyuan ``(B, z + 1, L, h, w)``; the transformer reads ``cat([z_t, cond])`` in both); ``context`` the
    transformer's other keyword inputs (``Backbone.encode_context``, batched), or Wan's text ``(B, S, d)`` alone
    with ``image_embeds`` ``(B, N, image_dim)`` for a CLIP branch; ``t`` ``(B,)`` in (0, 1); ``noise`` like ``z0``;
    ``weight`` broadcastable to ``z0`` or None (plain mean). ``adapter``: the backbone family's (default: the
    transformer's, :func:`~loraedit_nb.backbones.base.adapter_for`); it builds the transformer's input and timesteps
    (:meth:`~loraedit_nb.backbones.base.Adapter.model_input`) and may leave given cells out of the loss
    (``loss_mask``: Wan2.2-TI2V's clean tokens).
    """
    adapter = adapter_for(transformer) if adapter is None else adapter
    if not isinstance(context, dict):
        context = {"encoder_hidden_states": context, "encoder_hidden_states_image": image_embeds}
    tt = t.view(-1, *([1] * (z0.ndim - 1))).to(z0.dtype)
    zt = (1 - tt) * z0 + tt * noise
    # the model's compute dtype: diffusers' ModelMixin.dtype reports the compute dtype under fp8 layerwise casting
    # (the first parameter could be a float8 storage tensor)
    model = getattr(transformer, "module", transformer)
    dtype = getattr(model, "dtype", None) or next(p.dtype for p in model.parameters() if p.dtype.is_floating_point)
    inp, timestep = adapter.model_input(zt, cond, t)
    inp = inp.to(dtype)
    kw = {k: None if v is None else v.to(device=inp.device, dtype=dtype if v.is_floating_point() else v.dtype)
          for k, v in context.items()}
    v_hat = transformer(inp, timestep=timestep.to(inp.device), return_dict=False, **kw)[0]
    err = (v_hat.float() - (noise - z0).float()) ** 2
    counted = adapter.loss_mask(cond)
    if counted is not None:
        counted = counted.to(err.device, err.dtype)
        weight = counted if weight is None else weight * counted
    if weight is None:
        return err.mean()
    return (err * weight).sum() / (weight.expand_as(err).sum()).clamp(min=1e-8)
