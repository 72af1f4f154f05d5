"""How good is the *un-tuned* toy backbone? A held-out quality report: what the base does before any LoRA.

    python -m loraedit_nb.toyworld.evaluate                      # data/toy_backbone, 32 scenes
    python -m loraedit_nb.toyworld.evaluate --backbone PATH --n 32 --out outputs/toy_quality

Prints a markdown table and writes ``results.json``, ``table.md`` and ``examples.png`` (source rows vs generated
rows, 4x nearest upscale) under ``--out``. In code: :func:`evaluate_base` returns the same numbers as a dict.

**Held-out scenes.** Scene seeds are ``np.random.default_rng(seed).integers(0, 2**62, n)``. Pretraining draws its
clip seeds the same way from ``default_rng(cfg.seed)`` (0 by default), so ``seed`` must differ from the
pretraining seed (checked: that stream would reproduce the first training batch). Any other stream's 62-bit seeds
collide with the ~10^6 training seeds with probability ~n * 10^6 / 2^62 ~ 1e-11: the scenes are held out.
1-object scenes cycle through the motions the base was trained on (``static, linear, circle, pulse, spin``);
an extra set of 2-object scenes (target + a distractor behind it, as in pretraining) gets the I2V rows only.

**Metrics** (videos in [0, 1]; per scene, then the mean over scenes; per-scene PSNRs are capped at
:data:`PSNR_CAP` dB before averaging so that an exact copy — e.g. "repeat the first frame" on a static scene, inf
dB — does not make the mean infinite; ``scenes`` in the result keeps the uncapped values):

1. *VAE reconstruction*: encode -> decode of every held-out clip (the toy VAE is a lossless patchify).
2. *I2V from the first frame* (``i2v_edit_mask``, the scene's caption): PSNR over frames 1..T-1, whole frame and
   inside the object region (union over frames of the true mask, dilated 1 px), against the "repeat the first
   frame" baseline on the same pixels; *object recognisable* = fraction of the true object's pixels on frames >= 1
   (true mask; solid objects: only pixels the truth itself shows in the object's colour, i.e. not anti-aliased
   edges) where the output is within ``tol`` (max-abs over RGB) of the object's colour (striped objects: of the
   true pixel).
3. *First + last frame* (``last_frame=True``): the same, over the generated frames 1..T-2.
4. *Spatial mask, un-tuned* (the paper's Fig. 2): the background is given on every frame, the region (true mask
   dilated 1 px, frames >= 1) is generated from a recoloured first frame (``make_edit(spec, "recolour")``) and the
   edit's caption. PSNR of the keep region vs the source, of the region vs the ground-truth edit, the fraction of
   the object's pixels showing the *new* vs the *old* colour; the same for plain I2V from the edited frame.
5. *Prompt use* (linear scenes): the same clip and noise with the motion direction reversed in the caption
   (opposite compass direction, re-captioned). Mean |difference| between the two outputs; whether the object's
   centroid (pixels within ``tol`` of its colour) moves from frame 0 to the last frame toward the captioned
   direction (dot product > 0), and whether its displacement agrees with the rendered ground truth *for that
   caption* (which accounts for bounces off the walls); the ground truth's own rate is the reference.

Clips are generated in batches through :class:`~loraedit_nb.backbones.wan.MaskedWanI2VPipeline` with one generator
per clip, which is exactly :func:`loraedit_nb.inference.generate` with ``seed=`` that clip's noise seed (tested);
backbones with a CLIP image branch are run one clip at a time (their image tokens are per clip).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbones import TOY_DIR, Backbone, MaskedWanI2VPipeline, condition_from_tensors, load_backbone
from ..backbones.base import _pil, with_flow_shift
from ..conditioning import condition_video, decode, encode, i2v_edit_mask, keep_mask
from ..exploration import psnr
from ..masks import dilate
from ..viz import frames_strip, upscale
from .scenes import (
    COLOURS,
    DIRECTIONS,
    Edit,
    ObjectSpec,
    SceneSpec,
    caption,
    make_edit,
    render_batch,
    sample_scene,
)

TRAINED_MOTIONS: tuple[str, ...] = ("static", "linear", "circle", "pulse", "spin")
"""The target motions the base was pretrained on (order = the cycle 1-object scenes follow)."""
PSNR_CAP = 60.0
"""dB; per-scene PSNRs are capped here before averaging (8-bit quantisation alone gives ~59 dB)."""
PRETRAIN_SEED = 0
"""``PretrainConfig.seed``'s default: its scene-seed stream is the training data, never a held-out set."""

OPPOSITE: dict[str, str] = {
    k: next(j for j, w in DIRECTIONS.items() if w == (-v[0], -v[1])) for k, v in DIRECTIONS.items()
}
"""Compass direction -> the opposite one (``"e"`` -> ``"w"``, ``"ne"`` -> ``"sw"``)."""


# ----------------------------------------------------------------------------------------------- small helpers
def held_out_seeds(seed: int, n: int) -> list[int]:
    """``n`` scene seeds from ``np.random.default_rng(seed)`` (62-bit, like pretraining's). Refuses the
    pretraining seed, whose stream *is* the training set."""
    if seed == PRETRAIN_SEED:
        raise ValueError(f"seed {seed} is the pretraining seed: its scene seeds are the first training batches. "
                         "Use any other seed (default 1234).")
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**62, size=n)]


