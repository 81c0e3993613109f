"""Enlarging what a clinician opened into files: the one path that the command line and the app share.

:func:`enlarge_stack` writes the enlarged version of a :class:`mdrn.clinical.inputs.Stack`: an image gives
one file
(DICOM stays DICOM, TIFF stays TIFF, PNG otherwise), a multi-frame DICOM one multi-frame derived DICOM, a
DICOM series one derived series (one file per slice, one new Series Instance UID), a NIfTI volume one
volume. Names say what made them: ``<stem>_x<scale>_<model>.<ext>`` (:func:`output_name`), so a bicubic
result never takes the place of a model's. Derived DICOMs name the real method (:func:`describe_method`).

Memory is bounded at any image size: an image is enlarged in horizontal bands of at most
``band_values`` output values (each band with ``overlap`` rows of context above and below, like the
tiles of :func:`mdrn.models.inference.upscale`, so the result is the untiled one), and every band is handed to
the encoder as soon as it is done (:func:`mdrn.io.images.write_bands`); nothing of output size is ever held in
memory. Series and volumes are processed one slice at a time.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mdrn.clinical.inputs import Stack
from mdrn.io.images import (
    DEFAULT_MAX_PIXELS,
    ImageData,
    atomic_write,
    image_to_tensor,
    tensor_to_array,
    write_bands,
)
from mdrn.models.inference import DEFAULT_OVERLAP, default_overlap, upscale
from mdrn.models.window import IntensityWindow, WindowRule, rule_of

__all__ = [
    "BICUBIC",
    "ACTIVATION_MEMORY",
    "DEFAULT_BAND_VALUES",
    "DEFAULT_TILE",
    "FORMATS",
    "REUSE_MAX_PIXELS",
    "UpscaleOptions",
    "describe_method",
    "enlarge_bands",
    "enlarge_stack",
    "load_network",
    "model_name",
    "output_format",
    "output_name",
    "stack_window",
    "upscale_image",
]

#: Default tile core size in LR pixels (bounded memory on CPU and GPU).
DEFAULT_TILE = 256
#: Output values (pixels x channels) per band: the float32 band is 128 MiB at most.
DEFAULT_BAND_VALUES = 32 << 20
#: Activation budget (bytes) given to :func:`mdrn.models.inference.upscale` for each band: with the band and
#: the framework this keeps a whole run under 2 GB of memory (measured, see the README's "For clinicians").
ACTIVATION_MEMORY = 1 << 30
#: Bands of at most this many input pixels (a 1024x1024 slice) run with glibc keeping freed memory
#: (:func:`mdrn.perf.malloc_reuse`): no page faults per activation map, a quarter of a CT slice's CPU time
#: at x2 (``python -m mdrn.bench --only clinical``), at a peak that a slice's maps bound. Larger bands
#: give memory back as they go: with reuse a 6000-pixel-wide band of a 16-bit image x2 peaked at 2.1 GB
#: (768 MiB budget), without at 1.2 GB (scripts/memory_inputs.py's image, a 1500-row part of it).
REUSE_MAX_PIXELS = 1 << 20
#: Output formats and their suffixes (``nii``: a NIfTI volume keeps its own suffix).
FORMATS = {"png": ".png", "tiff": ".tif", "dcm": ".dcm"}
#: The parameter-free model name.
BICUBIC = "bicubic"
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".mat")
_QUANTIZE_ROWS = 1 << 20  # output values quantized at once (bounds the float64 temporary)
Progress = Callable[[int, int], None] | None


@dataclass
class UpscaleOptions:
    """How to enlarge: scale, tiling, ensemble, device, output format, limits and the volume plane."""

    scale: int
    tile: int | None = DEFAULT_TILE
    overlap: int | None = DEFAULT_OVERLAP  # None: the network's receptive radius (seamless tiles)
    ensemble: bool = False
    device: str | None = None
    fmt: str | None = None
    overwrite: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    plane: str = "ij"
    band_values: int | None = None  # None: DEFAULT_BAND_VALUES
    memory: int | None = ACTIVATION_MEMORY
    window: str = "auto"  # intensity window: the model's own (auto), none, or percentile (mdrn.models.window)
    reuse_memory: bool = True  # glibc keeps freed memory while a small band runs (REUSE_MAX_PIXELS)
    taken: set[Path] | None = None  # outputs of this run so far: a second input never replaces one


def load_network(weights: str | os.PathLike[str], scale: int | None = None) -> nn.Module:
    """The network for ``weights``: ``"bicubic"`` (parameter-free) or whatever ``load_model`` reads."""
    if str(weights).lower() == BICUBIC:
        from mdrn.models import Bicubic

        scales = sorted({2, 3, 4} | ({int(scale)} if scale else set()))
        return Bicubic(scales=scales).eval()
    from mdrn.weights import load_model

    return load_model(weights)


def model_name(weights: str | os.PathLike[str]) -> str:
    """The model's short name for file names: ``bicubic``, a known name, or the weights file's stem."""
    text = str(weights)
    if text.lower() == BICUBIC:
        return BICUBIC
    path = Path(text)
    name = path.stem if path.suffix.lower() in _WEIGHT_SUFFIXES or path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def describe_method(
    weights: str | os.PathLike[str], net: nn.Module | None = None, window: str = "auto"
) -> str:
    """What enlarges the image, in words: bicubic interpolation, or which network (its design, and the
    intensity window it sees the image through: ``window`` as ``UpscaleOptions.window``)."""
    name = model_name(weights)
    if name == BICUBIC:
        return "bicubic interpolation (no network)"
    arch = type(net).__name__ if net is not None else "network"
    if net is not None and getattr(net, "bicubic_skip", False):
        arch += ": bicubic interpolation plus the detail the network adds"
    rule = (rule_of(net) if window == "auto" else WindowRule.parse(window)) if net is not None else None
    seen = (
        f", each image or series seen through its own {rule.mode} window ({rule.low:g}..{rule.high:g}) and "
        "mapped back exactly"
        if rule is not None and rule.active
        else ""
    )
    return f"the super-resolution network {name} ({arch}){seen}"


def output_format(image: ImageData, fmt: str | None) -> str:
    """The output format: the one asked for, else DICOM for DICOM, TIFF for TIFF, PNG otherwise."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format {fmt!r} (choose from {sorted(FORMATS)})")
        if fmt == "dcm" and image.dicom is None:
            raise ValueError("DICOM output needs a DICOM input (use --format png or tiff)")
        return fmt
    if image.dicom is not None:
        return "dcm"
    if image.meta.get("format") == "TIFF":
        return "tiff"
    return "png"


