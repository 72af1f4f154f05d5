"""Shared helpers for the toy-lever probes (toy backbone, LoRA-Edit recolour cases): inference_levers.py,
lora_recipe_levers.py, lora_scale_and_colour_diagnosis.py, target_colours.py.

Metrics (all on frames >= 1 unless stated):
  region  = evaluation.evaluate_edit(...)["gt_psnr_region"]  (PSNR vs ground truth inside case.mask, all frames)
  near    = share of GT-object pixels (toyworld Edit.mask, undilated; frames >= 1) whose output RGB is within
            L2 distance 0.35 (Euclidean over the 3 channels, values in [0, 1]) of the ground-truth RGB there
  f0      = PSNR(output frame 0, the user's edited first frame)
  bg      = evaluate_edit bg_psnr (source vs output outside case.mask, frame 0 included)
  vanished= number of frames t >= 1 whose per-frame near-share is < 0.30
Inference levers are emulated here without touching the package:
  * "final": at the last denoising step the latent at kept positions is replaced by the given latent (exact, since
    the toy VAE is a lossless patchify) -- a hard latent composite that includes frame 0.
  * "replace": after every step (callback_on_step_end) the kept latents are set to the given latent noised to the
    next sigma with the run's own initial noise (RePaint-style 'replace'); UniPC's stored last_sample is patched the
    same way so its corrector does not undo it. Ends exact at sigma = 0.
  * "x0": the transformer's x0 estimate is replaced by the given latent at kept positions (v recomputed from it),
    so the solver itself walks the kept positions to the given latent (also exact at the end).
"""
from __future__ import annotations

import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import torch

torch.set_num_threads(1)

from loraedit_nb import comparisons as C  # noqa: E402
from loraedit_nb.conditioning import condition_video, keep_mask  # noqa: E402
from loraedit_nb.evaluation import evaluate_edit, psnr  # noqa: E402
from loraedit_nb.inference import generate, use_lora  # noqa: E402
from loraedit_nb.video import to_model  # noqa: E402

# trained LoRAs and raw JSON; outputs/ is git-ignored. The probes reuse a LoRA found here instead of training it.
CACHE = os.environ.get("LORAEDIT_PROBE_CACHE", "outputs/toy_lever_probes")
# the recorded tables (results/toy_lever_probes.md) were measured when the toy recipe's colour augmentation was
# "permute"; toy_config() now defaults to "mix", so the probes pin the recorded recipe
RECORDED_RECIPE = dict(colour_aug="permute")
os.makedirs(CACHE, exist_ok=True)


def cases_with_objects(n, kind="recolour", seed=2024):
    from loraedit_nb.toyworld import make_edit, sample_scene

    cs = C.toy_cases(n, kinds=(kind,), seed=seed)
    objs = []
    for i, c in enumerate(cs):
        spec = sample_scene(seed + i, motions=("linear", "circle"), n_objects=1)
        e = make_edit(spec, kind, size=32, frames=9, seed=seed + i)
        assert np.allclose(e.video, c.ground_truth)
        objs.append(e.mask.copy())
    return cs, objs


def metrics(case, obj, video):
    m = evaluate_edit(case.source, video, case.mask, ground_truth=case.ground_truth)
    d = np.linalg.norm(video - case.ground_truth, axis=-1)  # (T, H, W)
    near_t = [float((d[t][obj[t]] <= 0.35).mean()) for t in range(1, len(video)) if obj[t].any()]
    allobj = obj.copy(); allobj[0] = False
    return dict(region=m["gt_psnr_region"], near=float((d[allobj] <= 0.35).mean()),
                f0=psnr(case.edited_frames[0][None], video[:1]), bg=m["bg_psnr"],
                vanished=int(sum(s < 0.30 for s in near_t)), colour_err=m["gt_colour_error"])


def lora_path(case, tag):
    return f"{CACHE}/{case.name}_{tag}.pt"


