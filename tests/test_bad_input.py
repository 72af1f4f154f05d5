"""Bad input, as a new user brings it: each case gets a message that fits it and names the fix in the caller's terms
(Python names for the API, flags for the CLI), and the fix it names works."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from loraedit_nb import masks as M
from loraedit_nb import video as V
from loraedit_nb.__main__ import main
from loraedit_nb.conditioning import i2v_edit_mask
from loraedit_nb.inference import MaskPolarityWarning, PlainI2VMaskWarning, edit_video, save_edit
from loraedit_nb.models import ClipSizeWarning, load_backbone
from tests.conftest import moving_square

KW = dict(steps=2, guidance=1.0, prompt="a red square", progress=False)


@pytest.fixture(scope="module")
def toy():
    return load_backbone("toy")


def _soft_disc(n=64):
    """A feathered disc as an image editor's soft brush exports it: float 0..1 and the area of the hard disc."""
    import cv2

    yy, xx = np.mgrid[:n, :n] + 0.5
    hard = ((xx - 30) ** 2 + (yy - 30) ** 2 < 12**2).astype(np.float32)
    return cv2.GaussianBlur(hard, (0, 0), 2.0)[None], float(hard.sum())


# ----------------------------------------------------------------------------------------------- 1. soft masks
def test_soft_mask_hint_fits_its_value_range():
    cover, area = _soft_disc()
    u8 = np.round(cover * 255).astype(np.uint8)
    with pytest.raises(ValueError, match="not binary") as e:
        M.check_mask(u8)
    msg = str(e.value)
    assert "uint8" in msg and "0..255" in msg and "mask > 127" in msg and "mask > 0.5" not in msg, msg
    # the hinted threshold keeps the disc's area; the old hint (> 0.5 on 0..255) marks the whole soft edge too
    assert abs((u8 > 127).sum() - area) < 0.03 * area
    assert (u8 > 0.5).sum() > 1.5 * area
    with pytest.raises(ValueError, match=r"float32 values 0\.\.1.*mask > 0\.5"):
        M.check_mask(cover)
    with pytest.raises(ValueError, match="mask > 0 if these are signed"):
        M.check_mask(cover * 2 - 1)


# ----------------------------------------------------------------------------------------------- 2. RGBA
def _rgba_square(h=64, w=64):
    """An edit painted on a transparent layer: a green square, everything else alpha 0 (RGB black under it)."""
    a = np.zeros((h, w, 4), np.uint8)
    a[20:40, 20:40] = [0, 255, 0, 255]
    return a


def test_rgba_arrays_get_image_messages_not_batch_shapes():
    rgba = _rgba_square()
    with pytest.raises(ValueError) as e:
        V.check_image(rgba, "edited frame")
    msg = str(e.value)
    assert "RGBA" in msg and "background=" in msg and "(1, " not in msg and "image[None]" not in msg, msg
    with pytest.raises(ValueError, match="composite_alpha") as e:
        V.check_video(rgba[None])
    assert "image[None]" not in str(e.value)
    with pytest.raises(ValueError, match=r"one image .*\[None\]"):
        V.check_video(rgba[..., :3])
    with pytest.raises(ValueError, match=r"one-frame batch.*image\[0\]"):
        V.check_image(rgba[None, ..., :3])
    opaque = rgba.copy()
    opaque[..., 3] = 255
    np.testing.assert_array_equal(V.check_image(opaque), rgba[..., :3] / np.float32(255))  # nothing to lose
    grey = V.check_image(rgba, background=0.5)
    assert np.allclose(grey[0, 0], 0.5) and np.allclose(grey[30, 30], [0, 1, 0])


def test_rgba_png_is_never_silently_blackened(tmp_path):
    Image.fromarray(_rgba_square(), "RGBA").save(tmp_path / "edit.png")
    with pytest.raises(ValueError, match=r"transparent pixels.*read_image\(path, alpha=True\)"):
        V.read_image(tmp_path / "edit.png")
    got = V.read_image(tmp_path / "edit.png", alpha=True)
    assert got.shape == (64, 64, 4) and got[0, 0, 3] == 0
    Image.fromarray(_rgba_square()[..., :3]).convert("RGBA").save(tmp_path / "opaque.png")  # alpha 255 everywhere
    assert V.read_image(tmp_path / "opaque.png").shape == (64, 64, 3)
    # a mask painted on a transparent layer: transparent = not painted = keep
    a = np.zeros((64, 64, 4), np.uint8)
    a[..., :3] = 255  # white under alpha 0: read as grey it would mark everything
    a[10:20, 10:20, 3] = 255
    (tmp_path / "m").mkdir()
    Image.fromarray(a, "RGBA").save(tmp_path / "m" / "00000.png")
    assert M.load(tmp_path / "m").sum() == 100


