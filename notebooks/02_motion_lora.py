# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · The motion LoRA: teaching the model this clip and what its mask means
#
# Notebook 01 ended on the paper's Fig. 2 finding: an image-to-video model that was only ever given whole frames
# reads a per-pixel mask only partly. LoRA-Edit's answer (Gao et al., Sec. 3.3) is to fine-tune a small **LoRA**
# on the *source clip itself*, with the very mask we will edit with. The mask plays a **dual role**:
#
# * in the **motion regime** (this notebook) the model is shown the source with the edit region hidden and asked
#   to give the whole source back: it has to re-create the region from the context — so it learns *how this clip
#   moves*, and that grey + "generate" in the mask means "make something here that fits";
# * in the **appearance regime** (notebook 03) the same mask hides the region of user-edited frames, so the model
#   learns *what the edited object looks like*.
#
# One sample, a few hundred steps on a CPU (toy backbone) — then the model edits this clip from an edited first
# frame (notebook 04).

# %%
# Setup: the same cell opens every notebook. Locally there is nothing to do (`make lab` installed the package).
# On Colab it clones and installs the repository named by LORAEDIT_REPO (the toy model and the sample clip live in
# its data/ folder): first run a cell with  %env LORAEDIT_REPO=https://github.com/<owner>/loraedit_nb
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    if not os.path.isdir("loraedit_nb/loraedit_nb"):
        if not os.environ.get("LORAEDIT_REPO", "").strip():
            raise RuntimeError("On Colab this notebook needs the loraedit_nb repository. Run a cell with\n"
                               "    %env LORAEDIT_REPO=https://github.com/<owner>/loraedit_nb\n"
                               "(the repository you opened this notebook from), then run this cell again.")
        subprocess.run(["git", "clone", "--depth", "1", os.environ["LORAEDIT_REPO"].strip(), "loraedit_nb"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "./loraedit_nb"], check=True)
    sys.path.insert(0, os.path.abspath("loraedit_nb"))
from loraedit_nb.notebook_setup import setup  # noqa: E402

DEVICE = setup()  # "cuda" or "cpu"; also CPU threads and Colab's widget manager

# %% tags=["parameters"]
BACKBONE = "toy"  # on a GPU: "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "wan22-i2v-a14b", "wan22-ti2v-5b", "hunyuan-i2v"
CLIP = "toy"  # "toy": a toy-world clip with exact ground truth; "bunny": the shipped real clip (use it with Wan)
SCENE_SEED = 11  # which toy-world scene
FRAMES, HEIGHT, WIDTH = 9, 32, 32  # Wan: 33, 480, 832 (frames: 4k + 1; sizes: multiples of 16)
MASK_DILATE = 1  # grow the object mask by this many pixels
TRAIN_STEPS = 800  # LoRA steps (the toy default; the paper: 100 on Wan)
PREVIEW_EVERY = 100  # training steps between preview videos
STEPS = None  # denoising steps; None = the backbone's default (toy 20, Wan 30)
SEED = 0  # noise seed of every generation

# %% [markdown]
# **Cost on the real model.** The official LoRA-Edit code's README reports, on one RTX 4090 at 832×480:
# **49 frames: 31.9 s per training step and 21.5 GB; 5 frames: 7.6 s per step and 11.1 GB; 100 steps on 49 frames
# ≈ 53 min** — *quoted from the official code's README, not measured by us*. With `BACKBONE` set to Wan this
# notebook uses the paper's settings (`wan_config`: rank 16, AdamW 1e-4, 100 steps — set `TRAIN_STEPS = 100`) and
# caches every encoding once so that training touches only the transformer. On the toy backbone the whole notebook
# took 114 s on 2 idle CPU cores (measured), most of it the 800 training steps with their previews.

# %%
import json
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML, display

from loraedit_nb import masks, viz
from loraedit_nb import regimes as R
from loraedit_nb.data import load_clip
from loraedit_nb.exploration import psnr
from loraedit_nb.inference import edit_video, generate
from loraedit_nb.models import DATA_DIR, load_backbone
from loraedit_nb.training import default_config, loss_curve, summarize, train_lora
from loraedit_nb.video import show_videos

