"""The app's PACS panel in a real headless Chromium against a real Orthanc (``mdrn-app --dicomweb URL``).

Lists the PACS's studies (patient initials hidden until asked for), opens a study's series, enlarges it
and sends the result back with "Send to PACS"; the PACS then holds one derived series with the file
path's tags and pixels. Skips (fails in CI) without Chromium, Playwright or Orthanc, as the other browser
test does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool
from pacs_data import (
    PASSWORD,
    USER,
    assert_private,
    check_derived,
    download_series,
    make_study,
    series_uids,
    upscale_files,
)
from test_app_browser import TIMEOUT, _free_port, _launch, _playwright, _stop, _wait_ready, _wait_state

pytest.importorskip("dicomweb_client")
pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def _pick(page, elem_id: str, text: str) -> None:  # noqa: ANN001
    """Choose the option of a Gradio dropdown whose label contains ``text``."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option").filter(has_text=text).first.click()


def test_browse_open_enlarge_and_send_to_the_pacs(tmp_path) -> None:
    sync_playwright = _playwright()
    from mdrn.pacs.sandbox import LocalOrthanc, OrthancNotFound, find_orthanc

    try:
        find_orthanc()
    except OrthancNotFound as err:
        require_tool(str(err))
    study = make_study(tmp_path / "ct", 3)
    with LocalOrthanc(users={USER: PASSWORD}) as pacs:
        for path in study.files:
            pacs.upload(path)
        port = _free_port()
        url = f"http://127.0.0.1:{port}/"
        env = {
            **os.environ,
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
            "MDRN_PACS_USER": USER,
            "MDRN_PACS_PASSWORD": PASSWORD,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }
        cmd = [
            sys.executable,
            "-m",
            "mdrn.app",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--dicomweb",
            pacs.dicomweb,
        ]
        log = tmp_path / "app.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            _wait_ready(url, proc, log)
            with sync_playwright() as p:
                browser = _launch(p)
                page = browser.new_page(viewport={"width": 1400, "height": 1400})
                page.set_default_timeout(TIMEOUT * 1000)
                page.goto(url, wait_until="load")
                _wait_state(
                    page, proc, log, "() => !!document.querySelector('#pacs_list')", "PACS panel shown"
                )
                page.locator("#pacs_list").click()
                status = "document.querySelector('#pacs_status textarea').value"
                _wait_state(page, proc, log, f"() => {status}.includes('1 study(ies)')", "studies listed")
                page.locator("#pacs_study input").click()
                hidden = page.get_by_role("option").first.inner_text()
                assert "(1 series, 3 images)" in hidden and "J.D." not in hidden, hidden
                page.keyboard.press("Escape")
                page.locator("#pacs_initials input").check()
                _wait_state(
                    page, proc, log, f"() => {status}.includes('1 study(ies)')", "studies listed again"
                )
                _pick(page, "pacs_study", "J.D.")  # Doe^Jane, shown only once asked for
                _wait_state(page, proc, log, f"() => {status}.includes(': 1 series')", "series listed")
                _pick(page, "pacs_series", "3 images")
                page.locator("#pacs_open").click()
                _wait_state(page, proc, log, f"() => {status}.includes('opened series')", "series opened")
                _wait_state(
                    page,
                    proc,
                    log,
                    "() => document.querySelectorAll('#files .file-name, #files tr').length >= 3",
                    "files in the box",
                )
                model = page.locator("#model input")
                model.fill("bicubic")
                model.press("Enter")
                page.locator("#enlarge").click()
                _wait_state(
                    page,
                    proc,
                    log,
                    "() => document.querySelector('#status textarea').value.includes('enlarged')",
                    "series enlarged",
                )
                page.locator("#pacs_send").click()
                _wait_state(page, proc, log, f"() => {status}.includes('stored series')", "sent to the PACS")
                sent = page.locator("#pacs_status textarea").input_value()
                browser.close()
        finally:
            _stop(proc)
        assert "3 of 3 instance(s)" in sent, sent
        (derived,) = series_uids(pacs, study.study) - {study.series}
        assert derived in sent
        got = download_series(pacs, derived, tmp_path / "pacs")
    check_derived(study, got, upscale_files(tmp_path / "ct", tmp_path / "files"), 2, dciodvfy=1)
    assert_private(log.read_text())
