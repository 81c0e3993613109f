"""Command line for clinicians: enlarge PNG/JPEG/TIFF/BMP/DICOM images, keeping gray and bit depth.

``python -m mdrn.upscale INPUT... --scale 4 --weights W --output DIR`` (console script ``mdrn-upscale``).
W is a weights file (ours, an official EDSR-PyTorch file, a Lightning ``.ckpt``), a name such as
``mdsr`` (downloaded once and cached, see :mod:`mdrn.weights`), or ``bicubic`` (no weights needed).
Each input gives ``DIR/<stem>_x<scale>.<png|tif|dcm>``: gray stays gray, 16-bit stays 16-bit, a 12-bit
DICOM stays 12-bit (BitsStored kept; pixel spacing divided by the scale, new SOP Instance UID). Inputs
that fail print one line naming the file and the problem, leave no output behind, and make the exit
code 1; the other inputs are still processed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mdrn.inference import DEFAULT_OVERLAP, upscale
from mdrn.io import ImageData, image_to_tensor, is_image_file, read_image, tensor_to_array, write_image

__all__ = [
    "DEFAULT_TILE",
    "FORMATS",
    "UpscaleOptions",
    "expand_inputs",
    "load_network",
    "main",
    "output_path",
]

#: Default tile core size in LR pixels (bounded memory on CPU and GPU).
DEFAULT_TILE = 256
#: Output formats and their suffixes.
FORMATS = {"png": ".png", "tiff": ".tif", "dcm": ".dcm"}
#: The parameter-free model name.
BICUBIC = "bicubic"


@dataclass
class UpscaleOptions:
    """How to upscale: scale, tiling, ensemble, device, output format and overwrite policy."""

    scale: int
    tile: int | None = DEFAULT_TILE
    overlap: int | None = DEFAULT_OVERLAP  # None: the network's receptive radius (seamless tiles)
    ensemble: bool = False
    device: str | None = None
    fmt: str | None = None
    overwrite: bool = False


def load_network(weights: str | os.PathLike[str], scale: int | None = None) -> nn.Module:
    """The network for ``weights``: ``"bicubic"`` (parameter-free) or whatever ``load_model`` reads."""
    if str(weights).lower() == BICUBIC:
        from mdrn.models import Bicubic

        scales = sorted({2, 3, 4} | ({int(scale)} if scale else set()))
        return Bicubic(scales=scales).eval()
    from mdrn.weights import load_model

    return load_model(weights)


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Inputs as files: folders are replaced by the image files they hold (sorted, not recursive)."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p)))
        else:
            files.append(path)
    return files


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


def output_path(src: Path, out_dir: Path, scale: int, fmt: str) -> Path:
    """``out_dir/<stem>_x<scale><suffix>``."""
    return Path(out_dir) / f"{src.stem}_x{scale}{FORMATS[fmt]}"


def upscale_image(net: nn.Module, image: ImageData, opts: UpscaleOptions) -> np.ndarray:
    """Upscaled pixels of ``image`` as uint8/uint16 in its own bit depth (gray stays gray)."""
    x = image_to_tensor(image)
    y = upscale(
        net, x, opts.scale, tile=opts.tile, overlap=opts.overlap, ensemble=opts.ensemble, device=opts.device
    )
    return tensor_to_array(y, image.bit_depth)


def upscale_file(net: nn.Module, src: Path, out_dir: Path, opts: UpscaleOptions) -> Path:
    """Read, upscale and write one file atomically; return the output path (errors name the file)."""
    image = read_image(src)
    fmt = output_format(image, opts.fmt)
    dest = output_path(src, out_dir, opts.scale, fmt)
    if dest.exists() and not opts.overwrite:
        raise FileExistsError(f"{dest}: already exists (use --overwrite to replace it)")
    array = upscale_image(net, image, opts)
    return write_image(
        dest, array, bit_depth=image.bit_depth, reference=image, scale=opts.scale, overwrite=opts.overwrite
    )


def _message(src: Path, err: BaseException) -> str:
    """One line naming the file and the problem."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if str(src) in text else f"{src}: {text}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mdrn-upscale",
        description="Enlarge medical images (PNG, JPEG, TIFF, BMP, DICOM) with a super-resolution network.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--scale", type=int, required=True, help="magnification (e.g. 2, 3, 4)")
    p.add_argument(
        "--weights",
        required=True,
        help="weights file (.safetensors, official .pt, .ckpt), a name such as mdsr, or 'bicubic'",
    )
    p.add_argument("--output", "-o", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument(
        "--tile",
        type=int,
        default=DEFAULT_TILE,
        help=f"tile size in input pixels, 0 = whole image at once (default {DEFAULT_TILE})",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        help="tile context in pixels (default: the model's receptive radius, so tiles leave no seams)",
    )
    p.add_argument("--ensemble", action="store_true", help="x8 geometric self-ensemble (8x slower)")
    p.add_argument(
        "--format", choices=sorted(FORMATS), default=None, help="output format (default: dcm for DICOM "
        "input, tiff for TIFF, png otherwise)"
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return 0 if every input was written, 1 if any failed, 2 on a setup error."""
    args = _parser().parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        net = load_network(args.weights, args.scale)
    except Exception as err:  # noqa: BLE001 - one clear line for any unusable weights
        print(f"error: {_message(Path(args.weights), err)}", file=sys.stderr)
        return 2
    scales = tuple(getattr(net, "scales", ()))
    if scales and args.scale not in scales:
        print(
            f"error: {args.weights}: the model has no x{args.scale} branch (it serves {scales})",
            file=sys.stderr,
        )
        return 2
    if args.tile < 0 or (args.overlap is not None and args.overlap < 0):
        print("error: --tile and --overlap must be >= 0", file=sys.stderr)
        return 2
    from mdrn.perf import prepare_for_inference

    net = prepare_for_inference(net, device)  # the device's measured fast path (CPU: NHWC, threads)
    opts = UpscaleOptions(
        scale=args.scale,
        tile=args.tile or None,
        overlap=args.overlap,
        ensemble=args.ensemble,
        device=device,
        fmt=args.format,
        overwrite=args.overwrite,
    )
    files = expand_inputs(args.inputs)
    if not files:
        print("error: no input images found", file=sys.stderr)
        return 2
    from tqdm import tqdm

    failed = 0
    bar = tqdm(files, unit="image", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    for src in bar:
        bar.set_postfix_str(src.name, refresh=False)
        try:
            dest = upscale_file(net, src, args.output, opts)
        except (ValueError, OSError, RuntimeError) as err:
            failed += 1
            tqdm.write(f"error: {_message(src, err)}", file=sys.stderr)
            continue
        tqdm.write(f"wrote {dest}", file=sys.stdout)
    bar.close()
    if failed:
        print(f"{failed} of {len(files)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
