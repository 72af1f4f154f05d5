"""Metric unit tests with known answers."""

import math

import numpy as np
import pytest

from loraedit_nb import evaluation as E


def _textured(T=6, H=48, W=64, shift=2, seed=0):
    """A smooth random texture translating right by `shift` px per frame (wrap-around)."""
    import cv2

    r = np.random.default_rng(seed)
    base = cv2.GaussianBlur(r.random((H, W + T * shift, 3)).astype(np.float32), (0, 0), 2.0)
    base = (base - base.min()) / (base.max() - base.min())
    return np.stack([base[:, (T - t) * shift : (T - t) * shift + W] for t in range(T)]).astype(np.float32)


def test_identical_videos():
    v = _textured()
    assert E.psnr(v, v) == math.inf
    assert E.ssim(v, v) == pytest.approx(1.0, abs=1e-5)


def test_psnr_known_value_and_masking():
    a = np.zeros((2, 16, 16, 3), np.float32)
    b = a.copy()
    b[:, :8] = 0.1  # MSE 0.01 on the top half -> 20 dB there
    top = np.zeros((2, 16, 16), bool)
    top[:, :8] = True
    assert E.psnr(a, b, top) == pytest.approx(20.0)
    assert E.psnr(a, b, ~top) == math.inf  # masked metrics ignore the masked-out region
    assert E.psnr(a, b) == pytest.approx(10 * np.log10(1 / 0.005))
    with pytest.raises(ValueError, match="empty"):
        E.psnr(a, b, np.zeros_like(top))


def test_masked_ssim_ignores_the_other_region():
    v = _textured()
    w = v.copy()
    w[:, :, :20] = np.random.default_rng(1).random(w[:, :, :20].shape)  # destroy the left part
    right = np.zeros(v.shape[:3], bool)
    right[:, :, 32:] = True  # far from the damage (SSIM window 11)
    assert E.ssim(v, w, right) > 0.99
    assert E.ssim(v, w, ~right) < 0.7


def test_warp_error_known_shift_and_reference():
    v = _textured(shift=2)
    still = np.repeat(v[:1], len(v), 0)
    noise = np.random.default_rng(2).random(v.shape).astype(np.float32)
    assert E.warp_error(still) < 1e-3  # nothing moves: perfect consistency
    assert E.warp_error(v) < 0.02  # a known 2-px shift is recovered by the flow
    assert E.warp_error(noise) > 5 * E.warp_error(v)
    f = E.optical_flow(v[1], v[2])
    assert np.median(f[..., 0][8:-8, 8:-8]) == pytest.approx(2.0, abs=0.3)  # content moves right: a[y,x] ~ b[y,x+2]


def test_motion_fidelity_same_vs_opposite_motion():
    v = _textured(shift=2)
    region = np.ones(v.shape[:3], bool)
    same = E.motion_fidelity(v, v, region)
    assert same["cosine"] > 0.99 and same["epe_px"] < 1e-3
    opposite = E.motion_fidelity(v, v[::-1].copy(), region)
    assert opposite["cosine"] < -0.5 and opposite["epe_px"] > 2.0


def test_evaluate_edit_fields_and_clip_skips_offline(monkeypatch):
    v = _textured()
    m = np.zeros(v.shape[:3], bool)
    m[:, 10:30, 10:30] = True
    out = E.evaluate_edit(v, v, m, ground_truth=v)
    assert out["bg_psnr"] == math.inf and out["gt_psnr_region"] == math.inf
    assert out["motion_cosine"] > 0.9
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(UserWarning, match="skipped"):
        assert E.clip_scores(v, "a texture") is None


def test_region_colour_error_prefers_the_right_colour():
    gt = np.zeros((3, 8, 8, 3), np.float32)
    gt[:, 2:6, 2:6] = [0, 1, 0]  # a green square
    region = np.zeros((3, 8, 8), bool)
    region[:, 2:6, 2:6] = True
    wrong = gt.copy()
    wrong[:, 2:6, 2:6] = [0, 0, 1]  # sharp, but blue
    blurry = gt.copy()
    blurry[:, 2:6, 2:6] = [0.1, 0.7, 0.1]  # dull, but green
    assert E.region_colour_error(gt, gt, region) == 0
    assert E.region_colour_error(gt, blurry, region) < E.region_colour_error(gt, wrong, region)


