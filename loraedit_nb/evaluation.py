"""Metrics for video edits. Videos are float ``(T, H, W, 3)`` in [0, 1]; regions are bool ``(T, H, W)``.

* :func:`psnr` — [0, inf) dB, inf = identical; higher is better. Pixel fidelity, optionally over a region.
* :func:`ssim` — [-1, 1], 1 = identical; higher is better. Masked = mean of SSIM's per-pixel map over the region.
* :func:`lpips` — [0, ~1], 0 = identical; lower is better. Learned perceptual distance (needs downloaded weights).
* :func:`warp_error` — [0, 1]; lower is better. Temporal consistency: frame t+1 warped back to t by optical flow
  (OpenCV Farneback, no weights), error on pixels whose flow is forward-backward consistent.
* :func:`motion_fidelity` — flow inside the edit region, source vs edited: cosine in [-1, 1] (higher is better)
  and end-point error in px (lower is better).
* :func:`clip_scores` — the paper's metrics: CLIP text-frame score [0, 100] and CLIP frame consistency [-1, 1],
  both higher is better; need CLIP weights, so they are skipped offline (and in CI).

Masked SSIM/LPIPS average the per-pixel map over the region: the map at a pixel already mixes a window around it,
so values near the region's border see some pixels outside it. That is the usual approximation; documented here.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch


def _region(region: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if region is None:
        return None
    region = np.asarray(region, bool)
    if region.shape != shape[:3]:
        raise ValueError(f"region shape {region.shape} != video (T, H, W) {shape[:3]}")
    if not region.any():
        raise ValueError("the region is empty: nothing to measure there")
    return region


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """PSNR (dB) between videos in [0, 1] over all pixels or where ``region`` is True. inf if identical."""
    if a.shape != b.shape:
        raise ValueError(f"videos differ in shape: {a.shape} vs {b.shape}")
    region = _region(region, a.shape)
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = d[region].mean() if region is not None else d.mean()
    return math.inf if mse == 0 else float(10 * np.log10(1.0 / mse))


def _nchw(v: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).permute(0, 3, 1, 2)


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """SSIM (torchmetrics, gaussian 11x11, per frame) averaged over frames, or over the region's pixels."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    region = _region(region, a.shape)
    score, full = structural_similarity_index_measure(_nchw(a), _nchw(b), data_range=1.0, return_full_image=True,
                                                      reduction="none")
    if region is None:
        return float(score.mean())
    m = full.mean(1).numpy()  # (T, H, W): per-pixel SSIM averaged over colour channels
    return float(m[region].mean())


_LPIPS = {}


def lpips(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None, net: str = "alex") -> float | None:
    """LPIPS (needs the ``lpips`` package and its backbone weights). Returns None, with a warning, if unavailable
    (e.g. offline): the weights are downloaded on first use."""
    try:
        if net not in _LPIPS:
            import lpips as lp

            _LPIPS[net] = lp.LPIPS(net=net, spatial=True, verbose=False).eval()
    except Exception as e:  # no package, or no weights offline
        warnings.warn(f"LPIPS skipped: {type(e).__name__}: {str(e)[:120]} (pip install lpips; needs its weights)",
                      stacklevel=2)
        return None
    region = _region(region, a.shape)
    with torch.no_grad():
        d = _LPIPS[net](_nchw(a) * 2 - 1, _nchw(b) * 2 - 1)[:, 0].numpy()  # (T, H, W)
    return float(d[region].mean() if region is not None else d.mean())


