"""The loader: names, folders and Hub ids to a family's :class:`~loraedit_nb.backbones.base.Backbone`.

Above every family module (it imports them all, none imports it): ``"toy"`` and local folders are read by the
family their transformer class names; ``"tiny-*"`` are built by :mod:`.toy`; Hub ids go to the family's Hub loader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel

from .base import META_FILE, TINY_BACKBONES, TOY_DIR, Backbone, _no_weight_bars, place
from .hunyuan import HUNYUAN_I2V, load_hunyuan_folder, load_hunyuan_hub
from .toy import PatchifyVAE, XPredWanTransformer3DModel, tiny_random_backbone, tiny_random_hunyuan
from .wan import WAN22_A14B, WAN22_TI2V, WAN_480P, load_wan22_hub, load_wan_folder, load_wan_hub
from .weights import LoadOptions, load_options

# class names in a saved folder's config -> classes (Wan family: Wan's own and the toy's)
TRANSFORMER_CLASSES = {c.__name__: c for c in (WanTransformer3DModel, XPredWanTransformer3DModel)}
VAE_CLASSES = {c.__name__: c for c in (AutoencoderKLWan, PatchifyVAE)}


def _load_folder(path: Path, dtype, device, opts: LoadOptions = LoadOptions()) -> Backbone:
    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).exists() else {}
    missing = [c for c in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer") if not (path / c).is_dir()]
    if missing:
        raise FileNotFoundError(f"{path} is not a backbone folder: missing {missing}. Write one with "
                                "Backbone.save_pretrained(), or give a Hub id such as " + WAN_480P)
    tname = _class_name(path / "transformer", meta.get("transformer_class"))
    if tname == "HunyuanVideoTransformer3DModel":
        return load_hunyuan_folder(path, meta, dtype, device, opts)
    if tname not in TRANSFORMER_CLASSES:
        raise ValueError(f"{path}: unknown transformer class {tname!r}; this loader reads "
                         f"{sorted(TRANSFORMER_CLASSES) + ['HunyuanVideoTransformer3DModel']}")
    return load_wan_folder(path, meta, TRANSFORMER_CLASSES[tname],
                           VAE_CLASSES[_class_name(path / "vae", meta.get("vae_class"))], dtype, device, opts)


def _class_name(folder: Path, fallback: str | None) -> str:
    cfg = folder / "config.json"
    name = json.loads(cfg.read_text()).get("_class_name") if cfg.exists() else None
    return name or fallback or "WanTransformer3DModel"


def load_backbone(name_or_path: str | os.PathLike = "toy", dtype: torch.dtype = torch.float32,
                  device: str | torch.device | None = None, memory_preset: str | None = None) -> Backbone:
    """Load a backbone by name (``"toy"``, ``"tiny-random"``, ``"tiny-hunyuan"``, ``"tiny-wan22-a14b"``,
    ``"tiny-wan22-ti2v"``, ``"hunyuan-i2v"``, ``"wan22-i2v-a14b"``, ``"wan22-ti2v-5b"``), Hub id, or local folder.

    ``dtype`` applies to the transformer and encoders (the VAE stays float32, as diffusers recommends for Wan).
    Use ``torch.bfloat16`` and ``device="cuda"`` for the 14B model: its weights are then loaded on the **CPU** and
    ``device`` becomes the execution device; training and editing bring each component to the GPU only for its own
    stage, in the storage form of the memory preset (``memory_preset=``), so no tier needs room for all 47 GB.
    Tiny backbones move to ``device`` whole. Under ``accelerate launch`` ``"cuda"`` means this rank's GPU.

    ``memory_preset`` (the one training/editing will use; default None = as stored) also sets how a folder or Hub
    model is *loaded* (:func:`~loraedit_nb.backbones.weights.load_options`): on 16GB/24GB the transformer is read
    straight into fp8, tensor by tensor, and Wan's text encoder is not kept in host RAM but loaded onto the GPU for
    new prompts only. Host RAM for Wan2.1-14B then peaks near 30 GB instead of 50 (docs/memory.md).
    """
    name = str(name_or_path)
    opts = LoadOptions()
    if memory_preset is not None and name not in TINY_BACKBONES:  # built in code or shipped: loaded as stored
        from ..memory import get_preset

        opts = load_options(get_preset(memory_preset, device), dtype)
    if name == "tiny-hunyuan":
        bb = tiny_random_hunyuan()
        return place(bb.to(None, dtype) if dtype != torch.float32 else bb, device)
    if name in ("wan22-i2v-a14b", "wan22-ti2v-5b"):
        return load_wan22_hub(WAN22_A14B if name == "wan22-i2v-a14b" else WAN22_TI2V, dtype, device, opts)
    if name in ("hunyuan-i2v", "hunyuanvideo-community/HunyuanVideo-I2V-33ch"):
        return load_hunyuan_hub(HUNYUAN_I2V, dtype, device, opts)
    if name in ("tiny-random", "tiny-wan22-a14b", "tiny-wan22-ti2v"):
        bb = tiny_random_backbone(variant={"tiny-random": "wan21"}.get(name, name.removeprefix("tiny-")))
        return place(bb.to(None, dtype) if dtype != torch.float32 else bb, device)
    if name == "toy":
        if not (TOY_DIR / "transformer").is_dir():
            raise FileNotFoundError(
                f"the toy backbone is missing from {TOY_DIR}. It ships with the repository; if you deleted it, "
                "re-create it with `python -m loraedit_nb.toyworld.pretrain` (CPU hours) or restore data/ from git.")
        with _no_weight_bars():
            return _load_folder(TOY_DIR, dtype, device, opts)
    path = Path(name).expanduser()
    if path.exists():
        return _load_folder(path, dtype, device, opts)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        if "hunyuan" in name.lower():
            return load_hunyuan_hub(name, dtype, device, opts)
        if "wan2.2" in name.lower():
            return load_wan22_hub(name, dtype, device, opts)
        return load_wan_hub(name, dtype, device, opts)
    raise FileNotFoundError(f"no backbone {name!r}: use 'toy', 'tiny-random', 'tiny-hunyuan', 'tiny-wan22-a14b', "
                            "'tiny-wan22-ti2v', 'hunyuan-i2v', 'wan22-i2v-a14b', 'wan22-ti2v-5b', a "
                            f"local folder or a Hub id like {WAN_480P!r}")
