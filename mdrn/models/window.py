"""Intensity windows: how an image's values are mapped to the range a network sees, and exactly back.

A 16-bit CT or MR often fills a few percent of its range (CT_small: 0.502..0.533 of 0..65535). A network
fed such values sees tiny contrasts; its own detail is then tiny too, and whatever small pattern its
upsampler adds (the same in every image) stands out. A :class:`WindowRule` fits an
:class:`IntensityWindow` to a whole image (or a whole series: one window for all its slices, so they stay
comparable): ``low`` and ``width`` from robust percentiles of the image's values. The network sees
``(x - low) / width`` and its output is mapped back with ``y * width + low``, exactly (an affine map; the
interpolation path of a network with the low/high-frequency split commutes with it, so only the detail the
network adds is scaled). Evaluation, quantization and saving stay in the image's own bit depth.

The rule a network was trained with is part of its spec (:func:`mdrn.models.model_spec` records
``input_window``; :func:`mdrn.models.build_model` restores it; :func:`rule_of` reads it, none for networks
without one). Training patches are mapped with the window of their whole LR image
(:class:`mdrn.data.datasets.TrainPatchDataset`), inference tiles and bands with the window of their
whole image (:func:`mdrn.models.inference.upscale`, :mod:`mdrn.clinical.enlarge`), so a tiled or banded
result equals the untiled one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["WINDOW_MODES", "IntensityWindow", "WindowRule", "rule_of", "set_rule"]

#: ``none``: values as they are; ``percentile``: the window between two percentiles of the image's values
WINDOW_MODES = ("none", "percentile")
#: at most this many values of an image (or series) enter the percentiles (a fixed stride beyond it)
MAX_SAMPLES = 1 << 22


@dataclass(frozen=True)
class IntensityWindow:
    """``low`` and ``width`` (on the image's [0, 1] scale), one per image of a batch (tensors (N,1,1,1),
    float64; cast to the image's dtype when applied)."""

    low: Tensor
    width: Tensor

    @staticmethod
    def identity(n: int = 1, device: torch.device | str | None = None) -> IntensityWindow:
        """The window that changes nothing (low 0, width 1)."""
        return IntensityWindow(torch.zeros(n, 1, 1, 1, device=device), torch.ones(n, 1, 1, 1, device=device))

    @staticmethod
    def of(low: float, width: float) -> IntensityWindow:
        """One image's window from two numbers."""
        if not (np.isfinite(low) and np.isfinite(width)) or width <= 0:
            raise ValueError(f"a window needs a finite low and a positive width, got {low!r}, {width!r}")
        f64 = torch.float64
        return IntensityWindow(
            torch.tensor(low, dtype=f64).view(1, 1, 1, 1), torch.tensor(width, dtype=f64).view(1, 1, 1, 1)
        )

    def _on(self, x: Tensor) -> tuple[Tensor, Tensor]:
        low, width = self.low.to(x.device, x.dtype), self.width.to(x.device, x.dtype)
        if low.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"a window for {low.shape[0]} images applied to a batch of {x.shape[0]}")
        return low, width

    def apply(self, x: Tensor) -> Tensor:
        """``(x - low) / width``: what the network sees (a new tensor)."""
        low, width = self._on(x)
        return (x - low) / width

    def invert_(self, y: Tensor) -> Tensor:
        """``y * width + low`` in place: the network's output back on the image's scale."""
        low, width = self._on(y)
        return y.mul_(width).add_(low)

    def is_identity(self) -> bool:
        """True if applying the window changes nothing."""
        return bool((self.low == 0).all() and (self.width == 1).all())

    def describe(self, bit_depth: int | None = None) -> str:
        """``low..high`` in grey levels of ``bit_depth`` (or on [0, 1]), e.g. ``32896..34918 of 65535``."""
        lo, hi = float(self.low.flatten()[0]), float((self.low + self.width).flatten()[0])
        if bit_depth is None:
            return f"{lo:.4f}..{hi:.4f}"
        peak = 2**bit_depth - 1
        return f"{lo * peak:.0f}..{hi * peak:.0f} of {peak}"


