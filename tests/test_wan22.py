"""Wan2.2 backbones on tiny random configs: I2V-A14B (two experts, Wan2.1's 36-channel condition, no CLIP) and
TI2V-5B (48-channel VAE at x16, no mask channels: LoRA-Edit's mask as clean tokens at timestep 0)."""

import numpy as np
import pytest
import torch
from diffusers import WanImageToVideoPipeline

from loraedit_nb import conditioning as C
from loraedit_nb.backbones import load_backbone
from loraedit_nb.backbones.base import _pil
from loraedit_nb.backbones.wan import WanTI2VAdapter, token_keep
from loraedit_nb.inference import edit_video
from loraedit_nb.loss import flow_matching_loss

T, H, W = 9, 64, 96
KW = dict(steps=3, guidance=1.0, prompt="a red square moves right", negative_prompt="", progress=False)


@pytest.fixture(scope="module")
def ti2v():
    return load_backbone("tiny-wan22-ti2v")


@pytest.fixture(scope="module")
def a14b():
    return load_backbone("tiny-wan22-a14b")


def _clip(seed=0):
    rng = np.random.default_rng(seed)
    return (np.round(rng.random((T, H, W, 3)) * 255) / 255).astype(np.float32)  # what a PIL image carries


@pytest.mark.filterwarnings("ignore:the mask covers every frame")
@pytest.mark.parametrize("name", ["tiny-wan22-a14b", "tiny-wan22-ti2v"])
def test_first_frame_mask_equals_the_stock_pipeline(name, request):
    bb = request.getfixturevalue(name.removeprefix("tiny-wan22-").replace("-", ""))
    video = _clip()
    ours = edit_video(bb, None, video, C.i2v_edit_mask(T, H, W), video[0], seed=5, **KW).video
    stock = bb.adapter.pipeline(bb, WanImageToVideoPipeline)
    assert stock.config.expand_timesteps == (name == "tiny-wan22-ti2v")
    assert (stock.config.boundary_ratio is not None) == (name == "tiny-wan22-a14b")
    ref = stock(image=_pil(video[0]), prompt=KW["prompt"], height=H, width=W, num_frames=T, num_inference_steps=3,
                guidance_scale=1.0, output_type="np", max_sequence_length=bb.max_sequence_length,
                generator=torch.Generator().manual_seed(5)).frames[0]
    np.testing.assert_array_equal(ours, ref.astype(np.float32))


def test_a14b_runs_both_experts_split_at_the_boundary(a14b):
    calls = {"transformer": [], "transformer_2": []}
    hooks = [getattr(a14b, k).register_forward_pre_hook(
        lambda m, a, kw, k=k: calls[k].append(float(kw.get("timestep", a[1] if len(a) > 1 else 0).flatten()[0])),
        with_kwargs=True) for k in calls]
    try:
        video = _clip()
        mask = np.zeros((T, H, W), bool)
        mask[1:, 16:48, 16:48] = True
        edit_video(a14b, None, video, mask, video[0], seed=1, **{**KW, "steps": 6})
    finally:
        for h in hooks:
            h.remove()
    assert calls["transformer"] and calls["transformer_2"], calls
    assert min(calls["transformer"]) >= 900 > max(calls["transformer_2"]), calls


