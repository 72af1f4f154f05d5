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
simple stack. Tiny toy-world clips (32x32) are drawn scaled up (``scale``); mouse positions are mapped back to
pixels with :func:`canvas_to_pixel`.

On front-ends without custom widgets (GitHub's viewer, plain nbconvert, some IDEs) the canvas does not render:
build the same mask in code with :mod:`loraedit_nb.masks` (``from_boxes``, ``interpolate_boxes``, ``disc`` +
``propagate_flow``, ``dilate``) or with the functions of this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets
import numpy as np

from . import masks as M
from .video import check_video

TOOLS = ("brush", "eraser", "box", "box eraser")


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
    out = mask.copy()
    if t < len(mask) - 1:
        out[t:] = M.propagate_flow(video[t:], mask[t], method=method)
    if t > 0:
        out[: t + 1] = M.propagate_flow(video[t::-1], mask[t], method=method)[::-1]
    return out


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


def canvas_to_pixel(cx: float, cy: float, scale: float, height: int, width: int) -> tuple[float, float]:
    """Canvas coordinates (the frame drawn ``scale`` times larger) -> pixel coordinates, clamped to the frame."""
    x = min(max(cx / scale, 0.0), width - 1e-3)
    y = min(max(cy / scale, 0.0), height - 1e-3)
    return x, y


def preview_frame(frame: np.ndarray, frame_mask: np.ndarray, scale: int = 1, *, alpha: float = 0.45
                  ) -> np.ndarray:
    """One frame with the edit region tinted and outlined (:func:`loraedit_nb.masks.overlay`), upscaled
    ``scale`` times (nearest), as uint8 ``(H * scale, W * scale, 3)`` ready for a canvas."""
    from .viz import upscale

    img = M.overlay(frame[None], frame_mask[None], alpha=alpha)[0]
    return (np.clip(upscale(img, int(scale)), 0, 1) * 255 + 0.5).astype(np.uint8)


def default_scale(height: int, width: int, target: int = 512) -> int:
    """An integer zoom that draws the frame's long side at about ``target`` canvas pixels (at least 1)."""
    return max(1, int(round(target / max(height, width))))


# ----------------------------------------------------------------------------------------------- the widget
class MaskPainter(ipywidgets.VBox):
    """Paint a spatiotemporal edit mask over a video, frame by frame.

    ``MaskPainter(video, mask=None)``: ``video`` float ``(T, H, W, 3)`` in [0, 1]; ``mask`` an optional starting
    mask (bool ``(T, H, W)``, True = edit). Display it (it is an ``ipywidgets.VBox``), paint, then read
    :attr:`mask`. Tools: **brush** / **eraser** (round, ``size`` in video pixels), **box** / **box eraser**
    (drag a rectangle), a frame slider, **propagate** (carry the shown frame's mask through time with optical
    flow), **dilate** (grow by 1 px on every frame), **clear frame**, **undo**. The red tint is the edit region.

    Each action calls one of this module's plain functions (:func:`paint`, :func:`stroke`, :func:`box`,
    :func:`propagate`, :func:`dilate`, :func:`clear`), so the same mask can be re-made in code.
    """

    def __init__(self, video: np.ndarray, mask: np.ndarray | None = None, *, scale: int | None = None,
                 brush_size: int = 2, max_undo: int = 30):
        from ipycanvas import MultiCanvas

        W = ipywidgets

        video = check_video(video)
        T, H, Wd = video.shape[:3]
        self.video = video
        self._mask = M.empty(T, H, Wd) if mask is None else M.check_mask(mask, video).copy()
        self.scale = int(scale or default_scale(H, Wd))
        self._undo: list[np.ndarray] = []
        self._max_undo = int(max_undo)
        self._drag: list[tuple[float, float]] | None = None
        self._box_start: tuple[float, float] | None = None

        self.canvas = MultiCanvas(2, width=Wd * self.scale, height=H * self.scale)
        self._image_layer, self._tool_layer = self.canvas[0], self.canvas[1]
        self.tool = W.ToggleButtons(options=TOOLS, value="brush", description="tool",
                                    style={"button_width": "80px"})
        self.size = W.IntSlider(value=int(brush_size), min=0, max=max(1, max(H, Wd) // 4), description="size")
        self.frame = W.IntSlider(value=0, min=0, max=T - 1, description="frame", continuous_update=True)
        self.propagate_button = W.Button(description="propagate through time", icon="forward",
                                         tooltip="carry this frame's mask to all frames with optical flow",
                                         layout=W.Layout(width="190px"))
        self.dilate_button = W.Button(description="dilate", icon="expand", tooltip="grow every frame by 1 px")
        self.clear_button = W.Button(description="clear frame", icon="eraser")
        self.undo_button = W.Button(description="undo", icon="undo")
        self.status = W.HTML()

        self.frame.observe(lambda _: self.redraw(), names="value")
        self.propagate_button.on_click(lambda _: self.propagate())
        self.dilate_button.on_click(lambda _: self.dilate())
        self.clear_button.on_click(lambda _: self.clear_frame())
        self.undo_button.on_click(lambda _: self.undo())
        self.canvas.on_mouse_down(self.on_mouse_down)
        self.canvas.on_mouse_move(self.on_mouse_move)
        self.canvas.on_mouse_up(self.on_mouse_up)
        self.canvas.on_mouse_out(self.on_mouse_up)
        self.canvas.on_client_ready(self.redraw)  # draw again once a front-end shows the canvas

        controls = W.VBox([
            W.HBox([self.tool, self.size]),
            W.HBox([self.frame, self.propagate_button, self.dilate_button, self.clear_button, self.undo_button]),
            self.status,
        ])
        super().__init__([controls, self.canvas])
        self.redraw()

    # ------------------------------------------------------------------ state
    @property
    def mask(self) -> np.ndarray:
        """The painted mask: a copy, bool ``(T, H, W)``, True = edit."""
        return self._mask.copy()

    @mask.setter
    def mask(self, value: np.ndarray) -> None:
        self._apply(M.check_mask(value, self.video).copy())

    def _apply(self, new: np.ndarray) -> None:
        self._undo.append(self._mask)
        del self._undo[: -self._max_undo]
        self._mask = new
        self.redraw()

    def undo(self) -> None:
        if self._undo:
            self._mask = self._undo.pop()
            self.redraw()

    # ------------------------------------------------------------------ actions (each one plain function)
    def propagate(self) -> None:
        t = self.frame.value
        if not self._mask[t].any():
            self.status.value = f"<b>frame {t} is empty</b>: paint the object there first, then propagate"
            return
        self._apply(propagate(self.video, self._mask, t))

    def dilate(self, r: int = 1) -> None:
        self._apply(dilate(self._mask, r))

    def clear_frame(self) -> None:
        self._apply(clear(self._mask, self.frame.value))

    # ------------------------------------------------------------------ mouse
    def _pixel(self, cx: float, cy: float) -> tuple[float, float]:
        _, H, Wd = self._mask.shape
        return canvas_to_pixel(cx, cy, self.scale, H, Wd)

    def on_mouse_down(self, cx: float, cy: float) -> None:
        p = self._pixel(cx, cy)
        if self.tool.value in ("brush", "eraser"):
            self._drag = [p]
            self._apply(paint(self._mask, self.frame.value, *p, self.size.value, self.tool.value == "brush"))
        else:
            self._box_start = p

    def on_mouse_move(self, cx: float, cy: float) -> None:
        p = self._pixel(cx, cy)
        if self._drag is not None:
            # extend the stroke without a new undo entry: one drag = one undo step
            self._mask = stroke(self._mask, self.frame.value, [self._drag[-1], p], self.size.value,
                                self.tool.value == "brush")
            self._drag.append(p)
            self.redraw()
        elif self._box_start is not None:
            self._draw_box_outline(self._box_start, p)

    def on_mouse_up(self, cx: float, cy: float) -> None:
        if self._box_start is not None:
            p = self._pixel(cx, cy)
            self._apply(box(self._mask, self.frame.value, *self._box_start, *p, self.tool.value == "box"))
            self._box_start = None
            self._tool_layer.clear()
        self._drag = None

    # ------------------------------------------------------------------ drawing
    def _draw_box_outline(self, a: tuple[float, float], b: tuple[float, float]) -> None:
        s = self.scale
        x0, x1 = sorted((int(a[0]), int(b[0])))
        y0, y1 = sorted((int(a[1]), int(b[1])))
        layer = self._tool_layer
        layer.clear()
        layer.stroke_style = "#ffff00"
        layer.line_width = 2
        layer.stroke_rect(x0 * s, y0 * s, (x1 - x0 + 1) * s, (y1 - y0 + 1) * s)

    def redraw(self) -> None:
        t = self.frame.value
        self._image_layer.put_image_data(preview_frame(self.video[t], self._mask[t], self.scale), 0, 0)
        T = len(self._mask)
        painted = int(self._mask.reshape(T, -1).any(1).sum())
        self.status.value = (f"frame {t}: {100 * self._mask[t].mean():.1f} % marked for editing; "
                             f"{painted}/{T} frames have a mask. <i>Red = edit (True); read it as "
                             "<code>painter.mask</code>.</i>")


__all__ = ["MaskPainter", "paint", "stroke", "box", "propagate", "dilate", "clear", "canvas_to_pixel",
           "preview_frame", "default_scale", "TOOLS"]
