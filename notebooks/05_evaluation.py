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
# # 05 · Evaluation: measuring an edit, and the paper's comparisons with exact ground truth
#
# How good is an edit? The paper (Gao et al., Sec. 4) compares LoRA-Edit with first-frame-guided editors using
# CLIP score and image-quality scores on real videos, where nobody knows what the *right* edited video is. The
# toy world knows: every clip comes with the exact edited video, so we can measure what matters directly.
#
# * **Is the background kept?** PSNR/SSIM outside the mask, source vs edited.
# * **Did the edit arrive?** PSNR inside the mask against the ground-truth edit — and on the late frames, where an
#   appearance that changes over time needs a later edited frame.
# * **Does it move like the source, smoothly?** Optical-flow similarity inside the region; flow warping error.
#
# Then we run the paper's comparison structure: the un-tuned I2V model from the edited first frame, a LoRA
# fine-tuned without mask (the paper's *L_naive*), and LoRA-Edit with the motion regime and with the appearance
# regime. The full set (8 edits, all ablations) runs from a shell with `python -m loraedit_nb evaluate`; the
# README holds its table. Here a smaller set — 2 edits, 6 LoRAs of `TRAIN_STEPS` steps each, trained in two
# processes at once — took 145 s on 2 idle CPU cores (measured). `TRAIN_STEPS = 400` is half the toy default:
# at 800 steps the same comparison took 446 s (on a partly busy machine) for about the same numbers (background
# 37.9 vs 36.7 dB for LoRA-Edit; the README's table uses 800).

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
BACKBONE = "toy"  # the comparison needs exact ground truth, so it runs on toy-world clips
N_CASES = 2  # seeded toy edits: case 0 is a recolour, case 1 an appearance that changes over time
KINDS = ("recolour", "colour_shift")
VARIANTS = ("untuned", "naive_lora", "motion", "motion+appearance", "motion+appearance_placed")
TRAIN_STEPS = 400  # LoRA steps per trained variant (toy_config's default is 800: twice the time, see the README)
WORKERS = 2  # processes training at once (one per case); 1 = everything in this kernel
SEED = 0

# %% [markdown]
# **Cost on the real model.** Every trained variant is one LoRA fine-tune plus one edit. With Wan2.1-I2V-14B the
# official code's README reports, on one RTX 4090 at 832×480, **31.9 s per training step and 21.5 GB for 49
# frames (100 steps ≈ 53 min)** — *quoted, not measured by us* — so a comparison over many clips is a GPU-day. The
# CLIP-based metrics of the paper need downloaded CLIP weights; offline they are skipped with a message.

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from loraedit_nb import evaluation as E
from loraedit_nb import masks, viz
from loraedit_nb.comparisons import paper_claims, run_comparison, summary_table, toy_cases, variant_mean
from loraedit_nb.models import DATA_DIR, load_backbone
from loraedit_nb.training import toy_config
from loraedit_nb.video import show_videos

OUT = DATA_DIR.parent / "outputs" / "notebooks" / "05"


def up(v, k=6):
    return viz.upscale(v, k)


# %% [markdown]
# ## 1. The metrics, on cases with known answers
#
# Each metric says which way is better. Masked metrics only look at the region they are given: PSNR averages
# squared errors over the region's pixels; SSIM averages its per-pixel map over the region (the map at a pixel
# mixes an 11×11 window, so pixels near the border see a little of the outside — the usual approximation).
#
# A smooth texture sliding right by 2 px per frame, the same clip with the left part destroyed, and a clip of
# pure noise:

# %%
rng = np.random.default_rng(0)
import cv2  # noqa: E402

tex = cv2.GaussianBlur(rng.random((48, 96, 3)).astype(np.float32), (0, 0), 2.0)
tex = (tex - tex.min()) / (tex.max() - tex.min())
slide = np.stack([tex[:, 16 - 2 * t : 80 - 2 * t] for t in range(7)])
damaged = slide.copy()
damaged[:, :, :20] = rng.random(damaged[:, :, :20].shape)
right = np.zeros(slide.shape[:3], bool)
right[:, :, 32:] = True
noise = rng.random(slide.shape).astype(np.float32)
rows = {
    "PSNR, identical (dB)": E.psnr(slide, slide),
    "PSNR, damaged, whole frame (dB)": E.psnr(slide, damaged),
    "PSNR, damaged, right half only (dB)": E.psnr(slide, damaged, right),
    "SSIM, damaged, right half only": E.ssim(slide, damaged, right),
    "warp error, sliding texture": E.warp_error(slide),
    "warp error, noise": E.warp_error(noise),
    "motion cosine, same clip": E.motion_fidelity(slide, slide, right)["cosine"],
    "motion cosine, reversed clip": E.motion_fidelity(slide, slide[::-1].copy(), right)["cosine"],
}
display(Markdown("| measurement | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.3f} |" for k, v in rows.items())))
show_videos({"sliding texture": up(slide, 3), "damaged": up(damaged, 3)})

