"""Local web app for clinicians: open images, DICOM series and NIfTI volumes, enlarge x2/x3/x4, compare, save.

``python -m mdrn.app`` (console script ``mdrn-app``) starts a Gradio page on http://127.0.0.1:7860 (local
only unless ``--host`` is given; no share link, analytics off, nothing is sent anywhere). The default model
is the shipped one (:data:`mdrn.weights.DEFAULT_MODEL`); ``bicubic`` is offered as interpolation with no
network; the list holds only these, the official models already downloaded and the files given with
``--weights``, unless ``--allow-any-weights`` lets the user type a path. The page shows the input
(bicubic-enlarged) and the result with a before/after slider, a slice slider for series and volumes, a
zoom, window/level for 12-16 bit images, and the detail the network adds over bicubic as a colour overlay
(red: brighter than bicubic, blue: darker). Enlarging runs the command line's own code
(:func:`mdrn.clinical.enlarge.enlarge_stack`) into a private folder of the browser session; **Save** copies
the results (named ``<stem>_x<scale>_<model>``; a series stays one derived DICOM series) to the chosen folder.

Privacy: uploads, results and the pictures shown live in one private temporary folder of the app
(``GRADIO_TEMP_DIR``); a session's files are deleted when its browser tab closes, and the whole folder when
the app stops (Ctrl-C or SIGTERM), so no patient data stays behind in temporary folders.
The UI is built by :func:`build_app`, testable without launching.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402  (request annotations of the handlers must resolve at module level)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from mdrn.clinical.display import Window, auto_window, display_array  # noqa: E402
from mdrn.clinical.enlarge import (  # noqa: E402
    BICUBIC,
    UpscaleOptions,
    describe_method,
    enlarge_stack,
    load_network,
    model_name,
    upscale_image,
)
from mdrn.clinical.inputs import Stack, open_files, open_inputs  # noqa: E402
from mdrn.io.images import DEFAULT_MAX_PIXELS, ImageData, ImageReadError, atomic_write  # noqa: E402
from mdrn.models import Bicubic  # noqa: E402
from mdrn.perf import set_malloc_reuse  # noqa: E402

__all__ = [
    "Result",
    "Session",
    "available_models",
    "build_app",
    "detail_overlay",
    "main",
    "process_files",
    "render",
    "save_results",
]

#: Scales offered in the page.
SCALES = (2, 3, 4)
#: Default upload limit.
DEFAULT_MAX_FILE_SIZE = "200mb"
#: Pictures smaller than this (pixels, longer side) are enlarged by whole pixels for display.
MIN_VIEW = 512
#: Zoom factors offered.
ZOOMS = ("1x", "2x", "4x", "8x")


@dataclass
class Result:
    """One enlarged input: its slices in and out (read from disk on demand) and the files to save."""

    name: str
    source: Stack
    output: Stack
    files: list[Path]
    root: Path  # the session folder the files sit in; saving keeps their layout below it
    scale: int
    model: str

    @property
    def n_slices(self) -> int:
        """Number of slices (1 for an image)."""
        return self.source.n_slices

    def close(self) -> None:
        """Release the stacks (volume mappings)."""
        self.source.close()
        self.output.close()


@dataclass
class Session:
    """One browser tab: its private folder, its uploads and its results (deleted when the tab closes)."""

    folder: Path
    uploads: set[Path] = field(default_factory=set)
    results: list[Result] = field(default_factory=list)
    runs: int = 0
    views: int = 0

    def clear(self) -> None:
        """Close the results and delete every file of the session (uploads included)."""
        for r in self.results:
            r.close()
        self.results = []
        for path in self.uploads:
            path.unlink(missing_ok=True)
            _remove_empty(path.parent)
        self.uploads.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def available_models(extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, value) model choices: the shipped models, bicubic, downloaded official models, ``extra``."""
    from mdrn.weights import DEFAULT_MODEL, OFFICIAL_URLS, PRETRAINED_DIR, SHIPPED_MODELS, cache_dir

    shipped = sorted(SHIPPED_MODELS, key=lambda n: n != DEFAULT_MODEL)
    choices = [
        (f"{n} (shipped model)", n) for n in shipped if (PRETRAINED_DIR / f"{n}.safetensors").is_file()
    ]
    choices.append((f"{BICUBIC} (interpolation, no network)", BICUBIC))
    choices += [(n, n) for n in OFFICIAL_URLS if (cache_dir() / f"{n}.safetensors").is_file()]
    values = {v for _, v in choices}
    choices += [(str(p), str(p)) for p in extra if str(p) not in values]
    return choices


