"""Where the clinician tools run the network: the backend (PyTorch or ONNX Runtime) and the precision.

:func:`prepare_network` turns a loaded network into what :func:`mdrn.models.inference.upscale` runs, once
per process (the command line prepares it once for all its inputs, the app once per model and scale):

- ``torch``: the device's fast path (:func:`mdrn.perf.prepare_for_inference`: NHWC weights, one thread
  per core);
- ``onnxruntime`` (CPU): the network's stages exported to ONNX (:mod:`mdrn.export`) and run by ONNX
  Runtime. A network with ``features``/``reconstruct`` (MDRN, EDSR) is exported as those two graphs, so
  ``upscale`` tiles it exactly as the PyTorch network (the same tiles, the same context), and the
  low-frequency (bicubic) image is still PyTorch's; other networks as one graph of ``forward``. The files
  are cached (``$MDRN_CACHE/onnx``, named by a hash of the weights and the torch version): the first use
  of a model at a scale exports it (seconds to a minute), later runs load it. Outputs agree with PyTorch's
  within :data:`ONNX_TOLERANCE` on [0, 1] (float rounding of another convolution code);
- ``auto`` (the default): ``onnxruntime`` on CPUs where it was measured faster (without AVX-512 kernels,
  :func:`onnxruntime_pays`), installed, and the network exports (cached, or exported for a job large enough
  to repay it, :data:`AUTO_EXPORT_PIXELS`); else ``torch``. A failed export says why in one line and runs
  on PyTorch.

Precision ``bf16`` (opt-in) runs the network's convolutions under bf16 autocast, on a GPU or a CPU with AMX
bf16 tiles (:func:`mdrn.perf.amx_bf16_available`; without them bf16 runs 10-500x slower, so it is refused);
the low-frequency image and everything outside the network stay fp32 (Y-channel networks, VDSR and
SRCNN: their bicubic image, colour conversions and residual add too, :class:`mdrn.models.blocks.YChannelNet`).
Its cost on the medical test sets is printed by ``python scripts/check_bf16.py``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mdrn.models.inference import supports_two_stage
from mdrn.perf import amx_bf16_available, available_cores, prepare_for_inference, resolve_device

__all__ = [
    "AUTO_EXPORT_PIXELS",
    "BACKENDS",
    "ONNX_TOLERANCE",
    "PRECISIONS",
    "OnnxNetwork",
    "onnxruntime_available",
    "onnxruntime_pays",
    "precision_problem",
    "prepare_network",
]

#: Backends a user can name (``auto``: ONNX Runtime on CPU where installed, else PyTorch).
BACKENDS = ("auto", "torch", "onnxruntime")
#: Precisions a user can name (``fp32`` the default; ``bf16`` on a GPU or an AMX CPU, opt-in).
PRECISIONS = ("fp32", "bf16")
#: Largest |ONNX Runtime - PyTorch| accepted on [0, 1] (measured: ~1e-6 for the shipped model, x2 and x4):
#: below a 16-bit image's half grey level (7.6e-6), so a pixel moves by at most one grey level.
ONNX_TOLERANCE = 1e-5
#: Input pixels from which ``auto`` exports a model not yet exported (about 20 CT slices of 512x512): the
#: export takes 10-40 s once per model and scale; smaller jobs run on PyTorch until it is cached.
AUTO_EXPORT_PIXELS = 5_000_000
_OPSET = 18


def onnxruntime_available() -> bool:
    """True if ``onnxruntime`` and the exporter's ``onnxscript`` can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnxscript"))


def onnxruntime_pays(capability: str | None = None) -> bool:
    """True where ONNX Runtime ran the shipped model faster than PyTorch: CPUs without AVX-512 kernels.

    Measured: an AMD EPYC with AVX2 (issue 23: 0.67x / 0.72x PyTorch's time at x2 / x4, idle); a Xeon
    with AVX-512 and AMX (CPU seconds, ``python -m mdrn.bench --only clinical``, rows "the engine's
    network stage"): no faster at x2, slower at x4 (1.0x / 1.3x), so PyTorch stays there.
    """
    cap = capability if capability is not None else torch.backends.cpu.get_cpu_capability()
    return not cap.upper().startswith("AVX512")


def precision_problem(precision: str, device: str | torch.device | None) -> str | None:
    """Why ``precision`` cannot run on ``device`` (one line), or None."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})"
    dev = resolve_device(device)
    if precision == "bf16" and dev.type == "cpu" and not amx_bf16_available():
        return (
            "bf16 needs a GPU or a CPU with AMX bf16 tiles (Intel Xeon 4th generation or later); this CPU "
            "has none and would run 10-500x slower: use --precision fp32"
        )
    return None


class _Delegate(nn.Module):
    """A wrapper that answers for the wrapped network: scales, colours, widths, radius, low frequency."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "net" or "net" not in self._modules:
                raise
            return getattr(self._modules["net"], name)


