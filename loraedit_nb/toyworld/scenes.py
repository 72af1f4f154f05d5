"""Procedural "toy world" scenes: tiny seeded videos with exact masks, captions and ground-truth edits.

A scene is a low-contrast background plus 1-3 flat-shaded objects. Object 0 is the **target** (the thing edits
apply to); the others are distractors, possibly passing in front of the target (occlusion).

Conventions (project-wide):

* video: float32 ``(T, H, W, 3)`` in [0, 1]; mask: bool ``(T, H, W)``, True = region to edit.
* ``T`` is of the form 4k+1 (5, 9, 17, 33), ``H = W = size`` is a multiple of 16.
* All geometry lives in resolution-independent units: positions and sizes are fractions of the image side
  and motion is defined per clip (``s = t / (T - 1)`` runs 0..1), so one :class:`SceneSpec` renders the same
  path at 32x32x9 or 96x96x33.
* Motion is a deterministic function of frame 0 plus the caption words (direction / sense / speed), so a model
  can learn it. Circular motion is around the image centre; its radius and phase are read off frame 0.
* Edges are anti-aliased from signed distances; tiny coverages are snapped to 0/1 so that the mask
  (``coverage > 0`` of the visible target) is *exactly* the set of pixels that change when the target is
  removed.

Only numpy is used; randomness always comes from ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

__all__ = [
    "ALL_MOTIONS",
    "BASE_MOTIONS",
    "ALL_BG_KINDS",
    "BG_KINDS",
    "EXTRA_BG_KINDS",
    "COLOURS",
    "COLOUR_NAMES",
    "DIRECTIONS",
    "EDIT_KINDS",
    "APPEARANCE_KINDS",
    "ALL_EDIT_KINDS",
    "SHAPES",
    "SPEEDS",
    "VOCAB",
    "BackgroundSpec",
    "Edit",
    "ObjectSpec",
    "Scene",
    "SceneSpec",
    "caption",
    "caption_words",
    "check_resolution",
    "make_edit",
    "object_track",
    "render_background",
    "render_batch",
    "render_scene",
    "sample_batch",
    "sample_scene",
]

# ----------------------------------------------------------------------------------------------------
# Vocabulary of the world
# ----------------------------------------------------------------------------------------------------

# Saturated object colours: every one has a channel >= 0.85, backgrounds stay <= 0.5 and nearly grey.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.12, 0.10),
    "green": (0.10, 0.85, 0.18),
    "blue": (0.15, 0.30, 1.00),
    "yellow": (0.95, 0.90, 0.10),
    "magenta": (0.90, 0.10, 0.90),
    "cyan": (0.10, 0.90, 0.90),
    "white": (1.00, 1.00, 1.00),
    "orange": (1.00, 0.55, 0.05),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
# Second stripe colour: a pastel tint (mid grey for white); a dark shade would vanish into the background.
_STRIPE_RGB: dict[str, tuple[float, float, float]] = {
    k: ((0.62, 0.62, 0.62) if k == "white" else tuple(0.45 * c + 0.55 for c in v)) for k, v in COLOURS.items()
}

SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "star")
BASE_MOTIONS: tuple[str, ...] = ("linear", "circle", "pulse", "spin", "static")
# 'occlusion' is a scene kind, not an object motion: the target stays put (static/pulse/spin) and object 1
# passes in front of it.
ALL_MOTIONS: tuple[str, ...] = (*BASE_MOTIONS, "occlusion")
SPEEDS: tuple[str, ...] = ("slow", "fast")
ROTATIONS: tuple[str, ...] = ("cw", "ccw")
BG_KINDS: tuple[str, ...] = ("gradient", "sinusoid", "checker", "stripes")
# Added for toy world v2: scenes a learner draws. Not in the default draw, so every seeded scene,
# case and notebook figure stays as it was; pretraining and held-out checks ask for ALL_BG_KINDS.
EXTRA_BG_KINDS: tuple[str, ...] = ("vignette", "noise")
ALL_BG_KINDS: tuple[str, ...] = (*BG_KINDS, *EXTRA_BG_KINDS)
EDIT_KINDS: tuple[str, ...] = ("recolour", "texture", "shape_swap", "colour_shift")
# Edits that frame 0 alone cannot carry (the appearance regime's cases): a disc that becomes a square whose corners
# must persist; a two-tone object whose back half is hidden behind an occluder in frame 0 and recoloured (only a
# later edited frame shows it); an object that grows past the source's box. Kept apart from EDIT_KINDS so every
# seeded case made from that tuple stays as it was.
APPEARANCE_KINDS: tuple[str, ...] = ("corner_swap", "reveal", "grow")
ALL_EDIT_KINDS: tuple[str, ...] = (*EDIT_KINDS, *APPEARANCE_KINDS)
GROW_FACTOR = 1.8  # "grow": the edited object's size relative to the source's
CORNER_SQUARE = 0.95  # "corner_swap": the square's half side / the disc's radius (just inside the disc's box)

_D = 1.0 / math.sqrt(2.0)
# Unit vectors in image coordinates (x right, y down): 'se' = right and down.
DIRECTIONS: dict[str, tuple[float, float]] = {
    "e": (1.0, 0.0),
    "se": (_D, _D),
    "s": (0.0, 1.0),
    "sw": (-_D, _D),
    "w": (-1.0, 0.0),
    "nw": (-_D, -_D),
    "n": (0.0, -1.0),
    "ne": (_D, -_D),
}
_DIRECTION_WORDS: dict[str, str] = {
    "e": "right",
    "se": "right and down",
    "s": "down",
    "sw": "left and down",
    "w": "left",
    "nw": "left and up",
    "n": "up",
    "ne": "right and up",
}
_ROTATION_WORDS = {"cw": "clockwise", "ccw": "counterclockwise"}
_ADVERBS = {"slow": "slowly", "fast": "quickly"}

# Per-clip motion magnitudes (independent of T and resolution).
LINEAR_DISTANCE = {"slow": 0.3, "fast": 0.6}  # path length, fraction of the image side
CIRCLE_TURNS = {"slow": 0.25, "fast": 0.5}  # revolutions around the image centre
SPIN_TURNS = {"slow": 0.125, "fast": 0.25}  # < half a star's symmetry period per frame even at T=5
PULSE_CYCLES = {"slow": 0.5, "fast": 1.0}  # fast = 1 cycle so it is still visible at T=5
PULSE_AMPLITUDE = 0.3  # radius swings by +-30 %
SQUARE_HALF = 0.8  # half side of a square, relative to its size (half diagonal ~1.13)
STAR_INNER = 0.5  # inner/outer radius ratio of the 5-point star
STRIPE_PERIOD = 0.8  # stripe period relative to the object's current size (~3 px at 32 px, min size)
_PLACE_EXTENT = 1.15  # bounding radius / size used when placing objects (covers the square's corners)

VOCAB: list[str] = [
    ",",
    "a",
    "an",
    "with",
    "and",
    "in",
    "front",
    "striped",
    "turning",
    *COLOUR_NAMES,
    *SHAPES,
    "moves",
    "moving",
    "right",
    "left",
    "up",
    "down",
    "circles",
    "circling",
    "clockwise",
    "counterclockwise",
    "pulses",
    "pulsing",
    "spins",
    "spinning",
    "stays",
    "staying",
    "still",
    "slow",
    "fast",
    "slowly",
    "quickly",
]
"""Every token that can appear in any caption (source or edited), in a fixed order; ``,`` is its own token."""

_WORD_RE = re.compile(r"[a-z]+|,")


def caption_words(text: str) -> list[str]:
    """Split a caption into VOCAB tokens: lowercase words and ``,`` as a separate token."""
    return _WORD_RE.findall(text.lower())


# ----------------------------------------------------------------------------------------------------
# Specs
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpec:
    """One object, in resolution-independent units.

    shape: one of SHAPES. colour: a COLOURS name. striped: stripes in the object's own frame (they rotate
    with it). size: radius (disc), circumradius (triangle, star) or half side / 0.8 (square) as a fraction of
    the image side, in (0, 0.5). motion: one of BASE_MOTIONS. direction: compass key of DIRECTIONS for
    'linear', 'cw'/'ccw' for 'circle' and 'spin', None otherwise. speed: 'slow' | 'fast' (ignored for
    'static'). start: (x, y) centre at frame 0, fractions of the image side, y down. For 'circle' the orbit is
    centred on the image centre and its radius/phase are read from ``start``. angle: rotation at frame 0,
    radians (clockwise on screen). layer: draw order, higher = in front (ties drawn in object order).
    colour_to: if set, the colour interpolates linearly from ``colour`` at frame 0 to ``colour_to`` at the
    last frame. colour_back: if set, a two-tone object: its back half (object-local u < 0, the side away from
    the direction it faces at ``angle``; it turns with it) has this colour, with a 1-px soft seam.
    """

    shape: str
    colour: str
    striped: bool
    size: float
    motion: str
    direction: str | None
    speed: str
    start: tuple[float, float]
    angle: float = 0.0
    layer: int = 0
    colour_to: str | None = None
    colour_back: str | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose from {SHAPES}")
        if self.colour_back is not None and (self.striped or self.colour_to is not None):
            raise ValueError("a two-tone object (colour_back) is neither striped nor changing colour")
        for c in (self.colour, self.colour_to, self.colour_back):
            if c is not None and c not in COLOURS:
                raise ValueError(f"unknown colour {c!r}; choose from {COLOUR_NAMES}")
        if self.motion not in BASE_MOTIONS:
            raise ValueError(f"unknown object motion {self.motion!r}; choose from {BASE_MOTIONS}")
        valid_dirs: Sequence[str | None]
        if self.motion == "linear":
            valid_dirs = tuple(DIRECTIONS)
        elif self.motion in ("circle", "spin"):
            valid_dirs = ROTATIONS
        else:
            valid_dirs = (None,)
        if self.direction not in valid_dirs:
            raise ValueError(
                f"direction {self.direction!r} invalid for motion {self.motion!r}; use one of {valid_dirs}"
            )
        if self.speed not in SPEEDS:
            raise ValueError(f"speed must be one of {SPEEDS}, got {self.speed!r}")
        if not 0.0 < self.size < 0.5:
            raise ValueError(f"size is a fraction of the image side in (0, 0.5), got {self.size}")


@dataclass(frozen=True)
class BackgroundSpec:
    """Static low-contrast background. Colours are RGB in [0, 0.5] (dark, nearly grey).

    kind: 'gradient' (linear blend a->b along ``angle``), 'sinusoid' (``freq`` cycles per image along
    ``angle``), 'checker' (``freq`` cells per image side, rotated by ``angle``), 'stripes' (``freq`` stripe
    pairs per image), 'vignette' (a at a centre offset along ``angle``, b at the corners), 'noise' (smooth
    value noise, ``freq`` cells per side, its pattern seeded by ``phase``). phase: an offset in radians.
    """

    kind: str
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    angle: float = 0.0
    freq: float = 1.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ALL_BG_KINDS:
            raise ValueError(f"unknown background kind {self.kind!r}; choose from {ALL_BG_KINDS}")


@dataclass(frozen=True)
class SceneSpec:
    """A full scene: ``objects[0]`` is the target; ``seed`` is the seed it was sampled from (bookkeeping)."""

    objects: tuple[ObjectSpec, ...]
    background: BackgroundSpec
    seed: int = 0


@dataclass
class Scene:
    """A rendered scene.

    video: float32 (T, H, W, 3) in [0, 1]. mask: bool (T, H, W), the visible pixels of the target
    (coverage > 0 after occluders). caption: see :func:`caption`.
    """

    spec: SceneSpec
    video: np.ndarray
    mask: np.ndarray
    caption: str


@dataclass
class Edit:
    """A ground-truth edit of a scene.

    video: float32 (T, H, W, 3) in [0, 1], same motion as the source and equal to it wherever ``mask`` is
    False. mask: bool (T, H, W), region the edit may change (union of old and new visible target pixels).
    caption: caption of the edited video. edited_frames: {frame index: (H, W, 3) edited frame} a user would
    supply: always frame 0; 'colour_shift' adds the last frame (and the middle one with ``with_middle=True``).
    spec: the edited SceneSpec. source: the unedited Scene.
    """

    kind: str
    video: np.ndarray
    mask: np.ndarray
    caption: str
    edited_frames: dict[int, np.ndarray]
    spec: SceneSpec | None = None
    source: Scene | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------


def check_resolution(size: int, frames: int) -> None:
    """Raise ValueError unless ``frames`` is 4k+1 (>= 5) and ``size`` is a positive multiple of 16."""
    is_int = isinstance(frames, (int, np.integer)) and not isinstance(frames, bool)
    if not is_int or frames < 5 or (frames - 1) % 4:
        fix = max(5, 4 * round((int(frames) - 1) / 4) + 1) if is_int else 9
        raise ValueError(
            f"frames must be of the form 4k+1 and >= 5 (5, 9, 17, 33, ...), got {frames!r}; use frames={fix}"
        )
    is_int = isinstance(size, (int, np.integer)) and not isinstance(size, bool)
    if not is_int or size < 16 or size % 16:
        fix = max(16, 16 * round(int(size) / 16)) if is_int else 32
        raise ValueError(
            f"size must be a positive multiple of 16 (32, 64, 96, ...), got {size!r}; use size={fix}"
        )


# ----------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _bg_colour(rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(0.1, 0.4)
    return np.clip(grey + rng.uniform(-0.06, 0.06, 3), 0.03, 0.5)


def _sample_background(rng: np.random.Generator, kinds: Sequence[str]) -> BackgroundSpec:
    kind = _pick(rng, kinds)
    a = _bg_colour(rng)
    if kind in ("gradient", "vignette"):
        b = _bg_colour(rng)
        freq = 1.0
    elif kind == "noise":
        b = np.clip(a + rng.uniform(-0.15, 0.15, 3), 0.03, 0.5)
        freq = float(rng.integers(2, 6))
    else:
        # Low contrast: a fixed-sign offset with a little tint.
        delta = rng.uniform(0.06, 0.15) if kind == "sinusoid" else rng.uniform(0.05, 0.1)
        sign = 1.0 if a.mean() < 0.25 else -1.0
        b = np.clip(a + sign * delta + rng.uniform(-0.02, 0.02, 3), 0.03, 0.5)
        freq = rng.uniform(0.5, 2.0) if kind == "sinusoid" else float(rng.integers(3, 7))
    return BackgroundSpec(
        kind=kind,
        colour_a=tuple(float(c) for c in a),
        colour_b=tuple(float(c) for c in b),
        angle=float(rng.uniform(0.0, math.pi)),
        freq=float(freq),
        phase=float(rng.uniform(0.0, 2 * math.pi)),
    )


def _bound(size: float, motion: str) -> float:
    """Largest distance from centre to edge over the clip (pulse grows), plus a small margin."""
    grow = 1.0 + PULSE_AMPLITUDE if motion == "pulse" else 1.0
    return _PLACE_EXTENT * size * grow + 0.02


def _sample_object(
    rng: np.random.Generator,
    *,
    colour: str,
    motion: str,
    shapes: Sequence[str],
    allow_stripes: bool,
    size_range: tuple[float, float],
    layer: int = 0,
    centre_range: tuple[float, float] | None = None,
) -> ObjectSpec:
    shape = _pick(rng, shapes)
    striped = bool(allow_stripes and rng.random() < 0.35)
    if motion == "spin" and shape == "disc" and not striped:
        # A solid disc spinning is invisible: change shape, else stripe it (callers guarantee one works).
        others = [s for s in shapes if s != "disc"]
        if others:
            shape = _pick(rng, others)
        else:
            striped = True
    lo, hi = size_range
    if motion == "pulse":
        lo, hi = lo * 0.85, hi * 0.8
    size = float(rng.uniform(lo, hi))
    speed = _pick(rng, SPEEDS) if motion != "static" else "slow"
    angle = float(rng.uniform(0.0, 2 * math.pi)) if (shape != "disc" or striped) else 0.0
    direction: str | None = None
    if motion == "linear":
        direction = _pick(rng, tuple(DIRECTIONS))
    elif motion in ("circle", "spin"):
        direction = _pick(rng, ROTATIONS)
    if motion == "circle":
        radius = float(rng.uniform(0.12, max(0.13, 0.5 - _bound(size, motion))))
        phase = float(rng.uniform(0.0, 2 * math.pi))
        start = (0.5 + radius * math.cos(phase), 0.5 + radius * math.sin(phase))
    else:
        b = _bound(size, motion)
        lo_c, hi_c = centre_range if centre_range is not None else (b, 1.0 - b)
        start = (float(rng.uniform(lo_c, hi_c)), float(rng.uniform(lo_c, hi_c)))
    return ObjectSpec(
        shape=shape,
        colour=colour,
        striped=striped,
        size=size,
        motion=motion,
        direction=direction,
        speed=speed,
        start=(float(start[0]), float(start[1])),
        angle=angle,
        layer=layer,
    )


def _sample_occluder(
    rng: np.random.Generator, target: ObjectSpec, *, colour: str, shapes: Sequence[str], allow_stripes: bool
) -> ObjectSpec:
    """A linear mover in front of the target that is centred on it at mid-clip and never bounces."""
    size = float(rng.uniform(0.09, max(0.1, min(0.14, 0.8 * target.size))))
    b = size + 0.01
    tx, ty = target.start
    options = [(d, sp) for d in rng.permutation(list(DIRECTIONS)) for sp in ("fast", "slow")]
    for d, speed in options:
        ux, uy = DIRECTIONS[str(d)]
        half = LINEAR_DISTANCE[speed] / 2
        ends = (tx - ux * half, ty - uy * half, tx + ux * half, ty + uy * half)
        if all(b <= e <= 1.0 - b for e in ends):
            break
    else:  # cannot happen for targets placed in the central region; keep a valid fallback anyway
        d, speed, ends = "e", "slow", (tx, ty)
    shape = _pick(rng, shapes)
    return ObjectSpec(
        shape=shape,
        colour=colour,
        striped=bool(allow_stripes and rng.random() < 0.35),
        size=size,
        motion="linear",
        direction=str(d),
        speed=speed,
        start=(float(ends[0]), float(ends[1])),
        angle=float(rng.uniform(0.0, 2 * math.pi)),
        layer=1,
    )


def sample_scene(
    seed: int,
    *,
    n_objects: int | tuple[int, int] = 1,
    motions: Sequence[str] = ALL_MOTIONS,
    shapes: Sequence[str] = SHAPES,
    allow_stripes: bool = True,
    bg_kinds: Sequence[str] = BG_KINDS,
    colours: Sequence[str] = COLOUR_NAMES,
) -> SceneSpec:
    """Sample a random scene from ``np.random.default_rng(seed)``; same seed -> equal spec.

    n_objects: count, or inclusive (lo, hi) range, in 1..3 ('occlusion' forces at least 2). motions: scene
    motions to draw the target's from (ALL_MOTIONS entries); distractors draw from the non-'occlusion' ones.
    Objects get distinct colours from ``colours``. The target sits on top except under an occluder.
    """
    motions, shapes, bg_kinds, colours = tuple(motions), tuple(shapes), tuple(bg_kinds), tuple(colours)
    for name, vals, allowed in (
        ("motions", motions, ALL_MOTIONS),
        ("shapes", shapes, SHAPES),
        ("bg_kinds", bg_kinds, ALL_BG_KINDS),
        ("colours", colours, COLOUR_NAMES),
    ):
        if not vals or any(v not in allowed for v in vals):
            raise ValueError(f"{name} must be a non-empty subset of {allowed}, got {vals}")
    if not (allow_stripes or any(s != "disc" for s in shapes)):
        # spin would be invisible on solid discs
        motions = tuple(m for m in motions if m != "spin")
        if not motions:
            raise ValueError(
                "only 'spin' requested, but a solid disc cannot show spin: allow stripes or other shapes"
            )
    rng = np.random.default_rng(seed)
    if isinstance(n_objects, tuple):
        n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    else:
        n = int(n_objects)
    scene_motion = _pick(rng, motions)
    if scene_motion == "occlusion":
        n = max(n, 2)
    if not 1 <= n <= 3:
        raise ValueError(f"n_objects must be in 1..3, got {n_objects}")
    if n > len(colours):
        raise ValueError(f"{n} objects need {n} distinct colours, only {len(colours)} given")
    names = [colours[int(i)] for i in rng.permutation(len(colours))[:n]]
    base = tuple(m for m in motions if m in BASE_MOTIONS) or ("static",)

    objects: list[ObjectSpec] = []
    if scene_motion == "occlusion":
        target_motion = _pick(rng, tuple(m for m in base if m in ("static", "pulse", "spin")) or ("static",))
        target = _sample_object(
            rng,
            colour=names[0],
            motion=target_motion,
            shapes=shapes,
            allow_stripes=allow_stripes,
            size_range=(0.13, 0.2),
            centre_range=(0.36, 0.64),
        )
        occluder = _sample_occluder(rng, target, colour=names[1], shapes=shapes, allow_stripes=allow_stripes)
        objects = [target, occluder]
    else:
        objects = [
            _sample_object(
                rng,
                colour=names[0],
                motion=scene_motion,
                shapes=shapes,
                allow_stripes=allow_stripes,
                size_range=(0.13, 0.2),
            )
        ]
    while len(objects) < n:  # background distractors, behind the target
        objects.append(
            _sample_object(
                rng,
                colour=names[len(objects)],
                motion=_pick(rng, base),
                shapes=shapes,
                allow_stripes=allow_stripes,
                size_range=(0.08, 0.14),
                layer=-len(objects),
            )
        )
    return SceneSpec(objects=tuple(objects), background=_sample_background(rng, bg_kinds), seed=int(seed))


# ----------------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------------


def _noun_phrase(obj: ObjectSpec) -> str:
    article = "an" if obj.colour[0] in "aeiou" else "a"
    words = [article, obj.colour] + (["and", obj.colour_back] if obj.colour_back else []) \
        + (["striped"] if obj.striped else []) + [obj.shape]
    if obj.colour_to is not None:
        words += ["turning", obj.colour_to]
    return " ".join(words)


def _motion_phrase(obj: ObjectSpec, *, main: bool) -> str:
    """Main clause for the target ('moves right, fast'); participle for others ('moving right quickly')."""
    m = obj.motion
    if m == "static":
        return "stays still" if main else "staying still"
    verb = {
        "linear": ("moves", "moving"),
        "circle": ("circles", "circling"),
        "pulse": ("pulses", "pulsing"),
        "spin": ("spins", "spinning"),
    }[m][0 if main else 1]
    if m == "linear":
        where = " " + _DIRECTION_WORDS[obj.direction]  # type: ignore[index]
    elif m in ("circle", "spin"):
        where = " " + _ROTATION_WORDS[obj.direction]  # type: ignore[index]
    else:
        where = ""
    how = f", {obj.speed}" if main else f" {_ADVERBS[obj.speed]}"
    return f"{verb}{where}{how}"


def caption(spec: SceneSpec) -> str:
    """Caption from the fixed VOCAB, target first, e.g.
    ``"a red disc moves right and down, fast, with a cyan square moving left quickly in front"``.

    Together with frame 0 it determines the whole clip's motion.
    """
    if not spec.objects:
        raise ValueError("a scene without objects has no caption")
    target = spec.objects[0]
    text = f"{_noun_phrase(target)} {_motion_phrase(target, main=True)}"
    others = []
    for obj in spec.objects[1:]:
        phrase = f"{_noun_phrase(obj)} {_motion_phrase(obj, main=False)}"
        if obj.layer > target.layer:
            phrase += " in front"
        others.append(phrase)
    if others:
        text += ", with " + " and ".join(others)
    return text


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------


def _tri(u: np.ndarray) -> np.ndarray:
    """Triangle wave 0 -> 1 -> 0 with period 2 (bouncing between two walls)."""
    return 1.0 - np.abs(np.mod(u, 2.0) - 1.0)


def object_track(obj: ObjectSpec, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (cx, cy, size, angle), each float64 (T,), in image fractions / radians.

    Linear motion bounces off the walls with the object's size accounted for (a shape-independent bound, so a
    shape swap keeps the path).
    """
    s = np.linspace(0.0, 1.0, frames)
    x0, y0 = obj.start
    cx, cy = np.full(frames, x0), np.full(frames, y0)
    size = np.full(frames, obj.size)
    angle = np.full(frames, obj.angle)
    sense = 1.0 if obj.direction == "cw" else -1.0  # y points down: increasing angle is clockwise on screen
    if obj.motion == "linear":
        ux, uy = DIRECTIONS[obj.direction]  # type: ignore[index]
        dist = LINEAR_DISTANCE[obj.speed]
        b = obj.size
        span = 1.0 - 2.0 * b
        cx = b + span * _tri((x0 - b) / span + ux * dist * s / span)
        cy = b + span * _tri((y0 - b) / span + uy * dist * s / span)
    elif obj.motion == "circle":
        radius = math.hypot(x0 - 0.5, y0 - 0.5)
        phi = math.atan2(y0 - 0.5, x0 - 0.5) + sense * 2 * math.pi * CIRCLE_TURNS[obj.speed] * s
        cx, cy = 0.5 + radius * np.cos(phi), 0.5 + radius * np.sin(phi)
    elif obj.motion == "pulse":
        size = obj.size * (1.0 + PULSE_AMPLITUDE * np.sin(2 * math.pi * PULSE_CYCLES[obj.speed] * s))
    elif obj.motion == "spin":
        angle = obj.angle + sense * 2 * math.pi * SPIN_TURNS[obj.speed] * s
    return cx, cy, size, angle


