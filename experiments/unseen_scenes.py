"""LoRA-Edit on toy scenes the project never generated.

A new user's scenes, drawn here with *other rendering code* than ``loraedit_nb.toyworld`` (its own anti-aliased
shapes, off-palette colours, its own backgrounds: smooth gradient, vignette, value noise, checkers; paths: straight,
diagonal, bounce, circle; one static distractor), captioned in the toy vocabulary as a user would. Seven cases: five
recolours and two shape swaps; the shape swaps also give the edited last frame (the appearance regime's input).

Every case runs through ``comparisons.run_variant`` with the README's defaults (``toy_config``), for each seed:
naive LoRA, LoRA-Edit (motion) and, on the shape swaps, LoRA-Edit (motion + appearance) with the edited last frame
trained on and also placed. Output: ``results/unseen_scenes/results.json``
(its table: ``comparison_by_kind.py``).

Run (about 20 CPU-minutes per seed at one thread):
    LORAEDIT_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python experiments/unseen_scenes.py --seeds 0,1 --workers 2
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

SIZE, FRAMES, SS = 32, 9, 4  # 4x4 supersampling for anti-aliased edges

# off-palette colours (the toy palette's named colours, shifted as a user's picker would give them)
RGB = {"blue": (0.20, 0.35, 0.95), "red": (0.90, 0.18, 0.15), "yellow": (0.92, 0.85, 0.20),
       "green": (0.20, 0.80, 0.25), "magenta": (0.85, 0.20, 0.85), "cyan": (0.20, 0.85, 0.85),
       "orange": (0.95, 0.60, 0.10), "white": (0.97, 0.97, 0.97)}


def coverage(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """(SIZE, SIZE) float coverage in [0, 1] of a shape centred at pixel coords (cx, cy), 'radius' r."""
    n = SIZE * SS
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / SS
    dx, dy = x - cx, y - cy
    if shape == "disc":
        inside = dx ** 2 + dy ** 2 <= r ** 2
    elif shape == "square":
        inside = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    elif shape == "triangle":  # equilateral, circumradius r, apex up on screen (y grows downwards)
        inside = (dy <= 0.5 * r) & (np.abs(dx) <= (dy + r) / math.sqrt(3))
    else:
        raise ValueError(shape)
    return inside.reshape(SIZE, SS, SIZE, SS).mean((1, 3))


def background(kind: str, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    if kind == "gradient":
        a, b = np.array([0.14, 0.17, 0.24]), np.array([0.38, 0.33, 0.28])
        t = (0.7 * x + 0.3 * y)[..., None]
        return (1 - t) * a + t * b
    if kind == "vignette":
        d = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)[..., None] / 0.71
        return np.array([0.42, 0.40, 0.36]) * (1 - 0.7 * d) + 0.05
    if kind == "noise":
        g = rng.uniform(0.12, 0.42, (5, 5, 1))
        u = np.linspace(0, 4, SIZE)
        i0 = np.clip(np.floor(u).astype(int), 0, 3)
        f = (u - i0)[:, None]
        f = f * f * (3 - 2 * f)  # smoothstep value noise
        rows = g[i0] * (1 - f[..., None]) + g[i0 + 1] * f[..., None]  # (SIZE, 5, 1)
        cols = rows[:, i0] * (1 - f.T[..., None]) + rows[:, i0 + 1] * f.T[..., None]
        return np.repeat(cols, 3, -1) * np.array([1.0, 0.95, 1.05])
    if kind == "checkers":
        c = ((np.floor(x * 4) + np.floor(y * 4)) % 2)[..., None]
        return 0.22 + 0.1 * c * np.ones(3)
    raise ValueError(kind)


def path(kind: str) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, FRAMES)
    if kind == "straight":
        return [(8 + 16 * s, 15.0) for s in t]
    if kind == "diagonal":
        return [(8 + 15 * s, 8 + 14 * s) for s in t]
    if kind == "bounce":  # right, hits the wall, comes back, drifting down
        u = 7 + 36 * t
        return [(float(u_ if u_ <= 25 else 50 - u_), 10 + 10 * s) for u_, s in zip(u, t)]
    if kind == "circle":  # clockwise on screen, around the image centre, half a turn
        return [(16 + 8 * math.cos(math.pi * s), 16 + 8 * math.sin(math.pi * s)) for s in t]
    raise ValueError(kind)


def render(bg: np.ndarray, shape: str, colour, track, r: float, distractor=None, colour_at=None):
    """Video (T, H, W, 3) and the target's coverage (T, H, W). colour_at(t) overrides the colour per frame."""
    video, cov = [], []
    for i, (cx, cy) in enumerate(track):
        f = bg.copy()
        if distractor is not None:
            c = coverage(distractor[0], *distractor[2])[..., None]
            f = f * (1 - c) + c * np.array(RGB[distractor[1]])
        c = coverage(shape, cx, cy, r)
        col = np.array(colour_at(i) if colour_at else RGB[colour])
        f = f * (1 - c[..., None]) + c[..., None] * col
        video.append(f)
        cov.append(c)
    return np.clip(np.stack(video), 0, 1).astype(np.float32), np.stack(cov)


