import numpy as np
import pytest
import torch

from loraedit_nb import video as V


def test_frame_count_rule():
    for n in (1, 5, 9, 49, 81):
        assert V.check_frame_count(n) == n
    for n in (0, 2, 8, 48, 50):
        with pytest.raises(ValueError, match="4k\\+1"):
            V.check_frame_count(n)


def test_size_rule_names_the_fix():
    assert V.check_size(480, 832) == (480, 832)
    with pytest.raises(ValueError, match="multiple of 16.*resize_and_crop"):
        V.check_size(100, 832)


def test_sample_frames_uniform_and_keeps_first():
    vid = np.arange(100, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 3), np.float32) / 100
    out = V.sample_frames(vid, 9)
    idx = (out[:, 0, 0, 0] * 100).round().astype(int)
    assert idx[0] == 0 and len(idx) == 9
    assert np.all(np.diff(idx) >= 11) and np.all(np.diff(idx) <= 12)
    with pytest.raises(ValueError, match="4k\\+1"):
        V.sample_frames(vid, 10)
    with pytest.raises(ValueError, match="fewer than"):
        V.sample_frames(vid[:5], 9)


def test_resize_and_crop_covers_and_centres():
    vid = np.zeros((2, 100, 200, 3), np.float32)
    vid[:, :, 90:110] = 1.0  # a vertical bar in the centre
    out = V.resize_and_crop(vid, 64, 64)
    assert out.shape == (2, 64, 64, 3) and out.dtype == np.float32
    assert out[0, :, 30:34].mean() > 0.9  # the centre bar survives the centre crop
    assert out[0, :, :20].max() == 0
    img = V.resize_and_crop(vid[0], 48, 96)
    assert img.shape == (48, 96, 3)


def test_check_video_conventions():
    assert V.check_video(np.full((1, 2, 2, 3), 255, np.uint8)).max() == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        V.check_video(np.full((1, 2, 2, 3), -1.0))
    with pytest.raises(ValueError, match="shape"):
        V.check_video(np.zeros((2, 2, 3)))


def test_model_boundary_roundtrip():
    v = np.random.default_rng(0).random((5, 16, 32, 3)).astype(np.float32)
    t = V.to_model(v)
    assert t.shape == (1, 3, 5, 16, 32) and t.min() >= -1 and t.max() <= 1
    assert torch.allclose(t[0, :, 2, 3, 4], torch.from_numpy(v[2, 3, 4]) * 2 - 1)
    np.testing.assert_allclose(V.from_model(t), v, atol=1e-6)


def test_mp4_roundtrip_and_missing_file(tmp_path):
    yy, xx = np.mgrid[:32, :48] / 48.0
    v = np.stack([np.stack([xx, yy, 0.5 + 0.3 * np.sin(6 * xx + t)], -1) for t in range(9)]).astype(np.float32)
    p = V.write_video(tmp_path / "a.mp4", v, fps=8)
    back, fps = V.read_video(p)
    assert back.shape == v.shape and abs(fps - 8) < 1e-3
    assert np.abs(back - v).mean() < 0.02  # lossy (H.264, 4:2:0) but close
    with pytest.raises(FileNotFoundError):
        V.read_video(tmp_path / "nope.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="could not decode"):
        V.read_video(tmp_path / "bad.mp4")


def test_gif_and_frame_folder(tmp_path):
    v = (np.random.default_rng(1).random((5, 16, 16, 3)) > 0.5).astype(np.float32)
    V.write_video(tmp_path / "a.gif", v, fps=5)
    g, _ = V.read_video(tmp_path / "a.gif")
    assert g.shape == v.shape and np.abs(g - v).max() < 0.05
    folder = tmp_path / "frames"
    for i, f in enumerate(v):
        V.write_image(folder / f"{i:05d}.png", f)
    back, _ = V.read_video(folder)
    np.testing.assert_allclose(back, v, atol=1 / 255)
    with pytest.raises(ValueError, match="no frames"):
        (tmp_path / "empty").mkdir()
        V.read_video(tmp_path / "empty")


def test_hstack_checks_shapes():
    a = np.zeros((3, 8, 8, 3), np.float32)
    assert V.hstack(a, a, gap=2).shape == (3, 8, 18, 3)
    with pytest.raises(ValueError):
        V.hstack(a, a[:2])


def test_hstack_labels_each_panel_above_it():
    a = np.zeros((2, 32, 32, 3), np.float32)
    plain = V.hstack(a, a, gap=2, scale=4)
    labelled = V.hstack(a, a, gap=2, scale=4, labels=("source", "a label far too long for its panel here"))
    assert plain.shape == (2, 128, 258, 3) and labelled.shape == (2, 146, 258, 3)
    np.testing.assert_array_equal(labelled[:, 18:], plain)  # the panels themselves are untouched
    band = labelled[0, :18]
    for x0 in (0, 130):  # dark text inside each panel's own width, on white
        assert (band[:, x0 : x0 + 128] < 0.5).any()
    assert (band[:, 128:130] == 1).all()  # nothing written over the gap: the long label was shortened
    with pytest.raises(ValueError, match="one label per video"):
        V.hstack(a, a, labels=("only one",))
