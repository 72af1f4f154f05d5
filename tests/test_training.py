"""Mask-aware LoRA training on tiny backbones: regimes, loss, resume, diffusers round trip, bad input."""

import json

import numpy as np
import pytest
import torch

from loraedit_nb import regimes as R
from loraedit_nb.loss import region_weights, sample_timesteps
from loraedit_nb.models import tiny_random_backbone
from loraedit_nb.training import cache_samples, fixed_loss, toy_config, train_lora
from tests.conftest import moving_square


@pytest.fixture(scope="module")
def fast_bb():
    """Tiny Wan transformer + the lossless patchify VAE: training steps in milliseconds."""
    return tiny_random_backbone(vae="patchify", image_encoder=False, seed=1)


def _cfg(**kw):
    base = dict(steps=40, rank=4, batch_size=2, colour_aug=None, log_every=5, lr=3e-3)
    base.update(kw)
    return toy_config(**base)


def test_motion_sample_is_built_as_the_paper_says():
    v, m = moving_square()
    s = R.motion_sample(v, m, "a red square moves right")
    assert np.array_equal(s.condition[0], v[0])  # original first frame, whole
    assert np.all(s.condition[4][m[4]] == 0.5) and np.array_equal(s.condition[4][~m[4]], v[4][~m[4]])
    assert np.array_equal(s.target, v) and np.array_equal(s.image, v[0])
    assert s.keep[0].min() == 1 and s.keep[4][m[4]].max() == 0 and s.keep[4][~m[4]].min() == 1


def test_appearance_samples_are_one_frame_edits():
    v, m = moving_square()
    edited = np.clip(v[6] + 0.3, 0, 1)
    (s,) = R.appearance_samples(v, m, {6: edited}, "an edited square")
    assert s.condition.shape == (1, 64, 64, 3) and s.frame_index == 6
    assert np.all(s.condition[0][m[6]] == 0.5) and np.array_equal(s.condition[0][~m[6]], v[6][~m[6]])
    assert np.array_equal(s.target[0], edited) and np.array_equal(s.image, v[6])  # CLIP sees the source frame
    assert np.array_equal(s.keep[0], (~m[6]).astype(np.float32))  # frame "0" of this sample is NOT kept whole


def test_bad_training_input_names_the_fix():
    v, m = moving_square()
    with pytest.raises(ValueError, match="nothing to generate"):
        R.motion_sample(v, np.zeros_like(m), "x")
    with pytest.raises(ValueError, match="out of range"):
        R.appearance_samples(v, m, {9: v[0]}, "x")
    with pytest.raises(ValueError, match="resize_and_crop"):
        R.appearance_samples(v, m, {2: v[2, :32]}, "x")
    with pytest.raises(ValueError, match="empty on frame"):
        m2 = m.copy()
        m2[3] = False
        R.appearance_samples(v, m2, {3: v[3]}, "x")
    from loraedit_nb.masks import MaskPolarityWarning, PlainI2VMaskWarning

    with pytest.warns(PlainI2VMaskWarning, match="training becomes plain image-to-video"):
        R.motion_sample(v, np.ones_like(m), "x")
    inverted = ~m  # the object marked as the part to keep: most of every frame "to edit"
    with pytest.warns(MaskPolarityWarning, match=r"invert it: mask = ~mask"):
        R.motion_sample(v, inverted, "x")


def test_colour_augmentation_keeps_grey_and_moves_the_colour_word():
    v, m = moving_square()
    s = R.motion_sample(v, m, "a red square moves right")
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(12):
        a = R.augment_colour(s, rng, "permute")
        assert np.all(a.condition[4][m[4]] == 0.5)  # unknown stays unknown
        colour = a.target[4][m[4]].mean(0)
        seen.add(a.prompt.split()[1])
        assert R.nearest_colour_word(colour) in a.prompt
    assert len(seen) >= 3


def test_mix_colour_augmentation_reaches_white_and_dark_and_keeps_the_grey_fill():
    v, m = moving_square()
    s = R.motion_sample(v, m, "a red square moves right")
    rng = np.random.default_rng(0)
    values, words = [], set()
    for _ in range(40):
        a = R.augment_colour(s, rng, "mix")
        assert np.all(a.condition[4][m[4]] == 0.5)  # unknown stays unknown, whatever the lift does
        colour = a.target[4][m[4]].mean(0)
        values.append(colour.min())  # a lift toward white raises every channel
        words.add(R.nearest_colour_word(colour))
        assert R.nearest_colour_word(colour) in a.prompt
    assert max(values) > 0.45 and min(values) < 0.1  # pastel/white tones and saturated/dark ones both occur
    with pytest.raises(ValueError, match="'mix'"):
        R.colour_transform(rng, "sepia")