def output_name(stem: str, scale: int, model: str, suffix: str) -> str:
    """``<stem>_x<scale>_<model><suffix>``: the name says the scale and what made the image."""
    return f"{stem}_x{scale}_{model}{suffix}"


def _rule(net: nn.Module, opts: UpscaleOptions) -> WindowRule:
    """The window rule of this run: the network's own (``auto``) or the one ``opts.window`` names."""
    return rule_of(net) if opts.window == "auto" else WindowRule.parse(opts.window)


def stack_window(net: nn.Module, stack: Stack, opts: UpscaleOptions) -> IntensityWindow | None:
    """One intensity window for a whole image, series, multi-frame image or volume (None: no window).

    Every slice is read once more for it (an even sample of its values), so the slices of a series keep
    one mapping and stay comparable, and bands and tiles share it. A slice of a series that cannot be read
    is left out of it (it is reported when it is enlarged; the others are still written); None if none can.
    """
    rule = _rule(net, opts)
    if not rule.active:
        return None
    n = stack.n_slices
    skip = (ValueError, OSError) if stack.kind == "series" else ()

    def readable() -> Iterator[ImageData]:
        for i in range(n):
            try:
                image = stack.slice(i)
            except skip:
                continue
            yield image

    images = readable()
    first = next(images, None)
    if first is None:
        return None
    arrays = (image.array for image in itertools.chain([first], images))
    return rule.fit_many(arrays, first.bit_depth, count=n)


