"""HunyuanVideo-I2V (latent_concat) behind the same functions as Wan: condition equivalence with the stock pipeline,
mask mapping, training, diffusers LoRA round trip, inference, save/load, refusal of the mask-less variant."""

import numpy as np
import pytest
import torch

from loraedit_nb import conditioning as C
from loraedit_nb import regimes as R
from loraedit_nb.backbones import tiny_random_hunyuan
from loraedit_nb.backbones.base import _pil
from loraedit_nb.backbones.hunyuan import HUNYUAN_TARGETS, pack_mask_1ch
from loraedit_nb.models import load_backbone
from loraedit_nb.training import cache_samples, fixed_loss, toy_config, train_lora
from tests.conftest import moving_square


@pytest.fixture(scope="module")
def hy():
    return tiny_random_hunyuan()


def _clip(T=9, H=32, W=32):
    v, m = moving_square(T=T, H=H, W=W, size=8, step=2)
    # exact 8-bit values: the stock pipeline receives the first frame as a PIL image
    return (np.round(v * 255) / 255).astype(np.float32), m


def _stock_condition(bb, video, prompt="a red square"):
    """The channels after the noisy latent that the stock pipeline feeds its transformer (first call)."""
    seen = {}

    def hook(module, args, kw):
        seen.setdefault("x", kw["hidden_states"].clone())

    h = bb.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        T, H, W = video.shape[:3]
        bb.pipeline()(image=_pil(video[0]), prompt=prompt, height=H, width=W, num_frames=T, num_inference_steps=1,
                      prompt_template=bb.prompt_template, max_sequence_length=bb.max_sequence_length,
                      output_type="latent")
    finally:
        h.remove()
    return seen["x"][:, bb.geometry.z_dim:]


def test_first_frame_mask_equals_the_stock_condition(hy):
    video, _ = _clip()
    ours = C.build_condition(hy.vae, video, C.i2v_edit_mask(*video.shape[:3]), adapter=hy.adapter)
    stock = _stock_condition(hy, video)
    assert ours.shape == stock.shape == (1, hy.geometry.z_dim + 1, 3, 4, 4)
    assert torch.equal(ours, stock)


def test_spatial_mask_maps_to_one_channel_and_zero_latents(hy):
    video, mask = _clip(H=64, W=64)
    cond = C.build_condition(hy.vae, video, mask, adapter=hy.adapter)
    z = hy.geometry.z_dim
    m = cond[0, z]
    assert cond.shape[1] == z + 1 and set(m.unique().tolist()) <= {0.0, 1.0}
    assert m[0].min() == 1  # the first frame is given whole
    # a latent voxel is kept only when every pixel frame it covers is kept (min over the 4)
    keep = torch.from_numpy(C.keep_mask(mask))[None, None]
    four = C.pack_mask(keep, hy.geometry)[0]
    assert torch.equal(pack_mask_1ch(keep, hy.geometry)[0, 0], four.amin(0))
    assert (m[1:] == 0).any() and (m[1:] == 1).any()
    lat = cond[0, :z]
    assert torch.all(lat[:, m == 0] == 0) and lat[:, m == 1].abs().sum() > 0  # generated voxels carry nothing


def test_context_sees_the_conditioning_image(hy):
    video, _ = _clip()
    a = hy.encode_context("a red square", video[0])
    b = hy.encode_context("a red square", 1 - video[0])
    assert set(a) == {"encoder_hidden_states", "encoder_attention_mask", "pooled_projections", "guidance"}
    assert torch.equal(a["pooled_projections"], b["pooled_projections"])  # CLIP text: prompt only
    assert not torch.allclose(a["encoder_hidden_states"], b["encoder_hidden_states"])  # Llava sees the image


def test_training_on_hunyuan_lowers_the_loss_and_targets_only_blocks(hy):
    video, mask = _clip()
    samples = [R.motion_sample(video, mask, "a red square moves right")]
    cfg = toy_config(steps=80, rank=4, batch_size=2, lr=5e-3, colour_aug=None)
    cached = cache_samples(hy, samples, cfg, progress=False)
    assert cached[0].condition.shape[1] == hy.geometry.z_dim + 1
    before = fixed_loss(hy, cached)
    run = train_lora(hy, samples, cfg, progress=False)
    after = fixed_loss(hy, cached)
    assert after < 0.8 * before, (before, after)
    assert run.config.targets == HUNYUAN_TARGETS
    keys = list(run.state_dict)
    assert any(k.startswith("single_transformer_blocks.0.proj_mlp") for k in keys)
    assert any("attn.add_q_proj" in k for k in keys) and any("ff_context.net.2" in k for k in keys)
    assert not any(k.startswith(("proj_out", "context_embedder")) for k in keys)


def test_region_weights_read_hunyuans_mask_channel(hy):
    from loraedit_nb.loss import region_weights

    video, mask = _clip()
    cond = C.build_condition(hy.vae, video, mask, adapter=hy.adapter)
    w = region_weights(cond, w_generate=2.0, w_keep=0.5, adapter=hy.adapter)
    m = cond[:, -1:]
    assert torch.equal(w, 0.5 * m + 2.0 * (1 - m))


