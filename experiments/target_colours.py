"""Inference only: the LoRA-Edit 'motion' LoRA does not depend on the edit, so the seed-0 LoRA of each
recolour case is reused for every other target colour of the toyworld palette -- which edited colours carry through
the clip? Run: LORAEDIT_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python experiments/target_colours.py [TAG]
(TAG: which cached LoRA, base_s0 from inference_levers.py or a lora_recipe_levers.py tag such as aug_mix)"""
import sys

from probe_common import *  # noqa: F401,F403,E402

from loraedit_nb import masks as Mk  # noqa: E402
from loraedit_nb.models import load_backbone  # noqa: E402
from loraedit_nb.toyworld import make_edit, render_scene, sample_scene  # noqa: E402
from loraedit_nb.toyworld.scenes import COLOUR_NAMES  # noqa: E402

bb = load_backbone("toy")
TAG = sys.argv[1] if len(sys.argv) > 1 else "base_s0"  # which cached LoRA (a lora_recipe_levers.py tag)
rc, _ = cases_with_objects(3, "recolour")
for i, base in enumerate(rc):
    lora = torch.load(lora_path(base, TAG), weights_only=False)
    spec = sample_scene(2024 + i, motions=("linear", "circle"), n_objects=1)
    scene = render_scene(spec, size=32, frames=9)
    used = {o.colour for o in spec.objects}
    out = []
    for col in COLOUR_NAMES:
        if col in used:
            continue
        e = make_edit(spec, "recolour", size=32, frames=9, colour=col)
        case = C.Case(f"{i:02d}_{col}", "recolour", scene.video, Mk.dilate(e.mask, 1), e.video, dict(e.edited_frames),
                      scene.caption, e.caption)
        ms = [metrics(case, e.mask, infer(bb, case, lora, seed=s)[0]) for s in range(2)]
        out.append(f"{col}: {np.mean([m['region'] for m in ms]):.1f}/{np.mean([m['near'] for m in ms]):.2f}/"
                   f"{sum(m['vanished'] for m in ms)}")
    print(base.name, "source:", base.prompt, "| region/near/vanished(of 16):", "; ".join(out), flush=True)
