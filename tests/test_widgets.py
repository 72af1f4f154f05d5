"""The mask painter: its plain functions (headless) and the widget's construction and wiring (no browser)."""

import numpy as np
import pytest

from loraedit_nb import widgets as Wg
from tests.conftest import moving_square


def test_paint_brush_and_eraser_return_new_masks():
    m = np.zeros((3, 16, 16), bool)
    a = Wg.paint(m, 1, 8, 8, 2)
    assert not m.any(), "input must not be modified"
    assert a[1, 8, 8] and a[1].sum() > 5 and not a[0].any() and not a[2].any()
    assert not a[1, 8, 12] and not a[1, 0, 0]
    b = Wg.paint(a, 1, 8, 8, 1, value=False)
    assert not b[1, 8, 8] and b[1].sum() < a[1].sum()
    tiny = Wg.paint(m, 0, 3.7, 5.2, 0)  # radius 0 still paints the pixel under the cursor
    assert tiny[0, 5, 3] and tiny.sum() == 1
    assert Wg.paint(m, -1, 0, 0, 1)[2, 0, 0]  # negative frame index
    with pytest.raises(IndexError, match="out of range"):
        Wg.paint(m, 3, 0, 0, 1)


def test_stroke_leaves_no_gaps():
    m = np.zeros((1, 8, 32), bool)
    s = Wg.stroke(m, 0, [(1, 4), (30, 4)], 1)
    assert s[0, 4, 1:31].all()
    assert Wg.stroke(m, 0, [], 1).sum() == 0


def test_box_any_corner_order_and_clipping():
    m = np.zeros((2, 10, 10), bool)
    a = Wg.box(m, 0, 6, 7, 2, 3)  # dragged up-left
    assert a[0, 3:8, 2:7].all() and a[0].sum() == 25 and not a[1].any()
    b = Wg.box(a, 0, 4, 4, 40, 40, value=False)
    assert not b[0, 4:, 4:].any() and b[0, 3, 2]
    c = Wg.box(m, 1, -5, -5, 1, 1)
    assert c[1].sum() == 4


def test_propagate_follows_the_object_both_ways():
    video, truth = moving_square(T=9, H=64, W=64, size=12, step=3)
    for t in (0, 4):
        start = np.zeros_like(truth)
        start[t] = truth[t]
        out = Wg.propagate(video, start, t)
        np.testing.assert_array_equal(out[t], truth[t])
        iou = [(out[k] & truth[k]).sum() / (out[k] | truth[k]).sum() for k in range(9)]
        assert min(iou) > 0.6, iou


def test_dilate_and_clear():
    m = Wg.paint(np.zeros((2, 12, 12), bool), 0, 6, 6, 0)
    d = Wg.dilate(m, 1)
    assert d[0].sum() == 5 and not d[1].any()
    assert not Wg.clear(d).any()
    e = Wg.clear(Wg.paint(d, 1, 2, 2, 0), 0)
    assert not e[0].any() and e[1].sum() == 1


def test_canvas_mapping_and_preview():
    assert Wg.canvas_to_pixel(33, 15, 16, 32, 32) == (33 / 16, 15 / 16)
    x, y = Wg.canvas_to_pixel(-5, 1e6, 16, 32, 32)
    assert x == 0 and 31 < y < 32
    assert Wg.default_scale(32, 32) == 16 and Wg.default_scale(480, 832) == 1
    frame = np.zeros((6, 6, 3), np.float32)
    fm = np.zeros((6, 6), bool)
    fm[1, 1] = True
    img = Wg.preview_frame(frame, fm, 3)
    assert img.shape == (18, 18, 3) and img.dtype == np.uint8
    assert img[4, 4, 0] > img[4, 4, 1] and img[17, 17].sum() == 0  # tinted red inside, untouched far away


def test_widget_constructs_headless_and_routes_through_the_plain_functions():
    video, truth = moving_square(T=5, H=32, W=32, size=8, step=2)
    p = Wg.MaskPainter(video)
    import ipywidgets

    assert isinstance(p, ipywidgets.VBox) and p.scale == 16
    assert p.mask.shape == (5, 32, 32) and not p.mask.any()
    s = p.scale
    # brush drag on frame 0
    p.on_mouse_down(10 * s, 22 * s)
    p.on_mouse_move(14 * s, 22 * s)
    p.on_mouse_up(14 * s, 22 * s)
    expect = Wg.stroke(Wg.paint(np.zeros_like(truth), 0, 10, 22, 2), 0, [(10, 22), (14, 22)], 2)
    np.testing.assert_array_equal(p.mask, expect)
    # box on frame 2, then undo it
    p.frame.value = 2
    p.tool.value = "box"
    p.on_mouse_down(1 * s, 1 * s)
    p.on_mouse_move(3 * s, 3 * s)
    p.on_mouse_up(3 * s, 3 * s)
    assert p.mask[2, 1:4, 1:4].all() and p.mask[2].sum() == 9
    p.undo()
    assert not p.mask[2].any()
    # propagate from frame 0 and dilate go through the functions
    p.frame.value = 0
    p.mask = truth
    p.propagate()
    np.testing.assert_array_equal(p.mask, Wg.propagate(video, truth, 0))
    before = p.mask
    p.dilate()
    np.testing.assert_array_equal(p.mask, Wg.dilate(before, 1))
    p.clear_frame()
    assert not p.mask[0].any()
    m = p.mask
    m[:] = True  # .mask is a copy
    assert not p.mask[0].any()
    # propagating an empty frame explains itself instead of wiping the mask
    p.propagate()
    assert "empty" in p.status.value
    with pytest.raises(ValueError):
        Wg.MaskPainter(video, np.zeros((5, 16, 16), bool))