def test_saved_lora_loads_in_stock_hunyuan_pipeline(tmp_path):
    bb = tiny_random_hunyuan(seed=3)
    video, mask = _clip()
    run = train_lora(bb, [R.motion_sample(video, mask, "a red square")],
                     toy_config(steps=5, rank=4, batch_size=1, lr=1e-2, colour_aug=None), progress=False)
    path = run.save(tmp_path / "lora", bb)
    x = torch.randn(1, 9, 3, 4, 4)
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 20, 16),
              encoder_attention_mask=torch.ones(1, 20), pooled_projections=torch.randn(1, 8), return_dict=False)
    with torch.no_grad():
        trained = bb.transformer(x, **kw)[0]
    fresh = tiny_random_hunyuan(seed=3)
    with torch.no_grad():
        untouched = fresh.transformer(x, **kw)[0]
    pipe = fresh.pipeline()  # the stock HunyuanVideoImageToVideoPipeline
    assert type(pipe).__name__ == "HunyuanVideoImageToVideoPipeline"
    pipe.load_lora_weights(str(path), weight_name="pytorch_lora_weights.safetensors", adapter_name="edit")
    with torch.no_grad():
        loaded = pipe.transformer(x, **kw)[0]
    assert not torch.allclose(trained, untouched, atol=1e-6)
    torch.testing.assert_close(loaded, trained, atol=1e-5, rtol=0)


def test_edit_video_on_hunyuan_returns_every_frame(hy, tmp_path):
    from loraedit_nb.inference import edit_video

    video, mask = _clip()
    edited = video[0].copy()
    edited[mask[0]] = [0.2, 0.3, 0.9]
    a = edit_video(hy, None, video, mask, edited, prompt="a blue square", seed=1, progress=False)
    b = edit_video(hy, None, video, mask, edited, prompt="a blue square", seed=1, progress=False)
    c = edit_video(hy, None, video, mask, edited, prompt="a blue square", seed=2, progress=False)
    assert a.video.shape == video.shape  # all T frames, aligned with the source
    assert np.array_equal(a.video, b.video) and not np.array_equal(a.video, c.video)
    comp = edit_video(hy, None, video, mask, edited, seed=1, composite=True, feather=0, progress=False)
    assert np.allclose(comp.video[~mask], video[~mask], atol=1e-6)


def test_hunyuan_backbone_roundtrips_through_a_folder(hy, tmp_path):
    path = hy.save_pretrained(tmp_path / "bb")
    bb = load_backbone(path)
    assert bb.adapter.family == "hunyuan" and bb.prompt_template == hy.prompt_template
    video, _ = _clip()
    a, b = hy.encode_context("a red square", video[0]), bb.encode_context("a red square", video[0])
    assert torch.equal(a["encoder_hidden_states"], b["encoder_hidden_states"])
    assert load_backbone("tiny-hunyuan").adapter.family == "hunyuan"


def test_token_replace_variant_is_refused_with_the_reason():
    from diffusers import HunyuanVideoTransformer3DModel

    from loraedit_nb.backbones import adapter_for

    tr = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8,
                                        num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=1,
                                        text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 2, 4),
                                        image_condition_type="token_replace")
    with pytest.raises(ValueError, match="no mask channel"):
        adapter_for(tr)


def test_single_given_later_frames_are_refused_not_dropped(hy):
    from loraedit_nb.inference import edit_video

    video, mask = _clip()
    with pytest.raises(ValueError, match="one mask channel per latent frame"):
        C.build_condition(hy.vae, video, C.i2v_edit_mask(*video.shape[:3], last_frame=True), adapter=hy.adapter)
    with pytest.raises(ValueError, match="place_edited_frames=False"):
        edit_video(hy, None, video, mask, video[0], edited_frames={8: video[8]}, place_edited_frames=True,
                   progress=False)
    # whole latent frames given (frames 5..8) are expressible and kept
    m = C.i2v_edit_mask(*video.shape[:3])
    m[5:] = False
    cond = C.build_condition(hy.vae, video, m, adapter=hy.adapter)
    assert cond[0, -1, 2].min() == 1 and cond[0, -1, 1].max() == 0


def test_pipeline_call_is_gradient_free_and_keeps_user_callbacks(hy):
    from loraedit_nb.backbones import MaskedHunyuanI2VPipeline

    video, mask = _clip()
    cond = C.build_condition(hy.vae, video, mask, adapter=hy.adapter)
    pipe = hy.pipeline(MaskedHunyuanI2VPipeline)
    seen = []

    def cb(p, i, t, kw):
        seen.append(sorted(kw))
        return {}
    out = pipe(image=_pil(video[0]), prompt="a red square", condition=cond, height=32, width=32, num_frames=9,
               num_inference_steps=2, prompt_template=hy.prompt_template, max_sequence_length=16,
               callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["prompt_embeds"], output_type="pil")
    assert out.shape == (1, 9, 32, 32, 3) and seen == [["latents", "prompt_embeds"]] * 2
