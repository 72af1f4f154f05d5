"""The condition LoRA-Edit feeds Wan: equivalence with diffusers, polarity, packing, bad input."""

import numpy as np
import pytest
import torch

from loraedit_nb import conditioning as C
from loraedit_nb.models import tiny_random_backbone
from loraedit_nb.video import to_model
from tests.conftest import moving_square


def _stock_condition(bb, video, last=False):
    pipe = bb.pipeline()
    img = to_model(video[:1])[:, :, 0]
    last_img = to_model(video[-1:])[:, :, 0] if last else None
    T, H, W = video.shape[:3]
    _, cond = pipe.prepare_latents(img, 1, bb.vae.config.z_dim, H, W, T, torch.float32, torch.device("cpu"),
                                   torch.Generator().manual_seed(0), last_image=last_img)
    return cond.detach()


@pytest.mark.parametrize("vae", ["wan", "patchify"])
def test_first_frame_only_mask_reproduces_diffusers_condition_exactly(vae):
    bb = tiny_random_backbone(vae=vae, image_encoder=False)
    video, _ = moving_square()
    ours = C.build_condition(bb.vae, video, C.i2v_edit_mask(*video.shape[:3]))
    theirs = _stock_condition(bb, video)
    assert ours.shape == theirs.shape == (1, 4 + bb.vae.config.z_dim, 3, *[64 // bb.geometry.spatial] * 2)
    assert torch.equal(ours, theirs)


def test_first_last_frame_mask_reproduces_diffusers_flf_condition(tiny):
    video, _ = moving_square()
    ours = C.build_condition(tiny.vae, video, C.i2v_edit_mask(*video.shape[:3], last_frame=True))
    assert torch.equal(ours, _stock_condition(tiny, video, last=True))


def test_polarity_end_to_end(tiny):
    """True in the user mask (edit) -> 0 in the packed Wan mask; False -> 1; frame 0 always 1."""
    video, mask = moving_square(size=16)
    cond = C.build_condition(tiny.vae, video, mask)
    packed = cond[0, :4]  # (4, T_lat, h, w)
    assert torch.all(packed[:, 0] == 1)  # latent frame 0 = pixel frame 0, always kept
    # pixel frame 5 = latent frame 2, channel 0; the square sits at x = 8 + 15 .. 8 + 15 + 16, y = 20..36
    m5 = C.pack_mask(torch.from_numpy(C.keep_mask(mask))[None, None], tiny.geometry)[0, 0, 2]
    assert torch.equal(packed[0, 2], m5)
    s = tiny.geometry.spatial
    assert packed[0, 2, 28 // s, 30 // s] == 0  # inside the square: generate
    assert packed[0, 2, 4 // s, 4 // s] == 1  # background: keep
    assert set(packed.unique().tolist()) == {0.0, 1.0}


def test_packing_layout_matches_wan():
    geo = C.LatentGeometry(temporal=4, spatial=8, z_dim=16)
    keep = torch.arange(9, dtype=torch.float32).view(1, 1, 9, 1, 1).expand(1, 1, 9, 8, 8)
    packed = C.pack_mask(keep, geo)
    assert packed.shape == (1, 4, 3, 1, 1)
    assert packed[0, :, :, 0, 0].T.tolist() == [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8]]
    assert torch.equal(C.unpack_mask(packed)[0, 0, :, 0, 0], torch.arange(9.0))


def test_reduce_any_marks_partial_cells_for_generation():
    geo = C.LatentGeometry(4, 8, 16)
    keep = torch.ones(1, 1, 5, 16, 16)
    keep[:, :, 1:, 0, 0] = 0  # one pixel of the top-left cell to generate
    assert C.pack_mask(keep, geo, reduce="any")[0, 1, 1, 0, 0] == 0
    assert C.pack_mask(keep, geo, reduce="any")[0, 1, 1, 1, 1] == 1
    with pytest.raises(ValueError, match="reduce"):
        C.pack_mask(keep, geo, reduce="mean")


def test_condition_video_grey_fill_and_first_frame():
    video, mask = moving_square()
    mask[0] = True  # even if the user marks frame 0, it is given whole
    cond = C.condition_video(video, mask)
    assert np.array_equal(cond[0], video[0])
    assert np.all(cond[3][mask[3]] == 0.5)  # neutral grey == 0 in [-1, 1]
    assert np.array_equal(cond[3][~mask[3]], video[3][~mask[3]])
    edited = np.zeros_like(video[0])
    assert np.array_equal(C.condition_video(video, mask, edited)[0], edited)
    key = C.condition_video(video, mask, keyframes={8: np.ones_like(video[0])})
    assert np.all(key[8] == 1)
    keep = C.keep_mask(mask, keyframes={8: None})
    assert keep[0].min() == 1 and keep[8].min() == 1 and keep[3][mask[3]].max() == 0


def test_bad_inputs_name_the_fix(tiny):
    video, mask = moving_square()
    with pytest.raises(ValueError, match="4k\\+1"):
        C.build_condition(tiny.vae, video[:8], mask[:8])
    with pytest.raises(ValueError, match="multiple of 16"):
        C.build_condition(tiny.vae, video[:, :40, :40], mask[:, :40, :40])
    with pytest.raises(ValueError, match="does not match video"):
        C.build_condition(tiny.vae, video, mask[:, :32])
    with pytest.raises(ValueError, match="resize_and_crop"):
        C.build_condition(tiny.vae, video, mask, first_frame=video[0, :32])
    with pytest.raises(ValueError, match="out of range"):
        C.condition_video(video, mask, keyframes={9: video[0]})
    with pytest.raises(ValueError, match="not binary"):
        C.build_condition(tiny.vae, video, mask * 0.5)


def test_empty_and_full_masks_are_legal(tiny):
    video, mask = moving_square()
    empty = np.zeros_like(mask)
    c = C.build_condition(tiny.vae, video, empty)
    assert torch.all(c[0, :4] == 1)
    full = C.build_condition(tiny.vae, video, np.ones_like(mask))
    assert torch.equal(full, C.build_condition(tiny.vae, video, C.i2v_edit_mask(*mask.shape)))


def test_patchify_vae_is_exact_with_wan_geometry():
    from loraedit_nb.backbones import PatchifyVAE

    vae = PatchifyVAE(scale_factor_spatial=4)
    x = torch.rand(2, 3, 17, 32, 48) * 2 - 1
    z = vae.encode(x).latent_dist.mode()
    assert z.shape == (2, 3 * 4 * 16, 5, 8, 12)
    assert torch.equal(vae.decode(z).sample, x)
    with pytest.raises(ValueError, match="4k\\+1"):
        vae.encode(x[:, :, :8])


def test_each_public_entry_validates_its_clip_once(monkeypatch, tiny):
    """motion_sample, appearance_samples, build_condition and edit_video check the video and the mask once each and
    hand the checked clip inward (they used to run check_video -> check_mask -> conditioning's own checks again)."""
    from collections import Counter

    from loraedit_nb import inference, regimes

    calls = Counter()
    for mod in (C, regimes, inference):
        for name in ("check_video", "check_mask"):
            if hasattr(mod, name):
                real = getattr(mod, name)
                monkeypatch.setattr(mod, name, lambda *a, _r=real, _n=name, **k: (calls.update([_n]), _r(*a, **k))[1])
    video, mask = moving_square(T=5, H=32, W=32, size=8, step=3)
    entries = {
        "motion_sample": lambda: regimes.motion_sample(video, mask, "a square"),
        "appearance_samples": lambda: regimes.appearance_samples(video, mask, {0: video[0]}, "a square"),
        "build_condition": lambda: C.build_condition(tiny.vae, video, mask),
        "edit_video": lambda: inference.edit_video(tiny, None, video, mask, video[0], steps=1, seed=0,
                                                   progress=False),
    }
    for name, run in entries.items():
        calls.clear()
        run()
        assert calls == Counter(check_video=1, check_mask=1), (name, calls)