def _colour_track(obj: ObjectSpec, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Main and stripe colours per frame, float32 (T, 3)."""
    main = np.array(COLOURS[obj.colour], np.float64)[None].repeat(frames, 0)
    stripe = np.array(_STRIPE_RGB[obj.colour], np.float64)[None].repeat(frames, 0)
    if obj.colour_to is not None:
        s = np.linspace(0.0, 1.0, frames)[:, None]
        main = main + (np.array(COLOURS[obj.colour_to]) - main) * s
        stripe = stripe + (np.array(_STRIPE_RGB[obj.colour_to]) - stripe) * s
    return main.astype(np.float32), stripe.astype(np.float32)


def _sdf(shape: str, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) in image fractions; (u, v) are object-local coords, y down."""
    if shape == "disc":
        return np.sqrt(u * u + v * v) - r
    if shape == "square":
        h = SQUARE_HALF * r
        qx, qy = np.abs(u) - h, np.abs(v) - h
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0)
    if shape == "triangle":
        # Inigo Quilez's equilateral triangle, circumradius r, apex up on screen (hence -v).
        k = math.sqrt(3.0)
        rr = r * (k / 2)
        px = np.abs(u) - rr
        py = -v + rr / k
        fold = px + k * py > 0
        px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
        px = px - np.clip(px, -2 * rr, 0)
        return -np.sqrt(px * px + py * py) * np.sign(py)
    if shape == "star":
        # Inigo Quilez's 5-point star, outer radius r, a tip pointing up on screen.
        k1x, k1y = 0.809016994375, -0.587785252292
        k2x, k2y = -k1x, k1y
        px, py = np.abs(u), -v
        d = np.maximum(k1x * px + k1y * py, 0)
        px, py = px - 2 * d * k1x, py - 2 * d * k1y
        d = np.maximum(k2x * px + k2y * py, 0)
        px, py = np.abs(px - 2 * d * k2x), py - 2 * d * k2y
        py = py - r
        bax, bay = STAR_INNER * -k1y, STAR_INNER * k1x - 1.0
        h = np.clip((px * bax + py * bay) / (bax * bax + bay * bay), 0, r)
        ex, ey = px - bax * h, py - bay * h
        return np.sqrt(ex * ex + ey * ey) * np.sign(py * bax - px * bay)
    raise ValueError(f"unknown shape {shape!r}")