def get_lora(bb, case, tag, cfg):
    """Train (or load from CACHE) the LoRA-Edit 'motion' LoRA with config ``cfg``."""
    p = lora_path(case, tag)
    if os.path.exists(p):
        return torch.load(p, weights_only=False)
    t0 = time.process_time()
    lora = C.train_recipe(bb, case, "motion", cfg)
    lora.cpu_seconds = time.process_time() - t0
    torch.save(lora, p)
    return lora


def given(bb, case):
    """Per-latent-channel keep mask and the given (clean) latent, both (1, z, L, h, w), exact for the toy VAE."""
    first = case.edited_frames[0]
    cond = condition_video(case.source, case.mask, first)
    keep = keep_mask(case.mask)  # (T, H, W) 1 = keep; frame 0 all keep
    x = to_model(cond)  # (1, 3, T, H, W) in [-1, 1]
    k = torch.from_numpy(np.asarray(keep, np.float32))[None, None].expand(1, 3, -1, -1, -1)
    return bb.vae.patchify(k).round(), bb.vae.patchify(x)


def infer(bb, case, lora, *, seed=0, mode="plain", guidance=None, flow_shift=None, steps=None,
          negative_prompt=""):
    """One edit with the probe's inference levers. Returns (video, cpu_seconds)."""
    t0 = time.process_time()
    use_lora(bb, lora)
    keep, known = given(bb, case)
    d = bb.defaults
    n_steps = steps or d["steps"]
    tr = bb.transformer
    cb = None
    restore = None
    if mode in ("final", "replace", "replace+final"):
        shape = known.shape
        g = torch.Generator(device="cpu").manual_seed(seed)
        from diffusers.utils.torch_utils import randn_tensor
        eps = randn_tensor(shape, generator=g, dtype=known.dtype)  # == the pipeline's initial latents

        def cb(pipe, i, t, kw):
            lat = kw["latents"]
            last = i == n_steps - 1
            if mode == "final" and not last:
                return {}
            s = float(pipe.scheduler.sigmas[i + 1])
            new = keep * ((1 - s) * known + s * eps) + (1 - keep) * lat
            if mode.startswith("replace") and not last:
                sch = pipe.scheduler
                if getattr(sch, "last_sample", None) is not None:
                    s0 = float(sch.sigmas[i])
                    sch.last_sample = keep * ((1 - s0) * known + s0 * eps) + (1 - keep) * sch.last_sample
            return {"latents": new.to(lat.dtype)}
    if mode == "x0":
        orig = tr.forward
        zc = known.shape[1]

        def fwd(hidden_states, timestep, *a, return_dict=True, **k):
            out = orig(hidden_states, timestep, *a, return_dict=False, **k)[0]
            z_t = hidden_states[:, :zc].float()
            tt = (timestep.float() / 1000.0).clamp(min=tr.t_min).view(-1, 1, 1, 1, 1)
            x0 = z_t - tt * out.float()
            x0 = keep * known + (1 - keep) * x0
            v = ((z_t - x0) / tt).to(out.dtype)
            if not return_dict:
                return (v,)
            from diffusers.models.modeling_outputs import Transformer2DModelOutput
            return Transformer2DModelOutput(sample=v)
        tr.forward = fwd
        restore = lambda: delattr(tr, "forward")  # noqa: E731
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = generate(bb, case.source, case.mask, case.edited_frames[0], prompt=case.edited_prompt,
                           negative_prompt=negative_prompt, steps=steps, guidance=guidance, flow_shift=flow_shift,
                           seed=seed, callback_on_step_end=cb, progress=False)
    finally:
        if restore:
            restore()
    return out, time.process_time() - t0


def fmt_row(lever, setting, ms, secs, n):
    a = {k: float(np.nanmean([m[k] for m in ms])) for k in ms[0]}
    return (f"| {lever} | {setting} | {a['region']:.2f} | {a['near']:.3f} | {a['f0']:.1f} | {a['bg']:.2f} | "
            f"{sum(m['vanished'] for m in ms)}/{8 * len(ms)} | {secs:.0f} | {n} |")
