"""The Gradio app's logic and layout without a browser (test_app_browser.py drives the real page)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medical_data import dicom_file, make_ct_series, make_nifti
from PIL import Image

gr = pytest.importorskip("gradio")

from mdrn import app as app_module  # noqa: E402
from mdrn.app import (  # noqa: E402
    Sessions,
    available_models,
    build_app,
    detail_overlay,
    process_files,
    render,
    save_results,
    slice_info,
)
from mdrn.clinical.display import Window  # noqa: E402
from mdrn.io.images import ImageData, read_image  # noqa: E402


def _gray16(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 65536, (20, 26), dtype=np.uint16)).save(path)
    return path


def test_build_app_without_launching() -> None:
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # a clinician sees no Python warning at start
        warnings.simplefilter("always")
        blocks = build_app([("bicubic (interpolation, no network)", "bicubic")])
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]
    assert isinstance(blocks, gr.Blocks)
    ids = {getattr(c, "elem_id", None): c for c in blocks.blocks.values()}
    expected = {
        "files",
        "series",
        "scale",
        "model",
        "enlarge",
        "status",
        "slider",
        "overlay",
        "folder",
        "save",
    }
    assert expected | {"slice", "slice_info"} <= set(ids)
    assert ids["model"].allow_custom_value is False  # only the listed models
    assert build_app(["bicubic"], allow_any_weights=True).blocks is not None


def test_model_list_names_what_each_model_is(tmp_path) -> None:
    from mdrn.weights import DEFAULT_MODEL, PRETRAINED_DIR

    choices = available_models([str(tmp_path / "mine.safetensors")])
    labels = dict((value, label) for label, value in choices)
    assert labels["bicubic"] == "bicubic (interpolation, no network)"
    assert choices[-1] == (str(tmp_path / "mine.safetensors"),) * 2
    if (PRETRAINED_DIR / f"{DEFAULT_MODEL}.safetensors").is_file():
        assert choices[0] == (f"{DEFAULT_MODEL} (shipped model)", DEFAULT_MODEL)  # the default


def test_process_and_save_keep_bit_depth_format_and_name_the_model(tmp_path) -> None:
    png = _gray16(tmp_path / "g16.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(png.read_bytes()[:40])
    dcm = dicom_file("MR_small.dcm")
    results, errors = process_files([png, bad, dcm], 2, "bicubic", tmp_path / "work")
    assert [r.name for r in results] == ["g16.png", "MR_small.dcm"]
    assert len(errors) == 1 and errors[0].startswith("broken.png") and str(tmp_path) not in errors[0]
    assert results[0].output.slice(0).array.shape == (40, 52)
    out = tmp_path / "saved"
    lines = save_results(results, out)
    assert all(line.startswith("saved") for line in lines), lines
    back = read_image(out / "g16_x2_bicubic.png")
    assert back.bit_depth == 16 and back.array.shape == (40, 52)
    ds = pydicom.dcmread(out / "MR_small_x2_bicubic.dcm")
    assert (ds.Rows, ds.Columns) == (128, 128) and ds.BitsStored == pydicom.dcmread(dcm).BitsStored
    assert "bicubic interpolation (no network)" in ds.DerivationDescription
    # a second save does not overwrite unless asked
    assert all(line.startswith("not saved") for line in save_results(results, out))
    assert all(line.startswith("saved") for line in save_results(results, out, overwrite=True))


def test_two_uploads_of_one_file_name_get_distinct_outputs(tmp_path) -> None:
    """Two "scan.png" from two folders in one run: the second failed with "tick 'Overwrite ...'"."""
    first, second = tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png"
    for folder, value in ((first.parent, 10), (second.parent, 200)):
        folder.mkdir()
        Image.fromarray(np.full((12, 14), value, np.uint8)).save(folder / "scan.png")
    results, errors = process_files([first, second], 2, "bicubic", tmp_path / "work")
    assert errors == [] and [r.name for r in results] == ["scan.png", "scan.png"]
    assert [f.name for r in results for f in r.files] == ["scan_x2_bicubic.png", "scan-2_x2_bicubic.png"]
    lines = save_results(results, tmp_path / "saved")
    assert all(line.startswith("saved") for line in lines), lines
    assert read_image(tmp_path / "saved" / "scan_x2_bicubic.png").array.max() == 10
    assert read_image(tmp_path / "saved" / "scan-2_x2_bicubic.png").array.min() == 200


def test_series_and_volume_show_every_slice(tmp_path) -> None:
    files = make_ct_series(tmp_path / "CT", 4)
    make_nifti(tmp_path / "head.nii.gz")
    results, errors = process_files([*files, tmp_path / "head.nii.gz"], 2, "bicubic", tmp_path / "work")
    assert errors == []
    series, volume = sorted(results, key=lambda r: r.source.kind)
    assert (series.source.kind, series.n_slices, volume.source.kind, volume.n_slices) == (
        "series",
        4,
        "volume",
        5,
    )
    assert "slice 4 of 4" in slice_info(series, 3) and "IM0000" in slice_info(series, 3)
    first, last = render(series, 0, None, None, "1x", 50, 50), render(series, 3, None, None, "1x", 50, 50)
    assert first[1].shape == (512, 512) and not np.array_equal(first[1], last[1])  # 256 px shown at 2x
    before, after, detail = render(volume, 4, None, None, "2x", 50, 50)
    assert before.shape == after.shape and detail.shape[2] == 3
    lines = save_results(results, tmp_path / "saved")
    assert f"saved 4 files of {series.name} in {tmp_path / 'saved' / f'{series.name}_x2_bicubic'}" in lines
    assert (tmp_path / "saved" / "head_x2_bicubic.nii.gz").is_file()


def test_a_series_name_sent_as_a_path_stays_in_the_session_folder(tmp_path) -> None:
    # the series' name comes from the browser (the folder's name); a crafted one ("../../x") made the
    # derived series be written outside the session folder, where closing the tab never deleted it
    files = make_ct_series(tmp_path / "CT", 2)
    work = tmp_path / "work" / "session"
    for name, folder in [("../../outside", "outside_x2_bicubic"), ("..", "series1_x2_bicubic")]:
        results, errors = process_files(files, 2, "bicubic", work, series_name=name)
        assert errors == [] and all(f.resolve().parent == work / folder for f in results[0].files), name
        for r in results:
            r.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CT", "work"]


def test_scale_the_model_lacks_is_a_clear_error(tmp_path) -> None:
    import torch

    from mdrn.models import MDRN
    from mdrn.weights import save_model

    torch.manual_seed(0)
    weights = save_model(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), tmp_path / "x2.safetensors")
    with pytest.raises(ValueError, match="no x4 branch"):
        process_files([_gray16(tmp_path / "a.png")], 4, str(weights), tmp_path / "work")


def test_detail_overlay_colours() -> None:
    base = np.full((32, 32), 30000, np.uint16)
    out = base.copy()
    out[4:10, 4:10] += 4000  # the network made this brighter than bicubic
    out[20:26, 20:26] -= 4000  # and this darker
    ov = detail_overlay(ImageData(base[::2, ::2].copy(), 16), out, base, Window(30000.5, 20001))
    assert ov.dtype == np.uint8 and ov.shape == (32, 32, 3)
    red, blue = ov[6, 6].astype(int), ov[22, 22].astype(int)
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50
    assert ov[15, 15, 0] == ov[15, 15, 1] == ov[15, 15, 2]  # no added detail: plain gray


def test_closing_a_session_deletes_its_uploads_and_results(tmp_path) -> None:
    sessions = Sessions(tmp_path / "app")
    upload = tmp_path / "uploads" / "abc123" / "patient.dcm"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(dicom_file("CT_small.dcm").read_bytes())
    session = sessions.get("tab-1")
    session.uploads.add(upload)
    session.results, _ = process_files([upload], 2, "bicubic", session.folder / "run-1")
    assert any(session.folder.rglob("*.dcm"))
    sessions.close("tab-1")
    assert not upload.exists() and not upload.parent.exists() and not session.folder.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_clinician_path_through_the_buttons(tmp_path, monkeypatch) -> None:
    """Open a CT series, enlarge x2, scroll, save, import the result: through the page's own endpoints."""
    from gradio_client import Client, handle_file

    from mdrn.clinical.inputs import open_inputs

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "app"))
    files = make_ct_series(tmp_path / "CT", 3)
    blocks = build_app([("bicubic (interpolation, no network)", "bicubic")], save_dir=tmp_path / "saved")
    port = _free_port()
    blocks.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "client"))
        display = [0, 0, "1x", 50, 50]
        from gradio_client.exceptions import AppError

        with pytest.raises(AppError, match="not in the list of choices"):  # only the offered models
            client.predict(
                [handle_file(str(files[0]))], None, "x2", "mdsr", False, False, *display, "",
                api_name="/on_enlarge",
            )  # fmt: skip
        out = client.predict([handle_file(str(p)) for p in files], None, "x2", "bicubic", False, False,
                             *display, "", api_name="/on_enlarge")  # fmt: skip
        slider, _, status, shown, _, info, zoom, cx, cy = out  # the session's state stays on the server
        assert (zoom, cx, cy) == ("1x", 50, 50)  # a new image is shown whole
        assert "1 of 1 image(s) enlarged" in status and "bicubic interpolation (no network)" in status
        assert "slice 1 of 3" in info and len(slider) == 2
        shown = shown["value"]
        view = client.predict(shown, 3, *display, api_name="/on_view")
        assert "slice 3 of 3" in view[2]
        saved = client.predict(str(tmp_path / "saved"), False, api_name="/on_save")
        assert saved.startswith("saved 3 files")
    finally:
        blocks.close()
    (series,) = open_inputs(next((tmp_path / "saved").iterdir()))
    sources = [pydicom.dcmread(p) for p in sorted(files, key=lambda p: -int(p.name[2:]))]  # by position
    derived = [pydicom.dcmread(p) for p in series.files]
    assert len({d.SeriesInstanceUID for d in derived}) == 1
    for src, got in zip(sources, derived):
        assert got.InstanceNumber == src.InstanceNumber and got.StudyInstanceUID == src.StudyInstanceUID
        assert got.SeriesInstanceUID != src.SeriesInstanceUID and list(got.ImageType)[:2] == [
            "DERIVED",
            "SECONDARY",
        ]
        assert got.Rows == 2 * src.Rows


