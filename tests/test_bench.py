import argparse
import json
import os
import time

import pytest
import torch

from loraedit_nb import bench


def _die_without_a_row():
    """A benchmark row whose process dies the way an OOM-killed one does: no row, no exception."""
    os._exit(3)


def _sleep_forever():
    time.sleep(3600)


def test_bench_smoke_writes_the_fields(tmp_path, capsys):
    bench.main(["--quick", "--json", str(tmp_path / "b.json")])
    rows = json.loads((tmp_path / "b.json").read_text())
    train = [r for r in rows if r["stage"] == "train_step"]
    assert {r["cached"] for r in train} == {True, False}
    for r in train:
        assert r["s_per_step"] > 0 and r["peak_rss_mb"] > 50
    inf = [r for r in rows if r["stage"] == "inference"]
    assert inf and inf[0]["denoise_s_per_step"] > 0 and inf[0]["decode_s"] >= 0
    out = capsys.readouterr().out
    assert "caching speed-up" in out and out.count("[bench] ") == len(rows)  # each row printed as it finished


def test_lora_step_flops_match_the_audit_for_wan_14b():
    """Audit (gpu_path_audit.md, item 9), 49 frames 480x832: the old 3x count 2.51 PFLOP; a LoRA step on the
    frozen base needs 2.03 (MFU); executed with gradient checkpointing 2.86 (HFU)."""
    f = bench.train_step_flops(bench.WAN_14B_CONFIG, 49, 480, 832, rank=16, checkpointing=True)
    assert f["tokens"] == 13 * 30 * 52
    assert f["dense_3x_flops"] == pytest.approx(2.51e15, rel=0.02)
    assert f["model_flops"] == pytest.approx(2.03e15, rel=0.02)
    assert f["executed_flops"] == pytest.approx(2.86e15, rel=0.02)
    assert f["executed_flops"] - f["model_flops"] == f["forward_flops"]  # the recompute is one more forward
    no_ckpt = bench.train_step_flops(bench.WAN_14B_CONFIG, 49, 480, 832, checkpointing=False)
    assert no_ckpt["executed_flops"] == no_ckpt["model_flops"] == f["model_flops"]
    for T, dense, model, executed in ((17, 0.73, 0.54, 0.79), (81, 5.06, 4.27, 5.96)):  # the audit's other rows
        g = bench.train_step_flops(bench.WAN_14B_CONFIG, T, 480, 832)
        assert (g["dense_3x_flops"], g["model_flops"], g["executed_flops"]) == pytest.approx(
            (dense * 1e15, model * 1e15, executed * 1e15), rel=0.02)
    # the LoRA's own GEMMs are counted but small at rank 16; they grow with the rank
    assert bench.train_step_flops(bench.WAN_14B_CONFIG, 49, 480, 832, rank=64)["model_flops"] > f["model_flops"]
    assert bench.transformer_flops(bench.WAN_14B_CONFIG, 49, 480, 832)["forward_flops"] * 3 == f["dense_3x_flops"]


def test_lora_step_flops_for_hunyuan_13b_are_the_same_order_as_wan():
    f = bench.train_step_flops(bench.HUNYUAN_13B_CONFIG, 49, 480, 832)
    assert f["tokens"] == 13 * 30 * 52  # patch 2 on the x8 latent: the same token grid as Wan
    # 60 blocks of 12 d^2 per token at d = 3072 over 20.8k tokens + joint attention: ~1.5 PFLOP needed
    assert 1.3e15 < f["model_flops"] < 1.8e15
    assert f["model_flops"] < f["executed_flops"] < f["dense_3x_flops"] * 1.3
    assert f["model_flops"] < bench.train_step_flops(bench.WAN_14B_CONFIG, 49, 480, 832)["model_flops"]


def test_options_are_memory_presets_or_raw_variants():
    from loraedit_nb.memory import MEMORY_PRESETS
    from loraedit_nb.training import wan_config

    assert set(MEMORY_PRESETS) == {"16GB", "24GB", "48GB", "80GB+"}
    for name in MEMORY_PRESETS:
        cfg, tier = bench.option_config(name, 3)
        assert cfg.rank == 16 and cfg.gradient_checkpointing and cfg.steps == 3 and cfg.colour_aug is None
        assert cfg.memory_preset == name and tier == MEMORY_PRESETS[name].gpu_gb
    p24 = wan_config(memory_preset="24GB")
    assert p24.fp8_base and p24.blocks_to_swap == "auto" and p24.optimizer == "adamw8bit"
    cfg, tier = bench.option_config("no_ckpt", 3)
    assert not cfg.gradient_checkpointing and not cfg.fp8_base and tier is None
    cfg, tier = bench.option_config("swap7", 3)
    assert cfg.blocks_to_swap == 7 and cfg.fp8_base and tier is None
    with pytest.raises(ValueError, match="unknown option"):
        bench.option_config("block_offload", 3)  # removed: it discarded every LoRA update
    with pytest.raises(ValueError, match="memory_preset"):
        wan_config(memory_preset="12GB")


