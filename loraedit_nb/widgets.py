"""Paint a spatiotemporal mask in a notebook: :class:`MaskPainter` (ipywidgets + ipycanvas).

The widget is a thin shell. Everything it does to the mask is one of the plain functions below, which take and
return the package's mask convention (bool ``(T, H, W)``, **True = edit**, see :mod:`loraedit_nb.masks`) and run
headless, so a mask painted by hand can always be re-made in code:

* :func:`paint` — a round brush dab (``value=True``) or eraser dab (``value=False``) on one frame;
* :func:`stroke` — dabs along a polyline (a mouse drag);
* :func:`box` — fill (or clear) a rectangle on one frame;
* :func:`propagate` — carry the current frame's mask to every other frame with optical flow
  (:func:`loraedit_nb.masks.propagate_flow`, forward and backward in time);
* :func:`dilate` — grow the region on every frame (:func:`loraedit_nb.masks.dilate`);
* :func:`clear` — empty one frame or the whole mask.

Every function returns a **new** array (the input is never modified), which is what makes the widget's undo a
simple stack. The widget's tools (:data:`TOOL_TABLE`) say what a press, a drag and a release do with them:
:class:`StrokeTool` (brush, eraser), :class:`BoxTool` (box, box eraser) and :class:`ClickTool` (click +, click −:
SAM2 click-to-track, :mod:`loraedit_nb.segmentation`; every click re-tracks the object from all clicks so far and
the tracked mask replaces the painted one, which the brush can then correct).

The canvas is at most 512 px on its long side (:func:`default_scale`): tiny toy-world clips (32x32) are zoomed by
a whole factor, large frames shrunk; mouse positions are mapped back to pixels with :func:`canvas_to_pixel`.

On front-ends without custom widgets (GitHub's viewer, nbconvert's Markdown, some IDEs) the painter shows a still
picture instead (the frame on screen with its mask, as ``image/png``; :func:`for_static_page` makes nbconvert's
HTML show it too). Build the same mask in code with
:mod:`loraedit_nb.masks` (``from_boxes``, ``interpolate_boxes``, ``disc`` + ``propagate_flow``, ``dilate``) or
with the functions of this module.
"""

from __future__ import annotations

import base64
import html
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets
import numpy as np

from . import masks as M
from .video import check_video


# ----------------------------------------------------------------------------------------------- plain functions
def _check_frame_index(mask: np.ndarray, t: int) -> int:
    T = len(mask)
    if not -T <= t < T:
        raise IndexError(f"frame {t} is out of range for a {T}-frame mask (0..{T - 1})")
    return t % T


def _dab(height: int, width: int, x: float, y: float, r: float) -> np.ndarray:
    # centred on the pixel under (x, y): pixel i spans [i, i + 1), its centre is i + 0.5
    return M.disc(height, width, (int(np.floor(x)) + 0.5, int(np.floor(y)) + 0.5), max(float(r), 0.5))


def paint(mask: np.ndarray, t: int, x: float, y: float, r: float, value: bool = True) -> np.ndarray:
    """A round dab of radius ``r`` pixels centred on the pixel that contains point ``(x, y)`` of frame ``t``
    (pixel ``i`` spans ``[i, i + 1)``, so integer coordinates name pixels).

    ``value=True`` paints the edit region (brush), ``False`` erases it. A dab always covers at least that pixel
    (``r`` < 1 paints just it). Returns a new mask; ``mask`` is left unchanged.
    """
    return stroke(mask, t, [(x, y)], r, value)


def stroke(mask: np.ndarray, t: int, points: Sequence[tuple[float, float]], r: float, value: bool = True
           ) -> np.ndarray:
    """Dabs of radius ``r`` (as :func:`paint`) along the polyline ``points`` (``(x, y)`` pairs) on frame ``t``,
    spaced so that a fast mouse drag leaves no gaps. Returns a new mask."""
    mask = M.check_mask(mask)
    t = _check_frame_index(mask, t)
    out = mask.copy()
    _, H, W = mask.shape
    pts = [tuple(map(float, p)) for p in points]
    if not pts:
        return out
    step = max(0.5, float(r) / 2)
    centres = [pts[0]]
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:], strict=True):
        n = max(1, int(np.ceil(np.hypot(x1 - x0, y1 - y0) / step)))
        centres += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(1, n + 1)]
    frame = out[t]
    for x, y in centres:
        frame[_dab(H, W, x, y, r)] = bool(value)
    return out


