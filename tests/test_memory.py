"""The real-GPU memory path, proven on the CPU: block swapping trains, fp8 keeps the LoRA's dtype, 8-bit AdamW
checkpoints resume, stages bring one encoder at a time, every rank uses its own device and RNG.

A GPU is emulated where it matters: block swapping runs through a transport that copies every weight between two
CPU "devices" (host copy / device copy), leaves an empty tensor behind when a block is released (so any use of a
released weight fails loudly) and records a fake stream's copy/wait order."""

import contextlib
import sys

import numpy as np
import pytest
import torch

from loraedit_nb import memory
from loraedit_nb import regimes as R
from loraedit_nb.inference import edit_video, use_lora
from loraedit_nb.models import tiny_random_backbone
from loraedit_nb.training import TrainConfig, toy_config, train_lora
from tests.conftest import moving_square


def _clip():
    v, m = moving_square(T=5, H=32, W=32, size=8, step=3)
    return v, m, R.motion_sample(v, m, "a red square moves right")


def _bb(dtype=torch.float32, layers=4):
    bb = tiny_random_backbone(vae="patchify", image_encoder=True, seed=3, layers=layers)
    return bb.to(None, dtype) if dtype != torch.float32 else bb


def _cfg(**kw):
    return toy_config(**{**dict(steps=5, rank=4, batch_size=1, colour_aug=None, lr=5e-3, log_every=1,
                                gradient_checkpointing=True), **kw})


def test_block_swapping_trains_the_same_lora_and_moves_every_block_both_ways(two_devices):
    v, m, s = _clip()
    ref = train_lora(_bb(), [s], _cfg(), progress=False)
    bb = _bb()
    run = train_lora(bb, [s], _cfg(blocks_to_swap=3), progress=False)
    assert run.history[-1]["loss"] != run.history[0]["loss"]  # it trains at all
    for k, v0 in ref.state_dict.items():
        torch.testing.assert_close(run.state_dict[k], v0, atol=1e-6, rtol=0)
    sw = memory.block_swapper(bb.transformer)
    assert sw is not None and sw.swapped == [0, 1, 2]
    for i in sw.swapped:  # each swapped block: onloaded and released once per step in forward and in backward
        for what in ("onload", "release"):
            for phase in ("forward", "backward"):
                assert sw.counts.get((i, what, phase)) == 5, (i, what, phase, sw.counts)
    assert not any(i == 3 for i, _, _ in sw.counts)  # the resident block never moves
    prefetched = sum(c for (i, what, _), c in sw.counts.items() if what == "prefetched")
    loads = sum(c for (i, what, _), c in sw.counts.items() if what == "onload")
    assert prefetched >= loads * 0.6  # most copies were started ahead of use (side-stream prefetch)
    # LoRA weights never left the device; frozen weights of swapped blocks are released (empty) between uses
    blk = bb.transformer.blocks[0]
    assert blk.attn1.to_q.base_layer.weight.numel() == 0 and blk.attn1.to_q.lora_A["default"].weight.numel() > 0
    # editing right after training runs through the same swapper and gives the no-swap model's edit
    a = edit_video(bb, run, v, m, v[0], steps=2, seed=0, progress=False).video
    ref_bb = _bb()
    b = edit_video(ref_bb, ref, v, m, v[0], steps=2, seed=0, progress=False).video
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert sw.counts[(0, "onload", "forward")] > 5


def test_swapping_needs_gradient_checkpointing():
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        TrainConfig(blocks_to_swap=4, gradient_checkpointing=False)
    with pytest.raises(ValueError, match="blocks_to_swap"):
        TrainConfig(block_offload=True)  # the old option trained nothing; it names its replacement


