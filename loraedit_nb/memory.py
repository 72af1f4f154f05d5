"""Fitting a 13-14B video model on one GPU: memory presets, staged placement, fp8 storage, block swapping.

The paper's low-cost strategy trains Wan2.1-I2V-14B on one 24 GB card. This module holds the pieces that make each
stage fit a GPU tier, shared by training (:mod:`loraedit_nb.training`) and editing (:mod:`loraedit_nb.inference`):

* :data:`MEMORY_PRESETS` — what each tier (16/24/48/80 GB) does in each stage; how many transformer blocks are
  swapped is decided by :mod:`loraedit_nb.planner` from the model's config and the clip size ("auto").
* **Staged placement.** Real backbones load on the CPU; :func:`onload` brings one component to the execution
  device for one stage (the VAE for encoding, then UMT5 for the prompt, then CLIP) and sends it back after, so no
  two big components share the GPU unless the tier has room.
* **fp8 storage** of the frozen base (diffusers layerwise casting, applied once, on the CPU before the move) with
  the LoRA kept in its own dtype: :func:`apply_fp8`, :func:`fix_lora_dtype`.
* :class:`BlockSwapper` — training-aware block swapping (see its docstring for why diffusers' group offloading
  cannot be used for training).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

GB = 1e9


@dataclass(frozen=True)
class MemoryPreset:
    """Memory options for one GPU tier. ``blocks_to_swap`` = ``"auto"`` lets the planner pick the fewest blocks
    that make the stage fit ``gpu_gb`` (minus a safety margin); an int forces that many."""

    name: str
    gpu_gb: float  # the card this preset is for
    # training
    fp8_base: bool  # fp8 storage of the frozen Linear weights (layerwise casting), compute in bf16
    train_blocks_to_swap: int | str  # transformer blocks whose base weights live in pinned host memory
    gradient_checkpointing: bool
    optimizer: str  # "adamw" | "adamw8bit"
    release_text_encoder: bool  # drop the text encoder from host RAM once the prompts are cached
    offload_checkpoints: bool  # keep the checkpointed block inputs in pinned host memory (8 GB at 49 frames)
    # editing
    edit_fp8: bool  # fp8 storage at inference too (the LoRA stays bf16/fp32)
    edit_offload: str  # "none" (all resident) | "model" (one component on the GPU at a time) | "blocks" (+ swap)
    edit_blocks_to_swap: int | str
    vae_tiling: bool

    @property
    def loads_fp8(self) -> bool:
        """Load the transformer straight into fp8 storage (``load_backbone(..., memory_preset=)``): training and
        editing both store it in fp8, so the bf16 copy (Wan2.1-14B: 32.7 GB of host RAM) is never needed."""
        return self.fp8_base and self.edit_fp8

    @property
    def streams_text_encoder(self) -> bool:
        """Keep no text encoder in host RAM: load it onto the GPU for new prompts only (``Backbone``'s
        ``text_encoder_streamed``), where the preset releases it after caching anyway."""
        return self.release_text_encoder


MEMORY_PRESETS: dict[str, MemoryPreset] = {p.name: p for p in (
    MemoryPreset("16GB", 16, fp8_base=True, train_blocks_to_swap="auto", gradient_checkpointing=True,
                 optimizer="adamw8bit", release_text_encoder=True,
                 offload_checkpoints=True, edit_fp8=True, edit_offload="blocks",
                 edit_blocks_to_swap="auto", vae_tiling=True),
    MemoryPreset("24GB", 24, fp8_base=True, train_blocks_to_swap="auto", gradient_checkpointing=True,
                 optimizer="adamw8bit", release_text_encoder=True,
                 offload_checkpoints=True, edit_fp8=True, edit_offload="blocks",
                 edit_blocks_to_swap="auto", vae_tiling=True),
    MemoryPreset("48GB", 48, fp8_base=True, train_blocks_to_swap="auto", gradient_checkpointing=True,
                 optimizer="adamw", release_text_encoder=False,
                 offload_checkpoints=False, edit_fp8=False, edit_offload="model",
                 edit_blocks_to_swap=0, vae_tiling=False),
    MemoryPreset("80GB+", 80, fp8_base=False, train_blocks_to_swap=0, gradient_checkpointing=True,
                 optimizer="adamw", release_text_encoder=False,
                 offload_checkpoints=False, edit_fp8=False, edit_offload="model",
                 edit_blocks_to_swap=0, vae_tiling=False),
)}
PRESET_NAMES = (*MEMORY_PRESETS, "auto")


def get_preset(name: str, device: torch.device | str | None = None) -> MemoryPreset:
    """The preset called ``name``; ``"auto"`` is :func:`auto_preset` for ``device`` (default: this rank's GPU)."""
    if name == "auto":
        return auto_preset(device)
    if name not in MEMORY_PRESETS:
        raise ValueError(f"memory_preset must be one of {list(PRESET_NAMES)}, got {name!r}")
    return MEMORY_PRESETS[name]


_AUTO_PRESETS: dict[int, MemoryPreset] = {}  # CUDA device index -> the tier "auto" chose (once per process)


def auto_preset(device: torch.device | str | None = None) -> MemoryPreset:
    """The largest tier that fits the card: resolved from :func:`gpu_capacity_gb` once per device and remembered,
    so that "auto" gives the same answer before and after a training run in the same process (whose weights and
    allocator pool would lower any reading of *free* memory by a tier or two)."""
    dev = cuda_device(device)
    if dev.index in _AUTO_PRESETS:
        return _AUTO_PRESETS[dev.index]
    cap = gpu_capacity_gb(dev)
    fitting = [p for p in MEMORY_PRESETS.values() if p.gpu_gb <= cap + 0.5]
    if not fitting:
        raise ValueError(f"memory_preset='auto': only {cap:.1f} GB usable on {dev}, below the smallest tier "
                         f"({min(p.gpu_gb for p in MEMORY_PRESETS.values()):.0f} GB). Free GPU memory (close other "
                         "processes) or use a larger card.")
    _AUTO_PRESETS[dev.index] = max(fitting, key=lambda p: p.gpu_gb)
    return _AUTO_PRESETS[dev.index]


def forget_auto_presets() -> None:
    """Make the next "auto" measure the card again (another process freed its memory, or tests)."""
    _AUTO_PRESETS.clear()


def cuda_device(device: torch.device | str | None = None) -> torch.device:
    """An indexed CUDA device. ``None`` or ``"cuda"`` (what ``load_backbone(..., "cuda")`` and accelerate's
    single-process device are) mean this rank's GPU: ``LOCAL_RANK`` under ``accelerate launch`` / torchrun, else
    the current device. torch's memory queries need an index (``get_per_process_memory_fraction`` refuses none)."""
    dev = torch.device("cuda") if device is None else torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"memory_preset='auto' measures a CUDA device, got {dev}: pick a preset by name")
    if dev.index is None:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]) if "LOCAL_RANK" in os.environ
                           else torch.cuda.current_device())
    return dev


