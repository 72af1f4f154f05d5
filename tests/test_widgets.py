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
    assert Wg.canvas_to_pixel(10, 10, (0.5, 2.0), 32, 32) == (20, 5)  # per-axis scale of a shrunk canvas
    # whole zooms up to 512 px on the long side, a shrink beyond
    assert Wg.default_scale(32, 32) == 16 and Wg.default_scale(144, 256) == 2 and Wg.default_scale(200, 200) == 2
    assert Wg.default_scale(300, 400) == 1 and Wg.default_scale(480, 832) == 512 / 832
    assert Wg.canvas_size(480, 832, 512 / 832) == (512, 295)
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


SHAPES = [(32, 32), (144, 256), (480, 832), (720, 1280), (256, 144)]


@pytest.mark.parametrize("H,W", SHAPES)
def test_canvas_has_a_fixed_css_size_at_most_512_with_the_aspect_kept(H, W):
    p = Wg.MaskPainter(np.zeros((2, H, W, 3), np.float32))
    cw, ch = p.canvas_width, p.canvas_height
    assert max(cw, ch) <= 512 and max(cw, ch) >= 256  # big enough to paint on, small enough to fit a screen
    assert abs(cw / ch - W / H) < 0.01  # aspect kept (up to rounding to whole canvas pixels)
    assert (p.canvas.width, p.canvas.height) == (cw, ch)  # the canvas' resolution ...
    lay = p.canvas.layout
    assert (lay.width, lay.height, lay.min_width, lay.min_height) == (f"{cw}px", f"{ch}px", f"{cw}px", f"{ch}px")
    assert lay.flex == "0 0 auto"  # ... is its CSS size: 1 canvas px = 1 CSS px, not stretched by the VBox
    assert p.layout.align_items == "flex-start"
    assert Wg._CANVAS_CLASS in p.canvas._dom_classes and "pixelated" in Wg._STYLE
    assert p.preview().shape == (ch, cw, 3)
    if max(H, W) <= 512:  # small frames: a whole zoom (crisp square blocks)
        assert float(p.scale).is_integer() and cw == W * p.scale and ch == H * p.scale