class _Autocast(_Delegate):
    """The network's stages under autocast to ``dtype``; outputs float32, the low frequency fp32."""

    def __init__(self, net: nn.Module, dtype: torch.dtype, device_type: str) -> None:
        super().__init__(net)
        self.dtype, self.device_type = dtype, device_type

    def _cast(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(self.device_type, dtype=self.dtype)

    def forward(self, x: Tensor, scale: int) -> Tensor:
        """The network's output, its convolutions in ``dtype``, its bicubic image in fp32."""
        if supports_two_stage(self.net):
            y = self.reconstruct(self.features(x, scale), scale)
            low = self.low_frequency(x, scale) if callable(getattr(self.net, "low_frequency", None)) else None
            return y if low is None else low + y
        with self._cast():
            return self.net(x, scale).float()


class _AutocastTwoStage(_Autocast):
    def features(self, x: Tensor, scale: int) -> Tensor:
        """``net.features`` under autocast (float32 out)."""
        with self._cast():
            return self.net.features(x, scale).float()

    def reconstruct(self, features: Tensor, scale: int) -> Tensor:
        """``net.reconstruct`` under autocast (float32 out)."""
        with self._cast():
            return self.net.reconstruct(features, scale).float()


class _Stage(nn.Module):
    """One exported graph: ``forward``, ``features`` or ``reconstruct`` of a network at one scale."""

    def __init__(self, net: nn.Module, part: str, scale: int) -> None:
        super().__init__()
        self.net, self.part, self.scale = net, part, int(scale)

    def forward(self, x: Tensor) -> Tensor:
        """The stage at the fixed scale."""
        fn = self.net if self.part == "forward" else getattr(self.net, self.part)
        return fn(x, self.scale)


def _weights_key(net: nn.Module) -> str:
    """A hash of the network's class, spec, weights and the torch version (names the cached exports)."""
    h = hashlib.sha256()
    spec = getattr(net, "spec_args", None)
    h.update(f"{type(net).__module__}.{type(net).__qualname__}|{torch.__version__}|{_OPSET}".encode())
    h.update(json.dumps(spec, sort_keys=True, default=str).encode())
    for name, t in net.state_dict().items():
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines, warnings and log records (one line is printed instead)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class OnnxNetwork(_Delegate):
    """A network run by ONNX Runtime on CPU, stage by stage; the wrapped PyTorch network answers the rest.

    Sessions are made on first use of a scale from the cached export (exported then if missing, or again
    once if ONNX Runtime cannot load it).
    ``note(text)`` is told when an export starts (it takes seconds to a minute).
    """

    def __init__(
        self, net: nn.Module, *, cache: Path | None = None, threads: int | None = None, note: Any = None
    ) -> None:
        super().__init__(net)
        from mdrn.weights import cache_dir

        self.cache = Path(cache) if cache is not None else cache_dir() / "onnx"
        self.threads = int(threads or available_cores())
        self.key = _weights_key(net)
        self.note: Callable[[str], None] | None = note
        self._sessions: dict[tuple[str, int], Any] = {}
        self._cpu = copy.deepcopy(net).float().cpu().to(memory_format=torch.contiguous_format).eval()

    def path(self, part: str, scale: int) -> Path:
        """The cached ONNX file of one stage at one scale."""
        return self.cache / f"{self.key}-{part}-x{int(scale)}.onnx"

    def session(self, part: str, scale: int) -> Any:
        """The ONNX Runtime session of a stage (exported and cached on first use)."""
        key = (part, int(scale))
        if key not in self._sessions:
            path = self.path(part, scale)
            try:
                session = self._load(path) if path.is_file() else None
            except Exception:  # noqa: BLE001 - a cached file ONNX Runtime cannot load: exported again, once
                session = None
            if session is None:
                self._export(part, int(scale), path)
                session = self._load(path)
            self._sessions[key] = session
        return self._sessions[key]

    def _load(self, path: Path) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _export(self, part: str, scale: int, path: Path) -> None:
        from torch.export import Dim

        from mdrn.io.images import atomic_write

        if self.note is not None and part != "reconstruct":
            self.note(f"preparing the model for ONNX Runtime at x{scale} (once; kept in {self.cache})")
        channels = self.n_feats if part == "reconstruct" else int(getattr(self.net, "n_colors", 3))
        example = torch.rand(1, channels, 24, 24)
        dims = {0: Dim("batch"), 2: Dim("height", min=2), 3: Dim("width", min=2)}
        module = _Stage(self._cpu, part, scale).eval()

        def write(tmp: Path) -> None:
            with torch.no_grad(), quiet_exporter():
                torch.onnx.export(
                    module, (example,), str(tmp), input_names=["x"], output_names=["y"],
                    dynamic_shapes={"x": dims}, opset_version=_OPSET, dynamo=True, external_data=False,
                )  # fmt: skip

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write, overwrite=True)

    def _run(self, part: str, x: Tensor, scale: int) -> Tensor:
        check = getattr(self.net, "check_input", None)
        if part != "reconstruct" and callable(check):
            check(x, scale)  # the graph lost the network's checks: the same one-line error as PyTorch's
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session(part, scale).run(None, {"x": array})[0])

    def forward(self, x: Tensor, scale: int) -> Tensor:
        """The network's output (two-stage networks: features, reconstruct and their low frequency)."""
        if not supports_two_stage(self.net):
            return self._run("forward", x, scale)
        y = self.reconstruct(self.features(x, scale), scale)
        low = self.low_frequency(x, scale) if callable(getattr(self.net, "low_frequency", None)) else None
        return y if low is None else low + y