def test_random_weights_have_from_pretrained_dtypes_and_stay_tied(tmp_path):
    """Materialised straight in bf16 with the _keep_in_fp32_modules in fp32, as from_pretrained(torch_dtype=bf16)
    gives them (compared on a tiny config); transformers' tied weights stay one parameter."""
    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = dict(bench.WAN_14B_CONFIG, num_attention_heads=2, attention_head_dim=8, ffn_dim=32, num_layers=2,
               text_dim=16, freq_dim=16, image_dim=16, added_kv_proj_dim=16, rope_max_seq_len=32)
    WanTransformer3DModel(**cfg).save_pretrained(tmp_path)
    ref = WanTransformer3DModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    rnd = bench.random_init(lambda: WanTransformer3DModel(**cfg), "cpu", torch.bfloat16,
                            keep_fp32=WanTransformer3DModel._keep_in_fp32_modules)
    dtypes = {n: p.dtype for n, p in rnd.named_parameters()}
    assert dtypes == {n: p.dtype for n, p in ref.named_parameters()}
    assert torch.float32 in dtypes.values() and rnd.dtype == torch.bfloat16
    assert torch.equal(rnd.rope.freqs_cos, ref.rope.freqs_cos)  # buffers computed for real, not left on meta
    assert all(torch.isfinite(p.float()).all() for p in rnd.parameters())
    te = bench.random_init(lambda: UMT5EncoderModel(UMT5Config(vocab_size=50, d_model=16, d_kv=4, d_ff=32,
                                                               num_layers=1, num_heads=4)), "cpu", torch.bfloat16)
    assert te.shared.weight is te.encoder.embed_tokens.weight


def test_a_failing_row_is_reported_at_once(capsys):
    """A child that raises (unknown model) or dies without a row gives an error row within seconds, not after
    the old 900 s queue timeout; the row is printed as it finishes."""
    t0 = time.monotonic()
    rows = bench.run_full("no-such-model", (5,), ("80GB+",), layers=1, height=32, width=32)
    assert time.monotonic() - t0 < 30
    assert len(rows) == 1 and "no-such-model" in rows[0]["error"] and rows[0]["option"] == "80GB+"
    assert "FAILED" in capsys.readouterr().out and "failed" in bench.table(rows)
    t0 = time.monotonic()
    row = bench._run(_die_without_a_row)
    assert time.monotonic() - t0 < 30 and "exit code 3" in row["error"]


def test_a_row_past_its_timeout_is_killed():
    t0 = time.monotonic()
    row = bench._run(_sleep_forever, timeout=3)
    assert "timed out" in row["error"] and time.monotonic() - t0 < 30


def test_tier_emulation_caps_only_a_bigger_card(monkeypatch):
    calls = []

    class Props:
        total_memory = 150e9  # an H200

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Props)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, *a: calls.append(f))
    assert bench.cap_gpu_memory(24) == 24 and calls == [pytest.approx(24 / 150)]
    assert bench.cap_gpu_memory(24, emulate=False) is None and bench.cap_gpu_memory(None) is None
    assert bench.cap_gpu_memory(160) is None and len(calls) == 1  # the card is no bigger than the tier


def test_out_of_memory_is_named_as_such():
    assert bench.error_line(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == \
        "out of memory"
    assert bench.error_line(KeyError("x")) == "KeyError: 'x'"


def test_full_size_row_dry_runs_on_cpu_through_train_lora(tmp_path):
    """The GPU benchmark's code path (full-width Wan transformer built on meta, random cached samples, train_lora
    with a preset's config, s/step from its history, MFU/HFU) at one block and a tiny clip."""
    bench.main(["--wan-full", "--layers", "1", "--frames", "5", "--height", "32", "--width", "32",
                "--presets", "80GB+", "--steps", "0", "--json", str(tmp_path / "full.json")])
    (r,) = json.loads((tmp_path / "full.json").read_text())
    assert "error" not in r, r
    assert r["backbone"] == "wan14b-random-1L" and r["preset"] == "80GB+" and r["tokens"] == 2 * 2 * 2
    assert r["s_per_step"] > 0 and r["steps_timed"] == 1 and 0 < r["mfu"] < r["hfu"]
    assert r["blocks_to_swap"] == 0 and r["peak_rss_gb"] > 0 and r["device"] == "cpu"


def test_bench_is_a_subcommand():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    bench.add_parser(sub)
    a = p.parse_args(["bench", "--wan-full", "--frames", "49", "--presets", "24GB", "no_ckpt", "--no-emulate-tier"])
    assert a.func is bench.run_from_args
    assert a.wan_full and a.frames == [49] and a.options == ["24GB", "no_ckpt"] and a.emulate_tier is False
    a = p.parse_args(["bench", "--quick", "--options", "80GB+"])  # the old flag name still works
    assert a.quick and a.options == ["80GB+"] and a.emulate_tier is None