def _enlarge_rows(
    net: nn.Module, pixels: np.ndarray, bit_depth: int, opts: UpscaleOptions, window: IntensityWindow | None
) -> np.ndarray:
    """Enlarged, quantized pixels of a block of rows (quantized in pieces: small float64 temporaries)."""
    x = image_to_tensor(ImageData(pixels, bit_depth))
    reuse = opts.reuse_memory and pixels.shape[0] * pixels.shape[1] <= REUSE_MAX_PIXELS
    y = upscale(
        net, x, opts.scale, tile=opts.tile, overlap=opts.overlap, ensemble=opts.ensemble, device=opts.device,
        memory=opts.memory, reuse_memory=reuse,
        window=window,  # the whole image's (or series') window, never the band's own
    )  # fmt: skip
    step = max(1, _QUANTIZE_ROWS // (y.shape[0] * y.shape[2]))
    parts = []
    for r in range(0, y.shape[1], step):
        part = y[:, r : r + step]
        if not bool(torch.isfinite(part).all()):  # quantized, NaN would be 0 and infinity black or white
            raise ValueError(
                "the network's output holds NaN or infinite values (its weights are broken, e.g. from a "
                "training run that diverged); nothing written for this image"
            )
        parts.append(tensor_to_array(part, bit_depth))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def band_rows(width: int, channels: int, opts: UpscaleOptions) -> int:
    """Input rows per band so that a band holds at most ``opts.band_values`` output values."""
    budget = opts.band_values or DEFAULT_BAND_VALUES
    return max(1, budget // (width * channels * opts.scale * opts.scale))


def enlarge_bands(
    net: nn.Module, image: ImageData, opts: UpscaleOptions, window: IntensityWindow | None | str = "image"
) -> Iterator[np.ndarray]:
    """The enlarged image band by band, top to bottom, in its bit depth; an alpha channel is appended
    (enlarged with bicubic interpolation) when the image has one. ``window``: the intensity window of the
    series the image belongs to (:func:`stack_window`), or ``"image"`` to fit one to this image alone."""
    from mdrn.models import Bicubic

    if isinstance(window, str):
        rule = _rule(net, opts)
        window = rule.fit_many([image.array], image.bit_depth) if rule.active else None
    s, h = opts.scale, image.height
    channels = image.channels + (image.alpha is not None)
    step = band_rows(image.width, channels, opts)
    context = opts.overlap if opts.overlap is not None else default_overlap(net)  # bands are tiles too
    bicubic = Bicubic(scales=(s,)) if image.alpha is not None else None
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        a0, a1 = max(0, r0 - context), min(h, r1 + context)
        core = slice((r0 - a0) * s, (r1 - a0) * s)
        band = _enlarge_rows(net, image.array[a0:a1], image.bit_depth, opts, window)[core]
        if bicubic is not None:
            alpha = _enlarge_rows(bicubic, image.alpha[a0:a1], image.bit_depth, opts, None)[core]
            band = np.dstack([band, alpha])
        yield band


def upscale_image(net: nn.Module, image: ImageData, opts: UpscaleOptions) -> np.ndarray:
    """Enlarged pixels of ``image`` (without alpha) as uint8/uint16 in its own bit depth, in memory."""
    bands = list(enlarge_bands(net, replace(image, alpha=None), opts))
    return np.concatenate(bands) if len(bands) > 1 else bands[0]


def _write_image(
    net: nn.Module,
    image: ImageData,
    dest: Path,
    opts: UpscaleOptions,
    how: Any,
    window: IntensityWindow | None | str = "image",
) -> Path:
    channels = image.channels + (image.alpha is not None)
    return write_bands(
        dest, enlarge_bands(net, image, opts, window), height=image.height * opts.scale,
        width=image.width * opts.scale, channels=channels, bit_depth=image.bit_depth,
        reference=image if image.dicom is not None else None, derivation=how, overwrite=opts.overwrite,
        icc_profile=image.meta.get("icc_profile"),  # the colours of a photo as other viewers show them
    )  # fmt: skip


def _check_free(dest: Path, opts: UpscaleOptions, source: Path) -> None:
    if opts.taken is not None:
        if dest.resolve() in opts.taken:
            raise FileExistsError(
                f"{dest}: the output of another input of the same name in this run; not replaced, {source} "
                "not enlarged (enlarge them into separate output folders)"
            )
        opts.taken.add(dest.resolve())
    if dest.exists() and not opts.overwrite:
        raise FileExistsError(f"{dest}: already exists (use --overwrite to replace it)")


def _series(
    net: nn.Module,
    stack: Stack,
    out_dir: Path,
    opts: UpscaleOptions,
    how: Any,
    progress: Progress,
    errors: list[tuple[Path, Exception]] | None,
) -> list[Path]:
    """The slices of a series one after the other; alike slices reuse the memory the previous one freed."""
    from mdrn.io.dicom import read_header
    from mdrn.perf import malloc_reuse

    try:
        header = read_header(stack.files[0])
        small = int(header.Rows) * int(header.Columns) <= REUSE_MAX_PIXELS
    except (ValueError, OSError, AttributeError, TypeError):
        small = False
    with malloc_reuse(opts.reuse_memory and small):
        return _series_slices(net, stack, out_dir, opts, how, progress, errors)


def _series_slices(
    net: nn.Module,
    stack: Stack,
    out_dir: Path,
    opts: UpscaleOptions,
    how: Any,
    progress: Progress,
    errors: list[tuple[Path, Exception]] | None,
) -> list[Path]:
    written = []
    window = stack_window(net, stack, opts)  # one mapping for the whole series
    for i, file in enumerate(stack.files):
        try:
            image = stack.slice(i)
            suffix = FORMATS[output_format(image, opts.fmt)]
            dest = out_dir / output_name(file.stem, opts.scale, how.model, suffix)
            _check_free(dest, opts, file)
            written.append(_write_image(net, image, dest, opts, how, window))
        except (ValueError, OSError, RuntimeError) as err:
            if errors is None:
                raise
            errors.append((file, err))
        if progress is not None:
            progress(i + 1, stack.n_slices)
    return written


def _frames(
    net: nn.Module, stack: Stack, out_dir: Path, opts: UpscaleOptions, how: Any, progress: Progress
) -> Path:
    if opts.fmt not in (None, "dcm"):
        raise ValueError(f"{stack.path}: a multi-frame DICOM is written as DICOM (leave out --format)")
    s, n = opts.scale, stack.n_slices
    dest = out_dir / output_name(stack.name, s, how.model, ".dcm")
    _check_free(dest, opts, stack.path)
    first = stack.slice(0)
    window = stack_window(net, stack, opts)

    def frames() -> Iterator[np.ndarray]:
        for i in range(n):
            yield from enlarge_bands(net, first if i == 0 else stack.slice(i), opts, window)
            if progress is not None:
                progress(i + 1, n)

    return write_bands(
        dest, frames(), height=first.height * s, width=first.width * s, channels=first.channels,
        bit_depth=first.bit_depth, reference=first, derivation=how, frames=n, overwrite=opts.overwrite,
    )  # fmt: skip


def _volume(
    net: nn.Module, stack: Stack, out_dir: Path, opts: UpscaleOptions, how: Any, progress: Progress
) -> Path:
    from mdrn.io.nifti import write_nifti

    if opts.fmt is not None:
        raise ValueError(f"{stack.path}: a NIfTI volume is written as NIfTI (leave out --format)")
    s, n = opts.scale, stack.n_slices
    suffix = ".nii.gz" if stack.path.name.lower().endswith(".gz") else ".nii"
    dest = out_dir / output_name(stack.name, s, how.model, suffix)
    _check_free(dest, opts, stack.path)
    window = stack_window(net, stack, opts)

    def slices() -> Iterator[tuple[int, np.ndarray]]:
        for i in range(n):
            bands = list(enlarge_bands(net, stack.slice(i), opts, window))
            yield i, np.concatenate(bands) if len(bands) > 1 else bands[0]
            if progress is not None:
                progress(i + 1, n)

    text = f"mdrn x{s} {how.model} in plane {stack.volume.plane}"
    return atomic_write(
        dest, lambda tmp: write_nifti(tmp, stack.volume, s, text, slices()), overwrite=opts.overwrite
    )


def enlarge_stack(
    net: nn.Module,
    stack: Stack,
    out_dir: str | os.PathLike[str],
    opts: UpscaleOptions,
    how: Any,
    *,
    progress: Progress = None,
    errors: list[tuple[Path, Exception]] | None = None,
) -> list[Path]:
    """Write the enlarged ``stack`` into ``out_dir``; return the files written.

    ``how`` is the run's :class:`mdrn.io.dicom.Derivation` (scale, method, model and the new series UIDs).
    ``progress(done, total)`` is called after each slice. A slice of a series that fails is reported in
    ``errors`` as (file, exception) (raised when ``errors`` is None) and the others are still written.
    """
    out_dir = Path(out_dir)
    if stack.kind == "series":
        return _series(net, stack, out_dir, opts, how, progress, errors)
    if stack.kind == "frames":
        return [_frames(net, stack, out_dir, opts, how, progress)]
    if stack.kind == "volume":
        return [_volume(net, stack, out_dir, opts, how, progress)]
    image = stack.slice(0)
    dest = out_dir / output_name(stack.name, opts.scale, how.model, FORMATS[output_format(image, opts.fmt)])
    _check_free(dest, opts, stack.path)
    written = [_write_image(net, image, dest, opts, how)]
    if progress is not None:
        progress(1, 1)
    return written