class _OnnxTwoStage(OnnxNetwork):
    def features(self, x: Tensor, scale: int) -> Tensor:
        """``net.features`` by ONNX Runtime."""
        return self._run("features", x, scale)

    def reconstruct(self, features: Tensor, scale: int) -> Tensor:
        """``net.reconstruct`` by ONNX Runtime."""
        return self._run("reconstruct", features, scale)


def _onnx_network(onnx: OnnxNetwork, scales: tuple[int, ...]) -> nn.Module:
    """``onnx`` with its sessions for ``scales`` (exported now if not cached), checked against PyTorch."""
    x = torch.rand(1, int(getattr(onnx, "n_colors", 3)), 20, 27, generator=torch.Generator().manual_seed(0))
    for scale in scales:
        with torch.inference_mode():
            diff = float((onnx(x, scale) - onnx._cpu(x, scale)).abs().max())
        if not diff <= ONNX_TOLERANCE:
            raise RuntimeError(f"ONNX Runtime differs from PyTorch by {diff:.1e} at x{scale}")
    return onnx


def prepare_network(
    net: nn.Module,
    device: str | torch.device | None = None,
    *,
    backend: str = "auto",
    precision: str = "fp32",
    scales: tuple[int, ...] | None = None,
    job_pixels: int | None = None,
    note: Callable[[str], None] | None = None,
    allow_slow: bool = False,
) -> tuple[nn.Module, str]:
    """``net`` ready for :func:`mdrn.models.inference.upscale` on ``device``, and what runs it, in words.

    ``scales``: the scales to prepare now (ONNX Runtime: exported and checked now; default all of the
    network's). ``auto`` uses ONNX Runtime where its export is cached, or exports it for a job of at
    least :data:`AUTO_EXPORT_PIXELS` input pixels (``job_pixels``), which repays the one-time export.
    ``note(text)`` receives a line when something slow starts or the backend falls back to PyTorch.
    Raises ``ValueError`` for an unknown backend or precision, or one that cannot run on ``device``
    (``allow_slow``: bf16 on a CPU without AMX too, for checks).
    """
    dev = resolve_device(device)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    problem = precision_problem(precision, dev)
    if problem and not (allow_slow and precision in PRECISIONS):
        raise ValueError(problem)
    if backend == "onnxruntime" and (dev.type != "cpu" or precision != "fp32"):
        raise ValueError("the onnxruntime backend runs fp32 on CPU (use --backend torch for GPUs and bf16)")
    if backend == "onnxruntime" and not onnxruntime_available():
        raise ValueError(
            "the onnxruntime backend needs onnxruntime and onnxscript: pip install 'mdrn[clinician]'"
        )
    has_params = any(True for _ in net.parameters())
    use_onnx = has_params and dev.type == "cpu" and precision == "fp32"
    auto = backend == "auto" and onnxruntime_available() and onnxruntime_pays()
    use_onnx = use_onnx and (backend == "onnxruntime" or auto)
    net = prepare_for_inference(net, dev)  # threads; NHWC weights for what PyTorch still runs
    if use_onnx:
        wanted = tuple(scales or getattr(net, "scales", ()) or ())
        onnx = (_OnnxTwoStage if supports_two_stage(net) else OnnxNetwork)(net, note=note)
        parts = ("features", "reconstruct") if supports_two_stage(net) else ("forward",)
        cached = all(onnx.path(p, s).is_file() for p in parts for s in wanted)
        use_onnx = backend == "onnxruntime" or cached or (job_pixels or 0) >= AUTO_EXPORT_PIXELS
    if use_onnx:
        try:
            return _onnx_network(onnx, wanted), "ONNX Runtime (CPU, fp32)"
        except Exception as err:  # noqa: BLE001 - any export or runtime failure falls back to PyTorch
            if backend == "onnxruntime":
                raise ValueError(f"the network cannot run on ONNX Runtime: {_first_line(err)}") from None
            if note is not None:
                note(f"ONNX Runtime not used ({_first_line(err)}); running on PyTorch")
    if precision == "bf16":
        cls = _AutocastTwoStage if supports_two_stage(net) else _Autocast
        return cls(net, torch.bfloat16, dev.type), f"PyTorch ({dev.type}, bf16 autocast)"
    return net, f"PyTorch ({dev.type}, fp32)"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
