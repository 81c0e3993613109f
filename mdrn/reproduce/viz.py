"""Figure helpers for the paper's artefacts: the SR panel (Figs. 10-14), bar charts with values, curves.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global state, no
display needed); :func:`save_figure` writes it atomically as PNG. Images are float tensors/arrays in
[0, 1] ((N, C, H, W) with N = 1, (C, H, W) or numpy (H, W[, C])); images of more than 8 bits are shown
through a display window (:mod:`mdrn.clinical.display`), the same window for every panel of a figure.

The panel of :func:`sr_panel` follows the paper's figures: LR, the low-frequency image, the
high-frequency image (on a diverging colour map centred on 0), the SR output and, when known, the HR
original; a second row shows the same zoomed crop of each (the crop box is drawn on the first row). For a
network with the low/high-frequency split of the paper's Fig. 9 (``bicubic_skip``), pass its own
low-frequency image (:func:`mdrn.models.inference.low_frequency_image`) and ``split=True``: the middle panels
are then the model's own two parts, and ``SR - low`` is exactly what its network adds. For any other
model they are the bicubic reference and the residual ``SR - bicubic``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mdrn.clinical.display import Window, auto_window, display_array
from mdrn.io.images import atomic_write, tensor_to_array
from mdrn.protocol.color import rgb_to_y

__all__ = [
    "RESIDUAL_CMAP",
    "bar_chart",
    "best_crop",
    "curve_chart",
    "save_figure",
    "sr_panel",
]

#: Diverging colour map of the residual (high-frequency) panel: blue negative, white 0, red positive.
RESIDUAL_CMAP = "RdBu_r"

Box = tuple[int, int, int, int]  # (top, left, height, width) in HR pixels


def _as_chw(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """Return ``x`` as a float64 CPU tensor (C, H, W); numpy (H, W[, C]) and (1, C, H, W) accepted."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1) if t.ndim == 3 else t
    elif isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", torch.float64)
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"{name}: expected one image, got a batch of {t.shape[0]}")
            t = t[0]
        t = t[None] if t.ndim == 2 else t
    else:
        raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(x).__name__}")
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"{name}: expected an image (C, H, W) with C = 1 or 3, got shape {tuple(t.shape)}")
    return t


def _luma(x: torch.Tensor) -> torch.Tensor:
    """Return the (H, W) luma of a (C, H, W) image on the [0, 1] scale (gray: itself)."""
    return rgb_to_y(x[None])[0, 0] if x.shape[0] == 3 else x[0]


