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


@pytest.mark.parametrize("backbone", ["tiny-random", "tiny-hunyuan", "tiny-wan22-a14b", "tiny-wan22-ti2v"])
def test_train_then_edit_from_the_shell(clip_files, backbone):
    tmp, video, _ = clip_files
    run = tmp / "runs" / "demo"
    common = ["--backbone", backbone, "--frames", "5", "--height", "64", "--width", "64"]
    main(["train", "--video", str(tmp / "clip.mp4"), "--mask", str(tmp / "mask.npz"), "--prompt", "a red square",
          "--out", str(run), "--steps", "3", "--rank", "4", "--colour-aug", "none", *common])
    info = json.loads((run / "run.json").read_text())
    assert info["frames"] == 5 and info["backbone"] == backbone
    lora = run / "lora" / ("high" if backbone == "tiny-wan22-a14b" else "")  # A14B: one LoRA per expert
    assert (lora / "pytorch_lora_weights.safetensors").exists()
    assert backbone != "tiny-wan22-a14b" or (run / "lora" / "low" / "pytorch_lora_weights.safetensors").exists()
    mask = M.load(run / "mask.npz")
    assert mask.shape == (5, 64, 64) and mask[1:].any()
    write_image(tmp / "first.png", np.clip(video[0, :64, :64] + 0.2, 0, 1))
    edited = tmp / "frames"
    write_image(edited / "00004.png", video[0, :64, :64])
    edit = ["edit", "--run", str(run), "--edited-frame", str(tmp / "first.png"), "--edited-frames", str(edited),
            "--steps", "2", "--seed", "1", "--out", str(tmp / "edited.mp4")]
    if backbone in ("tiny-hunyuan", "tiny-wan22-ti2v"):  # one mask per latent frame: a single placed frame is
        with pytest.raises(ValueError, match="one (mask channel|token mask) per latent frame"):  # refused, not lost
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
    assert "| LoRA-Edit (motion) |" in (out / "results.md").read_text() and (out / "bars.png").exists()
    with pytest.raises(ValueError, match="unknown variants"):
        main(["evaluate", "--variants", "nope", "--out", str(out)])


def test_evaluation_reuses_loras_and_splits_cases_over_workers(tmp_path):
    from loraedit_nb.comparisons import run_comparison, toy_cases
    from loraedit_nb.training import toy_config

    variants = ("untuned", "motion", "motion_composite")
    cfg = toy_config(steps=2, rank=4, batch_size=1, colour_aug=None)
    one = run_comparison("tiny-random", toy_cases(2), variants, cfg, progress=False, seeds=(0, 1))
    two = run_comparison("tiny-random", toy_cases(2), variants, cfg, progress=False, workers=2, seeds=(0, 1),
                         out=tmp_path / "eval")
    key = [(r["seed"], r["case"], r["variant"]) for r in one]
    assert key == [(r["seed"], r["case"], r["variant"]) for r in two] and len(key) == 2 * 2 * 3
    assert {r["seed"] for r in one} == {0, 1}
    for a, b in zip(one, two, strict=True):
        assert a["gt_psnr_region"] == pytest.approx(b["gt_psnr_region"], abs=1e-3)
    comp = [r for r in one if r["variant"] == "motion_composite"]
    assert all(r["lora_reused"] and r["train_steps"] == 2 for r in comp)  # the motion LoRA, not a second run
    assert not any(r["lora_reused"] for r in one if r["variant"] == "motion")
    assert "± " in (tmp_path / "eval" / "results.md").read_text()  # two seeds: spreads
    with pytest.raises(ValueError, match="distinct"):
        run_comparison("tiny-random", toy_cases(1), variants, cfg, seeds=(0, 0))


def test_a_comparison_seed_is_the_lora_training_seed_too(monkeypatch):
    import loraedit_nb.comparisons as C
    from loraedit_nb.models import load_backbone
    from loraedit_nb.training import toy_config

    seen = []
    monkeypatch.setattr(C, "train_lora", lambda bb, samples, config, **kw: seen.append(config.seed))
    case = C.toy_cases(1)[0]
    bb = load_backbone("tiny-random")
    for s in (3, 5):
        C.run_variant(bb, case, "motion", toy_config(steps=1, seed=0), seed=s)
    assert seen == [3, 5]