@pytest.mark.parametrize("H,W", SHAPES)
def test_canvas_positions_map_back_to_the_pixel_that_is_drawn_there(H, W):
    p = Wg.MaskPainter(np.zeros((2, H, W, 3), np.float32), brush_size=0)
    sx, sy = p.canvas_width / W, p.canvas_height / H
    for x, y in [(0, 0), (W - 1, H - 1), (W // 3, H // 5), (W // 2, H - 2)]:
        cx, cy = (x + 0.5) * sx, (y + 0.5) * sy  # the centre of the canvas area that pixel (x, y) covers
        assert tuple(map(int, p._pixel(cx, cy))) == (x, y)
    x, y = W // 3, H // 5
    p.on_mouse_down((x + 0.5) * sx, (y + 0.5) * sy)
    p.on_mouse_up((x + 0.5) * sx, (y + 0.5) * sy)
    assert p.mask[0, y, x] and p.mask.sum() == 1
    # the drawn picture puts the mark at the same canvas place
    img = p.preview().astype(int)
    cy, cx = int((y + 0.5) * sy), int((x + 0.5) * sx)
    assert img[cy, cx, 0] > img[cy, cx, 1]


def test_shrunk_preview_keeps_the_outline_visible():
    frame = np.zeros((720, 1280, 3), np.float32)
    fm = np.zeros((720, 1280), bool)
    fm[300:400, 500:700] = True
    img = Wg.preview_frame(frame, fm, Wg.default_scale(720, 1280))
    assert img.shape == (288, 512, 3)
    s = 512 / 1280
    assert img[int(350 * s), int(600 * s), 0] > 50  # tinted inside
    assert (img[..., 0] > 200).any()  # the outline survives the shrink
    assert img[10, 10].sum() == 0


def _painter(**kw):
    video, truth = moving_square(T=5, H=32, W=32, size=8, step=2)
    start = np.zeros_like(truth)
    start[0] = truth[0]
    return Wg.MaskPainter(video, start, **kw), video, truth


def test_status_says_what_every_action_changed():
    p, video, truth = _painter()
    seen = [p.status.value]

    def changed(*words):
        v = p.status.value
        assert v != seen[-1], f"status did not change: {v}"
        for w in words:
            assert w in v, (w, v)
        seen.append(v)

    p.propagate()
    changed("propagated frame 0", "4 other frames", "marked on average", "5/5 frames have a mask")
    p.dilate()
    changed("dilated every frame by 1 px", "→")
    p.frame.value = 2
    changed("frame 2")
    p.clear_frame()
    changed("cleared frame 2", "4/5 frames")
    p.undo()
    changed("undid: cleared frame 2", "5/5 frames")
    p.tool.value = "box eraser"
    changed("tool: box eraser", "drag a rectangle")
    p.size.value = 3
    changed("radius: 3 px", "size 3")
    s = p.scale
    p.on_mouse_down(2 * s, 2 * s)
    p.on_mouse_move(5 * s, 6 * s)
    p.on_mouse_up(5 * s, 6 * s)
    changed("cleared the box x 2–5, y 2–6 on frame 2")
    p.tool.value = "brush"
    p.on_mouse_down(20 * s, 4 * s)
    p.on_mouse_move(24 * s, 4 * s)
    p.on_mouse_up(24 * s, 4 * s)
    changed("painted", "px on frame 2 (one stroke)")
    p.undo()
    changed("undid: painted")
    while p._undo:
        p.undo()
    np.testing.assert_array_equal(p.mask[0], truth[0])  # back to the start
    assert not p.mask[1:].any()
    p.undo()
    changed("nothing to undo")


def test_status_names_the_variable_only_when_told():
    p, *_ = _painter()
    assert "painter.mask" not in p.status.value and "read it with <code>.mask</code>" in p.status.value
    q, *_ = _painter(name="bunny_painter")
    assert "read it as <code>bunny_painter.mask</code>" in q.status.value
    assert "<code>a&lt;b.mask</code>" in _painter(name="a<b")[0].status.value


def test_keyboard_is_given_back_when_the_pointer_leaves_or_on_escape():
    p, *_ = _painter()
    sent = []
    p.canvas.blur = lambda: sent.append("blur")
    s = p.scale
    p.on_mouse_down(3 * s, 3 * s)
    p.on_mouse_move(6 * s, 3 * s)
    assert not sent
    p.on_mouse_out(40 * s, 3 * s)  # leaving mid-drag ends the stroke and releases the focus
    assert sent == ["blur"] and p._drag is None
    p.on_key_down("a", False, False, False)
    assert sent == ["blur"]
    p.on_key_down("Escape", False, False, False)
    assert sent == ["blur", "blur"]


def test_mimebundle_keeps_the_widget_and_adds_a_still_picture():
    import base64

    import cv2

    p, *_ = _painter(name="painter")
    data = p._repr_mimebundle_()
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == p.model_id
    png = base64.b64decode(data["image/png"])
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(img, p.preview())
    assert img.shape == (512, 512, 3)
    assert "MaskPainter" in data["text/plain"] and "frame 0" in data["text/plain"]
    # IPython's own formatter passes the bundle through (what a kernel sends)
    from IPython.core.formatters import DisplayFormatter

    fmt, _ = DisplayFormatter().format(p)
    assert {"image/png", "text/plain", "application/vnd.jupyter.widget-view+json"} <= set(fmt)


def test_static_pages_show_the_still_picture():
    """nbconvert: Markdown always shows the picture; HTML shows the (dead) widget view when the widget state was
    saved, unless the notebook goes through ``for_static_page``."""
    import nbformat
    from nbconvert import HTMLExporter, MarkdownExporter

    p, *_ = _painter()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("painter", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("execute_result", data=p._repr_mimebundle_(), execution_count=1)]
    nb.cells = [cell]
    state = {"application/vnd.jupyter.widget-state+json": {
        "version_major": 2, "version_minor": 0,
        "state": {p.model_id: {"model_name": "VBoxModel", "model_module": "@jupyter-widgets/controls",
                               "model_module_version": "2.0.0", "state": {}}}}}
    md, res = MarkdownExporter().from_notebook_node(nb)
    assert "![png]" in md and any(k.endswith(".png") for k in res["outputs"])
    html_no_state = HTMLExporter().from_notebook_node(nb)[0]
    nb.metadata["widgets"] = state  # what nbclient saves
    html_state = HTMLExporter().from_notebook_node(nb)[0]
    html_static = HTMLExporter().from_notebook_node(Wg.for_static_page(nb))[0]
    png = p._repr_mimebundle_()["image/png"][:40]
    assert png in html_no_state and png in html_static and png not in html_state
    assert Wg.WIDGET_VIEW in nb.cells[0].outputs[0].data  # the original is left as it was


def test_tool_buttons_come_from_the_tool_table():
    p, *_ = _painter()
    assert p.tool.options == Wg.TOOLS == tuple(Wg.TOOL_TABLE)
    assert list(p.tool.tooltips) == [Wg.TOOL_TABLE[k].help for k in Wg.TOOLS]
    kinds = {k: (type(t), t.value) for k, t in Wg.TOOL_TABLE.items()}
    assert kinds == {"brush": (Wg.StrokeTool, True), "eraser": (Wg.StrokeTool, False),
                     "box": (Wg.BoxTool, True), "box eraser": (Wg.BoxTool, False),
                     "click +": (Wg.ClickTool, True), "click −": (Wg.ClickTool, False)}


def test_a_drag_keeps_the_tool_and_frame_it_started_on():
    p, *_ = _painter()
    s = p.scale
    p.frame.value, p.tool.value = 3, "box"
    p.on_mouse_down(1 * s, 1 * s)
    p.tool.value, p.frame.value = "eraser", 4  # changed from code mid-drag: the box still lands on frame 3
    p.on_mouse_up(3 * s, 3 * s)
    assert p.mask[3, 1:4, 1:4].all() and p.mask[3].sum() == 9 and not p.mask[4].any()
    assert "filled the box x 1–3, y 1–3 on frame 3" in p.status.value
