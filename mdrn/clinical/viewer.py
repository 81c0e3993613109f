"""The pictures the app shows of an enlarged slice: bicubic and the model side by side, and the detail.

:func:`render` makes, for one slice of a :class:`mdrn.clinical.results.Result`, the bicubic enlargement
and the model's (windowed like the input, zoomed around a centre, each labelled with what made it) and the
detail the model adds over bicubic as a colour overlay. The slice's arrays (input, output, bicubic) are
read once and kept (:class:`SliceCache`), so changing the window, the zoom or the centre, or going back to
a slice just seen, only redraws: under a second for a 512x512 slice at x4. Only the shown crop is coloured.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from mdrn.clinical.display import Window, auto_window, display_array
from mdrn.io.images import ImageData

__all__ = ["SliceCache", "SliceView", "detail_overlay", "label", "render", "slice_info", "zoom_crop"]

#: Pictures smaller than this (pixels, longer side) are enlarged by whole pixels for display.
MIN_VIEW = 512
#: Zoom factors offered.
ZOOMS = ("1x", "2x", "4x", "8x")
#: Bytes of slice arrays a result keeps for redrawing (at least one slice is always kept).
CACHE_BYTES = 512 << 20
_DETAIL_LUT: np.ndarray | None = None


@dataclass
class SliceView:
    """One slice's arrays for display: the input image, the model's output and the bicubic enlargement."""

    image: ImageData
    output: np.ndarray
    bicubic: np.ndarray
    #: |output - bicubic| / peak at the 99.5th percentile: the overlay's colour scale for the whole slice
    detail_scale: float

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return int(self.image.array.nbytes + self.output.nbytes + self.bicubic.nbytes)


class SliceCache:
    """The last slices shown of one result, up to :data:`CACHE_BYTES` (thread-safe)."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._views: OrderedDict[int, SliceView] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, index: int, make: Any) -> SliceView:
        """The view of slice ``index``, made by ``make(index)`` if not kept."""
        with self._lock:
            view = self._views.get(index)
            if view is not None:
                self._views.move_to_end(index)
                return view
        view = make(index)
        with self._lock:
            self._views[index] = view
            while len(self._views) > 1 and sum(v.nbytes for v in self._views.values()) > self.max_bytes:
                self._views.popitem(last=False)
        return view

    def clear(self) -> None:
        """Forget every slice."""
        with self._lock:
            self._views.clear()


def make_view(image: ImageData, output: np.ndarray, scale: int) -> SliceView:
    """A slice's view: its bicubic enlargement (the model's own low-frequency reference) and detail scale."""
    from mdrn.clinical.enlarge import UpscaleOptions, upscale_image
    from mdrn.models import Bicubic

    bicubic = upscale_image(Bicubic(scales=(scale,)), image, UpscaleOptions(scale=scale, tile=None))
    diff = _detail(output, bicubic, image.peak)
    scale_ = float(np.percentile(np.abs(diff), 99.5)) if diff.size else 0.0
    return SliceView(image, output, bicubic, scale_ or 1.0)


def _detail(output: np.ndarray, bicubic: np.ndarray, peak: float) -> np.ndarray:
    """(output - bicubic) / peak in float32, averaged over colour channels."""
    diff = output.astype(np.float32) - bicubic.astype(np.float32)
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    return diff / np.float32(peak)


def window_of(image: ImageData, center: float | None, width: float | None) -> Window:
    """The display window: the user's if given (width > 0), else the input's automatic one.

    The user's is in the input's physical units: a DICOM's after its rescale (by :mod:`display`), a NIfTI
    volume's after its ``scl_slope``/``scl_inter`` (the slice's ``meta["rescale"]``, mapped back here)."""
    if center is not None and width:
        slope, inter = image.meta.get("rescale", (1.0, 0.0)) if image.dicom is None else (1.0, 0.0)
        return Window((float(center) - inter) / slope, float(width) / abs(slope))
    return auto_window(
        image.array, bit_depth=image.bit_depth, dicom=image.dicom, signed_offset=image.signed_offset
    )


def show(image: ImageData, array: np.ndarray, window: Window) -> np.ndarray:
    """Display pixels of one array in the input's terms (shared window, MONOCHROME1 inverted)."""
    return display_array(
        array,
        bit_depth=image.bit_depth,
        dicom=image.dicom,
        photometric=image.photometric,
        signed_offset=image.signed_offset,
        window=window,
    )


