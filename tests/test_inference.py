"""Mask-aware editing inference on tiny backbones: diffusers equivalence, determinism, LoRA use, bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from loraedit_nb import regimes as R
from loraedit_nb.conditioning import i2v_edit_mask
from loraedit_nb.inference import edit_video, feathered, save_edit
from loraedit_nb.models import tiny_random_backbone
from loraedit_nb.training import toy_config, train_lora
from tests.conftest import moving_square

KW = dict(steps=3, guidance=2.0, prompt="a red square moves right", negative_prompt="blurry", progress=False)


@pytest.mark.filterwarnings("ignore:the mask covers every frame")
def test_first_frame_mask_equals_the_stock_pipeline(tiny):
    video, _ = moving_square(T=5)
    video = (np.round(video * 255) / 255).astype(np.float32)  # what the stock pipeline sees through a PIL image
    ours = edit_video(tiny, None, video, i2v_edit_mask(5, 64, 64), video[0], seed=7, **KW).video
    pipe = tiny.pipeline()
    stock = pipe(image=Image.fromarray((np.clip(video[0], 0, 1) * 255 + 0.5).astype(np.uint8)), prompt=KW["prompt"],
                 negative_prompt=KW["negative_prompt"], height=64, width=64, num_frames=5, num_inference_steps=3,
                 guidance_scale=2.0, output_type="np", generator=torch.Generator().manual_seed(7)).frames[0]
    np.testing.assert_array_equal(ours, stock.astype(np.float32))


def test_seed_determinism_and_seed_matters(tiny):
    video, mask = moving_square(T=5)
    a = edit_video(tiny, None, video, mask, video[0], seed=3, **KW)
    b = edit_video(tiny, None, video, mask, video[0], seed=3, **KW)
    c = edit_video(tiny, None, video, mask, video[0], seed=4, **KW)
    np.testing.assert_array_equal(a.video, b.video)
    assert not np.array_equal(a.video, c.video)
    assert a.video.shape == video.shape and a.video.dtype == np.float32 and a.seed == 3


def test_lora_changes_the_output_and_loads_from_disk(tmp_path):
    bb = tiny_random_backbone(vae="patchify", image_encoder=False, seed=5)
    video, mask = moving_square(T=5)
    base = edit_video(bb, None, video, mask, video[0], seed=1, **KW).video
    run = train_lora(bb, [R.motion_sample(video, mask, KW["prompt"])],
                     toy_config(steps=10, rank=4, lr=1e-2, colour_aug=None), progress=False)
    tuned = edit_video(bb, run, video, mask, video[0], seed=1, **KW).video
    path = run.save(tmp_path / "lora", bb)
    from_disk = edit_video(bb, path, video, mask, video[0], seed=1, **KW).video
    assert np.abs(tuned - base).max() > 1e-4
    np.testing.assert_allclose(from_disk, tuned, atol=1e-5)
    again = edit_video(bb, None, video, mask, video[0], seed=1, **KW).video  # None = un-tuned again
    np.testing.assert_allclose(again, base, atol=1e-6)


def test_edited_frames_placed_in_the_condition(tiny):
    video, mask = moving_square(T=5)
    last = np.ones_like(video[4])
    a = edit_video(tiny, None, video, mask, video[0], edited_frames={4: last}, place_edited_frames=True, seed=2,
                   **KW).video
    b = edit_video(tiny, None, video, mask, video[0], edited_frames={4: last}, place_edited_frames=False, seed=2,
                   **KW).video
    assert not np.array_equal(a, b)


def test_compositing_keeps_the_source_outside_the_mask(tiny):
    video, mask = moving_square(T=5)
    out = edit_video(tiny, None, video, mask, video[0], seed=2, composite=True, feather=2, **KW).video
    far = ~(feathered(mask, 2) > 0)
    np.testing.assert_allclose(out[far], video[far], atol=1e-6)
    soft = feathered(mask, 2)
    assert soft.max() == 1 and 0 < soft[(soft > 0) & (soft < 1)].size


def test_bad_input_names_the_fix(tiny, tmp_path):
    video, mask = moving_square(T=5)
    with pytest.raises(ValueError, match="resize_edits=True"):
        edit_video(tiny, None, video, mask, video[0, :32], seed=0, **KW)
    ok = edit_video(tiny, None, video, mask, np.repeat(np.repeat(video[0], 2, 0), 2, 1), resize_edits=True, seed=0,
                    **KW)
    assert ok.video.shape == video.shape
    with pytest.raises(ValueError, match="does not match video"):
        edit_video(tiny, None, video, mask[:, :32], video[0], seed=0, **KW)
    with pytest.raises(ValueError, match="out of range"):
        edit_video(tiny, None, video, mask, video[0], edited_frames={7: video[0]}, seed=0, **KW)
    with pytest.raises(FileNotFoundError):
        edit_video(tiny, tmp_path / "no_lora", video, mask, video[0], seed=0, **KW)


def test_save_edit_writes_video_comparison_and_settings(tiny, tmp_path):
    video, mask = moving_square(T=5)
    res = edit_video(tiny, None, video, mask, video[0], seed=2, **KW)
    files = save_edit(res, tmp_path / "out", video, mask, fps=4)
    from loraedit_nb.video import read_video

    comp, _ = read_video(files["comparison"])
    assert comp.shape[2] > 3 * 64 and (tmp_path / "out" / "edited.json").exists()


def test_mask_keeps_the_background_on_the_toy_backbone():
    """On the shipped toy model, giving the background through the mask keeps it far closer to the source than
    plain I2V from the same edited first frame does (fixed toy example, 2 seeds)."""
    from loraedit_nb import masks as M
    from loraedit_nb.evaluation import psnr
    from loraedit_nb.models import load_backbone
    from loraedit_nb.toyworld import make_edit, render_scene, sample_scene

    bb = load_backbone("toy")
    spec = sample_scene(11, motions=("linear",))
    scene = render_scene(spec)
    edit = make_edit(spec, "recolour", seed=0)
    region = M.dilate(edit.mask, 1)
    keep = ~region
    for seed in (0, 1):
        kw = dict(prompt=edit.caption, seed=seed, progress=False)
        with_mask = edit_video(bb, None, scene.video, region, edit.edited_frames[0], **kw).video
        with pytest.warns(UserWarning, match="plain image-to-video"):
            without = edit_video(bb, None, scene.video, i2v_edit_mask(*region.shape), edit.edited_frames[0], **kw).video
        assert psnr(with_mask, scene.video, keep) > psnr(without, scene.video, keep) + 3.0


def test_preview_every_n_steps(tiny):
    video, mask = moving_square(T=5)
    seen = []
    edit_video(tiny, None, video, mask, video[0], seed=1, preview_every=1,
               preview=lambda step, v: seen.append((step, v.shape)), **KW)
    assert [s for s, _ in seen] == [1, 2, 3] and all(shape == video.shape for _, shape in seen)


def test_honour_given_returns_the_given_pixels_exactly_and_leaves_the_region(tiny):
    """honour_given: frame 0 = the edited first frame, placed frames at their index, the source outside the mask —
    bit-exact on a lossy VAE (tiny Wan's) — and the generated region untouched (same seed)."""
    video, mask = moving_square(T=5)
    edited = video[0].copy()
    edited[mask[0]] = (0.1, 0.9, 0.2)
    later = video[4].copy()
    later[mask[4]] = (0.9, 0.1, 0.9)
    kw = dict(edited_frames={4: later}, place_edited_frames=True, seed=3, **KW)
    plain = edit_video(tiny, None, video, mask, edited, **kw)
    kept = edit_video(tiny, None, video, mask, edited, honour_given=True, **kw)
    assert kept.settings["honour_given"] and not plain.settings["honour_given"]
    np.testing.assert_array_equal(kept.video[0], edited)
    np.testing.assert_array_equal(kept.video[4], later)
    np.testing.assert_array_equal(kept.video[1:4][~mask[1:4]], video[1:4][~mask[1:4]])
    np.testing.assert_array_equal(kept.video[1:4][mask[1:4]], plain.video[1:4][mask[1:4]])
    assert np.abs(plain.video[0] - edited).max() > 1e-3  # the model alone does not return frame 0 exactly
