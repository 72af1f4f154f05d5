"""The real-GPU path's decisions, proven on the CPU with CUDA emulated below the package's own code.

``fake_card`` replaces only torch's lowest CUDA queries (``cudaMemGetInfo``, the allocator's stats, the memory
fraction, the current device): torch's own wrappers still run, with their device-index checks, and so do the
package's real ``gpu_capacity_gb``, ``auto_preset``, ``get_preset``, ``wan_config`` and ``prepare_for_editing``.
Block swapping runs through the two-"device" transport of ``conftest`` (a fresh copy per onload, an empty tensor
for a released weight). Each test here fails on the code before the fix it names."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from loraedit_nb import memory
from loraedit_nb import regimes as R
from loraedit_nb.inference import edit_video
from loraedit_nb.models import tiny_random_backbone
from loraedit_nb.training import toy_config, train_lora
from tests.conftest import moving_square

GiB = 2**30


class FakeCard:
    """CUDA cards as torch's C layer reports them: per device index total memory, the CUDA context, other processes'
    memory, this process's reserved pool (what a training run leaves behind) and memory fraction."""

    def __init__(self, *totals: float, context: float = 0.5e9):
        self.total = list(totals)
        self.context = context
        self.others = [0.0] * len(totals)
        self.reserved = [0.0] * len(totals)
        self.fraction = [1.0] * len(totals)
        self.current = 0
        self.queried: list[int] = []  # device indices memory was read on

    def free(self, i: int) -> float:
        return self.total[i] - self.context - self.others[i] - self.reserved[i]

    def after_training(self, i: int, peak: float) -> None:
        """The allocator keeps a training run's pool reserved (and the transformer stays placed)."""
        self.reserved[i] = peak


