"""LoRA adapters on the backbone's transformer: which layers, how they are saved, how they load back.

Targets are the backbone family's (``adapter.lora_targets``); Wan's follow the paper's official code: every Linear
of every transformer block — self-attention, text cross-attention, FFN — except the image cross-attention's K/V
(:data:`loraedit_nb.backbones.wan.WAN_TARGETS`). Weights are saved in diffusers' format by the family's pipeline
class, so stock diffusers loads them: ``WanImageToVideoPipeline.load_lora_weights(path)``. A small
``loraedit_nb_lora.json`` beside the weights records the backbone and rank so that loading onto another backbone
fails with a clear message instead of a shape error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .backbones.base import adapter_for

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
META_NAME = "loraedit_nb_lora.json"


def backbone_signature(transformer) -> str:
    """A short hash of the transformer's architecture config: LoRAs only fit the architecture they were made on."""
    keys = ("num_layers", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "ffn_dim",
            "text_dim", "image_dim")
    if "num_single_layers" in transformer.config:  # HunyuanVideo: its own size keys (Wan's hash stays as it was)
        keys += ("num_single_layers", "text_embed_dim", "pooled_projection_dim", "image_condition_type")
    cfg = {k: transformer.config.get(k) for k in keys}
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def _sizes(transformer) -> dict:
    """The few config sizes that tell backbones apart in messages (each family has its own keys)."""
    keys = ("num_layers", "num_single_layers", "in_channels", "ffn_dim", "num_attention_heads")
    return {k: transformer.config.get(k) for k in keys if transformer.config.get(k) is not None}


def add_lora(transformer, *, rank: int = 16, alpha: float | None = None, targets=None,
             adapter_name: str = "default", dtype: torch.dtype = torch.float32) -> int:
    """Freeze the transformer and attach a fresh LoRA (B initialised to zero: the model starts unchanged).
    LoRA parameters are kept in ``dtype`` (fp32) even when the base is bf16/fp8. ``targets``: layer-name suffixes or
    one regex; None = the family's (``adapter_for(transformer).lora_targets``). Returns the trainable count."""
    from peft import LoraConfig

    targets = adapter_for(transformer).lora_targets if targets is None else targets
    transformer.requires_grad_(False)
    cfg = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, init_lora_weights=True,
                     target_modules=_targets(targets), lora_dropout=0.0, bias="none")
    transformer.add_adapter(cfg, adapter_name=adapter_name)
    n = 0
    for name, p in transformer.named_parameters():
        if "lora_" in name:
            p.data = p.data.to(dtype)
            p.requires_grad_(True)
            n += p.numel()
    if n == 0:
        raise ValueError(f"no LoRA parameters were created: none of {targets} matched the transformer's layers")
    return n


def _targets(targets) -> list[str] | str:
    """peft's ``target_modules``: a list of name suffixes, or one regex string matched against full names."""
    return targets if isinstance(targets, str) else list(targets)


def set_lora_state(transformer, state_dict: dict[str, torch.Tensor]) -> None:
    """Load LoRA weights (peft key names) into the transformer's active adapter; a LoRA of another rank or
    architecture fails with a message instead of loading partially."""
    from peft.utils import set_peft_model_state_dict

    res = set_peft_model_state_dict(transformer, state_dict)
    bad = [k for k in getattr(res, "unexpected_keys", None) or [] if "lora_" in k]
    if bad:
        raise ValueError(f"the LoRA does not fit this transformer/rank (unexpected keys, e.g. {bad[:2]}): use the "
                         "backbone and rank it was trained with")


def lora_state_dict(transformer, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter's weights with peft's key names (``blocks.0.attn1.to_q.lora_A.weight`` ...)."""
    from peft.utils import get_peft_model_state_dict

    unwrapped = getattr(transformer, "module", transformer)
    return {k: v.detach().cpu().contiguous() for k, v in
            get_peft_model_state_dict(unwrapped, adapter_name=adapter_name).items()}


def save_lora(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], *, transformer, rank: int,
              alpha: float, targets=None, extra: dict | None = None) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` (diffusers' LoRA format, saved by the family's pipeline class, so
    its ``load_lora_weights`` reads it) + our metadata, atomically."""
    targets = adapter_for(transformer).lora_targets if targets is None else targets
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    meta = {"r": rank, "lora_alpha": alpha, "target_modules": _targets(targets)}
    adapter_for(transformer).pipeline_class.save_lora_weights(
        tmp, transformer_lora_layers=state_dict, weight_name=WEIGHT_NAME, transformer_lora_adapter_metadata=meta)
    info = {"rank": rank, "alpha": alpha, "targets": _targets(targets), "backbone": backbone_signature(transformer),
            "backbone_config": _sizes(transformer),
            **(extra or {})}
    (tmp / META_NAME).write_text(json.dumps(info, indent=1))
    if path.exists():
        import shutil

        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


OFFICIAL_WEIGHT_NAMES = ("adapter_model.safetensors",)  # LoRA-Edit's official code / diffusion-pipe save this


def lora_weight_file(path: Path) -> Path:
    """The weight file of a LoRA folder (ours, or an official LoRA-Edit / diffusion-pipe folder) or the file itself."""
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"LoRA not found: {path}")
        return path
    for name in (WEIGHT_NAME, *OFFICIAL_WEIGHT_NAMES):
        if (path / name).exists():
            return path / name
    raise FileNotFoundError(f"no {WEIGHT_NAME} (or {', '.join(OFFICIAL_WEIGHT_NAMES)}) in {path}: train a LoRA "
                            "first (train_lora) or give its folder")


def read_lora_meta(path: str | os.PathLike) -> dict:
    """Our metadata beside a LoRA (rank, alpha, targets, backbone signature); ``{}`` for a foreign LoRA."""
    path = Path(path)
    lora_weight_file(path)  # a clear error for a missing LoRA
    meta = path / META_NAME
    return json.loads(meta.read_text()) if path.is_dir() and meta.exists() else {}


def check_compatible(path: str | os.PathLike, transformer) -> dict:
    """Raise a clear error when a LoRA folder was made for another backbone."""
    meta = read_lora_meta(path)
    sig = meta.get("backbone")
    if sig and sig != backbone_signature(transformer):
        raise ValueError(
            f"the LoRA in {path} was trained for another backbone ({meta.get('backbone_config')}) than this one "
            f"({_sizes(transformer)}). Load the backbone it was trained on, or retrain it.")
    return meta


def load_lora(pipe_or_backbone, path: str | os.PathLike, *, adapter_name: str = "edit", scale: float = 1.0):
    """Load a saved LoRA into a diffusers I2V pipeline (or a Backbone's transformer) with diffusers' own loader."""
    from diffusers import DiffusionPipeline

    pipe = pipe_or_backbone if isinstance(pipe_or_backbone, DiffusionPipeline) else pipe_or_backbone.pipeline()
    check_compatible(path, pipe.transformer)
    file = lora_weight_file(Path(path))
    pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=adapter_name)
    pipe.set_adapters([adapter_name], [scale])
    return pipe