@lru_cache(maxsize=4)
def _network(weights: str, scale: int) -> nn.Module:
    """Cached ``load_network`` (one load per weights/scale)."""
    return load_network(weights, scale)


def _error_line(path: Path, err: BaseException) -> str:
    """One line naming the file (by its name only: upload folders are private) and the problem."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    text = text.replace(str(path), path.name)
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
) -> tuple[list[Result], list[str]]:
    """Enlarge the files (images, DICOM slices grouped into series, volumes) into ``out_dir``.

    Returns the results and one error line per input that failed (named).
    """
    net = _network(str(weights), int(scale))
    scales = tuple(getattr(net, "scales", ()))
    if scales and scale not in scales:
        raise ValueError(f"{weights}: the model has no x{scale} branch (it serves {scales})")
    from mdrn.io.dicom import Derivation

    model = model_name(weights)
    how = Derivation(int(scale), describe_method(weights, net), model)
    opts = UpscaleOptions(
        scale=int(scale), ensemble=ensemble, device=device, max_pixels=max_pixels, plane=plane
    )
    out_dir = Path(out_dir)
    problems: list[ImageReadError] = []
    stacks = open_files([Path(p) for p in paths], plane=plane, max_pixels=max_pixels, errors=problems)
    errors = [_error_line(e.path, e) for e in problems]
    results: list[Result] = []
    for i, stack in enumerate(stacks):
        dest = out_dir / f"{stack.name}_x{scale}_{model}" if stack.kind == "series" else out_dir

        def report(done: int, total: int, i: int = i, stack: Stack = stack) -> None:
            if progress is not None:
                progress((done, total), desc=f"{stack.name} ({i + 1}/{len(stacks)})")

        slice_errors: list[tuple[Path, Exception]] = []
        try:
            files = enlarge_stack(net, stack, dest, opts, how, progress=report, errors=slice_errors)
            if not files:
                raise slice_errors[0][1] if slice_errors else ValueError("nothing was written")
            where = dest if stack.kind == "series" else files[0]
            output = open_inputs(where, plane=plane, max_pixels=None)[0]
        except (ValueError, OSError, RuntimeError) as err:
            stack.close()
            errors.append(_error_line(stack.path, err))
            continue
        errors += [_error_line(file, err) for file, err in slice_errors]
        if stack.kind == "volume":  # show the output in the input's value mapping
            volume = output.volume
            volume.bit_depth, volume.signed_offset, volume.range = (
                stack.volume.bit_depth,
                stack.volume.signed_offset,
                stack.volume.range,
            )
        name = stack.name if stack.kind == "series" else stack.path.name
        results.append(Result(name, stack, output, files, out_dir, int(scale), model))
    return results, errors


def _window(image: ImageData, center: float | None, width: float | None) -> Window:
    """The display window: the user's if given (width > 0), else the input's automatic one."""
    if center is not None and width:
        return Window(float(center), float(width))
    return auto_window(
        image.array, bit_depth=image.bit_depth, dicom=image.dicom, signed_offset=image.signed_offset
    )


def _show(image: ImageData, array: np.ndarray, window: Window) -> np.ndarray:
    """Display pixels of one array in the input's terms (shared window, MONOCHROME1 inverted)."""
    return display_array(
        array,
        bit_depth=image.bit_depth,
        dicom=image.dicom,
        photometric=image.photometric,
        signed_offset=image.signed_offset,
        window=window,
    )