OUT = DATA_DIR.parent / "outputs" / "notebooks" / "02"  # outputs/ of the repository
UP = max(1, 192 // HEIGHT)  # toy clips are 32x32: show them 6x larger, pixels kept crisp
up = partial(viz.upscale, factor=UP)


# %% [markdown]
# ## 1. The clip, its mask and the edit we are preparing for
#
# A toy-world clip with its exact object mask (grown by `MASK_DILATE` px) and a ground-truth edit whose first
# frame stands in for "the frame you edited in an image editor" — or, with `CLIP = "bunny"`, the shipped real
# clip with its box mask and blue-rabbit first frame.

# %%
bb = load_backbone(BACKBONE, dtype=torch.bfloat16 if DEVICE == "cuda" else torch.float32, device=DEVICE)
print(bb.name, bb.defaults)

# %%
clip = load_clip(CLIP, frames=FRAMES, height=HEIGHT, width=WIDTH, scene_seed=SCENE_SEED, mask_dilate=MASK_DILATE)
video, mask, prompt, edited_prompt = clip.video, clip.mask, clip.prompt, clip.edited_prompt
edited_first = clip.edited_frames[0]
print(f"source: {prompt!r}\nedit:   {edited_prompt!r}")
show_videos({"source": up(video), "mask (red = edit)": up(masks.overlay(video, mask))})

# %% [markdown]
# ## 2. One training sample: condition, mask, target
#
# The motion regime turns the clip into **one** sample of three videos. It is easy to mix them up (users of the
# official code regularly do), so here they are side by side:
#
# * **condition** — what the model is *given*: the original frame 0, then the source with the region grey;
# * **mask** — which pixels are generated (white) and which are given (black); frame 0 is given whole;
# * **target** — what the loss compares the model's output with: the **whole, unmasked source**.
#
# The model never sees the region's content in its input; it must re-create it from frame 0, the surrounding
# pixels and the caption. That is how it learns the motion of the object inside the mask.

# %%
sample = R.motion_sample(video, mask, prompt)
show_videos({"condition (input)": up(sample.condition),
             "mask (white = generate)": up(masks.mask_video(sample.keep < 0.5)), "target (loss)": up(sample.target)})
print("caption:", sample.prompt)

# %% [markdown]
# ## 3. Colour augmentation: learn the motion, not the colour
#
# A LoRA trained on one clip also memorises the object's *colour* — and then paints the old colour back over
# your edit. On the toy backbone this package therefore trains on recoloured copies as well
# (`toy_config(colour_aug="mix")`, on by default; beyond the paper, whose `wan_config` leaves it off): the same
# random colour map is applied to condition, target and first frame: an RGB permutation/inversion, or a hue
# rotation with a lift toward white or a dip toward black. The grey "unknown" fill stays grey, and the caption's
# colour word follows the object's new colour. Three variants:

# %%
rng = np.random.default_rng(SEED)
variants = [R.augment_colour(sample, rng) for _ in range(3)]
show_videos({f"variant {i + 1}": up(v.target) for i, v in enumerate(variants)}
            | {f"its condition {i + 1}": up(v.condition) for i, v in enumerate(variants)}, columns=3)
for i, v in enumerate(variants):
    print(f"variant {i + 1}: {v.prompt!r}")

# %% [markdown]
# ## 4. Training, watched live
#
# `train_lora` encodes every sample once (VAE, text encoder — the augmented copies too), attaches a fresh LoRA
# to the transformer's attention and feed-forward layers, and runs rectified-flow matching on the cached latents.
# `default_config` gives the toy settings (`toy_config`) or the paper's (`wan_config`: rank 16, AdamW 1e-4); the
# next cell prints them.
#
# A `callback` runs every step: it records the loss and, every `PREVIEW_EVERY` steps, redraws the loss curve and
# generates a **preview** — the clip edited from the *edited* first frame with the LoRA as it is at that moment.

# %%
config = default_config(bb, steps=TRAIN_STEPS)
print({k: getattr(config, k) for k in ("steps", "rank", "lr", "batch_size", "colour_aug", "w_generate", "w_keep")})
fig, ax = plt.subplots(figsize=(6, 2.5))
plot_handle, preview_handle = display(fig, display_id=True), display(HTML(""), display_id=True)
plt.close(fig)
losses, previews = [], {}

# %%
def on_step(step, loss, backbone):
    losses.append(loss)
    if step % PREVIEW_EVERY and step != TRAIN_STEPS:
        return
    ax.clear()
    ax.plot(np.arange(1, step + 1), losses, alpha=0.3)
    ax.plot(*loss_curve([{"step": i + 1, "loss": v} for i, v in enumerate(losses)], 20))
    ax.set(xlabel="step", ylabel="loss", title=f"step {step}")
    plot_handle.update(fig)
    previews[f"step {step}"] = generate(backbone, video, mask, edited_first, prompt=edited_prompt, steps=STEPS,
                                        seed=SEED, progress=False)  # uses the LoRA being trained
    preview_handle.update(HTML(show_videos({k: up(v) for k, v in previews.items()}, columns=4, return_html=True)))


run = train_lora(bb, [sample], config, callback=on_step, callback_every=1)
print(summarize(run))

# %% [markdown]
# The curve is noisy — every step draws new noise levels and new recoloured copies — but its moving average
# falls steadily. `training.loss_curve(run.history)` gives the same curve after the fact:

# %%
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.plot(*loss_curve(run.history, window=20))
ax.set(xlabel="step", ylabel="loss (moving average of 20)", yscale="log", title="motion-regime training loss")
plt.show()

# %% [markdown]
# ## 5. Did it learn the clip?
#
# The motion LoRA was trained to re-create the hidden region of *this* clip. Given the **original** first frame
# and the same mask, it should now give the source back inside the region — far better than the un-tuned model,
# which (notebook 01, Fig. 2 (c)) does not know an object moves through the hole. (`edit_video` with
# `lora=None` runs the un-tuned model.)

# %%
recon = {name: edit_video(bb, lora, video, mask, video[0], prompt=prompt, steps=STEPS, seed=SEED, progress=False)
         .video for name, lora in {"un-tuned": None, "motion LoRA": run}.items()}
region = mask.copy()
region[0] = False  # frames 1..T-1: frame 0 is given
for name, v in recon.items():
    print(f"{name:12s} region vs source: {psnr(v, video, region):.1f} dB; kept pixels: {psnr(v, video, ~mask):.1f} dB")
show_videos({"source": up(video)} | {k: up(v) for k, v in recon.items()})

# %% [markdown]
# ## 6. Save the LoRA
#
# `LoraRun.save` writes the weights in diffusers' format (`pytorch_lora_weights.safetensors`; stock diffusers
# loads it with `WanImageToVideoPipeline.load_lora_weights`) and a small JSON recording the backbone and rank, so
# that loading it onto another model fails with a clear message. Notebooks 03 and 04 pick this LoRA up when it was
# made for the same clip; the clip's parameters are saved beside it.

# %%
path = run.save(OUT / "lora", bb)
clip_params = dict(BACKBONE=BACKBONE, CLIP=CLIP, SCENE_SEED=SCENE_SEED, FRAMES=FRAMES, HEIGHT=HEIGHT, WIDTH=WIDTH,
                   MASK_DILATE=MASK_DILATE, TRAIN_STEPS=TRAIN_STEPS, WEIGHTS=bb.fingerprint())
(OUT / "clip.json").write_text(json.dumps(clip_params))
print(path, sorted(p.name for p in Path(path).iterdir()))

# %% [markdown]
# ## 7. Check
#
# The notebook asserts its own result: the loss fell, the LoRA re-creates the source's region better than the
# un-tuned model, and the saved LoRA loads back from disk and gives the same video as the one in memory. (The
# loss does not fall as far as you might expect: a good base model already predicts most of the clip, and with
# colour augmentation each step sees a different recoloured copy.)

# %%
first, last = np.mean(losses[:50]), np.mean(losses[-50:])  # per-step losses are noisy: compare 50-step means
reloaded = edit_video(bb, path, video, mask, edited_first, prompt=edited_prompt, steps=STEPS, seed=SEED,
                      progress=False).video
in_memory = edit_video(bb, run, video, mask, edited_first, prompt=edited_prompt, steps=STEPS, seed=SEED,
                       progress=False).video
gain = psnr(recon["motion LoRA"], video, region) - psnr(recon["un-tuned"], video, region)
print(f"loss {first:.3f} -> {last:.3f}; region re-creation gain {gain:+.1f} dB; "
      f"reload max |diff| {np.abs(reloaded - in_memory).max():.2e}")
assert np.abs(reloaded - in_memory).max() < 1e-3, "the saved LoRA must reproduce the in-memory one"
if BACKBONE == "toy":  # quality floors are calibrated on the pretrained toy model; elsewhere they are printed only
    assert last < 0.85 * first, "the training loss should fall by at least 15 %"
    assert gain > 1.0, "the motion LoRA should re-create the hidden region better than the un-tuned model"
print("OK")
