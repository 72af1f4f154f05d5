import json

import numpy as np
import pytest

from loraedit_nb import masks as M
from loraedit_nb.__main__ import main
from loraedit_nb.video import write_image, write_video
from tests.conftest import moving_square


@pytest.fixture
def clip_files(tmp_path):
    video, mask = moving_square(T=17, H=80, W=96, step=2)  # bigger than the run size: exercises sampling + crop
    write_video(tmp_path / "clip.mp4", video, fps=8)
    M.save_npz(tmp_path / "mask.npz", mask)
    return tmp_path, video, mask


@pytest.mark.parametrize("backbone", ["tiny-random", "tiny-hunyuan"])
def test_train_then_edit_from_the_shell(clip_files, backbone):
    tmp, video, _ = clip_files
    run = tmp / "runs" / "demo"
    common = ["--backbone", backbone, "--frames", "5", "--height", "64", "--width", "64"]
    main(["train", "--video", str(tmp / "clip.mp4"), "--mask", str(tmp / "mask.npz"), "--prompt", "a red square",
          "--out", str(run), "--steps", "3", "--rank", "4", "--colour-aug", "none", *common])
    info = json.loads((run / "run.json").read_text())
    assert info["frames"] == 5 and info["backbone"] == backbone
    assert (run / "lora" / "pytorch_lora_weights.safetensors").exists()
    mask = M.load(run / "mask.npz")
    assert mask.shape == (5, 64, 64) and mask[1:].any()
    write_image(tmp / "first.png", np.clip(video[0, :64, :64] + 0.2, 0, 1))
    edited = tmp / "frames"
    write_image(edited / "00004.png", video[0, :64, :64])
    edit = ["edit", "--run", str(run), "--edited-frame", str(tmp / "first.png"), "--edited-frames", str(edited),
            "--steps", "2", "--seed", "1", "--out", str(tmp / "edited.mp4")]
    if backbone == "tiny-hunyuan":  # one mask channel per latent frame: a single placed frame is refused, not lost
        with pytest.raises(ValueError, match="one mask channel per latent frame"):
            main([*edit, "--place-edited-frames"])
        main(edit)
    else:
        main([*edit, "--place-edited-frames"])
    assert (tmp / "edited.mp4").exists() and (tmp / "edited_comparison.mp4").exists()
    assert json.loads((tmp / "edited.json").read_text())["seed"] == 1


def test_cli_errors_are_clear(clip_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        main(["edit", "--run", str(tmp_path / "nope"), "--edited-frame", "x.png"])
    tmp, _, _ = clip_files
    bad = tmp / "bad_frames"
    write_image(bad / "00099.png", np.zeros((64, 64, 3)))
    from loraedit_nb.cli import read_edited_frames

    with pytest.raises(ValueError, match="out of range"):
        read_edited_frames(bad, 5)


def test_evaluate_command_writes_table_and_json(tmp_path):
    out = tmp_path / "eval"
    main(["evaluate", "--backbone", "tiny-random", "--cases", "1", "--variants", "untuned,motion", "--steps", "2",
          "--out", str(out)])
    rows = json.loads((out / "results.json").read_text())
    assert {r["variant"] for r in rows} == {"untuned", "motion"}
    assert all(np.isfinite(r["bg_psnr"]) for r in rows)
    assert "| motion |" in (out / "results.md").read_text() and (out / "bars.png").exists()
    with pytest.raises(ValueError, match="unknown variants"):
        main(["evaluate", "--variants", "nope", "--out", str(out)])


def test_evaluation_reuses_loras_and_splits_cases_over_workers(tmp_path):
    from loraedit_nb.comparisons import run_comparison, toy_cases
    from loraedit_nb.training import toy_config

    variants = ("untuned", "motion", "motion_composite")
    cfg = toy_config(steps=2, rank=4, batch_size=1, colour_aug=None)
    one = run_comparison("tiny-random", toy_cases(2), variants, cfg, progress=False)
    two = run_comparison("tiny-random", toy_cases(2), variants, cfg, progress=False, workers=2,
                         out=tmp_path / "eval")
    assert [(r["case"], r["variant"]) for r in one] == [(r["case"], r["variant"]) for r in two]
    for a, b in zip(one, two, strict=True):
        assert a["gt_psnr_region"] == pytest.approx(b["gt_psnr_region"], abs=1e-3)
    comp = [r for r in one if r["variant"] == "motion_composite"]
    assert all(r["lora_reused"] and r["train_steps"] == 2 for r in comp)  # the motion LoRA, not a second run
    assert not any(r["lora_reused"] for r in one if r["variant"] == "motion")
    assert (tmp_path / "eval" / "results.md").exists()
