"""An edited first frame from inside the tutorial: instruction-based image editing with FLUX.1 Kontext.

LoRA-Edit propagates an edit the user made on frame 0. Any image editor will do (edit, export the frame, read it
with :func:`loraedit_nb.video.read_image`); this module is the in-notebook alternative: an instruction ("make the
car red") and frame 0 go through diffusers' ``FluxKontextPipeline``, and the result is pasted back over the source
outside the edit mask, so that the edit stays where LoRA-Edit will generate.

**Why FLUX.1 Kontext.** It is diffusers-native (``FluxKontextPipeline``), made for in-context *editing* (it keeps
what the instruction does not mention), and the smaller of the two strong open editors: a 12 B transformer (~24 GB
bf16) + T5-XXL (~9.5 GB) + CLIP-L, against Qwen-Image-Edit's 20 B (~41 GB bf16) + Qwen2.5-VL-7B. **GPU memory**
(from the weight sizes, not measured by us): a 40/48 GB card runs it with ``enable_model_cpu_offload`` (one model
on the GPU at a time, the transformer's 24 GB being the peak plus activations); on 24 GB use
``load_editor(..., fp8=True)`` (fp8 storage of the transformer, ~12 GB). The weights are gated on the Hub: accept
the licence at https://huggingface.co/black-forest-labs/FLUX.1-Kontext-dev and log in, or pass a local folder.

Tests use :func:`tiny_editor`, the same classes at tiny random sizes built offline: its "edits" are noise, but every
code path (sizes, compositing, polarity, errors) is the real one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .masks import check_mask, dilate
from .video import InputError, check_image

KONTEXT = "black-forest-labs/FLUX.1-Kontext-dev"
KONTEXT_DEFAULTS = dict(steps=28, guidance=2.5)  # the model card's example settings


def load_editor(name_or_path: str | os.PathLike = KONTEXT, *, dtype: torch.dtype = torch.bfloat16,
                device: str = "cuda", offload: bool = True, fp8: bool = False):
    """``FluxKontextPipeline`` from the Hub or a local folder. ``offload``: ``enable_model_cpu_offload`` (one model on
    the GPU at a time); ``fp8``: fp8 storage of the transformer's weights (diffusers' layerwise casting) for 24 GB
    cards. A folder that does not exist, or weights that cannot be fetched, raise one error that says what to do."""
    from diffusers import FluxKontextPipeline

    name = str(name_or_path)
    local = Path(name).expanduser()
    if (name.startswith((".", "/", "~")) or local.exists()) and not (local / "model_index.json").exists():
        raise FileNotFoundError(_missing(name, f"{local} is not a diffusers pipeline folder (no model_index.json)"))
    try:
        pipe = FluxKontextPipeline.from_pretrained(str(local) if local.exists() else name, torch_dtype=dtype)
    except OSError as e:  # gated, offline, or a typo in the id
        raise OSError(_missing(name, str(e).splitlines()[0])) from e
    if fp8:
        pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    if offload and device != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def _missing(name: str, why: str) -> str:
    return (f"could not load the image editor {name!r}: {why}. FLUX.1 Kontext is gated on the Hub: accept the "
            f"licence at https://huggingface.co/{KONTEXT}, run `huggingface-cli login`, and load again; or download "
            "it once and pass the folder (load_editor('/path/to/FLUX.1-Kontext-dev')). Without it, edit frame 0 in "
            "any image editor and read it with loraedit_nb.video.read_image.")


def tiny_editor(seed: int = 0):
    """``FluxKontextPipeline`` at tiny random sizes, built offline (tests, and notebooks without a GPU)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from .backbones.base import _word_tokenizer

    torch.manual_seed(seed)
    words = ("make turn change paint the a an it its object disc square star triangle into to red green blue "
             "yellow magenta cyan white orange striped").split()
    tok, tok2 = _word_tokenizer(words), _word_tokenizer(words)
    tok.model_max_length, tok2.model_max_length = 77, 512  # CLIP's window; T5's
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
                                        eos_token_id=1, pad_token_id=0, bos_token_id=3))
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8))
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    pipe = FluxKontextPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=clip, tokenizer=tok,
                               text_encoder_2=t5, tokenizer_2=tok2, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def edit_first_frame(frame: np.ndarray, instruction: str, *, editor, mask: np.ndarray | None = None,
                     keep_outside_mask: bool = True, feather: int = 2, steps: int | None = None,
                     guidance: float | None = None, seed: int = 0, max_sequence_length: int = 512) -> np.ndarray:
    """Edit ``frame`` (float ``(H, W, 3)`` in [0, 1], or uint8) by ``instruction`` with ``editor``
    (:func:`load_editor` / :func:`tiny_editor`). Returns float32 ``(H, W, 3)`` in [0, 1] at the frame's size.

    ``mask``: the edit region on this frame, bool ``(H, W)``, True = edit (frame 0 of the video's mask). With
    ``keep_outside_mask`` the source is pasted back outside it (dilated and feathered by ``feather`` px), so the edit
    stays where LoRA-Edit generates and everything LoRA-Edit keeps is unchanged. The editor runs at the frame's size
    rounded down to multiples of 16 (its requirement; resized, not cropped) and the result is resized back.
    """
    frame = check_image(frame, "frame")
    if not isinstance(instruction, str) or not instruction.strip():
        raise InputError("the instruction is empty.", 'Say what to change, e.g. "make the disc green".')
    H, W = frame.shape[:2]
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (H, W):
            raise InputError(f"the mask is {mask.shape} but the frame is {(H, W)}.",
                             "Pass frame 0's mask: mask[0] of the video's (T, H, W) edit mask.")
        mask = check_mask(mask[None], name="mask")[0]
        if not mask.any():
            raise InputError("the mask is empty: nothing would be edited.",
                             "Mark the region to edit (True = edit), or pass mask=None to edit the whole frame.")
    h, w = max(16, H // 16 * 16), max(16, W // 16 * 16)
    import cv2
    from PIL import Image

    d = KONTEXT_DEFAULTS
    small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != (H, W) else frame
    img = Image.fromarray((np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8))
    out = editor(image=img, prompt=instruction, height=h, width=w, max_area=h * w, _auto_resize=False,
                 num_inference_steps=steps or d["steps"],
                 guidance_scale=d["guidance"] if guidance is None else guidance,
                 max_sequence_length=max_sequence_length, output_type="np",
                 generator=torch.Generator().manual_seed(seed)).images[0]
    edited = np.asarray(out, np.float32)
    if (h, w) != (H, W):
        edited = cv2.resize(edited, (W, H), interpolation=cv2.INTER_LINEAR)
    if mask is not None and keep_outside_mask:
        from .inference import feathered

        a = feathered(mask[None], feather)[0][..., None]
        edited = a * edited + (1 - a) * frame
    return np.clip(edited, 0, 1).astype(np.float32)


def change_outside(frame: np.ndarray, edited: np.ndarray, mask: np.ndarray, margin: int = 5) -> float:
    """Mean absolute change (0-1) of ``edited`` against ``frame`` outside the mask grown by ``margin`` px (the default
    covers :func:`edit_first_frame`'s 2-px feather, which reaches 4 px out): 0 when the edit stayed inside it."""
    outside = ~dilate(np.asarray(mask, bool)[None], margin)[0]
    return float(np.abs(np.asarray(edited) - np.asarray(frame))[outside].mean()) if outside.any() else 0.0
