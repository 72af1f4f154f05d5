"""The memory planner: parameter counts from the shipped configs (meta device), per-preset predictions, the API."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from loraedit_nb import planner
from loraedit_nb.memory import MEMORY_PRESETS

WAN = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
HUNYUAN = "hunyuan-i2v"
PRESETS = list(MEMORY_PRESETS)


def test_parameter_counts_match_meta_models():
    """The audit's figures: Wan transformer 16.395 B, UMT5-XXL 5.68 B, CLIP ViT-H 0.631 B, Wan VAE 0.127 B;
    fp8 layerwise casting stores 16.151 B; LoRA r16 on the official targets 76.68 M."""
    s = planner.transformer_stats("wan2.1-i2v-14b.transformer")
    assert round(s.params / 1e9, 3) == 16.395
    assert round(s.fp8_params / 1e9, 3) == 16.151
    assert s.lora_params(16) == 76_677_120
    assert s.n_blocks == 40 and len(set(s.block_bytes_fp8)) == 1
    assert s.other_bytes_fp8 + sum(s.block_bytes_fp8) < 16.8e9 < s.other_bytes_bf16 + sum(s.block_bytes_bf16)
    assert round(planner.component_params("umt5-xxl.encoder") / 1e9, 2) == 5.68
    assert round(planner.component_params("clip-vit-h-14.vision") / 1e9, 3) == 0.631
    assert round(planner.component_params("wan2.1.vae") / 1e9, 3) == 0.127
    h = planner.transformer_stats("hunyuanvideo-i2v-33ch.transformer")
    assert h.n_blocks == 60 and round(h.params / 1e9, 2) == 12.81
    assert h.block_bytes_fp8[0] > h.block_bytes_fp8[-1]  # dual-stream blocks first, larger
    assert round(planner.component_params("llava-llama-3-8b.text_encoder") / 1e9, 2) == 8.36


def test_bench_configs_are_the_shipped_ones():
    from loraedit_nb.bench import HUNYUAN_13B_CONFIG, WAN_14B_CONFIG

    as_json = lambda c: json.loads(json.dumps(c))  # noqa: E731 - tuples -> lists
    assert planner.load_config("wan2.1-i2v-14b.transformer")["config"] == as_json(WAN_14B_CONFIG)
    assert planner.load_config("hunyuanvideo-i2v-33ch.transformer")["config"] == as_json(HUNYUAN_13B_CONFIG)


@pytest.mark.parametrize("family", ["wan", "hunyuan"])
def test_lora_count_matches_peft_on_a_small_model(family):
    """The analytic LoRA count (in + out of every targeted Linear, times r) equals what add_lora creates."""
    from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel

    from loraedit_nb.backbones.hunyuan import HUNYUAN_TARGETS
    from loraedit_nb.backbones.wan import WAN_TARGETS
    from loraedit_nb.lora import add_lora

    if family == "wan":
        cls, targets = WanTransformer3DModel, WAN_TARGETS
        cfg = dict(planner.load_config("wan2.1-i2v-14b.transformer")["config"], num_layers=2, num_attention_heads=2,
                   attention_head_dim=16, ffn_dim=48, added_kv_proj_dim=32, text_dim=24, image_dim=20, freq_dim=16)
    else:
        cls, targets = HunyuanVideoTransformer3DModel, HUNYUAN_TARGETS
        cfg = dict(planner.load_config("hunyuanvideo-i2v-33ch.transformer")["config"], num_layers=1,
                   num_single_layers=2, num_refiner_layers=1, num_attention_heads=2, attention_head_dim=16,
                   text_embed_dim=24, pooled_projection_dim=8, rope_axes_dim=[4, 6, 6])
    with torch.device("meta"):
        model = cls(**cfg)
        n = add_lora(model, rank=4, targets=targets)
    spec = {**planner.load_config("wan2.1-i2v-14b.transformer" if family == "wan" else
                                  "hunyuanvideo-i2v-33ch.transformer"), "config": cfg}
    assert planner.transformer_stats(spec).lora_params(4) == n


# What each preset promises at 480x832 (README "Cost and memory"): the frames it must fit, per backbone. 16GB is the
# "further where the planner allows" tier: Wan trains and edits 49 frames there (with peft's input cast kept off in
# the backward recompute; 41 before); HunyuanVideo's 16 GB Llava text encoder alone fills a 16 GB card, so that tier
# is not offered for it.
PROMISES = [(WAN, "24GB", 49), (WAN, "48GB", 49), (WAN, "80GB+", 49), (HUNYUAN, "24GB", 49),
            (HUNYUAN, "48GB", 49), (HUNYUAN, "80GB+", 49), (WAN, "48GB", 81), (WAN, "80GB+", 81), (WAN, "16GB", 49),
            ("wan22-i2v-a14b", "24GB", 49), ("wan22-i2v-a14b", "48GB", 49), ("wan22-i2v-a14b", "80GB+", 49),
            ("wan22-ti2v-5b", "24GB", 49), ("wan22-ti2v-5b", "48GB", 49), ("wan22-ti2v-5b", "80GB+", 49)]


@pytest.mark.parametrize("backbone,preset,frames", PROMISES)
def test_preset_fits_its_tier_at_480p(backbone, preset, frames):
    """Every stage's predicted peak fits the tier at the promised clip size: a preset that cannot is a failure."""
    p = planner.plan(backbone, frames, 480, 832, preset)
    assert p.fits, f"{backbone} on {preset} does not fit its tier at {frames} frames:\n{p.table()}"