def repeat_first(video: np.ndarray) -> np.ndarray:
    """The "repeat the first frame" baseline: ``(T, H, W, 3)`` -> frame 0 repeated ``T`` times."""
    return np.repeat(video[:1], len(video), axis=0)


def capped(values: Sequence[float], cap: float = PSNR_CAP) -> float:
    """Mean of PSNRs (dB) with each capped at ``cap``; NaNs are skipped (NaN if none is left)."""
    v = np.minimum(np.asarray(values, np.float64), cap)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def object_fraction(out: np.ndarray, truth: np.ndarray, mask: np.ndarray, colour: Sequence[float] | None,
                    tol: float) -> float:
    """Fraction of the object's pixels the output shows in the object's colour.

    ``out``, ``truth``: ``(T, H, W, 3)`` in [0, 1]; ``mask``: bool ``(T, H, W)``, the true object pixels.
    ``colour``: the object's RGB (solid object): counts pixels where the truth is within ``tol`` (max-abs) of it,
    hits where ``out`` is too. ``None`` (striped object): all mask pixels, hit = ``out`` within ``tol`` of the
    true pixel. NaN if no pixel qualifies.
    """
    if colour is None:
        sel, hit = mask, np.abs(out - truth).max(-1) <= tol
    else:
        c = np.asarray(colour, np.float32)
        sel = mask & (np.abs(truth - c).max(-1) <= tol)
        hit = np.abs(out - c).max(-1) <= tol
    return float(hit[sel].mean()) if sel.any() else float("nan")


def colour_centroid(frame: np.ndarray, colour: Sequence[float], tol: float) -> np.ndarray | None:
    """Centroid ``(x, y)`` in pixels (pixel centres at +0.5) of the pixels of ``frame`` ``(H, W, 3)`` within
    ``tol`` (max-abs) of ``colour``; None when there are none."""
    sel = np.abs(frame - np.asarray(colour, np.float32)).max(-1) <= tol
    if not sel.any():
        return None
    ys, xs = np.nonzero(sel)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def reverse_direction(spec: SceneSpec) -> SceneSpec:
    """The same scene with the (linear) target moving the opposite compass direction."""
    target = spec.objects[0]
    if target.motion != "linear":
        raise ValueError(f"only linear motion has a compass direction, the target's motion is {target.motion!r}")
    return replace(spec, objects=(replace(target, direction=OPPOSITE[target.direction]), *spec.objects[1:]))


def _solid_colour(obj) -> tuple[float, float, float] | None:
    return None if obj.striped else COLOURS[obj.colour]


