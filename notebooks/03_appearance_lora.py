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
# # 03 · The appearance LoRA: when frame 0 is not enough
#
# An edited first frame says what the object looks like *at the start*. Two kinds of edit need more than that:
#
# * the appearance **changes over time** — it turns, it blooms, or, in this notebook's first toy clip, it
#   **gradually changes colour** to one that the first frame does not show;
# * the edit **changes the object's shape or size**. The motion LoRA of notebook 02 is trained on the *source*
#   video, so it learns the source object: colour augmentation hides its colour, but nothing hides its shape, and
#   from frame 1 on it draws the old shape back (§ 7).
#
# LoRA-Edit's second use of the mask (Gao et al., Sec. 3.3, "additional references") lets you edit a frame or a
# few and teaches the LoRA what they show:
#
# * an **appearance sample** is one edited frame *i*: the condition is the source frame *i* with the region grey,
#   the mask says "generate the region", the target is **your edited frame *i***;
# * the official code trains these *after* the motion LoRA of notebook 02, continuing it (`init_lora=`), with the
#   edited frames repeated beside the video sample.
#
# We then measure, against the toy world's exact ground truth, whether the later frames come out closer to the
# intended edit: first on the colour that drifts, then on an object that grows past its mask — the case where
# the appearance regime pays.

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
TRAIN_STEPS = 800  # motion-LoRA steps (the toy default; the paper: 100 on Wan)
APPEARANCE_STEPS = 150  # steps of the appearance stage that continues the motion LoRA
REUSE_02 = True  # reuse notebook 02's motion LoRA when it was trained on this same clip
GROW_CASE = None  # § 7, the toy world's 'grow' edit (32x32, exact ground truth); None = on the tiny backbones only
GROW_TRAIN_STEPS = None  # § 7's motion LoRA; None = half of TRAIN_STEPS, to keep this notebook's CPU time
STEPS = None  # denoising steps; None = the backbone's default (toy 20, Wan 30)
SEED = 0  # noise seed of every generation

# %% [markdown]
# **Cost on the real model.** On your clip this notebook trains the appearance stage (and the motion LoRA when
# notebook 02's is not reused). The official LoRA-Edit code's README reports, on one RTX 4090 at 832×480: **49
# frames: 31.9 s per training step, 21.5 GB; 5 frames: 7.6 s per step, 11.1 GB; 100 steps on 49 frames ≈ 53 min** —
# *quoted from the official code's README, not measured by us*. Appearance samples are single frames, so their steps
# are much cheaper than video steps. On the toy backbone the notebook took 91 s on 2 idle CPU cores,
# reusing notebook 02's motion LoRA (measured).

# %%
import json
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from loraedit_nb import regimes as R
from loraedit_nb import viz
from loraedit_nb.comparisons import appearance_cases
from loraedit_nb.data import load_clip
from loraedit_nb.evaluation import claims_markdown, new_pixel_fill
from loraedit_nb.exploration import per_frame_psnr, psnr
from loraedit_nb.inference import edit_video
from loraedit_nb.masks import overlay
from loraedit_nb.models import DATA_DIR, load_backbone
from loraedit_nb.toyworld import COLOURS
from loraedit_nb.training import default_config, loss_curve, summarize, train_lora
from loraedit_nb.video import show_images, show_videos