def best_crop(residual: torch.Tensor | np.ndarray, size: int) -> Box:
    """Return the ``size x size`` box (top, left, h, w) where the residual's absolute value sums highest."""
    r = _as_chw(residual, "residual").abs().sum(dim=0)
    h, w = r.shape
    size = max(1, min(int(size), h, w))
    sums = torch.nn.functional.avg_pool2d(r[None, None], size, stride=max(1, size // 4))[0, 0]
    idx = int(torch.argmax(sums))
    stride = max(1, size // 4)
    top, left = (idx // sums.shape[1]) * stride, (idx % sums.shape[1]) * stride
    return int(top), int(left), size, size


def _display(x: torch.Tensor, bit_depth: int, window: Window | None) -> np.ndarray:
    """Return the uint8 display array (H, W[, 3]) of a [0, 1] image with the given window."""
    pixels = tensor_to_array(x.clamp(0, 1), bit_depth)
    if bit_depth <= 8 and window is None:
        return pixels.astype(np.uint8)
    return display_array(pixels, bit_depth=bit_depth, window=window)


def _show(ax, image: np.ndarray, title: str | None = None) -> None:  # noqa: ANN001
    """Draw a display array on ``ax`` without axes; gray images with the gray colour map."""
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def sr_panel(
    lr: torch.Tensor | np.ndarray,
    bicubic: torch.Tensor | np.ndarray,
    sr: torch.Tensor | np.ndarray,
    hr: torch.Tensor | np.ndarray | None = None,
    *,
    scale: int,
    bit_depth: int = 8,
    crop: Box | None = None,
    crop_size: int | None = None,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    split: bool = False,
) -> Figure:
    """Return the panel LR | bicubic (low freq.) | residual SR - bicubic (high freq.) | SR | HR, with crops.

    ``bit_depth`` is the images' own depth (display window from the HR, or the bicubic image, when > 8).
    ``crop`` (top, left, h, w) in HR pixels; default: the ``crop_size`` box (a quarter of the smaller
    side) where the residual is strongest. ``split=True`` says that ``bicubic`` is the model's own
    low-frequency image (a network with the Fig. 9 path), so the residual is its high-frequency image;
    the panels are titled so. ``labels`` may rename the panels (keys lr, bicubic, residual, sr, hr). A PSNR
    is not computed here: score with :func:`mdrn.protocol.metrics.score`.
    """
    scale = int(scale)
    lr_t, bic_t, sr_t = _as_chw(lr, "lr"), _as_chw(bicubic, "bicubic"), _as_chw(sr, "sr")
    hr_t = _as_chw(hr, "hr") if hr is not None else None
    if bic_t.shape != sr_t.shape or (hr_t is not None and hr_t.shape != sr_t.shape):
        shapes = [tuple(t.shape) for t in (bic_t, sr_t, hr_t) if t is not None]
        raise ValueError(f"sr_panel: bicubic, sr and hr must have the same shape, got {shapes}")
    if (lr_t.shape[1] * scale, lr_t.shape[2] * scale) != tuple(sr_t.shape[1:]):
        raise ValueError(
            f"sr_panel: LR {tuple(lr_t.shape[1:])} x {scale} does not give the SR size "
            f"{tuple(sr_t.shape[1:])}"
        )
    names = {"lr": f"LR (x{scale} smaller)", "bicubic": "Bicubic (low frequency)",
             "residual": "Residual SR - bicubic (high frequency)", "sr": "SR", "hr": "HR"}  # fmt: skip
    if split:
        names.update(
            bicubic="Low frequency (model's bicubic)",
            residual="High frequency (model's network)",
            sr="SR = low + high frequency",
        )
    names.update(labels or {})
    residual = _luma(sr_t) - _luma(bic_t)
    h, w = sr_t.shape[1:]
    if crop is None:
        size = crop_size or max(scale, min(h, w) // 4)
        crop = best_crop(residual[None], size - size % scale)
    top, left, ch, cw = (int(v) for v in crop)
    if not (0 <= top and 0 <= left and ch > 0 and cw > 0 and top + ch <= h and left + cw <= w):
        raise ValueError(f"sr_panel: crop {crop} lies outside the {h}x{w} image")

    window = None
    if bit_depth > 8:
        ref = hr_t if hr_t is not None else bic_t
        window = auto_window(tensor_to_array(ref.clamp(0, 1), bit_depth), bit_depth=bit_depth)
    lim = float(torch.quantile(residual.abs().flatten().float(), 0.995)) or 1e-6

    cols = [("lr", lr_t), ("bicubic", bic_t), ("residual", None), ("sr", sr_t)]
    if hr_t is not None:
        cols.append(("hr", hr_t))
    fig = Figure(figsize=(2.6 * len(cols), 5.6), layout="constrained")
    axes = fig.subplots(2, len(cols), squeeze=False)
    lr_box = (top // scale, left // scale, max(1, ch // scale), max(1, cw // scale))
    for j, (key, img) in enumerate(cols):
        full, zoom = axes[0, j], axes[1, j]
        box = lr_box if key == "lr" else (top, left, ch, cw)
        if key == "residual":
            kw = dict(cmap=RESIDUAL_CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
            im = full.imshow(residual.numpy(), **kw)
            zoom.imshow(residual[top : top + ch, left : left + cw].numpy(), **kw)
            for ax in (full, zoom):
                ax.set_xticks([])
                ax.set_yticks([])
            full.set_title(names[key], fontsize=9)
            fig.colorbar(im, ax=zoom, location="bottom", shrink=0.9, label="ΔY (fraction of the range)")
        else:
            disp = _display(img, bit_depth, window)
            _show(full, disp, names[key])
            b = box
            _show(zoom, disp[b[0] : b[0] + b[2], b[1] : b[1] + b[3]])
        full.add_patch(
            Rectangle((box[1] - 0.5, box[0] - 0.5), box[3], box[2], fill=False, ec="yellow", lw=1.2)
        )
    axes[1, 0].set_ylabel("zoom", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _finite(value: float | None) -> bool:
    """Whether a bar value is a number (None and NaN mean 'not run')."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str,
    title: str | None = None,
    fmt: str = "{:.2f}",
    missing: str = "not run",
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Return grouped bars (one group per category, one bar per series) with each value written on its bar.

    A ``None``/NaN value draws no bar and writes ``missing`` at the group's base instead. Without
    ``ylim`` the axis starts a little below the smallest value, so small differences stay visible.
    """
    categories = list(categories)
    names = list(series)
    for name in names:
        if len(series[name]) != len(categories):
            raise ValueError(
                f"bar_chart: series {name!r} has {len(series[name])} values for {len(categories)} categories"
            )
    values = [v for name in names for v in series[name] if _finite(v)]
    if ylim is None:
        if values:
            lo, hi = min(values), max(values)
            pad = max((hi - lo) * 0.15, abs(hi) * 0.01, 1e-3)
            ylim = (lo - 3 * pad, hi + 2 * pad)
        else:
            ylim = (0.0, 1.0)
    width = 0.8 / max(1, len(names))
    fig = Figure(
        figsize=(max(4.0, 1.1 * len(categories) * max(1, len(names)) * 0.55 + 2), 3.8), layout="constrained"
    )
    ax = fig.subplots()
    for i, name in enumerate(names):
        xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(categories))]
        for x, v in zip(xs, series[name]):
            if _finite(v):
                ax.bar(x, float(v) - ylim[0], width * 0.95, bottom=ylim[0], color=f"C{i}", label=name)
                ax.text(x, float(v), fmt.format(float(v)), ha="center", va="bottom", fontsize=7, rotation=90)
            else:
                ax.text(x, ylim[0], missing, ha="center", va="bottom", fontsize=7, rotation=90, color="gray")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xticks(range(len(categories)), categories, fontsize=8)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def curve_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> Figure:
    """Return one line per series ``name -> (x, y)`` with markers, in one axes (e.g. PSNR vs iterations)."""
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = fig.subplots()
    for i, (name, (xs, ys)) in enumerate(series.items()):
        if len(xs) != len(ys):
            raise ValueError(f"curve_chart: series {name!r} has {len(xs)} x values and {len(ys)} y values")
        ax.plot(list(xs), list(ys), marker="o", ms=3, color=f"C{i}", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 120, overwrite: bool = True) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically and return the path."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi), overwrite=overwrite)
