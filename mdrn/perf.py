"""Fast defaults per device, and the FLOP counter shared by the benchmark and its projections.

The defaults are what ``python -m mdrn.bench`` measured to pay on each device (see
experiments/results/bench/): on CPU, fp32, one intra-op thread per available core, for inference
channels_last weights (oneDNN's NHWC convolutions: +12-16% for MDRN) and ``torch.inference_mode``,
for training NHWC where the CPU has AVX-512 kernels (:func:`nhwc_training_pays`; NCHW elsewhere, where
NHWC forward + backward measured 7-8% slower) and fused Adam (3x faster optimizer step), glibc keeping
freed memory (:func:`malloc_reuse`: no page faults per activation map), no ``torch.compile`` (the 3x3
convolutions are the whole cost and each runs at the measured convolution limit's speed inside oneDNN,
``scripts/onednn_breakdown.py``; compiling costs tens of seconds to minutes); on CUDA, channels_last,
bf16 autocast (bf16-mixed for training) and ``module.compile()`` (in place, so ``state_dict`` keys
keep their names: no ``_orig_mod.`` prefix).
Training presets (:data:`TRAIN_PRESETS`, ``SRModule(train_preset=...)``, ``model.train_preset`` in the
configs): ``eager``; ``compiled`` (the residual body compiled by inductor: its elementwise work fused
into a few Triton kernels per block, NHWC, fused Adam); ``cudagraphs`` (the same body run as CUDA graphs,
``torch.compile`` mode ``reduce-overhead``: one launch per body pass instead of ~10 per block; CUDA only);
``auto`` = ``cudagraphs`` on one CUDA device, else ``eager``. Only the body is compiled: its input has
the same shape at every scale, so one compilation and one graph per batch shape serve x2, x3 and x4
(compiling the whole network compiles it once per scale); evaluation runs every module eagerly
(:func:`eager_calls`), so validation images of any size never reach the compiled code or its graphs.
bf16 autocast on CPU is 10-500x slower than fp32 without AMX and about 3x faster with it (a Xeon with AMX
bf16 tiles, :func:`amx_bf16_available`), but never a CPU default: bf16 keeps 8 significant bits, and the
project's results are fp32 (the bench row reports the largest output difference, in grey levels of 8-
and 16-bit images).

FLOPs are counted from the layer shapes: a convolution (or linear layer) costs 2 multiply-adds per
weight per output position; elementwise operations (ReLU, residual adds, mean shift, pixel shuffle) and
bias adds are not counted (< 0.2% for MDRN). A training step costs the forward, the weight gradients
(one more forward's worth for every layer with trainable weights) and the input gradients (one more for
every layer whose input requires a gradient, i.e. all but the first convolution).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "TRAIN_PRESETS",
    "FastPath",
    "FlopCount",
    "LayerFlops",
    "TrainPreset",
    "amx_bf16_available",
    "apply_train_preset",
    "available_cores",
    "configure_threads",
    "count_flops",
    "cudagraph_skips",
    "eager_calls",
    "fast_path",
    "inference_context",
    "malloc_reuse",
    "nhwc_training_pays",
    "prepare_for_inference",
    "prepare_for_training",
    "resolve_device",
    "resolve_train_preset",
    "set_malloc_reuse",
    "start_train_step",
    "training_defaults",
]


@dataclass(frozen=True)
class FastPath:
    """The settings of the fastest correct path on one device."""

    device: torch.device
    #: convert 4-D weights (and so every activation) to NHWC for inference
    channels_last: bool
    #: the same for training (forward + backward)
    train_channels_last: bool
    #: ``module.compile()`` the network (in place: state_dict keys unchanged)
    compile: bool
    #: autocast dtype for inference (``None``: fp32)
    autocast_dtype: torch.dtype | None
    #: Lightning ``precision`` for training
    precision: str
    #: intra-op threads to use (``None``: leave torch's setting)
    num_threads: int | None
    #: glibc: serve large blocks from the heap and keep freed memory while the network runs
    #: (:func:`malloc_reuse`): activation maps are re-used instead of page-faulted afresh each layer
    reuse_freed_memory: bool = False


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a ``torch.device``; ``None`` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def available_cores() -> int:
    """Number of CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def fast_path(device: str | torch.device | None = None) -> FastPath:
    """Return the fast defaults measured for ``device``'s type (CPU: NHWC fp32; CUDA: + bf16 + compile)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return FastPath(
            dev,
            channels_last=True,
            train_channels_last=True,
            compile=True,
            autocast_dtype=torch.bfloat16,
            precision="bf16-mixed",
            num_threads=None,
        )
    return FastPath(
        dev,
        channels_last=True,
        train_channels_last=nhwc_training_pays(),
        compile=False,
        autocast_dtype=None,
        precision="32-true",
        num_threads=available_cores(),
        reuse_freed_memory=_malloc_tunable(),
    )


def nhwc_training_pays() -> bool:
    """True where oneDNN's NHWC backward convolutions beat NCHW on this CPU: with AVX-512 kernels.

    Measured (``python -m mdrn.bench --only profile``, MDRN training step, batch 16 of 48x48): NHWC
    forward + backward faster on an AVX-512 Xeon; on an AVX2 machine (the earlier recorded runs, AMD EPYC)
    NHWC training was 7-8% slower than NCHW.
    """
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def amx_bf16_available(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """True where the CPU has AMX bf16 tile units (the Linux ``cpuinfo`` flag ``amx_bf16``; else False).

    With them oneDNN runs bf16 convolutions on the tiles: 2.96x the fp32 forward of MDRN B=80 on a
    2-core Xeon (``python -m mdrn.bench --only forward``, row ``bf16 autocast (AMX)``, recorded run
    vm-2026-11-30-12); without them bf16 autocast on CPU is 10-500x slower than fp32. Neither makes
    bf16 a CPU default (see the module).
    """
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines())


def configure_threads(path: FastPath) -> None:
    """Set torch's intra-op thread count to the path's (one per available core on CPU)."""
    if path.num_threads is not None and torch.get_num_threads() != path.num_threads:
        torch.set_num_threads(path.num_threads)


def _apply(net: nn.Module, path: FastPath, channels_last: bool) -> nn.Module:
    """Move ``net`` to the path's device, NHWC if ``channels_last``, compiled in place if chosen."""
    net = net.to(path.device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if path.compile:
        # in place: the module keeps its class and parameter names (torch.compile(net) would wrap
        # it as ``_orig_mod``); dynamic shapes because border tiles differ in size
        net.compile(dynamic=True)
    return net


def prepare_for_inference(
    net: nn.Module, device: str | torch.device | None = None, *, path: FastPath | None = None
) -> nn.Module:
    """Put ``net`` in eval mode on ``device`` with the device's fast defaults; returns the same module.

    Run it under :func:`inference_context`. NHWC weights are not contiguous in the default sense
    (``mdrn.weights.save_model`` writes them correctly).
    """
    path = path or fast_path(device)
    configure_threads(path)
    return _apply(net, path, path.channels_last).eval()


def prepare_for_training(
    net: nn.Module, device: str | torch.device | None = None, *, path: FastPath | None = None
) -> nn.Module:
    """Apply the device's fast defaults for training to ``net`` (NHWC + compile on CUDA); same module.

    On CPU with ``path.reuse_freed_memory`` the process keeps freed memory for reuse from now on
    (:func:`set_malloc_reuse`): every step allocates the same activations again.
    """
    path = path or fast_path(device)
    configure_threads(path)
    if path.reuse_freed_memory:
        set_malloc_reuse(True)
    return _apply(net, path, path.train_channels_last)


@dataclass(frozen=True)
class TrainPreset:
    """How a network runs for training: which part is compiled and how, its layout, the optimizer loop."""

    name: str
    #: ``torch.compile`` mode of the compiled part (the residual body); ``None``: nothing is compiled
    compile_mode: str | None
    #: NHWC weights and activations (on CPU only where :func:`nhwc_training_pays`)
    channels_last: bool
    #: ``torch.optim.Adam(..., fused=True)``
    fused_adam: bool
    #: the preset needs a CUDA device (it captures CUDA graphs)
    cuda_only: bool
    description: str

    @property
    def cuda_graphs(self) -> bool:
        """Whether the compiled part runs as CUDA graphs (each training step must be marked)."""
        return self.compile_mode == "reduce-overhead"


#: the training presets by name (``auto`` resolves to one of them: :func:`resolve_train_preset`)
TRAIN_PRESETS: dict[str, TrainPreset] = {
    p.name: p
    for p in (
        TrainPreset("eager", None, False, False, False, "eager, NCHW, Adam's default loop"),
        TrainPreset(
            "compiled",
            "default",
            True,
            True,
            False,
            "the residual body compiled by inductor (elementwise work fused), NHWC, fused Adam",
        ),
        TrainPreset(
            "cudagraphs",
            "reduce-overhead",
            True,
            True,
            True,
            "the residual body compiled by inductor and run as CUDA graphs (mode reduce-overhead; one "
            "compilation for every scale), NHWC, fused Adam; evaluation eager",
        ),
    )
}
#: the backend of the compiled presets (tests swap in a counting backend)
TRAIN_COMPILE_BACKEND: str | object = "inductor"


def resolve_train_preset(
    name: str, device: str | torch.device, world_size: int = 1, *, has_body: bool = True
) -> TrainPreset:
    """The preset ``name`` for a run on ``device`` with ``world_size`` processes.

    ``auto``: ``cudagraphs`` on one CUDA device for a network with a residual body (``has_body``: MDRN,
    EDSR; what the bench measures), else ``eager`` (data-parallel runs stay eager: DDP's gradient hooks
    and CUDA graphs are not combined here). A preset that needs CUDA raises ``ValueError`` on another
    device, naming the presets that run there.
    """
    dev = torch.device(device)
    if name == "auto":
        name = "cudagraphs" if dev.type == "cuda" and world_size == 1 and has_body else "eager"
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown train_preset {name!r}; known: {['auto', *TRAIN_PRESETS]}")
    preset = TRAIN_PRESETS[name]
    if preset.cuda_only and dev.type != "cuda":
        raise ValueError(
            f"train_preset={name!r} runs the network as CUDA graphs and needs a CUDA device; this run is on "
            f"{dev.type}: use train_preset=compiled (inductor without CUDA graphs), eager or auto"
        )
    return preset


def _compiled_part(net: nn.Module) -> nn.Module:
    """The part a preset compiles: the residual body (``net.body``) where the network has one, else all."""
    body = getattr(net, "body", None)
    return body if isinstance(body, nn.Module) else net


def apply_train_preset(
    net: nn.Module, preset: TrainPreset, device: str | torch.device, *, dynamic: bool | None = False
) -> nn.Module | None:
    """Lay ``net`` out and compile its part (in place: ``state_dict`` keys unchanged) as ``preset`` says.

    Returns the compiled module (``net.body``, or ``net`` without a body) or ``None``. ``dynamic``:
    ``torch.compile``'s (``False``: one compilation per input shape, as a training run has one).
    """
    dev = torch.device(device)
    if preset.cuda_only and dev.type != "cuda":
        raise ValueError(f"train_preset={preset.name!r} needs a CUDA device, got {dev.type}")
    if preset.channels_last and (dev.type == "cuda" or nhwc_training_pays()):
        net.to(memory_format=torch.channels_last)
    if preset.compile_mode is None:
        return None
    part = _compiled_part(net)
    mode = None if preset.compile_mode == "default" else preset.compile_mode
    part.compile(backend=TRAIN_COMPILE_BACKEND, mode=mode, dynamic=dynamic)
    return part


def start_train_step(preset: TrainPreset | None) -> None:
    """Mark the start of a training step for CUDA graphs (the last step's outputs may be overwritten)."""
    if preset is not None and preset.cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()


@contextlib.contextmanager
def eager_calls() -> Iterator[None]:
    """Run every compiled module eagerly inside the block (``torch.compiler.set_stance("force_eager")``).

    Evaluation images come in many sizes: each would compile the network anew and record CUDA graphs.
    """
    with torch.compiler.set_stance("force_eager"):
        yield


def cudagraph_skips() -> int:
    """How often inductor has fallen back from CUDA graphs in this process (its log says why)."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
#: what set_malloc_reuse(False) sets: mmap for blocks of 4 MiB and more, at a fixed threshold (glibc's
#: adaptive one climbs to 32 MB, and band after band of an enlarged image then fragments the heap:
#: measured 1.5 -> 2.0 GB over a 6000x6000 image, 1.5 GB flat with the fixed threshold), trimming beyond
#: 128 KB of free heap top (glibc's default)
_MMAP_THRESHOLD_OFF, _TRIM_THRESHOLD_OFF, _MMAP_MAX_OFF = 4 << 20, 128 << 10, 65536
_libc: ctypes.CDLL | None = None
_reuse = {"on": False, "depth": 0}


def _malloc_tunable() -> bool:
    """True if this process's allocator is glibc's (mallopt and malloc_trim available)."""
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
            return False
        try:
            _libc = ctypes.CDLL("libc.so.6")
        except OSError:
            return False
    return hasattr(_libc, "mallopt") and hasattr(_libc, "malloc_trim")


def set_malloc_reuse(on: bool) -> bool:
    """Switch glibc's reuse of freed memory on or off for the whole process; True if the allocator is glibc.

    On: every block comes from the heap (``M_MMAP_MAX`` 0) and freed memory stays there for the next
    allocation (``M_TRIM_THRESHOLD`` -1). By default blocks of 32 MB and more (and, until the dynamic
    threshold has grown, of 128 KB and more) are mmap-ed and unmapped on free, so each new activation
    map of a large tile or batch is page-faulted and zeroed afresh. Measured on a 2-core Xeon (recorded
    runs in experiments/results/bench/): MDRN B=80 x4 of a 1024x1024 image 77.5 s without, 53.0 s with
    (page faults 91 GB -> 1.6 GB; ``--only tiling_full``); a training step of B=16 (batch 16, 48x48)
    700 MB -> 0 MB of page faults (``--only profile``). Off: blocks of 4 MiB and more are mmap-ed again
    (a fixed threshold: the CLI and the app call this at start, so that enlarging band after band keeps
    a flat resident size) and the free heap top above 128 KB is returned to the system (``malloc_trim``).
    The resident size stays at its peak while on (what a training loop reaches every step anyway).
    """
    if not _malloc_tunable():
        return False
    assert _libc is not None
    if on:
        _libc.mallopt(_M_MMAP_MAX, 0)
        _libc.mallopt(_M_TRIM_THRESHOLD, -1)
    else:
        _libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_OFF)
        _libc.mallopt(_M_MMAP_MAX, _MMAP_MAX_OFF)
        _libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_OFF)
        _libc.malloc_trim(0)
    _reuse["on"] = on
    return True


@contextlib.contextmanager
def malloc_reuse(enabled: bool = True) -> Iterator[None]:
    """Keep freed memory for reuse while the block runs (:func:`set_malloc_reuse`), restored afterwards.

    Nested blocks share the outermost's setting; if reuse was already on (a training process), it stays.
    """
    if not enabled or _reuse["on"] and _reuse["depth"] == 0 or not _malloc_tunable():
        yield
        return
    if _reuse["depth"] == 0:
        set_malloc_reuse(True)
    _reuse["depth"] += 1
    try:
        yield
    finally:
        _reuse["depth"] -= 1
        if _reuse["depth"] == 0:
            set_malloc_reuse(False)


@contextlib.contextmanager
def inference_context(
    device: str | torch.device | None = None, *, path: FastPath | None = None
) -> Iterator[None]:
    """Context for fast inference: ``torch.inference_mode`` plus, on CUDA, bf16 autocast."""
    path = path or fast_path(device)
    with torch.inference_mode():
        if path.autocast_dtype is None:
            yield
        else:
            with torch.autocast(device_type=path.device.type, dtype=path.autocast_dtype):
                yield


def training_defaults(device: str | torch.device | None = None) -> dict[str, object]:
    """Return the training settings for ``device``: Lightning precision, channels_last, compile, threads."""
    path = fast_path(device)
    return {
        "precision": path.precision,
        "channels_last": path.train_channels_last,
        "fused_adam": True,
        "compile": path.compile,
        "num_threads": path.num_threads,
    }


@dataclass(frozen=True)
class LayerFlops:
    """FLOPs of one counted layer in one forward pass (and which gradients a training step needs)."""

    name: str
    kind: str
    #: output shape of the layer
    shape: tuple[int, ...]
    forward: int
    #: the layer has trainable weights: the backward computes their gradient (one forward's worth)
    weight_grad: bool
    #: the layer's input requires a gradient: the backward computes it (one forward's worth)
    input_grad: bool


@dataclass(frozen=True)
class FlopCount:
    """Counted FLOPs of one forward pass of a network on one input shape, per layer and in total."""

    input_shape: tuple[int, ...]
    scale: int
    layers: list[LayerFlops] = field(default_factory=list)

    @property
    def forward(self) -> int:
        """FLOPs of the forward pass."""
        return sum(layer.forward for layer in self.layers)

    @property
    def training(self) -> int:
        """FLOPs of forward + backward (weight and input gradients) for one step."""
        return sum(
            layer.forward * (1 + int(layer.weight_grad) + int(layer.input_grad)) for layer in self.layers
        )


def _layer_flops(module: nn.Module, out: torch.Tensor) -> int:
    """2 x multiply-adds of a convolution or linear layer producing ``out``."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        raise ValueError(f"count_flops: transposed convolutions are not supported ({module})")
    if isinstance(module, nn.modules.conv._ConvNd):
        per_out = module.in_channels // module.groups
        for k in module.kernel_size:
            per_out *= k
        return 2 * per_out * out.numel()
    return 2 * module.in_features * out.numel()  # nn.Linear


def count_flops(net: nn.Module, input_shape: Sequence[int], scale: int) -> FlopCount:
    """Count the FLOPs of ``net(x, scale)`` for ``x`` of ``input_shape`` (N, C, H, W), from layer shapes.

    The network runs with its parameters and buffers swapped for ``meta`` tensors (no memory, no
    arithmetic, no copy), so any shape can be counted; the parameters' ``requires_grad`` flags decide
    the training FLOPs. Count before ``module.compile()``.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"count_flops: input_shape must be (N, C, H, W) of positive ints, got {input_shape}")
    meta = {
        name: torch.empty(t.shape, dtype=t.dtype, device="meta").requires_grad_(t.requires_grad)
        for name, t in [*net.named_parameters(), *net.named_buffers()]
    }
    layers: list[LayerFlops] = []
    names = {m: n for n, m in net.named_modules()}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        prefix = names[module] + "." if names[module] else ""
        trainable = any(meta[prefix + n].requires_grad for n, _ in module.named_parameters(recurse=False))
        layers.append(
            LayerFlops(
                name=names[module],
                kind=type(module).__name__,
                shape=tuple(out.shape),
                forward=_layer_flops(module, out),
                weight_grad=trainable,
                input_grad=bool(inputs[0].requires_grad),
            )
        )

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        with torch.enable_grad():
            torch.func.functional_call(net, meta, (torch.empty(shape, device="meta"), scale))
    finally:
        for h in handles:
            h.remove()
    return FlopCount(input_shape=shape, scale=int(scale), layers=layers)
