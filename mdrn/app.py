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
import queue  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

try:  # request annotations of the handlers must resolve at module level
    import gradio as gr
except ImportError as _err:  # mdrn-app says what to install, in one line (main)
    gr = None
    _GRADIO_MISSING: str | None = f"the app needs gradio ({_err}): pip install 'mdrn[app]'"
else:
    _GRADIO_MISSING = None
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mdrn.clinical import viewer  # noqa: E402
from mdrn.clinical.enlarge import BICUBIC, describe_method  # noqa: E402
from mdrn.clinical.results import (  # noqa: E402
    Result,
    describe_result,
    network,
    process_files,
    save_results,
)
from mdrn.clinical.runtime import BACKENDS, PRECISIONS, precision_problem  # noqa: E402
from mdrn.clinical.viewer import ZOOMS, detail_overlay  # noqa: E402
from mdrn.io.dicom import quiet_value_warnings  # noqa: E402
from mdrn.io.images import DEFAULT_MAX_PIXELS  # noqa: E402
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
    "slice_info",
]

#: Scales offered in the page.
SCALES = (2, 3, 4)
#: Default upload limit.
DEFAULT_MAX_FILE_SIZE = "200mb"
#: The page's script: the name of a folder opened with the folder picker (the browser knows it, the upload
#: does not carry it), so that a series is named after its folder.
_FOLDER_NAME_JS = """
<script>
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!input || !input.matches || !input.matches("#series input[type=file]") || !input.files) return;
  const first = input.files.length ? (input.files[0].webkitRelativePath || "") : "";
  const box = document.querySelector("#series_name textarea, #series_name input");
  if (!box) return;
  box.value = first.includes("/") ? first.split("/")[0] : "";
  box.dispatchEvent(new Event("input", { bubbles: true }));
}, true);
</script>
"""
_HIDDEN_CSS = "#series_name { display: none !important; }"


@dataclass
class Session:
    """One browser tab: its private folder, its uploads and its results (deleted when the tab closes)."""

    folder: Path
    uploads: set[Path] = field(default_factory=set)
    results: list[Result] = field(default_factory=list)
    runs: int = 0
    views: int = 0
    shown: tuple[Any, ...] | None = None  # (result, slice index, centre, width, zoom, cx, cy) last shown
    closed: threading.Event = field(default_factory=threading.Event)  # the tab closed: a run stops

    def clear(self) -> None:
        """Close the results and delete every file of the session (uploads included); a run in progress
        stops after its current slice and deletes what it wrote (:func:`enlarge_in_background`)."""
        self.closed.set()
        for r in self.results:
            r.close()
        self.results = []
        for path in self.uploads:
            path.unlink(missing_ok=True)
            _remove_empty(path.parent)
        self.uploads.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


class TabClosed(Exception):
    """The session's tab closed while its run was enlarging (raised from the run's progress report)."""


def enlarge_in_background(session: Session, events: queue.Queue, **run: Any) -> threading.Thread:
    """Start :func:`process_files` (keyword arguments ``run``) in a thread that reports to ``events``:
    ("progress", text), ("result", Result), ("done", (results, errors)) or ("error", exception). If the
    session's tab closes meanwhile, the run stops after its current slice and its files are deleted."""

    def progress(_value: Any, desc: str = "") -> None:
        if session.closed.is_set():
            raise TabClosed
        events.put(("progress", desc))

    def on_result(result: Result) -> None:
        if session.closed.is_set():
            result.close()
            raise TabClosed
        events.put(("result", result))

    def work() -> None:
        try:
            events.put(("done", process_files(**run, progress=progress, on_result=on_result)))
        except TabClosed:
            pass
        except Exception as err:  # noqa: BLE001 - any model problem is shown in the page
            events.put(("error", err))
        finally:
            if session.closed.is_set():  # what the run wrote after the tab's files were deleted
                shutil.rmtree(session.folder, ignore_errors=True)

    thread = threading.Thread(target=work, daemon=True, name="mdrn-enlarge")
    thread.start()
    return thread


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