def test_rgba_edited_frame_is_composited_over_the_source_frame(tiny, monkeypatch):
    import loraedit_nb.inference as inf

    video, mask = moving_square(T=5)
    rgba = _rgba_square()
    seen = {}

    def fake_generate(bb, video, mask, first, **kw):  # the frame the model would be conditioned on
        seen.update(first=first, keyframes=kw["keyframes"])
        return video
    monkeypatch.setattr(inf, "generate", fake_generate)
    edit_video(tiny, None, video, mask, rgba, edited_frames={4: rgba}, place_edited_frames=True, seed=0, **KW)
    want = np.where(rgba[..., 3:] > 0, rgba[..., :3] / np.float32(255), video[0])  # transparent = source frame 0
    np.testing.assert_allclose(seen["first"], want, atol=1e-6)
    np.testing.assert_allclose(seen["keyframes"][4], np.where(rgba[..., 3:] > 0, want, video[4]), atol=1e-6)


# ----------------------------------------------------------------------------------------------- 3. mask polarity
def test_inverted_mask_warns_at_the_callers_line(tiny, monkeypatch):
    import loraedit_nb.inference as inf

    video, mask = moving_square(T=5)
    monkeypatch.setattr(inf, "generate", lambda bb, video, *a, **kw: video)
    with pytest.warns(MaskPolarityWarning) as rec:
        edit_video(tiny, None, video, ~mask, video[0], seed=0, **KW)
    assert len(rec) == 1
    w = rec[0]
    assert "True = the region to EDIT" in str(w.message) and "mask = ~mask" in str(w.message)
    assert w.filename == __file__, w.filename  # the caller's line, not inference.py's
    assert issubclass(MaskPolarityWarning, UserWarning)
    half = mask.copy()
    half[2:] = True  # most of some frames, not of every frame: a legitimate big edit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.warn_if_degenerate(half)


def test_plain_i2v_mask_has_its_own_filterable_category(tiny, monkeypatch):
    import loraedit_nb.inference as inf

    video, _ = moving_square(T=5)
    monkeypatch.setattr(inf, "generate", lambda bb, video, *a, **kw: video)
    with pytest.warns(PlainI2VMaskWarning, match="plain image-to-video") as rec:
        edit_video(tiny, None, video, i2v_edit_mask(5, 64, 64), video[0], seed=0, **KW)
    assert len(rec) == 1 and rec[0].filename == __file__
    assert "i2v_edit_mask" in str(rec[0].message) and "PlainI2VMaskWarning" in str(rec[0].message)
    with warnings.catch_warnings():  # a baseline that means it filters exactly this
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", PlainI2VMaskWarning)
        edit_video(tiny, None, video, i2v_edit_mask(5, 64, 64), video[0], seed=0, **KW)


# ----------------------------------------------------------------------------------------------- 4. toy clip sizes
def test_toy_refusal_limit_is_exactly_where_diffusers_fails(toy):
    """256 px wide runs in the transformer, 272 fails in WanRotaryPosEmbed; the check agrees on both sides."""
    ctx = toy.encode_prompt("a red disc")

    def forward(frames, h, w):
        lat = torch.zeros(1, toy.transformer.config.in_channels, (frames - 1) // 4 + 1, h // 2, w // 2)
        with torch.no_grad():
            toy.transformer(lat, timestep=torch.tensor([500.0]), encoder_hidden_states=ctx, return_dict=False)

    forward(1, 16, 256)
    with pytest.raises(RuntimeError):
        forward(1, 16, 272)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClipSizeWarning)
        toy.check_clip_size(1, 16, 256)
        toy.check_clip_size(253, 16, 16)
    for size, axis in (((1, 16, 272), "width"), ((1, 272, 16), "height"), ((257, 16, 16), "frames")):
        with pytest.raises(ValueError, match=f"along the {axis}") as e:
            toy.check_clip_size(*size)
        msg = str(e.value)
        assert "rope_max_seq_len" in msg and "253 frames and 256 x 256 px" in msg, msg
        assert "prepare_video(video, 9, 32, 32)" in msg and "Wan-AI/" in msg, msg


