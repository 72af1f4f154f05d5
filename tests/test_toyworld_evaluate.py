"""Tests for the base-model quality report (loraedit_nb.toyworld.evaluate) on a tiny random backbone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from loraedit_nb.conditioning import i2v_edit_mask
from loraedit_nb.exploration import psnr
from loraedit_nb.inference import generate
from loraedit_nb.models import tiny_random_backbone
from loraedit_nb.toyworld import COLOURS, caption, make_edit, render_scene, sample_scene
from loraedit_nb.toyworld.evaluate import (
    OPPOSITE,
    BatchedGenerator,
    capped,
    colour_centroid,
    evaluate_base,
    held_out_seeds,
    main,
    object_fraction,
    repeat_first,
    reverse_direction,
)

DEFAULTS = dict(height=32, width=32, num_frames=9, steps=2, guidance=1.0, flow_shift=3.0, fps=6)


@pytest.fixture(scope="module")
def toy_tiny():
    """The toy backbone's geometry (patchify VAE, no CLIP branch) at tiny random size, 32x32x9, 2 steps."""
    bb = tiny_random_backbone(vae="patchify", image_encoder=False)
    bb.defaults = dict(DEFAULTS)
    return bb


@pytest.fixture(scope="module")
def result(toy_tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    before = torch.get_num_threads()
    res = evaluate_base(toy_tiny, n_scenes=2, n_two_objects=1, out=out, threads=1)
    assert torch.get_num_threads() == before  # restored
    return res, out


def test_result_has_every_section_and_finite_model_metrics(result):
    res, out = result
    m = res["metrics"]
    assert set(m) == {"vae", "i2v", "i2v_by_motion", "i2v_two_objects", "first_last", "spatial_mask", "prompt"}
    assert res["settings"]["steps"] == 2 and res["settings"]["num_frames"] == 9
    assert [s["motion"] for s in res["scenes"][:2]] == ["static", "linear"]
    assert m["i2v"]["n"] == 2 and m["i2v_two_objects"]["n"] == 1 and m["prompt"]["n"] == 1
    for sec, keys in {"i2v": ("psnr_given", "psnr_frame", "psnr_region", "recognisable", "psnr_frame_repeat_first",
                              "psnr_region_repeat_first", "recognisable_repeat_first"),
                      "first_last": ("psnr_frame", "psnr_region", "recognisable"),
                      "i2v_two_objects": ("psnr_frame", "psnr_region"),
                      "spatial_mask": ("psnr_keep", "psnr_keep_plain_i2v", "psnr_region_vs_gt",
                                       "psnr_region_vs_gt_plain_i2v", "new_colour", "old_colour",
                                       "new_colour_plain_i2v", "old_colour_plain_i2v"),
                      "prompt": ("mean_abs_diff", "proj_px_gt", "toward_gt")}.items():
        for k in keys:
            assert math.isfinite(m[sec][k]), (sec, k, m[sec][k])
    for k in ("recognisable", "new_colour", "old_colour"):
        v = m["i2v" if k == "recognisable" else "spatial_mask"][k]
        assert 0.0 <= v <= 1.0
    assert m["prompt"]["mean_abs_diff"] > 0  # the caption reaches the output
    assert m["prompt"]["toward_gt"] in (0.0, 1.0)
    # the patchify VAE is lossless up to float round-off
    assert m["vae"]["max_abs_err"] < 1e-6 and m["vae"]["clips_8bit_exact"] == 2
    t = res["timing"]
    assert t["clips"] == 2 * 4 + 1 + 1 and 0 < t["seconds_per_clip"] < 60
    # files: JSON (non-finite numbers as strings), table, picture
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"]["i2v"]["n"] == 2 and saved["held_out"]["scene_seeds"] == res["held_out"]["scene_seeds"]
    assert (out / "examples.png").stat().st_size > 1000
    assert "PSNR keep region vs source |" in (out / "table.md").read_text()


def test_repeat_first_baseline_on_a_static_scene_is_exact(result):
    res, _ = result
    static = res["scenes"][0]
    assert static["motion"] == "static"
    r = static["i2v"]
    assert math.isinf(r["psnr_frame_repeat_first"]) and math.isinf(r["psnr_region_repeat_first"])
    assert r["recognisable_repeat_first"] == 1.0
    assert res["metrics"]["i2v_by_motion"]["static"]["psnr_frame_repeat_first"] == 60.0  # capped mean
    # a moving object: repeat-first is finite and the region is harder than the whole frame
    lin = res["scenes"][1]["i2v"]
    assert math.isfinite(lin["psnr_frame_repeat_first"])
    assert lin["psnr_region_repeat_first"] < lin["psnr_frame_repeat_first"]


def test_repeat_first_psnr_on_a_known_example():
    video = np.full((5, 16, 16, 3), 0.5, np.float32)
    video[1:] += 0.1  # every later frame is off by 0.1 -> MSE 0.01 -> 20 dB
    rep = repeat_first(video)
    assert rep.shape == video.shape and (rep == video[0]).all()
    assert psnr(rep[1:], video[1:]) == pytest.approx(20.0, abs=1e-4)
    assert capped([math.inf, 20.0]) == 40.0 and capped([math.nan, 30.0]) == 30.0


def test_object_fraction_and_centroid_on_a_rendered_scene():
    spec = sample_scene(5, motions=("linear",))
    obj = spec.objects[0]
    sc = render_scene(spec, size=32, frames=9)
    colour = None if obj.striped else COLOURS[obj.colour]
    assert object_fraction(sc.video, sc.video, sc.mask, colour, 0.25) == 1.0
    grey = np.full_like(sc.video, 0.5)
    assert object_fraction(grey, sc.video, sc.mask, colour, 0.25) == 0.0
    frame = np.zeros((16, 16, 3), np.float32)
    frame[4:6, 10:12] = COLOURS["red"]
    np.testing.assert_allclose(colour_centroid(frame, COLOURS["red"], 0.25), [11.0, 5.0])
    assert colour_centroid(frame, COLOURS["blue"], 0.25) is None


def test_reversed_caption_flips_the_direction_word():
    assert OPPOSITE["e"] == "w" and OPPOSITE["ne"] == "sw" and OPPOSITE["s"] == "n"
    spec = sample_scene(3, motions=("linear",))
    rev = reverse_direction(spec)
    assert rev.objects[0].direction == OPPOSITE[spec.objects[0].direction]
    assert caption(rev) != caption(spec) and reverse_direction(rev) == spec
    with pytest.raises(ValueError, match="linear"):
        reverse_direction(sample_scene(3, motions=("static",)))


def test_held_out_seeds_refuse_the_pretraining_stream():
    assert held_out_seeds(1234, 4) == held_out_seeds(1234, 4) != held_out_seeds(1235, 4)
    with pytest.raises(ValueError, match="pretraining"):
        held_out_seeds(0, 4)


def test_batched_generation_equals_generate(toy_tiny):
    specs = [sample_scene(s, motions=("linear",)) for s in (1, 2)]
    scenes = [render_scene(s, size=32, frames=9) for s in specs]
    edit = make_edit(specs[1], "recolour", size=32, frames=9)
    videos = np.stack([s.video for s in scenes])
    masks = np.stack([i2v_edit_mask(9, 32, 32), edit.mask])
    firsts = np.stack([videos[0, 0], edit.edited_frames[0]])
    prompts = [scenes[0].caption, edit.caption]
    run = BatchedGenerator(toy_tiny, steps=2, guidance=1.0, flow_shift=3.0, batch=2)
    out = run(videos, masks, firsts, prompts, [7, 8])
    assert out.shape == (2, 9, 32, 32, 3) and run.clips == 2
    for i in range(2):
        ref = generate(toy_tiny, videos[i], masks[i], firsts[i], prompt=prompts[i], seed=7 + i, progress=False)
        np.testing.assert_allclose(out[i], ref, atol=1e-4)


def test_cli_on_a_saved_backbone(toy_tiny, tmp_path, capsys):
    path = toy_tiny.save_pretrained(tmp_path / "bb")
    (path / "pretrain.json").write_text(json.dumps({"step": 123, "wall_minutes": 1.0, "config": {"seed": 0}}))
    res = main(["--backbone", str(path), "--n", "1", "--n-two", "0", "--out", str(tmp_path / "q"), "--threads", "1"])
    printed = capsys.readouterr().out
    assert "| I2V (first frame): PSNR whole frame" in printed and "Seconds per generated clip" in printed
    assert res["metrics"]["prompt"] == {"n": 0} and (tmp_path / "q" / "results.json").is_file()
    assert res["checkpoint"]["step"] == 123 and "(step 123)" in printed.split("\n")[0]