def test_real_backbone_defaults_to_bf16_on_the_gpu_with_an_auto_preset(monkeypatch):
    import argparse

    import torch

    import loraedit_nb.models  # noqa: F401 - import diffusers (and bitsandbytes) before CUDA is faked
    from loraedit_nb.cli import resolve_runtime

    a = argparse.Namespace(dtype=None, device=None, memory_preset=None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_runtime(a, "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers") == (torch.bfloat16, "cuda", "auto")
    assert resolve_runtime(a, "toy") == (torch.float32, None, None)  # the toy stays on the CPU in fp32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_runtime(a, "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers") == (torch.float32, None, None)
    with pytest.raises(ValueError, match="--device cuda"):
        resolve_runtime(argparse.Namespace(dtype=None, device=None, memory_preset="24GB"), "Wan-AI/x")


def test_memory_preset_flag_reaches_the_training_config(clip_files, monkeypatch):
    import torch

    import loraedit_nb.models as models
    import loraedit_nb.training as training
    from loraedit_nb.models import tiny_random_backbone

    tmp, _, _ = clip_files
    seen = {}

    def fake_load(name, dtype=None, device=None, memory_preset=None):
        seen["load_preset"] = memory_preset  # the loader stores the weights as the preset runs them
        bb = tiny_random_backbone(image_encoder=False)
        bb.name = name  # looks like the real model to the CLI and default_config
        return bb

    def fake_train(bb, samples, cfg, **kw):
        seen["cfg"] = cfg
        raise SystemExit(0)
    monkeypatch.setattr(models, "load_backbone", fake_load)
    monkeypatch.setattr(training, "train_lora", fake_train)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(SystemExit):
        main(["train", "--video", str(tmp / "clip.mp4"), "--mask", str(tmp / "mask.npz"), "--out", str(tmp / "r"),
              "--backbone", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "--frames", "5", "--height", "64", "--width",
              "64", "--memory-preset", "24GB"])
    cfg = seen["cfg"]
    assert seen["load_preset"] == "24GB"
    assert cfg.memory_preset == "24GB" and cfg.fp8_base and cfg.optimizer == "adamw8bit"
    assert cfg.blocks_to_swap == "auto" and cfg.gradient_checkpointing and cfg.release_text_encoder


def test_user_errors_print_one_line_with_the_fix(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "loraedit_nb", "edit", "--run", str(tmp_path / "nope"),
                        "--edited-frame", "x.png"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "torchvision" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error:") and "train first" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "{run}" not in r.stderr


def test_motion_plus_appearance_continues_the_motion_lora_as_the_official_code_does(monkeypatch):
    import loraedit_nb.comparisons as C
    from loraedit_nb.models import load_backbone
    from loraedit_nb.training import toy_config

    real, calls = C.train_lora, []

    def spy(bb, samples, config, **kw):
        calls.append(([s.regime for s in samples], config.steps, kw.get("init_lora")))
        return real(bb, samples, config, **kw)

    monkeypatch.setattr(C, "train_lora", spy)
    bb = load_backbone("tiny-random")
    case = C.toy_cases(6)[5]  # a colour change: edited frames 0 and 8
    cfg = toy_config(steps=16, rank=4, batch_size=1, colour_aug=None)
    cache: dict = {}
    motion = C.run_variant(bb, case, "motion", cfg, lora_cache=cache)
    both = C.run_variant(bb, case, "motion+appearance", cfg, lora_cache=cache)
    assert C.appearance_stage_steps(16) == 3 and C.appearance_stage_steps(800) == 150
    assert [c[:2] for c in calls] == [(["motion"], 16), (["motion", "appearance", "appearance"], 3)]
    assert calls[1][2] is cache[(case.name, "motion")][0]  # continued from the motion LoRA, not trained again
    assert both["train_steps"] == 3 and both["seconds"] >= motion["seconds"] - 1e-6
    calls.clear()
    C.run_variant(bb, case, "motion+appearance", cfg)  # alone: both stages here
    assert [c[:2] for c in calls] == [(["motion"], 16), (["motion", "appearance", "appearance"], 3)]
    assert calls[1][2] is not None
