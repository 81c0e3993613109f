"""Local web app for clinicians: open images (incl. DICOM, 16-bit), enlarge x2/x3/x4, compare, save.

``python -m mdrn.app`` (console script ``mdrn-app``) starts a Gradio page on http://127.0.0.1:7860 (local
only unless ``--host`` is given; no share link, analytics off, nothing is sent anywhere). The page
shows the input (bicubic-enlarged) and the result with a before/after slider, a zoom, window/level for
12-16 bit images, and the detail the network adds over bicubic as a colour overlay (red: brighter than
bicubic, blue: darker). Results are saved in the input's bit depth and format (DICOM stays DICOM).
The UI is built by :func:`build_app`, testable without launching.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from mdrn.display import Window, auto_window, display_array  # noqa: E402
from mdrn.inference import upscale  # noqa: E402
from mdrn.io import ImageData, image_to_tensor, read_image, write_image  # noqa: E402
from mdrn.models import Bicubic  # noqa: E402
from mdrn.upscale import BICUBIC, UpscaleOptions, load_network, output_format, output_path, upscale_image  # noqa: E402

__all__ = [
    "Result",
    "available_models",
    "build_app",
    "detail_overlay",
    "main",
    "process_files",
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
    """One processed image: the input, the enlarged pixels (input bit depth) and the bicubic reference."""

    name: str
    image: ImageData
    output: np.ndarray
    bicubic: np.ndarray
    scale: int
    model: str


def available_models(extra: Sequence[str] = ()) -> list[str]:
    """Model choices: ``bicubic``, official names already in the weights cache, and ``extra`` paths."""
    choices = [BICUBIC]
    try:
        from mdrn.weights import OFFICIAL_URLS, cache_dir

        choices += [n for n in OFFICIAL_URLS if (cache_dir() / f"{n}.safetensors").is_file()]
    except ImportError:  # pragma: no cover - weights module missing
        pass
    choices += [str(p) for p in extra if str(p) not in choices]
    return choices


@lru_cache(maxsize=4)
def _network(weights: str, scale: int) -> nn.Module:
    """Cached ``load_network`` (one load per weights/scale)."""
    return load_network(weights, scale)


def _to_pixels(t: torch.Tensor, bit_depth: int) -> np.ndarray:
    """Float (C, H, W) in [0, 1] to uint8/uint16 (H, W[, 3]) pixels."""
    from mdrn.io import tensor_to_array

    return tensor_to_array(t, bit_depth)


def process_files(
    paths: Sequence[str | os.PathLike[str]],
    scale: int,
    weights: str,
    *,
    ensemble: bool = False,
    device: str | None = None,
    progress: Any = None,
) -> tuple[list[Result], list[str]]:
    """Enlarge every file; return the results and one error line per file that failed (named)."""
    net = _network(str(weights), int(scale))
    scales = tuple(getattr(net, "scales", ()))
    if scales and scale not in scales:
        raise ValueError(f"{weights}: the model has no x{scale} branch (it serves {scales})")
    opts = UpscaleOptions(scale=int(scale), ensemble=ensemble, device=device)
    bicubic = Bicubic(scales=(int(scale),))
    results: list[Result] = []
    errors: list[str] = []
    items = list(paths)
    for i, path in enumerate(items):
        path = Path(path)
        if progress is not None:
            progress((i, len(items)), desc=f"{path.name} ({i + 1}/{len(items)})")
        try:
            image = read_image(path)
            out = upscale_image(net, image, opts)
            ref = _to_pixels(upscale(bicubic, image_to_tensor(image), int(scale)), image.bit_depth)
        except (ValueError, OSError, RuntimeError) as err:
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            text = text.replace(str(path), path.name)
            errors.append(text if path.name in text else f"{path.name}: {text}")
            continue
        results.append(Result(path.name, image, out, ref, int(scale), str(weights)))
    return results, errors


def _window(result: Result, center: float | None, width: float | None) -> Window:
    """The display window: the user's if given (width > 0), else the input's automatic one."""
    if center is not None and width:
        return Window(float(center), float(width))
    img = result.image
    return auto_window(img.array, bit_depth=img.bit_depth, dicom=img.dicom, signed_offset=img.signed_offset)


def _show(result: Result, array: np.ndarray, window: Window) -> np.ndarray:
    """Display pixels of one of the result's arrays (shared window, MONOCHROME1 inverted)."""
    img = result.image
    return display_array(
        array,
        bit_depth=img.bit_depth,
        dicom=img.dicom,
        photometric=img.photometric,
        signed_offset=img.signed_offset,
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


def detail_overlay(result: Result, window: Window) -> np.ndarray:
    """The network's added detail (output minus bicubic) in a diverging colormap over the gray output."""
    from matplotlib import colormaps

    peak = float(result.image.peak)
    diff = (result.output.astype(np.float64) - result.bicubic.astype(np.float64)) / peak
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    base = _show(result, result.output, window).astype(np.float64) / 255.0
    if base.ndim == 3:
        base = base.mean(axis=2)
    lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    rgba = colormaps["RdBu_r"](np.clip(diff / lim, -1, 1) * 0.5 + 0.5)
    alpha = np.clip(np.abs(diff) / lim, 0, 1)[..., None] * 0.85
    out = base[..., None] * (1 - alpha) + rgba[..., :3] * alpha
    return np.rint(out * 255).astype(np.uint8)


def render(
    results: list[Result],
    index: int,
    center: float | None,
    width: float | None,
    zoom: str,
    cx: float,
    cy: float,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray | None]:
    """Slider pair (bicubic input, result) and the detail overlay for one result, windowed and zoomed."""
    if not results:
        return None, None
    r = results[min(max(int(index), 0), len(results) - 1)]
    win = _window(r, center, width)
    views = [
        _zoom(a, zoom, cx, cy)
        for a in (_show(r, r.bicubic, win), _show(r, r.output, win), detail_overlay(r, win))
    ]
    # small pictures are shown with whole-pixel enlargement (display only) so that they can be seen
    k = max(1, MIN_VIEW // max(views[0].shape[:2]))
    before, after, overlay = (np.repeat(np.repeat(v, k, axis=0), k, axis=1) if k > 1 else v for v in views)
    return (before, after), overlay


def save_results(
    results: Sequence[Result], folder: str | os.PathLike[str], *, overwrite: bool = False
) -> list[str]:
    """Write every result into ``folder`` in its input's bit depth and format; return one line per file."""
    lines = []
    for r in results:
        fmt = output_format(r.image, None)
        dest = output_path(Path(r.name), Path(folder), r.scale, fmt)
        try:
            write_image(
                dest,
                r.output,
                bit_depth=r.image.bit_depth,
                reference=r.image,
                scale=r.scale,
                overwrite=overwrite,
            )
            lines.append(f"saved {dest} ({r.output.shape[1]}x{r.output.shape[0]}, {r.image.bit_depth}-bit)")
        except (ValueError, OSError) as err:
            lines.append(f"not saved: {err}")
    return lines


def _describe(r: Result) -> str:
    """One status line for a result."""
    kind = "gray" if r.output.ndim == 2 else "RGB"
    size_in, size_out = f"{r.image.width}x{r.image.height}", f"{r.output.shape[1]}x{r.output.shape[0]}"
    return f"{r.name}: {size_in} -> {size_out}, {r.image.bit_depth}-bit {kind}"


def build_app(
    models: Sequence[str] | None = None,
    *,
    save_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
) -> Any:
    """Build the Gradio Blocks of the app (not launched)."""
    import gradio as gr

    choices = list(models) if models else available_models()
    default_dir = str(Path(save_dir) if save_dir else Path.cwd() / "mdrn_output")

    def on_enlarge(files, scale_label, model, ensemble, center, width, zoom, cx, cy, progress=gr.Progress()):  # noqa: ANN001, ANN202, B008
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            gr.Warning("Open one or more images first.")
            return [], None, None, "No image opened.", gr.update(choices=[], value=None)
        scale = int(str(scale_label).lstrip("x"))
        try:
            results, errors = process_files(
                paths, scale, model or BICUBIC, ensemble=bool(ensemble), device=device, progress=progress
            )
        except Exception as err:  # noqa: BLE001 - any model problem is shown in the page
            msg = f"Model {model!r} cannot be used: {err}"
            gr.Warning(msg)
            return [], None, None, msg, gr.update(choices=[], value=None)
        for e in errors:
            gr.Warning(e)
        pair, overlay = render(results, 0, center, width, zoom, cx, cy)
        status = [f"x{scale} with {model}: {len(results)} of {len(paths)} image(s) enlarged."]
        status += [_describe(r) for r in results]
        status += [f"error: {e}" for e in errors]
        names = [f"{i + 1}. {r.name}" for i, r in enumerate(results)]
        return (
            results,
            pair,
            overlay,
            "\n".join(status),
            gr.update(choices=names, value=names[0] if names else None),
        )

    def on_view(results, shown, center, width, zoom, cx, cy):  # noqa: ANN001, ANN202
        index = int(str(shown).split(".")[0]) - 1 if shown else 0
        return render(results or [], index, center, width, zoom, cx, cy)

    def on_save(results, folder, overwrite):  # noqa: ANN001, ANN202
        if not results:
            gr.Warning("Nothing to save yet: enlarge an image first.")
            return "Nothing to save yet."
        lines = save_results(results, folder or default_dir, overwrite=bool(overwrite))
        for line in lines:
            if line.startswith("not saved"):
                gr.Warning(line)
        return "\n".join(lines)

    with gr.Blocks(title="mdrn: medical image super-resolution", analytics_enabled=False) as app:
        gr.Markdown(
            "## mdrn: enlarge medical images\n"
            "Open PNG, JPEG, TIFF, BMP or DICOM images (gray and 16-bit kept), choose the magnification and "
            "the model, then **Enlarge**. Runs on this computer only; nothing is uploaded anywhere."
        )
        state = gr.State([])
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                files = gr.File(
                    label="Images (PNG, JPEG, TIFF, BMP, DICOM)",
                    file_count="multiple",
                    type="filepath",
                    elem_id="files",
                )
                scale = gr.Radio(
                    [f"x{s}" for s in SCALES], value="x2", label="Magnification", elem_id="scale"
                )
                model = gr.Dropdown(
                    choices=choices,
                    value=choices[0],
                    allow_custom_value=True,
                    label="Model (or a weights file path)",
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
            with gr.Column(scale=2):
                shown = gr.Dropdown(choices=[], label="Showing", elem_id="shown")
                view = dict(type="numpy", format="png", interactive=False)  # lossless PNG to the browser
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
        view_inputs = [state, shown, center, width, zoom, cx, cy]
        run.click(
            on_enlarge,
            inputs=[files, scale, model, ensemble, center, width, zoom, cx, cy],
            outputs=[state, slider, overlay, status, shown],
        )
        for comp in (shown, zoom):
            comp.change(on_view, inputs=view_inputs, outputs=[slider, overlay])
        for number in (center, width):
            number.submit(on_view, inputs=view_inputs, outputs=[slider, overlay])
        for pos in (cx, cy):
            pos.release(on_view, inputs=view_inputs, outputs=[slider, overlay])
        save.click(on_save, inputs=[state, folder, overwrite], outputs=[saved])
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Start the app on 127.0.0.1 (or ``--host``) with an upload size limit; never a share link."""
    p = argparse.ArgumentParser(prog="mdrn-app", description="Local web app to enlarge medical images.")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer only)"
    )
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--weights", nargs="*", default=[], help="extra weights files to offer as models")
    p.add_argument("--save-dir", default=None, help="default folder for saved results")
    p.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE, help="upload limit (e.g. 200mb)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    app = build_app(available_models(args.weights), save_dir=args.save_dir, device=device)
    app.queue().launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        max_file_size=args.max_file_size,
        inbrowser=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