def test_what_does_not_fit_says_so_and_names_the_way_out():
    p = planner.plan(WAN, 81, 480, 832, "16GB")
    assert not p.fits and p.stages["editing"].peak_gpu_gb <= 16 * planner.USABLE_FRACTION
    assert any("at most 53 frames" in n for n in p.notes)
    assert not planner.plan(HUNYUAN, 49, 480, 832, "16GB").fits


@pytest.mark.parametrize("backbone", [WAN, HUNYUAN])
def test_81_frames_recorded(backbone, record_property):
    """81 frames: which presets fit is recorded (and printed); the largest tier must fit for Wan."""
    fits = {preset: planner.plan(backbone, 81, 480, 832, preset).fits for preset in PRESETS}
    record_property("fits_81_frames", json.dumps(fits))
    print(backbone, "81x480x832:", fits)
    if backbone == WAN:
        assert fits["80GB+"]


@pytest.mark.parametrize("backbone", [WAN, HUNYUAN])
def test_auto_swap_is_monotone(backbone):
    """Smaller tiers swap at least as many blocks; the 80GB+ tier swaps none; more frames never swap fewer."""
    swaps = {p: planner.plan(backbone, 49, 480, 832, p).train_blocks_to_swap for p in PRESETS}
    assert swaps["16GB"] >= swaps["24GB"] >= swaps["48GB"] >= swaps["80GB+"] == 0
    assert planner.plan(backbone, 81, 480, 832, "24GB").train_blocks_to_swap >= swaps["24GB"]


def test_choose_blocks_to_swap():
    assert planner.choose_blocks_to_swap(lambda k: 30 - k, 40, 25) == (5, True)
    assert planner.choose_blocks_to_swap(lambda k: 10, 40, 25) == (0, True)
    assert planner.choose_blocks_to_swap(lambda k: 100 - k, 40, 25) == (40, False)


def test_plan_parts_and_json():
    p = planner.plan(WAN, 49, 480, 832, "48GB")
    d = p.to_json()
    for stage in ("caching", "training", "editing"):
        assert d["stages"][stage]["peak_gpu_gb"] > 0
        assert sum(d["stages"][stage]["parts"].values()) == pytest.approx(d["stages"][stage]["peak_gpu_gb"], abs=0.02)
    for key in ("host_ram_gb", "host_parts", "train_blocks_to_swap", "edit_blocks_to_swap", "n_blocks", "fits",
                "notes", "tier_gb", "preset", "backbone", "frames"):
        assert key in d
    assert {"weights", "lora_optimizer", "checkpointed_inputs", "block_activations", "margin"} <= set(
        d["stages"]["training"]["parts"])
    assert d["host_ram_gb"] > 45  # everything loads on the CPU in bf16 first: 32.8 GB transformer + encoders
    json.dumps(d)
    assert "training" in p.table() and "host RAM" in p.table()


def test_does_not_fit_says_what_to_do():
    p = planner.plan(WAN, 81, 720, 1280, "16GB")
    assert not p.fits and p.train_blocks_to_swap == p.n_blocks
    assert any("training" in n and ("frames" in n or "larger tier" in n) for n in p.notes)


def test_a_transformer_config_dict_works():
    from loraedit_nb.bench import HUNYUAN_13B_CONFIG, WAN_14B_CONFIG

    cfg = {**WAN_14B_CONFIG, "_class_name": "WanTransformer3DModel", "_diffusers_version": "0.42.1",
           "pos_embed_seq_len": None}  # what transformer.config holds at run time
    assert planner.plan(cfg, 49, 480, 832, "24GB").to_json() | {"backbone": WAN} == \
        planner.plan(WAN, 49, 480, 832, "24GB").to_json() | {"backbone": WAN}
    assert planner.plan(dict(HUNYUAN_13B_CONFIG), 49, 480, 832, "48GB").n_blocks == 60
    with pytest.raises(ValueError, match="num_single_layers"):
        planner.plan({"num_layers": 3}, 49, 480, 832)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"):
        planner.plan("no-such-model")
    with pytest.raises(ValueError, match="memory_preset"):
        planner.plan(WAN, memory_preset="auto")
    with pytest.raises(ValueError, match="4k"):
        planner.plan(WAN, frames=50)


