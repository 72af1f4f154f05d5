"""Loading a transformer's weights straight into the storage dtype the memory preset runs it in.

``from_pretrained(torch_dtype=bfloat16)`` followed by fp8 casting holds the whole bf16 model in host RAM first
(Wan2.1-14B: 32.7 GB), then casts it to 16.8 GB. Here the model is built on ``meta`` with its final dtypes decided
up front (what ``from_pretrained`` keeps in fp32, and diffusers' layerwise-casting hooks putting the frozen Linear
weights in fp8), and the checkpoint is then read **one tensor at a time** into those dtypes: the host peak is the
model as stored plus one tensor. The same two functions fill a full-size model with fake tensors in
:mod:`loraedit_nb.simulation`, so the simulated host peak is this code's peak.

    model = as_loaded(meta_model, torch.bfloat16, fp8=True)    # meta: dtypes + fp8 hooks, no bytes yet
    fill(model, safetensors_tensors(folder))                    # one tensor at a time into those dtypes
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

WEIGHTS_INDEX = "diffusion_pytorch_model.safetensors.index.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def keep_in_fp32(model: torch.nn.Module, dtype: torch.dtype, library: str = "diffusers") -> list[str]:
    """The module names ``from_pretrained(torch_dtype=dtype)`` keeps in fp32: diffusers keeps
    ``_keep_in_fp32_modules`` in any dtype, transformers only under fp16 (``_strict``: also bf16)."""
    keep = []
    if library == "diffusers" or dtype == torch.float16:
        keep = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    return keep + list(getattr(model, "_keep_in_fp32_modules_strict", None) or [])


def as_loaded(model: torch.nn.Module, dtype: torch.dtype, *, fp8: bool = False, library: str = "diffusers"
              ) -> torch.nn.Module:
    """Give a ``meta``-built model the dtypes ``from_pretrained(torch_dtype=dtype)`` would (floating tensors in
    ``dtype``, :func:`keep_in_fp32` modules fp32, matched per dotted name part as diffusers does; buffers computed
    at init, which the checkpoint lacks, keep theirs), and with ``fp8``
    diffusers' layerwise casting on top (:func:`loraedit_nb.memory.apply_fp8`: fp8 storage of the frozen weights,
    compute in ``dtype``). No bytes are allocated: :func:`fill` reads the weights into these dtypes."""
    from .. import memory

    keep = keep_in_fp32(model, dtype, library)
    # parameters and persistent buffers (what the checkpoint holds); buffers computed at init keep their dtype
    for name, t in model.state_dict(keep_vars=True).items():
        if t.is_floating_point():
            t.data = t.data.to(torch.float32 if any(k in name.split(".") for k in keep) else dtype)
    if fp8:
        memory.apply_fp8(model, dtype)
    return model.eval()


def fill(model: torch.nn.Module, tensors: Iterable[tuple[str, torch.Tensor]], *, device: str = "cpu",
         via: torch.dtype | None = None, materialise: Callable[[torch.Tensor], torch.Tensor] | None = None
         ) -> torch.nn.Module:
    """Read ``(name, tensor)`` pairs into ``model``'s ``meta`` slots, each cast to its slot's dtype on ``device``
    as it arrives, so at most one source tensor is alive beside the model. ``via``: the load dtype an fp8 slot's
    tensor passes through first, so the values are bit-identical to loading in ``via`` and casting afterwards.
    Every parameter and persistent buffer
    must come exactly once: a missing or unexpected name, or a shape that differs, raises (a checkpoint of another
    model). Non-persistent buffers (rotary tables) that are still on ``meta`` afterwards are made by
    ``materialise`` (``torch.empty_like`` on ``device`` by default), as ``from_pretrained`` computes them at init."""
    slots = dict(model.named_parameters(remove_duplicate=False))
    slots.update(model.state_dict(keep_vars=True))
    pending = {n for n, t in slots.items() if t.is_meta}
    seen = set()
    for name, src in tensors:
        if name not in slots:
            raise ValueError(f"the checkpoint has {name!r}, which this {type(model).__name__} does not: is it the "
                             "checkpoint of another model (or another config)?")
        slot = slots[name]
        if tuple(src.shape) != tuple(slot.shape):
            raise ValueError(f"{name}: the checkpoint's shape {tuple(src.shape)} differs from the model's "
                             f"{tuple(slot.shape)}: the config and the weights are of different models")
        if via is not None and slot.dtype.itemsize == 1 and slot.is_floating_point():
            src = src.to(via)
        _put(model, name, src.to(device=device, dtype=slot.dtype), slot)
        seen.add(name)
        del src
    missing = sorted(pending - seen)
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} of {type(model).__name__}'s weights, e.g. "
                         f"{missing[:3]}: the download is incomplete (delete the folder and load again)")
    make = materialise or (lambda t: torch.empty_like(t, device=device))
    for mod in model.modules():
        for bname, b in list(mod._buffers.items()):
            if b is not None and b.is_meta:
                mod._buffers[bname] = make(b)
    return model


def _put(model: torch.nn.Module, name: str, value: torch.Tensor, slot: torch.Tensor) -> None:
    mod_name, _, leaf = name.rpartition(".")
    mod = model.get_submodule(mod_name) if mod_name else model
    if leaf in mod._parameters:
        mod._parameters[leaf] = torch.nn.Parameter(value, requires_grad=slot.requires_grad)
    else:
        mod._buffers[leaf] = value


def safetensors_tensors(folder: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """A diffusers model folder's weights, one tensor at a time (memory-mapped shard by shard, in index order)."""
    from safetensors import safe_open

    folder = Path(folder)
    index = folder / WEIGHTS_INDEX
    if index.exists():
        shards = list(dict.fromkeys(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / WEIGHTS_FILE).exists():
        shards = [WEIGHTS_FILE]
    else:
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_FILE} (or its sharded index): is it a diffusers model "
                                "folder? Save one with model.save_pretrained(folder)")
    for shard in shards:
        with safe_open(folder / shard, framework="pt", device="cpu") as f:
            for key in f.keys():
                yield key, f.get_tensor(key)