def test_main_binds_localhost_without_share_and_cleans_up(monkeypatch, tmp_path, capsys) -> None:
    import tempfile

    seen: dict = {}

    def fake_launch(self, **kw):
        seen.update(kw, temp=os.environ["GRADIO_TEMP_DIR"])
        Path(os.environ["GRADIO_TEMP_DIR"], "upload.dcm").write_bytes(b"patient data")

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: seen.update(blocked=True))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("GRADIO_TEMP_DIR", "")
    assert app_module.main(["--port", "7999"]) == 0
    assert seen["server_name"] == "127.0.0.1" and seen["share"] is False and seen["server_port"] == 7999
    assert seen["quiet"] is True and seen["blocked"]  # Gradio's "set share=True in launch()" is not shown
    started = capsys.readouterr().out
    assert "open http" in started and "this computer only" in started and "share" not in started
    assert seen["max_file_size"]
    assert Path(seen["temp"]).parent == tmp_path and not Path(seen["temp"]).exists()  # deleted at exit
    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") == "False"


def test_main_on_another_address_warns_that_the_app_is_open_to_the_network(monkeypatch, tmp_path, capsys):
    # --host 0.0.0.0 only said "reachable at 0.0.0.0": nothing told that anyone on the network can open the
    # app (no password, no encryption), see the patients' images and save files
    import tempfile

    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: None)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("GRADIO_TEMP_DIR", "")
    assert app_module.main(["--host", "0.0.0.0", "--port", "7999"]) == 0
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0" in err and "no password" in err
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # main pointed it into its (deleted) folder
    assert app_module.main(["--port", "7999"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_bomb_upload_is_refused_and_alpha_is_kept(tmp_path) -> None:
    from medical_data import make_png_bomb

    from mdrn.app import _describe
    from mdrn.io.images import write_image

    rgba = write_image(
        tmp_path / "overlay.png",
        np.full((12, 10, 3), 90, np.uint8),
        bit_depth=8,
        alpha=np.tile(np.arange(10, dtype=np.uint8) * 25, (12, 1)),
    )
    results, errors = process_files(
        [make_png_bomb(tmp_path / "bomb.png"), rgba], 2, "bicubic", tmp_path / "w"
    )
    assert len(errors) == 1 and errors[0].startswith("bomb.png") and "exceed the limit" in errors[0]
    assert "alpha kept (enlarged with bicubic)" in _describe(results[0])
    save_results(results, tmp_path / "saved")
    assert read_image(tmp_path / "saved" / "overlay_x2_bicubic.png").alpha.shape == (24, 20)


def test_closing_the_tab_mid_run_stops_it_and_leaves_none_of_its_files(tmp_path) -> None:
    """The tab closes while a series is being enlarged: the run stops after its current slice, its
    stacks are closed and the session's folder (what it wrote after the tab's files were deleted) is gone."""
    import queue
    import threading

    from mdrn.app import Session, enlarge_in_background

    files = make_ct_series(tmp_path / "CT", 12)
    session = Session(tmp_path / "session")
    events: queue.Queue = queue.Queue()
    gate = threading.Event()
    real_put = events.put

    def put(item, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        real_put(item, *args, **kwargs)
        if item[0] == "progress" and "slice 2 of 12" in item[1]:
            gate.wait(30)  # the run waits here until the tab has closed

    events.put = put  # type: ignore[method-assign]
    thread = enlarge_in_background(
        session, events, paths=files, scale=2, weights="bicubic", out_dir=session.folder / "run-1"
    )
    while True:
        kind, value = events.get(timeout=60)
        if kind == "progress" and "slice 2 of 12" in value:
            break
    assert any((session.folder / "run-1").rglob("*.dcm"))  # slices were written
    session.clear()  # the tab closes (Sessions.close)
    gate.set()
    thread.join(60)
    assert not thread.is_alive()
    assert not session.folder.exists(), sorted(session.folder.rglob("*"))
    left = []
    while not events.empty():
        left.append(events.get()[0])
    assert "done" not in left and "error" not in left, left


def test_without_gradio_the_app_names_what_to_install() -> None:
    """Without the app extra: one line naming the package to install, exit 2 (was a traceback)."""
    import subprocess
    import sys

    code = "import sys; sys.modules['gradio'] = None\nfrom mdrn.app import main\nsys.exit(main([]))\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'mdrn[app]'" in lines[0], run.stderr


@pytest.mark.parametrize("stored", ["float32 HU", "int16 with scl_slope 1, scl_inter -1024"])
def test_a_typed_window_on_a_nifti_volume_is_in_its_physical_units(tmp_path, stored) -> None:
    """C=40 W=400 on a CT volume shows 40 HU mid-gray, as for DICOM: it was applied to the stored (or, for a
    float volume, the 16-bit mapped) values, so soft tissue showed white and air gray."""
    import nibabel as nib

    hu = np.full((24, 24, 2), -1000.0)  # air, soft tissue at 40 HU in the middle
    hu[6:18, 6:18] = 40.0
    img = nib.Nifti1Image(hu.astype(np.float32), np.eye(4))
    if stored.startswith("int16"):
        img = nib.Nifti1Image((hu + 1024).astype(np.int16), np.eye(4))
        img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, tmp_path / "ct.nii")
    (result,), errors = process_files([tmp_path / "ct.nii"], 2, "bicubic", tmp_path / "work")
    assert errors == []
    _, after, _ = render(result, 0, 40, 400, "1x", 50, 50)
    k = after.shape[0] // 48
    tissue, air = after[24 * k, 24 * k], after[2 * k, 2 * k]
    assert abs(int(tissue) - 128) <= 1 and air == 0, (tissue, air)
    _, auto, _ = render(result, 0, None, None, "1x", 50, 50)  # the automatic window still spans the values
    assert auto[2 * k, 2 * k] == 0 and auto[24 * k, 24 * k] == 255


def test_detail_overlay_colours_follow_the_screen_for_monochrome1() -> None:
    """MONOCHROME1 (0 = white, e.g. radiographs) is shown inverted: a larger stored value is darker on the
    screen, so it is blue ("darker") in the overlay. It was red, opposite to the legend and to the picture."""
    base = np.full((32, 32), 30000, np.uint16)
    out = base.copy()
    out[4:10, 4:10] += 4000  # larger stored values: darker on the screen
    image = ImageData(base[::2, ::2].copy(), 16, photometric="MONOCHROME1")
    ov = detail_overlay(image, out, base, Window(30000.5, 20001))
    darker, brighter = ov[6, 6].astype(int), ov[22, 22].astype(int)
    assert darker[2] > darker[0] + 50, darker
    out[4:10, 4:10] -= 8000
    brighter = detail_overlay(image, out, base, Window(30000.5, 20001))[6, 6].astype(int)
    assert brighter[0] > brighter[2] + 50, brighter


def test_a_typed_window_applies_when_the_field_is_left_not_only_on_enter() -> None:
    """Typing a window centre and width, then clicking or tabbing away (no Enter), left the picture in the
    automatic window while the fields showed the typed one (found in Chromium): each field redraws on blur."""
    blocks = build_app([("bicubic (interpolation, no network)", "bicubic")])
    by_label = {getattr(c, "label", None): c for c in blocks.blocks.values()}
    events = {(target, event) for fn in blocks.fns.values() for target, event in fn.targets}
    for label in ("Window center (0 = auto)", "Window width (0 = auto)"):
        field = by_label[label]
        assert {(field._id, "submit"), (field._id, "blur")} <= events, label
