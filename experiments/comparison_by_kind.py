"""Comparison rows split by case kind (``results.json`` of ``python -m loraedit_nb evaluate`` or of
``unseen_scenes.py``): per case kind and variant, mean over cases per seed, then mean ± std over seeds, and per case.

    python experiments/comparison_by_kind.py results/eval_toy/results.json [results/unseen_scenes/results.json]
"""
import json
import sys
from statistics import mean

import numpy as np

from loraedit_nb.comparisons import per_seed

KEYS = (("gt_psnr_region", "region dB", "{:.2f}"), ("gt_near_share", "near", "{:.2f}"),
        ("vanished_frames", "vanished", "{:.1f}"), ("bg_psnr", "bg dB", "{:.2f}"),
        ("frame0_psnr", "f0 dB", "{:.1f}"), ("gt_psnr_region_late", "late dB", "{:.2f}"))


def cell(rows, key, fmt):
    per = per_seed(rows, rows[0]["variant"], key)  # the README table's aggregation, on one kind's rows
    if not per:
        return "-"
    return fmt.format(np.mean(per)) + (" ± " + fmt.format(np.std(per, ddof=1)) if len(per) > 1 else "")


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
