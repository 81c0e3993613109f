"""The app in a real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Starts ``python -m mdrn.app`` on 127.0.0.1 on a free port, uploads a 16-bit gray PNG, a DICOM and a
broken file, chooses x2 and a tiny MDRN weights file, waits for the result, saves it, and checks the
saved files' size and bit depth. A screenshot is kept in tests/artifacts/app.png. Where the browser
cannot be had the test skips with the reason, and fails in CI.

Every wait is on the app's state (its HTTP config answering, an element rendered, the status text),
polled in short slices that also check the app process is alive: a dead app fails at once with its
output; a slow one (2 busy cores) gets up to MDRN_BROWSER_TIMEOUT seconds (default 600) per step.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from mdrn.io.images import read_image
from mdrn.models import MDRN
from mdrn.weights import save_model

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("MDRN_CHROMIUM", "/usr/bin/chromium")
#: seconds one step may take (startup, upload, enlarge, save) on a busy machine; no step waits a fixed time
TIMEOUT = float(os.environ.get("MDRN_BROWSER_TIMEOUT", "600"))
SLICE_MS = 2_000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def _playwright():  # noqa: ANN202
    """Playwright's ``sync_playwright``, or a skip (a failure in CI) naming what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc}); pip install playwright")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MDRN_CHROMIUM)")
    return sync_playwright


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop the app as a user would (SIGTERM), killing it if it does not exit within ``timeout`` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def _launch(p):  # noqa: ANN001, ANN202
    """Headless Chromium from playwright ``p``, or a skip (a failure in CI) if it does not start."""
    try:
        return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    except Exception as exc:  # noqa: BLE001 - any launch failure means no browser here
        _unavailable(f"Chromium at {CHROMIUM} does not start: {exc}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_alive(proc: subprocess.Popen, log: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"the app exited with code {proc.returncode}: {log.read_text()[-3000:]}")


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    """Until Gradio serves the app's config (its components are built and the queue runs)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        _check_alive(proc, log)
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as resp:
                if resp.status == 200 and json.loads(resp.read()).get("components"):
                    return
        except (OSError, ValueError):
            time.sleep(0.5)
    raise TimeoutError(f"the app did not serve its config at {url}config within {TIMEOUT} s")


def _wait_state(page, proc: subprocess.Popen, log: Path, js: str, what: str) -> None:  # noqa: ANN001
    """Until the page's JavaScript predicate ``js`` holds, checking between slices that the app lives."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            page.wait_for_function(js, timeout=SLICE_MS)
            return
        except PlaywrightTimeout:
            _check_alive(proc, log)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not reached within {TIMEOUT} s ({js})") from None


def test_app_in_chromium(tmp_path) -> None:
    sync_playwright = _playwright()

    torch.manual_seed(0)
    weights = save_model(
        MDRN(n_resblocks=2, n_feats=16, scales=(2, 3, 4), n_colors=1), tmp_path / "tiny.safetensors"
    )
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(40), np.arange(48)) * 600
    png = tmp_path / "chest16.png"
    Image.fromarray((ramp + rng.integers(0, 3000, ramp.shape)).astype(np.uint16)).save(png)
    dcm = Path(get_testdata_file("MR_small.dcm"))
    bad = tmp_path / "broken.png"
    bad.write_bytes(png.read_bytes()[:60])
    save_dir = tmp_path / "saved"

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "mdrn.app", "--port", str(port), "--save-dir", str(save_dir)]
    cmd += ["--device", "cpu", "--weights", str(weights)]
    log = tmp_path / "app.log"  # a file, not a pipe: a full pipe would block the app
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        _wait_ready(url, proc, log)
        with sync_playwright() as p:
            browser = _launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT * 1000)
            page.goto(url, wait_until="load")
            _wait_state(page, proc, log, "() => !!document.querySelector('#enlarge')", "page rendered")
            page.locator("#files input[type=file]").set_input_files([str(png), str(dcm), str(bad)])
            _wait_state(
                page,
                proc,
                log,
                "() => document.querySelectorAll('#files .file-name, #files tr, #files li').length >= 3",
                "files uploaded",
            )
            page.get_by_label("x2", exact=True).check()
            model = page.locator("#model input")
            model.fill(str(weights))
            model.press("Enter")
            page.locator("#enlarge").click()
            _wait_state(
                page,
                proc,
                log,
                "() => document.querySelector('#status textarea').value.includes('enlarged')",
                "images enlarged",
            )
            status = page.locator("#status textarea").input_value()
            assert "2 of 3 image(s) enlarged" in status, status
            assert "tiny.safetensors" in status, status
            assert "broken.png" in status, status
            _wait_state(page, proc, log, "() => !!document.querySelector('#slider img')", "slider shown")
            _wait_state(page, proc, log, "() => !!document.querySelector('#overlay img')", "overlay shown")
            page.locator("#save").click()
            _wait_state(
                page,
                proc,
                log,
                "() => document.querySelector('#saved textarea').value.includes('saved')",
                "images saved",
            )
            saved = page.locator("#saved textarea").input_value()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
            browser.close()
    finally:
        _stop(proc)

    assert "chest16_x2_tiny.png" in saved and "MR_small_x2_tiny.dcm" in saved, saved
    out = read_image(save_dir / "chest16_x2_tiny.png")
    assert out.array.dtype == np.uint16 and out.bit_depth == 16 and out.array.shape == (80, 96)
    assert len(np.unique(out.array)) > 256  # really 16-bit content, not 8-bit values stored in 16 bits
    ds = pydicom.dcmread(save_dir / "MR_small_x2_tiny.dcm")
    ref = pydicom.dcmread(dcm)
    assert (ds.Rows, ds.Columns) == (2 * ref.Rows, 2 * ref.Columns)
    assert ds.BitsStored == ref.BitsStored and ds.SOPInstanceUID != ref.SOPInstanceUID
    assert (ARTIFACTS / "app.png").stat().st_size > 10_000
