"""Fig. 2's mask configurations (loraedit_nb.exploration): the masks, the measures, a run on a tiny backbone."""

import numpy as np
import pytest

from loraedit_nb import exploration as X
from loraedit_nb.conditioning import keep_mask
from tests.conftest import moving_square


def test_five_configurations_in_order_with_frame0_given():
    _, mask = moving_square(T=9, H=32, W=32, size=8, step=2)
    cfg = X.mask_configurations(mask)
    assert list(cfg) == list(X.CONFIGURATIONS) == ["first_frame", "full_video", "foreground", "background",
                                                     "first_last"]
    for m in cfg.values():
        assert m.shape == mask.shape and m.dtype == bool
        assert (keep_mask(m)[0] == 1).all()  # frame 0 always given
    assert cfg["first_frame"][1:].all()
    assert not cfg["full_video"].any()
    np.testing.assert_array_equal(cfg["foreground"][1:], mask[1:])
    np.testing.assert_array_equal(cfg["background"][1:], ~mask[1:])
    assert cfg["first_last"][1:-1].all() and not cfg["first_last"][-1].any()
    assert not mask[0].all() and mask[0].any() and not cfg["foreground"][0].any()  # input mask untouched
    assert mask[0].any()


def test_psnr_and_measure():
    a = np.zeros((3, 4, 4, 3), np.float32)
    b = a.copy()
    b[1] = 0.1
    assert X.psnr(a, a) == float("inf")
    assert X.psnr(a, b, np.zeros((3, 4, 4), bool)) != X.psnr(a, b, np.zeros((3, 4, 4), bool))  # NaN
    assert X.psnr(a[1:2], b[1:2]) == pytest.approx(20.0)
    pf = X.per_frame_psnr(a, b)
    assert pf.shape == (3,) and pf[0] == float("inf") and pf[1] == pytest.approx(20.0)
    edit = np.zeros((3, 4, 4), bool)
    edit[1:, :2] = True  # left half generated on frames 1, 2
    m = X.measure(b, a, edit)
    assert m["given_fraction"] == pytest.approx(0.5)
    assert m["keep_psnr"] == pytest.approx(X.psnr(b[1:, :, 2:], a[1:, :, 2:]))
    assert m["generated_psnr"] == pytest.approx(X.psnr(b[1:, :, :2], a[1:, :, :2]))
    assert m["first_psnr"] == float("inf")


def test_run_configurations_on_a_tiny_backbone():
    from loraedit_nb.models import tiny_random_backbone

    bb = tiny_random_backbone(vae="patchify", image_encoder=False, seed=2)
    video, mask = moving_square(T=5, H=32, W=32, size=8, step=2)
    res = X.run_configurations(bb, video, mask, prompt="a red square moves right", steps=2, progress=False)
    assert list(res) == list(X.CONFIGURATIONS)
    for key, r in res.items():
        assert r.output.shape == video.shape and r.condition.shape == video.shape
        assert r.title == X.CONFIGURATIONS[key]
    assert np.isnan(res["first_frame"].keep_psnr) and np.isnan(res["full_video"].generated_psnr)
    # the condition greys exactly the generated pixels after frame 0
    fg = res["foreground"]
    np.testing.assert_allclose(fg.condition[1:][mask[1:]], 0.5)
    np.testing.assert_array_equal(fg.condition[1:][~mask[1:]], video[1:][~mask[1:]])
    table = X.results_table(res)
    assert table.count("\n") == 6 and "(b) full video given" in table and "—" in table