def load_in_storage_dtype(cls: type, folder: str | Path, dtype: torch.dtype, *, fp8: bool) -> torch.nn.Module:
    """``cls.from_pretrained(folder, torch_dtype=dtype)`` (+ fp8 layerwise casting with ``fp8``), without ever
    holding the model in ``dtype``: host peak = the model as stored + one tensor. A diffusers model class."""
    from accelerate import init_empty_weights

    folder = Path(folder)
    with init_empty_weights(include_buffers=False):  # buffers are computed at init (rotary tables), as in diffusers
        model = cls.from_config(cls.load_config(folder))
    return fill(as_loaded(model, dtype, fp8=fp8), safetensors_tensors(folder), via=dtype)


def local_folder(source: str | Path, subfolder: str) -> Path:
    """``source/subfolder`` for a local model folder, else that subfolder of the Hub repo ``source`` (downloaded
    into the Hub cache once; only the subfolder's files)."""
    if Path(source).expanduser().is_dir():
        return Path(source).expanduser() / subfolder
    from huggingface_hub import snapshot_download  # pragma: no cover - needs the Hub

    return Path(snapshot_download(str(source), allow_patterns=[f"{subfolder}/*"])) / subfolder  # pragma: no cover


def load_transformer(cls: type, source: str | Path, subfolder: str, dtype: torch.dtype, *, fp8: bool = False
                     ) -> torch.nn.Module:
    """A family's transformer from a model folder or Hub repo: ``from_pretrained`` in ``dtype``, or with ``fp8``
    straight into fp8 storage (:func:`load_in_storage_dtype`; only from a bf16/fp16 ``dtype``, which fp8 computes
    in). Both give the same tensors; ``fp8`` never holds the bf16 model."""
    if fp8 and dtype in (torch.bfloat16, torch.float16):
        return load_in_storage_dtype(cls, local_folder(source, subfolder), dtype, fp8=True)
    return cls.from_pretrained(source, subfolder=subfolder, torch_dtype=dtype)


@dataclass(frozen=True)
class LoadOptions:
    """How a family loader stores what it loads, decided by the memory preset (:func:`load_options`)."""

    fp8: bool = False  # the transformer(s) straight into fp8 storage (:func:`load_transformer`)
    stream_text_encoder: bool = False  # no text encoder in host RAM (``Backbone.text_encoder_streamed``)


def load_options(preset, dtype: torch.dtype) -> LoadOptions:
    """The :class:`LoadOptions` of a :class:`~loraedit_nb.memory.MemoryPreset` (None: load everything as stored,
    as before any preset is known). fp8 only from a bf16/fp16 ``dtype`` (what fp8 layers compute in)."""
    if preset is None:
        return LoadOptions()
    return LoadOptions(fp8=preset.loads_fp8 and dtype in (torch.bfloat16, torch.float16),
                       stream_text_encoder=preset.streams_text_encoder)


def pretrained_loader(cls: type, source: str | Path, subfolder: str | None, **kwargs) -> Callable:
    """``loader(device=None)``: ``cls.from_pretrained(source, subfolder=..., **kwargs)`` in eval mode, on the host,
    or with a GPU ``device`` read straight onto it (transformers' ``device_map``: no copy in host RAM)."""

    def load(device: torch.device | str | None = None):
        kw = dict(kwargs)
        if subfolder is not None:
            kw["subfolder"] = subfolder
        if device is not None and torch.device(device).type != "cpu":
            kw["device_map"] = {"": str(device)}
        return cls.from_pretrained(source, **kw).eval()
    return load