OUTPUTS = DATA_DIR.parent / "outputs" / "notebooks"  # outputs/ of the repository
UP = max(1, 192 // HEIGHT)  # toy clips are 32x32: show them 6x larger, pixels kept crisp
up = partial(viz.upscale, factor=UP)


# %% [markdown]
# ## 1. The clip and its edited frames
#
# The toy world's `colour_shift` edit recolours the object *and* makes its colour drift over the clip: it starts
# in one new colour and ends in another. Its ground truth comes with the two frames a user would edit: the first
# and the last.

# %%
bb = load_backbone(BACKBONE, dtype=torch.bfloat16 if DEVICE == "cuda" else torch.float32, device=DEVICE)
print(bb.name, bb.defaults)

# %%
clip = load_clip(CLIP, frames=FRAMES, height=HEIGHT, width=WIDTH, scene_seed=SCENE_SEED, mask_dilate=MASK_DILATE)
video, mask, gt, edit = clip.video, clip.mask, clip.ground_truth, clip.edit
prompt, edited_prompt, edited_frames = clip.prompt, clip.edited_prompt, clip.edited_frames
T = len(video)
print(f"source: {prompt!r}\nedit:   {edited_prompt!r}\nedited frames: {sorted(edited_frames)}")
show_images({f"source {t}": video[t] for t in (0, T - 1)} | {f"edited {t}": f for t, f in edited_frames.items()},
            height=144)

# %% [markdown]
# ## 2. Any image editor works
#
# The edited frames are ordinary images: anything that writes a PNG of the same size works (Photoshop, GIMP, an
# image-editing model...). Load one with `video.read_image(path)` and bring it to the clip's size with
# `video.resize_and_crop(image, H, W)` — the same transform the clip went through. To make the point, here is a
# three-line "image editor" that recolours the masked region of the last frame while keeping its shading:

# %%
def recolour(frame, region, rgb):
    """Paint `region` of `frame` in colour `rgb`, keeping each pixel's relative brightness."""
    shade = frame.mean(-1, keepdims=True) / frame[region].mean()
    return np.where(region[..., None], np.clip(shade * np.asarray(rgb), 0, 1), frame).astype(np.float32)


if CLIP == "toy":  # paint the object (its exact mask) in the edit's final colour
    my_last = recolour(video[T - 1], edit.source.mask[T - 1], COLOURS[edit.spec.objects[0].colour_to])
    print(f"our edit vs the ground-truth last frame: {psnr(my_last, edited_frames[T - 1]):.1f} dB")
else:  # the real clip has no edited last frame: make one (blue fur, as in the shipped first frame)
    my_last = edited_frames[T - 1] = recolour(video[T - 1], mask[T - 1], (0.35, 0.55, 1.0))
show_images({"source, last frame": video[T - 1], "our 3-line edit": my_last}, height=144)

# %% [markdown]
# ## 3. Appearance samples: (condition, mask, target) per edited frame
#
# One sample per edited frame, each a one-frame "video". The condition is the **source** frame with the region
# grey (the model must not simply copy the old object), the mask asks for the region, the target is the
# **edited** frame. The caption is the edited video's.

# %%
app = R.appearance_samples(video, mask, edited_frames, edited_prompt)
triplets = {}
for a in app:
    triplets |= {f"frame {a.frame_index}: condition": a.condition[0],
                 f"frame {a.frame_index}: mask (white = generate)": 1.0 - a.keep[0],
                 f"frame {a.frame_index}: target": a.target[0]}
show_images(triplets, columns=3, height=144, vmin=0, vmax=1)
print("caption:", app[0].prompt)

# %% [markdown]
# ## 4. Stage 1: the motion LoRA
#
# Notebook 02's motion LoRA is reused when it was trained on this same clip (its parameters are saved beside it);
# otherwise it is trained here, exactly as there.

# %%
clip_params = dict(BACKBONE=BACKBONE, CLIP=CLIP, SCENE_SEED=SCENE_SEED, FRAMES=FRAMES, HEIGHT=HEIGHT, WIDTH=WIDTH,
                   MASK_DILATE=MASK_DILATE, TRAIN_STEPS=TRAIN_STEPS, WEIGHTS=bb.fingerprint())
saved = OUTPUTS / "02"
motion = R.motion_sample(video, mask, prompt)
if REUSE_02 and (saved / "clip.json").exists() and json.loads((saved / "clip.json").read_text()) == clip_params:
    motion_run = saved / "lora"
    print("reusing notebook 02's motion LoRA:", motion_run)
else:
    motion_run = train_lora(bb, [motion], default_config(bb, steps=TRAIN_STEPS))
    print(summarize(motion_run))

# %% [markdown]
# ## 5. Stage 2: continue it with the edited frames (the official recipe)
#
# `init_lora=motion_run` starts from the motion LoRA's weights (a `LoraRun` or a saved folder). Beside the video
# sample, each edited frame is drawn as often as if it were repeated 9 times (the official code's mix), so most
# steps now teach appearance while the motion sample keeps the motion from being forgotten.

# %%
staged_run = train_lora(bb, [motion, *app], default_config(bb, steps=APPEARANCE_STEPS), init_lora=motion_run)
print(summarize(staged_run))

# %%
fig, ax = plt.subplots(figsize=(6, 2.5))
for name, r in {"motion": motion_run, "stage 2 (continued)": staged_run}.items():
    if hasattr(r, "history"):  # a LoRA reused from disk has no loss history here
        ax.plot(*loss_curve(r.history, 20), label=name)
ax.set(xlabel="step", ylabel="loss (moving average)", yscale="log")
ax.legend()
plt.show()

# %% [markdown]
# ## 6. Does the appearance regime reach the later frames?
#
# Each LoRA edits the clip from the **edited first frame**. The first two get nothing else at inference: what
# they know about later frames comes from training. The third is the stage-2 LoRA that also gets the edited last
# frame *in the condition* (`place_edited_frames=True`, notebook 04's subject).

# %%
PLACE = bb.adapter.supports_keyframes  # HunyuanVideo-I2V's one mask channel per latent frame cannot give one frame
if not PLACE:
    print(f"{bb.name}: edited frames cannot be placed in this backbone's condition; the 3rd edit equals the 2nd")
runs = {"motion only": motion_run, "+ appearance (stage 2)": staged_run}
edits = {name: edit_video(bb, r, video, mask, edited_frames[0], prompt=edited_prompt, steps=STEPS, seed=SEED,
                          progress=False).video for name, r in runs.items()}
edits["+ appearance, frames given"] = edit_video(bb, staged_run, video, mask, edited_frames[0],
                                                 prompt=edited_prompt, edited_frames=edited_frames,
                                                 place_edited_frames=PLACE, steps=STEPS, seed=SEED,
                                                 progress=False).video
show_videos({"source": up(video)} | ({"ground truth": up(gt)} if gt is not None else {})
            | {k: up(v) for k, v in edits.items()}, columns=5)

# %% [markdown]
# Against the ground truth, frame by frame, inside the edit region (PSNR, higher = closer to the intended edit):

# %%
if gt is not None:
    region = mask.copy()
    region[0] = False  # frame 0 is given
    fig, ax = plt.subplots(figsize=(6, 2.8))
    for name, v in edits.items():
        ax.plot(range(1, T), per_frame_psnr(v, gt, region)[1:], marker="o", label=name)
    ax.set(xlabel="frame", ylabel="region PSNR vs ground truth (dB)")
    ax.legend(fontsize=8)
    plt.show()
    rows = [f"| {k} | {psnr(v, gt, region):.1f} | {psnr(v[T - 1], gt[T - 1], region[T - 1]):.1f} | "
            f"{psnr(v, video, ~mask):.1f} |" for k, v in edits.items()]
    display(Markdown("| LoRA | region vs GT (dB) | last frame's region vs GT (dB) | kept pixels vs source (dB) |\n"
                     "|---|---|---|---|\n" + "\n".join(rows)))

# %% [markdown]
# **What the toy model does here.** In the paper, on Wan2.1-14B, training on an edited later frame is enough for
# the model to show that frame's appearance at the right time. The toy backbone learns less from it: an
# appearance sample is a *one-frame* clip, so the model sees the edited frame at the position of frame 0 — a
# position that video inference always gives and never generates — and a model of one million parameters does not
# carry a colour seen there over to frame 8 the way one of 14 billion does. Averaged over 6 noise seeds on this
# clip, the last frame's region: motion only 13.8 dB, stage 2 13.5, stage 2 + frame given 13.9; a joint run (both
# regimes in one 800-step run, half its steps on the edited frames) given the frame reached 15.7, but across the
# README's cases it loses the motion (cosine 0.76, [docs/results.md](../docs/results.md)). On those cases' three
# colour changes × 3 seeds, stage 2 is *behind* motion only on the late frames (10.2 vs 11.2 dB). A colour that
# drifts is not where the appearance regime pays at this size. The next section shows where it does.
#
# Save the appearance LoRA for later use (notebook 04 trains its own, so it runs on its own):

# %%
saved = staged_run.save(OUTPUTS / "03" / "staged_lora", bb)
print(saved.relative_to(DATA_DIR.parent))

# %% [markdown]
# ## 7. Where frame 0 is not enough: an object that grows
#
# The toy world's `grow` edit (`toyworld.APPEARANCE_KINDS`, with two more kinds that § 8 reports on) makes the
# moving object 1.8× larger. The user has the mask they would have: the **source** object's box, 10 % larger (the
# official code's SAM2 post-processing), so the grown object spills over it; and the edited first frame shows the
# big object. The motion LoRA has only ever seen the small one. `new_pixels` marks what the edit adds beyond the
# source object (here, the grown rim); `new_pixel_fill` scores the share of them, over frames ≥ 1, that come out
# closer to the ground truth than to the source (1 for the truth, 0 for the old object drawn back).

# %%
GROW_CASE = bb.is_tiny if GROW_CASE is None else GROW_CASE
if GROW_CASE:
    grow = next(c for c in appearance_cases(3) if c.kind == "grow")
    Tg = len(grow.source)
    print(f"source: {grow.prompt!r}\nedit:   {grow.edited_prompt!r}\nmask: {grow.mask.mean():.0%} of the pixels; "
          f"new pixels after frame 0: {int(grow.new_pixels[1:].sum())}")
    show_images({"source 0": grow.source[0], "edited 0 (given)": grow.edited_frames[0],
                 f"mask on the truth, frame {Tg - 1}": overlay(grow.ground_truth[Tg - 1:], grow.mask[Tg - 1:])[0],
                 f"new pixels, frame {Tg - 1}": grow.new_pixels[Tg - 1].astype(np.float32)},
                height=144, vmin=0, vmax=1)

# %% [markdown]
# The same two stages as above, on this clip: a motion LoRA (notebook 02's recipe, at half its steps to keep this
# notebook's CPU time), then the appearance stage continuing it on the edited first frame. The gap does not hinge
# on the step count: on this clip (seed 0) it measured +4.4, +4.1 and +3.4 dB after 200, 400 and 800 motion steps.

# %%
if GROW_CASE:
    g_motion = R.motion_sample(grow.source, grow.mask, grow.prompt)
    g_app = R.appearance_samples(grow.source, grow.mask, grow.edited_frames, grow.edited_prompt)
    steps = GROW_TRAIN_STEPS or max(1, TRAIN_STEPS // 2)
    g_runs = {"motion only": train_lora(bb, [g_motion], default_config(bb, steps=steps))}
    g_runs["+ appearance"] = train_lora(bb, [g_motion, *g_app], default_config(bb, steps=APPEARANCE_STEPS),
                                        init_lora=g_runs["motion only"])
    print({k: summarize(r) for k, r in g_runs.items()})

# %%
if GROW_CASE:
    g_edits = {k: edit_video(bb, r, grow.source, grow.mask, grow.edited_frames[0], prompt=grow.edited_prompt,
                             steps=STEPS, seed=SEED, progress=False).video for k, r in g_runs.items()}
    show_videos({"source": up(grow.source), "ground truth": up(grow.ground_truth)}
                | {k: up(v) for k, v in g_edits.items()}, columns=4)
    g_scores = {k: {"region": psnr(v, grow.ground_truth, grow.mask),
                    "fill": new_pixel_fill(grow.source, grow.ground_truth, v, grow.new_pixels),
                    "kept": psnr(v, grow.source, ~grow.mask)} for k, v in g_edits.items()}
    display(Markdown("| LoRA | region vs GT (dB) | new pixels filled | outside the mask vs source (dB) |\n"
                     "|---|---|---|---|\n" + "\n".join(
                         f"| {k} | {s['region']:.1f} | {s['fill']:.2f} | {s['kept']:.1f} |"
                         for k, s in g_scores.items())
                     + f"\n| *ground truth* | – | 1.00 | {psnr(grow.ground_truth, grow.source, ~grow.mask):.1f} |"))
    gain = g_scores["+ appearance"]["region"] - g_scores["motion only"]["region"]
    print(f"+ appearance vs motion only: {gain:+.1f} dB in the region, new pixels filled "
          f"{g_scores['+ appearance']['fill']:.2f} vs {g_scores['motion only']['fill']:.2f}")

# %% [markdown]
# The motion LoRA shrinks the object back to the source's size from frame 1 on; the appearance stage, shown the
# big object once, keeps it big. It also draws the object over the box's edge, where the mask says "keep": the
# last column's "outside the mask" PSNR falls, as the ground truth's own does — the edit needs those pixels, and a
# mask made for the *edited* object (the union of both, dilated) is what a user should draw for a grow edit.
#
# ## 8. Across seeds, and where it still does not pay
#
# `experiments/appearance_levers.py` probes the levers on three kinds where frame 0 cannot carry the edit —
# `corner_swap` (a disc becomes a square: the corners lie outside the disc, inside its box), `reveal` (a
# two-tone disc comes out from behind an occluder; its hidden side is recoloured, and the edited last frame shows
# it) and `grow` — at equal CPU time, 3 training seeds, on the seeded cases and on the same kinds drawn by other
# rendering code ([results/appearance_levers/](../results/appearance_levers/README.md)):
#
# | Δ region vs motion only, dB (seeded / unseen) | grow | corners | revealed side | recolours |
# |---|---|---|---|---|
# | + appearance: the official stage 2, as above | **+3.3 / +2.4** | −1.7 / −2.6 | −1.3 / +0.4 | −1.2 |
# | + two more edited frames (middle, last), trained on and given | +8.9 / +5.4 | −1.9 / −3.9 | −2.6 / +1.2 | −2.6 |
# | the motion LoRA given those frames at inference, no stage 2 | +0.9 / +0.5 | +0.6 / −0.4 | +0.8 / +1.9 | +0.1 |
# | *ceiling:* the motion regime trained on the edited video itself | +8.8 / +8.0 | +0.8 / +1.1 | +2.0 / +2.6 | +0.4 ¹ |
#
# ¹ one seed; every other cell is a mean over 3 training seeds.
#
# **A measured finding, not a recipe that meets every target.** Where the edit is large, the appearance regime pays
# on both renderers: the grown object gains 3.3 ± 0.1 and 2.4 ± 0.4 dB, and its new pixels go from 15 % to 48 %
# filled (2 % to 36 % unseen); with two more edited frames it reaches the ceiling on the seeded clip. On a disc
# turned square no training lever gains (the best, the joint run, −0.1 / −0.2). On the revealed side every training
# lever loses on the seeded clip, and none gains more than 1.2 dB on the other. The corners stay at most 43 %
# filled; the target was 60 %. At this size, that part is out of reach for any recipe. Even a LoRA trained on the
# *answer* gains only 0.8 / 1.1 dB on the corners, and fills 63 / 67 % of them. The corners' 20-odd pixels per frame
# are a small part of a 263-pixel mask, whose PSNR is set by how exactly a 1.1 M-parameter model redraws the
# object's edge and path. Appearance samples are single frames, which the model sees at the position of frame 0, the
# one frame that video inference never generates. So giving the same frames at inference (third row) moves the
# corners and the revealed side more than training on them does. On the recolours the official stage 2 costs 1.2 ±
# 0.4 dB (the README comparison's figure, re-measured). Of the stage-2 levers, only the edited frame held as a clip
# stays within 0.5 dB (−0.1), and it gains little on the grown object (+1.1 / +0.2). The table of every lever is in
# [results/appearance_levers/](../results/appearance_levers/README.md).

# %% [markdown]
# ## 9. Check
#
# The notebook asserts what holds on the toy backbone: the appearance stage fitted its edited frames (its loss on
# appearance batches fell), and on the grow edit it beats the motion LoRA alone in the region and in the new
# pixels. What § 6 found on the colour that drifts is printed as claims, each marked by whether it held in this
# run: at this size it is within the noise of the seed.

# %%
app_losses = [h["loss"] for h in staged_run.history if h["regime"] == "appearance"]
print(f"stage 2 loss on appearance batches: {np.mean(app_losses[:20]):.3f} -> {np.mean(app_losses[-20:]):.3f}")
if BACKBONE == "toy":  # quality floors are calibrated on the pretrained toy model; elsewhere they are printed only
    assert np.mean(app_losses[-20:]) < 0.8 * np.mean(app_losses[:20]), "the appearance stage should fit its frames"
if gt is not None:
    last = {k: psnr(v[T - 1], gt[T - 1], region[T - 1]) for k, v in edits.items()}
    print("colour drift, last frame's region vs ground truth (dB):", {k: round(v, 2) for k, v in last.items()})
    display(Markdown(claims_markdown({
        "the edited frames, trained on and given, bring the last frame closer to the truth than motion only":
            last["+ appearance, frames given"] > last["motion only"],
        "giving the edited frame helps the same LoRA":
            last["+ appearance, frames given"] > last["+ appearance (stage 2)"],
    })))
if GROW_CASE:
    print(f"grow: + appearance {gain:+.1f} dB in the region vs motion only")
    if BACKBONE == "toy":
        assert gain > 1.0, "on the grow edit the appearance stage should beat motion only in the region"
        assert g_scores["+ appearance"]["fill"] > g_scores["motion only"]["fill"] + 0.15, "...and fill the new pixels"
assert all(np.isfinite(v).all() and v.shape == video.shape for v in edits.values())
print("OK")
