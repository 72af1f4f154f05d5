"""A simulated GPU: the package's own code at full size on a CPU, with every storage's bytes counted where the code
put it (GPU, host, pinned host), so each stage's peak is measured from what the code keeps alive, not predicted.

Why not PyTorch's fake CUDA device: backward through fake CUDA tensors aborts on the CPU wheel and raises on the
CUDA wheel without a driver, ``nn.Module.to`` on fake parameters fails from the second move on, and
``pin_memory()`` / ``torch.cuda.Stream()`` do not exist there (``../shared/reference``'s fake-tensor notes). So:

* **weights carry no data.** Models are built on ``meta`` at their published configs and materialised as
  ``FakeTensor`` s on the (fake) CPU; every op touching one gives a fake result. Small tensors made from data
  (timesteps, sigmas, masks, generator draws) stay real, so the schedulers' and the package's own data-dependent
  Python runs as on a GPU; large factory outputs are made fake.
* **the GPU is a logical device.** :class:`Placement` (a ``TorchFunctionMode``) reads the device every tensor call
  asks for: ``.to("cuda")`` / ``.cuda()`` / ``torch.empty(..., device="cuda")`` make a new storage tagged *gpu*,
  ``pin_memory`` ones tagged *pinned*, a move back to ``"cpu"`` one tagged *host*, and ``tensor.device`` reports
  ``cuda:0`` for a gpu-tagged tensor. So the package's placement code (``memory.onload`` / ``evicted`` /
  ``to_host``, ``BlockSwapper``, ``Backbone.to``, ``save_on_cpu``) runs unchanged and decides where bytes live.
* **the counter is at the dispatcher.** :class:`Tracker` (a ``TorchDispatchMode``) sees every op, forward and
  backward (autograd's recompute included), registers each new storage with its bytes and logical device (the
  one asked for, else its inputs': anything computed from a gpu tensor is on the gpu), and drops it when the
  storage dies (a weakref callback). It keeps the live total and peak per device and per stage.
* **torch.cuda is emulated** inside :func:`simulated_gpu` only: ``is_available``, memory queries (answered from the
  tracker, for a card of the tier's size), streams and events (no-ops: copies are synchronous here), RNG state,
  pinned-allocator settings; ``torch.autocast("cuda")`` runs CPU autocast on the same fake tensors (bf16 lists as
  on CUDA for the ops that matter: matmuls, convolutions, attention).

What it cannot see, allowed for by the planner's own margin (:func:`with_margin`: 1.5 GB + 10 % of the tensors)
in every fit check: the CUDA context, the caching allocator's fragmentation and reserved-but-free blocks, cuBLAS /
attention workspaces, and kernel choices that differ from the CPU's (CPU SDPA is flash-style: it saves the
log-sum-exp, as CUDA flash / memory-efficient attention do; a CUDA fallback to math attention would need far
more).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

GB = 1e9
GPU = torch.device("cuda", 0)
CPU = torch.device("cpu")
WHERE = ("gpu", "host", "pinned")
FAKE_ABOVE_BYTES = 64 * 2**20  # factory outputs at least this big are made fake (no real allocation)


# ----------------------------------------------------------------------------------------------- the counter
@dataclasses.dataclass
class StagePeak:
    """Peak bytes per logical device during one stage (GB), and the host RAM peak (host + pinned, both live)."""

    gpu: float = 0.0
    host: float = 0.0
    pinned: float = 0.0
    host_ram: float = 0.0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {k: round(v, 3) for k, v in dataclasses.asdict(self).items()}


class Tracker(TorchDispatchMode):
    """Live storage bytes per logical device ("gpu" | "host" | "pinned"), their peaks, per stage.

    A storage is registered the first time an op returns it (or when :meth:`adopt` is called for weights that
    existed before), with the device :class:`Placement` asked for, else its inputs' (gpu wins). A weakref on the
    storage removes it when it dies. ``.item()`` / ``bool()`` on a fake tensor (a logged loss, a finite check)
    return a neutral value instead of failing: what a GPU would return does not change where memory goes."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[int, str]] = {}  # storage key -> (bytes, where)
        self._refs: dict[int, weakref.ref] = {}
        self.total = dict.fromkeys(WHERE, 0)
        self.peak = dict.fromkeys(WHERE, 0)
        self.host_ram_peak = 0
        self.forced: list[str] = []  # the device a Placement call asked for (innermost last)
        self.stages: dict[str, StagePeak] = {}
        self._stage: str | None = None
        self._stage_peak: dict[str, int] = {}
        self._stage_host_ram = 0
        self._t0 = 0.0
        self.timeline: list[tuple[str, float]] = []  # (event, gpu GB) marks, e.g. per block in training
        self.pinned_reserved = 0  # what torch's caching host allocator keeps until _host_emptyCache
        self.ops = 0
        self.fake_mode = None  # set by simulated_gpu: large factory outputs made at the dispatcher go fake
        # work, per stage: matmul/convolution/attention FLOPs, and bytes copied host->GPU / GPU->host
        self.work: dict[str, dict[str, float]] = {}
        self.in_transformer = 0  # > 0 inside a transformer forward (simulate's hooks): FLOPs also counted apart

    # -- storages
    @staticmethod
    def key(t: torch.Tensor) -> int:
        return t.untyped_storage()._cdata

    def where(self, t: torch.Tensor) -> str | None:
        item = self.live.get(self.key(t))
        return item[1] if item else None

    def _register(self, storage, where: str) -> None:
        k = storage._cdata
        if k in self.live:
            return
        n = storage.nbytes()
        self.live[k] = (n, where)

        def gone(_ref, k=k):
            self._free(k)
        try:
            self._refs[k] = weakref.ref(storage, gone)
        except TypeError:  # pragma: no cover - a storage without weakref support: counted, never freed
            pass
        self.total[where] += n
        self._bump()

    def _free(self, k: int) -> None:
        item = self.live.pop(k, None)
        self._refs.pop(k, None)
        if item is not None:
            self.total[item[1]] -= item[0]

    def _bump(self) -> None:
        if self.total["pinned"] > self.pinned_reserved:
            self.pinned_reserved = self.total["pinned"]
        host_ram = self.total["host"] + self.pinned_reserved
        for w in WHERE:
            self.peak[w] = max(self.peak[w], self.total[w])
            self._stage_peak[w] = max(self._stage_peak.get(w, 0), self.total[w])
        self.host_ram_peak = max(self.host_ram_peak, host_ram)
        self._stage_host_ram = max(self._stage_host_ram, host_ram)

    def adopt(self, tensors, where: str = "host") -> None:
        """Count tensors made before the tracker ran (the loaded weights: on the host, as from_pretrained leaves
        them)."""
        for t in tensors:
            if isinstance(t, torch.Tensor) and not _is_plain_meta(t):
                self._register(t.untyped_storage(), where)

    def retag(self, t: torch.Tensor, where: str) -> None:
        if _is_plain_meta(t):
            return
        k = self.key(t)
        if k in self.live:
            n, old = self.live[k]
            self.total[old] -= n
            self.live[k] = (n, where)
            self.total[where] += n
            self._bump()
        else:
            self._register(t.untyped_storage(), where)

    def empty_host_cache(self) -> None:
        self.pinned_reserved = self.total["pinned"]

    # -- stages
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Record the peaks of one stage (the totals at its start count: what stays from before is live)."""
        outer = self._stage, dict(self._stage_peak), self._stage_host_ram, self._t0
        self._stage, self._stage_peak = name, dict(self.total)
        self._stage_host_ram = self.total["host"] + self.pinned_reserved
        self._t0 = time.perf_counter()
        try:
            yield
        finally:
            sp = self._stage_peak
            self.stages[name] = StagePeak(sp["gpu"] / GB, sp["host"] / GB, sp["pinned"] / GB,
                                          self._stage_host_ram / GB, time.perf_counter() - self._t0)
            self._stage, self._stage_peak, self._stage_host_ram, self._t0 = outer
            for w in WHERE:  # an enclosing stage saw this one's peak too
                self._stage_peak[w] = max(self._stage_peak.get(w, 0), sp[w])

    def _count(self, key: str, n: float) -> None:
        w = self.work.setdefault(self._stage or "-", {})
        w[key] = w.get(key, 0.0) + n

    def _account(self, func, args, kwargs, out, where: str) -> None:
        """FLOPs of matmuls, convolutions and attention; bytes of copies between the GPU and the host."""
        packet = func.overloadpacket
        if packet in _FLOPS:
            try:
                f = _FLOPS[packet](*args, **kwargs, out_val=out)
            except Exception:  # pragma: no cover - a formula that does not take this overload's arguments
                f = 0
            self._count("flops", f)
            if self.in_transformer:
                self._count("transformer_flops", f)
        if packet in _COPIES:
            src = self.where(args[1] if packet is torch.ops.aten.copy_ else args[0]) or "host"
            dst = (self.where(args[0]) or "host") if packet is torch.ops.aten.copy_ else where
            if (src == "gpu") != (dst == "gpu"):
                t = args[1] if packet is torch.ops.aten.copy_ else out
                key = "h2d_bytes" if dst == "gpu" else "d2h_bytes"
                self._count(key, t.numel() * t.element_size())
                if self.in_transformer:
                    self._count("transformer_" + key, t.numel() * t.element_size())

    def mark(self, event: str) -> None:
        self.timeline.append((event, self.total["gpu"] / GB))

    # -- the dispatcher
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops += 1
        if func in _SCALAR_OPS and _has_fake(args):
            return _neutral_scalar(func, args)
        where = self.forced[-1] if self.forced else None
        # Python that runs inside a torch call (saved-tensor hooks, e.g. save_on_cpu's pinned buffers) is not seen by
        # Placement: its devices and pinning are read here, at the op
        dev = kwargs.get("device")
        if dev is not None and torch.device(dev).type == "cuda":
            kwargs = {**kwargs, "device": CPU}
            where = where or "gpu"
        if kwargs.get("pin_memory"):
            kwargs = {**kwargs, "pin_memory": False}
            where = "pinned"
        if where is not None and self.fake_mode is not None and \
                _out_bytes(func, args, kwargs) >= FAKE_ABOVE_BYTES and not _has_fake(args):
            with self.fake_mode:  # a large factory output: fake (above this mode, so it is registered below)
                out = func(*args, **kwargs)
        else:
            out = func(*args, **kwargs)
        if where is None:
            where = "host"
            for a in _tensors(args, kwargs):
                if self.where(a) == "gpu":
                    where = "gpu"
                    break
        for t in _tensors(out):
            k = t.untyped_storage()._cdata
            if k not in self.live and not _is_plain_meta(t):
                self._register(t.untyped_storage(), where)
        self._account(func, args, kwargs, out, where)
        return out


def _cpu_sdpa_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query.shape, key.shape, value.shape)


def _cpu_sdpa_backward_flops(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)


def _linear_flops(x, weight, *args, out_val=None, **kwargs) -> int:
    return 2 * x.numel() // x.shape[-1] * weight.shape[0] * weight.shape[1]


def _flop_formulas() -> dict:
    """torch's FLOP formulas (matmuls, convolutions, CUDA attention kernels) plus the CPU flash attention the
    simulation runs (torch counts 0 for it), forward and backward."""
    from torch.utils.flop_counter import flop_registry

    table = dict(flop_registry)  # matmuls, convolutions (aten.convolution: every conv at this level)
    aten = torch.ops.aten
    table[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
    table[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flops
    # under inference_mode composite ops reach the dispatcher whole (an edit's linears and attention)
    table[aten.linear] = _linear_flops
    table[aten.scaled_dot_product_attention] = _cpu_sdpa_flops
    return table


_FLOPS = _flop_formulas()
_COPIES = {torch.ops.aten._to_copy, torch.ops.aten.clone, torch.ops.aten.copy_}


_FACTORY_OPS = ("empty", "zeros", "ones", "full", "empty_strided", "randn", "rand")


def _out_bytes(func, args, kwargs) -> int:
    """Bytes a factory op (``empty``, ``zeros``, ``full`` ...) is about to allocate; 0 for other ops."""
    if func.__name__.split(".")[0] not in _FACTORY_OPS:
        return 0
    return _numel_bytes(args, kwargs)


def _tensors(*trees) -> Iterator[torch.Tensor]:
    for tree in trees:
        if isinstance(tree, torch.Tensor):
            yield tree
        elif isinstance(tree, (list, tuple)):
            yield from _tensors(*tree)
        elif isinstance(tree, dict):
            yield from _tensors(*tree.values())


def _is_plain_meta(t: torch.Tensor) -> bool:
    """A meta tensor that is not a FakeTensor (a model being built): no memory anywhere."""
    from torch._subclasses.fake_tensor import FakeTensor

    return not isinstance(t, FakeTensor) and t.is_meta


def _has_fake(args) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return any(isinstance(t, FakeTensor) for t in _tensors(args))


_SCALAR_OPS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
               torch.ops.aten.equal.default}


def _neutral_scalar(func, args):
    t = next(_tensors(args))
    if func is not torch.ops.aten._local_scalar_dense.default or t.dtype == torch.bool:
        return True  # "is finite", "any", "equal": the branch a healthy run takes
    return 0 if not t.dtype.is_floating_point else 0.5


# ----------------------------------------------------------------------------------------------- placement
def _is_gpu(device) -> bool:
    if device is None:
        return False
    if isinstance(device, int):
        return True
    return torch.device(device).type == "cuda"


_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
              torch.arange, torch.linspace, torch.empty_strided, torch.tensor, torch.as_tensor, torch.eye,
              torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like,
              torch.randn_like, torch.randint_like}
_DEVICE_GETTER = torch._C.TensorBase.__dict__["device"]
_IS_CUDA_GETTER = torch._C.TensorBase.__dict__["is_cuda"]


class Placement(TorchFunctionMode):
    """The logical devices: where each call asks a tensor to be, recorded on the tracker, while every tensor stays
    on the CPU (fake or real). See the module docstring."""

    def __init__(self, tracker: Tracker, fake_mode):
        super().__init__()
        self.tracker = tracker
        self.fake_mode = fake_mode

    def logical(self, t: torch.Tensor) -> torch.device:
        if self.tracker.where(t) == "gpu":
            return GPU
        return torch.device("meta") if _is_plain_meta(t) else CPU

    def _moved(self, t: torch.Tensor, func, args, kwargs, dst: str):
        """``t`` converted by ``func`` with the device taken out, as a new storage on ``dst``."""
        src = self.tracker.where(t) or "host"
        self.tracker.forced.append(dst)
        try:
            out = func(*args, **kwargs)
            if src != dst and out.untyped_storage()._cdata == t.untyped_storage()._cdata:
                out = out.clone()  # a real move makes a copy, even when the dtype stays
        finally:
            self.tracker.forced.pop()
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        owner = getattr(func, "__self__", None)
        if owner is _DEVICE_GETTER:
            return self.logical(args[0])
        if owner is _IS_CUDA_GETTER:
            return self.tracker.where(args[0]) == "gpu"
        if func is torch.Tensor.to or func is torch.Tensor.cuda or func is torch.Tensor.cpu:
            return self._to(func, args, kwargs)
        if func is torch.Tensor.backward:
            return self._backward(*args, **kwargs)
        if func is torch.Tensor.pin_memory:
            return self._moved(args[0], torch.Tensor.clone, (args[0],), {}, "pinned")
        if func is torch.Tensor.is_pinned:
            return self.tracker.where(args[0]) == "pinned"
        if func is torch.Tensor.numpy and _has_fake(args):  # decoded frames leave torch: zeros of their shape
            import numpy as np

            return np.zeros(tuple(args[0].shape), dtype=torch.empty((), dtype=args[0].dtype).numpy().dtype)
        if func in _FACTORIES:
            return self._factory(func, args, kwargs)
        return func(*args, **kwargs)

    def _backward(self, t, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """``loss.backward()`` with this mode active inside: the checkpoint recompute, the swapper's hooks and
        save_on_cpu's unpacking are Python that runs during backward (a mode is off inside its own handler)."""
        from torch.autograd.graph import _engine_run_backward

        grad = torch.ones_like(t) if gradient is None else gradient
        with self:
            _engine_run_backward((t,), (grad,), bool(retain_graph) if retain_graph is not None else create_graph,
                                 create_graph, tuple(inputs or ()), allow_unreachable=True, accumulate_grad=True)

    def _to(self, func, args, kwargs):
        t = args[0]
        copy = bool(kwargs.pop("copy", False))
        if func is torch.Tensor.cuda:
            dst, dtype, nb, fmt = "gpu", None, bool(kwargs.get("non_blocking", False)), kwargs.get("memory_format")
        elif func is torch.Tensor.cpu:
            dst, dtype, nb, fmt = "host", None, False, kwargs.get("memory_format")
        else:
            if args[1:] and isinstance(args[1], torch.Tensor):  # .to(other): its logical device and dtype
                device, dtype = self.logical(args[1]), args[1].dtype
                nb = bool(args[2]) if args[2:] else bool(kwargs.get("non_blocking", False))
                fmt = kwargs.get("memory_format")
            else:
                device, dtype, nb, fmt = torch._C._nn._parse_to(*args[1:], **kwargs)
            if device is not None and device.type == "meta":
                return func(*args, **kwargs)
            if device is None:
                return t.to(dtype=dtype, non_blocking=nb, copy=copy, memory_format=fmt or torch.preserve_format) \
                    if dtype is not None or copy else t
            dst = "gpu" if _is_gpu(device) else "host"
        here = self.tracker.where(t) or "host"
        if dst == "host" and here == "pinned" and not copy:
            dst = "pinned"  # a pinned tensor is on the CPU already
        call = dict(device="cpu", non_blocking=nb, copy=copy, memory_format=fmt or torch.preserve_format)
        if dtype is not None:
            call["dtype"] = dtype
        if here == dst:
            return torch.Tensor.to(t, **call)
        return self._moved(t, torch.Tensor.to, (t,), call, dst)

    def _factory(self, func, args, kwargs):
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "meta":  # a model being built: not memory
            return func(*args, **kwargs)
        kwargs.pop("device", None)
        pinned = bool(kwargs.pop("pin_memory", False))
        like = func.__name__.endswith("_like")
        if like and device is None:
            dst = self.tracker.where(args[0]) or "host"
        else:
            dst = "pinned" if pinned else ("gpu" if _is_gpu(device) else "host")
        if device is not None:
            kwargs["device"] = "cpu"
        self.tracker.forced.append(dst)
        try:
            from_data = like or func in (torch.tensor, torch.as_tensor)  # sized by their data: never big here
            if not from_data and _numel_bytes(args, kwargs) >= FAKE_ABOVE_BYTES:
                with self.fake_mode:  # above the tracker on the mode stack: it does not see this op
                    out = func(*args, **kwargs)
            else:
                out = func(*args, **kwargs)
        finally:
            self.tracker.forced.pop()
        self.tracker.retag(out, dst)
        return out


