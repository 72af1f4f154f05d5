"""Aggregate the JSON of inference_levers.py and lora_recipe_levers.py (in their cache folder) into the table rows
of results/toy_lever_probes.md. Run after those two: python3 experiments/lever_table.py"""
import glob
import json
import os

import numpy as np

K = ("region", "near", "f0", "bg")


def row(lever, setting, ms, secs, n):
    a = {k: float(np.mean([min(m[k], 99.0) for m in ms])) for k in K}  # PSNR capped at 99 dB (= exact)
    f = lambda x: "exact" if x >= 98.9 else f"{x:.1f}"  # noqa: E731
    return (f"| {lever} | {setting} | {a['region']:.2f} | {a['near']:.3f} | {f(a['f0'])} | {f(a['bg'])} | "
            f"{sum(m['vanished'] for m in ms)}/{8 * len(ms)} | {secs} | {n} |")


CACHE = os.environ.get("LORAEDIT_PROBE_CACHE", "outputs/toy_lever_probes")  # as in probe_common.py
p1 = json.load(open(f"{CACHE}/p1.json"))
b = p1["baseline"]
rec = [b[c] for c in ("00_recolour", "01_recolour", "02_recolour")]
train = np.mean([r["cpu_s"] for r in rec])
print(row("baseline", "run_variant 'motion', toy_config(seed=0), seed 0", rec, f"{train:.0f}", "3 x 1"))
for r in p1["levers"]:
    n = "3 x 4 inf" if r["group"] == "recolour" else "1 colour_shift x 4 inf"
    print(row(r["lever"], r["setting"] + ("" if r["group"] == "recolour" else " (colour_shift)"), r["per"],
              f"{train:.0f} + {r['infer_cpu_s_per_edit']:.2f}", n))
# recipe rows: plain inference; per case 4 inference seeds
base = {c: p1["levers"][0]["per"][i * 4:(i + 1) * 4] for i, c in enumerate(("00_recolour", "01_recolour",
                                                                            "02_recolour"))}
runs = {"base_s0": {c: (v, train) for c, v in base.items()}}
for f in sorted(glob.glob(f"{CACHE}/p2_*.json")):
    d = json.load(open(f))
    for c in sorted({r["case"] for r in d["rows"]}):
        rows = [r for r in d["rows"] if r["case"] == c and r["mode"] == "plain"]
        runs.setdefault(d["tag"], {})[c] = (rows, rows[0]["train_cpu_s"])
for tag, per in runs.items():
    for subset in (("00_recolour", "01_recolour"), ("02_recolour",), ("00_recolour", "01_recolour", "02_recolour")):
        if all(c in per for c in subset):
            ms = sum((per[c][0] for c in subset), [])
            secs = np.mean([per[c][1] for c in subset])
            print(row("recipe", f"{tag} on {'+'.join(c[:2] for c in subset)}", ms, f"{secs:.0f}",
                      f"{len(subset)} x 4 inf"))
