"""Mask-aware I2V inference: LoRA-Edit's condition + a (LoRA-adapted) backbone -> an edited video.

:func:`generate` builds the condition (:mod:`loraedit_nb.conditioning`) and runs the backbone family's masked
pipeline through ``backbone.adapter`` — Wan's :class:`~loraedit_nb.backbones.wan.MaskedWanI2VPipeline` (diffusers'
stock I2V pipeline whose ``prepare_latents`` returns LoRA-Edit's condition) or HunyuanVideo's
:class:`~loraedit_nb.backbones.hunyuan.MaskedHunyuanI2VPipeline`. :func:`edit_video` adds the user-facing part:
edited frames, LoRA loading, memory placement, compositing, previews.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backbones.base import with_flow_shift  # noqa: F401 - re-exported (it used to live here)
from .conditioning import CheckedClip, check_clip, condition_of, condition_video_of, decode, keep_of
from .lora import add_lora, check_compatible, load_lora, lora_weight_file, read_lora_meta, set_lora_state
from .masks import (
    MaskPolarityWarning,  # noqa: F401 - re-exported: callers filter it
    PlainI2VMaskWarning,  # noqa: F401 - re-exported: callers filter it
    dilate,
    overlay,
    warn_if_degenerate,
)
from .memory import (
    apply_fp8,
    block_swapper,
    enable_block_swap,
    enable_expert_switch,
    evicted_all,
    fix_lora_dtype,
    get_preset,
    is_fp8,
    onload,
    to_host,
)
from .video import InputError, check_image, from_model, hstack, resize_and_crop, write_video


@torch.inference_mode()  # no autograd bookkeeping at all (2-3 % faster than no_grad on the toy model)
def generate(backbone, video, mask, first_frame=None, *, prompt: str = "", negative_prompt: str | None = None,
             keyframes=None, steps: int | None = None, guidance: float | None = None,
             flow_shift: float | None = None, seed: int = 0, callback_on_step_end=None,
             progress: bool = True, checked: bool = False):
    """Run the (possibly LoRA-adapted) I2V model on LoRA-Edit's condition; returns float ``(T, H, W, 3)`` in [0, 1].

    ``video``/``mask``/``first_frame``/``keyframes`` as in :func:`loraedit_nb.conditioning.build_condition`
    (``first_frame`` = the edited first frame at inference). Sampler settings default to ``backbone.defaults``.
    The condition is packed and the pipeline run by the backbone family's adapter (Wan or HunyuanVideo).
    Clip sizes the backbone cannot run are refused, sizes beyond what it was trained at warned about
    (:meth:`~loraedit_nb.backbones.base.Backbone.check_clip_size`). ``checked=True``: ``video`` and ``mask`` come
    from :func:`~loraedit_nb.conditioning.check_clip` already (as :func:`edit_video` passes them): trusted.
    """
    backbone.check_clip_size(*np.shape(video)[:3])
    clip = CheckedClip(video, mask) if checked else check_clip(video, mask)
    video = clip.video
    d = backbone.defaults
    steps = steps or d.get("steps", 30)
    guidance = d.get("guidance", 5.0) if guidance is None else guidance
    flow_shift = d.get("flow_shift") if flow_shift is None else flow_shift
    first = video[0] if first_frame is None else first_frame
    adapter = backbone.adapter
    room = evicted_all((backbone.transformer, backbone.transformer_2), backbone.device, "vae" in backbone.evict_for)
    with room, onload(backbone.vae, backbone.device):  # the VAE encodes where the model runs (not on a CPU)
        cond = condition_of(backbone.vae, clip, first, keyframes=keyframes, adapter=adapter)
    T, H, W = video.shape[:3]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return adapter.generate(backbone, cond, first, prompt=prompt, negative_prompt=negative_prompt, num_frames=T,
                            height=H, width=W, steps=steps, guidance=guidance, flow_shift=flow_shift, generator=gen,
                            callback_on_step_end=callback_on_step_end, progress=progress)


# ----------------------------------------------------------------------------------------------- editing
@dataclass
class EditResult:
    """An edited video ``(T, H, W, 3)`` in [0, 1] and everything needed to reproduce it."""

    video: np.ndarray
    seed: int
    prompt: str
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0


def use_lora(backbone, lora, *, scale: float = 1.0) -> None:
    """Make ``backbone.transformer`` run with ``lora`` (a :class:`~loraedit_nb.training.LoraRun`, a saved LoRA
    folder/file, or None for the un-tuned model). A saved LoRA goes through diffusers' ``load_lora_weights``; on an
    fp8-cast transformer it is read with diffusers' ``lora_state_dict`` and loaded into a LoRA made in the compute
    dtype first, because peft would create it in float8 and round the weights before we could cast them back.
    The LoRA ends up in the transformer's compute dtype (bf16 for a real model, fp32 for the toy) on the execution
    device, whatever the order of training, loading and fp8 casting."""

    if backbone.transformer_2 is not None:  # Wan2.2-I2V-A14B: one LoRA per expert (either may be None)
        for which, part in _expert_loras(lora).items():
            use_lora(backbone.expert(which), part, scale=scale)
        return
    tr = backbone.transformer
    if getattr(tr, "peft_config", None):
        tr.delete_adapters(list(tr.peft_config))
    if lora is None:
        return
    dtype = tr.dtype if tr.dtype in (torch.bfloat16, torch.float16) else torch.float32
    if not isinstance(lora, (str, os.PathLike)):
        cfg = lora.config
        _attach_lora(backbone, lora.state_dict, cfg.rank, cfg.alpha, cfg.targets or backbone.adapter.lora_targets,
                     dtype, scale)
        return
    meta = check_compatible(lora, tr)
    if is_fp8(tr):
        _load_lora_fp8_safe(backbone, lora, meta, dtype, scale)
        return
    load_lora(backbone, lora, adapter_name="default", scale=scale)
    fix_lora_dtype(tr, dtype, device=backbone.device)


def _expert_loras(lora) -> dict:
    """``{"high": lora or None, "low": lora or None}`` from what a user may pass for a two-expert backbone: None, a
    dict by expert, a run or saved LoRA trained for one expert (its config says which), or a folder with ``high/``
    and ``low/`` (``LoraRun.save`` of a pair)."""
    out = {"high": None, "low": None}
    if lora is None:
        return out
    if isinstance(lora, dict):
        bad = set(lora) - set(out)
        if bad:
            raise ValueError(f"expert LoRAs are keyed 'high' and 'low', got {sorted(bad)}")
        return {**out, **lora}
    if isinstance(lora, (str, os.PathLike)):
        path = Path(lora)
        if (path / "high").is_dir() or (path / "low").is_dir():
            return {e: (path / e if (path / e).is_dir() else None) for e in out}
        which = read_lora_meta(path).get("train_config", {}).get("expert")
    elif getattr(lora, "experts", None):
        return {**out, **lora.experts}
    else:
        which = lora.config.expert
    if which not in out:
        raise ValueError("this backbone has two experts (Wan2.2-I2V-A14B) and the LoRA says for neither: pass "
                         "{'high': ..., 'low': ...}, a folder with high/ and low/ (a saved pair), or a LoRA trained "
                         "with expert='high'/'low'")
    return {**out, which: lora}


def _attach_lora(backbone, state_dict: dict, rank: int, alpha, targets, dtype: torch.dtype, scale: float) -> None:
    """A fresh adapter in ``dtype`` on the execution device, then the weights copied in (never via a float8 LoRA)."""

    tr = backbone.transformer
    add_lora(tr, rank=rank, alpha=alpha, targets=targets)
    fix_lora_dtype(tr, dtype, device=backbone.device)
    set_lora_state(tr, state_dict)
    if scale != 1.0:
        tr.set_adapters(["default"], [scale])
    tr.requires_grad_(False)
    tr.eval()


def _load_lora_fp8_safe(backbone, path, meta: dict, dtype: torch.dtype, scale: float) -> None:
    """Read a LoRA with diffusers (format conversion included), build the adapter in ``dtype``, copy the weights."""

    file = lora_weight_file(Path(path))
    sd = backbone.adapter.pipeline_class.lora_state_dict(str(file.parent), weight_name=file.name)
    sd = sd[0] if isinstance(sd, tuple) else sd
    sd = {k.removeprefix("transformer."): v for k, v in sd.items() if not k.startswith("text_encoder")}
    a_keys = [k for k in sd if k.endswith("lora_A.weight")]
    if not a_keys:
        raise ValueError(f"{file} holds no LoRA weights for the transformer")
    rank = int(sd[a_keys[0]].shape[0])
    targets = sorted({k[: -len(".lora_A.weight")] for k in a_keys})
    _attach_lora(backbone, sd, rank, meta.get("alpha", rank), targets, dtype, scale)


def prepare_for_editing(backbone, memory_preset: str | None, frames: int, height: int, width: int, *,
                        place: bool = True) -> dict:
    """Place the transformer and encoders for editing as ``memory_preset`` says (:data:`memory.MEMORY_PRESETS`):
    fp8 storage (cast on the CPU, LoRA re-attached afterwards by :func:`use_lora`), ``edit_offload`` = ``"none"``
    (everything resident), ``"model"`` (encoders come to the GPU one at a time) or ``"blocks"`` (+ transformer
    blocks swapped from pinned host memory; ``"auto"`` = the planner's count). A no-op for ``None``.
    Two experts (Wan2.2-I2V-A14B): each gets the preset's storage, and they take turns on the GPU
    (:class:`~loraedit_nb.memory.ExpertSwitch`): only one expert's weights are there at a time. ``place=False``:
    decide and cast, but leave the transformer where it is.
    Returns what it chose (recorded in the edit's settings)."""

    if memory_preset is None:
        return {}
    if backbone.transformer_2 is not None:
        for which in backbone.EXPERTS:
            out = prepare_for_editing(backbone.expert(which), memory_preset, frames, height, width, place=False)
        preset = get_preset(memory_preset, backbone.device)
        backbone.evict_for = _evictions(backbone.expert("high"), preset, frames, height, width,
                                        out["blocks_to_swap"])
        if backbone.device.type != "cpu":
            for m in (backbone.transformer, backbone.transformer_2):
                to_host(m)
            enable_expert_switch([backbone.transformer, backbone.transformer_2], out["blocks_to_swap"],
                                 backbone.device)
            if preset.edit_offload == "none":
                for m in backbone.encoders:
                    m.to(backbone.device)
        return {**out, "evict_for": sorted(backbone.evict_for), "experts": "one on the GPU at a time"}
    preset = get_preset(memory_preset, backbone.device)
    tr = backbone.transformer
    dev = backbone.device
    if not preset.edit_fp8 and is_fp8(tr) and not backbone.is_tiny:
        print(f"memory_preset={preset.name!r} edits with bf16 weights, but this transformer is already stored in fp8 "
              "(cast for training in this process, or loaded so): the edit runs in fp8. For bf16 weights, edit in "
              "a fresh process (`python -m loraedit_nb edit`) or load the backbone again")
    if preset.edit_fp8 and not is_fp8(tr):
        if tr.dtype in (torch.bfloat16, torch.float16):
            if getattr(tr, "peft_config", None):
                tr.delete_adapters(list(tr.peft_config))  # cast the base alone; use_lora attaches the LoRA after
            to_host(tr)
            apply_fp8(tr)
        else:
            print(f"memory_preset={preset.name!r}: the transformer is {tr.dtype}, so editing keeps it unquantised "
                  "(load with dtype=torch.bfloat16 for fp8 storage)")
    n = 0
    if preset.edit_offload == "blocks":
        n = preset.edit_blocks_to_swap
        if n == "auto":
            n = 0
            if not backbone.is_tiny and dev.type == "cuda":
                from .planner import plan

                n = plan(dict(tr.config), frames, height, width, preset.name).edit_blocks_to_swap
    sw = block_swapper(tr)
    if not place:
        return {"memory_preset": preset.name, "edit_offload": preset.edit_offload, "fp8": is_fp8(tr),
                "blocks_to_swap": int(n), "vae_tiling": preset.vae_tiling}
    # the swapper training left (e.g. 21 of 40 blocks on 24GB) is replaced by the edit's own count (6): kept, it
    # streamed 15 more blocks per forward than the plan for every denoising pass (found by the full-size simulation)
    if not (sw is not None and sw.n == n):
        enable_block_swap(tr, int(n), dev)
    if preset.edit_offload == "none":
        for m in backbone.encoders:
            m.to(dev)
    sw = block_swapper(tr)
    backbone.evict_for = _evictions(backbone, preset, frames, height, width, sw.n if sw else 0)
    return {"memory_preset": preset.name, "edit_offload": preset.edit_offload, "fp8": is_fp8(tr),
            "blocks_to_swap": sw.n if sw else 0, "vae_tiling": preset.vae_tiling,
            "evict_for": sorted(backbone.evict_for)}


def _evictions(backbone, preset, frames: int, height: int, width: int, k: int) -> frozenset[str]:
    """The components this edit runs with the transformer moved out (``Backbone.evict_for``): what the planner
    finds does not fit beside the transformer as it is placed (its storage, ``k`` swapped blocks) on the tier.
    Nothing on a CPU or for a tiny backbone; every component for a transformer the planner does not know."""
    if preset.edit_offload == "none" or backbone.is_tiny or backbone.device.type != "cuda":
        return frozenset()
    from .planner import EVICTABLE, planned_evictions

    try:
        return planned_evictions(dict(backbone.transformer.config), frames, height, width, preset, k,
                                 fp8=is_fp8(backbone.transformer))
    except ValueError:
        return frozenset(EVICTABLE)


def feathered(mask: np.ndarray, radius: int = 2) -> np.ndarray:
    """Soft version of a bool ``(T, H, W)`` mask for compositing: dilated by ``radius`` and blurred, in [0, 1]."""
    import cv2


    m = dilate(mask, radius).astype(np.float32)
    k = 2 * radius + 1
    return np.stack([cv2.GaussianBlur(f, (k, k), radius / 2 + 1e-6) if radius else f for f in m])


def _fit_frame(frame: np.ndarray, source: np.ndarray, name: str, resize: bool) -> np.ndarray:
    """An edited frame as float ``(H, W, 3)`` at the size of ``source`` (the source frame at the same index).
    RGBA is composited over ``source``: in an edited frame a transparent pixel means "unchanged" (an image editor's
    layer exported with transparency), not black; see :func:`loraedit_nb.video.check_image`."""

    frame = np.asarray(frame)
    H, W = source.shape[:2]
    if frame.dtype == np.uint8:
        frame = frame.astype(np.float32) / 255
    if frame.ndim == 3 and frame.shape[:2] != (H, W):
        if not resize:
            raise InputError(f"{name} is {frame.shape[1]}x{frame.shape[0]} but the video is {W}x{H} (WxH).",
                             "Pass resize_edits=True to resize/crop it with the video's transform, or use "
                             f"resize_and_crop(frame, {H}, {W}).",
                             cli=f"Add --resize-edits to resize/crop it with the clip's transform, or save it at "
                                 f"{W}x{H}.")
        frame = resize_and_crop(frame, H, W)
    return check_image(frame, name, background=source)


def edit_video(backbone, lora, source_video: np.ndarray, mask: np.ndarray, edited_first_frame: np.ndarray, *,
               edited_frames: Mapping[int, np.ndarray] | None = None, place_edited_frames: bool = False,
               prompt: str = "", negative_prompt: str | None = None, steps: int | None = None,
               guidance: float | None = None, flow_shift: float | None = None, seed: int | None = None,
               composite: bool = False, feather: int = 2, honour_given: bool = False, resize_edits: bool = False,
               preview_every: int = 0, preview: Callable[[int, np.ndarray], None] | None = None,
               vae_tiling: bool = False, vae_slicing: bool = False, memory_preset: str | None = None,
               progress: bool = True) -> EditResult:
    """Edit ``source_video`` from an edited first frame (+ optional edited later frames) with a trained LoRA.

    ``source_video`` float ``(T, H, W, 3)`` in [0, 1]; ``mask`` bool ``(T, H, W)``, True = edit;
    ``edited_first_frame`` ``(H, W, 3)`` (float in [0, 1] or uint8). Edited frames may be RGBA ``(H, W, 4)``: they
    are composited over the source frame at their index (transparent = unchanged source, never black).
    The condition is built exactly as in training with the *edited* first frame in place of the original (and the
    CLIP embedding, where the backbone has one, of the edited frame).
    ``edited_frames`` ``{i: (H, W, 3)}``: with ``place_edited_frames=True`` they are also put into the condition
    at their indices with the mask set to keep there (like Wan's first-last-frame mode; beyond the official code).
    ``composite``: paste the source back outside a ``feather``-px feathered mask after decoding (off by default).
    ``honour_given``: after decoding, every pixel the user gave comes out exactly as given — frame 0 is the edited
    first frame, placed edited frames sit at their indices, and outside the mask the source (a hard edge; applied
    after ``composite``, so it wins). The given pixels are the condition's own (:func:`keep_mask`,
    :func:`condition_video`). Off by default: the paper's recipe returns the model's output, and the toy probes
    (results/toy_lever_probes.md) found it fixes frame 0 and the background, not the edit region; re-imposing the
    given latents during sampling measured the same as this final composite, which is exact on any VAE.
    ``lora``: a LoraRun, a saved LoRA folder, or None (un-tuned model). ``seed=None`` picks one and prints it.
    ``preview(step, video)`` is called every ``preview_every`` denoising steps with the decoded current estimate.
    ``memory_preset``: ``"16GB" | "24GB" | "48GB" | "80GB+" | "auto"`` places the model for that GPU tier
    (:func:`prepare_for_editing`); the default is ``"auto"`` for a real backbone on a GPU, nothing for a tiny one.
    """
    import time

    t0 = time.time()
    clip = check_clip(source_video, mask, "source_video")
    source_video, mask = clip.video, clip.mask
    warn_if_degenerate(mask, context="editing")
    T, H, W = mask.shape
    first = _fit_frame(edited_first_frame, source_video[0], "the edited first frame", resize_edits)
    keyframes = None
    if edited_frames:
        fixed = {}
        for i, f in edited_frames.items():
            if not -T <= i < T:
                raise ValueError(f"edited frame index {i} is out of range for a {T}-frame video (0..{T - 1})")
            fixed[i % T] = _fit_frame(f, source_video[i % T], f"edited frame {i}", resize_edits)
        keyframes = {i: f for i, f in fixed.items() if i != 0} if place_edited_frames else None
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
        if progress:
            print(f"seed: {seed}  (pass seed={seed} to reproduce)")
    d = backbone.defaults
    if negative_prompt is None:
        negative_prompt = backbone.adapter.negative_prompt(backbone)
    if memory_preset is None and not backbone.is_tiny and backbone.device.type == "cuda":
        memory_preset = "auto"
    placement = prepare_for_editing(backbone, memory_preset, T, H, W)
    vae_tiling = vae_tiling or placement.get("vae_tiling", False)
    use_lora(backbone, lora)
    if vae_tiling:
        backbone.vae.enable_tiling()
    if vae_slicing:
        backbone.vae.enable_slicing()
    callback = None
    if preview is not None and preview_every:
        def callback(pipe, i, t, kw):
            if (i + 1) % preview_every == 0:
                preview(i + 1, from_model(decode(backbone.vae, kw["latents"])[:1]))
            return {}
    out = generate(backbone, source_video, mask, first, prompt=prompt, negative_prompt=negative_prompt,
                   keyframes=keyframes, steps=steps, guidance=guidance, flow_shift=flow_shift, seed=seed,
                   callback_on_step_end=callback, progress=progress, checked=True)
    if composite:
        a = feathered(mask, feather)[..., None]
        out = (a * out + (1 - a) * source_video).astype(np.float32)
    if honour_given:
        given = condition_video_of(clip, first, keyframes=keyframes)
        out = np.where(keep_of(mask, keyframes=keyframes)[..., None] > 0, given, out).astype(np.float32)
    settings = dict(steps=steps or d.get("steps"), guidance=d.get("guidance") if guidance is None else guidance,
                    flow_shift=d.get("flow_shift") if flow_shift is None else flow_shift, composite=composite,
                    honour_given=honour_given,
                    place_edited_frames=place_edited_frames, edited_frame_indices=sorted(edited_frames or {}),
                    negative_prompt=negative_prompt, backbone=backbone.name, **placement)
    return EditResult(out, seed, prompt, settings, time.time() - t0)


def save_edit(result: EditResult, out: str | os.PathLike, source_video: np.ndarray, mask: np.ndarray, *,
              fps: float = 8.0, upscale: int = 1) -> dict:
    """Write the edit to disk; returns ``{"edited": path, "comparison": path}`` (strings).

    ``out``: an ``.mp4`` path ``DIR/NAME.mp4``, or a folder ``DIR`` (any other path; then NAME = ``edited``).
    Writes three files into DIR: ``NAME.mp4`` (the edited video, H.264), ``NAME_comparison.mp4`` (source | mask
    overlay | edited, side by side) and ``NAME.json`` (seed, prompt, seconds and the settings, to reproduce it).
    ``upscale`` repeats pixels in both videos."""
    import json

    out = Path(out)
    folder, name = (out.parent, out.name) if out.suffix == ".mp4" else (out, "edited.mp4")
    edited = write_video(folder / name, result.video, fps, upscale=upscale)
    comp = write_video(folder / (Path(name).stem + "_comparison.mp4"),
                       hstack(source_video, overlay(source_video, mask), result.video, scale=upscale,
                              labels=("source", "mask (red = edit)", "edited")), fps)
    meta = {"seed": result.seed, "prompt": result.prompt, "seconds": round(result.seconds, 2), **result.settings}
    (folder / (Path(name).stem + ".json")).write_text(json.dumps(meta, indent=1))
    return {"edited": str(edited), "comparison": str(comp)}