def test_region_weights_change_the_loss_as_documented():
    cond = torch.zeros(1, 20, 2, 2, 2)
    cond[:, :4, :, 0] = 1  # top row kept, bottom row generated
    assert region_weights(cond) is None  # (1, 1) = the official plain mean
    w = region_weights(cond, w_generate=3.0, w_keep=0.5)
    assert torch.all(w[:, :, :, 0] == 0.5) and torch.all(w[:, :, :, 1] == 3.0)
    t = sample_timesteps(1000, scheme="uniform", shift=3.0, generator=torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1 and t.mean() > 0.6  # the shift moves mass to high noise


def test_weighted_loss_emphasises_the_generated_region(fast_bb):
    v, m = moving_square()
    cached = cache_samples(fast_bb, [R.motion_sample(v, m, "a red square")], _cfg(), progress=False)
    fast_bb.transformer.requires_grad_(False)
    base = fixed_loss(fast_bb, cached)
    gen_only = fixed_loss(fast_bb, cached, config=_cfg(w_generate=1.0, w_keep=0.0))
    keep_only = fixed_loss(fast_bb, cached, config=_cfg(w_generate=0.0, w_keep=1.0))
    lo, hi = sorted([gen_only, keep_only])
    assert lo <= base <= hi and abs(gen_only - keep_only) > 1e-3


def test_motion_run_drives_the_loss_down(fast_bb):
    v, m = moving_square()
    samples = [R.motion_sample(v, m, "a red square moves right")]
    cfg = _cfg(steps=150, rank=8, lr=5e-3)
    cached = cache_samples(fast_bb, samples, cfg, progress=False)
    before = fixed_loss(fast_bb, cached)
    train_lora(fast_bb, samples, cfg, progress=False)
    after = fixed_loss(fast_bb, cached)
    assert after < 0.8 * before, (before, after)


def test_interrupted_run_resumes_to_the_same_lora(fast_bb, tmp_path):
    v, m = moving_square()
    samples = [R.motion_sample(v, m, "a red square")] + R.appearance_samples(v, m, {8: v[8] * 0.5}, "a dark one")
    cfg = _cfg(steps=12, checkpoint_every=4, colour_aug="permute", colour_aug_variants=2)
    full = train_lora(fast_bb, samples, cfg, output_dir=tmp_path / "a", progress=False)
    part = train_lora(fast_bb, samples, cfg, output_dir=tmp_path / "b", progress=False, stop_after=5)
    assert len(part.history) == 5 and not (tmp_path / "b" / "lora").exists()
    resumed = train_lora(fast_bb, samples, cfg, output_dir=tmp_path / "b", progress=False)
    assert len(resumed.history) == 12
    for k, val in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[k], val, atol=1e-6, rtol=0)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], abs=1e-6)
    meta = json.loads((tmp_path / "b" / "lora" / "loraedit_nb_lora.json").read_text())
    assert meta["rank"] == 4


def test_saved_lora_loads_in_stock_diffusers(tmp_path):
    from diffusers import WanImageToVideoPipeline

    bb = tiny_random_backbone(seed=2)  # with the CLIP branch: image K/V must stay untouched
    v, m = moving_square()
    run = train_lora(bb, [R.motion_sample(v, m, "a red square")], _cfg(steps=5, lr=1e-2), progress=False)
    assert not any("add_k_proj" in k or "add_v_proj" in k for k in run.state_dict)
    assert any("ffn.net.2" in k for k in run.state_dict) and any("attn2.to_q" in k for k in run.state_dict)
    path = run.save(tmp_path / "lora", bb)
    x = torch.randn(1, 36, 3, 8, 8)
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 512, 32),
              encoder_hidden_states_image=torch.randn(1, 17, 32), return_dict=False)
    with torch.no_grad():
        trained = bb.transformer(x, **kw)[0]
    fresh = tiny_random_backbone(seed=2)
    with torch.no_grad():
        untouched = fresh.transformer(x, **kw)[0]
    pipe = WanImageToVideoPipeline(**{k: getattr(fresh, k) for k in (
        "tokenizer", "text_encoder", "vae", "scheduler", "image_processor", "image_encoder", "transformer")})
    pipe.load_lora_weights(str(path), weight_name="pytorch_lora_weights.safetensors", adapter_name="edit")
    with torch.no_grad():
        loaded = pipe.transformer(x, **kw)[0]
    assert not torch.allclose(trained, untouched, atol=1e-6)
    torch.testing.assert_close(loaded, trained, atol=1e-5, rtol=0)


def test_lora_for_another_backbone_is_refused(tmp_path, fast_bb):
    from loraedit_nb.lora import load_lora

    v, m = moving_square()
    run = train_lora(fast_bb, [R.motion_sample(v, m, "x")], _cfg(steps=2), progress=False)
    path = run.save(tmp_path / "lora", fast_bb)
    with pytest.raises(ValueError, match="another backbone"):
        load_lora(tiny_random_backbone(), path)
    with pytest.raises(FileNotFoundError):
        load_lora(fast_bb, tmp_path / "missing")


def test_continue_from_an_earlier_lora(fast_bb):
    v, m = moving_square()
    s = [R.motion_sample(v, m, "x")]
    first = train_lora(fast_bb, s, _cfg(steps=5), progress=False)
    cont = train_lora(fast_bb, R.appearance_samples(v, m, {4: v[4]}, "x"), _cfg(steps=1, lr=1e-12),
                      init_lora=first, progress=False)
    for k, val in first.state_dict.items():  # a 1e-12 step keeps the weights where the first run left them
        torch.testing.assert_close(cont.state_dict[k], val, atol=1e-6, rtol=0)


def test_colour_word_is_read_from_the_object_not_the_dilated_region():
    """A 1-px dilated mask around a yellow disc also holds dark background; the caption must still say yellow."""
    from loraedit_nb import masks as M
    from loraedit_nb.toyworld import render_scene, sample_scene

    for seed in range(6):
        scene = render_scene(sample_scene(seed, motions=("linear",), allow_stripes=False))
        word = scene.caption.split()[1]
        s = R.motion_sample(scene.video, M.dilate(scene.mask, 1), scene.caption)
        t = 4
        assert R.nearest_colour_word(R.object_colour(s.target[t][s.mask_region[t]])) == word, scene.caption