def zoom_crop(shape: tuple[int, ...], zoom: str, cx: float, cy: float) -> tuple[slice, slice, int]:
    """Rows and columns of the ``1/zoom`` crop around (cx, cy) percent, and the zoom factor."""
    z = max(1, int(str(zoom).rstrip("x") or 1))
    h, w = shape[:2]
    if z <= 1:
        return slice(0, h), slice(0, w), 1
    ch, cw = max(1, h // z), max(1, w // z)
    y0 = int(np.clip(cy / 100 * h - ch / 2, 0, h - ch))
    x0 = int(np.clip(cx / 100 * w - cw / 2, 0, w - cw))
    return slice(y0, y0 + ch), slice(x0, x0 + cw), z


def _enlarge_pixels(arr: np.ndarray, k: int) -> np.ndarray:
    """Whole-pixel (nearest neighbour) enlargement by ``k``, for display."""
    return np.repeat(np.repeat(arr, k, axis=0), k, axis=1) if k > 1 else arr


def _detail_lut() -> np.ndarray:
    """The overlay's diverging colour map (RdBu reversed) as 256 RGB rows in [0, 1], float32."""
    global _DETAIL_LUT
    if _DETAIL_LUT is None:
        from matplotlib import colormaps

        _DETAIL_LUT = colormaps["RdBu_r"](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)
    return _DETAIL_LUT


def detail_overlay(
    image: ImageData,
    output: np.ndarray,
    bicubic: np.ndarray,
    window: Window,
    scale: float | None = None,
) -> np.ndarray:
    """The network's added detail (output minus bicubic) in a diverging colormap over the gray output.

    Red: brighter than bicubic on the screen (MONOCHROME1 included), blue: darker, at full colour from
    ``scale`` (|difference| / peak; default the 99.5th percentile of this array's differences) on.
    """
    diff = _detail(output, bicubic, image.peak)
    if str(image.photometric).upper() == "MONOCHROME1":  # shown inverted: colours follow the screen
        diff = -diff
    base = show(image, output, window).astype(np.float32) / 255.0
    if base.ndim == 3:
        base = base.mean(axis=2)
    lim = scale if scale else (float(np.percentile(np.abs(diff), 99.5)) if diff.size else 1.0) or 1.0
    rel = np.clip(diff / np.float32(lim), -1.0, 1.0)
    rgb = _detail_lut()[np.rint(rel * 127.5 + 127.5).astype(np.uint8)]
    alpha = (np.abs(rel) * 0.85)[..., None]
    out = base[..., None] * (1 - alpha) + rgb * alpha
    return np.rint(out * 255).astype(np.uint8)


def label(picture: np.ndarray, text: str, corner: str = "bottom-left") -> np.ndarray:
    """``picture`` (uint8, gray or RGB) with ``text`` in white on a dark box in a corner.

    The compare view shows the bicubic picture's left part and the model's right part: their labels go
    to the bottom-left and the bottom-right (the page's own caption covers the top-left).
    """
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(picture)
    size = max(14, min(img.size) // 28)
    try:
        font: Any = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    pad = max(3, size // 4)
    w, h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    left = 0 if corner.endswith("left") else max(0, img.width - w)
    top = 0 if corner.startswith("top") else max(0, img.height - h)
    white, dark = (255 if img.mode == "L" else (255, 255, 255)), (0 if img.mode == "L" else (0, 0, 0))
    draw.rectangle((left, top, left + w, top + h), fill=dark)
    draw.text((left + pad - x0, top + pad - y0), text, fill=white, font=font)
    return np.asarray(img)


def render(
    view: SliceView,
    scale: int,
    model: str,
    center: float | None,
    width: float | None,
    zoom: str,
    cx: float,
    cy: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bicubic and model pictures (labelled) and the detail overlay of a slice, windowed and zoomed."""
    image = view.image
    win = window_of(image, center, width)
    rows, cols, z = zoom_crop(view.output.shape, zoom, cx, cy)
    before, after = (show(image, a[rows, cols], win) for a in (view.bicubic, view.output))
    overlay = detail_overlay(image, view.output[rows, cols], view.bicubic[rows, cols], win, view.detail_scale)
    # small pictures are shown with whole-pixel enlargement (display only) so that they can be seen
    k = z * max(1, MIN_VIEW // max(view.output.shape[:2]))
    before, after, overlay = (_enlarge_pixels(p, k) for p in (before, after, overlay))
    how = f"x{scale}"
    return label(before, f"bicubic {how}"), label(after, f"{model} {how}", "bottom-right"), overlay


def slice_info(name: str, n_slices: int, index: int, file: Any = None, image: ImageData | None = None) -> str:
    """What is shown: the slice number and, for a DICOM series, the slice's file and position."""
    i = min(max(int(index), 0), n_slices - 1)
    if n_slices == 1:
        return name
    text = f"{name}: slice {i + 1} of {n_slices}"
    if file is not None:
        dicom = image.dicom if image is not None else None
        where = dicom.get("SliceLocation", None) if dicom is not None else None
        text += f" ({file.name}" + (f", location {float(where):g} mm)" if where is not None else ")")
    return text
