"""Run by tests/test_training_ddp.py under `torchrun --nproc_per_node 2` on CPU (gloo)."""

import json
import sys

import torch

from loraedit_nb.models import tiny_random_backbone
from loraedit_nb.regimes import motion_sample
from loraedit_nb.training import toy_config, train_lora
from tests.conftest import moving_square

torch.set_num_threads(1)
out = sys.argv[1]
bb = tiny_random_backbone(vae="patchify", image_encoder=False, seed=1)
v, m = moving_square()
run = train_lora(bb, [motion_sample(v, m, "a red square")], toy_config(steps=4, rank=4, batch_size=1,
                 colour_aug=None), progress=False)
from accelerate import PartialState  # noqa: E402

st = PartialState()
digest = float(sum(t.double().sum() for t in run.state_dict.values()))
with open(f"{out}/rank{st.process_index}.json", "w") as f:
    json.dump({"world": st.num_processes, "digest": digest, "losses": [h["loss"] for h in run.history]}, f)
