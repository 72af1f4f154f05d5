"""Tests for the procedural toy-world scene generator (loraedit_nb.toyworld.scenes)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from loraedit_nb.toyworld import (
    APPEARANCE_KINDS,
    COLOURS,
    DIRECTIONS,
    EDIT_KINDS,
    VOCAB,
    BackgroundSpec,
    ObjectSpec,
    SceneSpec,
    caption,
    caption_words,
    make_edit,
    object_track,
    render_batch,
    render_scene,
    sample_batch,
    sample_scene,
)

BG = BackgroundSpec(kind="gradient", colour_a=(0.2, 0.2, 0.25), colour_b=(0.3, 0.28, 0.2), angle=0.3)


def _obj(**kw) -> ObjectSpec:
    base = dict(
        shape="disc",
        colour="red",
        striped=False,
        size=0.15,
        motion="linear",
        direction="se",
        speed="fast",
        start=(0.5, 0.5),
    )
    base.update(kw)
    return ObjectSpec(**base)


def _centroid(mask: np.ndarray) -> np.ndarray:
    """Per-frame (x, y) centroid in fractions of the image side; mask (T, H, W) -> (T, 2)."""
    t, h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w]
    n = mask.sum(axis=(1, 2))
    assert (n > 0).all()
    cx = (mask * (xs + 0.5)).sum(axis=(1, 2)) / n / w
    cy = (mask * (ys + 0.5)).sum(axis=(1, 2)) / n / h
    return np.stack([cx, cy], axis=1)


def _mix_specs(n: int) -> list[SceneSpec]:
    """A varied set: 1-3 objects, plus forced occlusion scenes."""
    specs = [sample_scene(s, n_objects=(1, 3)) for s in range(n)]
    specs += [sample_scene(100 + s, n_objects=(2, 3), motions=("occlusion",)) for s in range(n // 2)]
    return specs


# ------------------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------------------


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b = sample_scene(7, n_objects=(1, 3)), sample_scene(7, n_objects=(1, 3))
    assert a == b
    va, vb = render_scene(a).video, render_scene(b).video
    assert va.dtype == np.float32 and np.array_equal(va, vb)
    c = sample_scene(8, n_objects=(1, 3))
    assert c != a
    assert not np.array_equal(render_scene(c).video, va)


def test_sample_batch_reproducible_and_rng_advances():
    v1, m1, c1 = sample_batch(4, 123)
    v2, m2, c2 = sample_batch(4, 123)
    assert np.array_equal(v1, v2) and np.array_equal(m1, m2) and c1 == c2
    rng = np.random.default_rng(5)
    first = sample_batch(4, rng)[0]
    second = sample_batch(4, rng)[0]
    assert not np.array_equal(first, second)


# ------------------------------------------------------------------------------------------------------------
# Masks
# ------------------------------------------------------------------------------------------------------------


def test_mask_is_exactly_the_pixels_the_target_changes():
    specs = _mix_specs(24)
    without = [replace(s, objects=s.objects[1:]) for s in specs]
    videos, masks = render_batch(specs + without)
    n = len(specs)
    for i, spec in enumerate(specs):
        changed = (videos[i] != videos[n + i]).any(axis=-1)
        assert np.array_equal(changed, masks[i]), (spec.seed, caption(spec))
        assert masks[i][0].any(), "target must be visible on frame 0"
        assert not masks[n + i].any() or len(spec.objects) > 1
        if all(o.layer <= spec.objects[0].layer for o in spec.objects[1:]):
            # Nothing in front: every masked pixel changes clearly (edge coverage is snapped to >= 1/32).
            assert np.abs(videos[i] - videos[n + i]).max(axis=-1)[masks[i]].min() > 2e-3


def test_occluder_hides_part_of_the_target():
    hidden = 0
    for s in range(6):
        spec = sample_scene(s, n_objects=2, motions=("occlusion",))
        assert spec.objects[1].layer > spec.objects[0].layer and "in front" in caption(spec)
        alone = replace(spec, objects=spec.objects[:1])
        _, masks = render_batch([spec, alone])
        assert (masks[0] <= masks[1]).all()  # occlusion only removes target pixels
        hidden += int(masks[1].sum() - masks[0].sum())
    assert hidden > 0


def test_masks_and_videos_are_well_formed():
    scene = render_scene(sample_scene(3, n_objects=3), size=64, frames=17)
    assert scene.video.shape == (17, 64, 64, 3) and scene.video.dtype == np.float32
    assert scene.mask.shape == (17, 64, 64) and scene.mask.dtype == bool
    assert 0.0 <= scene.video.min() and scene.video.max() <= 1.0


# ------------------------------------------------------------------------------------------------------------
# Edits
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_edit_changes_only_inside_mask_and_does_change_it(kind):
    for spec in _mix_specs(10):
        edit = make_edit(spec, kind)
        src = edit.source
        assert edit.video.shape == src.video.shape and edit.mask.dtype == bool
        assert np.array_equal(edit.video[~edit.mask], src.video[~edit.mask])
        assert (edit.mask >= src.mask).all()
        for t in range(edit.video.shape[0]):
            if edit.mask[t].sum() >= 3:
                assert (edit.video[t][edit.mask[t]] != src.video[t][edit.mask[t]]).any(), (spec.seed, t)
        assert edit.caption != src.caption
        assert np.array_equal(edit.edited_frames[0], edit.video[0])
        assert all(w in VOCAB for w in caption_words(edit.caption))


@pytest.mark.parametrize("kind", APPEARANCE_KINDS)
def test_edits_that_frame_0_cannot_show(kind):
    """The appearance regime's cases: exact ground truth, and the part of the edit that frame 0 cannot carry."""
    from loraedit_nb import masks as M

    for spec in _mix_specs(6):
        edit = make_edit(spec, kind)
        src = edit.source
        assert np.array_equal(edit.video[~edit.mask], src.video[~edit.mask]) and (edit.mask >= src.mask).all()
        assert all(w in VOCAB for w in caption_words(edit.caption) + caption_words(src.caption))
        changed = np.abs(edit.video - src.video).sum(-1) > 1e-6
        # the official code's mask of the source (its box grown by 10 %), dilated by 1 px as the cases are
        box = M.dilate(M.to_boxes(src.mask, expand_ratio=0.1, min_area=1), 1)
        if kind == "corner_swap":  # the corners: outside the disc, inside its box, on every frame
            corners = changed & ~src.mask
            assert (corners.reshape(len(corners), -1).sum(1) >= 8).all() and not (corners & ~box).any()
            assert sorted(edit.edited_frames) == [0]
        elif kind == "reveal":  # frame 0 shows (almost) nothing of the recoloured back; later frames show it
            per_frame = changed.reshape(len(changed), -1).sum(1)
            assert per_frame[0] <= 2 and (per_frame[2:] >= 15).all(), per_frame
            assert sorted(edit.edited_frames) == [0, 8] and src.spec.objects[0].colour_back
        else:  # grow: the edited object leaves the source's box on every frame
            assert ((edit.mask & ~box).reshape(len(box), -1).sum(1) >= 3).all()
    assert sorted(make_edit(_mix_specs(1)[0], "grow", with_last=True).edited_frames) == [0, 8]


