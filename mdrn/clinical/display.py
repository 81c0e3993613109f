"""Display of 8-16 bit medical images on an 8-bit screen: window/level and MONOCHROME1 inversion.

Everything here returns a new uint8 array for display; the stored pixel data is never altered.
The window comes from the DICOM ``WindowCenter``/``WindowWidth`` (in the units after the modality
LUT, i.e. ``RescaleSlope``/``RescaleIntercept``) when present, otherwise from percentiles of the
image; 8-bit images without a DICOM window are shown as they are. The mapping is the DICOM linear
VOI function (PS3.3 C.11.2.1.2). MONOCHROME1 images (0 = white) are inverted for display only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Window", "auto_window", "display_array", "display_image"]

#: Percentiles used for the window when the file gives none (12-16 bit images).
DEFAULT_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Window:
    """A display window: ``center`` and ``width`` in stored (after-rescale for DICOM) units."""

    center: float
    width: float


def _first(value: Any) -> float:
    """First number of a possibly multi-valued DICOM element."""
    try:
        return float(value[0])
    except (TypeError, IndexError, KeyError):
        return float(value)


def _rescale(dicom: Any) -> tuple[float, float]:
    """The DICOM modality rescale (slope, intercept); (1, 0) when absent."""
    if dicom is None:
        return 1.0, 0.0
    slope = getattr(dicom, "RescaleSlope", None)
    intercept = getattr(dicom, "RescaleIntercept", None)
    return (float(slope) if slope is not None else 1.0), (float(intercept) if intercept is not None else 0.0)


def _dicom_window(dicom: Any) -> Window | None:
    """The first window stored in a DICOM dataset, or None."""
    if dicom is None:
        return None
    center = getattr(dicom, "WindowCenter", None)
    width = getattr(dicom, "WindowWidth", None)
    if center is None or width is None:
        return None
    try:
        c, w = _first(center), _first(width)
    except (TypeError, ValueError):
        return None
    return Window(c, w) if w >= 1 else None


def auto_window(
    array: np.ndarray,
    *,
    bit_depth: int,
    dicom: Any = None,
    signed_offset: int = 0,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> Window:
    """The window for ``array``: the DICOM one if present, else percentiles (full range for 8-bit)."""
    win = _dicom_window(dicom)
    if win is not None:
        return win
    slope, intercept = _rescale(dicom)
    if bit_depth <= 8 and dicom is None:
        lo, hi = 0.0, 255.0
    else:
        lo, hi = (float(v) - signed_offset for v in np.percentile(array, percentiles))
        lo, hi = lo * slope + intercept, hi * slope + intercept
        if hi - lo < 1:
            hi = lo + 1
    # (c - 0.5) +- (w - 1) / 2 are the linear function's ends: choose c, w so they are lo and hi
    return Window(center=(lo + hi) / 2 + 0.5, width=hi - lo + 1)


def display_array(
    array: np.ndarray,
    *,
    bit_depth: int,
    dicom: Any = None,
    photometric: str | None = None,
    signed_offset: int = 0,
    window: Window | None = None,
) -> np.ndarray:
    """A uint8 copy of ``array`` (H, W[, C]) for display: windowed, MONOCHROME1 inverted.

    ``signed_offset`` is the offset ``mdrn.io.images`` added to signed DICOM values (removed before the
    rescale).
    """
    if window is None:
        window = auto_window(array, bit_depth=bit_depth, dicom=dicom, signed_offset=signed_offset)
    slope, intercept = _rescale(dicom)
    values = (array.astype(np.float64) - signed_offset) * slope + intercept
    c, w = window.center, max(window.width, 1.0)
    out = ((values - (c - 0.5)) / (w - 1 if w > 1 else 1.0) + 0.5) * 255.0
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if photometric is not None and str(photometric).upper() == "MONOCHROME1":
        out = 255 - out
    return out


def display_image(img: Any, array: np.ndarray | None = None, window: Window | None = None) -> np.ndarray:
    """Display version of an ``mdrn.io.images.ImageData`` (or of ``array``, e.g. its upscaled pixels)."""
    pixels = img.array if array is None else array
    return display_array(
        pixels,
        bit_depth=img.bit_depth,
        dicom=getattr(img, "dicom", None),
        photometric=getattr(img, "photometric", None),
        signed_offset=int(getattr(img, "signed_offset", 0)),
        window=window,
    )
