"""The app's enlarging runs and their results: files in, enlarged stacks out, saved where the user says.

:func:`process_files` enlarges what was opened (images, DICOM slices grouped into series, volumes) with
the command line's own engine (:func:`mdrn.clinical.enlarge.enlarge_stack`), the network prepared once per
model, scale and backend (:func:`mdrn.clinical.runtime.prepare_network`). It reports progress per slice
(``file k of n: name, slice i of m``) and hands each :class:`Result` over as soon as its file is done, so
the app shows it while the next one is enlarged. :func:`save_results` copies results where the user
says. Messages name the app's controls, not the command line's flags.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from mdrn.clinical.enlarge import UpscaleOptions, describe_method, enlarge_stack, load_network, model_name
from mdrn.clinical.inputs import Stack, open_files, open_inputs
from mdrn.clinical.inputs import job_pixels as input_pixels
from mdrn.clinical.viewer import SliceCache, SliceView, make_view
from mdrn.io.images import DEFAULT_MAX_PIXELS, ImageReadError, atomic_write

__all__ = ["Result", "describe_result", "error_line", "network", "process_files", "save_results"]


@dataclass
class Result:
    """One enlarged input: its slices in and out (read from disk on demand, kept once shown) and its files."""

    name: str
    source: Stack
    output: Stack
    files: list[Path]
    root: Path  # the session folder the files sit in; saving keeps their layout below it
    scale: int
    model: str
    views: SliceCache = field(default_factory=SliceCache, repr=False)

    @property
    def n_slices(self) -> int:
        """Number of slices (1 for an image)."""
        return self.source.n_slices

    def view(self, index: int) -> SliceView:
        """Slice ``index``'s arrays for display (read and kept on first use)."""
        i = min(max(int(index), 0), self.n_slices - 1)
        return self.views.get(
            i, lambda k: make_view(self.source.slice(k), self.output.slice(k).array, self.scale)
        )

    def close(self) -> None:
        """Release the stacks (volume mappings) and the kept slices."""
        self.views.clear()
        self.source.close()
        self.output.close()


@lru_cache(maxsize=4)
def _loaded(weights: str, scale: int) -> nn.Module:
    """Cached ``load_network`` (one load per weights/scale)."""
    return load_network(weights, scale)


_prepared: dict[tuple[Any, ...], tuple[nn.Module, str]] = {}
_prepared_lock = threading.Lock()


def network(
    weights: str,
    scale: int,
    *,
    device: str | None = None,
    backend: str = "auto",
    precision: str = "fp32",
    job_pixels: int = 0,
    note: Callable[[str], None] | None = None,
) -> tuple[nn.Module, str]:
    """The network prepared to run (once per weights, scale, device, backend and precision), and on what."""
    from mdrn.clinical.runtime import AUTO_EXPORT_PIXELS, prepare_network

    key = (str(weights), int(scale), device, backend, precision)
    with _prepared_lock:
        done = _prepared.get(key)
        upgrade = backend == "auto" and done is not None and "ONNX" not in done[1]
        if done is None or (upgrade and job_pixels >= AUTO_EXPORT_PIXELS):
            _prepared[key] = prepare_network(
                _loaded(str(weights), int(scale)), device, backend=backend, precision=precision,
                scales=(int(scale),), job_pixels=job_pixels, note=note,
            )  # fmt: skip
        return _prepared[key]


def app_words(text: str) -> str:
    """A message of the engine in the app's terms: its controls and start options, not the CLI's flags."""
    text = text.replace(
        "(raise it with --max-pixels if the image is genuine)",
        "(this app's limit; to open larger images start it with: mdrn-app --max-pixels 2e8)",
    )
    for flag in ("(use --overwrite to replace it)", "(pass overwrite=True / --overwrite to replace it)"):
        text = text.replace(flag, "(tick 'Overwrite existing files' to replace it)")
    return text