def _finite(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become the strings "inf" / "-inf" / "nan"."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


# ----------------------------------------------------------------------------------------------- batched generation
class BatchedGenerator:
    """Runs many clips through :class:`MaskedWanI2VPipeline`, ``batch`` at a time, and keeps the wall time.

    Clip ``i`` gets its own ``torch.Generator(seed=seeds[i])``, so its noise — and its output — is what
    ``generate(backbone, video, mask, first_frame, prompt=..., seed=seeds[i])`` gives.
    """

    def __init__(self, bb: Backbone, *, steps: int, guidance: float, flow_shift: float | None, batch: int = 8):
        self.bb, self.steps, self.guidance = bb, int(steps), float(guidance)
        self.batch = 1 if bb.has_image_encoder else max(1, int(batch))  # CLIP tokens are per clip: no batching
        self.pipe = bb.pipeline(MaskedWanI2VPipeline)
        self.pipe.scheduler = with_flow_shift(bb.scheduler, flow_shift)
        self.pipe.set_progress_bar_config(disable=True)
        self.clips, self.seconds = 0, 0.0

    @torch.no_grad()
    def __call__(self, videos: np.ndarray, masks: np.ndarray, firsts: np.ndarray, prompts: Sequence[str],
                 seeds: Sequence[int]) -> np.ndarray:
        """``videos`` ``(n, T, H, W, 3)`` in [0, 1]; ``masks`` bool ``(n, T, H, W)`` (True = generate);
        ``firsts`` ``(n, H, W, 3)`` (frame 0 to give). Returns float32 ``(n, T, H, W, 3)`` in [0, 1]."""
        n, T, H, W = masks.shape
        outs = []
        for a in range(0, n, self.batch):
            idx = range(a, min(n, a + self.batch))
            cond_px = np.stack([condition_video(videos[i], masks[i], firsts[i]) for i in idx])
            keep = np.stack([keep_mask(masks[i]) for i in idx])
            t0 = time.perf_counter()
            cond = condition_from_tensors(self.bb.vae, torch.from_numpy(cond_px).permute(0, 4, 1, 2, 3) * 2 - 1,
                                          torch.from_numpy(keep)[:, None])
            frames = self.pipe(image=_pil(firsts[idx[0]]), prompt=[prompts[i] for i in idx], negative_prompt=None,
                               condition=cond, height=H, width=W, num_frames=T, num_inference_steps=self.steps,
                               guidance_scale=self.guidance, max_sequence_length=self.bb.max_sequence_length,
                               output_type="np",
                               generator=[torch.Generator("cpu").manual_seed(int(seeds[i])) for i in idx]).frames
            self.seconds += time.perf_counter() - t0
            self.clips += len(idx)
            outs.append(np.asarray(frames, dtype=np.float32))
        return np.concatenate(outs)


# ----------------------------------------------------------------------------------------------- the evaluation
def _checkpoint_info(backbone: str | os.PathLike | Backbone) -> dict | None:
    if isinstance(backbone, Backbone):
        return None
    path = TOY_DIR if str(backbone) == "toy" else Path(backbone)
    meta = path / "pretrain.json"
    if not meta.is_file():
        return None
    m = json.loads(meta.read_text())
    return {k: m.get(k) for k in ("step", "wall_minutes", "loss_ema")} | {"seed": m.get("config", {}).get("seed")}


def _i2v_stats(outs: np.ndarray, videos: np.ndarray, masks: np.ndarray, specs: Sequence[SceneSpec],
               frames: slice, given: list[int], tol: float) -> list[dict]:
    """Per-scene PSNRs (whole frame, object region) and recognisability, model vs repeat-first, on ``frames``;
    plus the model's PSNR on the ``given`` frames (does it reproduce what it was given?)."""
    rows = []
    for out, video, mask, spec in zip(outs, videos, masks, specs, strict=True):
        region = np.broadcast_to(dilate(mask.any(0, keepdims=True), 1), mask.shape)
        rep = repeat_first(video)
        colour = _solid_colour(spec.objects[0])
        r: dict[str, float] = {"psnr_given": psnr(out[given], video[given])}
        for name, v in (("model", out), ("repeat_first", rep)):
            sfx = "" if name == "model" else "_repeat_first"
            r["psnr_frame" + sfx] = psnr(v[frames], video[frames])
            r["psnr_region" + sfx] = psnr(v[frames], video[frames], region[frames])
            r["recognisable" + sfx] = object_fraction(v[frames], video[frames], mask[frames], colour, tol)
        rows.append(r)
    return rows


def _mean_rows(rows: Sequence[dict]) -> dict:
    """Mean over scenes of every key (PSNRs capped, see :func:`capped`; fractions NaN-skipping)."""
    if not rows:
        return {"n": 0}
    out: dict[str, float | int] = {"n": len(rows)}
    for k in rows[0]:
        vals = [r[k] for r in rows]
        out[k] = capped(vals) if k.startswith("psnr") else capped(vals, cap=math.inf)
    return out


@torch.no_grad()
def evaluate_base(backbone: str | os.PathLike | Backbone = "toy", n_scenes: int = 32, seed: int = 1234,
                  steps: int | None = None, *, n_two_objects: int | None = None, batch: int = 8, tol: float = 0.25,
                  threads: int | None = None, out: str | os.PathLike | None = None, n_examples: int = 5) -> dict:
    """Evaluate an un-tuned backbone on held-out toy scenes; returns a JSON-able dict (see the module docstring).

    ``backbone``: a name / folder for :func:`~loraedit_nb.backbones.load_backbone`, or a :class:`Backbone`. Sizes and
    sampler settings come from ``backbone.defaults`` (``steps`` overrides its ``steps``). ``n_two_objects``:
    extra 2-object scenes for the I2V rows (default ``n_scenes // 4``). ``tol``: colour tolerance (max-abs, [0, 1]).
    ``threads``: ``torch.set_num_threads`` for the duration of the call (None = leave as is). ``out``: also
    write ``results.json``, ``table.md`` and ``examples.png`` (``n_examples`` scenes) there.

    Keys: ``backbone``, ``checkpoint`` (``pretrain.json`` of the folder, or None), ``settings``, ``held_out``,
    ``metrics`` (``vae``, ``i2v``, ``i2v_by_motion``, ``i2v_two_objects``, ``first_last``, ``spatial_mask``,
    ``prompt``), ``timing`` and ``scenes`` (per-scene values, uncapped).
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _evaluate(backbone, n_scenes, seed, steps, n_two_objects, batch, tol, out, n_examples)
    finally:
        torch.set_num_threads(before)


@dataclass
class _Setup:
    """What every step needs: the backbone, the clip size and sampler settings (from ``backbone.defaults``) and
    the batched generator that runs all the clips."""

    bb: Backbone
    name: str  # as reported: the name / folder given, or the Backbone's own name
    checkpoint: dict | None
    size: int  # toy scenes are square: H = W = size
    frames: int
    steps: int
    guidance: float
    flow_shift: float | None
    tol: float
    run: BatchedGenerator


@dataclass
class _Scenes:
    """The held-out scenes. 1-object: ``specs``, rendered ``videos`` float ``(n, T, H, W, 3)`` in [0, 1] and the
    target's ``masks`` bool ``(n, T, H, W)``; 2-object: ``specs2`` (rendered in their own step). ``seeds`` and
    ``noise`` cover both sets (1-object first), one noise seed per scene, shared by all the scene's runs."""

    seeds: list[int]
    motions: list[str]
    specs: list[SceneSpec]
    specs2: list[SceneSpec]
    videos: np.ndarray
    masks: np.ndarray
    captions: list[str]
    noise: list[int]

    def i2v_masks(self, last_frame: bool = False) -> np.ndarray:
        """The I2V generation mask (True = generate) of every 1-object scene, bool ``(n, T, H, W)``: all frames
        but frame 0 (and, with ``last_frame``, the last one)."""
        n, T, H, W = self.masks.shape
        return np.broadcast_to(i2v_edit_mask(T, H, W, last_frame=last_frame), (n, T, H, W))


@dataclass
class _SpatialMask:
    """Step 4's outputs: the recolour ``edits`` (one per 1-object scene), the spatial-mask clips and the plain-I2V
    clips from the edited first frame (each ``(n, T, H, W, 3)`` in [0, 1]) and one metric row per scene."""

    edits: list[Edit]
    spatial: np.ndarray
    plain: np.ndarray
    rows: list[dict]


@dataclass
class _Prompt:
    """Step 5's outputs: the indices ``lin`` of the linear scenes, their clips generated with the reversed caption
    (``(len(lin), T, H, W, 3)`` in [0, 1], None without linear scenes) and one metric row per linear scene."""

    lin: list[int]
    reversed: np.ndarray | None
    rows: list[dict]


def _set_up(backbone: str | os.PathLike | Backbone, seed: int, steps: int | None, tol: float, batch: int
            ) -> _Setup:
    """Load the backbone and read its clip size and sampler settings; refuse a seed it was pretrained with."""
    bb = backbone if isinstance(backbone, Backbone) else load_backbone(backbone)
    name = bb.name if isinstance(backbone, Backbone) else str(backbone)
    ckpt = _checkpoint_info(backbone)
    if ckpt is not None and ckpt.get("seed") is not None and ckpt["seed"] == seed:
        raise ValueError(f"seed {seed} is this backbone's pretraining seed; pick another")
    d = bb.defaults
    H, W, T = int(d.get("height", 32)), int(d.get("width", 32)), int(d.get("num_frames", 9))
    if H != W:
        raise ValueError(f"toy scenes are square; the backbone's defaults ask for {H}x{W}")
    steps = int(steps or d.get("steps", 20))
    guidance, flow_shift = float(d.get("guidance", 1.0)), d.get("flow_shift")
    run = BatchedGenerator(bb, steps=steps, guidance=guidance, flow_shift=flow_shift, batch=batch)
    return _Setup(bb, name, ckpt, H, T, steps, guidance, flow_shift, tol, run)


def _held_out_scenes(seed: int, n_scenes: int, n_two: int, size: int, frames: int) -> _Scenes:
    """``n_scenes`` 1-object scenes (motions cycling through :data:`TRAINED_MOTIONS`), rendered, and ``n_two``
    2-object specs, all from :func:`held_out_seeds`."""
    seeds = held_out_seeds(seed, n_scenes + n_two)
    motions = [TRAINED_MOTIONS[i % len(TRAINED_MOTIONS)] for i in range(n_scenes)]
    specs = [sample_scene(s, n_objects=1, motions=(m,)) for s, m in zip(seeds, motions, strict=False)]
    specs2 = [sample_scene(s, n_objects=2, motions=TRAINED_MOTIONS) for s in seeds[n_scenes:]]
    videos, masks = render_batch(specs, size=size, frames=frames)
    return _Scenes(seeds, motions, specs, specs2, videos, masks, [caption(s) for s in specs],
                   noise=[s % 2**32 for s in seeds])


def _vae_reconstruction(vae, videos: np.ndarray) -> tuple[list[float], dict]:
    """Step 1: encode -> decode ``videos`` ``(n, T, H, W, 3)`` in [0, 1]. Returns the per-clip PSNRs (dB) and
    their summary (mean / min PSNR, max abs error, clips exact and exact at 8 bits)."""
    x = torch.from_numpy(videos).permute(0, 4, 1, 2, 3) * 2 - 1
    rec = ((decode(vae, encode(vae, x)) + 1) / 2).permute(0, 2, 3, 4, 1).numpy()
    vae_psnr = [psnr(r, v) for r, v in zip(rec, videos, strict=True)]
    err = np.abs(rec - videos).reshape(len(videos), -1).max(1)
    return vae_psnr, {"n": len(videos), "psnr_mean": float(np.mean(vae_psnr)), "psnr_min": float(np.min(vae_psnr)),
                      "max_abs_err": float(err.max()), "exact_clips": int((err == 0).sum()),
                      "clips_8bit_exact": int((err < 0.5 / 255).sum())}


def _i2v(s: _Setup, sc: _Scenes, last_frame: bool = False) -> tuple[np.ndarray, list[dict]]:
    """Steps 2 and 3: I2V from the first frame (and, with ``last_frame``, the last one) of every 1-object scene.
    Returns the clips ``(n, T, H, W, 3)`` in [0, 1] and their :func:`_i2v_stats` rows (generated frames only)."""
    T = s.frames
    frames, given = (slice(1, T - 1), [0, T - 1]) if last_frame else (slice(1, None), [0])
    out = s.run(sc.videos, sc.i2v_masks(last_frame), sc.videos[:, 0], sc.captions, sc.noise)
    return out, _i2v_stats(out, sc.videos, sc.masks, sc.specs, frames, given, s.tol)


def _two_objects(s: _Setup, sc: _Scenes) -> list[dict]:
    """Step 2 on the 2-object scenes (target + a distractor): their :func:`_i2v_stats` rows (none without any)."""
    n_two = len(sc.specs2)
    if not n_two:
        return []
    T, H = s.frames, s.size
    videos, masks = render_batch(sc.specs2, size=H, frames=T)
    out = s.run(videos, np.broadcast_to(sc.i2v_masks()[:1], (n_two, T, H, H)), videos[:, 0],
                [caption(spec) for spec in sc.specs2], sc.noise[len(sc.specs):])
    return _i2v_stats(out, videos, masks, sc.specs2, slice(1, None), [0], s.tol)


def _spatial_mask(s: _Setup, sc: _Scenes) -> _SpatialMask:
    """Step 4: generate the (dilated) object region of frames >= 1 from a recoloured first frame and the edit's
    caption, the rest given; compare with plain I2V from the same edited frame."""
    edits = [make_edit(spec, "recolour", size=s.size, frames=s.frames) for spec in sc.specs]
    regions = np.stack([dilate(e.mask, 1) for e in edits])
    regions[:, 0] = False
    edited_first = np.stack([e.edited_frames[0] for e in edits])
    edit_caps = [e.caption for e in edits]
    spatial = s.run(sc.videos, regions, edited_first, edit_caps, sc.noise)
    plain = s.run(sc.videos, sc.i2v_masks(), edited_first, edit_caps, sc.noise)
    rows = [_spatial_mask_row(spatial[i], plain[i], sc.videos[i], sc.masks[i], regions[i], sc.specs[i], e, s.tol)
            for i, e in enumerate(edits)]
    return _SpatialMask(edits, spatial, plain, rows)


def _spatial_mask_row(spatial: np.ndarray, plain: np.ndarray, video: np.ndarray, mask: np.ndarray,
                      region: np.ndarray, spec: SceneSpec, edit: Edit, tol: float) -> dict[str, float]:
    """One scene of step 4 (videos ``(T, H, W, 3)`` in [0, 1], masks bool ``(T, H, W)``, frames >= 1 only): PSNR
    of the keep region vs the source and of the region vs the true edit; object pixels in the new / old colour.
    Keys without a suffix are the spatial mask's, ``_plain_i2v`` ones plain I2V's."""
    gen = slice(1, None)
    r: dict[str, float] = {}
    keep_px, reg = ~region[gen], region[gen]
    old, new = spec.objects[0], edit.spec.objects[0]
    for sfx, o in (("", spatial), ("_plain_i2v", plain)):
        r["psnr_keep" + sfx] = psnr(o[gen], video[gen], keep_px)
        r["psnr_region_vs_gt" + sfx] = psnr(o[gen], edit.video[gen], reg)
        r["new_colour" + sfx] = object_fraction(o[gen], edit.video[gen], edit.mask[gen], _solid_colour(new), tol)
        r["old_colour" + sfx] = object_fraction(o[gen], video[gen], mask[gen], _solid_colour(old), tol)
    return r


def _prompt_use(s: _Setup, sc: _Scenes, out_i2v: np.ndarray) -> _Prompt:
    """Step 5: re-run I2V on the linear scenes with the direction word of the caption reversed (same clip, same
    noise) and compare with ``out_i2v`` (step 2's clips) and with the rendered ground truth of both captions."""
    lin = [i for i, spec in enumerate(sc.specs) if spec.objects[0].motion == "linear"]
    if not lin:
        return _Prompt(lin, None, [])
    rev_specs = [reverse_direction(sc.specs[i]) for i in lin]
    rev_videos, _ = render_batch(rev_specs, size=s.size, frames=s.frames)
    out_rev = s.run(sc.videos[lin], sc.i2v_masks()[: len(lin)], sc.videos[lin, 0], [caption(r) for r in rev_specs],
                    [sc.noise[i] for i in lin])
    rows = [_direction_row(out_i2v[i], out_rev[j], sc.videos[i], rev_videos[j], sc.specs[i].objects[0], s.tol)
            for j, i in enumerate(lin)]
    return _Prompt(lin, out_rev, rows)


def _direction_row(out: np.ndarray, out_rev: np.ndarray, video: np.ndarray, rev_video: np.ndarray,
                   obj: ObjectSpec, tol: float) -> dict[str, float]:
    """One linear scene of step 5 (all ``(T, H, W, 3)`` in [0, 1]): the mean |difference| between the two outputs,
    and per clip (suffix ``_true``, ``_reversed``, ``_gt``, ``_gt_reversed``) whether the object's centroid moves
    from frame 0 toward the captioned direction (``toward``), agrees with that caption's ground truth
    (``agree_gt``), how far along it (``proj_px``, pixels) and whether its colour vanished (``missing``, 0 / 1)."""
    col = COLOURS[obj.colour]
    c0 = colour_centroid(video[0], col, tol)
    u_true = np.array(DIRECTIONS[obj.direction])
    r = {"mean_abs_diff": float(np.abs(out[1:] - out_rev[1:]).mean())}
    for sfx, o, truth, u in (("_true", out, video, u_true), ("_reversed", out_rev, rev_video, -u_true),
                             ("_gt", video, video, u_true), ("_gt_reversed", rev_video, rev_video, -u_true)):
        c1 = colour_centroid(o[-1], col, tol)
        ct = colour_centroid(truth[-1], col, tol)
        if c0 is None or c1 is None or ct is None:
            r |= {"toward" + sfx: float("nan"), "agree_gt" + sfx: float("nan"), "proj_px" + sfx: float("nan"),
                  "missing" + sfx: 1.0}
            continue
        disp, disp_t = c1 - c0, ct - c0
        r |= {"toward" + sfx: float(disp @ u > 0), "agree_gt" + sfx: float(disp @ disp_t > 0),
              "proj_px" + sfx: float(disp @ u), "missing" + sfx: 0.0}
    return r


def _prompt_means(rows: Sequence[dict]) -> dict:
    """:func:`_mean_rows` of step 5, with the ``missing`` keys as counts of clips instead of fractions."""
    m = _mean_rows(rows)
    for sfx in ("_true", "_reversed", "_gt", "_gt_reversed"):
        if rows:
            m["missing" + sfx] = int(sum(r["missing" + sfx] for r in rows))
    return m


def _scene_records(sc: _Scenes, vae_psnr: list[float], rows_i2v: list[dict], rows_flf: list[dict],
                   sp: _SpatialMask, pr: _Prompt, rows_two: list[dict]) -> list[dict]:
    """One record per scene (uncapped values): the 1-object scenes, then the 2-object ones (I2V only)."""
    scenes = []
    for i in range(len(sc.specs)):
        rec = {"seed": sc.seeds[i], "motion": sc.motions[i], "caption": sc.captions[i],
               "edit_caption": sp.edits[i].caption, "vae_psnr": vae_psnr[i], "i2v": rows_i2v[i],
               "first_last": rows_flf[i], "spatial_mask": sp.rows[i]}
        if i in pr.lin:
            rec["prompt"] = pr.rows[pr.lin.index(i)]
        scenes.append(rec)
    n = len(sc.specs)
    return scenes + [{"seed": sc.seeds[n + j], "motion": spec.objects[0].motion, "caption": caption(spec),
                      "objects": 2, "i2v": rows_two[j]} for j, spec in enumerate(sc.specs2)]


def _record(s: _Setup, sc: _Scenes, seed: int, metrics: dict, scenes: list[dict], wall_seconds: float) -> dict:
    """The result dict of :func:`evaluate_base`: settings, the held-out seeds, ``metrics``, timing, ``scenes``."""
    run = s.run
    timing = {"clips": run.clips, "seconds": round(run.seconds, 2),
              "seconds_per_clip": run.seconds / max(1, run.clips), "batch": run.batch,
              "wall_seconds": round(wall_seconds, 1), "threads": torch.get_num_threads()}
    return {
        "backbone": s.name, "checkpoint": s.checkpoint,
        "settings": {"height": s.size, "width": s.size, "num_frames": s.frames, "steps": s.steps,
                     "guidance": s.guidance, "flow_shift": s.flow_shift, "tol": s.tol, "psnr_cap": PSNR_CAP,
                     "n_scenes": len(sc.specs), "n_two_objects": len(sc.specs2), "motions": list(TRAINED_MOTIONS)},
        "held_out": {"seed": seed, "scene_seeds": sc.seeds,
                     "note": "seeds = np.random.default_rng(seed).integers(0, 2**62, n); pretraining draws 62-bit "
                             "seeds from default_rng(0), so these are disjoint from its clips with probability "
                             "~1 - 1e-11"},
        "metrics": metrics,
        "timing": timing, "scenes": scenes,
    }


def _write_outputs(out: Path, result: dict, sc: _Scenes, out_i2v: np.ndarray, out_flf: np.ndarray,
                   sp: _SpatialMask, pr: _Prompt, n_examples: int) -> None:
    """``results.json``, ``table.md`` and ``examples.png`` (one example per trained motion, ``n_examples`` at
    most: source, I2V, first+last, reversed caption, the recolour edit and both ways to generate it)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_finite(result), indent=1))
    (out / "table.md").write_text(format_table(result) + "\n")
    rows = []
    motions = sc.motions
    picks = [motions.index(m) for m in TRAINED_MOTIONS if m in motions][:n_examples]
    for i in picks:
        ex = [(f"{motions[i]}: source", sc.videos[i]), ("I2V", out_i2v[i]), ("first+last", out_flf[i])]
        if i in pr.lin:
            ex.append(("reversed caption", pr.reversed[pr.lin.index(i)]))
        ex += [("GT recolour", sp.edits[i].video), ("spatial mask", sp.spatial[i]), ("plain I2V (edit)", sp.plain[i])]
        rows.append(ex)
    write_example_grid(out / "examples.png", rows)


def _evaluate(backbone: str | os.PathLike | Backbone, n_scenes: int, seed: int, steps: int | None,
              n_two_objects: int | None, batch: int, tol: float, out: str | os.PathLike | None,
              n_examples: int) -> dict:
    """:func:`evaluate_base` without the thread setting: set up -> scenes -> the five steps -> record (-> files)."""
    t_start = time.perf_counter()
    s = _set_up(backbone, seed, steps, tol, batch)
    n_two = n_scenes // 4 if n_two_objects is None else int(n_two_objects)
    sc = _held_out_scenes(seed, n_scenes, n_two, s.size, s.frames)
    # the five steps of the module docstring, in its order
    vae_psnr, m_vae = _vae_reconstruction(s.bb.vae, sc.videos)
    out_i2v, rows_i2v = _i2v(s, sc)
    out_flf, rows_flf = _i2v(s, sc, last_frame=True)
    rows_two = _two_objects(s, sc)
    sp = _spatial_mask(s, sc)
    pr = _prompt_use(s, sc, out_i2v)

    by_motion = {m: _mean_rows([r for r, mm in zip(rows_i2v, sc.motions, strict=True) if mm == m])
                 for m in TRAINED_MOTIONS if m in sc.motions}
    metrics = {"vae": m_vae, "i2v": _mean_rows(rows_i2v), "i2v_by_motion": by_motion,
               "i2v_two_objects": _mean_rows(rows_two), "first_last": _mean_rows(rows_flf),
               "spatial_mask": _mean_rows(sp.rows), "prompt": _prompt_means(pr.rows)}
    scenes = _scene_records(sc, vae_psnr, rows_i2v, rows_flf, sp, pr, rows_two)
    result = _record(s, sc, seed, metrics, scenes, time.perf_counter() - t_start)
    if out is not None:
        _write_outputs(Path(out), result, sc, out_i2v, out_flf, sp, pr, n_examples)
    return result


# ----------------------------------------------------------------------------------------------- reporting
def _f(x: float, unit: str = "", digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}{unit}"


def _vae_table_rows(v: dict) -> list[str]:
    vae = "inf" if math.isinf(v["psnr_mean"]) else f"{v['psnr_mean']:.1f} dB (min {v['psnr_min']:.1f})"
    return [f"| VAE encode→decode PSNR (n={v['n']}) | {vae}; max abs err {v['max_abs_err']:.1e}; bit-exact "
            f"{v['exact_clips']}/{v['n']}, 8-bit-exact {v['clips_8bit_exact']}/{v['n']} | – | – |"]


def _i2v_table_rows(label: str, r: dict, frames: str, given: str) -> list[str]:
    """Rows of one I2V section (model vs repeat-first); none when the section has no scenes."""
    if not r.get("n"):
        return []
    return [f"| {label}: PSNR of the given {given} in the output (n={r['n']}) | {_f(r['psnr_given'], ' dB')} "
            "| – | – |",
            f"| {label}: PSNR whole frame, {frames} | {_f(r['psnr_frame'], ' dB')} | "
            f"{_f(r['psnr_frame_repeat_first'], ' dB')} | repeat first frame |",
            f"| {label}: PSNR object region | {_f(r['psnr_region'], ' dB')} | "
            f"{_f(r['psnr_region_repeat_first'], ' dB')} | repeat first frame |",
            f"| {label}: object recognisable | {_f(r['recognisable'])} | {_f(r['recognisable_repeat_first'])} "
            f"| repeat first frame |"]


def _spatial_mask_table_rows(sp: dict) -> list[str]:
    """Rows of step 4 (spatial mask vs plain I2V from the edited frame); none without scenes."""
    if not sp.get("n"):
        return []
    base = "plain I2V from edited frame"
    return [f"| Spatial mask (recolour, n={sp['n']}): PSNR keep region vs source | {_f(sp['psnr_keep'], ' dB')}"
            f" | {_f(sp['psnr_keep_plain_i2v'], ' dB')} | {base} |",
            f"| Spatial mask: PSNR region vs GT edit | {_f(sp['psnr_region_vs_gt'], ' dB')} | "
            f"{_f(sp['psnr_region_vs_gt_plain_i2v'], ' dB')} | {base} |",
            f"| Spatial mask: object pixels in the **new** colour | {_f(sp['new_colour'])} | "
            f"{_f(sp['new_colour_plain_i2v'])} | {base} |",
            f"| Spatial mask: object pixels in the old colour | {_f(sp['old_colour'])} | "
            f"{_f(sp['old_colour_plain_i2v'])} | {base} |"]


def _prompt_table_rows(p: dict) -> list[str]:
    """Rows of step 5 (true vs reversed caption, against the ground truth); none without linear scenes."""
    if not p.get("n"):
        return []
    t = [f"| Prompt (linear, n={p['n']}): mean abs diff, true vs reversed caption | "
         f"{_f(p['mean_abs_diff'], digits=4)} | – | – |",
         f"| Prompt: moves toward captioned direction, true caption | {_f(p['toward_true'])} | "
         f"{_f(p['toward_gt'])} | ground truth (bounces count against) |",
         f"| Prompt: moves toward captioned direction, reversed caption | {_f(p['toward_reversed'])} | "
         f"{_f(p['toward_gt_reversed'])} | ground truth of the reversed scene |",
         f"| Prompt: displacement agrees with GT for the caption, true / reversed | "
         f"{_f(p['agree_gt_true'])} / {_f(p['agree_gt_reversed'])} | 1.00 | ground truth |",
         f"| Prompt: displacement along captioned direction (px), true / reversed | "
         f"{_f(p['proj_px_true'], digits=1)} / {_f(p['proj_px_reversed'], digits=1)} | "
         f"{_f(p['proj_px_gt'], digits=1)} / {_f(p['proj_px_gt_reversed'], digits=1)} | ground truth |"]
    miss = p.get("missing_true", 0) + p.get("missing_reversed", 0)
    if miss:
        t.append(f"| Prompt: clips where the object's colour vanished (excluded) | {miss} | – | – |")
    return t


def _by_motion_table(by_motion: dict[str, dict]) -> list[str]:
    """The second table: I2V per trained motion, model / repeat-first."""
    bm = ["", "I2V by motion (model / repeat-first):", "",
          "| motion | n | PSNR frame | PSNR region | recognisable |", "|---|---|---|---|---|"]
    for k, r in by_motion.items():
        bm.append(f"| {k} | {r['n']} | {_f(r['psnr_frame'])} / {_f(r['psnr_frame_repeat_first'])} | "
                  f"{_f(r['psnr_region'])} / {_f(r['psnr_region_repeat_first'])} | "
                  f"{_f(r['recognisable'])} / {_f(r['recognisable_repeat_first'])} |")
    return bm


def format_table(result: dict) -> str:
    """The headline numbers of :func:`evaluate_base` as markdown (a main table + I2V by motion)."""
    m, s, ck = result["metrics"], result["settings"], result["checkpoint"]
    step = f"step {ck['step']}" if ck and ck.get("step") is not None else "no pretrain.json"
    head = [f"**Base-model quality** — backbone `{result['backbone']}` ({step}); {s['n_scenes']} held-out 1-object "
            f"scenes (seed {result['held_out']['seed']}), {s['height']}x{s['width']}x{s['num_frames']}, "
            f"{s['steps']} steps, guidance {s['guidance']}, flow shift {s['flow_shift']}; tol {s['tol']}; "
            f"PSNR means capped at {s['psnr_cap']:.0f} dB per scene.", ""]
    T = s["num_frames"]
    tm = result["timing"]
    t = ["| metric | model | baseline | baseline is |", "|---|---|---|---|",
         *_vae_table_rows(m["vae"]),
         *_i2v_table_rows("I2V (first frame)", m["i2v"], f"frames 1..{T - 1}", "frame 0"),
         *_i2v_table_rows("I2V, 2 objects", m["i2v_two_objects"], f"frames 1..{T - 1}", "frame 0"),
         *_i2v_table_rows("First + last frame", m["first_last"], f"frames 1..{T - 2}", f"frames 0, {T - 1}"),
         *_spatial_mask_table_rows(m["spatial_mask"]),
         *_prompt_table_rows(m["prompt"]),
         f"| Seconds per generated clip (batch {tm['batch']}, {tm['threads']} threads) | "
         f"{tm['seconds_per_clip']:.3f} s | – | {tm['clips']} clips |"]
    return "\n".join(head + t + _by_motion_table(m["i2v_by_motion"]))


def write_example_grid(path: str | os.PathLike, examples: Sequence[Sequence[tuple[str, np.ndarray]]], *,
                       scale: int = 4) -> Path:
    """One PNG: per example a block of labelled rows (each a ``(T, H, W, 3)`` video in [0, 1] as a frame strip),
    upscaled ``scale``x nearest; rows are separated by a grey line, examples by a thick white one."""
    from PIL import Image, ImageDraw

    from ..video import write_image

    label_w, blocks = 150, []
    for ex in examples:
        for label, video in ex:
            strip = upscale(frames_strip(np.asarray(video, np.float32)), scale)
            img = Image.new("RGB", (label_w, strip.shape[0]), (0, 0, 0))
            ImageDraw.Draw(img).text((4, 4), label, fill=(255, 255, 255))
            blocks.append(np.concatenate([np.asarray(img, np.float32) / 255, strip], 1))
            blocks.append(np.full((1, blocks[-1].shape[1], 3), 0.5, np.float32))
        blocks[-1] = np.ones((6, blocks[-1].shape[1], 3), np.float32)
    return write_image(path, np.concatenate(blocks[:-1], 0))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="toy", help="'toy', 'tiny-random' or a backbone folder")
    p.add_argument("--n", type=int, default=32, help="number of held-out 1-object scenes")
    p.add_argument("--n-two", type=int, default=None, help="2-object scenes (default n // 4)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the backbone's)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="outputs/toy_quality")
    a = p.parse_args(argv)
    res = evaluate_base(a.backbone, a.n, a.seed, a.steps, n_two_objects=a.n_two, batch=a.batch, threads=a.threads,
                        out=a.out)
    print(format_table(res))
    print(f"\nwrote {Path(a.out) / 'results.json'}, {Path(a.out) / 'examples.png'}")
    return res


if __name__ == "__main__":
    main()
