import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_two_process_data_parallel_training_smoke(tmp_path):
    """Two CPU processes (gloo) under torchrun, the launcher `accelerate launch --multi_gpu` wraps: both ranks
    train, see different noise and samples, and end with identical LoRAs (DDP all-reduces the gradients)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(ROOT / "tests" / "ddp_train_script.py"), str(tmp_path)]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    a, b = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert a["world"] == b["world"] == 2
    assert abs(a["digest"] - b["digest"]) < 1e-6  # gradients were all-reduced: identical LoRAs
    assert a["losses"] != b["losses"]  # ...from different noise/samples on each rank