def _zoom(arr: np.ndarray, zoom: str, cx: float, cy: float) -> np.ndarray:
    """Crop ``1/zoom`` of the picture around (cx, cy) percent and enlarge it back (nearest neighbour)."""
    z = int(str(zoom).rstrip("x") or 1)
    if z <= 1:
        return arr
    h, w = arr.shape[:2]
    ch, cw = max(1, h // z), max(1, w // z)
    y0 = int(np.clip(cy / 100 * h - ch / 2, 0, h - ch))
    x0 = int(np.clip(cx / 100 * w - cw / 2, 0, w - cw))
    crop = arr[y0 : y0 + ch, x0 : x0 + cw]
    return np.repeat(np.repeat(crop, z, axis=0), z, axis=1)


def detail_overlay(image: ImageData, output: np.ndarray, bicubic: np.ndarray, window: Window) -> np.ndarray:
    """The network's added detail (output minus bicubic) in a diverging colormap over the gray output."""
    from matplotlib import colormaps

    diff = (output.astype(np.float64) - bicubic.astype(np.float64)) / float(image.peak)
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    base = _show(image, output, window).astype(np.float64) / 255.0
    if base.ndim == 3:
        base = base.mean(axis=2)
    lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    rgba = colormaps["RdBu_r"](np.clip(diff / lim, -1, 1) * 0.5 + 0.5)
    alpha = np.clip(np.abs(diff) / lim, 0, 1)[..., None] * 0.85
    out = base[..., None] * (1 - alpha) + rgba[..., :3] * alpha
    return np.rint(out * 255).astype(np.uint8)


def render(
    result: Result,
    index: int,
    center: float | None,
    width: float | None,
    zoom: str,
    cx: float,
    cy: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Before (bicubic), after (result) and detail overlay pictures of slice ``index``, windowed, zoomed."""
    i = min(max(int(index), 0), result.n_slices - 1)
    image = result.source.slice(i)
    output = result.output.slice(i).array
    opts = UpscaleOptions(scale=result.scale, tile=None)
    bicubic = upscale_image(Bicubic(scales=(result.scale,)), image, opts)
    win = _window(image, center, width)
    views = [_zoom(a, zoom, cx, cy) for a in (_show(image, bicubic, win), _show(image, output, win))]
    views.append(_zoom(detail_overlay(image, output, bicubic, win), zoom, cx, cy))
    # small pictures are shown with whole-pixel enlargement (display only) so that they can be seen
    k = max(1, MIN_VIEW // max(views[0].shape[:2]))
    before, after, overlay = (np.repeat(np.repeat(v, k, axis=0), k, axis=1) if k > 1 else v for v in views)
    return before, after, overlay


def slice_info(result: Result, index: int) -> str:
    """What is shown: the slice number and, for DICOM, the file and its position along the normal."""
    i = min(max(int(index), 0), result.n_slices - 1)
    if result.n_slices == 1:
        return result.name
    text = f"{result.name}: slice {i + 1} of {result.n_slices}"
    if result.source.kind == "series":
        image = result.source.slice(i)
        where = image.dicom.get("SliceLocation", None) if image.dicom is not None else None
        text += f" ({result.source.files[i].name}" + (
            f", location {float(where):g} mm)" if where is not None else ")"
        )
    return text


def _copy(src: Path, dest: Path, overwrite: bool) -> Path:
    return atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp), overwrite=overwrite)


def save_results(
    results: Sequence[Result], folder: str | os.PathLike[str], *, overwrite: bool = False
) -> list[str]:
    """Copy every result's files into ``folder`` (a series as one subfolder); return one line per result."""
    lines = []
    for r in results:
        done, failed = [], []
        for file in r.files:
            dest = Path(folder) / file.relative_to(r.root)
            try:
                done.append(_copy(file, dest, overwrite))
            except (ValueError, OSError) as err:
                failed.append(f"not saved: {err}")
        lines += failed
        if len(done) == 1:
            out = r.output.slice(0)
            lines.append(f"saved {done[0]} ({out.width}x{out.height}, {out.bit_depth}-bit)")
        elif done:
            lines.append(f"saved {len(done)} files of {r.name} in {done[0].parent}")
    return lines


def _describe(r: Result) -> str:
    """One status line for a result."""
    image, out = r.source.slice(0), r.output.slice(0)
    kind = "gray" if image.channels == 1 else "RGB"
    what = f"{r.name} ({r.n_slices} slices)" if r.n_slices > 1 else r.name
    line = f"{what}: {image.width}x{image.height} -> {out.width}x{out.height}, {image.bit_depth}-bit {kind}"
    if image.alpha is not None:
        line += ", alpha kept (enlarged with bicubic)"
    return line


class Sessions:
    """The app's sessions by Gradio session hash, each with a private folder under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Session:
        """The session of ``key`` (created on first use)."""
        with self._lock:
            if key not in self._sessions:
                folder = self.root / f"session-{len(self._sessions)}-{os.urandom(4).hex()}"
                self._sessions[key] = Session(folder)
            return self._sessions[key]

    def close(self, key: str) -> None:
        """Delete everything of one session (its tab closed)."""
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            session.clear()

    def close_all(self) -> None:
        """Delete everything of every session (the app stops)."""
        for key in list(self._sessions):
            self.close(key)


def _paths(files: Any) -> list[Path]:
    """File paths of a Gradio File value (one, many or none)."""
    items = files if isinstance(files, list) else [files] if files else []
    return [Path(f if isinstance(f, str) else getattr(f, "name", str(f))) for f in items]


def build_app(
    models: Sequence[tuple[str, str] | str] | None = None,
    *,
    save_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    allow_any_weights: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    pacs: Any = None,
) -> Any:
    """Build the Gradio Blocks of the app (not launched). ``models``: (label, value) pairs or values;
    ``pacs``: a :class:`mdrn.pacs.dicomweb.PacsClient` adds the PACS panel (:mod:`mdrn.pacs.app_panel`)."""
    from gradio.utils import get_upload_folder

    choices = [m if isinstance(m, tuple) else (str(m), str(m)) for m in (models or available_models())]
    default_dir = str(Path(save_dir) if save_dir else Path.cwd() / "mdrn_output")
    sessions = Sessions(Path(get_upload_folder()) / "mdrn")

    def session_of(request: gr.Request | None) -> Session:
        return sessions.get(getattr(request, "session_hash", None) or "local")

    def on_upload(files, folder, request: gr.Request):  # noqa: ANN001, ANN202
        session_of(request).uploads.update(_paths(files) + _paths(folder))

    def views(session: Session, result: Result, index: int, center, width, zoom, cx, cy):  # noqa: ANN001, ANN202
        from PIL import Image

        session.views += 1
        folder = session.folder / "view"
        folder.mkdir(parents=True, exist_ok=True)
        pictures = render(result, index, center, width, zoom, cx, cy)
        out = []
        for name, picture in zip(("before", "after", "detail"), pictures):
            path = folder / f"{session.views:06d}-{name}.png"
            Image.fromarray(picture).save(path, compress_level=1)
            out.append(str(path))
        for old in sorted(folder.iterdir())[:-9]:  # only the last pictures shown are kept
            old.unlink(missing_ok=True)
        return (out[0], out[1]), out[2], slice_info(result, index)

    def on_enlarge(
        files,
        folder,
        scale_label,
        model,
        ensemble,
        center,
        width,
        zoom,
        cx,
        cy,
        request: gr.Request,
        progress=gr.Progress(),
    ):  # noqa: ANN001, ANN202, B008, E501
        session = session_of(request)
        paths = _paths(files) + _paths(folder)
        session.uploads.update(paths)
        empty = gr.update(choices=[], value=None)
        no_slices = gr.update(visible=False, value=1, maximum=1)
        if not paths:
            gr.Warning("Open one or more images, a series folder or a volume first.")
            return None, None, "No image opened.", empty, no_slices, ""
        scale = int(str(scale_label).lstrip("x"))
        for r in session.results:
            r.close()
        session.runs += 1
        out_dir = session.folder / f"run-{session.runs}"
        try:
            results, errors = process_files(
                paths, scale, model or BICUBIC, out_dir, ensemble=bool(ensemble), device=device,
                max_pixels=max_pixels, progress=progress,
            )  # fmt: skip
        except Exception as err:  # noqa: BLE001 - any model problem is shown in the page
            msg = f"Model {model!r} cannot be used: {str(err).splitlines()[0] if str(err) else err}"
            gr.Warning(msg)
            return None, None, msg, empty, no_slices, ""
        session.results = results
        for e in errors:
            gr.Warning(e)
        n_inputs = len(results) + len(errors)
        status = [f"x{scale} with {model}: {len(results)} of {n_inputs} image(s) enlarged."]
        status.append(f"Method: {describe_method(model, _network(str(model), scale))}.")
        status += [_describe(r) for r in results] + [f"error: {e}" for e in errors]
        names = [f"{i + 1}. {r.name}" for i, r in enumerate(results)]
        pair, overlay, info = (
            views(session, results[0], 0, center, width, zoom, cx, cy) if results else (None, None, "")
        )
        n = results[0].n_slices if results else 1
        slider = gr.update(visible=n > 1, value=1, maximum=max(n, 2))
        listed = gr.update(choices=names, value=names[0] if names else None)
        return pair, overlay, "\n".join(status), listed, slider, info

    def on_view(shown, index, center, width, zoom, cx, cy, request: gr.Request):  # noqa: ANN001, ANN202
        session = session_of(request)
        if not session.results:
            return None, None, ""
        pick = int(str(shown).split(".")[0]) - 1 if shown else 0
        result = session.results[min(max(pick, 0), len(session.results) - 1)]
        return views(session, result, int(index or 1) - 1, center, width, zoom, cx, cy)

    def on_shown(shown, center, width, zoom, cx, cy, request: gr.Request):  # noqa: ANN001, ANN202
        session = session_of(request)
        if not session.results:
            return None, None, "", gr.update(visible=False)
        pick = int(str(shown).split(".")[0]) - 1 if shown else 0
        result = session.results[min(max(pick, 0), len(session.results) - 1)]
        pair, overlay, info = views(session, result, 0, center, width, zoom, cx, cy)
        n = result.n_slices
        return pair, overlay, info, gr.update(visible=n > 1, value=1, maximum=max(n, 2))

    def on_save(folder, overwrite, request: gr.Request):  # noqa: ANN001, ANN202
        results = session_of(request).results
        if not results:
            gr.Warning("Nothing to save yet: enlarge an image first.")
            return "Nothing to save yet."
        lines = save_results(results, folder or default_dir, overwrite=bool(overwrite))
        for line in lines:
            if line.startswith("not saved"):
                gr.Warning(line)
        return "\n".join(lines)

    def on_close(request: gr.Request):  # noqa: ANN202
        sessions.close(getattr(request, "session_hash", None) or "local")

    with gr.Blocks(title="mdrn: medical image super-resolution", analytics_enabled=False) as app:
        gr.Markdown(
            "## mdrn: enlarge medical images\n"
            "Open images (PNG, JPEG, TIFF, BMP, DICOM; gray and 16-bit kept), a DICOM series folder or a "
            "NIfTI volume, choose the magnification and the model, then **Enlarge**. Runs on this computer "
            "only; nothing is uploaded anywhere, and the files opened are deleted from the app when this tab "
            "closes."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                files = gr.File(
                    label="Images or volumes (PNG, JPEG, TIFF, BMP, DICOM, NIfTI)",
                    file_count="multiple",
                    type="filepath",
                    elem_id="files",
                )
                folder_in = gr.File(
                    label="Or a DICOM series folder",
                    file_count="directory",
                    type="filepath",
                    elem_id="series",
                )
                scale = gr.Radio(
                    [f"x{s}" for s in SCALES], value="x2", label="Magnification", elem_id="scale"
                )
                model = gr.Dropdown(
                    choices=choices,
                    value=choices[0][1],
                    allow_custom_value=allow_any_weights,
                    label="Model" + (" (or a weights file path)" if allow_any_weights else ""),
                    elem_id="model",
                )
                ensemble = gr.Checkbox(label="x8 self-ensemble (slower, slightly better)", value=False)
                run = gr.Button("Enlarge", variant="primary", elem_id="enlarge")
                status = gr.Textbox(label="Status", lines=4, interactive=False, elem_id="status")
                gr.Markdown("**Display** (does not change the saved data)")
                with gr.Row():
                    center = gr.Number(label="Window center (0 = auto)", value=0)
                    width = gr.Number(label="Window width (0 = auto)", value=0)
                zoom = gr.Radio(list(ZOOMS), value="1x", label="Zoom")
                with gr.Row():
                    cx = gr.Slider(0, 100, value=50, step=1, label="Zoom centre x (%)")
                    cy = gr.Slider(0, 100, value=50, step=1, label="Zoom centre y (%)")
                folder = gr.Textbox(label="Save to folder", value=default_dir, elem_id="folder")
                overwrite = gr.Checkbox(label="Overwrite existing files", value=False)
                save = gr.Button("Save", elem_id="save")
                saved = gr.Textbox(label="Saved", lines=2, interactive=False, elem_id="saved")
                if pacs is not None:
                    from mdrn.pacs.app_panel import pacs_panel

                    pacs_panel(pacs, files=files, session_of=session_of)
            with gr.Column(scale=2):
                shown = gr.Dropdown(choices=[], label="Showing", elem_id="shown")
                slice_no = gr.Slider(1, 2, value=1, step=1, label="Slice", visible=False, elem_id="slice")
                info = gr.Textbox(label="Shown", lines=1, interactive=False, elem_id="slice_info")
                view = dict(type="filepath", format="png", interactive=False)  # lossless PNG to the browser
                slider = gr.ImageSlider(
                    label="Before (bicubic) / after (model): drag the bar",
                    max_height=640,
                    elem_id="slider",
                    **view,
                )
                overlay = gr.Image(
                    label="Detail added by the model over bicubic (red brighter, blue darker)",
                    height=480,
                    elem_id="overlay",
                    **view,
                )
        display = [center, width, zoom, cx, cy]
        for upload in (files, folder_in):
            upload.upload(on_upload, inputs=[files, folder_in], outputs=None)
        run.click(
            on_enlarge,
            inputs=[files, folder_in, scale, model, ensemble, *display],
            outputs=[slider, overlay, status, shown, slice_no, info],
        )
        shown.input(on_shown, inputs=[shown, *display], outputs=[slider, overlay, info, slice_no])
        shown_views = dict(inputs=[shown, slice_no, *display], outputs=[slider, overlay, info])
        slice_no.change(on_view, trigger_mode="always_last", **shown_views)
        zoom.change(on_view, **shown_views)
        for number in (center, width):
            number.submit(on_view, **shown_views)
        for pos in (cx, cy):
            pos.release(on_view, **shown_views)
        save.click(on_save, inputs=[folder, overwrite], outputs=[saved])
        app.unload(on_close)
    app.mdrn_sessions = sessions  # for the exit handler and tests
    return app


def _private_temp() -> Path:
    """A private temporary folder for everything the app stores (uploads, results, pictures)."""
    root = Path(tempfile.mkdtemp(prefix="mdrn-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(root)
    (root / "tmp").mkdir()
    tempfile.tempdir = str(root / "tmp")  # e.g. decompressed .nii.gz volumes
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Start the app on 127.0.0.1 (or ``--host``) with an upload size limit; never a share link."""
    from mdrn.upscale import parse_pixel_limit

    p = argparse.ArgumentParser(prog="mdrn-app", description="Local web app to enlarge medical images.")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer only)"
    )
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--weights", nargs="*", default=[], help="extra weights files to offer as models")
    p.add_argument(
        "--allow-any-weights",
        action="store_true",
        help="let the user type any weights file path as the model",
    )
    p.add_argument("--save-dir", default=None, help="default folder for saved results")
    p.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE, help="upload limit (e.g. 200mb)")
    p.add_argument(
        "--max-pixels",
        type=parse_pixel_limit,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images (or slices) of more pixels (default {DEFAULT_MAX_PIXELS:.0e}; 0 = no limit)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    from mdrn.pacs import app_panel

    app_panel.add_arguments(p)
    args = p.parse_args(argv)
    try:
        pacs = app_panel.connect_from_args(args)
    except app_panel.PacsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    set_malloc_reuse(False)  # large buffers go back to the system: bounded memory band after band
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    root = _private_temp()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    app = None
    try:
        app = build_app(
            available_models(args.weights), save_dir=args.save_dir, device=device,
            allow_any_weights=args.allow_any_weights, max_pixels=args.max_pixels or None, pacs=pacs,
        )  # fmt: skip
        app.queue().launch(
            server_name=args.host,
            server_port=args.port,
            share=False,
            max_file_size=args.max_file_size,
            inbrowser=False,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        if app is not None:
            app.mdrn_sessions.close_all()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops the app like Ctrl-C does, so that its temporary folder is deleted."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