def _numel_bytes(args, kwargs) -> int:
    size = kwargs.get("size")
    if size is None:
        dims = []
        for a in args:
            if isinstance(a, (list, tuple, torch.Size)):
                dims = list(a)
                break
            if isinstance(a, int):
                dims.append(a)
            else:
                break
        size = dims
    n = 1
    for d in size:
        n *= int(d)
    dtype = kwargs.get("dtype") or torch.get_default_dtype()
    return n * dtype.itemsize


# ----------------------------------------------------------------------------------------------- torch.cuda
class _Stream:
    def __init__(self, *a, **k):
        self.device = GPU

    def wait_stream(self, *a):
        pass

    def wait_event(self, *a):
        pass

    def record_event(self, event=None):
        return event or _Event()

    def synchronize(self):
        pass

    def query(self):
        return True

    def is_capturing(self):  # torch.optim's CUDA-graph check
        return False

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


class _Event:
    def __init__(self, *a, **k):
        pass

    def record(self, *a):
        pass

    def wait(self, *a):
        pass

    def synchronize(self):
        pass

    def query(self):
        return True


@contextlib.contextmanager
def _patched(patches: list[tuple[object, str, object]]) -> Iterator[None]:
    saved = []
    for obj, name, value in patches:
        saved.append((obj, name, getattr(obj, name, _MISSING)))
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, value in reversed(saved):
            if value is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, value)


