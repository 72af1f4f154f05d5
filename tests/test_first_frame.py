"""The in-tutorial first-frame editor (FLUX.1 Kontext through diffusers) on a tiny random pipeline built offline."""

import numpy as np
import pytest

from loraedit_nb import first_frame as F
from loraedit_nb.video import InputError


@pytest.fixture(scope="module")
def editor():
    return F.tiny_editor()


def _frame(H=40, W=56):
    rng = np.random.default_rng(0)
    return rng.random((H, W, 3)).astype(np.float32)


def test_the_edit_stays_inside_the_mask_at_the_frames_own_size(editor):
    frame = _frame()  # not a multiple of 16: the editor runs at 32 x 48 and the result comes back at 40 x 56
    mask = np.zeros((40, 56), bool)
    mask[10:30, 20:40] = True
    out = F.edit_first_frame(frame, "make the disc green", editor=editor, mask=mask, steps=2)
    assert out.shape == frame.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert F.change_outside(frame, out, mask) == 0.0  # outside the (feathered) mask: the source, exactly
    assert np.abs(out - frame)[mask].mean() > 0.02  # inside: the editor's output (noise, for random weights)
    free = F.edit_first_frame(frame, "make the disc green", editor=editor, mask=mask, keep_outside_mask=False, steps=2)
    assert F.change_outside(frame, free, mask) > 0.02  # what the compositing prevents
    again = F.edit_first_frame(frame, "make the disc green", editor=editor, mask=mask, steps=2)
    np.testing.assert_allclose(out, again, atol=2e-3)  # seeded (CPU kernels may differ in the last bits)


def test_bad_input_names_the_fix(editor, tmp_path):
    frame = _frame(32, 32)
    with pytest.raises(InputError, match="instruction is empty"):
        F.edit_first_frame(frame, "  ", editor=editor)
    with pytest.raises(InputError, match=r"mask\[0\]"):
        F.edit_first_frame(frame, "make it red", editor=editor, mask=np.ones((9, 32, 32), bool))
    with pytest.raises(InputError, match="mask is empty"):
        F.edit_first_frame(frame, "make it red", editor=editor, mask=np.zeros((32, 32), bool))
    with pytest.raises(FileNotFoundError, match="huggingface-cli login.*read_image"):
        F.load_editor(tmp_path / "no_such_folder")


def test_a_saved_editor_folder_loads_like_the_hub_one(editor, tmp_path):
    editor.save_pretrained(tmp_path / "kontext")
    import torch

    pipe = F.load_editor(tmp_path / "kontext", dtype=torch.float32, device="cpu")
    frame = _frame(32, 32)
    a = F.edit_first_frame(frame, "make it red", editor=editor, steps=2)
    b = F.edit_first_frame(frame, "make it red", editor=pipe, steps=2)
    np.testing.assert_allclose(a, b, atol=2e-3)  # same weights (CPU kernels may differ in the last bits)


def test_the_cli_edits_frame_0_inside_the_clips_mask(tmp_path, capsys):
    from loraedit_nb import masks as M
    from loraedit_nb.__main__ import main
    from loraedit_nb.video import read_image, write_image

    frame = _frame(32, 48)
    write_image(tmp_path / "f0.png", frame)
    mask = np.zeros((5, 32, 48), bool)
    mask[:, 8:24, 16:32] = True
    M.save_npz(tmp_path / "mask.npz", mask)
    main(["first-frame", "--image", str(tmp_path / "f0.png"), "--instruction", "make it red", "--mask",
          str(tmp_path / "mask.npz"), "--tiny", "--steps", "2", "--out", str(tmp_path / "edited.png")])
    assert "change outside the mask 0.0000" in capsys.readouterr().out
    out = read_image(tmp_path / "edited.png")
    src = read_image(tmp_path / "f0.png")
    assert out.shape == (32, 48, 3) and np.abs(out - src)[mask[0]].mean() > 0.02


def test_the_gpu_options_store_fp8_and_offload_instead_of_moving(editor, tmp_path, monkeypatch):
    """fp8=True (24 GB cards) must leave the transformer's weights in float8 and the rest as loaded; on a GPU,
    offload=True must hand placement to diffusers' model CPU offload rather than move everything to the device."""
    import torch
    from diffusers import FluxKontextPipeline

    editor.save_pretrained(tmp_path / "kontext")
    pipe = F.load_editor(tmp_path / "kontext", dtype=torch.bfloat16, device="cpu", offload=False, fp8=True)
    assert torch.float8_e4m3fn in {p.dtype for p in pipe.transformer.parameters()}
    assert {p.dtype for p in pipe.vae.parameters()} | {p.dtype for p in pipe.text_encoder_2.parameters()} == {
        torch.bfloat16}
    out = F.edit_first_frame(_frame(32, 32), "make it red", editor=pipe, steps=2)
    assert out.shape == (32, 32, 3) and np.isfinite(out).all()
    calls = []
    monkeypatch.setattr(FluxKontextPipeline, "enable_model_cpu_offload", lambda self, device: calls.append(device))
    monkeypatch.setattr(FluxKontextPipeline, "to", lambda self, *a, **k: calls.append(("to", a)))
    F.load_editor(tmp_path / "kontext", dtype=torch.float32, device="cuda", offload=True)
    assert calls == ["cuda"]