def test_edit_captions_and_geometry():
    spec = SceneSpec(objects=(_obj(),), background=BG)
    recol = make_edit(spec, "recolour", colour="blue")
    assert recol.caption == "a blue disc moves right and down, fast"
    assert np.array_equal(recol.mask, recol.source.mask)  # same geometry
    tex = make_edit(spec, "texture")
    assert tex.caption == "a red striped disc moves right and down, fast"
    swap = make_edit(spec, "shape_swap", shape="square")
    assert swap.caption == "a red square moves right and down, fast"
    # The swapped shape follows the same path.
    _, masks = render_batch([swap.spec])
    assert np.abs(_centroid(masks[0]) - _centroid(swap.source.mask)).max() < 1.0 / 32
    with pytest.raises(ValueError, match="recolour"):
        make_edit(spec, "recolour", colour="red")
    with pytest.raises(ValueError, match="choose from"):
        make_edit(spec, "bogus")
    with pytest.raises(TypeError, match="unexpected"):
        make_edit(spec, "texture", colour="blue")


def test_colour_shift_needs_a_later_frame():
    spec = SceneSpec(objects=(_obj(motion="static", direction=None, size=0.2),), background=BG)
    edit = make_edit(spec, "colour_shift", colour="green", to_colour="blue", frames=9)
    assert sorted(edit.edited_frames) == [0, 8]
    assert edit.caption == "a green disc turning blue stays still"
    # Fully covered target pixels show the pure palette colour at both ends.
    core = edit.mask[0].copy()
    first, last = edit.edited_frames[0][core], edit.edited_frames[8][core]
    assert np.abs(np.median(first, axis=0) - COLOURS["green"]).max() < 1e-5
    assert np.abs(np.median(last, axis=0) - COLOURS["blue"]).max() < 1e-5
    assert np.abs(first.mean(0) - last.mean(0)).max() > 0.3
    mid = make_edit(spec, "colour_shift", frames=17, with_middle=True, seed=1)
    assert sorted(mid.edited_frames) == [0, 8, 16]
    for t, frame in mid.edited_frames.items():
        assert frame.shape == (32, 32, 3) and np.array_equal(frame, mid.video[t])


