"""Networks of other projects, read by spandrel (the loader behind chaiNNer and ComfyUI), as mdrn networks.

spandrel (optional: ``pip install 'mdrn[spandrel]'``, see the README) reads the published weight files of
some 40 architectures (SwinIR, HAT, DAT, SPAN, SAFMN, OmniSR, RCAN, Real-ESRGAN, ...) and returns an
``ImageModelDescriptor``. :func:`spandrel_network` makes one an mdrn network: an ``nn.Module`` with
``forward(x, scale)``, ``scales`` (the one scale read from the file), ``n_colors`` /
``accepted_colors``, so :func:`mdrn.models.inference.upscale` (tiles, the x8 ensemble, gray images
through the RGB planes), ``mdrn.evaluate weights=PATH``, ``mdrn-upscale --weights PATH`` and the app
run it as any of mdrn's own networks. ``mdrn.weights.load_model(path)`` returns one for every file that
mdrn's own readers do not know and spandrel does.

What the wrapped model computes is exactly spandrel's own call (``descriptor(image)``): the model's own
input range and channel order (spandrel models take RGB, or gray, in [0, 1] and scale internally, e.g.
SPAN and RCAN to 0..255); the image padded to the model's size requirements (a multiple of a window
size, a minimum side; reflect padding as spandrel pads) and the output cropped back, so any image size
works; the output clamped to [0, 1] (spandrel's contract; mdrn's own networks leave that to the
evaluation's quantization, which scores both alike). Inference only (spandrel's call runs under
``torch.inference_mode``). Each architecture gets its own subclass of :class:`SpandrelNet` named after
it (``type(net).__name__ == "SwinIR"``), so every place that names a network by its class names the
architecture.

Tiling: the default tile context (:func:`mdrn.models.inference.default_overlap`) sums the model's
convolutions' reach. Convolution-only models (SPAN, Real-ESRGAN, ...) are tiled seamlessly as mdrn's
own networks are; models with window attention or global pooling (SwinIR, HAT, OmniSR, SAFMN, RCAN's
channel attention) see only their tile, so a tiled result differs slightly from the untiled one (as in
chaiNNer and ComfyUI, which tile them too); ``tile=None`` runs the whole image at once.

spandrel imports torchvision at import time for two architectures (LaMa, RestoreFormer) and declares
it a dependency; mdrn never needs it. :func:`import_spandrel` imports spandrel with the real
torchvision where one imports, and otherwise with placeholder entries for the three torchvision module
names spandrel reads at import, removed from ``sys.modules`` right after (nothing else ever sees them);
a LaMa or RestoreFormer model then raises :class:`TorchvisionMissingError` when called.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mdrn.models.blocks import SRNet

__all__ = [
    "INSTALL_HINT",
    "ForeignModelError",
    "SpandrelNet",
    "SpandrelUnavailableError",
    "TorchvisionMissingError",
    "import_spandrel",
    "known_architectures",
    "read_spandrel",
    "spandrel_network",
]

#: How to install the optional spandrel support (the README's "spandrel" section says why --no-deps).
INSTALL_HINT = (
    "pip install 'mdrn[spandrel]' (or, beside a CPU-only torch: pip install --no-deps spandrel einops)"
)
#: The torchvision names spandrel 0.4.x imports at module level (LaMa, RestoreFormer), by module.
_TORCHVISION_NAMES: dict[str, tuple[str, ...]] = {
    "torchvision": (),
    "torchvision.transforms": (),
    "torchvision.transforms.functional": ("InterpolationMode", "normalize", "rotate"),
}


class SpandrelUnavailableError(ImportError):
    """spandrel (or einops, its dependency) is not installed or does not import (message: why, how to fix)."""


class TorchvisionMissingError(ImportError):
    """A spandrel architecture that needs torchvision (LaMa, RestoreFormer) was called without it."""


class ForeignModelError(ValueError):
    """spandrel knows no architecture of a state dict, or cannot run its model in mdrn (message: why)."""


class _Missing:
    """Stands for a torchvision name while spandrel imports: any use raises ``TorchvisionMissingError``."""

    def __init__(self, name: str, reason: str) -> None:
        self._name, self._reason = name, reason

    def _error(self) -> TorchvisionMissingError:
        return TorchvisionMissingError(
            f"torchvision.transforms.functional.{self._name} is needed by this spandrel architecture (LaMa, "
            f"RestoreFormer), and {self._reason}; install a torchvision built for your torch"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self._error()

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise self._error()


def _torchvision_problem() -> str | None:
    """None when torchvision imports (it is then imported), else why it does not."""
    if "torchvision.transforms.functional" in sys.modules:
        return None
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed"
    try:
        importlib.import_module("torchvision.transforms.functional")
    except Exception as exc:  # noqa: BLE001 - a torchvision built for another torch raises RuntimeError
        return f"torchvision does not import ({type(exc).__name__}: {exc})"
    return None


def import_spandrel() -> types.ModuleType:
    """Return the ``spandrel`` module, imported without torchvision where none imports (see the module)."""
    if sys.modules.get("spandrel") is not None:
        return sys.modules["spandrel"]
    try:
        found = importlib.util.find_spec("spandrel")
    except (ImportError, ValueError):  # blocked (sys.modules["spandrel"] = None) or a broken finder
        found = None
    if found is None:
        raise SpandrelUnavailableError(f"spandrel is not installed: {INSTALL_HINT}")
    problem = _torchvision_problem()
    saved = {name: sys.modules.get(name) for name in _TORCHVISION_NAMES} if problem else {}
    placed = {}
    for name, attrs in _TORCHVISION_NAMES.items() if problem else ():
        module = types.ModuleType(
            name, f"placeholder while spandrel imports ({problem}); never left in place"
        )
        for attr in attrs:
            setattr(module, attr, _Missing(attr, problem))
        sys.modules[name] = placed[name] = module
    try:
        return importlib.import_module("spandrel")
    except Exception as exc:  # noqa: BLE001 - a missing einops, a spandrel that does not import: one message
        raise SpandrelUnavailableError(
            f"spandrel does not import ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
        ) from exc
    finally:
        for name, module in placed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
            if saved.get(name) is not None:
                sys.modules[name] = saved[name]


def known_architectures() -> list[str]:
    """The names of the architectures spandrel's main registry reads (mdrn's own among them once
    ``mdrn.spandrel`` is imported)."""
    spandrel = import_spandrel()
    return sorted(str(a.architecture.id) for a in spandrel.MAIN_REGISTRY.architectures())


class SpandrelNet(nn.Module):
    """A spandrel ``ImageModelDescriptor`` as an mdrn network: ``forward(x, scale)`` is spandrel's call."""

    scales: tuple[int, ...]
    n_colors: int
    accepted_colors: tuple[int, ...]

    def __init__(self, descriptor: Any, source: str = "") -> None:
        super().__init__()
        _check_descriptor(descriptor, source)
        #: the spandrel model (a registered submodule, so ``.to()``/``.eval()`` move the descriptor's too)
        self.model = descriptor.model
        self.descriptor = descriptor
        self.scales = (int(descriptor.scale),)
        self.n_colors = int(descriptor.input_channels)
        self.accepted_colors = (self.n_colors,)
        #: spandrel's architecture name and tags (e.g. "SwinIR", ["medium", "s64w8", ...])
        self.architecture = str(descriptor.architecture.name)
        self.tags = list(descriptor.tags)
        self.source = source

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Super-resolve ``x`` (N, C, H, W) in [0, 1] by ``scale``: spandrel's call (padded, cropped,
        clamped to [0, 1]), in ``x``'s dtype."""
        name = type(self).__name__
        if scale not in self.scales:
            raise ValueError(f"{name} has no x{scale} branch: it serves scales {list(self.scales)}")
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} expects a float tensor (N, C, H, W) in [0, 1], got {shape}")
        if x.shape[1] not in self.accepted_colors:
            raise ValueError(
                f"{name} expects {self.n_colors} channels, got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        dtype = next(self.model.parameters()).dtype
        return self.descriptor(x.to(dtype, copy=True)).to(x.dtype)  # a copy: RCAN changes its input

    def extra_repr(self) -> str:
        """Architecture, scale, colours and the file it came from."""
        return (
            f"spandrel {self.architecture} x{self.scales[0]}, {self.n_colors} colours, {self.source or '-'}"
        )


_PURPOSES = {"Restoration": "restoration (x1)", "FaceSR": "face restoration", "Inpainting": "inpainting"}


def _check_descriptor(descriptor: Any, source: str) -> None:
    """``ForeignModelError`` unless ``descriptor`` is a model mdrn can run (SR, x2+, 1 or 3 colours)."""
    where = f"{source}: " if source else ""
    arch = descriptor.architecture.name
    purpose, scale = descriptor.purpose, int(descriptor.scale)
    if purpose != "SR" or scale < 2:
        raise ForeignModelError(
            f"{where}a spandrel {arch} model for {_PURPOSES.get(purpose, purpose)} at x{scale}; mdrn runs "
            "super-resolution models (x2 or more)"
        )
    c_in, c_out = descriptor.input_channels, descriptor.output_channels
    if c_in != c_out or c_in not in (1, 3):
        raise ForeignModelError(
            f"{where}a spandrel {arch} model with {c_in} input and {c_out} output channels; mdrn runs "
            "gray (1) or RGB (3) models with as many channels out as in"
        )


_CLASSES: dict[str, type[SpandrelNet]] = {}


def _class_for(architecture: str) -> type[SpandrelNet]:
    """The subclass of :class:`SpandrelNet` named after a spandrel architecture (one per name)."""
    name = re.sub(r"\W+", "", architecture) or "SpandrelModel"
    name = name if name[0].isalpha() else f"Spandrel{name}"
    if name not in _CLASSES:
        doc = f"spandrel's {architecture} as an mdrn network (see :class:`SpandrelNet`)."
        _CLASSES[name] = type(name, (SpandrelNet,), {"__doc__": doc, "__module__": __name__})
    return _CLASSES[name]


def spandrel_network(descriptor: Any, source: str = "") -> nn.Module:
    """The mdrn network of a spandrel descriptor: the mdrn network itself for one of mdrn's architectures
    (registered by ``mdrn.spandrel``), else a :class:`SpandrelNet`; in eval mode."""
    if isinstance(descriptor.model, SRNet):
        return descriptor.model.eval()
    arch = str(getattr(getattr(descriptor, "architecture", None), "name", "SpandrelModel"))
    return _class_for(arch)(descriptor, source).eval()


def read_spandrel(state: Mapping[str, Any], source: str = "") -> nn.Module:
    """The network spandrel detects in a state dict (read by the caller, e.g. ``torch.load(...,
    weights_only=True)``), as :func:`spandrel_network` gives it.

    ``SpandrelUnavailableError`` without spandrel; ``ForeignModelError`` (one line, naming ``source``)
    when spandrel knows no architecture of it, cannot load it, or it is no super-resolution model.
    """
    spandrel = import_spandrel()
    where = f"{source}: " if source else ""
    state = dict(spandrel.canonicalize_state_dict(dict(state)))  # loading pops keys: the caller's stay
    # spandrel's ArchRegistry.load, step by step, so that a failure names the architecture detected
    for support in spandrel.MAIN_REGISTRY.architectures("detection"):
        if not support.detect(state):
            continue
        try:
            with warnings.catch_warnings():  # harmless notice from inside spandrel's SwinIR/HAT/... code
                warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
                descriptor = support.architecture.load(state)
        except Exception as exc:  # noqa: BLE001 - a false detection fails anywhere inside the architecture
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise ForeignModelError(
                f"{where}spandrel took it for {support.architecture.name} but could not load it ({text})"
            ) from exc
        return spandrel_network(descriptor, source)
    raise ForeignModelError(
        f"{where}spandrel {spandrel.__version__} knows no architecture of it (it reads "
        f"{', '.join(known_architectures())})"
    )