@pytest.fixture
def fake_card(monkeypatch):
    card = FakeCard(24 * GiB)

    class CudaRt:
        def cudaMemGetInfo(self, i):
            card.queried.append(i)
            return int(card.free(i)), int(card.total[i])

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "_lazy_init", lambda: None)
    monkeypatch.setattr(torch.cuda.memory, "_lazy_init", lambda: None)
    monkeypatch.setattr(torch.cuda.memory, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "cudart", lambda: CudaRt())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(card.total))
    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: card.current, raising=False)
    monkeypatch.setattr(torch._C, "_cuda_getMemoryFraction", lambda i: card.fraction[i], raising=False)
    monkeypatch.setattr(torch._C, "_cuda_memoryStats",
                        lambda i: {"reserved_bytes": {"all": {"current": int(card.reserved[i])}}}, raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    memory.forget_auto_presets()
    yield card
    memory.forget_auto_presets()


# ----------------------------------------------------------------------------------------------- "auto"
@pytest.mark.parametrize("device", [None, "cuda", torch.device("cuda"), "cuda:0", torch.device("cuda", 0)])
def test_auto_works_for_every_way_of_naming_the_gpu(fake_card, device):
    """load_backbone(..., "cuda") and accelerate's single-process device are index-less: torch's
    get_per_process_memory_fraction refuses them (the default edit raised ValueError on every single GPU)."""
    assert memory.get_preset("auto", device).name == "24GB"
    memory.forget_auto_presets()
    assert memory.gpu_capacity_gb(device) == pytest.approx((24 * GiB - 0.5e9) / 1e9)


@pytest.mark.parametrize("total, peak, tier", [(24 * GiB, 22.0e9, "24GB"), (48 * GiB, 43.0e9, "48GB"),
                                               (80e9 * 1.069, 60.0e9, "80GB+")])
def test_auto_picks_the_same_tier_after_training_in_the_same_process(fake_card, total, peak, tier):
    """Notebooks 03/04 build a second config (and edit) after a training run: reading *free* memory then gave
    "only 3.3 GB free" on 24 GiB and silently the 24GB recipe on 80 GB."""
    from loraedit_nb.training import wan_config

    fake_card.total[0] = total
    assert wan_config(memory_preset="auto").memory_preset == tier  # before training
    fake_card.after_training(0, peak)
    assert wan_config(memory_preset="auto").memory_preset == tier  # remembered per device
    memory.forget_auto_presets()  # and measured again from scratch: our own pool still counts as ours
    assert memory.get_preset("auto", torch.device("cuda")).name == tier


def test_auto_counts_other_processes_and_the_fraction_cap_but_not_our_own_memory(fake_card):
    fake_card.total[0] = 80e9 * 1.069
    fake_card.others[0] = 40e9  # another process holds half the card
    assert memory.get_preset("auto").name == "24GB"
    memory.forget_auto_presets()
    fake_card.total[0], fake_card.others[0] = 150e9, 0.0  # an H200 capped to a 24 GB card (scripts/gpu_check.py)
    fake_card.fraction[0] = 24e9 / 150e9
    assert memory.get_preset("auto").name == "24GB"
    memory.forget_auto_presets()
    fake_card.total[0], fake_card.fraction[0] = 12 * GiB, 1.0
    with pytest.raises(ValueError, match="below the smallest tier"):
        memory.get_preset("auto")


def test_auto_measures_this_ranks_gpu(fake_card, monkeypatch):
    """Under accelerate launch the preset is resolved before accelerate sets the device: every rank measured GPU 0."""
    fake_card.total[:] = [24 * GiB]
    fake_card.total.append(48 * GiB)
    fake_card.others.append(0.0), fake_card.reserved.append(0.0), fake_card.fraction.append(1.0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert memory.get_preset("auto").name == "48GB"
    assert memory.get_preset("auto", "cuda").name == "48GB"
    assert set(fake_card.queried) == {1}  # GPU 0 was never touched by this rank


# ----------------------------------------------------------------------------------------------- swapping
def _clip():
    v, m = moving_square(T=5, H=32, W=32, size=8, step=3)
    return v, m, R.motion_sample(v, m, "a red square moves right")


def _cfg(**kw):
    return toy_config(**{**dict(steps=2, rank=4, batch_size=1, colour_aug=None, lr=5e-3, log_every=1,
                                gradient_checkpointing=True), **kw})


def test_a_folder_loaded_backbone_edited_with_a_swapping_preset_streams_its_blocks(two_devices, monkeypatch,
                                                                                   tmp_path):
    """An edit in a fresh process (CLI edit, a new kernel) installed the swapper before the LoRA froze the model,
    and the swapper kept only frozen weights: nothing was swapped while the settings said 3."""
    from loraedit_nb.models import load_backbone

    monkeypatch.setitem(memory.MEMORY_PRESETS, "24GB", replace(memory.MEMORY_PRESETS["24GB"], edit_blocks_to_swap=3))
    v, m, s = _clip()
    src = tiny_random_backbone(vae="patchify", image_encoder=True, seed=3, layers=4)
    src.name = "my-wan"
    folder = src.save_pretrained(tmp_path / "bb")
    run = train_lora(src, [s], _cfg(steps=3, lr=2e-2), progress=False)
    lora = run.save(tmp_path / "lora", src)

    ref = edit_video(load_backbone(folder), lora, v, m, v[0], steps=2, seed=0, progress=False).video
    bb = load_backbone(folder)
    assert all(p.requires_grad for p in bb.transformer.parameters())  # as from_pretrained leaves a model
    res = edit_video(bb, lora, v, m, v[0], steps=2, seed=0, memory_preset="24GB", progress=False)
    sw = memory.block_swapper(bb.transformer)
    assert res.settings["blocks_to_swap"] == 3 and sw.n == 3
    base = [n for n, _ in bb.transformer.blocks[0].named_parameters() if "lora_" not in n]
    for i in range(3):  # every base weight of a swapped block lives in its host copy ...
        assert len(sw._host[i]) == len(base) and all(h.numel() > 0 for _, h in sw._host[i])
        assert sw.counts[(i, "onload", "forward")] >= 2  # ... and was streamed in for each forward (2 steps)
    assert bb.transformer.blocks[0].attn1.to_q.base_layer.weight.numel() == 0  # released between uses
    assert bb.transformer.blocks[3].attn1.to_q.base_layer.weight.numel() > 0  # the resident block stays whole
    np.testing.assert_allclose(res.video, ref, atol=1e-5)  # the same edit as without swapping


def _record_resident(sw: memory.BlockSwapper) -> dict:
    """The most swapped blocks holding device memory at once (loaded or being copied in), per phase."""
    most = {"forward": 0, "backward": 0}

    def wrap(fn):
        def inner(i):
            fn(i)
            phase = "backward" if torch._C._current_graph_task_id() != -1 else "forward"
            most[phase] = max(most[phase], len(sw._loaded | set(sw._pending)))
        return inner
    sw.load, sw.prefetch = wrap(sw.load), wrap(sw.prefetch)
    return most


def _swapped_training(monkeypatch, targets=None, layers=8, n=6):
    """Train a LoRA with ``n`` of ``layers`` blocks swapped, recording how many are resident; also without swapping."""
    v, m, s = _clip()
    cfg = _cfg(targets=targets)
    ref = train_lora(tiny_random_backbone(vae="patchify", image_encoder=True, seed=3, layers=layers), [s], cfg,
                     progress=False)
    bb = tiny_random_backbone(vae="patchify", image_encoder=True, seed=3, layers=layers)
    real = memory.enable_block_swap
    seen = {}

    def spy(tr, k, device, transport=None):  # the real swapper, watched
        sw = real(tr, k, device, transport)
        if sw is not None:
            seen["most"], seen["swapper"] = _record_resident(sw), sw
        return sw
    monkeypatch.setattr(memory, "enable_block_swap", spy)
    run = train_lora(bb, [s], replace(cfg, blocks_to_swap=n), progress=False)
    return ref, run, seen["most"], seen["swapper"]


def test_at_most_two_swapped_blocks_are_on_the_device_in_forward_and_backward(two_devices, monkeypatch):
    """The last swapped block's wrap-around prefetch kept block 0 on the device through the whole backward (three
    swapped blocks resident while the planner counts two). Training forwards no longer wrap; edits still do."""
    ref, run, most, sw = _swapped_training(monkeypatch)
    assert most["forward"] <= 2 and most["backward"] <= 2, most
    for k, v0 in ref.state_dict.items():
        torch.testing.assert_close(run.state_dict[k], v0, atol=1e-6, rtol=0)
    assert sw.counts.get((0, "prefetched", "forward"), 0) == 0  # no copy of block 0 was started ahead in training
    with torch.inference_mode():
        sw._make_pre(sw.swapped[-1])(None, (), {})  # an edit's last swapped block prefetches block 0 (CFG, next step)
    assert 0 in sw._pending


def test_a_lora_target_outside_the_blocks_does_not_keep_every_swapped_block_loaded(two_devices, monkeypatch):
    """A LoRA on the text embedder makes the context every block reads need a gradient; waiting for that one (it
    completes after block 0) kept all six swapped blocks loaded through backward."""
    targets = r".*(attn1\.to_q|attn1\.to_v|ffn\.net\.2|condition_embedder\.text_embedder\.linear_1)"
    ref, run, most, _ = _swapped_training(monkeypatch, targets=targets)
    assert most["backward"] <= 2, most
    assert any("text_embedder" in k for k in run.state_dict)
    for k, v0 in ref.state_dict.items():  # released only once nothing needs the weights: the same LoRA
        torch.testing.assert_close(run.state_dict[k], v0, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------- pinned memory
def test_a_swapped_block_is_one_host_buffer_and_pinned_sizes_are_not_rounded():
    """Per-parameter pinning through torch's caching host allocator rounded every weight to a power of two (x1.5)."""
    from loraedit_nb import planner

    tr = tiny_random_backbone(layers=3).transformer
    sw = memory.enable_block_swap(tr, 2, "cpu")  # the real transport (on the CPU: unpinned, same layout)
    for i in sw.swapped:
        hosts = [h for _, h in sw._host[i]]
        assert len({h.untyped_storage().data_ptr() for h in hosts}) == 1  # views into one buffer
        assert hosts[0].untyped_storage().nbytes() < sum(h.nbytes for h in hosts) + 64 * len(hosts)
    memory.disable_block_swap(tr)
    memory.configure_pinned_memory()
    assert f"pinned_max_round_threshold_mb:{memory.PINNED_ROUND_THRESHOLD_MB}" in \
        torch._C._accelerator_getAllocatorSettings()
    block = 404_000_000  # one Wan2.1-14B block in fp8
    assert planner.pinned_bytes(block) == block and planner.pinned_bytes(100_000) == 2**17
    pl = planner.plan("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", 49, 480, 832, "24GB")
    stats = planner.transformer_stats("wan2.1-i2v-14b.transformer")
    exact = sum(stats.block_bytes_fp8[:pl.train_blocks_to_swap]) / 1e9
    training = planner.host_moments(planner.WAN, stats, memory.MEMORY_PRESETS["24GB"], pl.train_blocks_to_swap)
    assert exact > 5 and training["training"]["swapped_blocks_pinned"] == pytest.approx(exact, abs=0.002)


def test_training_hands_its_pinned_buffers_back(monkeypatch):
    """save_on_cpu's pinned checkpoint buffers (8 GB at 49 frames) stayed cached by torch after training."""
    calls = []
    real = memory.release_pinned_cache
    monkeypatch.setattr(memory, "release_pinned_cache", lambda: (calls.append(1), real())[1])
    v, m, s = _clip()
    train_lora(tiny_random_backbone(vae="patchify", layers=2), [s], _cfg(steps=1, offload_checkpoints=True),
               progress=False)
    assert calls


# ----------------------------------------------------------------------------------------------- precision
def _bf16_backbone():
    """A tiny Wan in bf16 with its _keep_in_fp32_modules in fp32, as from_pretrained(torch_dtype=bf16) loads it."""
    bb = tiny_random_backbone(vae="patchify", layers=2).to(None, torch.bfloat16)
    tr = bb.transformer
    for name, mod in tr.named_modules():
        if set(name.split(".")) & set(tr._keep_in_fp32_modules):
            mod.to(torch.float32)
    return bb


def test_peft_input_cast_stays_off_in_the_backward_recompute(monkeypatch):
    """The forward ran inside peft's disable_input_dtype_casting, backward (with the checkpoint recompute) outside
    it: every adapted input was cast to fp32 again and saved twice (~2.2 GB at 49 frames on Wan 14B)."""
    import loraedit_nb.training as T

    bb = _bf16_backbone()
    seen = []
    real = T.add_lora

    def add_and_watch(tr, **kw):  # the real LoRA, with a probe on one adapted layer
        n = real(tr, **kw)
        tr.blocks[0].attn1.to_q.register_forward_pre_hook(lambda mod, a: seen.append(
            ("recompute" if torch._C._current_graph_task_id() != -1 else "forward", mod.cast_input_dtype_enabled)))
        return n
    monkeypatch.setattr(T, "add_lora", add_and_watch)
    v, m, s = _clip()
    train_lora(bb, [s], _cfg(steps=1), progress=False)
    assert ("forward", False) in seen and ("recompute", False) in seen, seen
    assert ("recompute", True) not in seen


def test_fp32_modules_compute_in_fp32_in_training_as_at_inference():
    """Training autocast ran Wan's fp32 time embedder in bf16; inference runs it in fp32."""
    bb = _bf16_backbone()
    dtypes = {}
    lin = bb.transformer.condition_embedder.time_embedder.linear_1
    lin.register_forward_hook(lambda mod, a, out: dtypes.setdefault(
        "train" if torch.is_grad_enabled() else "infer", out.dtype) and None)
    v, m, s = _clip()
    train_lora(bb, [s], _cfg(steps=1), progress=False)
    edit_video(bb, None, v, m, v[0], steps=1, seed=0, progress=False)
    assert dtypes == {"train": torch.float32, "infer": torch.float32}
    assert not torch.is_autocast_enabled("cpu")  # the hooks leave autocast as they found it


# ----------------------------------------------------------------------------------------------- planner = code
def _meta_wan14b(device="cuda"):
    """The full Wan2.1-I2V-14B transformer on the meta device in a backbone that computes on ``device``."""
    from diffusers import WanTransformer3DModel

    from loraedit_nb.bench import WAN_14B_CONFIG
    from loraedit_nb.models import Backbone

    with torch.device("meta"):
        tr = WanTransformer3DModel(**WAN_14B_CONFIG).to(torch.bfloat16)
    return Backbone("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", tr, None, None, None, None,
                    execution_device=torch.device(device))


def test_editing_moves_the_transformer_out_exactly_where_the_planner_says_it_does_not_fit():
    """The planner modelled the VAE decode alone on the GPU while the code decoded beside the resident transformer
    (48GB: 46.9 GB predicted by its own rule against 44.2 usable); and the big tiers moved the whole 33 GB
    transformer out and back for every encoder although they fit beside it."""
    from loraedit_nb import planner
    from loraedit_nb.inference import _evictions

    bb = _meta_wan14b()
    P = memory.MEMORY_PRESETS
    got = {name: _evictions(bb, P[name], 49, 480, 832, 0) for name in ("48GB", "80GB+")}
    assert got["48GB"] == {"text_encoder", "vae"}  # UMT5 and the decode make room; CLIP fits beside
    assert got["80GB+"] == frozenset()  # nothing moves on 80 GB
    pl = planner.plan(dict(bb.transformer.config), 49, 480, 832, "48GB")
    assert sorted(got["48GB"]) == pl.edit_evicts and pl.stages["editing"].peak_gpu_gb <= pl.usable_gb
    fam, spec = planner.resolve(dict(bb.transformer.config))
    stats, clip = planner.transformer_stats(spec), planner._clip(spec, 49, 480, 832)
    _, comps = planner._editing_parts(fam, stats, clip, P["48GB"], 0, 16, False)
    assert planner._stage(comps["vae"][1]).peak_gpu_gb > pl.usable_gb  # beside the transformer it would not fit
    assert _evictions(tiny_random_backbone(), P["48GB"], 5, 32, 32, 0) == frozenset()  # CPU: nothing to make room


def test_the_vae_decode_runs_with_the_transformer_moved_out_when_the_plan_says_so(monkeypatch):
    import contextlib

    events = []

    @contextlib.contextmanager
    def spy(module, device):
        events.append(("out", type(module).__name__))
        yield
        events.append(("back", type(module).__name__))
    monkeypatch.setattr(memory, "evicted", spy)
    bb = tiny_random_backbone(layers=1)
    vae_decode = type(bb.vae).decode
    monkeypatch.setattr(type(bb.vae), "decode", lambda self, *a, **k: (events.append(("decode",)),
                                                                          vae_decode(self, *a, **k))[1])
    bb.transformer.register_forward_pre_hook(lambda m, a: events.append(("forward",)) and None)
    v, m = moving_square(T=5, H=32, W=32, size=8, step=3)
    plain = edit_video(bb, None, v, m, v[0], steps=1, seed=0, progress=False).video
    assert ("out", "WanTransformer3DModel") not in events
    events.clear()
    bb.evict_for = frozenset({"vae"})
    res = edit_video(bb, None, v, m, v[0], steps=1, seed=0, progress=False).video
    i = events.index(("decode",))
    out, back = ("out", "WanTransformer3DModel"), ("back", "WanTransformer3DModel")
    assert events[:3] == [out, back, ("forward",)]  # the condition's VAE encode made room too, before denoising
    assert events[i - 1:i + 2] == [out, ("decode",), back]
    assert "decode" not in type(bb.vae).__dict__ or bb.vae.__dict__.get("decode") is None  # the patch is undone
    np.testing.assert_array_equal(res, plain)


def test_the_auto_swap_count_plans_with_the_configs_own_options():
    """blocks_to_swap='auto' planned with the preset's options: wan_config('24GB', offload_checkpoints=False) got the
    24GB count with 8 GB of checkpointed inputs left uncounted."""
    from loraedit_nb.planner import plan
    from loraedit_nb.training import effective_preset, resolve_swap, wan_config

    bb = _meta_wan14b()
    base = resolve_swap(bb, wan_config(memory_preset="24GB"), 49, 480, 832)
    cfg = wan_config(memory_preset="24GB", offload_checkpoints=False)
    more = resolve_swap(bb, cfg, 49, 480, 832)
    assert more > base
    assert more == plan(dict(bb.transformer.config), 49, 480, 832, effective_preset(cfg)).train_blocks_to_swap
    assert resolve_swap(bb, wan_config(memory_preset="24GB", optimizer="adamw"), 49, 480, 832) >= base