# ------------------------------------------------------------------------------------------------------------
# Motion is a function of frame 0 + caption
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_linear_motion_follows_captioned_compass_direction(direction):
    for speed in ("slow", "fast"):
        spec = SceneSpec(objects=(_obj(direction=direction, speed=speed),), background=BG)
        c = _centroid(render_scene(spec, size=64, frames=17).mask)
        d = c[3] - c[0]  # starting at the centre, no bounce before frame 3
        ux, uy = DIRECTIONS[direction]
        for got, want in ((d[0], ux), (d[1], uy)):
            if want == 0:
                assert abs(got) < 0.25 / 64
            else:
                assert np.sign(got) == np.sign(want) and abs(got) > 1.0 / 64


def test_words_for_directions_in_caption():
    words = {d: caption(SceneSpec(objects=(_obj(direction=d),), background=BG)) for d in DIRECTIONS}
    assert words["se"] == "a red disc moves right and down, fast"
    assert words["nw"] == "a red disc moves left and up, fast"
    assert len(set(words.values())) == 8


def test_frame0_is_shared_and_caption_tells_the_motions_apart():
    """Every (motion, direction, speed) leaves frame 0 unchanged; the captions and trajectories all differ."""
    combos = [("static", None, "slow")]
    combos += [("linear", d, s) for d in DIRECTIONS for s in ("slow", "fast")]
    combos += [(m, r, s) for m in ("circle", "spin") for r in ("cw", "ccw") for s in ("slow", "fast")]
    combos += [("pulse", None, s) for s in ("slow", "fast")]
    specs = [
        SceneSpec(
            objects=(_obj(shape="star", motion=m, direction=d, speed=s, start=(0.3, 0.4), angle=0.2),),
            background=BG,
        )
        for m, d, s in combos
    ]
    videos, _ = render_batch(specs)
    for v in videos[1:]:
        assert np.array_equal(v[0], videos[0][0])
    assert len({caption(s) for s in specs}) == len(specs)
    flat = videos.reshape(len(specs), -1)
    assert len({row.tobytes() for row in flat}) == len(specs)


def test_circle_sense_and_radius_from_frame0():
    for sense in ("cw", "ccw"):
        spec = SceneSpec(
            objects=(_obj(motion="circle", direction=sense, speed="slow", start=(0.75, 0.5)),), background=BG
        )
        assert ("counterclockwise" in caption(spec)) == (sense == "ccw")
        c = _centroid(render_scene(spec, size=64, frames=9).mask) - 0.5
        cross = c[0, 0] * c[1, 1] - c[0, 1] * c[1, 0]  # > 0 is clockwise on screen (y down)
        assert (cross > 0) == (sense == "cw")
        radius = np.hypot(c[:, 0], c[:, 1])
        assert np.abs(radius - 0.25).max() < 1.5 / 64
        # slow = a quarter turn over the clip
        turned = math.atan2(c[-1, 1], c[-1, 0]) - math.atan2(c[0, 1], c[0, 0])
        assert abs(abs(turned) - math.pi / 2) < 0.1