def render_background(bg: BackgroundSpec, size: int) -> np.ndarray:
    """Background image, float32 (size, size, 3) in [0, 0.5]."""
    g = (np.arange(size, dtype=np.float64) + 0.5) / size - 0.5
    x, y = g[None, :], g[:, None]
    ca, sa = math.cos(bg.angle), math.sin(bg.angle)
    u = ca * x + sa * y
    if bg.kind == "gradient":
        t = np.clip(0.5 + u / (abs(ca) + abs(sa)), 0.0, 1.0)  # corner-to-corner span maps onto 0..1
    elif bg.kind == "sinusoid":
        t = 0.5 + 0.5 * np.sin(2 * math.pi * bg.freq * u + bg.phase)
    elif bg.kind == "checker":
        v = -sa * x + ca * y
        off = bg.phase / (2 * math.pi)
        t = np.mod(np.floor(u * bg.freq + off) + np.floor(v * bg.freq + off), 2.0)
    elif bg.kind == "stripes":
        t = np.mod(np.floor(u * 2 * bg.freq + bg.phase / math.pi), 2.0)
    elif bg.kind == "vignette":
        cx, cy = 0.2 * ca, 0.2 * sa  # centre off the middle, so the vignette is not a symmetric halo
        t = np.clip(np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / 0.8, 0.0, 1.0) ** 1.5
    else:  # noise: bilinear value noise on a (freq+1)^2 lattice, the lattice seeded by phase
        n = int(bg.freq) + 1
        lattice = np.random.default_rng(int(bg.phase * 1e6)).random((n, n))
        c = np.clip((g + 0.5) * (n - 1), 0, n - 1 - 1e-9)
        i0, f = np.floor(c).astype(int), c - np.floor(c)
        f = f * f * (3 - 2 * f)  # smoothstep: no visible lattice creases
        rows = lattice[i0] * (1 - f)[:, None] + lattice[i0 + 1] * f[:, None]
        t = rows[:, i0] * (1 - f)[None] + rows[:, i0 + 1] * f[None]
    a, b = np.array(bg.colour_a), np.array(bg.colour_b)
    t = np.broadcast_to(t, (size, size))[..., None]
    return (a + (b - a) * t).astype(np.float32)


