"""Command line for clinicians: enlarge images, DICOM series and NIfTI volumes, keeping gray and bit depth.

``python -m mdrn.upscale INPUT... --scale 2 --output DIR`` (console script ``mdrn-upscale``) enlarges with
the shipped model (:data:`mdrn.weights.DEFAULT_MODEL`) unless ``--weights`` names another: a weights file
(ours, an official EDSR-PyTorch file, a Lightning ``.ckpt``), a name such as ``mdsr`` (downloaded once and
cached, see :mod:`mdrn.weights`), or ``bicubic`` (interpolation, no network). An INPUT is an image
(PNG/JPEG/TIFF/BMP/DICOM), a multi-frame DICOM, a NIfTI volume (``.nii``/``.nii.gz``, enlarged in
``--plane``), or a folder (its DICOM series, each one derived series, and its other images go to
``DIR/<folder>_x<scale>_<model>/``). Outputs are named ``<stem>_x<scale>_<model>.<ext>`` (see
:mod:`mdrn.clinical.enlarge`): gray stays gray, 16-bit stays 16-bit, a 12-bit DICOM stays 12-bit, and a
derived DICOM is true to PS3.3 (see :mod:`mdrn.io.dicom`). Images over ``--max-pixels`` are refused from their
header. Inputs that fail print one line naming the file and the problem, leave no output behind, and
make the exit code 1; the other inputs are still processed. Ctrl-C stops with exit code 130 (SIGTERM:
143), the files written so far complete and no partial one (nor a volume's decompressed copy) left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from mdrn.clinical.enlarge import (
    BICUBIC,
    DEFAULT_TILE,
    FORMATS,
    UpscaleOptions,
    describe_method,
    enlarge_stack,
    load_network,
    model_name,
)
from mdrn.clinical.inputs import Stack, error_line, job_pixels, open_inputs
from mdrn.clinical.interrupt import Terminated, sigterm_stops
from mdrn.clinical.runtime import BACKENDS, PRECISIONS, prepare_network
from mdrn.io.dicom import quiet_value_warnings
from mdrn.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageReadError
from mdrn.io.nifti import PLANES
from mdrn.models.inference import DEFAULT_OVERLAP
from mdrn.perf import set_malloc_reuse

__all__ = [
    "BICUBIC",
    "DEFAULT_TILE",
    "FORMATS",
    "UpscaleOptions",
    "expand_inputs",
    "main",
    "parse_pixel_limit",
]


def expand_inputs(
    inputs: Iterable[str | os.PathLike[str]], out_dir: Path, folder_suffix: str, opts: UpscaleOptions
) -> list[tuple[Stack | str, Path]]:
    """In input order, (stack, its output folder) or (error line, output folder) for every input.

    A folder's stacks go to ``out_dir/<folder><folder_suffix>``, a file's to ``out_dir``; a file that
    cannot be opened gives one line naming it.
    """
    found: list[tuple[Stack | str, Path]] = []
    try:
        _expand(inputs, out_dir, folder_suffix, opts, found)
    except BaseException:  # e.g. Ctrl-C while a volume is opened: close the ones already open
        for stack, _ in found:
            if isinstance(stack, Stack):
                stack.close()
        raise
    return found


def _expand(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: Path,
    folder_suffix: str,
    opts: UpscaleOptions,
    found: list[tuple[Stack | str, Path]],
) -> None:
    """Append to ``found`` what :func:`expand_inputs` returns."""
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.exists() and path.resolve() in seen:
            continue  # the same file or folder named twice (overlapping wildcards): enlarged once
        seen.add(path.resolve())
        folder = path.name if path.name not in ("", "..") else path.resolve().name or "root"  # ".", ".."
        dest = out_dir / f"{folder}{folder_suffix}" if path.is_dir() else out_dir
        problems: list[ImageReadError] = []
        try:
            stacks = open_inputs(path, plane=opts.plane, max_pixels=opts.max_pixels, errors=problems)
        except (ValueError, OSError) as err:
            found.append((error_line(path, err), dest))
            continue
        found += [(error_line(e.path, e), dest) for e in problems]
        found += [(stack, dest / _subfolder(stack, path)) for stack in stacks]
        if path.is_dir() and not stacks and not problems:
            nested = any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
            hint = " (its subfolders are not searched: give them, or a CD's folder with its DICOMDIR)"
            found.append(
                (f"{path}: no images, DICOM series or NIfTI volumes in this folder{hint * nested}", dest)
            )


def _subfolder(stack: Stack, root: Path) -> Path:
    """Where below a folder input's output folder a stack goes: its own folder's place below ``root``.

    ``.`` for a plain folder; in a media export (subfolders searched) the export's folder tree is kept,
    so that slices of the same name in two series (``SER1/IMG1``, ``SER2/IMG1``) do not collide.
    """
    first = stack.files[0] if stack.files else stack.path
    try:
        return first.parent.relative_to(root) if root.is_dir() else Path()
    except ValueError:
        return Path()


def parse_pixel_limit(text: str) -> int:
    """``--max-pixels`` value: an integer or a float such as ``2e8``; 0 means no limit."""
    try:
        value = int(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of pixels: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError("the pixel limit must be >= 0 (0: no limit)")
    return value


def _parser() -> argparse.ArgumentParser:
    from mdrn.weights import DEFAULT_MODEL

    p = argparse.ArgumentParser(
        prog="mdrn-upscale",
        description="Enlarge medical images (PNG, JPEG, TIFF, BMP, DICOM, DICOM series, NIfTI volumes).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or volume files, or folders")
    p.add_argument("--scale", type=int, required=True, help="magnification (e.g. 2, 3, 4)")
    p.add_argument(
        "--weights",
        default=DEFAULT_MODEL,
        help=f"the model: {DEFAULT_MODEL} (default, shipped), a weights file (.safetensors, official .pt, "
        ".ckpt), a name such as mdsr, or 'bicubic' (interpolation, no network)",
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
        "--format", choices=sorted(FORMATS), default=None, help="output format of images (default: dcm for "
        "DICOM input, tiff for TIFF, png otherwise); series stay DICOM, volumes NIfTI"
    )  # fmt: skip
    p.add_argument(
        "--plane", choices=PLANES, default="ij", help="plane a NIfTI volume is enlarged in: two voxel axes "
        "(ij: the first two, default) or an anatomical plane read from the affine"
    )  # fmt: skip
    p.add_argument(
        "--max-pixels",
        type=parse_pixel_limit,
        default=DEFAULT_MAX_PIXELS,
        help="refuse input images (or slices) of more pixels, checked before decoding "
        f"(default {DEFAULT_MAX_PIXELS:.0e}; 0 = no limit)",
    )
    p.add_argument(
        "--window", choices=("auto", "none", "percentile"), default="auto", help="intensity window of the "
        "network's input, one per image or series, mapped back exactly: auto = the one the model was "
        "trained with (default), none, or percentile (0.1-99.9%%, e.g. for a model trained without one)"
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available)")
    p.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="what runs the network on CPU: torch, "
        "onnxruntime (exported once per model and scale, then cached), or auto (default: onnxruntime on "
        "CPUs where it measured faster, those without AVX-512, once exported or for jobs of 5 megapixels "
        "and more; else torch)"
    )  # fmt: skip
    p.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="bf16: faster on a GPU or an AMX CPU, "
        "outputs within a few grey levels of fp32 (python scripts/check_bf16.py prints them); default fp32"
    )  # fmt: skip
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def _prepare_output(out: Path) -> str | None:
    """Create the output folder and try writing in it; why it cannot be used, or None."""
    import tempfile

    from mdrn.io.images import os_error

    if out.exists() and not out.is_dir():
        return f"{out}: -o names a file; give the folder to write the enlarged images into"
    if not out.exists() and out.suffix.lower() in (*IMAGE_SUFFIXES, ".nii", ".gz"):
        return f"{out}: -o takes a folder, not a file name (outputs are named <input>_x<scale>_<model>)"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        bad = next((p for p in (out, *out.parents) if p.exists()), out)
        return str(os_error(err, bad if bad.is_dir() else out))
    return None


@contextlib.contextmanager
def _quiet_readers() -> Iterator[None]:
    """The readers' own notes on a damaged file (pydicom's warnings, tifffile's and nibabel's log lines,
    several lines each) are not printed: an input gets one line, its error, or none."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("tifffile", "nibabel.global")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(pydicom|tifffile|nibabel|PIL)(\.|$)")
        try:
            for logger in loggers:
                logger.setLevel(logging.CRITICAL)
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@quiet_value_warnings()  # pydicom's warnings quote a patient's values
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return 0 if every input was written, 1 if any failed, 2 on a setup error,
    130 if interrupted (Ctrl-C, at any step: loading, opening the inputs, enlarging), 143 on SIGTERM."""
    try:
        with sigterm_stops(), _quiet_readers():
            return _main(argv)
    except KeyboardInterrupt as exc:  # one line, not a traceback; the file being written was not left
        print("\ninterrupted: the files reported as written are complete; no other output", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    set_malloc_reuse(False)  # large buffers go back to the system: bounded memory band after band
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.tile < 0 or (args.overlap is not None and args.overlap < 0):
        print("error: --tile and --overlap must be >= 0", file=sys.stderr)
        return 2
    problem = _prepare_output(args.output)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        net = load_network(args.weights, args.scale)
    except Exception as err:  # noqa: BLE001 - one clear line for any unusable weights
        print(f"error: {error_line(Path(args.weights), err)}", file=sys.stderr)
        return 2
    scales = tuple(getattr(net, "scales", ()))
    if scales and args.scale not in scales:
        print(
            f"error: {args.weights}: the model has no x{args.scale} branch (it serves {scales})",
            file=sys.stderr,
        )
        return 2
    from mdrn.io.dicom import Derivation

    method = describe_method(args.weights, net, args.window)
    method += ", in bf16 arithmetic" if args.precision == "bf16" else ""
    how = Derivation(args.scale, method, model_name(args.weights))
    opts = UpscaleOptions(
        scale=args.scale,
        tile=args.tile or None,
        overlap=args.overlap,
        ensemble=args.ensemble,
        device=device,
        fmt=args.format,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels or None,
        plane=args.plane,
        window=args.window,
        taken=set(),
    )
    items = expand_inputs(args.inputs, args.output, f"_x{args.scale}_{how.model}", opts)
    if not items:
        print("error: no input images found", file=sys.stderr)
        return 2
    try:  # every input was opened above: close them all however the run ends (a volume's copy in /tmp)
        return _run(args, items, net, how, opts, device)
    finally:
        for stack, _ in items:
            if isinstance(stack, Stack):
                stack.close()


def _run(
    args: argparse.Namespace,
    items: list[tuple[Stack | str, Path]],
    net: torch.nn.Module,
    how: Any,
    opts: UpscaleOptions,
    device: str,
) -> int:
    """Enlarge the opened inputs one after the other; the exit code of :func:`main`."""
    try:  # the device's fast path, or ONNX Runtime (exported once); prepared once for every input
        net, runs_on = prepare_network(
            net, device, backend=args.backend, precision=args.precision, scales=(args.scale,),
            job_pixels=job_pixels([stack for stack, _ in items if isinstance(stack, Stack)]),
            note=lambda line: print(line, file=sys.stderr),
        )  # fmt: skip
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"x{args.scale} by {how.method}; run by {runs_on}", file=sys.stdout)
    from tqdm import tqdm

    failed = 0
    total = sum(stack.n_slices if isinstance(stack, Stack) else 1 for stack, _ in items)
    bar = tqdm(total=total, unit="slice", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    for stack, dest in items:
        if isinstance(stack, str):
            failed += 1
            bar.update(1)
            tqdm.write(f"error: {stack}", file=sys.stderr)
            continue
        bar.set_postfix_str(stack.path.name, refresh=False)
        base, slice_errors = bar.n, []

        def progress(done: int, _total: int, base: int = base) -> None:
            bar.update(base + done - bar.n)

        try:
            with stack:
                written = enlarge_stack(net, stack, dest, opts, how, progress=progress, errors=slice_errors)
        except (ValueError, OSError, RuntimeError) as err:
            failed += 1
            tqdm.write(f"error: {error_line(stack.path, err)}", file=sys.stderr)
            continue
        finally:
            bar.update(base + stack.n_slices - bar.n)
        failed += len(slice_errors)
        for file, err in slice_errors:
            tqdm.write(f"error: {error_line(file, err)}", file=sys.stderr)
        if len(written) > 3:
            tqdm.write(f"wrote {len(written)} files of {stack.path} in {written[0].parent}", file=sys.stdout)
        else:
            for path in written:
                tqdm.write(f"wrote {path}", file=sys.stdout)
    bar.close()
    if failed:
        print(f"{failed} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
