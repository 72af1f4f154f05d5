import warnings

import numpy as np
import pytest

from loraedit_nb import masks as M
from tests.conftest import moving_square


def test_check_mask_accepts_binary_and_rejects_soft():
    m = np.zeros((3, 4, 4), np.uint8)
    m[1, 1, 1] = 255
    out = M.check_mask(m)
    assert out.dtype == bool and out.sum() == 1
    assert M.check_mask(m // 255).sum() == 1
    with pytest.raises(ValueError, match="not binary.*mask > 0.5"):
        M.check_mask(np.full((3, 4, 4), 0.3))
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        M.check_mask(np.zeros((3, 4, 4, 3)))


def test_mask_video_shape_mismatch_names_the_fix():
    with pytest.raises(ValueError, match="resize_mask"):
        M.check_mask(np.zeros((9, 16, 16), bool), np.zeros((9, 32, 32, 3)))


def test_boxes_and_interpolation():
    m = M.from_boxes([(0, 0, 4, 4), None, [(2, 2, 4, 4), (6, 6, 8, 8)]], 8, 8)
    assert m.shape == (3, 8, 8)
    assert m[0].sum() == 16 and m[1].sum() == 0 and m[2].sum() == 8
    m = M.interpolate_boxes({0: (0, 0, 2, 2), 4: (4, 0, 6, 2)}, 5, 8, 8)
    assert [int(np.argwhere(f)[:, 1].min()) for f in m] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="empty"):
        M.box_mask(8, 8, (4, 4, 4, 6))


def test_dilate_erode():
    m = np.zeros((1, 21, 21), bool)
    m[0, 10, 10] = True
    d = M.dilate(m, 3)
    assert d.sum() > 20 and d[0, 10, 13] and not d[0, 10, 14]
    assert M.erode(d, 3).sum() <= 1


def test_to_boxes_expands_and_drops_small_components():
    m = np.zeros((1, 100, 100), bool)
    m[0, 40:60, 30:50] = True  # 20x20 component
    m[0, 5:8, 5:8] = True  # 9 px: dropped
    b = M.to_boxes(m, expand_ratio=0.1, min_area=50)
    ys, xs = np.nonzero(b[0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (39, 60, 29, 50)  # grown by 10 % (1 px each side)
    assert not b[0, 6, 6]


def test_temporal_union():
    m = M.from_boxes([(0, 0, 2, 2), (4, 4, 6, 6)], 8, 8)
    u = M.temporal_union(m)
    assert u[0].sum() == 8 and np.array_equal(u[0], u[1])


def test_propagate_flow_tracks_a_moving_square():
    video, mask = moving_square(T=9, step=3)
    prop = M.propagate_flow(video, mask[0])
    inter = (prop[-1] & mask[-1]).sum()
    union = (prop[-1] | mask[-1]).sum()
    assert inter / union > 0.6, inter / union
    static = (mask[0] & mask[-1]).sum() / (mask[0] | mask[-1]).sum()
    assert inter / union > static + 0.3  # it moved with the object


def test_save_load_npz_and_pngs(tmp_path):
    m = np.random.default_rng(0).random((9, 30, 40)) > 0.7
    p = M.save_npz(tmp_path / "m.npz", m)
    assert np.array_equal(M.load(p), m)
    assert p.stat().st_size < m.size / 4  # bit-packed
    M.save_pngs(tmp_path / "pngs", m)
    assert np.array_equal(M.load(tmp_path / "pngs"), m)
    with pytest.raises(FileNotFoundError):
        M.load(tmp_path / "missing.npz")


def test_degenerate_masks_warn_but_are_legal():
    with pytest.warns(UserWarning, match="empty"):
        M.warn_if_degenerate(np.zeros((5, 4, 4), bool))
    full = np.ones((5, 4, 4), bool)
    with pytest.warns(UserWarning, match="plain image-to-video"):
        M.warn_if_degenerate(full)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.warn_if_degenerate(moving_square()[1])


def test_overlay_only_tints_the_region():
    video, mask = moving_square()
    ov = M.overlay(video, mask, outline=False)
    assert np.array_equal(ov[~mask], video[~mask])
    assert not np.allclose(ov[mask], video[mask])


def test_prepare_mask_follows_prepare_video():
    from loraedit_nb.video import prepare_video

    video, mask = moving_square(T=17, H=80, W=96)
    got = M.prepare_mask(mask, 9, 64, 64)
    want = prepare_video(M.mask_video(mask), 9, 64, 64)[..., 0] > 0.5  # the same frames, the same crop
    assert got.shape == (9, 64, 64) and got.dtype == bool and np.array_equal(got, want)


def _crossing_clip(T=17, S=128):
    """A disc moving right (4 px/frame) and a bar crossing it downwards (9 px/frame) in front of it."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:S, :S]
    bg = np.stack([0.3 + 0.1 * np.sin(xx / 4.0), 0.3 + 0.1 * np.cos(yy / 5.0), 0.35 + 0.05 * np.sin((xx + yy) / 7)], -1)
    bg = bg + 0.03 * rng.standard_normal((S, S, 3))
    video, disc_masks = [], []
    for t in range(T):
        f = bg.copy()
        disc = (xx - 30 - 4 * t) ** 2 + (yy - 64) ** 2 < 18 ** 2
        f[disc] = (0.9, 0.2, 0.1) + 0.05 * np.sin(xx[disc] / 2.0)[:, None]
        bar = (yy >= -20 + 9 * t) & (yy < 2 + 9 * t) & (xx >= 40) & (xx < 110)
        f[bar] = (0.2, 0.6, 0.9) + 0.05 * np.cos(xx[bar] / 3.0)[:, None]
        video.append(np.clip(f, 0, 1))
        disc_masks.append(disc)
    return np.array(video, np.float32), np.array(disc_masks)


def test_propagation_is_not_dragged_along_by_an_occluder():
    """The bar covers up to 3/4 of the disc on its way down: the plain warp loses the disc (and follows the bar);
    the robust propagation keeps the disc's whole footprint (IoU against it, occluded part included)."""
    video, disc = _crossing_clip()
    iou = [[(p[t] & disc[t]).sum() / (p[t] | disc[t]).sum() for t in range(1, len(disc))]
           for p in (M.propagate_flow(video, disc[0], robust=False, warn=False), M.propagate_flow(video, disc[0]))]
    plain, robust = np.mean(iou[0]), np.mean(iou[1])
    assert plain < 0.4 and robust > 0.8 and min(iou[1]) > 0.7, (plain, robust, min(iou[1]))


def test_a_jump_in_the_tracked_region_is_named_with_its_frame():
    _, mask = moving_square(T=9, step=3)
    with pytest.warns(M.TrackJumpWarning, match="jumps at frame 5"):  # the region lost from frame 5 on (a cut)
        M._warn_jumps(np.concatenate([mask[:5], np.zeros_like(mask[5:])]))
    moved = M.from_boxes([(5, 20, 15, 30)] * 6 + [(40, 20, 50, 30)] * 3, 64, 64)  # leaps 35 px at frame 6
    with pytest.warns(M.TrackJumpWarning, match="jumps at frame 6: its centre moved 35 px"):
        M._warn_jumps(moved)
    with warnings.catch_warnings():
        warnings.simplefilter("error", M.TrackJumpWarning)
        M._warn_jumps(mask)  # a smooth track says nothing