def render(
    result: Result, index: int, center: float | None, width: float | None, zoom: str, cx: float, cy: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bicubic and model pictures (labelled) and the detail overlay of slice ``index``, windowed, zoomed."""
    return viewer.render(result.view(index), result.scale, result.model, center, width, zoom, cx, cy)


def slice_info(result: Result, index: int) -> str:
    """What is shown: the slice number and, for DICOM, the file and its position along the normal."""
    i = min(max(int(index), 0), result.n_slices - 1)
    series = result.source.kind == "series" and result.n_slices > 1
    file, image = (result.source.files[i], result.view(i).image) if series else (None, None)
    return viewer.slice_info(result.name, result.n_slices, i, file, image)


_describe = describe_result  # the status line of a result (tests)


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
    backend: str = "auto",
    precision: str = "fp32",
) -> Any:
    """Build the Gradio Blocks of the app (not launched). ``models``: (label, value) pairs or values;
    ``pacs``: a :class:`mdrn.pacs.dicomweb.PacsClient` adds the PACS panel (:mod:`mdrn.pacs.app_panel`)."""
    from gradio.utils import get_upload_folder

    choices = [m if isinstance(m, tuple) else (str(m), str(m)) for m in (models or available_models())]
    default_dir = str(Path(save_dir) if save_dir else Path.cwd() / "mdrn_output")
    sessions = Sessions(Path(get_upload_folder()) / "mdrn")
    bf16_offered = precision == "fp32" and precision_problem("bf16", device) is None

    def session_of(request: gr.Request | None) -> Session:
        return sessions.get(getattr(request, "session_hash", None) or "local")

    def pick(session: Session, shown: Any) -> Result | None:
        if not session.results:
            return None
        i = int(str(shown).split(".")[0]) - 1 if shown else 0
        return session.results[min(max(i, 0), len(session.results) - 1)]

    def on_upload(files, folder, request: gr.Request):  # noqa: ANN001, ANN202
        session_of(request).uploads.update(_paths(files) + _paths(folder))

    def views(session: Session, result: Result, index: int, center, width, zoom, cx, cy):  # noqa: ANN001, ANN202
        from PIL import Image

        session.views += 1
        session.shown = (result, index, center, width, zoom, cx, cy)
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
        pair = (out[0], out[1])
        return pair, out[2], slice_info(result, index)

    def slice_slider(result: Result) -> Any:
        n = result.n_slices
        return gr.update(visible=n > 1, value=1, maximum=max(n, 2))

    reset = ("1x", 50, 50)  # zoom and centre of a newly shown image

    def on_enlarge(
        files,
        folder,
        scale_label,
        model,
        ensemble,
        bf16,
        center,
        width,
        zoom,
        cx,
        cy,
        series_name,
        request: gr.Request,
    ):  # noqa: ANN001, ANN202, E501
        session = session_of(request)
        paths = _paths(files) + _paths(folder)
        session.uploads.update(paths)
        keep = gr.skip()
        empty = gr.update(choices=[], value=None)
        no_slices = gr.update(visible=False, value=1, maximum=2)
        if not paths:
            gr.Warning("Open one or more images, a series folder or a volume first.")
            yield None, None, "No image opened.", empty, no_slices, "", *reset
            return
        scale = int(str(scale_label).lstrip("x"))
        for r in session.results:
            r.close()
        session.results = []
        session.runs += 1
        out_dir = session.folder / f"run-{session.runs}"
        events: queue.Queue[tuple[str, Any]] = queue.Queue()

        enlarge_in_background(
            session, events, paths=paths, scale=scale, weights=model or BICUBIC, out_dir=out_dir,
            ensemble=bool(ensemble), device=device, max_pixels=max_pixels, backend=backend,
            precision="bf16" if bf16 else precision,
            series_name=(series_name or None) if _paths(folder) else None,
        )  # fmt: skip
        head = f"Enlarging x{scale} with {model}"
        yield None, None, f"{head}: starting", empty, no_slices, "", *reset
        while True:
            kind, value = events.get()
            names = [f"{i + 1}. {r.name}" for i, r in enumerate(session.results)]
            if kind == "progress":
                done = f"; {len(names)} done (choose under Showing)" if names else ""
                yield keep, keep, f"{head}: {value}{done}", keep, keep, keep, keep, keep, keep
            elif kind == "result":
                session.results.append(value)
                names.append(f"{len(names) + 1}. {value.name}")
                if len(names) == 1:  # the first result is shown at once; the others wait in the list
                    pair, overlay, info = views(session, value, 0, center, width, *reset)
                    listed = gr.update(choices=names, value=names[0])
                    yield pair, overlay, keep, listed, slice_slider(value), info, *reset
                else:
                    yield keep, keep, keep, gr.update(choices=names), keep, keep, keep, keep, keep
            elif kind == "error":
                msg = f"Model {model!r} cannot be used: {str(value).splitlines()[0] if str(value) else value}"
                gr.Warning(msg)
                yield keep, keep, msg, keep, keep, keep, keep, keep, keep
                return
            else:
                results, errors = value
                for e in errors:
                    gr.Warning(e)
                n_inputs = len(results) + len(errors)
                status = [f"x{scale} with {model}: {len(results)} of {n_inputs} image(s) enlarged."]
                _, runs_on = network(str(model), scale, device=device, backend=backend,
                                     precision="bf16" if bf16 else precision)  # fmt: skip
                status.append(f"Method: {_method(model, scale)}; run by {runs_on}.")
                status += [describe_result(r) for r in results] + [f"error: {e}" for e in errors]
                text, listed = "\n".join(status), gr.update(choices=names)
                now = session.shown
                if now is None or now[0] not in session.results:
                    yield keep, keep, text, listed, keep, keep, keep, keep, keep
                    return
                # the whole state once more, as it is shown now (from the slice's kept arrays: fast)
                listed = gr.update(choices=names, value=names[session.results.index(now[0])])
                pair, overlay, info = views(session, *now)
                yield pair, overlay, text, listed, keep, info, *now[4:]
                return

    def on_view(shown, index, center, width, zoom, cx, cy, request: gr.Request):  # noqa: ANN001, ANN202
        session = session_of(request)
        result = pick(session, shown)
        if result is None:
            return None, None, ""
        return views(session, result, int(index or 1) - 1, center, width, zoom, cx, cy)

    def on_shown(shown, center, width, request: gr.Request):  # noqa: ANN001, ANN202
        session = session_of(request)
        result = pick(session, shown)
        if result is None:
            return None, None, "", gr.update(visible=False), *reset
        pair, overlay, info = views(session, result, 0, center, width, *reset)
        return pair, overlay, info, slice_slider(result), *reset

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

    with warnings.catch_warnings():  # Gradio 6 would have css and head in launch(); 5 (also supported) has
        warnings.filterwarnings("ignore", "The parameters have been moved", UserWarning)  # only these
        blocks = gr.Blocks(
            title="mdrn: medical image super-resolution", analytics_enabled=False, head=_FOLDER_NAME_JS,
            css=_HIDDEN_CSS,
        )  # fmt: skip
    with blocks as app:
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
                series_name = gr.Textbox(value="", elem_id="series_name", container=False, show_label=False)
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
                bf16 = gr.Checkbox(
                    label="bf16 arithmetic (about 2-3x faster on this computer; within a few grey levels)",
                    value=precision == "bf16",
                    visible=bf16_offered,
                    elem_id="bf16",
                )
                run = gr.Button("Enlarge", variant="primary", elem_id="enlarge")
                status = gr.Textbox(label="Status", lines=4, interactive=False, elem_id="status")
                gr.Markdown("**Display** (does not change the saved data)")
                with gr.Row():
                    center = gr.Number(label="Window center (0 = auto)", value=0)
                    width = gr.Number(label="Window width (0 = auto)", value=0)
                zoom = gr.Radio(list(ZOOMS), value="1x", label="Zoom", elem_id="zoom")
                with gr.Row():
                    cx = gr.Slider(0, 100, value=50, step=1, label="Zoom centre x (%)", elem_id="cx")
                    cy = gr.Slider(0, 100, value=50, step=1, label="Zoom centre y (%)", elem_id="cy")
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
                    label="Left: bicubic | right: the model (each picture names what made it): drag the bar",
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
            inputs=[files, folder_in, scale, model, ensemble, bf16, *display, series_name],
            outputs=[slider, overlay, status, shown, slice_no, info, zoom, cx, cy],
            show_progress="hidden",  # the results already done stay visible and usable during the run
        )
        shown.input(
            on_shown, inputs=[shown, center, width], outputs=[slider, overlay, info, slice_no, zoom, cx, cy]
        )
        shown_views = dict(inputs=[shown, slice_no, *display], outputs=[slider, overlay, info])
        slice_no.change(on_view, trigger_mode="always_last", **shown_views)
        zoom.input(on_view, **shown_views)
        for number in (center, width):  # Enter, or leaving the field (a tab, a click on the picture)
            number.submit(on_view, **shown_views)
            number.blur(on_view, **shown_views)
        for pos in (cx, cy):
            pos.release(on_view, **shown_views)
        save.click(on_save, inputs=[folder, overwrite], outputs=[saved])
        app.unload(on_close)
    app.mdrn_sessions = sessions  # for the exit handler and tests
    return app


def _method(model: str, scale: int) -> str:
    """What enlarges, in words (the model's design read from the loaded network)."""
    from mdrn.clinical.results import _loaded

    return describe_method(model, _loaded(str(model), int(scale)))


def _private_temp() -> Path:
    """A private temporary folder for everything the app stores (uploads, results, pictures)."""
    root = Path(tempfile.mkdtemp(prefix="mdrn-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(root)
    (root / "tmp").mkdir()
    tempfile.tempdir = str(root / "tmp")  # e.g. decompressed .nii.gz volumes
    return root


@quiet_value_warnings()  # pydicom's warnings quote a patient's values
def main(argv: Sequence[str] | None = None) -> int:
    """Start the app on 127.0.0.1 (or ``--host``) with an upload size limit; never a share link."""
    if _GRADIO_MISSING:  # the app (and its PACS panel) cannot even list its options
        print(f"error: {_GRADIO_MISSING}", file=sys.stderr)
        return 2
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
    p.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="what runs the network on CPU (see mdrn-upscale)"
    )
    p.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="bf16 for every run (GPU or AMX CPU); "
        "otherwise the page offers it where it is fast"
    )  # fmt: skip
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
    problem = precision_problem(args.precision, device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    root = _private_temp()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    app = None
    try:
        app = build_app(
            available_models(args.weights), save_dir=args.save_dir, device=device,
            allow_any_weights=args.allow_any_weights, max_pixels=args.max_pixels or None, pacs=pacs,
            backend=args.backend, precision=args.precision,
        )  # fmt: skip
        app.queue().launch(
            server_name=args.host,
            server_port=args.port,
            share=False,
            max_file_size=args.max_file_size,
            inbrowser=False,
            quiet=True,  # Gradio's own lines speak to programmers (share links); ours below
            prevent_thread_lock=True,
        )
        local = args.host in ("127.0.0.1", "localhost", "::1")
        where = "this computer only" if local else f"reachable at {args.host}"
        if not local:
            print(
                f"warning: --host {args.host}: anyone who can reach this computer on port {args.port} can "
                "use the app, see the images opened in it and save results in any folder this user may write "
                "(no password, no encryption); bind 127.0.0.1 unless the network is trusted",
                file=sys.stderr,
                flush=True,
            )
        print(
            f"mdrn-app is running: open {getattr(app, 'local_url', None) or f'http://{args.host}:{args.port}/'}"
            f" in a web browser ({where}). Press Ctrl-C here to "
            "stop it; the files opened and made are deleted then.",
            flush=True,
        )
        app.block_thread()
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