def test_fp8_base_trains_twice_and_keeps_the_lora_out_of_fp8(tmp_path):
    v, m, s = _clip()
    bb = _bb(torch.bfloat16)
    cfg = _cfg(fp8_base=True, steps=3)
    run1 = train_lora(bb, [s], cfg, progress=False)
    assert memory.is_fp8(bb.transformer)
    run2 = train_lora(bb, [s], cfg, output_dir=tmp_path / "r", progress=False)  # once raised "hook already exists"
    assert memory.lora_dtypes(bb.transformer) == {torch.float32}
    a = bb.transformer.blocks[0].attn1.to_q.lora_A["default"].weight
    assert a.unique().numel() > 50  # not the 9-15 values of an init quantised to fp8
    assert all(h["loss"] == h["loss"] for h in run1.history + run2.history)
    # a saved LoRA loaded onto the fp8 backbone keeps its values (in the bf16 compute dtype)
    use_lora(bb, tmp_path / "r" / "lora")
    assert memory.lora_dtypes(bb.transformer) == {torch.bfloat16}
    got = {k: p for k, p in bb.transformer.named_parameters() if "lora_" in k}
    for k, want in run2.state_dict.items():
        name = k.replace(".weight", ".default.weight")
        torch.testing.assert_close(got[name].float(), want.to(torch.bfloat16).float(), atol=0, rtol=0)
    out = edit_video(bb, tmp_path / "r" / "lora", v, m, v[0], steps=2, seed=0, progress=False).video
    assert np.isfinite(out).all() and out.shape == v.shape
    # and onto a fresh backbone that editing casts to fp8 (memory_preset "24GB": fp8 storage at inference)
    fresh = _bb(torch.bfloat16)
    res = edit_video(fresh, tmp_path / "r" / "lora", v, m, v[0], steps=2, seed=0, memory_preset="24GB",
                     progress=False)
    assert memory.is_fp8(fresh.transformer) and res.settings["fp8"]
    assert memory.lora_dtypes(fresh.transformer) == {torch.bfloat16}


def test_fp8_needs_a_bf16_model():
    with pytest.raises(ValueError, match="bfloat16"):
        memory.apply_fp8(_bb().transformer)


def test_adamw8bit_checkpoint_saves_at_the_end_and_resumes(tmp_path):
    pytest.importorskip("bitsandbytes")
    v, m, s = _clip()
    cfg = _cfg(optimizer="adamw8bit", steps=6, gradient_checkpointing=False)
    full = train_lora(_bb(layers=2), [s], cfg, output_dir=tmp_path / "full", progress=False)
    assert (tmp_path / "full" / "lora" / "pytorch_lora_weights.safetensors").exists()  # save at the last step
    train_lora(_bb(layers=2), [s], cfg, output_dir=tmp_path / "cut", progress=False, stop_after=3)
    resumed = train_lora(_bb(layers=2), [s], cfg, output_dir=tmp_path / "cut", progress=False)
    assert [h["step"] for h in resumed.history] == list(range(1, 7))
    for k, v0 in full.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[k], v0, atol=1e-6, rtol=1e-5)


def test_adamw8bit_without_bitsandbytes_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    v, m, s = _clip()
    with pytest.raises(ImportError, match=r"\.\[gpu\]"):
        train_lora(_bb(layers=2), [s], _cfg(optimizer="adamw8bit", steps=1), progress=False)


def test_caching_brings_one_encoder_at_a_time(monkeypatch):
    active, seen, peak = [], [], [0]
    real = memory.onload

    @contextlib.contextmanager
    def spy(module, device):
        if module is not None:
            active.append(type(module).__name__)
            seen.append(active[-1])
            peak[0] = max(peak[0], len(set(active)))  # nested onloads of one module are one module
        try:
            with real(module, device) as mm:
                yield mm
        finally:
            if module is not None:
                active.pop()
    monkeypatch.setattr(memory, "onload", spy)
    from loraedit_nb.training import cache_samples

    bb = _bb(layers=2)
    v, m, s = _clip()
    cache_samples(bb, [s], _cfg(), progress=False)
    assert peak[0] == 1, seen  # never two encoders on the device together
    assert {"PatchifyVAE", "UMT5EncoderModel", "CLIPVisionModel"} <= set(seen)


def test_released_text_encoder_reloads_only_for_a_new_prompt(tmp_path):
    bb = tiny_random_backbone(image_encoder=False)
    bb.name = "my-wan"  # a non-tiny name: folders of real backbones can reload their text encoder
    bb.save_pretrained(tmp_path / "bb")
    from loraedit_nb.models import load_backbone

    bb2 = load_backbone(tmp_path / "bb")
    e1 = bb2.encode_prompt("a red disc moves right")
    assert bb2.release_text_encoder() and bb2.text_encoder is None
    torch.testing.assert_close(bb2.encode_prompt("a red disc moves right"), e1)  # from the cache
    assert bb2.text_encoder is None
    bb2.encode_prompt("a blue disc")  # a new prompt reloads it
    assert bb2.text_encoder is not None


def test_each_rank_loads_for_its_own_device_and_nothing_touches_the_gpu(monkeypatch, tmp_path):
    bb = tiny_random_backbone(image_encoder=False)
    bb.name = "my-wan"
    bb.save_pretrained(tmp_path / "bb")
    from loraedit_nb.models import load_backbone, resolve_device

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    bb2 = load_backbone(tmp_path / "bb", torch.bfloat16, "cuda")  # no CUDA here: it must not move anything
    assert bb2.device == torch.device("cuda", 1)
    assert {p.device.type for m in (bb2.transformer, *bb2.encoders) for p in m.parameters()} == {"cpu"}


