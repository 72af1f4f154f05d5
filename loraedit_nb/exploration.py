"""The paper's Fig. 2 question: what does an *un-tuned* I2V model do with other masks than "first frame only"?

Wan2.1-I2V is trained with a mask that gives the first frame (and, in its first-last-frame mode, the last one) and
asks for everything else. Its four mask channels can say more than that — "this pixel of this frame is given" for
any pixel — and LoRA-Edit's observation (Gao et al., Fig. 2) is that the pretrained model already reads such masks
partly correctly, which is what makes a small mask-aware LoRA enough. :func:`mask_configurations` builds the five
configurations of the figure from an object mask, :func:`run_configurations` runs a backbone on each and measures
how faithfully the *given* pixels come back.

All masks here are the package's edit masks (bool ``(T, H, W)``, True = generate); frame 0 is always given
(:func:`loraedit_nb.conditioning.keep_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conditioning import condition_video, i2v_edit_mask, keep_mask
from .masks import check_mask

#: the five configurations of the paper's Fig. 2, in order: key -> title
CONFIGURATIONS: dict[str, str] = {
    "first_frame": "(a) first frame only (plain I2V)",
    "full_video": "(b) full video given",
    "foreground": "(c) foreground generated, background given",
    "background": "(d) background generated, foreground given",
    "first_last": "(e) first + last frame (Wan FLF)",
}


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR in dB between two videos in [0, 1] over the pixels where ``where`` ``(T, H, W)`` is True (all pixels
    when None). NaN when ``where`` selects nothing; inf for an exact copy. Unlike :func:`loraedit_nb.evaluation.psnr`
    it takes arrays of any shape (single frames too) with a matching ``where``."""
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    if where is not None:
        if not where.any():
            return float("nan")
        d = d[where]
    mse = float(d.mean())
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def per_frame_psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """:func:`psnr` frame by frame -> float array ``(T,)`` (NaN on frames where ``where`` selects nothing)."""
    return np.array([psnr(a[t], b[t], None if where is None else where[t]) for t in range(len(a))])


def mask_configurations(mask: np.ndarray, *, keyframes: bool = True) -> dict[str, np.ndarray]:
    """The edit masks (True = generate) of Fig. 2's five configurations, from an object mask ``(T, H, W)``.

    ``first_frame``: everything after frame 0 generated (diffusers' own I2V condition); ``full_video``: nothing
    generated (every frame given — a model that reads the mask must give the source back); ``foreground``: the
    object region generated on every frame, the background given (LoRA-Edit's editing mask); ``background``: the
    complement — the background generated, the object given; ``first_last``: frames 1..T-2 generated, the first
    and last frames given (Wan's first-last-frame mode) — left out with ``keyframes=False`` (backbones whose mask
    cannot give a single later frame: ``backbone.adapter.supports_keyframes``, HunyuanVideo-I2V).
    """
    mask = check_mask(mask)
    T, H, W = mask.shape
    fg = mask.copy()
    bg = ~mask
    for m in (fg, bg):
        m[0] = False  # frame 0 is given in every configuration
    configs = {
        "first_frame": i2v_edit_mask(T, H, W),
        "full_video": np.zeros((T, H, W), bool),
        "foreground": fg,
        "background": bg,
        "first_last": i2v_edit_mask(T, H, W, last_frame=True),
    }
    if not keyframes:
        del configs["first_last"]
    return configs


@dataclass
class ConfigResult:
    """One configuration's run: its edit mask, the pseudo-video the model saw, the output and the measures.

    ``keep_psnr``: PSNR of the output vs the source over the *given* pixels of frames 1..T-1 (NaN when nothing is
    given there, as in (a)); ``generated_psnr``: the same over the generated pixels (how well the model guessed the
    hidden source); ``first_psnr``: frame 0; ``given_fraction``: share of the pixels of frames 1..T-1 given.
    """

    key: str
    title: str
    edit_mask: np.ndarray
    condition: np.ndarray
    output: np.ndarray
    keep_psnr: float
    generated_psnr: float
    first_psnr: float
    given_fraction: float


def measure(output: np.ndarray, source: np.ndarray, edit_mask: np.ndarray) -> dict[str, float]:
    """PSNRs of ``output`` against ``source``: given pixels and generated pixels of frames >= 1, and frame 0."""
    keep = keep_mask(edit_mask) > 0.5
    later = np.zeros_like(keep)
    later[1:] = True
    return {"keep_psnr": psnr(output, source, keep & later), "generated_psnr": psnr(output, source, ~keep & later),
            "first_psnr": psnr(output[:1], source[:1]), "given_fraction": float(keep[1:].mean())}


def run_configurations(backbone, video: np.ndarray, mask: np.ndarray, first_frame: np.ndarray | None = None,
                       prompt: str = "", *, configs: dict[str, np.ndarray] | None = None, seed: int = 0,
                       steps: int | None = None, guidance: float | None = None, progress: bool = True
                       ) -> dict[str, ConfigResult]:
    """Run ``backbone`` (no LoRA: whatever adapter is active is used as is) on each configuration.

    ``video`` float ``(T, H, W, 3)`` in [0, 1]; ``mask`` the object mask (True = object); ``first_frame`` the
    frame given at 0 (default: the source's — then every output is measured against what it should reproduce);
    ``configs`` defaults to :func:`mask_configurations` of ``mask``. Same seed for all, so the configurations
    differ only in their masks. Returns ``{key: ConfigResult}`` in the order of ``configs``.
    """
    from tqdm.auto import tqdm

    from .inference import generate

    configs = configs if configs is not None else mask_configurations(mask)
    out: dict[str, ConfigResult] = {}
    for key, m in tqdm(list(configs.items()), desc="mask configurations", disable=not progress):
        cond = condition_video(video, m, first_frame)
        res = generate(backbone, video, m, first_frame, prompt=prompt, steps=steps, guidance=guidance, seed=seed,
                       progress=False)
        out[key] = ConfigResult(key, CONFIGURATIONS.get(key, key), m, cond, res, **measure(res, video, m))
    return out


def _fmt(x: float) -> str:
    return "—" if np.isnan(x) else ("∞" if np.isinf(x) else f"{x:.1f}")


def results_table(results: dict[str, ConfigResult]) -> str:
    """A markdown table of :func:`run_configurations`' measures (display it with ``IPython.display.Markdown``)."""
    rows = ["| configuration | given px (frames ≥ 1) | PSNR given vs source (dB) | PSNR generated vs source (dB) "
            "| PSNR frame 0 (dB) |", "|---|---|---|---|---|"]
    for r in results.values():
        rows.append(f"| {r.title} | {100 * r.given_fraction:.0f} % | {_fmt(r.keep_psnr)} | {_fmt(r.generated_psnr)} "
                    f"| {_fmt(r.first_psnr)} |")
    return "\n".join(rows)


__all__ = ["CONFIGURATIONS", "ConfigResult", "mask_configurations", "run_configurations", "measure", "psnr",
           "per_frame_psnr", "results_table"]
