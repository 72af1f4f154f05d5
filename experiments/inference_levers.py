"""Inference levers on fixed LoRAs: the baseline (comparisons.run_variant 'motion', toy_config(seed=0) with the
recorded 'permute' colour augmentation) on 3 recolour + 1 colour_shift case, then inference-only levers on the same
LoRAs (given latents re-imposed, guidance, negative prompt, flow shift), inference seeds 0-3. Saves the baseline
LoRAs (tag base_s0) and p1.json in probe_common.CACHE for the other probes and lever_table.py.
Run: LORAEDIT_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python experiments/inference_levers.py"""
import json
import time

from probe_common import *  # noqa: F401,F403,E402

from loraedit_nb.models import load_backbone  # noqa: E402
from loraedit_nb.training import toy_config  # noqa: E402

bb = load_backbone("toy")
rc, rco = cases_with_objects(3, "recolour")
cc, cco = cases_with_objects(1, "colour_shift")
groups = {"recolour": list(zip(rc, rco)), "colour_shift": list(zip(cc, cco))}
out = {"baseline": {}, "levers": []}
loras = {}
for g, items in groups.items():
    for case, obj in items:
        t0 = time.process_time()
        cache = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = C.run_variant(bb, case, "motion", toy_config(seed=0, **RECORDED_RECIPE), seed=0, lora_cache=cache)
        secs = time.process_time() - t0
        lora = cache[(case.name, "motion")][0]
        lora.cpu_seconds = secs
        torch.save(lora, lora_path(case, "base_s0"))
        loras[case.name] = lora
        m = metrics(case, obj, r["video"])
        v, _ = infer(bb, case, lora, seed=0)
        m_check = metrics(case, obj, v)
        out["baseline"][case.name] = dict(m, cpu_s=secs, check_same=bool(np.allclose(v, r["video"], atol=1e-5)),
                                          check_region=m_check["region"])
        print(case.name, out["baseline"][case.name], flush=True)

SETTINGS = [("baseline", "plain, guidance 1, shift 2", {}),
            ("given latents", "final step only", dict(mode="final")),
            ("given latents", "replace every step", dict(mode="replace")),
            ("given latents", "x0 replace every step", dict(mode="x0")),
            ("guidance", "3.0 (neg '')", dict(guidance=3.0)),
            ("guidance", "6.0 (neg '')", dict(guidance=6.0)),
            ("guidance", "3.0 (neg = source caption)", dict(guidance=3.0, neg="src")),
            ("flow shift", "1.0", dict(flow_shift=1.0)),
            ("flow shift", "3.0", dict(flow_shift=3.0)),
            ("flow shift", "5.0", dict(flow_shift=5.0)),
            ("combo", "replace + guidance 3 (neg src)", dict(mode="replace", guidance=3.0, neg="src")),
            ("combo", "x0 + shift 3", dict(mode="x0", flow_shift=3.0))]
for lever, setting, kw in SETTINGS:
    for g, items in groups.items():
        ms, secs = [], 0.0
        for case, obj in items:
            for s in range(4):
                k = dict(kw)
                neg = k.pop("neg", None)
                v, dt = infer(bb, case, loras[case.name], seed=s,
                              negative_prompt=case.prompt if neg == "src" else "", **k)
                ms.append(metrics(case, obj, v))
                secs += dt
        row = dict(lever=lever, setting=setting, group=g, n=f"{len(items)} cases x 4 inference seeds (LoRA seed 0)",
                   infer_cpu_s_per_edit=secs / len(ms), per=ms)
        out["levers"].append(row)
        print(fmt_row(lever, setting + f" [{g}]", ms, secs / len(ms), row["n"]), flush=True)
json.dump(out, open(f"{CACHE}/p1.json", "w"), default=float, indent=1)
