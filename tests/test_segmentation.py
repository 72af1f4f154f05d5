"""Click-to-track masks (loraedit_nb.segmentation): SAM2's real code path on a tiny random model built offline, the
flow stand-in on clips whose answer is known, the CLI and the painter's click tool. No weights are downloaded."""

import json
import warnings

import numpy as np
import pytest

from loraedit_nb import masks as M
from loraedit_nb import segmentation as S
from loraedit_nb.__main__ import main
from loraedit_nb.video import InputError, write_video
from tests.conftest import moving_square


@pytest.fixture(scope="module")
def tiny_sam():
    return S.tiny_segmenter()


@pytest.fixture
def spy(tiny_sam, monkeypatch):
    """What the tiny SAM2 was given (the processor's add_inputs kwargs) and which frames it tracked, in order and in
    which direction; the real calls go through."""
    seen = {"inputs": [], "frames": []}
    proc, model = tiny_sam.processor, tiny_sam.model
    add, prop = proc.add_inputs_to_inference_session, model.propagate_in_video_iterator

    def add_inputs(**kw):
        seen["inputs"].append({k: v for k, v in kw.items() if k != "inference_session"})
        return add(**kw)

    def propagate(session, start_frame_idx=None, reverse=False, **kw):
        for out in prop(session, start_frame_idx=start_frame_idx, reverse=reverse, **kw):
            seen["frames"].append((out.frame_idx, reverse))
            yield out

    monkeypatch.setattr(proc, "add_inputs_to_inference_session", add_inputs)
    monkeypatch.setattr(model, "propagate_in_video_iterator", propagate)
    return seen


def test_tiny_sam2_tracks_forward_and_backward_from_a_middle_frame(tiny_sam, spy):
    video, truth = moving_square(T=7, H=48, W=64, size=12, step=3)
    t = 3
    mask = S.segment_video(video, [S.MaskPrompt(truth[t], frame=t)], segmenter=tiny_sam, progress=False)
    assert mask.shape == truth.shape and mask.dtype == bool
    # the prompted frame is the given region (SAM2 takes a mask prompt as that frame's answer): polarity, size and
    # position survive the 128 px model input and post_process_masks back to 48x64
    inner, outer = M.erode(truth[t][None], 1)[0], M.dilate(truth[t][None], 1)[0]
    assert mask[t][inner].all() and not mask[t][~outer].any()  # up to the corners, rounded by the resizing
    forward = [f for f, rev in spy["frames"] if not rev]
    backward = [f for f, rev in spy["frames"] if rev]
    assert forward == list(range(t, 7)) and backward == list(range(t, -1, -1))