def test_ti2v_token_mask_is_per_32px_token_and_the_union_over_4_frames(ti2v):
    keep = torch.ones(1, 1, T, H, W)
    keep[:, :, 6, 40, 70] = 0  # one pixel of frame 6 (latent frame 2, token row 1, column 2)
    m = token_keep(keep, ti2v.geometry)
    assert m.shape == (1, 1, 3, H // 16, W // 16)
    gen = (m[0, 0] == 0).nonzero().tolist()
    assert sorted(gen) == [[2, r, c] for r in (2, 3) for c in (4, 5)], gen  # the whole 2x2-cell token, frame 2 only
    with pytest.raises(ValueError, match="multiples of 32"):
        token_keep(torch.ones(1, 1, T, 48, 96), ti2v.geometry)
    # the condition: latent frame 0 given whole; the stock "first frame" mask under a first-frame-only edit mask
    cond = C.build_condition(ti2v.vae, _clip(), C.i2v_edit_mask(T, H, W), adapter=ti2v.adapter)
    assert isinstance(ti2v.adapter, WanTI2VAdapter) and cond.shape == (1, 49, 3, 4, 6)
    assert cond[0, -1, 0].min() == 1 and cond[0, -1, 1:].max() == 0


def test_ti2v_loss_counts_generated_tokens_only(ti2v):
    video = _clip()
    mask = np.zeros((T, H, W), bool)
    mask[1:, :32, :32] = True
    cond = C.build_condition(ti2v.vae, video, mask, adapter=ti2v.adapter)
    z0 = C.encode(ti2v.vae, torch.from_numpy(video).permute(3, 0, 1, 2)[None] * 2 - 1)
    text = ti2v.encode_prompt("a red square")
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(z0.shape, generator=g)
    t = torch.tensor([0.6])
    kept = (cond[:, -1:] > 0).expand_as(z0)
    tr = ti2v.transformer
    base = flow_matching_loss(tr, z0, cond, text, t, noise)

    def shifted(where):
        h = tr.register_forward_hook(lambda m, a, out: (out[0] + 5.0 * where,))
        try:
            return flow_matching_loss(tr, z0, cond, text, t, noise)
        finally:
            h.remove()
    with torch.no_grad():
        assert torch.equal(shifted(kept.float()), base)  # kept tokens' predictions never count
        assert shifted((~kept).float()) > base + 1  # generated ones do
    # and the transformer saw the clean condition at kept tokens, with timestep 0 there
    x, ts = ti2v.adapter.model_input(torch.zeros_like(z0), cond, t)
    assert torch.equal(x[kept], cond[:, :48][kept]) and ts.shape == (1, 3 * 2 * 3)
    assert ts.unique().tolist() == pytest.approx([0.0, 600.0])


def test_ti2v_refuses_a_single_placed_frame_and_trains_a_lora(ti2v, tmp_path):
    from loraedit_nb import regimes as R
    from loraedit_nb.training import train_lora

    video = _clip()
    mask = np.zeros((T, H, W), bool)
    mask[1:, :32, 32:64] = True
    with pytest.raises(ValueError, match="Wan2.2-TI2V has one token mask per latent frame"):
        edit_video(ti2v, None, video, mask, video[0], edited_frames={4: video[4]}, place_edited_frames=True,
                   seed=0, **KW)
    before = edit_video(ti2v, None, video, mask, video[0], seed=2, **KW).video
    run = train_lora(ti2v, [R.motion_sample(video, mask, "a red square")], ti2v_cfg(), progress=False)
    assert run.history[-1]["loss"] > 0
    after = edit_video(ti2v, run, video, mask, video[0], seed=2, **KW).video
    assert np.abs(after - before).max() > 1e-4  # the LoRA moved the output
    path = run.save(tmp_path / "lora", ti2v)
    again = edit_video(ti2v, path, video, mask, video[0], seed=2, **KW).video
    np.testing.assert_allclose(again, after, atol=1e-5)


def ti2v_cfg():
    from loraedit_nb.training import toy_config

    return toy_config(steps=3, lr=5e-2, rank=4, colour_aug=None)


def test_a14b_backbone_folder_round_trip(a14b, tmp_path):
    path = a14b.save_pretrained(tmp_path / "bb")
    bb = load_backbone(path)
    assert bb.boundary_ratio == 0.9 and bb.transformer_2 is not None and bb.image_encoder is None
    for a, b in zip(a14b.transformer_2.parameters(), bb.transformer_2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a14b_trains_one_lora_per_expert_in_its_own_timesteps_and_stock_diffusers_loads_both(a14b, tmp_path):
    from loraedit_nb import regimes as R
    from loraedit_nb.training import toy_config, train_lora

    video = _clip()
    mask = np.zeros((T, H, W), bool)
    mask[1:, 16:48, 16:48] = True
    samples = [R.motion_sample(video, mask, "a red square")]
    cfg = toy_config(steps=3, lr=5e-2, rank=4, colour_aug=None)
    with pytest.raises(ValueError, match="one transformer"):
        train_lora(load_backbone("tiny-random"), samples, toy_config(steps=1, expert="high"), progress=False)
    seen = {"transformer": [], "transformer_2": []}
    hooks = [getattr(a14b, k).register_forward_pre_hook(
        lambda m, a, kw, k=k: seen[k].append(float(kw["timestep"].flatten()[0])), with_kwargs=True) for k in seen]
    try:
        run = train_lora(a14b, samples, cfg, progress=False)  # both experts, in turn
    finally:
        for h in hooks:
            h.remove()
    assert seen["transformer"] and min(seen["transformer"]) >= 900, seen  # high-noise expert: t >= 0.9 only
    assert seen["transformer_2"] and max(seen["transformer_2"]) < 900, seen
    assert run.experts["high"].config.expert == "high" and run.experts["low"].config.expert == "low"
    assert [h["expert"] for h in run.history] == ["high"] * 3 + ["low"] * 3
    assert [h["step"] for h in run.history] == list(range(1, 7))
    in_memory = edit_video(a14b, run, video, mask, video[0], seed=4, **KW).video
    path = run.save(tmp_path / "lora", a14b)
    assert (path / "high" / "pytorch_lora_weights.safetensors").exists() and (path / "low").is_dir()
    ours = edit_video(a14b, path, video, mask, video[0], seed=4, **KW).video
    plain = edit_video(a14b, None, video, mask, video[0], seed=4, **KW).video
    assert np.abs(ours - plain).max() > 1e-4
    np.testing.assert_allclose(ours, in_memory, atol=1e-5)
    np.testing.assert_array_equal(edit_video(a14b, path, video, mask, video[0], seed=4, **KW).video, ours)  # same seed
    # stock diffusers: the high expert's LoRA into transformer, the low one's into transformer_2
    fresh = load_backbone("tiny-wan22-a14b")
    pipe = fresh.adapter.pipeline(fresh, WanImageToVideoPipeline)
    pipe.load_lora_weights(str(path / "high"), weight_name="pytorch_lora_weights.safetensors", adapter_name="h")
    pipe.load_lora_weights(str(path / "low"), weight_name="pytorch_lora_weights.safetensors", adapter_name="l",
                           load_into_transformer_2=True)
    x = torch.randn(1, 36, 3, 8, 12)
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=fresh.encode_prompt("a red square"),
              return_dict=False)
    from loraedit_nb.inference import use_lora

    use_lora(a14b, path)
    with torch.no_grad():
        for ours_tr, stock_tr in ((a14b.transformer, pipe.transformer), (a14b.transformer_2, pipe.transformer_2)):
            torch.testing.assert_close(stock_tr(x, **kw)[0], ours_tr(x, **kw)[0], atol=1e-5, rtol=0)
    use_none = edit_video(a14b, None, video, mask, video[0], seed=4, **KW).video
    np.testing.assert_array_equal(use_none, plain)  # None takes both LoRAs off again


@pytest.mark.parametrize("name", ["tiny-wan22-a14b", "tiny-wan22-ti2v"])
def test_the_wan22_hub_loader_reads_a_stock_pipeline_folder(name, tmp_path):
    """The Hub loader, pointed at a folder the stock pipeline wrote (the Hub's layout): experts, boundary, token
    conditioning and the official sampling defaults come through; no CLIP encoder is asked for."""
    from loraedit_nb.backbones.wan import WAN22_A14B_DEFAULTS, WAN22_TI2V_DEFAULTS, load_wan22_hub

    bb = load_backbone(name)
    bb.adapter.pipeline(bb, WanImageToVideoPipeline).save_pretrained(tmp_path / "hub")
    got = load_wan22_hub(str(tmp_path / "hub"), torch.float32, None)
    ti2v = name.endswith("ti2v")
    assert (got.transformer_2 is None) == ti2v and got.boundary_ratio == (None if ti2v else 0.9)
    assert got.defaults == (WAN22_TI2V_DEFAULTS if ti2v else WAN22_A14B_DEFAULTS) and got.image_encoder is None
    assert type(got.adapter) is type(bb.adapter)
    for a, b in zip(bb.transformer.parameters(), got.transformer.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a14b_experts_take_turns_on_the_gpu(a14b, monkeypatch):
    """Editing on a GPU tier: only one 14B expert's weights may be on the device at a time. The switch is driven by
    the experts' own forward calls; the moves are emulated (recorded) on the CPU."""
    from loraedit_nb import inference, memory

    on_device = set()
    monkeypatch.setattr(memory, "enable_block_swap", lambda m, n, d, transport=None: on_device.add(id(m)))
    monkeypatch.setattr(memory, "disable_block_swap", lambda m, restore_to=None: on_device.discard(id(m)))
    a14b.execution_device = torch.device("cuda")  # prepare_for_editing sees a GPU tier ...
    try:
        info = inference.prepare_for_editing(a14b, "48GB", T, H, W)
    finally:
        a14b.execution_device = None  # ... the denoising itself runs on the CPU
    sw = a14b.transformer._loraedit_expert_switch
    seen = []  # checked after the switch's own hook has run
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append(set(on_device) == {id(mod)}))
             for m in (a14b.transformer, a14b.transformer_2)]
    try:
        assert info["experts"] == "one on the GPU at a time" and sw is a14b.transformer_2._loraedit_expert_switch
        video = _clip()
        mask = np.zeros((T, H, W), bool)
        mask[1:, 16:48, 16:48] = True
        edit_video(a14b, None, video, mask, video[0], seed=1, **{**KW, "steps": 6})
        assert seen and all(seen), seen  # every forward found its own expert (and only it) placed
        assert sw.moves == [("place", 0), ("release", 0), ("place", 1)]  # each expert moved once per edit
    finally:
        sw.remove()
        a14b.evict_for = frozenset()
        for h in hooks:
            h.remove()


def test_a14b_training_hands_the_gpu_from_one_expert_to_the_next(a14b, monkeypatch):
    """On a GPU, each expert's phase places that expert; the one before must be back on the CPU first (two 14B
    experts do not fit a 24-48 GB card together). The phases are stubbed; the hand-over is the real code."""
    from loraedit_nb import memory, training

    on_gpu, log = set(), []

    def phase(backbone, samples, cfg, **kw):  # stands in for one expert's train_lora: it places its expert
        log.append((cfg.expert, set(on_gpu)))
        on_gpu.add(id(backbone.expert(cfg.expert).transformer))
        return training.LoraRun({}, cfg, [{"step": 1, "loss": 0.1}])

    monkeypatch.setattr(training, "train_lora", phase)
    monkeypatch.setattr(memory, "disable_block_swap", lambda m, restore_to=None: on_gpu.discard(id(m)))
    a14b.execution_device = torch.device("cuda")
    try:
        run = training.train_experts(a14b, [], training.toy_config(steps=1))
    finally:
        a14b.execution_device = None
    assert [e for e, _ in log] == ["high", "low"] and log[1][1] == set(), log  # low starts with the GPU empty
    assert set(run.experts) == {"high", "low"} and not on_gpu  # and the last one is released at the end too