# %% [markdown]
# The masked metrics ignore what they are not shown (the right half of the damaged clip is still perfect), the
# warp error is near zero for a clean 2-px slide and large for noise, and the flow comparison tells the same
# motion from the reversed one.
#
# ## 2. The cases
#
# Seeded toy-world edits with their exact answers. The mask given to LoRA-Edit is the true edit region grown by
# one pixel. The colour-changing case needs a later edited frame: from the first frame alone nobody can know the
# object turns another colour.

# %%
bb = load_backbone(BACKBONE, device=DEVICE)
cases = toy_cases(N_CASES, kinds=KINDS)
for c in cases:
    print(f"{c.name}: {c.prompt!r} -> {c.edited_prompt!r}; edited frames {sorted(c.edited_frames)}")
show_videos({f"{c.name}: {k}": up(v) for c in cases for k, v in
             (("source", c.source), ("mask", masks.overlay(c.source, c.mask)), ("ground truth", c.ground_truth))},
            columns=3)

# %% [markdown]
# ## 3. The comparison
#
# For every case: the **un-tuned** model from the edited first frame (plain I2V), a **naive LoRA** trained on the
# whole clip without mask and used the same way, **LoRA-Edit (motion)**, **LoRA-Edit (+ appearance)**: the motion
# LoRA continued on the user's edited frames, as the official code does (notebook 03's stage 2), and the same LoRA
# with the edited later frames also *placed* in the condition at inference (`_placed`: our addition, not the
# paper's recipe). The naive and motion LoRAs are trained with the toy defaults; `+ appearance` continues the
# motion LoRA for 3/16 of its steps; `_placed` reuses the `+ appearance` LoRA.
#
# The two baselines are given Wan's stock I2V mask (every frame after the first generated). Used for editing, such
# a mask is usually a mistake and the package warns about it — here it is the point of the baseline, so the
# comparison keeps that one warning quiet.

# %%
cfg = toy_config(seed=SEED, steps=TRAIN_STEPS)
videos = {}  # filled with every edited video: videos[case][variant]
rows = run_comparison(BACKBONE if WORKERS > 1 else bb, cases, VARIANTS, cfg, out=OUT, seed=SEED, workers=WORKERS,
                      videos=videos)

# %%
display(Markdown(summary_table(rows, VARIANTS)))
keys = [("bg_psnr", "background PSNR (dB) ↑"), ("gt_psnr_region", "edit region vs GT (dB) ↑"),
        ("gt_psnr_region_late", "late frames, region vs GT (dB) ↑")]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for ax, (k, title) in zip(axes, keys):
    ax.bar(range(len(VARIANTS)), [variant_mean(rows, v, k) for v in VARIANTS])
    ax.set_xticks(range(len(VARIANTS)), VARIANTS, rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Each case, every panel labelled: what the variants made of it, next to the source, the mask and the true edit.

# %%
for c in cases:
    panels = {"source": c.source, "mask (red = edit)": masks.overlay(c.source, c.mask), "ground truth": c.ground_truth}
    panels |= {v: videos[c.name][v] for v in VARIANTS}
    display(Markdown(f"**{c.name}**: *{c.edited_prompt}*"))
    show_videos({k: up(v, 4) for k, v in panels.items()}, height=128, columns=4)

# %% [markdown]
# ## 4. What the numbers say
#
# The paper's claim has two parts: LoRA-Edit keeps the background far better than first-frame-guided baselines
# (the mask tells the model what to keep, and the LoRA teaches it to obey), and it follows a later edited frame
# only with the appearance regime. The cell below reads both off this run.

# %%
display(Markdown(paper_claims(rows)))  # each claim checked against this run (differences < 0.5 dB = noise)
bg = {v: variant_mean(rows, v, "bg_psnr") for v in VARIANTS}

# %% [markdown]
# ## 5. The paper's metrics on real video
#
# On real clips there is no ground truth; the paper reports CLIP text–frame score and CLIP frame consistency.
# They need CLIP weights from the Hub: with internet access (or a cached copy) the cell below computes them for
# the shipped Big Buck Bunny clip; offline it says it skipped them.

# %%
from loraedit_nb.data import load_sample  # noqa: E402

s = load_sample()
scores = E.clip_scores(s.video[::4], s.source_prompt, warn=False)  # None offline: say so once, here
print(scores if scores is not None else "CLIP metrics skipped: no CLIP weights (openai/clip-vit-base-patch16) on "
      "this machine. Run this cell once with internet access to cache them.")

# %% [markdown]
# ## Check
#
# A notebook that silently broke would still print tables; this cell fails instead. LoRA-Edit must keep the
# background clearly better than the un-tuned first-frame baseline, and every metric must be a number.

# %%
assert all(np.isfinite(r["bg_psnr"]) and np.isfinite(r["gt_psnr_region"]) for r in rows), "a metric is not finite"
assert bg["motion"] > bg["untuned"] + 3.0, f"LoRA-Edit did not keep the background: {bg}"
print("ok:", {k: round(v, 2) for k, v in bg.items()})