def box(mask: np.ndarray, t: int, x0: float, y0: float, x1: float, y1: float, value: bool = True) -> np.ndarray:
    """Fill (``value=True``) or clear the rectangle between pixels ``(x0, y0)`` and ``(x1, y1)`` on frame ``t``.

    The two corners may come in any order (a drag up and to the left works) and both corner pixels are included.
    Returns a new mask.
    """
    mask = M.check_mask(mask)
    t = _check_frame_index(mask, t)
    _, H, W = mask.shape
    xa, xb = sorted((int(np.floor(x0)), int(np.floor(x1))))
    ya, yb = sorted((int(np.floor(y0)), int(np.floor(y1))))
    out = mask.copy()
    out[t, max(0, ya) : min(H, yb + 1), max(0, xa) : min(W, xb + 1)] = bool(value)
    return out


def propagate(video: np.ndarray, mask: np.ndarray, t: int = 0, *, method: str = "farneback") -> np.ndarray:
    """Carry frame ``t``'s mask to every other frame with dense optical flow (no model weights).

    Frames after ``t`` are propagated forward from ``t``, frames before it backward (the clip reversed), each
    with :func:`loraedit_nb.masks.propagate_flow`. Frame ``t`` is unchanged; **every other frame is replaced**.
    Returns a new mask.
    """
    video = check_video(video)
    mask = M.check_mask(mask, video)
    t = _check_frame_index(mask, t)
    return M.propagate_both_ways(video, mask[t], t, method=method)


def dilate(mask: np.ndarray, r: int = 1) -> np.ndarray:
    """Grow the edit region of every frame by ``r`` pixels (:func:`loraedit_nb.masks.dilate`). Returns a new mask."""
    return M.dilate(M.check_mask(mask), int(r))


def clear(mask: np.ndarray, t: int | None = None) -> np.ndarray:
    """Empty frame ``t`` (or every frame with ``t=None``). Returns a new mask."""
    out = M.check_mask(mask).copy()
    if t is None:
        out[:] = False
    else:
        out[_check_frame_index(out, t)] = False
    return out


def canvas_to_pixel(cx: float, cy: float, scale: float | tuple[float, float], height: int, width: int
                    ) -> tuple[float, float]:
    """Canvas coordinates -> pixel coordinates of the video, clamped to the frame.

    ``scale`` is the canvas pixels per video pixel: one number, or ``(sx, sy)`` when the two axes differ (a
    shrunk canvas is rounded to whole canvas pixels per axis). Pixel ``i`` spans ``[i, i + 1)``.
    """
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    x = min(max(cx / sx, 0.0), width - 1e-3)
    y = min(max(cy / sy, 0.0), height - 1e-3)
    return x, y


def canvas_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The canvas ``(width, height)`` in pixels for a ``height x width`` frame drawn at ``scale``."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def default_scale(height: int, width: int, target: int = 512) -> float:
    """Canvas pixels per video pixel so that the frame's long side is at most ``target`` pixels.

    Frames up to ``target`` get the largest **whole** zoom that fits (crisp square blocks: 16 for a 32x32 clip,
    2 for 144x256, 1 for 300x400); larger frames are shrunk to exactly ``target`` on the long side
    (``target / long``, e.g. 512/832 for 480x832).
    """
    long = max(int(height), int(width))
    return target // long if long <= target else target / long


