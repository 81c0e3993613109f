"""The clinician's path in a real headless Chromium: a CT series folder in, a derived series out.

Starts ``python -m mdrn.app`` with its own temporary folder, opens a CT series folder (five slices without
file suffix, as PACS exports them) with the folder picker, enlarges x2 with the default model, scrolls to
slice 3, saves, closes the tab and stops the app; then imports the saved result as a new series and checks
its tags, and checks that no file of the series is left in the app's temporary folders. A screenshot is
kept in tests/artifacts/app_series.png.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pydicom
import pytest
from medical_data import make_ct_series
from test_app_browser import (
    ARTIFACTS,
    _free_port,
    _launch,
    _playwright,
    _stop,
    _wait_ready,
)

from mdrn.app import available_models
from mdrn.clinical.inputs import open_inputs

pytestmark = pytest.mark.browser


def _wait(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.5)


def test_ct_series_enlarged_scrolled_saved_and_imported(tmp_path) -> None:
    sync_playwright = _playwright()

    sources = make_ct_series(tmp_path / "CT_chest", 5)
    default = available_models()[0][1]
    temp, save_dir = tmp_path / "tmp", tmp_path / "saved"
    temp.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", TMPDIR=str(temp))
    env.pop("GRADIO_TEMP_DIR", None)
    cmd = [
        sys.executable,
        "-m",
        "mdrn.app",
        "--port",
        str(port),
        "--save-dir",
        str(save_dir),
        "--device",
        "cpu",
    ]
    log = tmp_path / "app.log"
    out = log.open("w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        _wait_ready(url, proc, log)
        (app_temp,) = temp.glob("mdrn-app-*")
        with sync_playwright() as p:
            browser = _launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(120_000)  # 2 shared CPU cores can be slow; no step waits on time
            page.goto(url, wait_until="load")
            page.wait_for_selector("#enlarge")
            page.locator("#series input[type=file]").set_input_files(str(tmp_path / "CT_chest"))
            page.wait_for_function("() => document.querySelector('#series').innerText.includes('IM0004')")
            page.get_by_label("x2", exact=True).check()
            page.locator("#enlarge").click()
            page.wait_for_function(
                "() => document.querySelector('#status textarea').value.includes('enlarged')", timeout=300_000
            )
            status = page.locator("#status textarea").input_value()
            assert "1 of 1 image(s) enlarged" in status and "(5 slices)" in status, status
            assert f"x2 with {default}" in status, status
            page.wait_for_function(
                "() => document.querySelector('#slice_info textarea').value.includes('slice 1 of 5')"
            )
            number = page.locator("#slice input[type=number]")
            number.fill("3")
            number.press("Enter")
            page.wait_for_function(
                "() => document.querySelector('#slice_info textarea').value.includes('slice 3 of 5')"
            )
            page.wait_for_selector("#slider img")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app_series.png"), full_page=True)
            page.locator("#save").click()
            page.wait_for_function("() => document.querySelector('#saved textarea').value.includes('saved')")
            saved = page.locator("#saved textarea").input_value()
            assert "saved 5 files" in saved, saved
            uploaded = [f for f in app_temp.rglob("IM000*") if f.is_file()]
            assert len(uploaded) >= 5  # the uploads are in the app's own folder while the tab is open
            page.close()  # the tab closes: its uploads and results go
            _wait(lambda: not any(app_temp.rglob("IM000*")), 60, "the closed tab's files were not deleted")
            browser.close()
    finally:
        _stop(proc)
        out.close()
    # the app stopped: its folder is gone and no file is left (Gradio makes an empty folder on import)
    assert not app_temp.exists() and [f for f in temp.rglob("*") if not f.is_dir()] == []

    (series,) = open_inputs(next(save_dir.iterdir()))
    assert series.kind == "series" and series.n_slices == 5
    derived = [pydicom.dcmread(p) for p in series.files]
    by_number = {int(ds.InstanceNumber): ds for ds in (pydicom.dcmread(p) for p in sources)}
    assert len({ds.SeriesInstanceUID for ds in derived}) == 1
    for got in derived:
        src = by_number[int(got.InstanceNumber)]
        assert got.SeriesInstanceUID != src.SeriesInstanceUID and got.SOPInstanceUID != src.SOPInstanceUID
        assert (
            got.StudyInstanceUID == src.StudyInstanceUID
            and got.FrameOfReferenceUID == src.FrameOfReferenceUID
        )
        assert list(got.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert got.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert (got.Rows, got.Columns) == (2 * src.Rows, 2 * src.Columns)
        assert float(got.PixelSpacing[0]) == pytest.approx(float(src.PixelSpacing[0]) / 2, abs=1e-6)
        assert default in got.DerivationDescription and "x2" in got.DerivationDescription