def test_linear_motion_bounces_and_stays_inside():
    obj = _obj(direction="e", speed="fast", start=(0.7, 0.5))
    cx, cy, r, _ = object_track(obj, 33)
    assert cx.max() <= 1 - obj.size + 1e-9 and cx.min() >= obj.size - 1e-9
    assert np.diff(cx)[0] > 0 and np.diff(cx)[-1] < 0  # hit the right wall and came back
    assert np.allclose(cy, 0.5) and np.allclose(r, obj.size)


def test_same_path_at_every_resolution():
    specs = [sample_scene(s, n_objects=1, motions=("linear", "circle")) for s in range(6)]
    small = render_batch(specs, size=32, frames=9)[1]
    large = render_batch(specs, size=64, frames=17)[1]
    huge = render_batch(specs[:2], size=96, frames=33)[1]
    for i in range(len(specs)):
        a, b = _centroid(small[i][[0, -1]]), _centroid(large[i][[0, -1]])
        assert np.abs(a - b).max() < 1.0 / 32, specs[i]
        if i < 2:
            assert np.abs(_centroid(huge[i][[0, -1]]) - b).max() < 1.0 / 64


# ------------------------------------------------------------------------------------------------------------
# Validation, batches, vocabulary
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "fix"),
    [
        ({"frames": 8}, "frames=9"),
        ({"frames": 16}, "frames=17"),
        ({"frames": 1}, "frames=5"),
        ({"size": 30}, "size=32"),
        ({"size": 8}, "size=16"),
    ],
)
def test_bad_resolution_raises_with_fix(kw, fix):
    spec = sample_scene(0)
    for fn in (
        lambda: render_scene(spec, **kw),
        lambda: sample_batch(2, 0, **kw),
        lambda: make_edit(spec, "texture", **kw),
    ):
        with pytest.raises(ValueError, match=fix):
            fn()


def test_bad_specs_raise():
    with pytest.raises(ValueError, match="shape"):
        _obj(shape="hexagon")
    with pytest.raises(ValueError, match="direction"):
        _obj(motion="circle", direction="se")
    with pytest.raises(ValueError, match="n_objects"):
        sample_scene(0, n_objects=4)
    with pytest.raises(ValueError, match="motions"):
        sample_scene(0, motions=("teleport",))


def test_sample_batch_shapes_and_vocab():
    videos, masks, caps = sample_batch(16, 0, n_objects=(1, 3))
    assert videos.shape == (16, 9, 32, 32, 3) and videos.dtype == np.float32
    assert masks.shape == (16, 9, 32, 32) and masks.dtype == bool
    assert 0.0 <= videos.min() and videos.max() <= 1.0
    assert masks[:, 0].any(axis=(1, 2)).all()
    assert len(caps) == 16 and len(set(caps)) > 8
    vocab = set(VOCAB)
    assert len(vocab) == len(VOCAB)
    for c in caps:
        words = caption_words(c)
        assert words and set(words) <= vocab, c
        assert words[0] in ("a", "an")


def test_every_caption_form_is_in_vocab():
    specs = [sample_scene(s, n_objects=(1, 3)) for s in range(60)]
    seen = set()
    for spec in specs:
        for text in [caption(spec)] + [make_edit(spec, k).caption for k in ("recolour", "colour_shift")]:
            words = caption_words(text)
            assert set(words) <= set(VOCAB), text
            seen |= set(words)
    assert {"in", "front", "turning", "striped", "clockwise", "counterclockwise"} <= seen


def test_spin_is_visible_even_for_discs():
    # Only discs allowed: spinning discs must be striped, else the spin would be invisible.
    for s in range(10):
        spec = sample_scene(s, motions=("spin",), shapes=("disc",))
        assert spec.objects[0].striped
        video = render_scene(spec).video
        assert not np.array_equal(video[0], video[-1])
    with pytest.raises(ValueError, match="spin"):
        sample_scene(0, motions=("spin",), shapes=("disc",), allow_stripes=False)