def test_every_rank_restores_its_own_rng(tmp_path):
    from loraedit_nb import training as T

    ck = tmp_path / T.CHECKPOINT_NAME
    g0, g1 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    T._save_rng(ck, g0, 0, step=4)
    T._save_rng(ck, g1, 1, step=4)
    for rank, g in ((0, g0), (1, g1)):
        r = torch.Generator()
        r.set_state(torch.load(T._rng_path(ck, rank), weights_only=True)["state"])
        assert torch.equal(r.get_state(), g.get_state())
    assert not torch.equal(g0.get_state(), g1.get_state())


def test_fsdp_is_refused_with_the_way_out(monkeypatch):
    from accelerate import Accelerator, DistributedType

    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: DistributedType.FSDP))
    v, m, s = _clip()
    with pytest.raises(RuntimeError, match="DDP"):
        train_lora(_bb(layers=2), [s], _cfg(steps=1), progress=False)


def test_presets_by_name():
    assert set(memory.MEMORY_PRESETS) == {"16GB", "24GB", "48GB", "80GB+"}
    assert memory.get_preset("48GB") is memory.MEMORY_PRESETS["48GB"]
    with pytest.raises(ValueError, match="memory_preset must be one of"):
        memory.get_preset("12GB")


def test_block_swapping_on_hunyuan_dual_and_single_stream_blocks(two_devices):
    from loraedit_nb.backbones import tiny_random_hunyuan

    v, m, s = _clip()
    cfg = _cfg(steps=3)
    ref = train_lora(tiny_random_hunyuan(), [s], cfg, progress=False)
    bb = tiny_random_hunyuan()
    run = train_lora(bb, [s], replace_cfg(cfg, blocks_to_swap=2), progress=False)
    for k, v0 in ref.state_dict.items():
        torch.testing.assert_close(run.state_dict[k], v0, atol=1e-6, rtol=0)
    sw = memory.block_swapper(bb.transformer)
    assert sw.n == 2 and all(sw.counts.get((i, "release", "backward")) == 3 for i in (0, 1)), sw.counts


def replace_cfg(cfg, **kw):
    from dataclasses import replace

    return replace(cfg, **kw)


def test_training_again_after_an_edit_with_swapping(two_devices):
    """An edit's prefetches are made under inference_mode; a later training run must not use them."""
    v, m, s = _clip()
    bb = _bb()
    run = train_lora(bb, [s], _cfg(blocks_to_swap=3, steps=2), progress=False)
    edit_video(bb, run, v, m, v[0], steps=2, seed=0, progress=False)
    again = train_lora(bb, [s], _cfg(blocks_to_swap=3, steps=2), progress=False)
    assert len(again.history) == 2 and np.isfinite(again.history[-1]["loss"])


