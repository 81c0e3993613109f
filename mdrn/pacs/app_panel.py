"""The app's PACS panel (``mdrn-app --dicomweb URL``): browse a PACS, open a series, send the result back.

:func:`pacs_panel` adds to the page of :func:`mdrn.app.build_app` a list of the PACS's studies (date,
modalities, description, counts; the patients' initials only when "Show patient initials" is ticked) and
of a study's series (QIDO-RS); **Open series** reads the series (WADO-RS) into the browser session's
private folder and puts it in the app's file box, to be enlarged as an upload is; **Send to PACS** stores
the session's derived DICOM results (STOW-RS, one derived series per source series) in the PACS. The
connection options (:func:`add_arguments`) are those of ``mdrn-pacs``: credentials from the environment
or a 0600 file, never the command line; a CA file for https.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from mdrn.pacs.dicomweb import PacsClient, PacsError, add_connection_arguments, connect_args, read_series
from mdrn.pacs.series import SEND_BATCH, instance_file

__all__ = ["PacsError", "add_arguments", "connect_from_args", "pacs_panel", "send_results"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The app's PACS options (all optional: no ``--dicomweb``, no panel)."""
    add_connection_arguments(p, required=False)


def connect_from_args(args: argparse.Namespace) -> PacsClient | None:
    """The PACS of ``--dicomweb`` (checked: it answers), or None without it; :class:`PacsError` otherwise."""
    if not args.dicomweb:
        return None
    pacs = connect_args(args)
    pacs.studies(limit=1)  # a wrong URL, credentials or CA fails now, not in the page
    return pacs


def send_results(pacs: PacsClient, files: list[Path]) -> list[str]:
    """Store derived DICOM files in the PACS (STOW-RS); one line per derived series, and per refusal."""
    import pydicom

    by_series: dict[str, list[Path]] = {}
    for path in files:
        uid = str(
            pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]
            ).SeriesInstanceUID
        )
        by_series.setdefault(uid, []).append(path)
    lines = []
    for uid, paths in by_series.items():
        refused: list[tuple[Path, str]] = []
        for i in range(0, len(paths), SEND_BATCH):
            refused += pacs.store(paths[i : i + SEND_BATCH])
        lines.append(f"stored series {uid}: {len(paths) - len(refused)} of {len(paths)} instance(s)")
        lines += [f"not stored: {p.name}: {why}" for p, why in refused]
    return lines


def _study_label(s: Any, initials: bool) -> str:
    who = f"{s.initials or '-'} " if initials else ""
    what = " ".join(x for x in (s.date or "-", s.modalities, s.description) if x)
    return f"{who}{what} ({s.n_series} series, {s.n_instances} images)"


def pacs_panel(pacs: PacsClient, *, files: Any, session_of: Callable[[Any], Any]) -> None:
    """Add the PACS panel to the Blocks being built; ``files`` is the app's file box, ``session_of(request)``
    the browser session (``folder``, ``uploads``, ``results``)."""

    def on_list(show_initials: bool):  # noqa: ANN202
        try:
            studies = pacs.studies(with_initials=bool(show_initials))
        except PacsError as err:
            return gr.update(choices=[], value=None), str(err)
        choices = [(_study_label(s, bool(show_initials)), s.uid) for s in studies]
        return gr.update(choices=choices, value=None), f"{len(studies)} study(ies) on {pacs.url}"

    def on_study(study: str | None):  # noqa: ANN202
        if not study:
            return gr.update(choices=[], value=None), ""
        try:
            series = pacs.series(study)
        except PacsError as err:
            return gr.update(choices=[], value=None), str(err)
        choices = [
            (
                f"#{s.number or '-'} {s.modality} {s.description} ({s.n_instances} images)".replace(
                    "  ", " "
                ),
                s.uid,
            )
            for s in series
        ]
        return gr.update(choices=choices, value=None), f"study {study}: {len(series)} series"

    def on_open(study: str | None, series: str | None, request: gr.Request):  # noqa: ANN202
        if not study or not series:
            gr.Warning("Choose a study and a series first.")
            return gr.update(), "Choose a study and a series first."
        session = session_of(request)
        try:
            uid = instance_file(session.folder, series).stem  # a UID, never a path of the PACS's choosing
            paths = read_series(
                pacs, study, series, session.folder / "pacs" / f"{len(session.uploads)}-{uid}"
            )
        except (PacsError, ValueError) as err:
            return gr.update(), f"error: {err}"
        session.uploads.update(paths)
        return [str(p) for p in paths], f"opened series {series}: {len(paths)} instance(s); now Enlarge"

    def on_send(request: gr.Request):  # noqa: ANN202
        derived = [f for r in session_of(request).results for f in r.files if f.suffix == ".dcm"]
        if not derived:
            gr.Warning("Nothing to send: enlarge a DICOM series first.")
            return "Nothing to send: enlarge a DICOM series first."
        try:
            return "\n".join(send_results(pacs, derived))
        except Exception as err:  # noqa: BLE001 - a PACS that went away is one line in the page
            return f"error: {err}"

    with gr.Accordion(f"PACS: {pacs.url}", open=True):
        show = gr.Checkbox(label="Show patient initials", value=False, elem_id="pacs_initials")
        listing = gr.Button("List studies", elem_id="pacs_list")
        study = gr.Dropdown(choices=[], label="Study", elem_id="pacs_study")
        series = gr.Dropdown(choices=[], label="Series", elem_id="pacs_series")
        opening = gr.Button("Open series", elem_id="pacs_open")
        send = gr.Button("Send to PACS", elem_id="pacs_send")
        status = gr.Textbox(label="PACS", lines=2, interactive=False, elem_id="pacs_status")
    listing.click(on_list, inputs=[show], outputs=[study, status])
    show.change(on_list, inputs=[show], outputs=[study, status])
    study.change(on_study, inputs=[study], outputs=[series, status])
    opening.click(on_open, inputs=[study, series], outputs=[files, status])
    send.click(on_send, inputs=None, outputs=[status])
