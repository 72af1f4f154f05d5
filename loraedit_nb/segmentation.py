"""Masks for your own clip: click on the object, track it through the video with SAM2.

LoRA-Edit needs a spatiotemporal mask (True = edit) on every frame. The paper's official code makes it with SAM2:
a few clicks on frame 0, video propagation, then each component replaced by its box grown by 10 %. This module does
the same through transformers' ``Sam2VideoModel`` + ``Sam2VideoProcessor``:

    seg = load_segmenter()                                   # SAM2.1 hiera-tiny; the GPU when there is one
    mask = segment_video(video, [Click(120, 80), Click(60, 40, positive=False)], segmenter=seg,
                         boxes_from_components=True)         # bool (T, H, W), True = edit

Prompts are :class:`Click` (positive or negative point), :class:`BoxPrompt` and :class:`MaskPrompt` (a painted
region), each on any frame and for any object id (``obj``). Tracking runs forward from the first prompted frame to
the end and backward from it to frame 0; frames with prompts condition the whole track.

**Which weights.** ``facebook/sam2.1-hiera-{tiny,small,base-plus,large}`` (Apache-2.0, not gated), or a local
folder of one of them. The default is **tiny**: 38.9 M parameters (155 MB), the fastest (47.2 FPS on an A100 in
SAM2's README, against 24.2 for large) and within 3 points of large on SA-V (J&F 76.5 vs 79.5); a LoRA-Edit mask is
boxed and dilated afterwards, so the last points of boundary quality matter little, while tiny is the only one that
is usable on a CPU (6.9 s per frame on 2 cores, measured by :func:`cpu_seconds_per_frame`). SAM3's tracker
(``facebook/sam3``, same API, gated on the Hub) loads the same way: ``load_segmenter("facebook/sam3")``.

**Without weights.** :func:`tiny_segmenter` is SAM2's architecture at tiny random sizes, built offline (tests and
notebooks without a download): every code path is the real one but its masks are **meaningless**.
:class:`FlowTracker` (``load_segmenter("flow")``) is the stand-in that makes sense without a model: a click selects
the colour region around it (flood fill), a box its rectangle, and optical flow carries them through the clip
(:func:`loraedit_nb.masks.propagate_both_ways`). It drifts on real footage; SAM2 does not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import masks as M
from .video import InputError, InputWarning, check_video, warn_user

SAM2_CHECKPOINTS = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base-plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}
DEFAULT_SEGMENTER = "tiny"
SAM3 = "facebook/sam3"
# SAM2.1's README table (A100, torch compile off/on not stated): frames per second. Quoted, not measured here.
QUOTED_GPU_FPS = {"tiny": 47.2, "small": 43.3, "base-plus": 34.8, "large": 24.2}


# ----------------------------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Click:
    """A point on object ``obj`` at pixel ``(x, y)`` of frame ``frame`` (x from the left, y from the top, in the
    video's own pixels). ``positive=False`` marks a point that is *not* the object (a negative click)."""

    x: float
    y: float
    frame: int = 0
    positive: bool = True
    obj: int = 1


@dataclass(frozen=True)
class BoxPrompt:
    """A box around object ``obj`` on frame ``frame``: corners ``(x0, y0)``-``(x1, y1)`` in pixels (x1, y1
    exclusive, as :data:`loraedit_nb.masks.Box`). One box per object and frame."""

    x0: float
    y0: float
    x1: float
    y1: float
    frame: int = 0
    obj: int = 1


@dataclass(frozen=True, eq=False)
class MaskPrompt:
    """A region of object ``obj`` on frame ``frame``: bool ``(H, W)``, True = the object (e.g. painted with the
    brush). SAM2 takes it as that frame's answer and tracks it; it cannot share a frame with clicks or a box of the
    same object."""

    mask: np.ndarray = field(repr=False)
    frame: int = 0
    obj: int = 1


Prompt = Click | BoxPrompt | MaskPrompt


class LargeMaskWarning(InputWarning):
    """The tracked mask covers almost the whole frame: LoRA-Edit then has little background to preserve."""


class EmptyObjectWarning(InputWarning):
    """One of several objects was not found on any frame (the others were)."""


def check_prompts(prompts: Sequence[Prompt], num_frames: int, height: int, width: int) -> list[Prompt]:
    """Validate prompts against a ``num_frames x height x width`` clip; returns them with negative frame indices
    resolved (``-1`` = last) and boxes clipped to the frame. Every error names the fix."""
    if isinstance(prompts, Click | BoxPrompt | MaskPrompt):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise InputError("no prompts: nothing says which object to track.",
                         "Give at least one Click(x, y) on the object (or a BoxPrompt around it).",
                         cli="Add --point X,Y on the object (or --box X0,Y0,X1,Y1).")
    out: list[Prompt] = []
    boxes, masks_at, others_at = set(), set(), set()
    for p in prompts:
        if not isinstance(p, Click | BoxPrompt | MaskPrompt):
            raise InputError(f"{p!r} is not a prompt.", "Use Click(x, y), BoxPrompt(x0, y0, x1, y1) or MaskPrompt.")
        f = int(p.frame)
        if not -num_frames <= f < num_frames:
            raise InputError(f"frame {f} of the {describe(p)} is out of range for a {num_frames}-frame clip.",
                             f"Use a frame index in 0..{num_frames - 1} (-1 = the last frame).",
                             cli=f"Give a FRAME in 0..{num_frames - 1} (the clip as read has {num_frames} frames).")
        f %= num_frames
        if isinstance(p, Click):
            if not (0 <= p.x < width and 0 <= p.y < height):
                raise InputError(
                    f"the point ({p.x:g}, {p.y:g}) is outside the {width}x{height} (WxH) frame.",
                    f"Give video pixels: x in 0..{width - 1} from the left, y in 0..{height - 1} from the top.",
                    cli=f"Give --point X,Y with X in 0..{width - 1} and Y in 0..{height - 1} (pixels of the clip as "
                        "read, from the top left).")
            p = Click(float(p.x), float(p.y), f, bool(p.positive), int(p.obj))
            others_at.add((f, p.obj))
        elif isinstance(p, BoxPrompt):
            if not (p.x1 > p.x0 and p.y1 > p.y0):
                raise InputError(f"the box ({p.x0:g}, {p.y0:g})-({p.x1:g}, {p.y1:g}) has zero area.",
                                 "Give two opposite corners with x0 < x1 and y0 < y1.",
                                 cli="Give --box X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1.")
            x0, x1 = max(0.0, float(p.x0)), min(float(width), float(p.x1))
            y0, y1 = max(0.0, float(p.y0)), min(float(height), float(p.y1))
            if not (x1 > x0 and y1 > y0):
                raise InputError(f"the box ({p.x0:g}, {p.y0:g})-({p.x1:g}, {p.y1:g}) lies outside the {width}x"
                                 f"{height} frame.", "Give the box in the video's pixels (x from the left, y from "
                                 "the top).")
            if (f, p.obj) in boxes:
                raise InputError(f"two boxes for object {p.obj} on frame {f}: SAM2 takes one box per object and "
                                 "frame.", "Give each further box another object id (obj=2, ...): the result is "
                                 "their union.", cli="Give the second box another frame, or mark it with a click.")
            boxes.add((f, p.obj))
            others_at.add((f, p.obj))
            p = BoxPrompt(x0, y0, x1, y1, f, int(p.obj))
        else:
            m = np.asarray(p.mask)
            if m.shape != (height, width):
                raise InputError(f"the mask prompt is {m.shape} but frames are {(height, width)} (H, W).",
                                 "Give one frame's region at the video's size, e.g. painter.mask[t].")
            m = M.check_mask(m[None], name="mask prompt")[0]
            if not m.any():
                raise InputError(f"the mask prompt on frame {f} is empty.", "Mark the object with True.")
            masks_at.add((f, p.obj))
            p = MaskPrompt(m, f, int(p.obj))
        out.append(p)
    both = masks_at & others_at
    if both:
        f, o = sorted(both)[0]
        raise InputError(f"object {o} has a mask prompt and clicks or a box on frame {f}: SAM2 takes one or the other.",
                         "Put the clicks on another frame, or paint them into the mask prompt.")
    for o in sorted({p.obj for p in out}):
        mine = [p for p in out if p.obj == o]
        if all(isinstance(p, Click) and not p.positive for p in mine):
            raise InputError(f"object {o} has only negative clicks: nothing says where it is.",
                             f"Add a positive click on it (Click(x, y, obj={o})) or a box.",
                             cli="Add a positive --point X,Y on the object.")
    return out


def describe(p: Prompt) -> str:
    """A prompt in words, for messages: "point (72, 80)", "negative point ...", "box (x0, y0)-(x1, y1)"."""
    if isinstance(p, Click):
        return f"{'' if p.positive else 'negative '}point ({p.x:g}, {p.y:g})"
    if isinstance(p, BoxPrompt):
        return f"box ({p.x0:g}, {p.y0:g})-({p.x1:g}, {p.y1:g})"
    return "mask prompt"


def first_frame_of(prompts: Sequence[Prompt], obj: int | None = None) -> int:
    """The earliest frame with a prompt (for object ``obj``, or any)."""
    return min(p.frame for p in prompts if obj is None or p.obj == obj)


# ----------------------------------------------------------------------------------------------- trackers
def _uint8_frames(video: np.ndarray) -> list[np.ndarray]:
    return list((np.clip(video, 0, 1) * 255 + 0.5).astype(np.uint8))


@dataclass
class Sam2Tracker:
    """A loaded SAM2 (or SAM3 tracker) video model and its processor, on ``device`` in ``dtype``. ``meaningful`` is
    False for the random :func:`tiny_segmenter`."""

    model: object
    processor: object
    device: str = "cpu"
    name: str = ""
    meaningful: bool = True
    dtype: object = None

    def track(self, video: np.ndarray, prompts: Sequence[Prompt], *, progress: bool = True
              ) -> dict[int, np.ndarray]:
        """``video`` float ``(T, H, W, 3)``, checked ``prompts`` -> ``{obj: bool (T, H, W)}``: SAM2's propagation
        forward from the first prompted frame, then backward from it."""
        import torch
        from tqdm.auto import tqdm

        T, H, W = video.shape[:3]
        dtype = self.dtype or torch.float32
        on_gpu = str(self.device).startswith("cuda")
        # the frames (1024x1024 float each, ~12 MB) stay in host memory when tracking on a GPU
        session = self.processor.init_video_session(
            video=_uint8_frames(video), inference_device=self.device, processing_device="cpu",
            video_storage_device="cpu" if on_gpu else self.device, dtype=dtype)
        for (f, o), group in _by_frame_and_object(prompts).items():
            kw: dict = {}
            clicks = [p for p in group if isinstance(p, Click)]
            box = [p for p in group if isinstance(p, BoxPrompt)]
            mask = [p for p in group if isinstance(p, MaskPrompt)]
            if mask:
                kw["input_masks"] = [mask[0].mask]
            if clicks:
                kw["input_points"] = [[[[p.x, p.y] for p in clicks]]]
                kw["input_labels"] = [[[int(p.positive) for p in clicks]]]
            if box:
                b = box[0]
                kw["input_boxes"] = [[[b.x0, b.y0, b.x1, b.y1]]]
            self.processor.add_inputs_to_inference_session(inference_session=session, frame_idx=f, obj_ids=o, **kw)
            with torch.inference_mode():  # as an interactive click does: the frame's answer for the objects so far
                self.model(inference_session=session, frame_idx=f)
        start = first_frame_of(prompts)
        out = {o: np.zeros((T, H, W), dtype=bool) for o in sorted({p.obj for p in prompts})}
        done: set[int] = set()
        with torch.inference_mode(), tqdm(total=T, desc=f"tracking ({self.name or 'SAM2'})", unit="frame",
                                          disable=not progress, leave=False) as bar:
            for reverse in (False, True):
                if reverse and start == 0:
                    break
                for step in self.model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
                    m = self.processor.post_process_masks([step.pred_masks], original_sizes=[[H, W]])[0]
                    m = m[:, 0].cpu().numpy().astype(bool)  # (objects, H, W): logits > 0
                    for i, o in enumerate(step.object_ids):
                        out[o][step.frame_idx] = m[i]
                    if step.frame_idx not in done:
                        done.add(step.frame_idx)
                        bar.update(1)
        return out


def _by_frame_and_object(prompts: Sequence[Prompt]) -> dict[tuple[int, int], list[Prompt]]:
    groups: dict[tuple[int, int], list[Prompt]] = {}
    for p in prompts:
        groups.setdefault((p.frame, p.obj), []).append(p)
    return dict(sorted(groups.items()))


@dataclass
class FlowTracker:
    """The stand-in without weights: each prompted frame's region (a click's colour region by flood fill within
    ``tolerance`` of the clicked colour, minus negative clicks' regions; a box's rectangle, or the clicks' regions
    inside it; a mask prompt as given), carried through the clip by optical flow
    (:func:`loraedit_nb.masks.propagate_both_ways`): backward from an object's first prompted frame, forward from
    each prompted frame to the next. Good on flat, smoothly moving objects; it drifts on real footage."""

    tolerance: float = 0.12
    name: str = "flow stand-in"
    meaningful: bool = True
    device: str = "cpu"

    def region(self, frame: np.ndarray, group: Sequence[Prompt]) -> np.ndarray:
        """One object's region on one frame, bool ``(H, W)``, from its prompts there."""
        H, W = frame.shape[:2]
        for p in group:
            if isinstance(p, MaskPrompt):
                return p.mask.copy()
        pos = [p for p in group if isinstance(p, Click) and p.positive]
        neg = [p for p in group if isinstance(p, Click) and not p.positive]
        box = [p for p in group if isinstance(p, BoxPrompt)]
        region = np.zeros((H, W), dtype=bool)
        for p in pos:
            region |= self._flood(frame, p)
        if box:
            b = box[0]
            inside = M.box_mask(H, W, (int(b.x0), int(b.y0), int(np.ceil(b.x1)), int(np.ceil(b.y1))))
            region = region & inside if pos else inside
        for p in neg:
            region &= ~self._flood(frame, p)
        return region

    def _flood(self, frame: np.ndarray, p: Click) -> np.ndarray:
        import cv2

        img = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
        img = cv2.GaussianBlur(img, (3, 3), 0)  # codec noise would stop the fill at every other pixel
        H, W = img.shape[:2]
        fill = np.zeros((H + 2, W + 2), np.uint8)
        tol = (int(255 * self.tolerance),) * 3
        cv2.floodFill(img, fill, (int(p.x), int(p.y)), (0, 0, 0), tol, tol,
                      4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (255 << 8))
        return M.dilate(fill[None, 1:-1, 1:-1] > 0, 1)[0]  # the blur took the region's 1-px rim off

    def track(self, video: np.ndarray, prompts: Sequence[Prompt], *, progress: bool = True
              ) -> dict[int, np.ndarray]:
        T, H, W = video.shape[:3]
        out = {}
        groups = _by_frame_and_object(prompts)
        for o in sorted({p.obj for p in prompts}):
            anchors = {f: self.region(video[f], g) for (f, oo), g in groups.items() if oo == o}
            frames = sorted(anchors)
            m = np.zeros((T, H, W), dtype=bool)
            m[: frames[0] + 1] = M.propagate_both_ways(video[: frames[0] + 1], anchors[frames[0]], frames[0])
            for i, f in enumerate(frames):
                end = frames[i + 1] if i + 1 < len(frames) else T
                m[f:end] = M.propagate_flow(video[f:end], anchors[f])
            out[o] = m
        return out


# ----------------------------------------------------------------------------------------------- loading
def load_segmenter(name_or_path: str | os.PathLike = DEFAULT_SEGMENTER, *, device: str | None = None,
                   dtype=None, fallback: str | None = None) -> Sam2Tracker | FlowTracker:
    """A video segmenter for :func:`segment_video`.

    ``name_or_path``: ``"tiny"`` (default), ``"small"``, ``"base-plus"``, ``"large"`` (SAM2.1 from the Hub), a Hub
    id (``facebook/sam2.1-hiera-tiny``, ``facebook/sam3`` for SAM3's tracker: gated), a local folder with one of
    them, ``"flow"`` (:class:`FlowTracker`, no weights) or ``"random-tiny"`` (:func:`tiny_segmenter`, random).
    ``device``: default ``cuda`` when there is one, else ``cpu``; ``dtype``: default bfloat16 on a GPU, float32 on
    a CPU. Weights that cannot be found raise one ``OSError`` that says what to install or where to point (an
    ``ImportError`` without torchvision); with ``fallback="flow"`` it says so in one printed line instead and returns
    the :class:`FlowTracker`."""
    if fallback not in (None, "flow"):
        raise ValueError(f"fallback must be None or 'flow', got {fallback!r}")
    if fallback:
        try:
            return load_segmenter(name_or_path, device=device, dtype=dtype)
        except (OSError, ImportError) as e:
            print(f"SAM2 is not available here ({str(e).split('. ')[0]}): the flow stand-in tracks instead (a colour "
                  "region around each click, carried by optical flow; it drifts on real footage).")
            return FlowTracker()
    import torch

    name = str(name_or_path)
    if name == "flow":
        return FlowTracker()
    if name == "random-tiny":
        return tiny_segmenter()
    _need_torchvision()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
    repo = SAM2_CHECKPOINTS.get(name, name)
    local = Path(repo).expanduser()
    is_path = repo.startswith((".", "/", "~")) or local.exists()
    if is_path and not (local / "config.json").exists():
        raise FileNotFoundError(_missing(repo, f"{local} is not a model folder (no config.json)"))
    source = str(local) if is_path else repo
    model_cls, proc_cls = _classes(source, local if is_path else None)

    def load(**kw):
        processor = proc_cls.from_pretrained(source, **kw)
        return processor, model_cls.from_pretrained(source, dtype=dtype, **kw).to(device).eval()
    try:
        try:  # the local cache first: no network round trips when the weights are already here
            processor, model = load(local_files_only=True)
        except OSError:
            if is_path:
                raise
            if not hub_reachable():  # fail in seconds, not after minutes of retries
                raise OSError("the Hub cannot be reached and the weights are not in the local cache") from None
            processor, model = load()
    except OSError as e:  # offline, gated (SAM3), or a typo in the id
        why = str(e).split(". ")[0] or type(e).__name__
        raise OSError(_missing(repo, why)) from e
    short = next((k for k, v in SAM2_CHECKPOINTS.items() if v == repo), repo)
    return Sam2Tracker(model, processor, device=str(device), name=f"SAM2.1 {short}" if short in SAM2_CHECKPOINTS
                       else Path(repo).name, dtype=dtype)


def _need_torchvision() -> None:
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        import torch

        raise ImportError(f"SAM2's video processor needs torchvision, which is not installed (torch {torch.__version__}"
                          "). Install the torchvision that pairs with your torch (torch 2.14.1 with torchvision "
                          "0.29.1: pip install torch==2.14.1 torchvision==0.29.1), or track without it: "
                          "load_segmenter('flow').")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection within ``timeout`` s (False under HF_HUB_OFFLINE; True
    behind a proxy, which a direct connection cannot test: the download then says what went wrong)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _classes(source: str, local: Path | None):
    """(model class, processor class): SAM3's tracker for ``sam3`` checkpoints, SAM2 video otherwise."""
    import json

    kind = ""
    if local is not None:
        kind = json.loads((local / "config.json").read_text()).get("model_type", "")
    if "sam3" in (kind or source.lower()):
        from transformers import Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

        return Sam3TrackerVideoModel, Sam3TrackerVideoProcessor
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    return Sam2VideoModel, Sam2VideoProcessor


def _missing(name: str, why: str) -> str:
    gated = "sam3" in name.lower()
    return (f"could not load the video segmenter {name!r}: {why}. "
            + (f"SAM3 is gated on the Hub: request access at https://huggingface.co/{SAM3}, run `huggingface-cli "
               "login`, and load again; or use SAM2.1 (load_segmenter('tiny'), not gated). " if gated else
               "SAM2.1 needs transformers>=4.56 and torchvision (pip install torchvision) and the Hub, once: "
               f"load_segmenter('tiny') fetches {SAM2_CHECKPOINTS['tiny']} (155 MB). ")
            + "Offline, download it elsewhere (huggingface-cli download facebook/sam2.1-hiera-tiny --local-dir DIR) "
            "and pass the folder (load_segmenter('DIR'), --segmenter DIR); or track without weights with "
            "load_segmenter('flow') (--segmenter flow).")


def tiny_sam2_config(image_size: int = 128):
    """SAM2 video's architecture at tiny sizes (about 1.3 M parameters, ``image_size`` px input; a multiple of 32).

    The sizes keep what ``Sam2VideoModel`` hard-wires: memory features of 64 channels, a hidden size that is a
    multiple of them (128), window sizes divisible by the query stride, and the global-attention block inside a
    stage rather than first in one."""
    from transformers import Sam2VideoConfig

    S, d = image_size, 128
    return Sam2VideoConfig(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(model_type="sam2_hiera_det_model", image_size=[S, S], hidden_size=16,
                                 blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                                 num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                                 global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2]),
            backbone_channel_list=[128, 64, 32, 16],
            backbone_feature_sizes=[[S // 4, S // 4], [S // 8, S // 8], [S // 16, S // 16]], fpn_hidden_size=d),
        prompt_encoder_config=dict(hidden_size=d, image_size=S, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=d, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=d),
        image_size=S, memory_attention_hidden_size=d, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[S // 16, S // 16],
        memory_encoder_hidden_size=d, memory_encoder_output_channels=64, mask_downsampler_embed_dim=d,
        memory_fuser_embed_dim=d, memory_fuser_intermediate_dim=64, num_maskmem=3)


def sam2_processor(image_size: int = 1024):
    """``Sam2VideoProcessor`` built offline (what ``from_pretrained`` gives, at ``image_size``)."""
    _need_torchvision()
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    size = {"height": image_size, "width": image_size}
    return Sam2VideoProcessor(image_processor=Sam2ImageProcessor(size=size),
                              video_processor=Sam2VideoVideoProcessor(size=size))


def tiny_segmenter(seed: int = 0, image_size: int = 128, config=None) -> Sam2Tracker:
    """SAM2 video at tiny random sizes (:func:`tiny_sam2_config`), built offline on the CPU: the real code path,
    **meaningless masks** (``meaningful=False``). ``config``: another ``Sam2VideoConfig`` (e.g. the default one,
    which has hiera-tiny's sizes: what :func:`cpu_seconds_per_frame` times)."""
    import torch
    from transformers import Sam2VideoModel

    torch.manual_seed(seed)
    config = config or tiny_sam2_config(image_size)
    model = Sam2VideoModel(config).eval()
    return Sam2Tracker(model, sam2_processor(config.image_size), device="cpu", name="tiny random SAM2",
                       meaningful=False, dtype=torch.float32)


# ----------------------------------------------------------------------------------------------- the mask
def segment_video(video: np.ndarray, prompts: Sequence[Prompt] | Prompt, *, segmenter=None, union: bool = True,
                  dilate: int = 0, boxes_from_components: bool = False, expand_ratio: float = 0.1,
                  min_area: int = 50, flow_union: bool = False, max_cover: float = 0.9, progress: bool = True
                  ) -> np.ndarray:
    """Track the prompted object(s) through ``video`` and return a LoRA-Edit mask.

    ``video``: float ``(T, H, W, 3)`` in [0, 1] (or uint8), the clip as read (any size and frame count).
    ``prompts``: :class:`Click` / :class:`BoxPrompt` / :class:`MaskPrompt` on any frames, for one or several objects
    (``obj``). ``segmenter``: from :func:`load_segmenter` (default: loads SAM2.1 tiny).

    Returns bool ``(T, H, W)``, True = edit: the union over the objects; with ``union=False`` one mask per object,
    ``(K, T, H, W)`` in increasing ``obj`` order. Then, per object and in this order:

    * ``flow_union``: add the optical-flow propagation of the object's first prompted frame (a second opinion
      where the tracker loses the object);
    * ``boxes_from_components``: the paper's post-processing, each connected component replaced by its bounding
      box grown by ``expand_ratio`` (10 %), components under ``min_area`` px dropped (:func:`masks.to_boxes`);
    * ``dilate``: grow by that many pixels.

    Raises when nothing was found on any frame; warns (:class:`LargeMaskWarning`) when a frame is more than
    ``max_cover`` covered: LoRA-Edit keeps the background from the source, so it needs some.
    """
    video = check_video(video)
    T, H, W = video.shape[:3]
    prompts = check_prompts(prompts, T, H, W)
    if segmenter is None:
        segmenter = load_segmenter()
    tracked = segmenter.track(video, prompts, progress=progress)
    objs = sorted(tracked)
    if not any(tracked[o].any() for o in objs):
        raise InputError(
            f"no object found: the tracked mask is empty on all {T} frames ({segmenter_name(segmenter)}).",
            "Click on the object itself (x from the left, y from the top of the clip as read), add positive clicks "
            "or a box around it" + ("; this is the tiny random SAM2, whose masks are meaningless: load real weights "
                                    "(load_segmenter('tiny')) or use load_segmenter('flow')."
                                    if not getattr(segmenter, "meaningful", True) else "."),
            cli="Put --point on the object itself (pixels of the clip as read, from the top left), add points or a "
                "--box around it.")
    per_obj = []
    for o in objs:
        m = tracked[o]
        if not m.any():
            warn_user(EmptyObjectWarning(f"object {o} was not found on any frame; the mask has the others only.",
                                         f"Click on object {o} itself, or add a box around it."))
        elif flow_union:
            t0 = first_frame_of(prompts, o)
            m = m | M.propagate_both_ways(video, m[t0], t0)
        if boxes_from_components:
            m = M.to_boxes(m, expand_ratio=expand_ratio, min_area=min_area)
        if dilate:
            m = M.dilate(m, int(dilate))
        per_obj.append(m)
    stack = np.stack(per_obj)
    mask = stack.any(axis=0)
    cover = mask.reshape(T, -1).mean(axis=1)
    if (cover > max_cover).any():
        n = int((cover > max_cover).sum())
        warn_user(LargeMaskWarning(
            f"the mask covers more than {100 * max_cover:.0f} % of {n} of {T} frames (up to {100 * cover.max():.0f} "
            "%): LoRA-Edit keeps what lies outside it from the source, so there is almost nothing to preserve.",
            "Click closer to the object's centre, add negative clicks on the background, or give a box; lower "
            "dilate / expand_ratio.", cli="Add negative points (X,Y,FRAME,neg) on the background, or a --box; "
            "lower --dilate."))
    return mask if union else stack


def segmenter_name(segmenter) -> str:
    return getattr(segmenter, "name", "") or type(segmenter).__name__


def cpu_seconds_per_frame(frames: int = 9, height: int = 144, width: int = 256, *, threads: int | None = None,
                          seed: int = 0) -> dict:
    """Time SAM2.1 hiera-tiny's architecture (random weights: the same arithmetic as the real checkpoint) tracking
    one click through a random ``frames x height x width`` clip on the CPU. Returns seconds per frame (tracking,
    and preprocessing the frames to 1024x1024) and the quoted GPU figure, for a user deciding where to run it."""
    import time

    import torch
    from transformers import Sam2VideoConfig

    if threads:
        torch.set_num_threads(threads)
    seg = tiny_segmenter(seed, config=Sam2VideoConfig())
    video = np.random.default_rng(seed).random((frames, height, width, 3)).astype(np.float32)
    t0 = time.perf_counter()
    seg.track(video, [Click(width / 2, height / 2)], progress=False)
    total = time.perf_counter() - t0
    return {"model": "SAM2.1 hiera-tiny architecture (random weights)", "frames": frames, "size": (height, width),
            "threads": torch.get_num_threads(), "cpu_s_per_frame": total / frames,
            "params_M": sum(p.numel() for p in seg.model.parameters()) / 1e6,
            "quoted_gpu_fps": QUOTED_GPU_FPS}


__all__ = ["Click", "BoxPrompt", "MaskPrompt", "Prompt", "segment_video", "load_segmenter", "tiny_segmenter",
           "tiny_sam2_config", "sam2_processor", "check_prompts", "Sam2Tracker", "FlowTracker", "SAM2_CHECKPOINTS",
           "DEFAULT_SEGMENTER", "LargeMaskWarning", "EmptyObjectWarning", "cpu_seconds_per_frame",
           "QUOTED_GPU_FPS"]


if __name__ == "__main__":  # python -m loraedit_nb.segmentation [--frames N --height H --width W --threads K]
    import argparse

    ap = argparse.ArgumentParser(description="CPU seconds per frame of SAM2.1 hiera-tiny's architecture tracking a "
                                             "click (random weights, same arithmetic), and the quoted GPU figures")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--height", type=int, default=144)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--threads", type=int)
    a = ap.parse_args()
    r = cpu_seconds_per_frame(a.frames, a.height, a.width, threads=a.threads)
    print(f"{r['model']}, {r['params_M']:.1f} M parameters, {r['frames']} frames of {r['size'][0]}x{r['size'][1]} "
          f"(resized to 1024x1024 inside), {r['threads']} CPU threads: {r['cpu_s_per_frame']:.2f} s per frame")
    print("quoted (SAM2.1 README, A100): " + ", ".join(f"{k} {v} frames/s" for k, v in r["quoted_gpu_fps"].items()))