def test_plan_subcommand_json():
    ap = argparse.ArgumentParser()
    planner.add_parser(ap.add_subparsers(dest="cmd"))
    a = ap.parse_args(["plan", "--backbone", WAN, "--frames", "49", "--height", "480", "--width", "832",
                       "--memory-preset", "24GB", "--json"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        a.func(a)
    d = json.loads(out.getvalue())
    assert set(d["stages"]) == {"caching", "training", "editing"} and d["preset"] == "24GB"
    a = ap.parse_args(["plan", "--rank", "32"])  # table by default, preset 24GB
    assert a.memory_preset == "24GB"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        a.func(a)
    assert "memory plan" in out.getvalue()


def test_wan22_families_are_planned_from_their_own_configs():
    """A14B: Wan2.1's 14B transformer without CLIP, twice (one expert on the GPU, the other in host RAM); TI2V-5B:
    5.0 B at 3072 wide, 32-px tokens, the 0.7 B Wan2.2 VAE; both marked as estimates where they are."""
    a = planner.transformer_stats("wan2.2-i2v-a14b.transformer")
    assert a.n_blocks == 40 and round(a.params / 1e9, 2) == 14.29  # = Wan2.1-I2V-14B minus the CLIP branch
    t = planner.transformer_stats("wan2.2-ti2v-5b.transformer")
    assert t.n_blocks == 30 and t.d == 3072 and round(t.params / 1e9, 2) == 5.0
    assert round(planner.component_params("wan2.2.vae") / 1e9, 2) == 0.70
    pa, pt = planner.plan("wan22-i2v-a14b", 49, 480, 832, "48GB"), planner.plan("wan22-ti2v-5b", 49, 480, 832, "48GB")
    assert pt.video_tokens == 13 * 15 * 26 and planner.plan(WAN, 49, 480, 832, "48GB").video_tokens == 13 * 30 * 52
    host = pa.host_parts
    assert host["other_experts"] == host["transformer"] > 28  # the second expert waits in host RAM
    assert any("one on the GPU at a time" in n for n in pa.notes)
    assert any("estimate" in n for n in pt.notes) and not any("estimate" in n for n in pa.notes)
    assert "image_encoder" not in host and pt.stages["training"].peak_gpu_gb < 24 * planner.USABLE_FRACTION
    with pytest.raises(ValueError, match="multiples of 32"):
        planner.plan("wan22-ti2v-5b", 49, 464, 832, "48GB")
    from loraedit_nb.backbones import load_backbone  # a live tiny config dict routes to its family

    assert planner.resolve(dict(load_backbone("tiny-wan22-ti2v").transformer.config))[0].name == "wan22-ti2v"
    assert planner.resolve(dict(load_backbone("tiny-wan22-a14b").transformer.config))[0].name == "wan22-a14b"


def test_the_memory_table_in_docs_is_the_planners():
    """docs/memory.md's table of predicted peaks is generated (``plan --preset-table``), not typed: it must match."""
    readme = (Path(__file__).resolve().parent.parent / "docs" / "memory.md").read_text()
    assert planner.preset_table() in readme, "docs/memory.md's table is stale: paste `python -m loraedit_nb plan " \
                                             "--preset-table` over it"


def test_an_edit_after_training_is_planned_in_the_storage_it_finds():
    """48GB trains with an fp8 base and edits in bf16; an edit in the same process finds the transformer in fp8
    already (the full-size simulation's 28.7 GB against a bf16 plan of 36.2). ``edit_fp8=True`` plans that edit; the
    host RAM of the load stays the preset's (bf16)."""
    wan = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
    fresh, after = planner.plan(wan, 49, 480, 832, "48GB"), planner.plan(wan, 49, 480, 832, "48GB", edit_fp8=True)
    assert after.stages["editing"].parts["transformer"] < 0.6 * fresh.stages["editing"].parts["transformer"]
    assert after.stages["editing"].peak_gpu_gb < fresh.stages["editing"].peak_gpu_gb - 5
    assert after.stages["training"] == fresh.stages["training"] and after.host_ram_gb == fresh.host_ram_gb


def test_two_experts_encode_the_prompt_before_either_is_on_the_gpu():
    """Wan2.2-I2V-A14B's expert switch places an expert at the first denoising step, so UMT5 runs alone: the plan's
    text-encoder moment has no transformer in it (the simulation found 23.3 GB where the planner said 26.5)."""
    e = planner.plan("Wan-AI/Wan2.2-I2V-A14B-Diffusers", 49, 480, 832, "48GB", edit_fp8=True).stages["editing"]
    assert "text_encoder" not in e.parts and "vae_activations" in e.parts  # the decode beside one expert is the peak
    assert abs((e.peak_gpu_gb - e.parts["margin"]) / 23.31 - 1) < 0.1  # the simulated peak


def test_the_loaded_storage_sets_host_ram_per_preset():
    """load_backbone(..., memory_preset=) on 16/24GB: fp8 transformer, no UMT5 in host RAM; 48GB/80GB+ as stored."""
    wan = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
    small = planner.plan(wan, 49, 480, 832, "24GB")
    big = planner.plan(wan, 49, 480, 832, "48GB")
    assert small.host_ram_gb <= 32 and big.host_ram_gb > 45
    fam, spec = planner.resolve(wan)
    load = planner.host_moments(fam, planner.transformer_stats(spec), planner.MEMORY_PRESETS["24GB"], 0)["load"]
    assert "text_encoder" not in load and load["transformer"] < 17
