"""Simulate every real backbone x memory preset x clip length at full size and keep the results in
``results/simulated_memory.json`` (what docs/memory.md's simulated table and scripts/gpu_check.py read).

Each row runs in its own process (``python -m loraedit_nb simulate --json``), one CPU thread, 3-6 minutes; the file
is rewritten atomically after every row and rows already there are skipped, so an interrupted run resumes.

    python scripts/simulate_table.py                 # everything missing
    python scripts/simulate_table.py --frames 49     # one clip length
    python scripts/simulate_table.py --refresh       # the planner changed: compare the recorded runs again

A row's simulated peaks depend on the package's code; its comparison depends on the planner too. ``--refresh``
recomputes every comparison from the recorded peaks in seconds (no re-simulation).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from loraedit_nb.simulation import RECORDED, Simulation, compare, table_key

ROOT = Path(__file__).resolve().parents[1]
OUT = RECORDED
BACKBONES = ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
             "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "hunyuanvideo-community/HunyuanVideo-I2V-33ch")
PRESETS = ("16GB", "24GB", "48GB", "80GB+")


def load(path: Path = OUT) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_row(k: str, row: dict, path: Path = OUT) -> None:
    """Add one row to the file as it is now (two of these scripts may run at once on different rows)."""
    table = load(path)
    table[k] = row
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
    os.replace(tmp, path)


def run_row(backbone: str, preset: str, frames: int, height: int, width: int, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "loraedit_nb", "simulate", "--backbone", backbone, "--memory-preset", preset,
           "--frames", str(frames), "--height", str(height), "--width", str(width), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LORAEDIT_TRACEBACK": "1"}
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        return {"error": lines[-1] if lines else f"exit {p.returncode}", "seconds": round(time.time() - t0)}
    out = json.loads(p.stdout)
    out["simulation"].pop("timeline", None)  # per-block marks: in a single run's --json, not in the table
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--frames", nargs="*", type=int, default=[49, 81])
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--redo", action="store_true", help="run rows that are already in the file again")
    ap.add_argument("--refresh", action="store_true", help="only recompute the comparisons with today's planner")
    a = ap.parse_args(argv)
    table = load()
    if a.refresh:
        for k, row in sorted(table.items()):
            if "simulation" in row:
                save_row(k, {**row, "comparison": compare(Simulation.from_json(row["simulation"]))})
        print(f"compared {sum('simulation' in r for r in table.values())} recorded rows with the planner again")
        return 0
    for frames in a.frames:
        for backbone in a.backbones:
            for preset in a.presets:
                k = table_key(backbone, preset, frames, a.height, a.width)
                if k in table and not a.redo and "error" not in table[k]:
                    continue
                print(f"simulating {k} ...", flush=True)
                table[k] = run_row(backbone, preset, frames, a.height, a.width, a.timeout)
                save_row(k, table[k])
                print(f"  {json.dumps(table[k].get('comparison', table[k]))[:300]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