@dataclass(frozen=True)
class WindowRule:
    """How a window is fitted: ``mode`` (``WINDOW_MODES``), the percentiles, and the narrowest width.

    ``min_width`` (on [0, 1]) caps the stretch at ``1 / min_width`` (a flat image is not blown up to
    noise); a narrower window is widened about its centre.
    """

    mode: str = "none"
    low: float = 0.1
    high: float = 99.9
    min_width: float = 1.0 / 256.0

    def __post_init__(self) -> None:
        if self.mode not in WINDOW_MODES:
            raise ValueError(f"unknown input window mode {self.mode!r}; known: {list(WINDOW_MODES)}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(
                f"window percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}"
            )
        if not 0.0 < self.min_width <= 1.0:
            raise ValueError(f"min_width must be in (0, 1], got {self.min_width}")

    @staticmethod
    def parse(value: Any) -> WindowRule:
        """A rule from a rule, ``None``/``"none"``, a mode name, or a mapping (a spec's ``input_window``)."""
        if isinstance(value, WindowRule):
            return value
        if value is None:
            return WindowRule()
        if isinstance(value, str):
            return WindowRule(mode=value)
        if isinstance(value, Mapping):
            known = {"mode", "low", "high", "min_width"}
            extra = sorted(set(value) - known)
            if extra:
                raise ValueError(f"unknown input window keys {extra}; known: {sorted(known)}")
            return WindowRule(**{k: (str(v) if k == "mode" else float(v)) for k, v in value.items()})
        raise ValueError(f"an input window is a mode name or a mapping, got {value!r}")

    @property
    def active(self) -> bool:
        """False for ``mode="none"``."""
        return self.mode != "none"

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form recorded in a model spec."""
        return asdict(self)

    def _finish(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = hi - lo
        narrow = width < self.min_width
        centre = (lo + hi) / 2
        lo = np.where(narrow, centre - self.min_width / 2, lo)
        return lo, np.maximum(width, self.min_width)

    def _values(self, values: np.ndarray) -> tuple[float, float]:
        flat = values.reshape(-1)
        if flat.size > MAX_SAMPLES:
            flat = flat[:: -(-flat.size // MAX_SAMPLES)]
        flat = flat.astype(np.float64, copy=False)
        if not np.isfinite(flat).all():
            raise ValueError("an image with NaN or infinite values has no intensity window")
        lo, hi = np.percentile(flat, [self.low, self.high])
        return float(lo), float(hi)

    def fit(self, x: Tensor | np.ndarray, bit_depth: int | None = None) -> IntensityWindow:
        """The window of each image of ``x``: a tensor (N, C, H, W) or (C, H, W) in [0, 1], or an integer
        array (H, W[, C]) of ``bit_depth`` (one image). Identity for ``mode="none"``."""
        if isinstance(x, np.ndarray):
            return self.fit_many([x], bit_depth)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        n = x.shape[0]
        if not self.active:
            return IntensityWindow.identity(n)
        los, his = zip(*(self._values(x[i].detach().to("cpu", torch.float64).numpy()) for i in range(n)))
        lo, width = self._finish(np.array(los), np.array(his))
        return IntensityWindow(
            torch.from_numpy(lo).view(n, 1, 1, 1), torch.from_numpy(width).view(n, 1, 1, 1)
        )

    def fit_many(
        self, arrays: Iterable[np.ndarray], bit_depth: int | None, count: int | None = None
    ) -> IntensityWindow:
        """One window for several images together (the slices of a series), read one at a time: integer
        arrays of ``bit_depth`` bits (or floats in [0, 1] with ``bit_depth=None``). Each image gives an
        even sample of at most ``MAX_SAMPLES / count`` values (``count``: how many images there are)."""
        if not self.active:
            return IntensityWindow.identity(1)
        per = max(1 << 12, MAX_SAMPLES // max(1, int(count or 1)))
        parts = []
        for a in arrays:
            a = np.asarray(a)
            pixels = a.reshape(-1, a.shape[-1]) if a.ndim == 3 else a.reshape(-1, 1)
            # whole pixels, then channel after channel (as a (C, H, W) tensor): a stride over the interleaved
            # values of an RGB image that is a multiple of 3 would sample one colour alone
            sample = pixels[:: max(1, -(-a.size // per))].T.reshape(-1)
            parts.append(sample.astype(np.float64))
        if not parts:
            raise ValueError("no image to fit an intensity window to")
        values = np.concatenate(parts)
        if bit_depth is not None:
            values /= float(2**bit_depth - 1)
        lo, hi = self._values(values)
        lo_a, width = self._finish(np.array([lo]), np.array([hi]))
        return IntensityWindow.of(float(lo_a[0]), float(width[0]))


def rule_of(net: nn.Module) -> WindowRule:
    """The input window a network was trained with (``net.input_window``), none if it has none."""
    return WindowRule.parse(getattr(net, "input_window", None))


def set_rule(net: nn.Module, rule: Any) -> nn.Module:
    """Record the input window ``rule`` on ``net`` (``model_spec`` saves it); returns ``net``."""
    parsed = WindowRule.parse(rule)
    net.input_window = parsed if parsed.active else None
    return net
