import json
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(SCRIPTS))  # spawned children copy sys.path, so they import it the same way
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(SCRIPTS))


def test_gpu_check_dry_runs_on_cpu(gpu_check, tmp_path):
    """The H200 script's whole path (full-width 1-layer Wan + full-width 1-2-layer UMT5/CLIP + the real VAE, a fresh
    process per preset, caching, 3 training steps through train_lora, a 2-step edit with the preset) on a 5x32x32
    clip. ~30 s on 2 idle cores (60 s when the machine is shared)."""
    t0 = time.monotonic()
    summary = gpu_check.main(["--dry-run", "--out", str(tmp_path)])
    elapsed = time.monotonic() - t0
    assert elapsed < 150, elapsed  # generous: the brief is < 60 s on 2 idle cores
    rec = summary["presets"]["80GB+"]
    assert rec.get("ok"), json.dumps(rec, indent=1)
    st = rec["stages"]
    assert list(st) == ["build", "cache", "train", "edit"]
    assert st["cache"]["latents"] == [1, 16, 2, 4, 4] and st["cache"]["condition"] == [1, 20, 2, 4, 4]
    assert st["train"]["s_per_step"] > 0 and len(st["train"]["step_seconds"]) == 3 and st["train"]["mfu"] > 0
    assert st["edit"]["output"] == [5, 32, 32, 3] and st["edit"]["finite"]
    assert st["edit"]["settings"]["memory_preset"] == "80GB+"
    # written after every stage / preset, with a file-name-safe preset name ($OUT returns only such names)
    assert json.loads((tmp_path / "preset_80GBplus.json").read_text())["ok"]
    assert json.loads((tmp_path / "gpu_check.json").read_text())["presets"]["80GB+"]["ok"]


def test_gpu_check_budget_skips_presets(gpu_check, tmp_path):
    summary = gpu_check.main(["--dry-run", "--presets", "24GB", "16GB", "--budget-s", "0", "--out", str(tmp_path)])
    assert set(summary["presets"]) == {"24GB", "16GB"}
    assert all("time budget" in r["skipped"] for r in summary["presets"].values())


def test_gpu_check_refuses_an_unknown_preset(gpu_check):
    with pytest.raises(SystemExit):
        gpu_check.main(["--presets", "12GB"])