def test_official_lora_folder_loads_through_diffusers_converter(tmp_path):
    """A LoRA-Edit / diffusion-pipe folder (adapter_model.safetensors, diffusion_model.* keys) is accepted."""
    from safetensors.torch import save_file

    v, m, s = _clip()
    bb = _bb(layers=2)
    run = train_lora(bb, [s], _cfg(steps=3, lr=2e-2), progress=False)
    names = {"attn1": "self_attn", "attn2": "cross_attn", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o",
             "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}

    def official(key):
        for a, b in names.items():
            key = key.replace(f".{a}.", f".{b}.")
        return "diffusion_model." + key
    folder = tmp_path / "official_lora"
    folder.mkdir()
    save_file({official(k): v.contiguous() for k, v in run.state_dict.items()},
              str(folder / "adapter_model.safetensors"))
    use_lora(bb, None)
    use_lora(bb, folder)
    got = {k.replace(".default", ""): p for k, p in bb.transformer.named_parameters() if "lora_" in k}
    for k, want in run.state_dict.items():
        torch.testing.assert_close(got[k].detach(), want)


def test_folder_papercuts(tmp_path):
    """A 720P folder gets 720P defaults, CLIP stays fp32 in a bf16 folder load, fp8 bytes are counted as stored."""
    from loraedit_nb.models import META_FILE, load_backbone
    from loraedit_nb.training import memory_report

    bb = tiny_random_backbone()
    bb.name = "my-wan"
    path = bb.save_pretrained(tmp_path / "Wan2.1-I2V-14B-720P-Diffusers")
    (path / META_FILE).unlink()  # a plain diffusers folder: no metadata of ours
    bb2 = load_backbone(path, torch.bfloat16)
    assert (bb2.defaults["height"], bb2.defaults["width"]) == (720, 1280)
    assert bb2.image_encoder.dtype == torch.float32 and bb2.transformer.dtype == torch.bfloat16
    bb2.transformer.requires_grad_(False)  # frozen, as under a LoRA
    before = memory_report(bb2, 0, TrainConfig())["gpu_weights_bytes"]
    memory.apply_fp8(bb2.transformer)
    after = memory_report(bb2, 0, TrainConfig(fp8_base=True))["gpu_weights_bytes"]
    stored = sum(p.numel() * p.element_size() for p in bb2.transformer.parameters())
    fp8 = sum(p.numel() for p in bb2.transformer.parameters() if p.dtype == torch.float8_e4m3fn)
    assert after == stored and fp8 > 0 and after < before  # fp8 at 1 byte, the uncast rest at its own size


def test_offloaded_checkpoints_are_exactly_the_block_inputs(monkeypatch):
    """save_on_cpu around a checkpointed forward packs each block's input, never a block's internals."""
    packed = []
    real = torch.autograd.graph.save_on_cpu

    class Spy(real):
        def __init__(self, pin_memory=False, device_type="cuda"):
            super().__init__(pin_memory, device_type)
            inner = self.pack_hook

            def pack(t):
                packed.append(tuple(t.shape))
                return inner(t)
            self.pack_hook = pack
    monkeypatch.setattr(torch.autograd.graph, "save_on_cpu", Spy)
    v, m, s = _clip()
    ref = train_lora(_bb(), [s], _cfg(steps=2), progress=False)
    bb = _bb()
    run = train_lora(bb, [s], _cfg(steps=2, offload_checkpoints=True), progress=False)
    for k, v0 in ref.state_dict.items():
        torch.testing.assert_close(run.state_dict[k], v0, atol=1e-6, rtol=0)
    c = bb.transformer.config
    d, n = c.num_attention_heads * c.attention_head_dim, 2 * 16 * 16 // 4  # 2 latent frames x (16/2)^2 tokens
    assert packed.count((1, n, d)) >= 2 * c.num_layers  # every block's hidden-state input, in each of 2 steps
    assert (1, n, c.ffn_dim) not in packed  # a block's FFN activations are recomputed in backward, not stored


def test_auto_swap_count_comes_from_the_planner_for_the_live_config():
    """On a GPU, blocks_to_swap='auto' is the planner's count for the transformer's own config and clip size
    (the full 14B Wan on the meta device; nothing is allocated)."""
    from diffusers import WanTransformer3DModel

    from loraedit_nb.bench import WAN_14B_CONFIG
    from loraedit_nb.models import Backbone
    from loraedit_nb.planner import plan
    from loraedit_nb.training import resolve_swap, wan_config

    with torch.device("meta"):
        tr = WanTransformer3DModel(**WAN_14B_CONFIG)
    bb = Backbone("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", tr, None, None, None, None,
                  execution_device=torch.device("cuda"))
    want = plan("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", 49, 480, 832, "24GB").train_blocks_to_swap
    assert 0 < resolve_swap(bb, wan_config(memory_preset="24GB"), 49, 480, 832) == want < 40
    assert resolve_swap(bb, wan_config(memory_preset="80GB+"), 49, 480, 832) == 0


def test_editing_offload_evicts_the_transformer_while_a_big_encoder_runs(monkeypatch, tiny):
    """On a GPU with an offloading preset, the pipeline's encoder calls first move the transformer's resident weights
    out (UMT5 or Llava would not fit beside them), and only when the encoder is not already on the device."""
    from loraedit_nb.backbones import MaskedWanI2VPipeline

    calls = []
    monkeypatch.setattr(memory, "evicted", lambda m, d: (calls.append(("evict", type(m).__name__, str(d))),
                                                         contextlib.nullcontext())[1])
    monkeypatch.setattr(memory, "onload", lambda m, d: (calls.append(("onload", type(m).__name__, str(d))),
                                                        contextlib.nullcontext())[1])
    pipe = tiny.pipeline(MaskedWanI2VPipeline)
    pipe._staged_device = torch.device("cuda")
    pipe._evict_for = frozenset({"image_encoder"})
    with pipe._encoders_for("image_encoder"):
        pass
    assert calls == [("evict", "WanTransformer3DModel", "cuda"), ("onload", "CLIPVisionModel", "cuda")]
    calls.clear()
    pipe._evict_for = frozenset({"text_encoder", "vae"})  # CLIP fits beside the transformer: nothing moves out
    with pipe._encoders_for("image_encoder"):
        pass
    assert calls == [("onload", "CLIPVisionModel", "cuda")]
