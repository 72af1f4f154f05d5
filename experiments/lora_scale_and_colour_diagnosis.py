"""Inference only, on the base_s0 LoRAs that inference_levers.py cached in probe_common.CACHE: LoRA scale, the
un-tuned base with LoRA-Edit's mask (what the base alone does), and what happens on the vanished case (colour inside
the GT object: edited colour, source colour, or background?). Run:
LORAEDIT_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python experiments/lora_scale_and_colour_diagnosis.py"""
import probe_common as IC
from probe_common import *  # noqa: F401,F403

from loraedit_nb.models import load_backbone  # noqa: E402

bb = load_backbone("toy")
rc, rco = cases_with_objects(3, "recolour")
loras = {c.name: torch.load(lora_path(c, "base_s0"), weights_only=False) for c in rc}

# colour diagnosis per case (plain inference, seed 0)
for case, obj in zip(rc, rco):
    v, _ = infer(bb, case, loras[case.name], seed=0)
    src_col = case.source[1:][obj[1:]].mean(0)
    gt_col = case.ground_truth[1:][obj[1:]].mean(0)
    out_col = v[1:][obj[1:]].mean(0)
    d_src = np.linalg.norm(v - case.source, axis=-1)[1:][obj[1:]]
    # anywhere in the frame (frames>=1): pixels within 0.35 of the edited colour, and how many of those are on GT obj
    near_any = np.linalg.norm(v - gt_col, axis=-1) <= 0.35
    print(f"{case.name}: src {np.round(src_col, 2)} gt {np.round(gt_col, 2)} out-on-obj {np.round(out_col, 2)} "
          f"share-near-source {float((d_src <= 0.35).mean()):.2f} edited-colour pixels anywhere (f>=1) "
          f"{int(near_any[1:].sum())}, on GT obj {int((near_any & obj)[1:].sum())} of {int(obj[1:].sum())}; "
          f"frame0 edited-colour px {int(near_any[0].sum())}", flush=True)

# LoRA scale and no LoRA
orig = IC.use_lora
for label, lo, scale in [("no LoRA (untuned, LoRA-Edit mask)", None, 1.0), ("LoRA scale 0.5", "x", 0.5),
                         ("LoRA scale 1.5", "x", 1.5)]:
    ms, secs = [], 0.0
    for case, obj in zip(rc, rco):
        IC.use_lora = lambda bb_, lora_, _s=scale: orig(bb_, lora_, scale=_s)
        for s in range(4):
            v, dt = infer(bb, case, None if lo is None else loras[case.name], seed=s)
            ms.append(metrics(case, obj, v)); secs += dt
    IC.use_lora = orig
    print(fmt_row("inference", label, ms, secs / len(ms), "3 cases x 4 inf. seeds"), flush=True)
    print("  per case region/near/vanished:",
          [f"{np.mean([m['region'] for m in ms[i*4:i*4+4]]):.1f}/{np.mean([m['near'] for m in ms[i*4:i*4+4]]):.2f}/"
           f"{sum(m['vanished'] for m in ms[i*4:i*4+4])}" for i in range(3)], flush=True)
