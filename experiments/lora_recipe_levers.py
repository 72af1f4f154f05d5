"""LoRA recipe levers within the notebooks' budget (800 steps, batch 4), LoRA-Edit 'motion' recipe. Each tag
changes the recorded recipe (toy_config with 'permute' colour augmentation) in one way; each LoRA is evaluated with
plain inference (the paper's default) and with the per-step 'replace' lever, inference seeds 0-3.
Run: LORAEDIT_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python experiments/lora_recipe_levers.py TAG [TAG..]
with TAG in RECIPES below; cases: env CASES="0,1" (indices into toy_cases(3, kinds=("recolour",)))."""
import json
import sys
import time

from probe_common import *  # noqa: F401,F403,E402

from loraedit_nb.models import load_backbone  # noqa: E402
from loraedit_nb.training import toy_config  # noqa: E402

RECIPES = {
    "lr4e-3": dict(lr=4e-3),
    "lr1e-3": dict(lr=1e-3),
    "rank16": dict(rank=16),
    "w_gen2": dict(w_generate=2.0, w_keep=1.0),
    "noaug": dict(colour_aug=None),
    "tshift3": dict(shift=3.0),
    "base_s1": dict(seed=1),
    "lr4e-3+w_gen2": dict(lr=4e-3, w_generate=2.0, w_keep=1.0),
    "aug_mix": dict(colour_aug="mix"),
    "aug_mix_s1": dict(colour_aug="mix", seed=1),
    "aug_mix+lr4e-3": dict(colour_aug="mix", lr=4e-3),
    "aug_mix+w_gen2": dict(colour_aug="mix", w_generate=2.0, w_keep=1.0),
    "aug_mix+steps1200": dict(colour_aug="mix", steps=1200),
    "aug_mix+w_gen2_s1": dict(colour_aug="mix", w_generate=2.0, w_keep=1.0, seed=1),
    "aug_mix+lr4e-3+w_gen2": dict(colour_aug="mix", lr=4e-3, w_generate=2.0, w_keep=1.0),
    "aug_hue": dict(colour_aug="hue"),
}
N_CASES = 2
bb = load_backbone("toy")
rc, rco = cases_with_objects(3, "recolour")
IDX = [int(i) for i in os.environ.get("CASES", "0,1").split(",")]  # which recolour cases (default 00, 01)
N_CASES = len(IDX)
items = [list(zip(rc, rco))[i] for i in IDX]
for tag in sys.argv[1:]:
    cfg = toy_config(**{"seed": 0, **RECORDED_RECIPE, **RECIPES[tag]})
    res = {"tag": tag, "rows": []}
    for case, obj in items:
        t0 = time.process_time()
        lora = get_lora(bb, case, tag, cfg)
        tsec = getattr(lora, "cpu_seconds", time.process_time() - t0)
        for mode in ("plain", "replace"):
            for s in range(4):
                v, dt = infer(bb, case, lora, seed=s, mode=mode)
                res["rows"].append(dict(case=case.name, mode=mode, seed=s, train_cpu_s=tsec, infer_cpu_s=dt,
                                        final_loss=float(np.mean([h.get("loss", np.nan) for h in lora.history[-50:]])),
                                        **metrics(case, obj, v)))
    json.dump(res, open(f"{CACHE}/p2_{tag}_c{''.join(map(str, IDX))}.json", "w"), default=float, indent=1)
    for mode in ("plain", "replace"):
        ms = [{k: r[k] for k in ("region", "near", "f0", "bg", "vanished", "colour_err")}
              for r in res["rows"] if r["mode"] == mode]
        tsec = np.mean([r["train_cpu_s"] for r in res["rows"]])
        print(fmt_row("recipe", f"{tag} [{mode}]", ms, tsec, f"{N_CASES} cases x 4 inf. seeds"), flush=True)