def error_line(path: Path, err: BaseException) -> str:
    """One line naming the file (by its name only: upload folders are private) and the problem."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    text = app_words(text.replace(str(path.parent) + os.sep, "").replace(str(path), path.name))
    return text if path.name in text else f"{path.name}: {text}"


def process_files(
    paths: Sequence[str | os.PathLike[str]],
    scale: int,
    weights: str,
    out_dir: str | os.PathLike[str],
    *,
    ensemble: bool = False,
    device: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    plane: str = "ij",
    progress: Any = None,
    backend: str = "auto",
    precision: str = "fp32",
    series_name: str | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> tuple[list[Result], list[str]]:
    """Enlarge the files (images, DICOM slices grouped into series, volumes) into ``out_dir``.

    ``progress((done, total), desc=text)`` is called after each slice (``text``: file k of n, slice i of
    m); ``on_result`` receives each result as soon as its file is done. ``series_name`` names a DICOM
    series opened as a folder (the folder's name; else the series' description); a second input of the
    same name is written as ``<name>-2``. Returns the results and one error line per input that failed.
    """
    plain = _loaded(str(weights), int(scale))
    scales = tuple(getattr(plain, "scales", ()))
    if scales and scale not in scales:
        raise ValueError(f"{weights}: the model has no x{scale} branch (it serves {scales})")
    from mdrn.io.dicom import Derivation

    model = model_name(weights)
    method = describe_method(weights, plain) + (", in bf16 arithmetic" if precision == "bf16" else "")
    how = Derivation(int(scale), method, model)
    opts = UpscaleOptions(
        scale=int(scale), ensemble=ensemble, device=device, max_pixels=max_pixels, plane=plane
    )
    out_dir = Path(out_dir)
    problems: list[ImageReadError] = []
    stacks = open_files([Path(p) for p in paths], plane=plane, max_pixels=max_pixels, errors=problems)
    label = Path(series_name or "").name  # sent by the browser: a name, never a path out of ``out_dir``
    taken: set[str] = set()
    for stack in stacks:
        if label not in ("", ".", "..") and stack.kind == "series":
            stack.label = label
        name, k = stack.name, 1
        while name in taken:  # inputs of one name (uploads from two folders): distinct outputs
            k += 1
            name = f"{stack.name}-{k}"
        stack.label = name if name != stack.name else stack.label
        taken.add(name)
    errors = [error_line(e.path, e) for e in problems]

    def note(line: str) -> None:
        if progress is not None:
            progress(None, desc=line)

    results: list[Result] = []
    try:  # stopped part way (the caller's progress raised, Ctrl-C): nothing stays open
        net, _ = network(str(weights), int(scale), device=device, backend=backend, precision=precision,
                         job_pixels=input_pixels(stacks), note=note)  # fmt: skip
        for i, stack in enumerate(stacks):
            dest = out_dir / f"{stack.name}_x{scale}_{model}" if stack.kind == "series" else out_dir
            shown_name = stack.name if stack.kind == "series" else stack.path.name
            where_text = f"file {i + 1} of {len(stacks)}: {shown_name}"

            def report(done: int, total: int, where_text: str = where_text) -> None:
                if progress is not None:
                    text = f"{where_text}, slice {done} of {total}" if total > 1 else f"{where_text} done"
                    progress((done, total), desc=text)

            if progress is not None:
                first = f", slice 1 of {stack.n_slices}" if stack.n_slices > 1 else ""
                progress((0, stack.n_slices), desc=where_text + first)
            slice_errors: list[tuple[Path, Exception]] = []
            try:
                files = enlarge_stack(net, stack, dest, opts, how, progress=report, errors=slice_errors)
                if not files:
                    raise slice_errors[0][1] if slice_errors else ValueError("nothing was written")
                where = dest if stack.kind == "series" else files[0]
                output = open_inputs(where, plane=plane, max_pixels=None)[0]
            except (ValueError, OSError, RuntimeError) as err:
                stack.close()
                errors.append(error_line(stack.path, err))
                continue
            errors += [error_line(file, err) for file, err in slice_errors]
            if stack.kind == "volume":  # show the output in the input's value mapping
                volume = output.volume
                volume.bit_depth, volume.signed_offset, volume.range = (
                    stack.volume.bit_depth,
                    stack.volume.signed_offset,
                    stack.volume.range,
                )
            name = stack.name if stack.kind == "series" else stack.path.name
            result = Result(name, stack, output, files, out_dir, int(scale), model)
            results.append(result)
            if on_result is not None:
                on_result(result)
    except BaseException:
        for r in results:
            r.close()
        for stack in stacks:
            stack.close()
        raise
    return results, errors


def _copy(src: Path, dest: Path, overwrite: bool) -> Path:
    return atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp), overwrite=overwrite)


def save_results(
    results: Sequence[Result], folder: str | os.PathLike[str], *, overwrite: bool = False
) -> list[str]:
    """Copy every result's files into ``folder`` (a series as one subfolder); return one line per result."""
    lines = []
    for r in results:
        done, failed, existing = [], [], []
        for file in r.files:
            dest = Path(folder) / file.relative_to(r.root)
            try:
                done.append(_copy(file, dest, overwrite))
            except FileExistsError:
                existing.append(dest)
            except (ValueError, OSError) as err:
                failed.append(f"not saved: {app_words(str(err))}")
        if existing:
            what = existing[0].name if len(existing) == 1 else f"{len(existing)} files of {r.name}"
            failed.append(
                f"not saved: {what} already in {existing[0].parent} (tick 'Overwrite existing files' to "
                "replace, or choose another 'Save to folder')"
            )
        lines += failed
        if len(done) == 1:
            out = r.output.slice(0)
            lines.append(f"saved {done[0]} ({out.width}x{out.height}, {out.bit_depth}-bit)")
        elif done:
            lines.append(f"saved {len(done)} files of {r.name} in {done[0].parent}")
    return lines


def describe_result(r: Result) -> str:
    """One status line for a result."""
    image, out = r.source.slice(0), r.output.slice(0)
    kind = "gray" if image.channels == 1 else "RGB"
    what = f"{r.name} ({r.n_slices} slices)" if r.n_slices > 1 else r.name
    line = f"{what}: {image.width}x{image.height} -> {out.width}x{out.height}, {image.bit_depth}-bit {kind}"
    if image.alpha is not None:
        line += ", alpha kept (enlarged with bicubic)"
    return line