def test_toy_warns_beyond_its_training_size_and_generate_refuses_early(toy):
    with pytest.warns(ClipSizeWarning) as rec:
        toy.check_clip_size(17, 112, 256)
    msg = str(rec[0].message)
    assert "trained only on 9-frame 32 x 32" in msg and "47x the tokens" in msg
    assert "prepare_video(video, 9, 32, 32)" in msg and rec[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        toy.check_clip_size(9, 32, 32)
        toy.check_clip_size(5, 16, 16)  # smaller is not "beyond"
    from loraedit_nb.inference import generate

    video = np.zeros((5, 32, 288, 3), np.float32)
    with pytest.raises(ValueError, match="cannot run a 5 x 32 x 288"):
        generate(toy, video, np.ones((5, 32, 288), bool), progress=False)


# ----------------------------------------------------------------------------------------------- 5. CLI wording
@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    video, mask = moving_square(T=17, H=80, W=96, step=2)
    V.write_video(tmp / "clip.mp4", video, fps=8)
    M.save_npz(tmp / "mask.npz", mask)
    return tmp, video, mask


def _cli(capsys, *argv) -> tuple[int, str]:
    rc = main(list(argv), catch=True)
    err = capsys.readouterr().err
    return rc, "\n".join(ln for ln in err.splitlines() if ln.strip() and "torchvision" not in ln
                         and "Loading weights" not in ln)


def test_cli_errors_name_flags_not_python(clip_files, capsys):
    tmp, _, mask = clip_files
    train = ["train", "--video", str(tmp / "clip.mp4"), "--mask", str(tmp / "mask.npz"), "--out", str(tmp / "r")]
    cases = [
        (["--frames", "8"], "--frames 9", "sample_frames"),
        (["--height", "30"], "--height 16 --width 32", "resize_and_crop"),
        (["--frames", "33"], "--frames 17", "Ask for"),
    ]
    for extra, flag, python in cases:
        rc, err = _cli(capsys, *train, *extra)
        last = err.splitlines()[-1]
        assert rc == 2 and last.startswith("error:") and flag in last and python not in last, err
        assert "Traceback" not in err
    M.save_npz(tmp / "mask17.npz", np.zeros((17, 112, 256), bool))  # made for a clip prepared at 17x112x256
    bunny_like = np.zeros((33, 144, 256, 3), np.float32)
    V.write_video(tmp / "long.mp4", bunny_like, fps=8)
    rc, err = _cli(capsys, "train", "--video", str(tmp / "long.mp4"), "--mask", str(tmp / "mask17.npz"),
                   "--out", str(tmp / "r"))
    assert rc == 2 and "--frames 17 --height 112 --width 256" in err and "33 frames of 144x256" in err, err
    rc, err = _cli(capsys, *train, "--frames", "17", "--height", "112", "--width", "288")
    assert rc == 2 and "rope_max_seq_len" in err and "--frames 9 --height 32 --width 32" in err, err
    assert "prepare_video" not in err
    rc, err = _cli(capsys, "train", "--video", str(tmp / "nope.mp4"), "--mask", str(tmp / "mask.npz"),
                   "--out", str(tmp / "r"))
    assert rc == 2 and err == "error: --video " + str(tmp / "nope.mp4") + ": no such file or folder", err


def test_cli_warns_in_flags_before_training(clip_files, capsys, monkeypatch):
    import loraedit_nb.training as training

    tmp, _, mask = clip_files
    M.save_npz(tmp / "inverted.npz", ~mask)
    monkeypatch.setattr(training, "train_lora", lambda *a, **k: (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        main(["train", "--video", str(tmp / "clip.mp4"), "--mask", str(tmp / "inverted.npz"), "--out",
              str(tmp / "r"), "--frames", "17", "--height", "64", "--width", "64"])
    err = capsys.readouterr().err
    size = [ln for ln in err.splitlines() if ln.startswith("warning: the toy backbone")]
    assert size and "--frames 9 --height 32 --width 32" in size[0] and "prepare_video" not in size[0], err
    polarity = [ln for ln in err.splitlines() if ln.startswith("warning: the edit mask covers")]
    assert polarity and "white = edit" in polarity[0] and "~mask" in polarity[0], err


def test_cli_edit_names_resize_edits_flag(clip_files, capsys):
    tmp, _, _ = clip_files
    run = _train_toy_run(tmp)
    V.write_image(tmp / "big.png", np.zeros((64, 64, 3)))
    rc, err = _cli(capsys, "edit", "--run", str(run), "--edited-frame", str(tmp / "big.png"), "--steps", "1")
    assert rc == 2 and "--resize-edits" in err and "resize_edits=True" not in err, err


# ----------------------------------------------------------------------------------------------- 6. exact clip
def _train_toy_run(tmp):
    """One toy run (1 step) shared by the tests of this module."""
    run = tmp / "run"
    if not (run / "lora").exists():
        main(["train", "--video", str(tmp / "clip.mp4"), "--mask", str(tmp / "mask.npz"), "--out", str(run),
              "--steps", "1", "--colour-aug", "none"])
    return run


def test_edit_reads_exactly_the_prepared_clip(clip_files, monkeypatch):
    import loraedit_nb.inference as inf
    from loraedit_nb.cli import prepare_clip
    from loraedit_nb.inference import EditResult

    tmp, _, _ = clip_files
    run = _train_toy_run(tmp)
    prepared, prepared_mask, _, _ = prepare_clip(str(tmp / "clip.mp4"), str(tmp / "mask.npz"), 9, 32, 32)
    Image.fromarray(_rgba_square(32, 32), "RGBA").save(tmp / "edit.png")
    seen = {}

    def fake_edit(bb, lora, video, mask, first, **kw):
        seen.update(video=video, mask=mask, first=first)
        return EditResult(video, 0, "", {})
    monkeypatch.setattr(inf, "edit_video", fake_edit)
    main(["edit", "--run", str(run), "--edited-frame", str(tmp / "edit.png"), "--out", str(tmp / "e.mp4")])
    assert seen["video"].dtype == np.float32
    np.testing.assert_array_equal(seen["video"], prepared)  # bit-exact, not the H.264 source.mp4 nor float16
    np.testing.assert_array_equal(seen["mask"], prepared_mask)
    assert seen["first"].shape == (32, 32, 4)  # RGBA reaches edit_video, which composites it over the source


# ----------------------------------------------------------------------------------------------- 7. docstrings
def test_save_edit_writes_what_its_docstring_names(tmp_path):
    from loraedit_nb.inference import EditResult

    video, mask = moving_square(T=5, H=32, W=32)
    res = EditResult(video, 3, "p", {"steps": 1})
    files = save_edit(res, tmp_path / "a", video, mask)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["edited.json", "edited.mp4",
                                                                  "edited_comparison.mp4"]
    save_edit(res, tmp_path / "b" / "clip.mp4", video, mask)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["clip.json", "clip.mp4", "clip_comparison.mp4"]
    for name in ("NAME.mp4", "NAME_comparison.mp4", "NAME.json", "edited"):
        assert name in save_edit.__doc__
    assert set(files) == {"edited", "comparison"} and json.loads((tmp_path / "a" / "edited.json").read_text())["seed"]


def test_cli_docstring_names_the_run_files(clip_files):
    import loraedit_nb.cli as cli

    run = _train_toy_run(clip_files[0])
    for name in ("source.npz", "source.mp4", "mask.npz", "run.json", "lora/"):
        assert (run / name.rstrip("/")).exists() and f"``{name}``" in cli.__doc__, name


# ----------------------------------------------------------------------------------------------- smaller cases
def test_training_edited_frames_composite_over_the_clip_and_name_the_flag():
    from loraedit_nb.cli import fit_edited_frames

    video, _ = moving_square(T=5)
    rgba = _rgba_square().astype(np.float32) / 255
    got = fit_edited_frames({3: rgba}, video, resize=False)[3]
    np.testing.assert_allclose(got, np.where(rgba[..., 3:] > 0, rgba[..., :3], video[3]), atol=1e-6)
    with pytest.raises(ValueError) as e:
        fit_edited_frames({3: np.zeros((32, 32, 3), np.float32)}, video, resize=False)
    assert "--resize-edits" in e.value.for_cli() and "resize_and_crop(frame, 64, 64)" in str(e.value)
    assert fit_edited_frames({3: np.zeros((32, 32, 3), np.float32)}, video, resize=True)[3].shape == (64, 64, 3)


def test_outputs_and_sizes_that_would_be_silently_wrong_are_refused(tmp_path):
    from loraedit_nb.data import load_clip

    with pytest.raises(ValueError, match="Use .mp4"):
        V.write_video(tmp_path / "x.webm", np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="toy clip is square.*height=width"):
        load_clip("toy", frames=9, height=32, width=64)  # the toy world would hand back 32x32


def test_train_lora_refuses_a_clip_past_the_toy_rotary_table_before_any_work():
    from loraedit_nb.models import load_backbone
    from loraedit_nb.regimes import motion_sample
    from loraedit_nb.training import toy_config, train_lora
    from loraedit_nb.video import InputError

    bb = load_backbone("toy")
    video = np.zeros((9, 32, 288, 3), np.float32)
    mask = np.zeros((9, 32, 288), bool)
    mask[:, 8:16, 8:16] = True
    with pytest.raises(InputError, match=r"prepare_video\(video, 9, 32, 32\)"):
        train_lora(bb, [motion_sample(video, mask, "a disc")], toy_config(steps=1))
