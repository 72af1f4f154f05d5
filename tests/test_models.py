import numpy as np
import pytest
import torch
from PIL import Image

from loraedit_nb.models import TOY_DIR, load_backbone


def test_tiny_random_has_wan_i2v_shape(tiny):
    c = tiny.transformer.config
    assert c.in_channels == 2 * tiny.vae.config.z_dim + 4 == 36
    assert c.image_dim is not None and tiny.has_image_encoder
    assert tiny.geometry.temporal == 4 and tiny.geometry.spatial == 8
    emb = tiny.encode_prompt(["a red disc moves left", "a blue square"])
    assert emb.shape == (2, 512, c.text_dim)
    assert tiny.encode_image(np.zeros((64, 64, 3), np.float32)).shape[-1] == c.image_dim


def test_save_pretrained_roundtrip_through_load_backbone(tiny, tmp_path):
    path = tiny.save_pretrained(tmp_path / "bb")
    bb = load_backbone(path)
    assert type(bb.transformer) is type(tiny.transformer) and type(bb.vae) is type(tiny.vae)
    assert bb.max_sequence_length == tiny.max_sequence_length
    torch.manual_seed(0)
    x = torch.randn(1, 36, 3, 8, 8)
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 512, 32),
              encoder_hidden_states_image=torch.randn(1, 17, 32), return_dict=False)
    with torch.no_grad():
        torch.testing.assert_close(bb.transformer(x, **kw)[0], tiny.transformer(x, **kw)[0], atol=1e-5, rtol=0)
    assert torch.equal(bb.encode_prompt("a red disc"), tiny.encode_prompt("a red disc"))


def test_stock_pipeline_runs_on_tiny_backbone(tiny):
    pipe = tiny.pipeline()
    img = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
    out = pipe(image=img, prompt="a red disc", height=64, width=64, num_frames=5, num_inference_steps=2,
               guidance_scale=1.0, output_type="np", generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, 5, 64, 64, 3)


def test_unknown_backbone_names_the_choices(tmp_path):
    with pytest.raises(FileNotFoundError, match="tiny-random"):
        load_backbone("no/such/thing/here")
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="missing"):
        load_backbone(tmp_path / "x")


def test_shipped_toy_backbone_loads_and_generates():
    assert (TOY_DIR / "transformer").is_dir(), "data/toy_backbone must ship with the repository"
    from loraedit_nb.backbones import MaskedWanI2VPipeline
    from loraedit_nb.conditioning import build_condition, i2v_edit_mask
    from loraedit_nb.toyworld import render_scene, sample_scene

    bb = load_backbone("toy")
    d = bb.defaults
    scene = render_scene(sample_scene(3), size=d["height"], frames=d["num_frames"])
    cond = build_condition(bb.vae, scene.video, i2v_edit_mask(*scene.mask.shape))
    pipe = bb.pipeline(MaskedWanI2VPipeline)
    out = pipe(image=Image.fromarray((scene.video[0] * 255).astype(np.uint8)), prompt=scene.caption,
               condition=cond, height=d["height"], width=d["width"], num_frames=d["num_frames"],
               num_inference_steps=4, guidance_scale=1.0, max_sequence_length=bb.max_sequence_length,
               output_type="np", generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, d["num_frames"], d["height"], d["width"], 3)
    assert np.isfinite(out).all()


def test_load_clip_for_the_notebooks():
    from loraedit_nb.data import load_clip

    toy = load_clip("toy", frames=9, height=32, width=32)
    assert toy.video.shape == (9, 32, 32, 3) and toy.mask.shape == (9, 32, 32) and toy.ground_truth is not None
    assert sorted(toy.edited_frames) == [0, 8] and toy.edit is not None
    bunny = load_clip("bunny", frames=9, height=32, width=64)
    assert bunny.video.shape == (9, 32, 64, 3) and bunny.mask.shape == (9, 32, 64) and bunny.ground_truth is None
    assert bunny.mask[1:].any() and bunny.edited_frames[0].shape == (32, 64, 3)
    with pytest.raises(ValueError, match="toy' or 'bunny"):
        load_clip("other", frames=9, height=32, width=32)


def test_fingerprint_tells_retrained_weights_apart_but_ignores_an_attached_lora():
    from loraedit_nb.lora import add_lora
    from loraedit_nb.models import tiny_random_backbone

    a, b = tiny_random_backbone(seed=0, image_encoder=False), tiny_random_backbone(seed=1, image_encoder=False)
    fa = a.fingerprint()
    assert fa != b.fingerprint() and fa == tiny_random_backbone(seed=0, image_encoder=False).fingerprint()
    add_lora(a.transformer, rank=4)
    assert a.fingerprint() == fa