def optical_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow from frame ``a`` to ``b`` (``(H, W, 3)`` in [0, 1]) with OpenCV Farneback: ``(H, W, 2)`` pixels,
    such that ``a[y, x] ~ b[y + f_y, x + f_x]``."""
    import cv2

    ga = cv2.cvtColor((np.clip(a, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor((np.clip(b, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 9, 3, 5, 1.1, 0)


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    import cv2

    H, W = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    return cv2.remap(img.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def warp_error(video: np.ndarray, region: np.ndarray | None = None, *, consistency_px: float = 1.0) -> float:
    """Mean absolute error between frame t and frame t+1 warped back by the flow t -> t+1, over pixels where the
    forward-backward flow is consistent (non-occluded) and inside ``region`` if given. Lower = smoother."""
    errs = []
    H, W = video.shape[1:3]
    for t in range(len(video) - 1):
        fw = optical_flow(video[t], video[t + 1])
        bw = optical_flow(video[t + 1], video[t])
        back = _warp(bw, fw)  # backward flow sampled where each pixel lands
        ok = np.linalg.norm(fw + back, axis=-1) < consistency_px
        yy, xx = np.mgrid[:H, :W]
        ok &= (xx + fw[..., 0] >= 0) & (xx + fw[..., 0] <= W - 1)
        ok &= (yy + fw[..., 1] >= 0) & (yy + fw[..., 1] <= H - 1)
        if region is not None:
            ok &= region[t]
        if ok.any():
            errs.append(np.abs(_warp(video[t + 1], fw) - video[t])[ok].mean())
    return float(np.mean(errs)) if errs else math.nan


def motion_fidelity(source: np.ndarray, edited: np.ndarray, region: np.ndarray, *, min_motion_px: float = 0.5
                    ) -> dict:
    """How well the edited video moves like the source inside the edit region: per-pixel flow (t -> t+1) compared
    where the source moves at least ``min_motion_px``. Returns ``{"cosine": [-1, 1] higher better, "epe_px":
    endpoint error, lower better}`` (NaN if nothing moves)."""
    cos, epe = [], []
    for t in range(len(source) - 1):
        fs = optical_flow(source[t], source[t + 1])
        fe = optical_flow(edited[t], edited[t + 1])
        sel = region[t] & (np.linalg.norm(fs, axis=-1) >= min_motion_px)
        if not sel.any():
            continue
        a, b = fs[sel], fe[sel]
        cos.append(np.mean((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-6)))
        epe.append(np.mean(np.linalg.norm(a - b, axis=-1)))
    return {"cosine": float(np.mean(cos)) if cos else math.nan, "epe_px": float(np.mean(epe)) if epe else math.nan}


def clip_scores(video: np.ndarray, prompt: str, model: str = "openai/clip-vit-base-patch16", *,
                warn: bool = True) -> dict | None:
    """The paper's metrics: CLIP text-frame score (torchmetrics ``CLIPScore``, mean over frames, [0, 100]) and CLIP
    frame consistency (mean cosine of consecutive frames' image embeddings). None when the CLIP weights are not
    available locally (offline machines, CI), with a warning unless ``warn=False`` (a caller that says so itself)."""
    try:
        from torchmetrics.multimodal.clip_score import CLIPScore
        from transformers import CLIPModel, CLIPProcessor

        CLIPProcessor.from_pretrained(model, local_files_only=True)
        clip = CLIPModel.from_pretrained(model, local_files_only=True).eval()
        metric = CLIPScore(model_name_or_path=model)
    except Exception as e:
        if not warn:
            return None
        warnings.warn(f"CLIP metrics skipped: weights for {model} are not available locally ({type(e).__name__}). "
                      "Run once with internet access to cache them.", stacklevel=2)
        return None
    frames = (torch.from_numpy(np.asarray(video)).permute(0, 3, 1, 2) * 255).to(torch.uint8)
    score = float(metric(frames, [prompt] * len(frames)))
    with torch.no_grad():
        proc = metric.processor(images=list(frames), return_tensors="pt")
        emb = clip.get_image_features(**proc)
        emb = emb / emb.norm(dim=-1, keepdim=True)
    consistency = float((emb[1:] * emb[:-1]).sum(-1).mean()) if len(emb) > 1 else math.nan
    return {"clip_score": score, "clip_frame_consistency": consistency}


def region_colour_error(ground_truth: np.ndarray, edited: np.ndarray, region: np.ndarray) -> float:
    """Did the edit's *colour* arrive? Mean over frames >= 1 of the L1 distance (sum over RGB, [0, 3]) between the
    mean colour inside ``region`` of the edited video and of the ground truth. Lower is better. PSNR alone can
    prefer a sharp object of the wrong colour to a blurry one of the right colour; this cannot."""
    errs = [np.abs(edited[t][region[t]].mean(0) - ground_truth[t][region[t]].mean(0)).sum()
            for t in range(1, len(region)) if region[t].any()]
    return float(np.mean(errs)) if errs else math.nan


def object_fidelity(ground_truth: np.ndarray, edited: np.ndarray, obj: np.ndarray, *, tol: float = 0.35,
                    vanish_below: float = 0.30) -> dict:
    """Did the edited *object* arrive, pixel by pixel? ``obj`` (T, H, W) bool: the edit's own pixels (not dilated;
    for a recolour, the object). Over frames >= 1 (frame 0 is given):

    * ``gt_near_share``: the share of ``obj`` pixels whose RGB is within L2 distance ``tol`` of the ground truth
      (for a recolour: the object drawn in the edited colour), in [0, 1];
    * ``vanished_frames``: how many frames' own share is below ``vanish_below`` (the edit is gone there).
    NaN / 0 if ``obj`` is empty after frame 0."""
    d = np.linalg.norm(np.asarray(edited, np.float64) - np.asarray(ground_truth, np.float64), axis=-1)
    obj = np.asarray(obj, bool)
    per = [float((d[t][obj[t]] <= tol).mean()) for t in range(1, len(obj)) if obj[t].any()]
    later = obj.copy()
    later[0] = False
    return {"gt_near_share": float((d[later] <= tol).mean()) if later.any() else math.nan,
            "vanished_frames": int(sum(s < vanish_below for s in per))}


def new_pixel_fill(source: np.ndarray, ground_truth: np.ndarray, edited: np.ndarray, region: np.ndarray) -> float:
    """Did the part of the edit that frame 0 cannot carry arrive? ``region`` (T, H, W) bool: the pixels where the
    ground truth differs from the source *and* that the source object does not explain (a square's corners beyond
    the disc, a revealed side, the rim of a grown object). Over frames >= 1, the share of them whose RGB is closer
    to the ground truth than to the source: 1.0 for the ground truth itself, 0.0 for a copy of the source (the
    motion LoRA's disc coming back). NaN if ``region`` is empty after frame 0."""
    region = np.asarray(region, bool).copy()
    region[0] = False
    if not region.any():
        return math.nan
    e, g, s = (np.asarray(v, np.float64)[region] for v in (edited, ground_truth, source))
    return float((np.linalg.norm(e - g, axis=-1) < np.linalg.norm(e - s, axis=-1)).mean())


def evaluate_edit(source: np.ndarray, edited: np.ndarray, mask: np.ndarray, *, ground_truth: np.ndarray | None = None,
                  with_lpips: bool = False) -> dict:
    """All CPU metrics of one edit. ``mask`` True = edit region. Background = ``~mask``; frame 0 is included."""
    keep = ~np.asarray(mask, bool)
    out = {"bg_psnr": psnr(source, edited, keep) if keep.any() else math.nan,
           "bg_ssim": ssim(source, edited, keep) if keep.any() else math.nan,
           "warp_error": warp_error(edited), "warp_error_source": warp_error(source)}
    out.update({f"motion_{k}": v for k, v in motion_fidelity(source, edited, mask).items()})
    if with_lpips:
        out["bg_lpips"] = lpips(source, edited, keep)
    if ground_truth is not None:
        out["gt_psnr"] = psnr(ground_truth, edited)
        out["gt_colour_error"] = region_colour_error(ground_truth, edited, mask)
        out["gt_ssim"] = ssim(ground_truth, edited)
        if mask.any():
            out["gt_psnr_region"] = psnr(ground_truth, edited, mask)
            out["gt_ssim_region"] = ssim(ground_truth, edited, mask)
    return out


def claims_markdown(claims: dict[str, bool]) -> str:
    """``{claim: held in this run}`` as Markdown bullets, "✓ holds" or "✗ does **not** hold", so a notebook's
    reading of its numbers is checked against them instead of asserted."""
    return "\n".join(f"* {'✓ holds' if ok else '✗ does **not** hold'} in this run — {c}" for c, ok in claims.items())
