"""Held-out pretraining loss of toy backbones: can the base be moved at equal CPU time (continue the shipped base
vs a grown one, on the v2 world)?

    python experiments/base_heldout_loss.py loss DIR [DIR ...]   # held-out loss of exported backbones

The arms themselves are ``python -m loraedit_nb.toyworld.pretrain --init-from ... --max-minutes M`` runs
(commands in results/toy_lever_probes.md). The held-out loss is the pretraining loss (first frame given,
generated cells x3) on 96 fixed v2-world clips (seed 4321, never a training seed), at 8 fixed timesteps with
fixed noise, split by the target's motion.
"""
import sys

import numpy as np
import torch

from loraedit_nb.backbones import condition_from_tensors
from loraedit_nb.conditioning import encode, pack_mask
from loraedit_nb.loss import flow_matching_loss
from loraedit_nb.models import load_backbone
from loraedit_nb.toyworld.pretrain import frame_level_keep
from loraedit_nb.toyworld.scenes import ALL_BG_KINDS, caption, render_batch, sample_scene

MOTIONS = ("static", "linear", "circle", "pulse", "spin")


def heldout_loss(path: str, n: int = 96) -> dict:
    torch.manual_seed(0)
    bb = load_backbone(path)
    seeds = np.random.default_rng(4321).integers(0, 2**62, n)
    specs = [sample_scene(int(s), motions=(MOTIONS[i % 5],), n_objects=1, bg_kinds=ALL_BG_KINDS)
             for i, s in enumerate(seeds)]
    videos, _ = render_batch(specs, size=32, frames=9)
    caps = [caption(s) for s in specs]
    pipe = bb.pipeline()
    out = {m: [] for m in MOTIONS}
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for i in range(0, n, 16):
            x = torch.from_numpy(videos[i:i + 16]).permute(0, 4, 1, 2, 3) * 2 - 1
            b = x.shape[0]
            keep = frame_level_keep(b, 9, 32, 32, np.zeros(b, bool))
            cond = condition_from_tensors(bb.vae, x * keep, keep)
            z0 = encode(bb.vae, x)
            w = 1 + 2 * (1 - pack_mask(keep, bb.geometry).mean(1, keepdim=True))
            text = pipe._get_t5_prompt_embeds(caps[i:i + 16], max_sequence_length=bb.max_sequence_length,
                                              device=torch.device("cpu"), dtype=torch.float32)
            for t in np.linspace(0.1, 0.9, 8):
                noise = torch.randn(z0.shape, generator=g)
                for j in range(b):
                    sl = slice(j, j + 1)
                    loss = flow_matching_loss(bb.transformer, z0[sl], cond[sl], text[sl],
                                              torch.full((1,), float(t)), noise[sl], w[sl])
                    out[MOTIONS[(i + j) % 5]].append(loss.item())
    res = {m: float(np.mean(v)) for m, v in out.items()}
    res["all"] = float(np.mean([x for v in out.values() for x in v]))
    return res


if __name__ == "__main__":
    torch.set_num_threads(1)
    assert sys.argv[1] == "loss"
    for p in sys.argv[2:]:
        r = heldout_loss(p)
        print(p, " ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True)