def gpu_capacity_gb(device: torch.device | str | None = None) -> float:
    """GB of the card this process may use, whatever it already holds: the card's total memory x this process's
    memory fraction (``set_per_process_memory_fraction``: a shared card, or an emulated smaller one), and at most
    what is free plus what this process's allocator has reserved (other processes' memory does not count as ours,
    our own does). 0 without CUDA."""
    if not torch.cuda.is_available():
        return 0.0
    dev = cuda_device(device)
    free, total = torch.cuda.mem_get_info(dev)
    fraction_cap = torch.cuda.get_per_process_memory_fraction(dev) * total
    return min(fraction_cap, free + torch.cuda.memory_reserved(dev)) / GB


# ----------------------------------------------------------------------------------------------- placement
def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's first parameter lives (else its first buffer; CPU for a module with neither)."""
    t = next(itertools.chain(module.parameters(), module.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


@contextlib.contextmanager
def onload(module: torch.nn.Module | None, device: torch.device | str | None) -> Iterator[torch.nn.Module | None]:
    """Run one stage with ``module`` on ``device`` and send it back to where it was after (emptying the CUDA cache),
    so encoders share the GPU one at a time. A no-op for ``None``, ``device=None`` or a module already there."""
    if module is None or device is None:
        yield module
        return
    device = torch.device(device)
    home = module_device(module)
    if home == device or (device.type == home.type and device.index is None):
        yield module
        return
    module.to(device)
    try:
        yield module
    finally:
        module.to(home)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def free_device_cache(device: torch.device | str | None) -> None:
    """Return what a dropped module held: collect it now, and give CUDA's cached blocks back to the driver."""
    import gc

    gc.collect()
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- fp8 + LoRA
def apply_fp8(transformer, compute_dtype: torch.dtype | None = None) -> bool:
    """fp8 (e4m3) storage of the transformer's frozen weights through diffusers' layerwise casting, computing in
    ``compute_dtype`` (default: the model's own dtype, which must be bf16 or fp16: fp8 from an fp32 model would mix
    dtypes in the layers diffusers leaves uncast). Idempotent: a second training run or a re-run notebook cell on the
    same backbone is a no-op instead of diffusers' "hook already exists". Returns True when it cast now."""
    from diffusers.hooks.layerwise_casting import _is_layerwise_casting_active

    if _is_layerwise_casting_active(transformer):
        return False
    dtype = compute_dtype or transformer.dtype
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"fp8 storage needs a bf16 (or fp16) model, but the transformer is {dtype}: load the "
                         "backbone with dtype=torch.bfloat16 (CLI: --dtype bfloat16, the default on CUDA)")
    transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    return True


def is_fp8(transformer) -> bool:
    from diffusers.hooks.layerwise_casting import _is_layerwise_casting_active

    return bool(_is_layerwise_casting_active(transformer))


def fix_lora_dtype(transformer, dtype: torch.dtype = torch.float32, *, reinit: bool = False,
                   device: torch.device | str | None = None) -> int:
    """Put every LoRA parameter back in ``dtype`` after peft created or loaded it.

    peft moves a new adapter to its base layer's dtype when that is a float type, and float8 is one: on an fp8 base a
    LoRA would be stored in float8 (its B init and small updates round to zero, inference crashes on CPU). ``reinit``
    re-draws peft's own init (Kaiming A, zero B) after the cast, because an A initialised in fp8 keeps only 9-15
    distinct values. ``device``: also move them there (peft puts a new adapter beside its base weight, which for a
    swapped block is the host copy; LoRA weights always live on the execution device). Returns the number of
    tensors changed."""
    from peft.tuners.lora.layer import LoraLayer

    n = 0
    for module in transformer.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name in ("lora_A", "lora_B"):
            for sub in getattr(module, name).values():
                for p in sub.parameters():
                    if p.dtype != dtype or (device is not None and p.device != torch.device(device)):
                        p.data = p.data.to(device=device, dtype=dtype)
                        n += 1
        if reinit:
            for adapter in list(module.lora_A):
                module.reset_lora_parameters(adapter, True)
    return n


def lora_dtypes(transformer) -> set[torch.dtype]:
    """The dtypes of all LoRA parameters (a test and a sanity check print use it)."""
    return {p.dtype for n, p in transformer.named_parameters() if "lora_" in n}


# ----------------------------------------------------------------------------------------------- block swapping
PINNED_ROUND_THRESHOLD_MB = 1  # pinned allocations above this are not rounded up (see configure_pinned_memory)


def configure_pinned_memory() -> None:
    """Stop torch's pinned-host allocator rounding big allocations up to a power of two (its default for every
    size): a 404 MB fp8 block would take 512 MB, per-parameter pinning x1.5, and ``save_on_cpu``'s 208 MB block
    inputs 268 MB each. Process-wide; small allocations (<= the threshold) keep the rounding that helps reuse."""
    torch._C._accelerator_setAllocatorSettings(f"pinned_max_round_threshold_mb:{PINNED_ROUND_THRESHOLD_MB}")


def release_pinned_cache() -> None:
    """Hand the pinned host memory that torch's allocator keeps cached after a free (swapped blocks of a removed
    swapper, ``save_on_cpu``'s checkpoint buffers after training) back to the OS. A no-op without CUDA."""
    if torch.cuda.is_available() and hasattr(torch._C, "_host_emptyCache"):
        torch._C._host_emptyCache()


class _Transport:
    """How a swapped block's weights move: CUDA = one pinned host buffer per block, non-blocking copies on a side
    stream, events. Subclassed by the tests to emulate a device on the CPU (two "devices" and a fake stream)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = None
        if device.type == "cuda":
            configure_pinned_memory()
            self.stream = torch.cuda.Stream(device)

    def host_block(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Host copies of one block's tensors, as views into one buffer (pinned on CUDA): one allocation per block
        instead of one per weight, so the pinned bytes are the block's bytes (+ 64-byte alignment)."""
        sizes = [t.numel() * t.element_size() for t in tensors]
        offsets = list(itertools.accumulate((-(-n // 64) * 64 for n in sizes), initial=0))
        buf = torch.empty(offsets[-1], dtype=torch.uint8, pin_memory=self.device.type == "cuda")
        out = []
        for t, o, n in zip(tensors, offsets, sizes, strict=False):
            view = buf[o:o + n].view(t.dtype).view(t.shape)
            view.copy_(t.detach())
            out.append(view)
        return out

    def start_copy(self, host: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Begin a host->device copy; returns (device tensor, event to wait on before use)."""
        if self.stream is None:
            return host.to(self.device), None
        with torch.cuda.stream(self.stream):
            t = host.to(self.device, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record(self.stream)
        return t, ev

    def wait(self, tensors: Sequence[torch.Tensor], event) -> None:
        if event is None:
            return
        cur = torch.cuda.current_stream(self.device)
        cur.wait_event(event)
        for t in tensors:  # memory made on the side stream is used on the compute stream: keep it until that is done
            t.record_stream(cur)

    def placeholder(self, host: torch.Tensor) -> torch.Tensor:
        """What an offloaded parameter holds: its pinned host copy (a use would fail with a device mismatch)."""
        return host


def make_transport(device: torch.device) -> _Transport:
    """The transport :func:`enable_block_swap` uses (tests replace it to emulate a device on the CPU)."""
    return _Transport(device)


class SwappedBlocks:
    """The storage half of block swapping: the base weights of the first ``n`` of ``blocks`` held in host copies
    (one buffer per block, pinned on CUDA), a parameter holding a placeholder while its block is out, and the moves:
    :meth:`prefetch` (start the copy in), :meth:`load` (wait and point the parameters at it), :meth:`release`.
    Everything else of the blocks (LoRA, buffers, the resident blocks) lives on ``device``. :class:`BlockSwapper`
    decides *when* to move, from hooks."""

    def __init__(self, blocks: Sequence[torch.nn.Module], n: int, device: torch.device | str,
                 transport: _Transport | None = None):
        self.device = torch.device(device)
        self.blocks = list(blocks)
        self.n = max(0, min(int(n), len(self.blocks)))
        self.transport = transport or _Transport(self.device)
        self.swapped = list(range(self.n))
        self._host: dict[int, list[tuple[torch.nn.Parameter, torch.Tensor]]] = {}
        self._pending: dict[int, tuple[list[torch.Tensor], object, bool]] = {}  # copies started, not yet waited on
        self._loaded: set[int] = set()
        self.counts: dict[tuple[int, str, str], int] = {}  # (block, "onload"|"prefetched"|"release", phase) -> n
        for i in self.swapped:
            params = self._swappable(self.blocks[i])
            pairs = list(zip(params, self.transport.host_block([p.data for p in params]), strict=True))
            for p, host in pairs:
                p.requires_grad_(False)  # a swapped weight is restored from its host copy: it cannot train
                p.data = self.transport.placeholder(host)
            self._host[i] = pairs
            self._adopt(i)
        for i in range(self.n, len(self.blocks)):  # resident blocks go to the device whole
            self.blocks[i].to(self.device)

    def _adopt(self, i: int) -> None:
        """A swapped block's LoRA parameters and buffers live on the device like everything that is not swapped."""
        held = {id(p) for p, _ in self._host.get(i, [])}
        for p in self.blocks[i].parameters():
            if id(p) not in held and p.device != self.device:
                p.data = p.data.to(self.device)
        for mod in self.blocks[i].modules():
            for name, b in list(mod.named_buffers(recurse=False)):
                if b.device != self.device:
                    setattr(mod, name, b.to(self.device))

    @staticmethod
    def _swappable(block: torch.nn.Module) -> list[torch.nn.Parameter]:
        """Every base weight of the block, whatever its ``requires_grad``: a model fresh from ``from_pretrained``
        (an edit in a new process, before or without a LoRA) has them all True, and selecting frozen ones swapped
        nothing. LoRA parameters stay on the device."""
        return [p for n, p in block.named_parameters() if "lora_" not in n]

    def _count(self, i: int, what: str) -> None:
        phase = "backward" if torch._C._current_graph_task_id() != -1 else "forward"
        self.counts[(i, what, phase)] = self.counts.get((i, what, phase), 0) + 1

    def prefetch(self, i: int) -> None:
        if i not in self._host or i in self._loaded or i in self._pending:
            return
        copies = [self.transport.start_copy(h) for _, h in self._host[i]]
        self._pending[i] = ([t for t, _ in copies], copies[-1][1] if copies else None,
                            torch.is_inference_mode_enabled())

    def load(self, i: int) -> None:
        if i in self._loaded:
            return
        if i in self._pending and self._pending[i][2] != torch.is_inference_mode_enabled():
            del self._pending[i]  # made under inference_mode (an edit's wrap-around prefetch): unusable for training
        if i in self._pending:
            self._count(i, "prefetched")  # the copy was started before it was needed (hidden behind compute)
        self.prefetch(i)
        tensors, event, _ = self._pending.pop(i)
        self.transport.wait(tensors, event)
        for (p, _), t in zip(self._host[i], tensors, strict=True):
            p.data = t
        self._loaded.add(i)
        self._count(i, "onload")

    def release(self, i: int) -> None:
        if i not in self._loaded:
            return
        for p, host in self._host[i]:
            p.data = self.transport.placeholder(host)
        self._loaded.discard(i)
        self._count(i, "release")

    def release_all(self) -> None:
        for i in list(self._loaded):
            self.release(i)
        self._pending.clear()

    def restore(self, target: torch.device | str | None) -> None:
        """Every swapped weight back whole on ``target`` (``None``: left as its host copy); storage handed over."""
        self.release_all()
        for i in self.swapped:
            for p, host in self._host[i]:
                p.data = host if target is None else host.to(target)
        self._host.clear()

    def summary(self) -> dict:
        out: dict = {}
        for (_i, what, phase), c in self.counts.items():
            out.setdefault(f"{phase}_{what}", 0)
            out[f"{phase}_{what}"] += c
        return out


class BlockSwapper(SwappedBlocks):
    """Keep the base weights of ``n`` transformer blocks in host memory and stream them in per use.

    Why not diffusers' group offloading (``enable_group_offload``)? It is built for inference: with streams each
    group restores its parameters from a pinned copy made once, so every LoRA update inside a block is thrown away
    at the next offload (the LoRA never trains), and with gradient checkpointing its offload runs in the block's
    post-forward, which the backward recompute never reaches (every block stays resident in backward). This swapper
    differs where training needs it:

    * only **base** weights move (every parameter but the LoRA's; they are frozen when swapped); LoRA weights, their
      gradients and the optimiser state stay on the device and are never overwritten. Frozen weights do not change,
      so restoring them from the host copy (one pinned buffer per block) is exact;
    * **forward**: a block's weights are copied in by its pre-hook (waiting on the prefetch), the next swapped block
      is prefetched on a side stream, and the block is released by its post-hook — safe because with gradient
      checkpointing nothing of the block is saved for backward (swapping without checkpointing is refused);
    * **backward**: the checkpoint recompute calls the block again (its pre-hook copies the weights in and prefetches
      the block before it, in backward order); the block is released when the gradients of its own inputs that need
      one are computed (tensor hooks registered in forward; inputs shared by every block are left out), i.e. after
      the last backward op that used its weights; a callback at the end of backward releases whatever is left. This
      does not depend on checkpoint early-stop. At most two swapped blocks are on the device at once, in forward
      and in backward (the one running and the one prefetched);
    * swapped blocks are the **first** ``n``: backward starts with the resident ones, which hides the first copies.

    ``counts`` records onloads/releases per block and phase (``"forward"`` / ``"backward"``), for tests and logs.
    Works on CPU too (a no-op copy), where the tests emulate a device with a subclassed transport.
    """

    def __init__(self, blocks: Sequence[torch.nn.Module], n: int, device: torch.device | str,
                 transport: _Transport | None = None, owner: torch.nn.Module | None = None):
        super().__init__(blocks, n, device, transport)
        self.owner = owner  # the transformer: its gradient_checkpointing flag is checked in training forwards
        self._handles: list = []
        self._waiting: dict[int, int] = {}  # block -> input gradients still to come in this backward
        self._last_inputs: set[int] = set()  # ids of the tensors the previous swapped block got in this forward
        for i in self.swapped:
            self._handles.append(self.blocks[i].register_forward_pre_hook(self._make_pre(i), with_kwargs=True))
            self._handles.append(self.blocks[i].register_forward_hook(self._make_post(i), with_kwargs=True))

    # -- hooks
    def _neighbour(self, i: int, backward: bool) -> int | None:
        k = self.swapped.index(i)
        if backward:
            return self.swapped[k - 1] if k > 0 else None
        if k + 1 < len(self.swapped):
            return self.swapped[k + 1]
        # the last swapped block wraps around to the first for the next forward (CFG's second pass, the next
        # denoising step) — not in training, where backward comes next: block 0 would sit on the device through
        # the whole backward as a third swapped block (the backward prefetch brings it in time)
        return self.swapped[0] if len(self.swapped) > 1 and not torch.is_grad_enabled() else None

    def _make_pre(self, i: int):
        def pre(module, args, kwargs):
            backward = torch._C._current_graph_task_id() != -1
            self.load(i)
            nxt = self._neighbour(i, backward)
            if nxt is not None:
                self.prefetch(nxt)
            if backward or not torch.is_grad_enabled():
                return None
            if self.owner is not None and not getattr(self.owner, "gradient_checkpointing", False):
                raise RuntimeError("block swapping in training needs gradient checkpointing (without it autograd "
                                   "keeps every block's weights for backward): set gradient_checkpointing=True")
            self._release_after_input_grads(i, [t for t in (*args, *kwargs.values()) if torch.is_tensor(t)])
            return None
        return pre

    def _release_after_input_grads(self, i: int, tensors: list[torch.Tensor]) -> None:
        """Training forward of block ``i``: release it in backward once the gradients of its own inputs (its
        hidden-state stream(s)) are in. A tensor every block reads (Wan's text context, the time projection) gets its
        gradient only after the last block's backward, and waiting for it would keep every swapped block loaded: an
        input the previous swapped block got too is left out (block 0 has none to compare with, and is the last in
        backward anyway)."""
        shared = self._last_inputs if i != self.swapped[0] else set()
        self._last_inputs = {id(t) for t in tensors}
        inputs = [t for t in tensors if t.requires_grad and id(t) not in shared]
        self._waiting[i] = len(inputs)
        for t in inputs:
            t.register_hook(self._make_grad_hook(i))

    def _make_post(self, i: int):
        def post(module, args, kwargs, output):
            if torch._C._current_graph_task_id() == -1:  # forward: nothing of the block is kept for backward
                self.release(i)
            return None
        return post

    def _make_grad_hook(self, i: int):
        def hook(grad):
            self._waiting[i] = self._waiting.get(i, 1) - 1
            if self._waiting[i] <= 0:
                self.release(i)
            return grad
        return hook

    def attach_output(self, output: torch.Tensor) -> None:
        """Called on the transformer's output: when backward starts there, queue a release of every block still
        loaded for the end of that backward pass (blocks whose inputs need no gradient, e.g. the first one)."""
        if not output.requires_grad:
            return

        def hook(grad):  # runs inside backward, where queue_callback is allowed
            torch.autograd.Variable._execution_engine.queue_callback(self.release_all)
            return grad
        output.register_hook(hook)

    def remove(self, *, restore_to: torch.device | str | None = "device") -> None:
        """Take the hooks off and put every swapped weight back whole: on the device (default), on ``restore_to``,
        or, with ``None``, left as it is (host copies)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.restore(self.device if restore_to == "device" else restore_to)


def enable_block_swap(transformer, n: int, device, transport: _Transport | None = None) -> BlockSwapper | None:
    """Install a :class:`BlockSwapper` on the transformer's block list(s) (Wan: ``blocks``; HunyuanVideo:
    ``transformer_blocks`` then ``single_transformer_blocks``), moving everything else to ``device``. Replaces an
    earlier swapper. ``n = 0`` puts the whole transformer on ``device`` and returns None."""
    disable_block_swap(transformer, restore_to="cpu")  # via the host: restoring 40 blocks to the GPU could OOM
    blocks = transformer_blocks(transformer)
    device = torch.device(device)
    if n <= 0:
        transformer.to(device)
        release_pinned_cache()  # a replaced swapper's pinned copies, now on the device (see below)
        return None
    swapper = BlockSwapper(blocks, n, device, transport or make_transport(device), owner=transformer)
    block_ids = {id(b) for b in blocks}
    for child in transformer.children():  # non-block parts (embedders, norms, proj_out) go whole
        if isinstance(child, torch.nn.ModuleList) and any(id(b) in block_ids for b in child):
            continue
        child.to(device)
    for name, buf in list(transformer.named_buffers(recurse=False)):
        setattr(transformer, name, buf.to(device))
    handle = transformer.register_forward_hook(lambda m, a, out: _attach(swapper, out))
    swapper._handles.append(handle)
    transformer._loraedit_swapper = swapper
    # a replaced swapper's blocks came back as their pinned host copies; those now resident on the GPU left their
    # pinned buffers cached by torch (6.4 GB of host RAM for a 24GB edit after training, found by the simulation)
    release_pinned_cache()
    return swapper


def _attach(swapper: BlockSwapper, out):
    t = out[0] if isinstance(out, tuple) else getattr(out, "sample", out)
    if torch.is_tensor(t):
        swapper.attach_output(t)
    return None


def disable_block_swap(transformer, *, restore_to: torch.device | str | None = "device") -> None:
    """Remove the transformer's swapper, if any (see :meth:`BlockSwapper.remove` for ``restore_to``)."""
    sw = getattr(transformer, "_loraedit_swapper", None)
    if sw is not None:
        sw.remove(restore_to=restore_to)
        del transformer._loraedit_swapper
        release_pinned_cache()  # the swapped blocks' pinned buffers, now free, would stay cached


class ExpertSwitch:
    """Two experts that take turns on one device (Wan2.2-I2V-A14B: 2 x 28.6 GB bf16). A forward pre-hook on each
    places the expert being called — after moving the other one's resident weights back to the host — and does
    nothing while the expert called is the one already placed, so a denoising run moves each expert once.
    ``place(expert)`` / ``release(expert)`` do the moving (the editing preset's block swap, or whole)."""

    def __init__(self, experts: list[torch.nn.Module], place, release):
        self.experts, self.place, self.release = list(experts), place, release
        self.active: torch.nn.Module | None = None
        self.moves: list[tuple[str, int]] = []  # ("place" | "release", expert index): what happened, in order
        self._handles = [m.register_forward_pre_hook(lambda mod, args: self.activate(mod)) for m in self.experts]

    def activate(self, expert: torch.nn.Module) -> None:
        if self.active is expert:
            return
        if self.active is not None:
            self.release(self.active)
            self.moves.append(("release", self.experts.index(self.active)))
        self.place(expert)
        self.moves.append(("place", self.experts.index(expert)))
        self.active = expert

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        for m in self.experts:
            if getattr(m, "_loraedit_expert_switch", None) is self:
                del m._loraedit_expert_switch


def enable_expert_switch(experts: list[torch.nn.Module], n: int, device) -> ExpertSwitch:
    """Install an :class:`ExpertSwitch` on the experts (replacing an earlier one): each goes to ``device`` with ``n``
    of its blocks swapped (:func:`enable_block_swap`) when it is called, the other back to the CPU first."""
    for m in experts:
        old = getattr(m, "_loraedit_expert_switch", None)
        if old is not None:
            old.remove()
    sw = ExpertSwitch(experts, lambda m: enable_block_swap(m, int(n), device), to_host)
    for m in experts:
        m._loraedit_expert_switch = sw
    return sw


def to_host(transformer) -> None:
    """All of ``transformer`` on the CPU: its :class:`BlockSwapper`, if any, removed via the host (restoring its
    blocks to the GPU could OOM), then every other part moved. What a model leaves the GPU for another."""
    disable_block_swap(transformer, restore_to="cpu")
    transformer.to("cpu")


def block_swapper(transformer) -> BlockSwapper | None:
    return getattr(transformer, "_loraedit_swapper", None)


def transformer_blocks(transformer) -> list[torch.nn.Module]:
    """The repeated blocks in execution order (what block swapping and the planner count)."""
    out: list[torch.nn.Module] = []
    for name in ("blocks", "transformer_blocks", "single_transformer_blocks"):
        out += list(getattr(transformer, name, None) or [])
    if not out:
        raise TypeError(f"{type(transformer).__name__} has no block list to swap")
    return out


def quiet_checkpoint_warning() -> None:
    warnings.filterwarnings("ignore", message=".*torch.utils.checkpoint.*use_reentrant.*")


# ----------------------------------------------------------------------------------------------- pipelines
class StagedPipelineMixin:
    """For our diffusers pipeline subclasses: compute runs on ``_staged_device`` whatever device the weights sit on
    (diffusers would infer the device from the first component, which may be a CPU-resident encoder), and each
    encoder is brought there only for its own call (:func:`onload`)."""

    _staged_device: torch.device | None = None

    @property
    def _execution_device(self):
        if self._staged_device is not None:
            return self._staged_device
        return super()._execution_device

    # editing presets: the components that run with the transformer(s) moved out of the way — "text_encoder",
    # "text_encoder_2", "image_encoder", "vae" (encode and decode) — as the planner decides for the tier
    _evict_for: frozenset[str] = frozenset()

    def _transformers(self) -> list[torch.nn.Module]:
        return [m for m in (getattr(self, "transformer", None), getattr(self, "transformer_2", None)) if m is not None]

    def _encoders_for(self, *names: str):
        stack = contextlib.ExitStack()
        mods = [getattr(self, n, None) for n in names]
        away = any(n in self._evict_for and m is not None and module_device(m) != self._staged_device
                   for n, m in zip(names, mods, strict=True))
        stack.enter_context(evicted_all(self._transformers(), self._staged_device, away))
        for m in mods:
            stack.enter_context(onload(m, self._staged_device))
        return stack

    @contextlib.contextmanager
    def _room_to_decode(self) -> Iterator[None]:
        """While the pipeline runs, every ``vae.decode`` (the final one inside diffusers' ``__call__``, preview
        decodes from a callback) first moves the transformer(s) out when ``"vae"`` is in ``_evict_for``: the
        planner found the decode does not fit beside them on this tier."""
        vae = getattr(self, "vae", None)
        if "vae" not in self._evict_for or vae is None:
            yield
            return
        had = vae.__dict__.get("decode")
        inner = vae.decode

        def decode(*args, **kwargs):
            with evicted_all(self._transformers(), self._staged_device):
                return inner(*args, **kwargs)
        vae.decode = decode
        try:
            yield
        finally:
            if had is None:
                del vae.decode
            else:
                vae.decode = had


@contextlib.contextmanager
def evicted(module: torch.nn.Module, device: torch.device | str | None) -> Iterator[None]:
    """Move ``module``'s parameters that sit on ``device`` to the CPU for a moment and back after: a big encoder
    (UMT5-XXL 11.4 GB, Llava 16.7 GB) or the VAE decode then runs where the transformer's resident weights were.
    Swapped blocks (host copies) are not touched, so a :class:`BlockSwapper` keeps working; its prefetched copy is
    dropped first. A no-op for a CPU device."""
    if device is None or torch.device(device).type == "cpu":
        yield
        return
    device = torch.device(device)
    sw = block_swapper(module)
    if sw is not None:
        sw.release_all()
    moved = [p for p in module.parameters() if p.device.type == device.type]
    for p in moved:
        p.data = p.data.to("cpu")
    torch.cuda.empty_cache()
    try:
        yield
    finally:
        for p in moved:
            p.data = p.data.to(device)


def evicted_all(modules: Sequence[torch.nn.Module | None], device, when: bool = True) -> contextlib.ExitStack:
    """:func:`evicted` for several modules (both experts of Wan2.2-I2V-A14B), or nothing unless ``when``."""
    stack = contextlib.ExitStack()
    for m in modules if when else ():
        if m is not None:
            stack.enter_context(evicted(m, device))
    return stack