CASES = [  # name, background, path, shape, colour, caption motion, edit (kind, value), distractor
    ("u0_disc_straight_gradient", "gradient", "straight", "disc", "blue", "moves right, fast",
     ("recolour", "green"), None),
    ("u1_square_diagonal_vignette", "vignette", "diagonal", "square", "red", "moves right and down, fast",
     ("recolour", "yellow"), None),
    ("u2_triangle_bounce_noise", "noise", "bounce", "triangle", "yellow", "moves right and down, fast",
     ("recolour", "cyan"), None),
    ("u3_disc_circle_checkers", "checkers", "circle", "disc", "green", "circles clockwise, fast",
     ("recolour", "magenta"), None),
    ("u4_square_straight_distractor", "gradient", "straight", "square", "magenta", "moves right, fast",
     ("recolour", "orange"), ("disc", "cyan", (22.0, 26.0, 3.5))),
    ("u5_disc_diagonal_noise_to_square", "noise", "diagonal", "disc", "red", "moves right and down, fast",
     ("shape_swap", "square"), None),
    ("u6_square_circle_vignette_to_disc", "vignette", "circle", "square", "blue", "circles clockwise, fast",
     ("shape_swap", "disc"), None),
]


def build_cases():
    from loraedit_nb import masks as M
    from loraedit_nb.comparisons import Case

    out = []
    for i, (name, bgk, pk, shape, colour, motion, (kind, val), dis) in enumerate(CASES):
        rng = np.random.default_rng(100 + i)
        bg = background(bgk, rng)
        track = path(pk)
        r = 5.0
        src, cov = render(bg, shape, colour, track, r, dis)
        if kind == "recolour":
            gt, cov2 = render(bg, shape, val, track, r, dis)
            new_shape, new_colour = shape, val
        else:
            gt, cov2 = render(bg, val, colour, track, r, dis)
            new_shape, new_colour = val, colour
        obj = (cov > 0) | (cov2 > 0)
        edited = {0: gt[0]}
        if kind == "shape_swap":
            edited[FRAMES - 1] = gt[FRAMES - 1]
        extra = ""
        if dis is not None:
            extra = f", with a {dis[1]} {dis[0]} staying still"
        art = {c: "an" if c[0] in "aeiou" else "a" for c in (colour, new_colour)}
        out.append(Case(name, kind, src, M.dilate(obj, 1), gt, edited,
                        f"{art[colour]} {colour} {shape} {motion}{extra}",
                        f"{art[new_colour]} {new_colour} {new_shape} {motion}{extra}", obj))
    return out


def render_two_tone(bg, front, back, track, r, occluder=None):
    """A disc whose left half (x < cx) is ``back`` and right half ``front``, drawn along ``track``, optionally
    behind a static ``occluder`` = (x0, y0, x1, y1, colour) rectangle (4x4 supersampled like coverage())."""
    n = SIZE * SS
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / SS
    video, cov = [], []
    for cx, cy in track:
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= r ** 2
        left = (inside & (x < cx)).reshape(SIZE, SS, SIZE, SS).mean((1, 3))[..., None]
        right = (inside & (x >= cx)).reshape(SIZE, SS, SIZE, SS).mean((1, 3))[..., None]
        f = bg * (1 - left - right) + left * np.array(RGB[back]) + right * np.array(RGB[front])
        c = (left + right)[..., 0]
        if occluder is not None:
            x0, y0, x1, y1, col = occluder
            o = ((x >= x0) & (x < x1) & (y >= y0) & (y < y1)).reshape(SIZE, SS, SIZE, SS).mean((1, 3))[..., None]
            f = f * (1 - o) + o * np.array(RGB[col])
            c = c * (1 - o[..., 0])
        video.append(f)
        cov.append(c)
    return np.clip(np.stack(video), 0, 1).astype(np.float32), np.stack(cov)


