import json

from loraedit_nb import bench


def test_bench_smoke_writes_the_fields(tmp_path, capsys):
    bench.main(["--quick", "--json", str(tmp_path / "b.json")])
    rows = json.loads((tmp_path / "b.json").read_text())
    train = [r for r in rows if r["stage"] == "train_step"]
    assert {r["cached"] for r in train} == {True, False}
    for r in train:
        assert r["s_per_step"] > 0 and r["peak_rss_mb"] > 50
    inf = [r for r in rows if r["stage"] == "inference"]
    assert inf and inf[0]["denoise_s_per_step"] > 0 and inf[0]["decode_s"] >= 0
    assert "caching speed-up" in capsys.readouterr().out


def test_flop_count_matches_the_known_figure_for_wan_14b():
    f = bench.transformer_flops(bench.WAN_14B_CONFIG, 49, 480, 832)
    assert f["tokens"] == 13 * 30 * 52
    assert 2.3e15 < f["train_step_flops"] < 2.9e15  # ~2.7 PFLOP per 49-frame 480p training step


def test_memory_presets_are_training_configs():
    import pytest

    from loraedit_nb.training import MEMORY_PRESETS, wan_config

    for name in MEMORY_PRESETS:
        cfg = wan_config(memory_preset=name)
        assert cfg.rank == 16 and cfg.gradient_checkpointing
    assert wan_config(memory_preset="24GB").fp8_base and wan_config(memory_preset="24GB").block_offload
    with pytest.raises(ValueError, match="memory_preset"):
        wan_config(memory_preset="12GB")


def test_flop_count_for_hunyuan_13b_is_the_same_order_as_wan():
    f = bench.hunyuan_flops(bench.HUNYUAN_13B_CONFIG, 49, 480, 832)
    assert f["tokens"] == 13 * 30 * 52  # patch 2 on the x8 latent: the same token grid as Wan
    # ~60 blocks of 12 d^2 per token at d = 3072 over 20.8k tokens, plus joint attention
    assert 1.5e15 < f["train_step_flops"] < 2.2e15
    assert f["train_step_flops"] < bench.transformer_flops(bench.WAN_14B_CONFIG, 49, 480, 832)["train_step_flops"]


def test_full_size_script_dry_runs_on_cpu_for_both_families(tmp_path):
    """The GPU benchmark's own code path (random weights built on the meta device, LoRA, one training step, MFU),
    at one block and a tiny clip so that it fits a CPU: what a GPU run executes, minus the size."""
    bench.main(["--wan-full", "--hunyuan-full", "--layers", "1", "--frames", "5", "--height", "32", "--width", "32",
                "--options", "ckpt", "--json", str(tmp_path / "full.json")])
    rows = json.loads((tmp_path / "full.json").read_text())
    assert [r["backbone"] for r in rows] == ["wan14b-random-1L", "hunyuan13b-random-1L"], rows
    for r in rows:
        assert "error" not in r and r["s_per_step"] > 0 and r["tokens"] == 2 * 2 * 2 and r["mfu"] > 0