def _coverage_and_fill(
    objs: list[ObjectSpec], size: int, frames: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Coverage (m, T, H, W) in {0} U [1/32, 31/32] U {1}, plus fill colours.

    Returns (coverage, patterned fill (m_patterned, T, H, W, 3) or None, main colours (m, T, 3)); patterned =
    striped or two-tone, in object order. Coverages below
    1/32 (above 31/32) snap to 0 (1) so every masked pixel visibly changes and unmasked ones are bit-exact.
    """
    m = len(objs)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    tracks = np.array([object_track(o, frames) for o in objs], np.float32).reshape(m, 4, frames)
    cover = np.empty((m, frames, size, size), np.float32)
    mains = np.empty((m, frames, 3), np.float32)
    stripes_idx = [i for i, o in enumerate(objs) if o.striped or o.colour_back]
    striped_fill = np.empty((len(stripes_idx), frames, size, size, 3), np.float32) if stripes_idx else None
    for i, o in enumerate(objs):
        mains[i] = _colour_track(o, frames)[0]
    for shape in SHAPES:
        idx = [i for i, o in enumerate(objs) if o.shape == shape]
        if not idx:
            continue
        tr = tracks[idx][..., None, None]  # (g, 4, T, 1, 1)
        cx, cy, r, ang = tr[:, 0], tr[:, 1], tr[:, 2], tr[:, 3]
        dx, dy = grid - cx, grid[:, None] - cy  # (g, T, 1, W), (g, T, H, 1)
        c, s = np.cos(ang), np.sin(ang)
        u = c * dx + s * dy  # rotate the sample points by -angle: the shape turns by +angle (clockwise)
        v = c * dy - s * dx
        a = np.clip(0.5 - _sdf(shape, u, v, r) * size, 0.0, 1.0)
        a = np.where(a < 1 / 32, 0.0, np.where(a > 31 / 32, 1.0, a)).astype(np.float32)
        cover[idx] = a
        for g, i in enumerate(idx):
            if objs[i].colour_back:  # two-tone: the back half (u < 0) in colour_back, a 1-px seam
                main = mains[i][:, None, None]
                back = np.array(COLOURS[objs[i].colour_back], np.float32)
                w = np.clip(0.5 - u[g] * size, 0.0, 1.0)[..., None]
                striped_fill[stripes_idx.index(i)] = main + (back - main) * w
                continue
            if not objs[i].striped:
                continue
            # Smooth stripes, ~1 px transitions at any resolution; amplitude = period in px / (2 pi).
            period = STRIPE_PERIOD * r[g]
            amp = period * size / (2 * math.pi)
            w = np.clip(0.5 - amp * np.cos(2 * math.pi * u[g] / period), 0.0, 1.0)[..., None]
            main, stripe = _colour_track(objs[i], frames)
            striped_fill[stripes_idx.index(i)] = main[:, None, None] + (stripe - main)[:, None, None] * w
    return cover, striped_fill, mains


def render_batch(
    specs: Sequence[SceneSpec], *, size: int = 32, frames: int = 9
) -> tuple[np.ndarray, np.ndarray]:
    """Render many scenes at once (vectorised over clips, frames and pixels).

    Returns videos float32 (n, T, H, W, 3) in [0, 1] and target masks bool (n, T, H, W). Objects are
    composited back to front by (layer, index) with ``out = out * (1 - a) + fill * a``, which is bit-exact
    where a is 0 or 1.
    A scene with no objects yields its background and an all-False mask.
    """
    check_resolution(size, frames)
    n = len(specs)
    videos = np.empty((n, frames, size, size, 3), np.float32)
    for i, spec in enumerate(specs):
        videos[i] = render_background(spec.background, size)
    owners = [(i, j) for i, spec in enumerate(specs) for j in range(len(spec.objects))]
    objs = [specs[i].objects[j] for i, j in owners]
    masks = np.zeros((n, frames, size, size), bool)
    if not objs:
        return videos, masks
    cover, striped_fill, mains = _coverage_and_fill(objs, size, frames)
    flat = {ij: k for k, ij in enumerate(owners)}
    striped_pos = {k: p for p, k in enumerate(k for k, o in enumerate(objs) if o.striped or o.colour_back)}
    orders = [sorted(range(len(sp.objects)), key=lambda j, sp=sp: (sp.objects[j].layer, j)) for sp in specs]
    vis = np.zeros((n, frames, size, size), np.float32)
    for level in range(max(len(o) for o in orders)):
        # Clips without an object at this depth are skipped (a = 0 would be an exact no-op anyway).
        rows, ks, is_target = [], [], []
        for i, order in enumerate(orders):
            if level < len(order):
                rows.append(i)
                ks.append(flat[(i, order[level])])
                is_target.append(order[level] == 0)
        a = cover[ks][..., None]
        fill = np.empty((len(ks), frames, size, size, 3), np.float32)
        for r, k in enumerate(ks):
            fill[r] = striped_fill[striped_pos[k]] if k in striped_pos else mains[k][:, None, None]
        videos[rows] = videos[rows] * (1.0 - a) + fill * a
        tgt = np.array(is_target)[:, None, None, None]
        vis[rows] = np.where(tgt, a[..., 0], vis[rows] * (1.0 - a[..., 0]))
    masks = vis > 0
    return videos, masks


def render_scene(spec: SceneSpec, *, size: int = 32, frames: int = 9) -> Scene:
    """Render one scene: video float32 (T, size, size, 3) in [0, 1], target mask bool (T, size, size)."""
    videos, masks = render_batch([spec], size=size, frames=frames)
    return Scene(spec=spec, video=videos[0], mask=masks[0], caption=caption(spec) if spec.objects else "")


def sample_batch(
    n: int, rng_or_seed: np.random.Generator | int, *, size: int = 32, frames: int = 9, **sample_kw
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sample and render ``n`` random scenes (pretraining fast path).

    Each clip uses its own seed drawn from ``rng_or_seed`` (a Generator, advanced in place, or an int seed),
    so clips are reproducible via ``sample_scene(seed, **sample_kw)``. Returns videos float32
    (n, T, H, W, 3) in [0, 1], masks bool (n, T, H, W), captions (n strings).
    """
    check_resolution(size, frames)
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    seeds = rng.integers(0, 2**62, size=n)
    specs = [sample_scene(int(s), **sample_kw) for s in seeds]
    videos, masks = render_batch(specs, size=size, frames=frames)
    return videos, masks, [caption(s) for s in specs]


# ----------------------------------------------------------------------------------------------------
# Ground-truth edits
# ----------------------------------------------------------------------------------------------------


def _vivid_blend(c0: str, c1: str) -> bool:
    """True if the RGB midpoint of two palette colours is still vivid (red->cyan would pass through grey)."""
    mid = (np.array(COLOURS[c0]) + np.array(COLOURS[c1])) / 2
    return float(mid.max() - mid.min()) >= 0.3 or float(mid.max()) >= 0.8


def _appearance_source(spec: SceneSpec, kind: str, rng: np.random.Generator) -> SceneSpec:
    """The source scene of an :data:`APPEARANCE_KINDS` edit: ``spec``'s target reshaped (see :func:`make_edit`);
    the background and the other objects stay."""
    t = spec.objects[0]
    others = ()  # the target alone: another mover could hide the part of the edit that matters
    if kind in ("corner_swap", "grow"):
        # circling: unlike a bounce off a wall, the orbit does not depend on the object's size, so the edited
        # object (larger) follows the source's path; the orbit keeps the larger one inside the frame
        size = min(t.size, 0.2 if kind == "corner_swap" else 0.15)
        grown = size * (CORNER_SQUARE / SQUARE_HALF if kind == "corner_swap" else GROW_FACTOR)
        radius = min(0.5 - _PLACE_EXTENT * grown, 0.3)
        phi = math.atan2(t.start[1] - 0.5, t.start[0] - 0.5)
        shape = "disc" if kind == "corner_swap" else _pick(rng, ("disc", "square"))  # tight boxes
        target = replace(t, shape=shape, striped=False, colour_to=None, colour_back=None, size=size,
                         motion="circle", direction=t.direction if t.direction in ROTATIONS else "cw",
                         speed="slow", start=(0.5 + radius * math.cos(phi), 0.5 + radius * math.sin(phi)))
    else:  # reveal
        r = 0.1  # small enough that a fast move right (0.6) from beside the occluder never reaches the wall
        hs = r / SQUARE_HALF * 1.25  # the occluder's size: its half side covers the back half with a 1-px margin
        x0 = 2 * hs * SQUARE_HALF + 0.01
        y0 = float(np.clip(t.start[1], 0.3, 0.7))
        used = {o.colour for o in spec.objects}
        pal = [c for c in COLOUR_NAMES if c not in used] or list(COLOUR_NAMES)
        back, occ_colour = (str(c) for c in rng.choice(pal, size=2, replace=False))
        target = replace(t, shape="disc", striped=False, colour_to=None, colour_back=back, size=r,
                         motion="linear", direction="e", speed="fast", start=(x0, y0), angle=0.0, layer=0)
        # its right edge a little right of the seam: frame 0 shows none of the back half, not even the seam
        occluder = ObjectSpec(shape="square", colour=occ_colour, striped=False, size=hs, motion="static",
                              direction=None, speed="slow", start=(x0 - hs * SQUARE_HALF + 0.05, y0), layer=1)
        others = (occluder,)
    return replace(spec, objects=(target, *others))


def make_edit(
    spec: SceneSpec, kind: str, *, size: int = 32, frames: int = 9, seed: int | None = None, **kw
) -> Edit:
    """Ground-truth edit of the target (object 0); everything else is untouched.

    kind: 'recolour' (kw ``colour``), 'texture' (solid <-> striped), 'shape_swap' (kw ``shape``; same motion
    and size), 'colour_shift' (kw ``colour`` = start, ``to_colour`` = end, ``with_middle``: also supply the
    middle frame). colour_shift starts from a *new* colour (so frame 0 is itself an edit) and interpolates to
    a third colour by the last frame, which only the last edited frame reveals. Unspecified choices are drawn
    from ``seed`` (default: derived from ``spec.seed`` and ``kind``), avoiding colours already in the scene.

    The :data:`APPEARANCE_KINDS` first reshape the source's target so that frame 0 cannot show the whole edit
    (``Edit.source`` is that source; ``with_last`` also supplies the last edited frame):

    * 'corner_swap': the target is a solid circling disc and becomes a square just inside its bounding box
      (half side :data:`CORNER_SQUARE` of the radius): the four corners lie outside the disc, inside its box;
    * 'reveal': the target is a two-tone disc moving right, fast, its back (left) half behind a static occluder in
      frame 0; the edit recolours the back half (kw ``colour``), which only later frames show, so the last edited
      frame is always supplied;
    * 'grow': the target (solid, circling: its path does not depend on its size) becomes :data:`GROW_FACTOR`
      times larger, beyond the source object's box.
    """
    if kind not in ALL_EDIT_KINDS:
        raise ValueError(f"unknown edit kind {kind!r}; choose from {ALL_EDIT_KINDS}")
    allowed = {"recolour": {"colour"}, "texture": set(), "shape_swap": {"shape"}, "corner_swap": {"with_last"},
               "reveal": {"colour"}, "grow": {"with_last"}}.get(kind, {"colour", "to_colour", "with_middle"})
    if set(kw) - allowed:
        extra = sorted(set(kw) - allowed)
        raise TypeError(f"make_edit({kind!r}) got unexpected options {extra}; allowed: {sorted(allowed)}")
    if not spec.objects:
        raise ValueError("spec has no target object to edit")
    check_resolution(size, frames)
    rng = np.random.default_rng(seed if seed is not None else [abs(int(spec.seed)), ALL_EDIT_KINDS.index(kind)])
    if kind in APPEARANCE_KINDS:
        spec = _appearance_source(spec, kind, rng)
    target = spec.objects[0]
    used = {o.colour for o in spec.objects} | {o.colour_back for o in spec.objects if o.colour_back}
    fresh = [c for c in COLOUR_NAMES if c not in used] or [c for c in COLOUR_NAMES if c != target.colour]

    if kind == "recolour":
        new = replace(target, colour=kw.get("colour") or _pick(rng, fresh))
        if new.colour == target.colour:
            raise ValueError(f"recolour to the same colour {new.colour!r} is not an edit")
    elif kind == "texture":
        new = replace(target, striped=not target.striped)
    elif kind == "shape_swap":
        choices = [s for s in SHAPES if s != target.shape]
        if target.motion == "spin" and not target.striped:
            choices = [s for s in choices if s != "disc"]  # keep the spin visible
        new = replace(target, shape=kw.get("shape") or _pick(rng, choices))
        if new.shape == target.shape:
            raise ValueError(f"shape_swap to the same shape {new.shape!r} is not an edit")
    elif kind == "corner_swap":
        new = replace(target, shape="square", size=target.size * CORNER_SQUARE / SQUARE_HALF)
    elif kind == "reveal":
        new = replace(target, colour_back=kw.get("colour") or _pick(rng, fresh))
        if new.colour_back == target.colour_back:
            raise ValueError(f"reveal to the same colour {new.colour_back!r} is not an edit")
    elif kind == "grow":
        new = replace(target, size=target.size * GROW_FACTOR)
    else:
        start = kw.get("colour") or _pick(rng, fresh)
        ends = [c for c in COLOUR_NAMES if c not in (start, target.colour) and _vivid_blend(start, c)]
        end = kw.get("to_colour") or _pick(rng, ends)
        if start == target.colour or end == start:
            raise ValueError("colour_shift needs start != source colour and end != start")
        new = replace(target, colour=start, colour_to=end)

    edited = replace(spec, objects=(new, *spec.objects[1:]))
    videos, masks = render_batch([spec, edited], size=size, frames=frames)
    source = Scene(spec=spec, video=videos[0], mask=masks[0], caption=caption(spec))
    frame_ids = [0]
    if kind == "colour_shift":
        frame_ids += ([(frames - 1) // 2] if kw.get("with_middle") else []) + [frames - 1]
    elif kind == "reveal" or kw.get("with_last"):
        frame_ids.append(frames - 1)
    return Edit(
        kind=kind,
        video=videos[1],
        mask=masks[0] | masks[1],
        caption=caption(edited),
        edited_frames={t: videos[1][t].copy() for t in frame_ids},
        spec=edited,
        source=source,
    )
