"""Issue 15's targets read off comparison rows (``results.json`` of ``python -m loraedit_nb evaluate`` or of
``issue15_unseen.py``): per case kind and variant, mean over cases per seed, then mean ± std over seeds.

    python3 scripts/probes/issue15_targets.py results/eval_toy/results.json [results/issue15_unseen/results.json]
"""
import json
import math
import sys
from statistics import mean, stdev

KEYS = (("gt_psnr_region", "region dB", "{:.2f}"), ("gt_near_share", "near", "{:.2f}"),
        ("vanished_frames", "vanished", "{:.1f}"), ("bg_psnr", "bg dB", "{:.2f}"),
        ("frame0_psnr", "f0 dB", "{:.1f}"), ("gt_psnr_region_late", "late dB", "{:.2f}"))


def cell(rows, key, fmt):
    per = []
    for s in sorted({r["seed"] for r in rows}):
        v = [min(float(r[key]), 100.0) for r in rows if r["seed"] == s and r.get(key) is not None
             and not math.isnan(float(r[key]))]
        if v:
            per.append(sum(v) if key == "vanished_frames" else mean(v))
    if not per:
        return "-"
    return fmt.format(mean(per)) + (" ± " + fmt.format(stdev(per)) if len(per) > 1 else "")


for path in sys.argv[1:]:
    rows = json.load(open(path))
    print(f"\n## {path}: {len({r['seed'] for r in rows})} seeds, {len({r['case'] for r in rows})} cases\n")
    print("| kind | variant | n cases | " + " | ".join(k[1] for k in KEYS) + " |")
    print("|---" * (len(KEYS) + 3) + "|")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        for v in dict.fromkeys(r["variant"] for r in rows):
            sel = [r for r in rows if r["kind"] == kind and r["variant"] == v]
            if sel:
                n = len({r["case"] for r in sel})
                print(f"| {kind} | {v} | {n} | " + " | ".join(cell(sel, k, f) for k, _, f in KEYS) + " |")
    print("\nper case (mean over seeds): region dB / near / vanished (sum over seeds)")
    for case in dict.fromkeys(r["case"] for r in rows):
        parts = []
        for v in ("naive_lora", "motion", "motion+appearance", "motion+appearance_placed"):
            sel = [r for r in rows if r["case"] == case and r["variant"] == v]
            if sel:
                parts.append(f"{v} {mean(r['gt_psnr_region'] for r in sel):.1f}/"
                             f"{mean(r['gt_near_share'] for r in sel):.2f}/{sum(r['vanished_frames'] for r in sel)}")
        print(f"- {case}: " + "; ".join(parts))