def test_points_and_boxes_reach_sam2_as_x_y_in_video_pixels(tiny_sam, spy):
    video, _ = moving_square(T=5, H=48, W=64)
    prompts = [S.Click(30, 10, frame=2), S.Click(5, 40, frame=2, positive=False), S.BoxPrompt(20, 5, 40, 30, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", S.LargeMaskWarning)  # random weights: any answer
        try:
            S.segment_video(video, prompts, segmenter=tiny_sam, progress=False)
        except InputError as e:  # random weights may find nothing; the inputs are what is tested
            assert "no object found" in str(e) and "meaningless" in str(e)
    (got,) = spy["inputs"]
    assert got["frame_idx"] == 2 and got["obj_ids"] == 1
    assert got["input_points"] == [[[[30.0, 10.0], [5.0, 40.0]]]] and got["input_labels"] == [[[1, 0]]]
    assert got["input_boxes"] == [[[20.0, 5.0, 40.0, 30.0]]]
    # a click on the middle frame: forward from it to the end, then backward from it to frame 0
    assert spy["frames"] == [(f, False) for f in range(2, 5)] + [(f, True) for f in range(2, -1, -1)]


def test_several_objects_union_or_one_mask_each(tiny_sam):
    video, _ = moving_square(T=5, H=48, W=64)
    a, b = np.zeros((48, 64), bool), np.zeros((48, 64), bool)
    a[4:14, 4:20], b[30:44, 40:60] = True, True
    prompts = [S.MaskPrompt(a, 0, obj=1), S.MaskPrompt(b, 0, obj=2)]
    each = S.segment_video(video, prompts, segmenter=tiny_sam, union=False, progress=False)
    assert each.shape == (2, 5, 48, 64)
    assert (each[0, 0] == a).mean() > 0.99 and (each[1, 0] == b).mean() > 0.99
    union = S.segment_video(video, prompts, segmenter=tiny_sam, progress=False)
    np.testing.assert_array_equal(union, each.any(0))


@pytest.mark.filterwarnings("ignore::loraedit_nb.segmentation.LargeMaskWarning")  # random weights
def test_post_processing_boxes_dilation_and_flow_union(tiny_sam):
    video, truth = moving_square(T=5, H=48, W=64, size=12, step=3)
    disc = M.disc(48, 64, (26, 14), 6)  # (cy, cx), radius: inside the square on frame 0
    raw = S.segment_video(video, [S.MaskPrompt(disc, 0)], segmenter=tiny_sam, union=False, progress=False)[0]
    boxed = S.segment_video(video, [S.MaskPrompt(disc, 0)], segmenter=tiny_sam, boxes_from_components=True,
                            progress=False)
    np.testing.assert_array_equal(boxed, M.to_boxes(raw, expand_ratio=0.1, min_area=50))
    grown = S.segment_video(video, [S.MaskPrompt(disc, 0)], segmenter=tiny_sam, dilate=2, progress=False)
    np.testing.assert_array_equal(grown, M.dilate(raw, 2))
    with_flow = S.segment_video(video, [S.MaskPrompt(disc, 0)], segmenter=tiny_sam, flow_union=True,
                                progress=False)
    assert (with_flow >= raw).all()
    np.testing.assert_array_equal(with_flow, raw | M.propagate_both_ways(video, raw[0], 0))


def test_flow_stand_in_follows_the_clicked_object_both_ways():
    video, truth = moving_square(T=9, H=48, W=64, size=12, step=3)
    t = 4
    cx, cy = 8 + 3 * t + 6, 26  # the square's centre on frame t
    mask = S.segment_video(video, [S.Click(cx, cy, frame=t)], segmenter=S.FlowTracker(), progress=False)
    iou = (mask & truth).sum((1, 2)) / (mask | truth).sum((1, 2))
    assert iou.min() > 0.7, iou  # frames before t (backward) and after it (forward)
    neg = S.segment_video(video, [S.Click(cx, cy, t), S.Click(5, 5, t, positive=False)], segmenter=S.FlowTracker(),
                          progress=False)
    np.testing.assert_array_equal(neg, mask)  # a negative click on the background removes nothing of the object


@pytest.mark.parametrize("prompt, match", [
    (S.Click(64, 10), "outside the 64x48"),
    (S.Click(10, -1), "outside the 64x48"),
    (S.Click(10, 10, frame=9), "frame 9 of the point .* out of range for a 5-frame clip"),
    (S.BoxPrompt(10, 10, 10, 30), "zero area"),
    (S.BoxPrompt(100, 10, 120, 30), "outside the 64x48 frame"),
    (S.Click(10, 10, positive=False), "only negative clicks"),
])
def test_bad_prompts_name_the_fix(prompt, match):
    video, _ = moving_square(T=5, H=48, W=64)
    with pytest.raises(InputError, match=match):
        S.segment_video(video, [prompt], segmenter=S.FlowTracker(), progress=False)
    with pytest.raises(InputError, match="no prompts"):
        S.segment_video(video, [], segmenter=S.FlowTracker())


def test_nothing_found_and_almost_everything_found():
    video, _ = moving_square(T=5, H=48, W=64)
    # a negative click where the positive one is: the region is empty on every frame
    with pytest.raises(InputError, match="no object found.*Click on the object itself"):
        S.segment_video(video, [S.Click(14, 26), S.Click(14, 26, positive=False)], segmenter=S.FlowTracker(),
                        progress=False)
    flat = np.full((5, 48, 64, 3), 0.5, np.float32)  # one colour: the click's region is the whole frame
    with pytest.warns(S.LargeMaskWarning, match="almost nothing to preserve"):
        S.segment_video(flat, [S.Click(30, 20)], segmenter=S.FlowTracker(), progress=False)


def test_missing_weights_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model folder.*huggingface-cli download.*'flow'"):
        S.load_segmenter(tmp_path / "nowhere")
    (tmp_path / "cfg").mkdir()  # a folder with a config but no weights or processor: from_pretrained's OSError
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(S.tiny_sam2_config().to_dict()))
    with pytest.raises(OSError, match="could not load the video segmenter .*pass the folder"):
        S.load_segmenter(tmp_path / "cfg")


def test_a_saved_segmenter_loads_from_its_folder(tiny_sam, tmp_path):
    """The folder path is the one a user without the Hub takes: save_pretrained, then load_segmenter(folder)."""
    tiny_sam.model.save_pretrained(tmp_path / "sam")
    tiny_sam.processor.save_pretrained(tmp_path / "sam")
    seg = S.load_segmenter(tmp_path / "sam", device="cpu")
    video, truth = moving_square(T=3, H=48, W=64)
    a = S.segment_video(video, [S.MaskPrompt(truth[0], 0)], segmenter=seg, progress=False)
    b = S.segment_video(video, [S.MaskPrompt(truth[0], 0)], segmenter=tiny_sam, progress=False)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------- CLI
def test_mask_command_writes_a_mask_train_accepts(tmp_path):
    video, truth = moving_square(T=9, H=48, W=64, size=12, step=3)
    write_video(tmp_path / "clip.mp4", video, fps=8)
    out = tmp_path / "mask.npz"
    main(["mask", "--video", str(tmp_path / "clip.mp4"), "--point", "14,26", "--point", "60,5,0,neg",
          "--segmenter", "flow", "--dilate", "1", "--out", str(out)])
    mask = M.load(out)
    assert mask.shape == (9, 48, 64) and (tmp_path / "mask.preview.mp4").exists()
    assert (mask & truth).sum() / truth.sum() > 0.8 and mask.mean() < 0.2  # the square, not the background
    main(["train", "--video", str(tmp_path / "clip.mp4"), "--mask", str(out), "--out", str(tmp_path / "run"),
          "--backbone", "tiny-random", "--frames", "5", "--height", "32", "--width", "32", "--steps", "1",
          "--rank", "2"])
    assert (tmp_path / "run" / "lora" / "pytorch_lora_weights.safetensors").exists()


def test_mask_command_on_sampled_frames_with_the_tiny_sam2(tmp_path, capsys):
    video, _ = moving_square(T=9, H=48, W=64)
    write_video(tmp_path / "clip.mp4", video, fps=8)
    out = tmp_path / "m.npz"
    try:
        main(["mask", "--video", str(tmp_path / "clip.mp4"), "--box", "8,20,20,32,2", "--frames", "5",
              "--segmenter", "random-tiny", "--out", str(out)])
    except InputError as e:  # random weights may track nothing: then it says so
        assert "no object found" in str(e)
        return
    assert M.load(out).shape == (5, 48, 64)
    err = capsys.readouterr().err
    assert "meaningless" in err


@pytest.mark.parametrize("args, match", [
    (["--point", "1,2,3,4"], "cannot read it"),
    (["--point", "1,x"], "cannot read it"),
    (["--box", "1,2,3"], "cannot read it"),
    ([], "no prompts"),
])
def test_mask_command_flag_errors(tmp_path, args, match):
    video, _ = moving_square(T=5, H=48, W=64)
    write_video(tmp_path / "clip.mp4", video, fps=8)
    with pytest.raises(InputError, match=match):
        main(["mask", "--video", str(tmp_path / "clip.mp4"), *args, "--segmenter", "flow",
              "--out", str(tmp_path / "m.npz")])


def test_point_flags_parse():
    from loraedit_nb.cli import parse_box, parse_point

    assert parse_point("12,34") == S.Click(12, 34)
    assert parse_point("12,34,5,neg,obj2") == S.Click(12, 34, 5, positive=False, obj=2)
    assert parse_box("1,2,30,40,3,obj3") == S.BoxPrompt(1, 2, 30, 40, 3, obj=3)


# ----------------------------------------------------------------------------------------------- the painter
def test_painter_click_tool_tracks_then_the_brush_edits(monkeypatch):
    from loraedit_nb.widgets import MaskPainter

    video, truth = moving_square(T=9, H=48, W=64, size=12, step=3)
    p = MaskPainter(video, segmenter=S.FlowTracker())
    sx, sy = p.canvas_width / 64, p.canvas_height / 48
    p.frame.value = 4
    p.tool.value = "click +"
    p.on_mouse_down((26 + 0.5) * sx, (26 + 0.5) * sy)  # the square's centre on frame 4
    p.on_mouse_up((26 + 0.5) * sx, (26 + 0.5) * sy)
    assert p.clicks == [S.Click(26, 26, 4, True)]
    iou = (p.mask & truth).sum((1, 2)) / (p.mask | truth).sum((1, 2))
    assert iou.min() > 0.7 and "tracked 1 click with flow stand-in" in p.status.value
    assert (p.preview() != MaskPainter(video, p.mask, segmenter=S.FlowTracker()).preview()).any()  # the dot
    p.tool.value = "eraser"  # the tracked mask is an ordinary mask: the brush edits it
    p.on_mouse_down((26 + 0.5) * sx, (26 + 0.5) * sy)
    p.on_mouse_up((26 + 0.5) * sx, (26 + 0.5) * sy)
    assert not p.mask[4, 26, 26] and p.mask[0].any()
    p.undo()
    p.undo()  # back before the click: mask and clicks
    assert p.clicks == [] and not p.mask.any()


def test_painter_negative_first_then_positive_and_the_fallback_notice():
    from loraedit_nb.widgets import MaskPainter

    video, truth = moving_square(T=5, H=48, W=64)
    p = MaskPainter(video, segmenter="/no/such/segmenter")
    p.tool.value = "click −"
    p.on_mouse_down(*(c * p.scale for c in (60, 5)))
    assert "SAM2 is not available" in p.status.value and "flow stand-in" in p.status.value
    assert "only negative clicks" in p.status.value and not p.mask.any()
    p.tool.value = "click +"
    p.on_mouse_down(*(c * p.scale for c in (14, 26)))
    assert isinstance(p._segmenter, S.FlowTracker) and "SAM2 is not available" not in p.status.value  # said once
    assert (p.mask & truth).sum() / truth.sum() > 0.8 and len(p.clicks) == 2
    p.forget_clicks()
    assert p.clicks == [] and p.mask.any()


def test_an_unreachable_hub_fails_in_seconds_with_the_fix(monkeypatch):
    """Not cached and no Hub: one OSError naming the folder and flow fixes, without huggingface_hub's minutes of
    retries (the Hub is never contacted here)."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(S, "hub_reachable", lambda timeout=3.0: False)
    t0 = time.perf_counter()
    with pytest.raises(OSError, match="cannot be reached.*not in the local cache.*--segmenter DIR.*'flow'"):
        S.load_segmenter("tiny", device="cpu")
    assert time.perf_counter() - t0 < 30
    monkeypatch.undo()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert S.hub_reachable() is False
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # a proxy: a direct connect proves nothing
    assert S.hub_reachable() is True


def test_fallback_flow_says_so_and_returns_the_stand_in(monkeypatch, capsys):
    monkeypatch.setattr(S, "hub_reachable", lambda timeout=3.0: False)
    seg = S.load_segmenter("tiny", device="cpu", fallback="flow")
    assert isinstance(seg, S.FlowTracker) and "flow stand-in tracks instead" in capsys.readouterr().out
    with pytest.raises(ValueError, match="fallback"):
        S.load_segmenter("tiny", fallback="sam")