def build_appearance_cases(mask: str = "box"):
    """The appearance regime's three kinds (toyworld.APPEARANCE_KINDS), drawn with this file's code: a disc that
    becomes a square just inside its box; a two-tone disc leaving an occluder, its hidden back half recoloured
    (the last edited frame supplied); an object that grows 1.8x. ``mask`` as comparisons.appearance_cases: the
    source's box + 10 % dilated 1 px, or the union of both objects dilated 2 px. ``new_pixels`` as there."""
    from loraedit_nb.comparisons import appearance_case

    rng = np.random.default_rng(300)
    out = []
    bg = background("noise", rng)
    circle = path("circle")
    # corner swap: the square's half side (0.85 r' in coverage()) just inside the disc's box (r)
    src, cov = render(bg, "disc", "blue", circle, 5.0)
    gt, cov2 = render(bg, "square", "blue", circle, 5.0 * 0.95 / 0.85)
    cap = "circles clockwise, fast"
    out.append(("u_corner_swap", "corner_swap", src, cov, gt, cov2, {0: gt[0]}, f"a blue disc {cap}",
                f"a blue square {cap}"))
    # reveal: moves right from behind an occluder that hides its left half in frame 0
    bg2 = background("gradient", rng)
    track = [(9.0 + 16 * s, 16.0) for s in np.linspace(0, 1, FRAMES)]
    occ = (0.0, 9.5, 10.0, 22.5, "green")
    src2, cv = render_two_tone(bg2, "red", "yellow", track, 4.0, occ)
    gt2, cv2 = render_two_tone(bg2, "red", "cyan", track, 4.0, occ)
    mv = "moves right, fast, with a green square staying still in front"
    out.append(("u_reveal", "reveal", src2, cv, gt2, cv2, {0: gt2[0], FRAMES - 1: gt2[FRAMES - 1]},
                f"a red and yellow disc {mv}", f"a red and cyan disc {mv}"))
    # grow
    bg3 = background("vignette", rng)
    src3, c3 = render(bg3, "square", "magenta", path("diagonal"), 3.5)
    gt3, c4 = render(bg3, "square", "magenta", path("diagonal"), 3.5 * 1.8)
    cap3 = "moves right and down, fast"
    out.append(("u_grow", "grow", src3, c3, gt3, c4, {0: gt3[0]}, f"a magenta square {cap3}",
                f"a magenta square {cap3}"))
    return [appearance_case(name, kind, s_, c_src > 0, g_, (c_src > 0) | (c_gt > 0), edited, prompt, edited_prompt,
                            mask=mask)
            for name, kind, s_, c_src, g_, c_gt, edited, prompt, edited_prompt in out]


def variants_for(case) -> tuple[str, ...]:
    v = ("naive_lora", "motion")
    return v + (("motion+appearance", "motion+appearance_placed") if case.kind == "shape_swap" else ())


def run(jobs, threads, q=None):
    import torch

    from loraedit_nb.comparisons import run_variant
    from loraedit_nb.models import load_backbone

    torch.set_num_threads(threads)
    bb = load_backbone("toy")
    cases = {c.name: c for c in build_cases()}
    rows = []
    for name, seed in jobs:
        case, cache = cases[name], {}
        for v in variants_for(case):
            t0 = time.process_time()
            r = run_variant(bb, case, v, seed=seed, lora_cache=cache)
            r.pop("video")
            r["cpu_s"] = round(time.process_time() - t0, 1)
            rows.append(r)
            print(f"{name} seed {seed} {v}: region {r['gt_psnr_region']:.2f} near {r['gt_near_share']:.2f} "
                  f"vanished {r['vanished_frames']} bg {r['bg_psnr']:.2f}", flush=True)
    if q is not None:
        q.put(rows)
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="0")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default="results/unseen_scenes")
    p.add_argument("--preview", action="store_true", help="write the cases' source|GT strip and stop")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.preview:
        from loraedit_nb.video import hstack, write_video

        for c in build_cases():
            write_video(out / f"{c.name}.mp4", hstack(c.source, c.ground_truth, scale=4, labels=("source", "edit")), 6)
            print(c.name, "|", c.prompt, "->", c.edited_prompt, "| mask px/frame", c.mask.sum((1, 2)).tolist())
        return
    seeds = [int(s) for s in a.seeds.split(",")]
    jobs = [(c.name, s) for s in seeds for c in build_cases()]
    if a.workers <= 1:
        rows = run(jobs, 1)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [ctx.Process(target=run, args=(jobs[i::a.workers], 1, q)) for i in range(a.workers)]
        for pr in procs:
            pr.start()
        rows = [r for _ in procs for r in q.get()]
        for pr in procs:
            pr.join()
    (out / "results.json").write_text(json.dumps(rows, indent=1, default=float))
    print(f"{len(rows)} rows -> {out}/results.json")


if __name__ == "__main__":
    main()