_MISSING = object()


def _cuda_patches(tr: Tracker, card_bytes: int) -> list:
    """torch.cuda as a card of ``card_bytes`` whose allocations are the tracker's gpu storages."""
    import torch.amp.autocast_mode as am
    import torch.utils.checkpoint as ckpt
    from torch._subclasses.fake_tensor import FakeTensor

    def stats(device=None):
        cur, peak = tr.total["gpu"], tr.peak["gpu"]
        return {"allocated_bytes.all.current": cur, "allocated_bytes.all.peak": peak,
                "reserved_bytes.all.current": cur, "reserved_bytes.all.peak": peak}

    def reset_peak(device=None):
        tr.peak["gpu"] = tr.total["gpu"]

    def cuda_dev(d):
        return "cpu" if d == "cuda" or (isinstance(d, torch.device) and d.type == "cuda") else d

    real_autocast_init = am.autocast.__init__

    def autocast_init(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        real_autocast_init(self, cuda_dev(device_type), dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    real_is_ac, real_set_ac, real_get_dt = torch.is_autocast_enabled, torch.set_autocast_enabled, \
        torch.get_autocast_dtype
    from torch._subclasses.fake_tensor import FakeTensorMode

    real_fake_device = FakeTensor.device
    inside = [0]  # > 0 while fake tensor internals run: they must see the real (CPU) device

    def fake_device(self):
        d = real_fake_device.fget(self)
        if not inside[0] and d.type == "cpu" and tr.where(self) == "gpu":
            return GPU
        return d

    def counted(real):  # marks the call as fake-tensor internals while it runs
        def wrapper(*a, **k):
            inside[0] += 1
            try:
                return real(*a, **k)
            finally:
                inside[0] -= 1
        return wrapper

    mode_dispatch = counted(FakeTensorMode.__torch_dispatch__)
    tensor_dispatch = counted(FakeTensor.__dict__["__torch_dispatch__"].__func__)

    cuda = torch.cuda
    props = SimpleNamespace(name="simulated GPU", total_memory=card_bytes, major=9, minor=0,
                            multi_processor_count=132, is_integrated=False)
    return [
        (cuda, "is_available", lambda: True), (cuda, "device_count", lambda: 1),
        (cuda, "_lazy_init", lambda: None), (cuda, "is_initialized", lambda: True),
        (cuda, "current_device", lambda: 0), (cuda, "set_device", lambda d: None),
        (cuda, "synchronize", lambda d=None: None), (cuda, "empty_cache", lambda: None),
        (cuda, "mem_get_info", lambda d=None: (card_bytes - tr.total["gpu"], card_bytes)),
        (cuda, "memory_allocated", lambda d=None: tr.total["gpu"]),
        (cuda, "max_memory_allocated", lambda d=None: tr.peak["gpu"]),
        (cuda, "memory_reserved", lambda d=None: tr.total["gpu"]),
        (cuda, "max_memory_reserved", lambda d=None: tr.peak["gpu"]),
        (cuda, "memory_stats", stats), (cuda, "reset_peak_memory_stats", reset_peak),
        (cuda, "get_per_process_memory_fraction", lambda d=None: 1.0),
        (cuda, "set_per_process_memory_fraction", lambda f, d=None: None),
        (cuda, "get_device_properties", lambda d=None: props), (cuda, "get_device_name", lambda d=None: props.name),
        (cuda, "get_device_capability", lambda d=None: (9, 0)), (cuda, "is_bf16_supported", lambda *a, **k: True),
        (cuda, "Stream", _Stream), (cuda, "Event", _Event), (cuda, "stream", lambda s=None: contextlib.nullcontext()),
        (cuda, "current_stream", lambda d=None: _Stream()), (cuda, "default_stream", lambda d=None: _Stream()),
        (cuda, "get_rng_state", lambda d="cuda": torch.get_rng_state()),
        (cuda, "set_rng_state", lambda s, d="cuda": None),
        (cuda, "get_rng_state_all", lambda: [torch.get_rng_state()]),
        (cuda, "set_rng_state_all", lambda s: None), (cuda, "manual_seed", lambda s: None),
        (cuda, "manual_seed_all", lambda s: None),
        (torch.accelerator, "current_accelerator", lambda check_available=False: torch.device("cuda")),
        (torch.accelerator, "is_available", lambda: True), (torch.accelerator, "device_count", lambda: 1),
        (torch.accelerator, "current_device_index", lambda: 0),
        (torch.accelerator, "current_stream", lambda d=None: _Stream()),
        (torch._C, "_accelerator_setAllocatorSettings", lambda s: None),
        (torch.Tensor, "record_stream", lambda self, stream: None),  # copies are synchronous here
        (torch._C, "_host_emptyCache", tr.empty_host_cache),
        (am.autocast, "__init__", autocast_init),
        (torch, "is_autocast_enabled", lambda d=None: real_is_ac() if d is None else real_is_ac(cuda_dev(d))),
        (torch, "set_autocast_enabled", lambda d, v=None: real_set_ac(d) if v is None else real_set_ac(cuda_dev(d), v)),
        (torch, "get_autocast_dtype", lambda d: real_get_dt(cuda_dev(d))),
        (FakeTensor, "device", property(fake_device)),
        (FakeTensorMode, "__torch_dispatch__", mode_dispatch),
        (FakeTensor, "__torch_dispatch__", classmethod(tensor_dispatch)),
        (torch.nn.Module, "_apply", _apply_by_set_data),
        (ckpt, "_allowed_determinism_checks_to_fns", {**ckpt._allowed_determinism_checks_to_fns,
                                                      ckpt._DEFAULT_DETERMINISM_MODE: _shape_and_dtype}),
    ]


def _shape_and_dtype(x: torch.Tensor) -> dict:
    """Checkpoint's recompute check without the device: a small real tensor on the simulated GPU reports
    ``cuda`` where Placement is active and ``cpu`` inside a torch call (shape and dtype are what can differ)."""
    return {"shape": x.shape, "dtype": x.dtype}


_APPLY_MEMO: list[dict] = []  # one per top-level _apply: a parameter shared by two modules is converted once


def _apply_by_set_data(self, fn, recurse=True):
    """``nn.Module._apply`` that replaces a parameter's data (``param.data = fn(param)``) instead of swapping the
    tensor: torch swaps FakeTensor parameters, which fails from the second move on (weakrefs held by the fake mode's
    memo). What moves is the same; the Parameter objects (and the optimiser's references to them) stay. A
    parameter shared between modules (tied embeddings) is converted once and stays shared."""
    from torch._subclasses.fake_tensor import FakeTensor

    top = not _APPLY_MEMO
    if top:
        _APPLY_MEMO.append({})
    memo = _APPLY_MEMO[-1]
    try:
        if recurse:
            for module in self.children():
                module._apply(fn)
        for key, p in self._parameters.items():
            if p is None:
                continue
            if id(p) in memo:
                self._parameters[key] = memo[id(p)]
                continue
            with torch.no_grad():
                new = fn(p)
            if new is p:
                out = p
            elif isinstance(p, FakeTensor) == isinstance(new, FakeTensor) and \
                    torch._has_compatible_shallow_copy_type(p, new):
                p.data = new
                out = p
            else:  # meta -> fake (materialising): a new Parameter, as torch does
                out = torch.nn.Parameter(new, requires_grad=p.requires_grad)
                self._parameters[key] = out
            memo[id(p)] = out
            if out.grad is not None:
                with torch.no_grad():
                    g = fn(out.grad)
                if g is not out.grad:
                    out.grad.data = g
        for key, b in self._buffers.items():
            if b is not None:
                self._buffers[key] = fn(b)
    finally:
        if top:
            _APPLY_MEMO.pop()
    return self


@dataclasses.dataclass
class SimulatedGPU:
    """What :func:`simulated_gpu` yields: the tracker and the fake mode that materialises weights."""

    tracker: Tracker
    fake_mode: object
    card_gb: float

    def fake(self, t: torch.Tensor, dtype: torch.dtype | None = None, where: str = "host") -> torch.Tensor:
        """A fake tensor shaped like ``t`` (in ``dtype``), counted on ``where``."""
        with self.fake_mode:
            out = torch.empty(t.shape, dtype=dtype or t.dtype, device="cpu")
        self.tracker.retag(out, where)
        return out

    def checkpoint(self, model: torch.nn.Module, dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
        """What :func:`~loraedit_nb.backbones.weights.safetensors_tensors` yields for ``model``'s checkpoint, one
        fake host tensor at a time (floating tensors stored in ``dtype``, as the Hub's bf16 shards)."""
        for name, t in model.state_dict(keep_vars=True).items():
            yield name, self.fake(t, dtype if t.is_floating_point() else None)

    def load(self, module: torch.nn.Module, dtype: torch.dtype, *, fp8: bool) -> torch.nn.Module:
        """A meta-built module (dtypes from :func:`_meta`) as the package's loader leaves it: materialised whole as
        ``from_pretrained`` does, or with ``fp8`` filled tensor by tensor into fp8 storage by the loader's own
        :func:`~loraedit_nb.backbones.weights.fill` (so its host peak is that code's)."""
        if not fp8:
            return self.materialise(module)
        from .backbones.weights import fill

        return fill(module, self.checkpoint(module, dtype), via=dtype, materialise=self.fake)

    def materialise(self, module: torch.nn.Module, where: str = "host") -> torch.nn.Module:
        """A meta-built module's parameters and buffers as fake CPU tensors, counted on ``where`` (weights as
        ``from_pretrained`` leaves them: on the host)."""
        with self.fake_mode:  # made where they belong (Placement reads the device): never counted elsewhere first
            module = module.to_empty(device="cuda" if where == "gpu" else "cpu")
        for t in (*module.parameters(), *module.buffers()):
            self.tracker.retag(t, where)
        return module


def _import_before_cuda_appears() -> None:
    """Import what the run uses while ``torch.cuda.is_available()`` is still False: libraries that pick a CUDA
    backend at import (bitsandbytes) would reach for CUDA calls the CPU wheel does not have."""
    import importlib

    for mod in ("bitsandbytes", "bitsandbytes.optim", "accelerate", "peft", "diffusers", "transformers",
                "loraedit_nb.backbones", "loraedit_nb.planner", "loraedit_nb.training", "loraedit_nb.inference",
                "loraedit_nb.regimes", "diffusers.hooks.layerwise_casting", "torch.utils.checkpoint"):
        try:
            importlib.import_module(mod)
        except ImportError:  # bitsandbytes is optional: the 16/24GB presets need it
            pass
    from diffusers import AutoencoderKLHunyuanVideo, AutoencoderKLWan, UniPCMultistepScheduler  # noqa: F401
    from transformers import CLIPVisionModel, UMT5EncoderModel  # noqa: F401


@contextlib.contextmanager
def simulated_gpu(card_gb: float = 80.0) -> Iterator[SimulatedGPU]:
    """Run the package's code against a simulated CUDA card of ``card_gb`` GB (see the module docstring)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    _import_before_cuda_appears()
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    tr = Tracker()
    tr.fake_mode = fake_mode
    sim = SimulatedGPU(tr, fake_mode, card_gb)
    with _patched(_cuda_patches(tr, int(card_gb * GB))), _fresh_accelerate(), tr, Placement(tr, fake_mode):
        yield sim


@contextlib.contextmanager
def _fresh_accelerate() -> Iterator[None]:
    """accelerate's process state is a singleton that read the device once: made afresh inside (it sees the
    simulated GPU) and again after (it sees the machine)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    try:
        yield
    finally:
        AcceleratorState._reset_state(True)


# ----------------------------------------------------------------------------------------------- full-size runs
def _meta(name: str, dtype: torch.dtype, fp8: bool = False) -> torch.nn.Module:
    """A shipped component config (``configs/``) built on ``meta`` with the dtypes the loader gives it
    (:func:`~loraedit_nb.backbones.weights.as_loaded`: ``from_pretrained(torch_dtype=dtype)``'s, + fp8 storage)."""
    from .backbones.weights import as_loaded
    from .planner import _meta_model, load_config

    spec = load_config(name)
    return as_loaded(_meta_model(spec), dtype, fp8=fp8, library=spec["_library"])


def build_backbone(sim: SimulatedGPU, name: str, *, layers: int | None = None, memory_preset: str | None = None):
    """A full-size backbone (Wan2.1-I2V-14B, Wan2.2-I2V-A14B, Wan2.2-TI2V-5B) as the package's Hub loader leaves
    it for ``memory_preset`` (``load_backbone(..., memory_preset=)``, :func:`~loraedit_nb.backbones.weights.
    load_options`): every weight on the host in its load dtype (bf16 transformer and text encoder, fp32 VAE and
    CLIP), or on 16/24GB the transformer read tensor by tensor into fp8 and no text encoder (streamed onto the GPU
    for new prompts), the execution device ``cuda``. ``layers``: fewer transformer blocks (quick checks)."""
    from diffusers import UniPCMultistepScheduler

    from .backbones.base import Backbone, _word_tokenizer, clip_image_processor_class, place
    from .backbones.wan import WAN22_A14B_DEFAULTS, WAN22_TI2V_DEFAULTS, WAN_DEFAULTS
    from .backbones.weights import load_options
    from .memory import get_preset
    from .planner import resolve

    fam, _ = resolve(name)
    opts = load_options(get_preset(memory_preset) if memory_preset else None, torch.bfloat16)
    if fam.name == "hunyuan":
        return _build_hunyuan(sim, name, fam, layers, opts)

    def transformer():
        tr = _meta(fam.transformer, torch.bfloat16, opts.fp8)
        if layers is not None:
            tr.blocks = tr.blocks[:layers]
        return sim.load(tr, torch.bfloat16, fp8=opts.fp8)

    def text_encoder(device=None):  # the loader's contract: on the host, or read straight onto a GPU ``device``
        where = "gpu" if device is not None and torch.device(device).type == "cuda" else "host"
        return sim.materialise(_meta(fam.text_encoder, torch.bfloat16), where)

    t1 = transformer()
    t2 = transformer() if fam.experts == 2 else None
    vae = sim.materialise(_meta(fam.vae, torch.float32))
    z = vae.config.z_dim
    if len(vae.config.latents_mean) != z:  # the shipped Wan2.2 config leaves the 48 statistics out: their values
        vae.register_to_config(latents_mean=[0.0] * z, latents_std=[1.0] * z)  # move no memory
    enc = proc = None
    if fam.image_encoder:
        enc = sim.materialise(_meta(fam.image_encoder, torch.float32))
        proc = clip_image_processor_class()()
    defaults = {"wan": WAN_DEFAULTS, "wan22-a14b": WAN22_A14B_DEFAULTS, "wan22-ti2v": WAN22_TI2V_DEFAULTS}[fam.name]
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0,
                                    num_train_timesteps=1000)
    tok = _word_tokenizer("a the red disc square moves left right".split())
    bb = Backbone(name, t1, vae, sched, tok, None if opts.stream_text_encoder else text_encoder(), enc, proc,
                  max_sequence_length=512, defaults=dict(defaults), transformer_2=t2,
                  boundary_ratio=0.9 if t2 is not None else None, text_encoder_loader=text_encoder,
                  text_encoder_streamed=opts.stream_text_encoder)
    return place(bb, "cuda")


def _build_hunyuan(sim: SimulatedGPU, name: str, fam, layers: int | None, opts):
    """HunyuanVideo-I2V as its Hub loader leaves it: bf16 transformer, Llava and CLIP text encoders, fp32 VAE, on
    the host. The tokenizers are word-level stand-ins with Llama-3's special tokens and the real prompt template
    (103 template tokens before the prompt, 576 image tokens), so every sequence has its real length."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE

    from .backbones.base import Backbone, _word_tokenizer, clip_image_processor_class, place
    from .backbones.hunyuan import HUNYUAN_DEFAULTS, SPECIAL_TOKENS, prompt_template_for

    template = DEFAULT_PROMPT_TEMPLATE["template"]
    words = sorted({w for w in template.replace("{}", " ").replace("<image>", " ").split()} |
                   set("a the red disc square moves left right".split()))
    tok = _word_tokenizer(words, special=SPECIAL_TOKENS, eos=False)
    tok_2 = _word_tokenizer(words)
    tr = _meta(fam.transformer, torch.bfloat16, opts.fp8)
    if layers is not None:
        tr.transformer_blocks = tr.transformer_blocks[:layers]
        tr.single_transformer_blocks = tr.single_transformer_blocks[:layers]
    llava = _meta(fam.text_encoder, torch.bfloat16)
    llava.config.image_token_index = tok.convert_tokens_to_ids("<image>")
    llava.config.image_token_id = llava.config.image_token_index
    llava.config.pad_token_id = tok.pad_token_id  # the stand-in tokenizer's ids (the Hub config has its own)
    clip = _meta(fam.text_encoder_2, torch.bfloat16)
    vae = _meta(fam.vae, torch.float32)
    proc = clip_image_processor_class()(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    bb = Backbone(name, sim.load(tr, torch.bfloat16, fp8=opts.fp8), sim.materialise(vae),
                  FlowMatchEulerDiscreteScheduler(shift=7.0), tok,
                  sim.materialise(llava), None, proc, max_sequence_length=256, defaults=dict(HUNYUAN_DEFAULTS),
                  tokenizer_2=tok_2, text_encoder_2=sim.materialise(clip),
                  prompt_template=prompt_template_for(tok, template, 576))
    return place(bb, "cuda")


@dataclasses.dataclass
class Simulation:
    """Simulated peaks of one run: per stage (GB), the host RAM peak, blocks swapped, the block timeline."""

    backbone: str
    preset: str
    frames: int
    height: int
    width: int
    card_gb: float
    stages: dict[str, StagePeak]
    host_ram_gb: float
    train_blocks_to_swap: int
    edit_settings: dict
    timeline: list[tuple[str, float]]
    seconds: float
    work: dict = dataclasses.field(default_factory=dict)  # per stage: flops, transformer_flops, h2d/d2h bytes
    steps: int = 1
    edit_steps: int = 2

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["stages"] = {k: v.to_json() for k, v in self.stages.items()}
        d["timeline"] = [(e, round(g, 3)) for e, g in self.timeline]
        return d

    @classmethod
    def from_json(cls, d: dict) -> Simulation:
        """A recorded run back (``results/simulated_memory.json`` rows drop the timeline)."""
        d = {**d, "stages": {k: StagePeak(**v) for k, v in d["stages"].items()},
             "timeline": [tuple(x) for x in d.get("timeline", [])]}
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def _swapped(memory: dict) -> int:
    """Blocks a training run swapped (a two-expert run: the most either expert swapped)."""
    if "blocks_to_swap" in memory:
        return int(memory["blocks_to_swap"])
    return max((int(m.get("blocks_to_swap", 0)) for m in memory.values() if isinstance(m, dict)), default=0)


def _step_stage(tr: Tracker):
    """``training._optimizer_step`` run inside a ``training_step`` stage: its work (FLOPs, copies) is one step's,
    apart from the placement before the first step."""
    from . import training

    real = training._optimizer_step

    def step(s, batch):
        with tr.stage("training_step"):
            return real(s, batch)
    return step


def _transformer_scope(sim: SimulatedGPU, transformers) -> list:
    """Hooks that flag the tracker while a transformer's forward runs (its FLOPs are also counted apart)."""
    def pre(*_a):
        sim.tracker.in_transformer += 1

    def post(*_a):
        sim.tracker.in_transformer -= 1
    return [h for t in transformers if t is not None
            for h in (t.register_forward_pre_hook(pre), t.register_forward_hook(post))]


def _block_marks(sim: SimulatedGPU, transformer) -> list:
    """Forward pre-hooks that mark the GPU total as each block starts (forward and the backward recompute)."""
    from .memory import transformer_blocks

    handles = []
    for i, b in enumerate(transformer_blocks(transformer)):
        def pre(_m, _a, i=i):
            phase = "backward" if torch._C._current_graph_task_id() != -1 else "forward"
            sim.tracker.mark(f"{phase} block {i}")
        handles.append(b.register_forward_pre_hook(pre))
    return handles


def simulate(backbone: str, memory_preset: str, frames: int = 49, height: int = 480, width: int = 832, *,
             steps: int = 1, edit_steps: int = 2, layers: int | None = None, card_gb: float | None = None,
             leak_gb: float | None = None, edit: bool = True, progress: bool = False) -> Simulation:
    """Run ``cache_samples``, ``steps`` of ``train_lora`` and ``edit_video`` (``edit_steps`` denoising steps, then
    the VAE decode) of the package at full size on a simulated GPU of the preset's tier, and return each stage's
    peaks (``load``, ``caching``, ``training``, ``editing``).

    ``leak_gb``: then train again (stage ``training_again``, as notebook 03 does after 02) with a tensor of that
    many GB left on the GPU before it, a planted leak the check must see; 0 = a plain second run, whose peak must
    equal the first's. ``edit=False``: stop after training."""
    import numpy as np

    from . import training
    from .inference import edit_video
    from .memory import get_preset
    from .regimes import motion_sample
    from .training import cache_samples, train_lora, wan_config

    tier = get_preset(memory_preset).gpu_gb if memory_preset != "auto" else None
    card = card_gb or (tier or 80.0) * 2**30 / GB  # a "24 GB" card has 24 GiB
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    video = rng.random((frames, height, width, 3), dtype=np.float32)
    mask = np.zeros((frames, height, width), bool)
    mask[:, height // 4: height // 2, width // 4: width // 2] = True
    with simulated_gpu(card) as sim:
        tr = sim.tracker
        with tr.stage("load"):
            bb = build_backbone(sim, backbone, layers=layers, memory_preset=memory_preset)
        cfg = wan_config(memory_preset=memory_preset, steps=steps, log_every=1)
        leak: list[torch.Tensor] = []
        with tr.stage("caching"):
            cached = cache_samples(bb, [motion_sample(video, mask, "a red disc moves right")], cfg, progress=progress)
        handles = _block_marks(sim, bb.transformer)
        with tr.stage("training"), _patched([(training, "_optimizer_step", _step_stage(tr))]):
            run = train_lora(bb, cached, cfg, progress=progress)
        for h in handles:
            h.remove()
        if leak_gb is not None:
            leak.append(torch.empty(int(leak_gb * GB), dtype=torch.uint8, device="cuda"))
            with tr.stage("training_again"):
                run = train_lora(bb, cached, cfg, progress=progress)
            leak.clear()
        res = None
        if edit:
            handles = _transformer_scope(sim, (bb.transformer, bb.transformer_2))
            with tr.stage("editing"):
                res = edit_video(bb, run, video, mask, video[0], steps=edit_steps, seed=0,
                                 memory_preset=memory_preset, progress=progress)
            for h in handles:
                h.remove()
        settings = res.settings if res is not None else {}
        out = Simulation(backbone, memory_preset, frames, height, width, card, dict(tr.stages),
                         tr.host_ram_peak / GB, _swapped(run.memory),
                         {k: v for k, v in settings.items() if k in ("memory_preset", "edit_offload", "fp8",
                                                                        "blocks_to_swap", "vae_tiling", "evict_for")},
                         list(tr.timeline), time.perf_counter() - t0, work=dict(tr.work), steps=steps,
                         edit_steps=edit_steps)
    return out


# ----------------------------------------------------------------------------------------------- vs the planner
def with_margin(gb: float) -> float:
    """A simulated peak plus what the simulation cannot see, by the planner's rule (``planner.MARGIN_FIXED_GB`` +
    ``MARGIN_FRACTION`` of the tensors): the CUDA context, fragmentation, workspaces."""
    from .planner import MARGIN_FIXED_GB, MARGIN_FRACTION

    return gb + MARGIN_FIXED_GB + MARGIN_FRACTION * gb


def compare(sim: Simulation) -> dict:
    """Each stage's simulated GPU peak beside the planner's prediction for the same run and the tier.

    ``planner_tensors`` = the planner's peak without its margin (what the simulation counts too); ``fits`` = the
    simulated peak :func:`with_margin` within the tier's usable share (:data:`planner.USABLE_FRACTION`);
    ``error`` = planner_tensors / simulated - 1."""
    from .planner import USABLE_FRACTION, plan

    # the edit's storage as the run found it (after a 48GB training run in the same process: fp8 already)
    pl = plan(sim.backbone, sim.frames, sim.height, sim.width, sim.preset, edit_fp8=sim.edit_settings.get("fp8"))
    usable = pl.tier_gb * USABLE_FRACTION
    rows = {}
    for name, sp in sim.stages.items():
        p = pl.stages.get("training" if name == "training_again" else name)
        if p is None:
            continue
        tensors = p.peak_gpu_gb - p.parts.get("margin", 0.0)
        rows[name] = {"simulated_gb": round(sp.gpu, 2), "planner_tensors_gb": round(tensors, 2),
                      "planner_peak_gb": p.peak_gpu_gb, "usable_gb": round(usable, 2),
                      "with_margin_gb": round(with_margin(sp.gpu), 2), "fits": with_margin(sp.gpu) <= usable,
                      "error": round(tensors / sp.gpu - 1, 3) if sp.gpu else None}
    return {"stages": rows, "host_ram": {"simulated_gb": round(sim.host_ram_gb, 2),
                                         "planner_gb": pl.host_ram_gb,
                                         "planner_without_process_gb": round(pl.host_ram_gb -
                                                                             pl.host_parts.get("process", 0), 2)},
            "blocks_to_swap": {"training": sim.train_blocks_to_swap, "planner_training": pl.train_blocks_to_swap,
                               "editing": sim.edit_settings.get("blocks_to_swap"),
                               "planner_editing": pl.edit_blocks_to_swap},
            "planner_fits": pl.fits}


def table(sim: Simulation, cmp: dict) -> str:
    lines = [f"simulated: {sim.backbone} {sim.frames}x{sim.height}x{sim.width}, preset {sim.preset} on a "
             f"{sim.card_gb:.1f} GB card ({sim.seconds:.0f} s on this CPU)",
             f"  {'stage':<14} {'simulated':>9} {'+margin':>8} {'planner':>8} {'error':>7} {'usable':>7}  fits"]
    for name, r in cmp["stages"].items():
        err = f"{r['error']:+.0%}" if r["error"] is not None else "-"
        lines.append(f"  {name:<14} {r['simulated_gb']:9.2f} {r['with_margin_gb']:8.2f} "
                     f"{r['planner_tensors_gb']:8.2f} {err:>7} "
                     f"{r['usable_gb']:7.1f}  {'yes' if r['fits'] else 'NO'}")
    h = cmp["host_ram"]
    b = cmp["blocks_to_swap"]
    lines.append(f"  host RAM peak {h['simulated_gb']:.1f} GB (planner {h['planner_without_process_gb']:.1f} + "
                 f"process); blocks swapped: training {b['training']} (planner {b['planner_training']}), editing "
                 f"{b['editing']} (planner {b['planner_editing']})")
    return "\n".join(lines)


def add_parser(sub) -> None:
    """``python -m loraedit_nb simulate ...``: the package's code at full size on a simulated GPU."""
    from .memory import MEMORY_PRESETS

    p = sub.add_parser("simulate", help="run caching, training and an edit at full size on a simulated GPU "
                                        "(no weights, no GPU): peak memory per stage vs the planner")
    p.add_argument("--backbone", default="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
    p.add_argument("--memory-preset", default="24GB", choices=list(MEMORY_PRESETS))
    p.add_argument("--frames", type=int, default=49)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--steps", type=int, default=1, help="training steps")
    p.add_argument("--edit-steps", type=int, default=2, help="denoising steps of the edit")
    p.add_argument("--layers", type=int, default=None, help="fewer transformer blocks (a quick check)")
    p.add_argument("--leak-gb", type=float, default=None,
                   help="then train again with this many GB planted on the GPU (the check must catch it)")
    p.add_argument("--json", action="store_true", help="print the simulation and the comparison as JSON")
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(a) -> None:
    import json
    import sys

    with contextlib.redirect_stdout(sys.stderr if a.json else sys.stdout):  # --json: stdout holds the JSON only
        sim = simulate(a.backbone, a.memory_preset, a.frames, a.height, a.width, steps=a.steps,
                       edit_steps=a.edit_steps, layers=a.layers, leak_gb=a.leak_gb, progress=not a.json)
    cmp = compare(sim)
    if a.json:
        print(json.dumps({"simulation": sim.to_json(), "comparison": cmp, "work_per_step": work_per_step(sim),
                          "predicted_seconds": predicted_seconds(sim)}, indent=1))
    else:
        print(table(sim, cmp))
        w = work_per_step(sim)
        print(f"  work per training step: {w['training_step']['tflop']:.0f} TFLOP, "
              f"{w['training_step']['transfer_gb']:.1f} GB host<->GPU; per denoising step: "
              f"{w['denoising_step']['tflop']:.0f} TFLOP, {w['denoising_step']['transfer_gb']:.1f} GB")
        for card, t in predicted_seconds(sim).items():
            print(f"  predicted on {card}: {t['training_step']:.1f} s per training step, "
                  f"{t['denoising_step']:.1f} s per denoising step (at {UTILISATION:.0%} of dense bf16)")


# ----------------------------------------------------------------------------------------------- the recorded table
RECORDED = Path(__file__).resolve().parents[1] / "results" / "simulated_memory.json"  # scripts/simulate_table.py


def table_key(backbone: str, preset: str, frames: int, height: int, width: int) -> str:
    return f"{backbone}|{preset}|{frames}x{height}x{width}"


def recorded(backbone: str, preset: str, frames: int, height: int, width: int, path: Path = RECORDED) -> dict | None:
    """The simulated peak GB per stage of a full-size row in ``results/simulated_memory.json`` (None when that row
    was not simulated or failed): what ``scripts/gpu_check.py`` records beside the measured peaks."""
    import json

    if not path.exists():
        return None
    row = json.loads(path.read_text()).get(table_key(backbone, preset, frames, height, width))
    if not row or "simulation" not in row:
        return None
    sim = row["simulation"]
    return {"stages": {k: v["gpu"] for k, v in sim["stages"].items()}, "host_ram_gb": sim["host_ram_gb"],
            "train_blocks_to_swap": sim["train_blocks_to_swap"],
            "edit_blocks_to_swap": sim["edit_settings"].get("blocks_to_swap")}


# ----------------------------------------------------------------------------------------------- time
# name -> (dense bf16 TFLOP/s with fp32 accumulation, host<->GPU GB/s one way as measured on such links)
CARDS = {
    "RTX 4090": (165.2, 25.0),  # Ada whitepaper: 165.2 dense bf16 (fp32 accumulate); PCIe 4.0 x16
    "L4": (121.0, 25.0),  # NVIDIA L4 datasheet: 242 with sparsity; PCIe 4.0 x16
    "A100-40GB": (312.0, 25.0),  # A100 datasheet; host link PCIe 4.0 x16
    "H100 SXM": (989.0, 50.0),  # H100 datasheet: 1979 with sparsity; PCIe 5.0 x16
}
UTILISATION = 0.5  # share of the dense peak a 14B DiT step reaches (matmuls at this size ~60-70 %, attention less)
OFFICIAL_4090_S = 31.9  # the official code's training step on a 4090 at 49 frames (LoRA-Edit README)


def work_per_step(sim: Simulation) -> dict:
    """FLOPs and host<->GPU bytes of one training step and one denoising step, counted by the simulation."""
    tw = sim.work.get("training_step", {})
    ew = sim.work.get("editing", {})
    n, k = max(1, sim.steps), max(1, sim.edit_steps)
    return {"training_step": {"tflop": tw.get("flops", 0) / n / 1e12,
                              "transfer_gb": (tw.get("h2d_bytes", 0) + tw.get("d2h_bytes", 0)) / n / GB},
            "denoising_step": {"tflop": ew.get("transformer_flops", 0) / k / 1e12,
                               "transfer_gb": (ew.get("transformer_h2d_bytes", 0)
                                               + ew.get("transformer_d2h_bytes", 0)) / k / GB}}


def predicted_seconds(sim: Simulation, utilisation: float = UTILISATION) -> dict:
    """Seconds per training / denoising step on each of :data:`CARDS`: compute at ``utilisation`` of the dense
    bf16 peak, or the host<->GPU copies at the link's rate where they take longer (the swapper prefetches on a
    side stream, so copies overlap compute: the step takes the longer of the two)."""
    w = work_per_step(sim)
    out = {}
    for card, (tflops, link) in CARDS.items():
        out[card] = {}
        for kind, x in w.items():
            compute = x["tflop"] / (tflops * utilisation)
            copy = x["transfer_gb"] / link
            out[card][kind] = round(max(compute, copy), 2)
    return out


def recorded_table(path: Path = RECORDED) -> str:
    """docs/memory.md's simulated table, from ``results/simulated_memory.json``: per backbone, preset and clip the
    simulated GPU peak of each stage beside the planner's tensors (its peak without the margin), the blocks
    swapped, host RAM, and whether the simulated peak plus the planner's margin fits 92 % of the tier."""
    import json

    rows = json.loads(path.read_text()) if path.exists() else {}
    out = ["| backbone | preset | clip | caching sim / plan | training sim / plan (swapped) | "
           "editing sim / plan (swapped) | host RAM sim / plan | fits (sim + margin) |",
           "|---|---|---|---|---|---|---|---|"]
    for key in sorted(rows, key=lambda k: (k.split("|")[2], k.split("|")[0], k.split("|")[1])):
        backbone, preset, clip = key.split("|")
        row = rows[key]
        name = backbone.split("/")[-1].removesuffix("-Diffusers").removesuffix("-480P")
        if "comparison" not in row:
            out.append(f"| {name} | `{preset}` | {clip} | not simulated: {row.get('error', '?')[:80]} |||||")
            continue
        c, sim = row["comparison"], row["simulation"]
        st = c["stages"]

        def cell(stage, swapped=None, st=st):
            if stage not in st:
                return "-"
            s = f"{st[stage]['simulated_gb']:.1f} / {st[stage]['planner_tensors_gb']:.1f}"
            return s + (f" ({swapped})" if swapped is not None else "")
        fits = all(r["fits"] for k, r in st.items() if k != "training_again")
        h = c["host_ram"]
        out.append(f"| {name} | `{preset}` | {clip} | {cell('caching')} | "
                   f"{cell('training', sim['train_blocks_to_swap'])} | "
                   f"{cell('editing', sim['edit_settings'].get('blocks_to_swap'))} | "
                   f"{h['simulated_gb']:.1f} / {h['planner_without_process_gb']:.1f} | {'yes' if fits else 'NO'} |")
    return "\n".join(out)