def preview_frame(frame: np.ndarray, frame_mask: np.ndarray, scale: float = 1, *, alpha: float = 0.45
                  ) -> np.ndarray:
    """One frame with the edit region tinted and outlined (:func:`loraedit_nb.masks.overlay`), drawn at
    ``scale`` canvas pixels per video pixel, as uint8 ``(h, w, 3)`` ready for a canvas (``(w, h)`` =
    :func:`canvas_size`).

    Whole zooms repeat pixels (nearest, crisp); other zooms above 1 resample nearest; a shrink (``scale`` < 1)
    averages the frame (area) and draws the mask's tint and outline at the canvas' resolution (a canvas pixel is
    tinted when any video pixel under it is marked), so the outline and single-pixel dabs stay visible."""
    import cv2

    from .viz import upscale

    s = float(scale)
    H, W = frame_mask.shape
    size = canvas_size(H, W, s)
    if s >= 1:
        img = M.overlay(frame[None], frame_mask[None], alpha=alpha)[0]
        img = upscale(img, int(s)) if s.is_integer() else cv2.resize(img, size, interpolation=cv2.INTER_NEAREST)
    else:
        small = cv2.resize(np.ascontiguousarray(frame, np.float32), size, interpolation=cv2.INTER_AREA)
        # a canvas pixel is tinted when any video pixel under it is marked: a 1-px dab never vanishes
        small_mask = cv2.resize(frame_mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 1e-6
        img = M.overlay(small[None], small_mask[None], alpha=alpha)[0]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def draw_clicks(image: np.ndarray, clicks: Sequence, scale: float | tuple[float, float]) -> np.ndarray:
    """Mark clicks on a canvas image (uint8 ``(h, w, 3)``, ``scale`` canvas pixels per video pixel): a green dot
    for a positive click, a red one for a negative, each ringed in white, at the centre of its video pixel. Returns
    a new image."""
    import cv2

    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    out = np.ascontiguousarray(image.copy())
    r = max(3, int(round(min(out.shape[:2]) / 80)))
    for c in clicks:
        centre = (int((int(c.x) + 0.5) * sx), int((int(c.y) + 0.5) * sy))
        cv2.circle(out, centre, r + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, centre, r, (40, 200, 60) if c.positive else (230, 40, 40), -1, cv2.LINE_AA)
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 ``(H, W, 3)`` RGB image as PNG bytes."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


# ----------------------------------------------------------------------------------------------- the tools
# A drag on the canvas is press -> move ... -> release. Each tool says what those three do; the painter only routes
# mouse events to the tool chosen at the press. The mask changes go through the plain functions above.
@dataclass
class Drag:
    """A press-drag-release in progress: the ``tool`` and frame ``t`` it started on (they stay fixed until the
    release) and the pixel positions ``(x, y)`` it went through, the press first."""

    tool: StrokeTool | BoxTool | ClickTool
    t: int
    points: list[tuple[float, float]]


def _corners(a: tuple[float, float], b: tuple[float, float]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The pixel rectangle between positions ``a`` and ``b``: ``((x0, x1), (y0, y1))``, each pair sorted."""
    return sorted((int(a[0]), int(b[0]))), sorted((int(a[1]), int(b[1])))


@dataclass(frozen=True)
class _Tool:
    """What every tool has: its button's ``name``, ``help`` (the button's tooltip and the status line's hint),
    ``value`` (paint or erase, a positive or negative click) and ``verb`` (past tense, for the status line)."""

    name: str
    help: str
    value: bool
    verb: str


@dataclass(frozen=True)
class StrokeTool(_Tool):
    """Brush (``value=True``) or eraser (``False``): round dabs of radius ``size`` along the drag (:func:`paint`
    on the press, :func:`stroke` for every move). The whole drag is one undo step."""

    def press(self, painter: MaskPainter, drag: Drag) -> None:
        x, y = drag.points[0]
        painter._apply(paint(painter._mask, drag.t, x, y, painter.size.value, self.value),
                       f"{self.verb} on frame {drag.t} at ({int(x)}, {int(y)})")

    def move(self, painter: MaskPainter, drag: Drag, p: tuple[float, float]) -> None:
        # extend the stroke without a new undo entry: one drag = one undo step
        painter._amend(stroke(painter._mask, drag.t, [drag.points[-1], p], painter.size.value, self.value))
        drag.points.append(p)

    def release(self, painter: MaskPainter, drag: Drag, p: tuple[float, float]) -> None:
        # the stroke ends at its last move (``p`` adds nothing); now its size is known, name the undo step by it
        before = painter._undo_start()
        if before is None:
            return
        n = int((before[drag.t] != painter._mask[drag.t]).sum())
        painter._relabel(f"{self.verb} {n} px on frame {drag.t} (one stroke)")


@dataclass(frozen=True)
class BoxTool(_Tool):
    """Box (``value=True``) or box eraser (``False``): fill or clear the rectangle between the press and the
    release (:func:`box`); while dragging, only its outline is drawn. One undo step."""

    def press(self, painter: MaskPainter, drag: Drag) -> None:
        x, y = drag.points[0]
        painter._say(f"box from ({int(x)}, {int(y)}) on frame {drag.t}: drag, then release")

    def move(self, painter: MaskPainter, drag: Drag, p: tuple[float, float]) -> None:
        # a yellow outline over whole pixels, on the tool layer: the image (and the mask) stay as they are
        _, H, W = painter._mask.shape
        sx, sy = painter.canvas_width / W, painter.canvas_height / H
        (x0, x1), (y0, y1) = _corners(drag.points[0], p)
        layer = painter._tool_layer
        layer.clear()
        layer.stroke_style = "#ffff00"
        layer.line_width = 2
        layer.stroke_rect(x0 * sx, y0 * sy, (x1 - x0 + 1) * sx, (y1 - y0 + 1) * sy)

    def release(self, painter: MaskPainter, drag: Drag, p: tuple[float, float]) -> None:
        (xa, xb), (ya, yb) = _corners(drag.points[0], p)
        painter._tool_layer.clear()
        painter._apply(box(painter._mask, drag.t, xa, ya, xb, yb, self.value),
                       f"{self.verb} the box x {xa}–{xb}, y {ya}–{yb} on frame {drag.t}")


@dataclass(frozen=True)
class ClickTool(_Tool):
    """Click-to-track: a press is a positive (``value=True``) or negative click at that video pixel of the frame on
    screen (:meth:`MaskPainter.click`); SAM2 re-tracks the object from all clicks so far. One undo step."""

    def press(self, painter: MaskPainter, drag: Drag) -> None:
        x, y = drag.points[0]
        painter.click(x, y, positive=self.value, t=drag.t)

    def move(self, painter: MaskPainter, drag: Drag, p: tuple[float, float]) -> None:
        pass  # a click is its press

    def release(self, painter: MaskPainter, drag: Drag, p: tuple[float, float]) -> None:
        pass


TOOL_TABLE: dict[str, StrokeTool | BoxTool | ClickTool] = {tool.name: tool for tool in (
    StrokeTool("brush", "press and drag to paint the edit region", value=True, verb="painted"),
    StrokeTool("eraser", "press and drag to erase", value=False, verb="erased"),
    BoxTool("box", "drag a rectangle to fill it", value=True, verb="filled"),
    BoxTool("box eraser", "drag a rectangle to clear it", value=False, verb="cleared"),
    ClickTool("click +", "click on the object: SAM2 tracks it through the clip", value=True, verb="clicked"),
    ClickTool("click −", "click on what is not the object (a negative click)", value=False, verb="clicked"),
)}
"""Tool name (as on the painter's buttons) -> what a drag with it does."""
TOOLS = tuple(TOOL_TABLE)


# ----------------------------------------------------------------------------------------------- widget layout
_CANVAS_CLASS = "loraedit-painter-canvas"
# A style sheet carried by an (invisible) HTML widget, so it works wherever ipywidgets render (no JavaScript):
# canvas pixels stay crisp squares when the browser zooms or draws at a device-pixel ratio above 1.
_STYLE = (f"<style>.{_CANVAS_CLASS} {{ image-rendering: crisp-edges; image-rendering: pixelated; "
          "cursor: crosshair; }</style>")
_LABEL = {"description_width": "40px"}


def _fixed_canvas(width: int, height: int):
    """A 2-layer ``MultiCanvas`` (image, tool outline) of ``width x height`` canvas pixels.

    Its CSS size is fixed to that same size: the VBox must not stretch it to the cell's width (a stretched canvas
    can be taller than the screen, and the focus ipycanvas takes on a press then scrolls the page)."""
    from ipycanvas import MultiCanvas

    w, h = f"{width}px", f"{height}px"
    canvas = MultiCanvas(2, width=width, height=height,
                         layout=ipywidgets.Layout(width=w, height=h, min_width=w, min_height=h, flex="0 0 auto"))
    canvas.add_class(_CANVAS_CLASS)
    return canvas


def _tool_buttons() -> ipywidgets.ToggleButtons:
    """One toggle button per entry of :data:`TOOL_TABLE`, "brush" selected."""
    return ipywidgets.ToggleButtons(
        options=TOOLS, value="brush", description="tool", tooltips=[TOOL_TABLE[k].help for k in TOOLS],
        style={"button_width": "96px", **_LABEL},
        # a flex row: ipywidgets 8 would put the "tool" label on a line of its own
        layout=ipywidgets.Layout(display="flex", flex_flow="row", align_items="center", width="auto",
                                 flex="0 0 auto"))


def _slider(description: str, value: int, maximum: int, **kw) -> ipywidgets.IntSlider:
    return ipywidgets.IntSlider(value=value, min=0, max=maximum, description=description, style=_LABEL,
                                layout=ipywidgets.Layout(width="260px"), **kw)


def _button(description: str, icon: str, tooltip: str) -> ipywidgets.Button:
    # as wide as the label: nothing cut off
    return ipywidgets.Button(description=description, icon=icon, tooltip=tooltip,
                             layout=ipywidgets.Layout(width="auto"))


def _row(*children: ipywidgets.Widget) -> ipywidgets.HBox:
    return ipywidgets.HBox(list(children), layout=ipywidgets.Layout(flex_flow="row wrap", align_items="center",
                                                                     width="auto"))


# ----------------------------------------------------------------------------------------------- the widget
class MaskPainter(ipywidgets.VBox):
    """Paint a spatiotemporal edit mask over a video, frame by frame.

    ``MaskPainter(video, mask=None, name=None)``: ``video`` float ``(T, H, W, 3)`` in [0, 1]; ``mask`` an
    optional starting mask (bool ``(T, H, W)``, True = edit); ``name`` the variable you keep it in, so the status
    line can say ``name.mask``. Display it (it is an ``ipywidgets.VBox``), paint, then read :attr:`mask`.

    Tools: **brush** / **eraser** (round, ``size`` = radius in video pixels), **box** / **box eraser** (drag a
    rectangle), **click +** / **click −** (click-to-track: each click re-tracks the object through the whole clip
    from all clicks so far, :meth:`click`; green and red dots mark the clicks on their frame), a frame slider,
    **propagate** (carry the shown frame's mask to every other frame with optical flow), **dilate** (grow by 1 px on
    every frame), **clear frame**, **forget clicks** (start a new set of clicks; the mask stays), **undo**. The red
    tint is the edit region.

    ``segmenter``: what the clicks track with. ``"auto"`` (default) loads SAM2.1 tiny at the first click
    (:func:`loraedit_nb.segmentation.load_segmenter`); where its weights are not available the painter says so once
    and the flow stand-in (:class:`loraedit_nb.segmentation.FlowTracker`) takes over. Or pass a loaded segmenter,
    or a name for ``load_segmenter``.
    The status line says what the last action changed. What each tool does to a drag: :data:`TOOL_TABLE`.

    The canvas has a fixed size: by default the long side is at most 512 screen pixels (:func:`default_scale`;
    tiny clips are zoomed by a whole factor, large frames shrunk), so the frame and the tools fit on one screen.
    ``scale`` (canvas pixels per video pixel) overrides it.

    Keyboard: ipycanvas takes the keyboard focus when you press on the canvas (its key handler swallows every key,
    so notebook shortcuts stop). The painter lets go of it (``blur``) as soon as the pointer leaves the canvas,
    and when you press Esc on it; the page then has no focused element, so click anywhere in the notebook (a
    cell, its margin) before using shortcuts such as Esc, B or Shift+Enter. Scroll the whole canvas into view
    before painting: a press on a canvas that is only partly in view scrolls the page (the browser brings the
    newly focused canvas into view), so the paint lands where the canvas moved to, not where you aimed.

    Each action calls one of this module's plain functions (:func:`paint`, :func:`stroke`, :func:`box`,
    :func:`propagate`, :func:`dilate`, :func:`clear`), so the same mask can be re-made in code. On a page without
    live widgets (nbconvert, GitHub) the painter shows a still picture: the frame on screen with its mask (for
    nbconvert's HTML of a notebook that saved its widget state, see :func:`for_static_page`).
    """

    def __init__(self, video: np.ndarray, mask: np.ndarray | None = None, *, scale: float | None = None,
                 brush_size: int = 2, max_undo: int = 30, name: str | None = None, segmenter="auto"):
        video = check_video(video)
        T, H, Wd = video.shape[:3]
        self.video = video
        self.name = name
        self._mask = M.empty(T, H, Wd) if mask is None else M.check_mask(mask, video).copy()
        self.scale = default_scale(H, Wd) if scale is None else scale
        if not float(self.scale) > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.canvas_width, self.canvas_height = canvas_size(H, Wd, self.scale)
        # (mask before the action, what the action did, the clicks before it)
        self._undo: list[tuple[np.ndarray, str, tuple]] = []
        self._clicks: tuple = ()  # segmentation.Click, in the order given
        self._segmenter = segmenter
        self._notice = ""  # a one-off line above the status (SAM2 not available)
        self._max_undo = max(1, int(max_undo))
        self._drag: Drag | None = None
        self._message = "ready: " + TOOL_TABLE["brush"].help

        self._make_controls(T, max(H, Wd), brush_size)
        self._connect()
        controls = ipywidgets.VBox([
            _row(self.tool, self.size),
            _row(self.frame, self.propagate_button, self.dilate_button, self.clear_button, self.forget_button,
                 self.undo_button),
            self.status,
        ])
        super().__init__([self._style, controls, self.canvas], layout=ipywidgets.Layout(align_items="flex-start"))
        self.redraw()

    def _make_controls(self, frames: int, long_side: int, brush_size: int) -> None:
        """The canvas and every control, as attributes (their arrangement is in ``__init__``)."""
        self.canvas = _fixed_canvas(self.canvas_width, self.canvas_height)
        self._image_layer, self._tool_layer = self.canvas[0], self.canvas[1]
        self.tool = _tool_buttons()
        self.size = _slider("size", int(brush_size), max(1, long_side // 4),
                            tooltip="brush and eraser radius, in video pixels")
        self.frame = _slider("frame", 0, frames - 1, continuous_update=True)
        self.propagate_button = _button("propagate", "forward",
                                        "propagate through time: carry this frame's mask to every other frame "
                                        "with optical flow (forwards and backwards)")
        self.dilate_button = _button("dilate", "expand", "grow the mask of every frame by 1 px")
        self.clear_button = _button("clear frame", "eraser", "empty this frame's mask")
        self.forget_button = _button("forget clicks", "times", "forget the clicks so far (the mask stays): the "
                                     "next click starts a new track")
        self.undo_button = _button("undo", "undo", "undo the last action")
        self.status = ipywidgets.HTML(layout=ipywidgets.Layout(width="auto"))
        self._style = ipywidgets.HTML(_STYLE, layout=ipywidgets.Layout(display="none"))

    def _connect(self) -> None:
        """Route control changes, button clicks and canvas events to the painter's methods."""
        self.frame.observe(self._on_frame, names="value")
        self.tool.observe(self._on_tool, names="value")
        self.size.observe(self._on_size, names="value")
        self.propagate_button.on_click(lambda _: self.propagate())
        self.dilate_button.on_click(lambda _: self.dilate())
        self.clear_button.on_click(lambda _: self.clear_frame())
        self.forget_button.on_click(lambda _: self.forget_clicks())
        self.undo_button.on_click(lambda _: self.undo())
        self.canvas.on_mouse_down(self.on_mouse_down)
        self.canvas.on_mouse_move(self.on_mouse_move)
        self.canvas.on_mouse_up(self.on_mouse_up)
        self.canvas.on_mouse_out(self.on_mouse_out)
        self.canvas.on_key_down(self.on_key_down)
        self.canvas.on_client_ready(self.redraw)  # draw again once a front-end shows the canvas

    # ------------------------------------------------------------------ state and undo
    @property
    def mask(self) -> np.ndarray:
        """The painted mask: a copy, bool ``(T, H, W)``, True = edit."""
        return self._mask.copy()

    @mask.setter
    def mask(self, value: np.ndarray) -> None:
        self._apply(M.check_mask(value, self.video).copy(), "mask set from code")

    @property
    def clicks(self) -> list:
        """The clicks so far (:class:`loraedit_nb.segmentation.Click`, video pixels, in order): pass them to
        :func:`loraedit_nb.segmentation.segment_video` to re-make the tracked mask in code."""
        return list(self._clicks)

    def _apply(self, new: np.ndarray, label: str, clicks: Sequence | None = None) -> None:
        """Make ``new`` the mask (and ``clicks`` the clicks, when given): one undo step, remembered as ``label``,
        and said in the status line."""
        self._undo.append((self._mask, label, self._clicks))
        del self._undo[: -self._max_undo]
        self._mask = new
        if clicks is not None:
            self._clicks = tuple(clicks)
        self._message = label
        self.redraw()

    def _amend(self, new: np.ndarray) -> None:
        """Make ``new`` the mask as part of the last undo step (a stroke growing)."""
        self._mask = new
        self.redraw()

    def _undo_start(self) -> np.ndarray | None:
        """The mask before the last undo step (None when there is none)."""
        return self._undo[-1][0] if self._undo else None

    def _relabel(self, label: str) -> None:
        """Rename the last undo step (once a stroke is finished and its size known) and say so."""
        self._undo[-1] = (self._undo[-1][0], label, self._undo[-1][2])
        self._say(label)

    def _say(self, message: str) -> None:
        self._message = message
        self._update_status()

    def undo(self) -> None:
        """Take back the last action (a whole drag is one action)."""
        if not self._undo:
            self._say("nothing to undo")
            return
        self._mask, label, self._clicks = self._undo.pop()
        self._message = f"undid: {label}"
        self.redraw()

    # ------------------------------------------------------------------ buttons (each one plain function)
    def propagate(self) -> None:
        t = self.frame.value
        if not self._mask[t].any():
            self._say(f"<b>frame {t} is empty</b>: paint the object there first, then propagate")
            return
        before = self._mask.mean()
        new = propagate(self.video, self._mask, t)
        T = len(new)
        self._apply(new, f"propagated frame {t}'s mask to the {T - 1} other frames "
                         f"({100 * new.mean():.1f} % marked on average, was {100 * before:.1f} %)")

    def click(self, x: float, y: float, positive: bool = True, t: int | None = None) -> None:
        """A click at video pixel ``(x, y)`` of frame ``t`` (default: the frame on screen): the object is tracked
        through the whole clip from all clicks so far (:func:`loraedit_nb.segmentation.segment_video`) and the
        tracked mask replaces the mask (the brush can correct it afterwards). One undo step, which also takes the
        click back. A click that cannot be tracked (only negative clicks so far, nothing found) is kept, and the
        status line says why."""
        from .segmentation import Click, segment_video, segmenter_name
        from .video import InputError

        t = self.frame.value if t is None else _check_frame_index(self._mask, t)
        _, H, Wd = self._mask.shape
        c = Click(float(min(max(int(x), 0), Wd - 1)), float(min(max(int(y), 0), H - 1)), t, bool(positive))
        clicks = (*self._clicks, c)
        kind = "click +" if positive else "click −"
        where = f"{kind} at ({int(c.x)}, {int(c.y)}) on frame {t}"
        seg = self._tracker()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                new = segment_video(self.video, clicks, segmenter=seg, progress=False)
        except InputError as e:
            self._apply(self._mask, f"{where}: {e}", clicks=clicks)
            return
        note = "".join(f" <i>({html.escape(str(w.message))})</i>" for w in caught[:1])
        self._apply(new, f"{where}: tracked {len(clicks)} click{'s' * (len(clicks) > 1)} with "
                         f"{segmenter_name(seg)} ({100 * new.mean():.1f} % marked on average){note}", clicks=clicks)

    def _tracker(self):
        """The segmenter the clicks use, loaded at the first click; the flow stand-in where SAM2 is not available
        (said once, in the status line)."""
        if isinstance(self._segmenter, str):
            from .segmentation import FlowTracker, load_segmenter

            name = "tiny" if self._segmenter == "auto" else self._segmenter
            try:
                self._segmenter = load_segmenter(name)
            except (OSError, ImportError) as e:
                self._segmenter = FlowTracker()
                self._notice = (f"SAM2 is not available ({html.escape(str(e).split('. ')[0])}): clicks use the flow "
                                "stand-in (a colour region around the click, carried by optical flow).")
        return self._segmenter

    def forget_clicks(self) -> None:
        n = len(self._clicks)
        self._apply(self._mask, f"forgot {n} click{'s' * (n != 1)} (the mask stays); the next click starts a new "
                                "track", clicks=())

    def dilate(self, r: int = 1) -> None:
        before = self._mask.mean()
        new = dilate(self._mask, r)
        self._apply(new, f"dilated every frame by {r} px ({100 * before:.1f} % → {100 * new.mean():.1f} % "
                         "marked on average)")

    def clear_frame(self) -> None:
        t = self.frame.value
        had = self._mask[t].mean()
        self._apply(clear(self._mask, t), f"cleared frame {t} (it had {100 * had:.1f} % marked)")

    # ------------------------------------------------------------------ controls
    def _on_frame(self, change) -> None:
        self._message = f"frame {change['new']}"
        self.redraw()

    def _on_tool(self, change) -> None:
        self._say(f"tool: {change['new']} — {TOOL_TABLE[change['new']].help}")

    def _on_size(self, change) -> None:
        self._say(f"brush and eraser radius: {change['new']} px")

    # ------------------------------------------------------------------ mouse and keyboard: routed to the tool
    def _pixel(self, cx: float, cy: float) -> tuple[float, float]:
        _, H, Wd = self._mask.shape
        return canvas_to_pixel(cx, cy, (self.canvas_width / Wd, self.canvas_height / H), H, Wd)

    def on_mouse_down(self, cx: float, cy: float) -> None:
        self._drag = Drag(TOOL_TABLE[self.tool.value], self.frame.value, [self._pixel(cx, cy)])
        self._drag.tool.press(self, self._drag)

    def on_mouse_move(self, cx: float, cy: float) -> None:
        if self._drag is not None:
            self._drag.tool.move(self, self._drag, self._pixel(cx, cy))

    def on_mouse_up(self, cx: float, cy: float) -> None:
        drag, self._drag = self._drag, None
        if drag is not None:
            drag.tool.release(self, drag, self._pixel(cx, cy))

    def on_mouse_out(self, cx: float, cy: float) -> None:
        """The pointer left the canvas: finish the drag there, and give the keyboard back to the page."""
        self.on_mouse_up(cx, cy)
        self.canvas.blur()

    def on_key_down(self, key: str, *_modifiers) -> None:
        if key == "Escape":
            self.canvas.blur()

    # ------------------------------------------------------------------ drawing
    def preview(self) -> np.ndarray:
        """What the canvas shows: the current frame with its mask, uint8 ``(canvas_height, canvas_width, 3)``."""
        t = self.frame.value
        img = preview_frame(self.video[t], self._mask[t], self.scale)
        here = [c for c in self._clicks if c.frame == t]
        if not here:
            return img
        _, H, Wd = self._mask.shape
        return draw_clicks(img, here, (self.canvas_width / Wd, self.canvas_height / H))

    def redraw(self) -> None:
        self._image_layer.put_image_data(self.preview(), 0, 0)
        self._update_status()

    def _read_hint(self) -> str:
        return (f"read it as <code>{html.escape(self.name)}.mask</code>" if self.name
                else "read it with <code>.mask</code>")

    def _update_status(self) -> None:
        t = self.frame.value
        T = len(self._mask)
        painted = int(self._mask.reshape(T, -1).any(1).sum())
        notice, self._notice = self._notice, ""  # said once
        n_pos = sum(c.positive for c in self._clicks)
        clicks = (f" · clicks: {n_pos} +, {len(self._clicks) - n_pos} −" if self._clicks else "")
        self.status.value = (
            '<div style="line-height: 1.5">'
            + (f"<span style='color:#a60'>{notice}</span><br>" if notice else "")
            + f"<b>{self._message}</b><br>"
            f"frame {t}: {100 * self._mask[t].mean():.1f} % marked for editing · {painted}/{T} frames have a mask "
            f"({100 * self._mask.mean():.1f} % on average) · tool {self.tool.value}, size {self.size.value}"
            f"{clicks}<br>"
            f"<small><i>Red = edit (True); {self._read_hint()}. Keys go to the canvas only while the pointer is on "
            "it: then click the notebook to use its shortcuts again.</i></small></div>")

    # ------------------------------------------------------------------ static pages
    def _repr_mimebundle_(self, **kwargs):
        """The live widget, plus a still picture (``image/png``) and a line of text for front-ends that cannot
        show widgets (nbconvert's HTML without a saved widget state, its Markdown, GitHub's viewer)."""
        data = super()._repr_mimebundle_(**kwargs) or {}
        T, H, Wd = self._mask.shape
        t = self.frame.value
        data["image/png"] = base64.b64encode(png_bytes(self.preview())).decode("ascii")
        data["text/plain"] = (f"MaskPainter ({T} frames, {H}x{Wd}): an interactive widget; this still picture is "
                              f"frame {t} with its mask (red = edit, {100 * self._mask[t].mean():.1f} % marked). "
                              "Run the notebook in Jupyter to paint.")
        return data


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def for_static_page(nb):
    """A copy of an executed notebook (an ``nbformat`` node or a dict) for a static page: an output that carries both
    a live widget view and a still picture (``image/png``, as :class:`MaskPainter` does) keeps only the picture
    (and its text).

    Why: nbconvert's HTML shows a widget view whenever the notebook saved its widget state (nbclient saves it by
    default), and a saved state cannot redraw a canvas, so the painter would come out as an empty box (or nothing,
    offline). Other widgets (progress bars) are left alone. Use:
    ``HTMLExporter().from_notebook_node(for_static_page(nb))``.
    """
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data and "image/png" in data:
                del data[WIDGET_VIEW]
    return nb


__all__ = ["MaskPainter", "for_static_page", "paint", "stroke", "box", "propagate", "dilate", "clear",
           "canvas_to_pixel", "canvas_size", "preview_frame", "draw_clicks", "png_bytes", "default_scale", "TOOLS",
           "TOOL_TABLE", "StrokeTool", "BoxTool", "ClickTool", "Drag", "WIDGET_VIEW"]