def test_paper_claims_say_reproduced_or_not_from_the_rows():
    from loraedit_nb.comparisons import paper_claims, variant_mean
    from loraedit_nb.evaluation import claims_markdown

    def rows(bg_motion, late_app):
        out = []
        for kind in ("recolour", "colour_shift"):
            for v, bg, late in (("untuned", 23.0, 8.0), ("naive_lora", 32.0, 9.0), ("motion", bg_motion, 9.6),
                                ("motion+appearance", 37.0, late_app), ("motion+appearance_placed", 37.0, 11.7)):
                out.append({"variant": v, "kind": kind, "bg_psnr": bg,
                            "gt_psnr_region_late": late if kind == "colour_shift" else float("nan")})
        return out

    r = rows(36.7, 9.9)
    assert variant_mean(r, "motion", "bg_psnr") == 36.7 and np.isnan(variant_mean(r, "motion", "bg_psnr",
                                                                         "shape_swap"))
    text = paper_claims(r)
    assert "**reproduced**: the mask-aware LoRA keeps the background best" in text
    assert "**not reproduced at toy size**: the difference (+0.3 dB)" in text
    assert "this is what makes the later frame arrive here" in text
    assert "goes the wrong way" in paper_claims(rows(36.7, 8.9))  # appearance 0.7 dB below motion only
    text = paper_claims(rows(32.2, 12.0))  # background within noise of naive LoRA; appearance clearly ahead
    assert "**not reproduced in this run**" in text and "**reproduced**: the appearance regime follows" in text
    assert claims_markdown({"a": True, "b": False}) == ("* ✓ holds in this run — a\n"
                                                        "* ✗ does **not** hold in this run — b")


def test_object_fidelity_counts_near_pixels_and_vanished_frames():
    gt = np.zeros((4, 8, 8, 3), np.float32)
    obj = np.zeros((4, 8, 8), bool)
    obj[:, 2:6, 2:6] = True
    gt[obj] = [0, 1, 0]
    out = gt.copy()
    out[2][obj[2]] = [0.5, 0.5, 0.5]  # frame 2: the object is gone (grey), distance 0.87 > 0.35
    out[3, 2:4, 2:6] = [0.1, 0.9, 0.1]  # frame 3: half the object slightly off (0.17), still near
    out[0][obj[0]] = 0  # frame 0 is the given frame: not counted
    f = E.object_fidelity(gt, out, obj)
    assert f == {"gt_near_share": pytest.approx(2 / 3), "vanished_frames": 1}
    assert E.object_fidelity(gt, out, obj, tol=0.1)["vanished_frames"] == 1  # frame 3 still half near
    assert E.object_fidelity(gt, out, obj, tol=0.1)["gt_near_share"] == pytest.approx((16 + 8) / 48)


def test_summary_table_names_rows_as_the_paper_and_gives_spreads_over_seeds():
    from loraedit_nb.comparisons import summary_table

    rows = [{"variant": v, "seed": s, "case": c, "bg_psnr": b + s + c, "frame0_psnr": f, "vanished_frames": s}
            for s in (0, 1, 2) for c in (0, 1)
            for v, b, f in (("motion", 30.0, 36.0), ("motion_honour", float("inf"), float("inf")))]
    table = summary_table(rows, ("motion", "motion_honour", "untuned"))
    lines = table.splitlines()
    assert len(lines) == 4 and "untuned" not in table  # no rows, no line
    motion = lines[2].split(" | ")
    assert motion[0] == "| LoRA-Edit (motion)"
    assert motion[1] == "31.50 ± 1.00"  # per-seed means 30.5, 31.5, 32.5: mean 31.5, sample std 1.0
    assert motion[5] == "2.0 ± 2.0"  # vanished: the count over the two cases per seed (0, 2, 4)
    honour = lines[3].split(" | ")
    assert honour[1] == "exact" and honour[6] == "exact"
    single = summary_table([r for r in rows if r["seed"] == 0], ("motion",))
    assert "±" not in single and "| 30.50 |" in single


def test_new_pixel_fill_scores_what_frame_0_cannot_carry():
    """1 for the ground truth, 0 for the source (a square's corners turned back into the disc), in between for
    half; frame 0 is not counted. The cases mark the corners, the revealed side and the grown rim."""
    from loraedit_nb.comparisons import appearance_cases
    from loraedit_nb.evaluation import new_pixel_fill

    cases = appearance_cases(3)
    assert [c.kind for c in cases] == ["corner_swap", "reveal", "grow"]
    for c in cases:
        assert c.new_pixels[1:].any() and not (c.new_pixels & ~c.object_mask).any()
        assert new_pixel_fill(c.source, c.ground_truth, c.ground_truth, c.new_pixels) == 1.0
        assert new_pixel_fill(c.source, c.ground_truth, c.source, c.new_pixels) == 0.0
        half = c.source.copy()
        half[:, :, ::2] = c.ground_truth[:, :, ::2]  # every other column edited
        assert 0.2 < new_pixel_fill(c.source, c.ground_truth, half, c.new_pixels) < 0.8
    box, union = appearance_cases(3)[2], appearance_cases(3, mask="union")[2]
    assert (box.new_pixels & ~box.mask).any() and not (union.new_pixels & ~union.mask).any()  # grow leaves the box
    assert not (cases[0].new_pixels & ~cases[0].mask).any()  # the square's corners fit the disc's box
