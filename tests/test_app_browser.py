"""The app in a real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Starts ``python -m mdrn.app`` on 127.0.0.1 on a free port, uploads a 16-bit gray PNG, a DICOM and a
broken file, chooses x2 and a tiny MDRN weights file, waits for the result, saves it, and checks the
saved files' size and bit depth. A screenshot is kept in tests/artifacts/app.png. Where the browser
cannot be had the test skips with the reason, and fails in CI.
"""

from __future__ import annotations

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

from mdrn.io import read_image
from mdrn.models import MDRN
from mdrn.weights import save_model

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("MDRN_CHROMIUM", "/usr/bin/chromium")
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not answer at {url} within {timeout} s")


def test_app_in_chromium(tmp_path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc}); pip install playwright")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MDRN_CHROMIUM)")

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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        _wait_http(url, proc)
        with sync_playwright() as p:
            try:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            except Exception as exc:  # noqa: BLE001 - any launch failure means no browser here
                _unavailable(f"Chromium at {CHROMIUM} does not start: {exc}")
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(120_000)  # 2 shared CPU cores can be slow; no step waits on time
            page.goto(url, wait_until="load")
            page.wait_for_selector("#enlarge")
            page.locator("#files input[type=file]").set_input_files([str(png), str(dcm), str(bad)])
            page.wait_for_function(
                "() => document.querySelectorAll('#files .file-name, #files tr, #files li').length >= 3"
            )
            page.get_by_label("x2", exact=True).check()
            model = page.locator("#model input")
            model.fill(str(weights))
            model.press("Enter")
            page.locator("#enlarge").click()
            page.wait_for_function(
                "() => document.querySelector('#status textarea').value.includes('enlarged')", timeout=180_000
            )
            status = page.locator("#status textarea").input_value()
            assert "2 of 3 image(s) enlarged" in status, status
            assert "tiny.safetensors" in status, status
            assert "broken.png" in status, status
            page.wait_for_selector("#slider img")
            page.wait_for_selector("#overlay img")
            page.locator("#save").click()
            page.wait_for_function("() => document.querySelector('#saved textarea').value.includes('saved')")
            saved = page.locator("#saved textarea").input_value()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    assert "chest16_x2_tiny.png" in saved and "MR_small_x2_tiny.dcm" in saved, saved
    out = read_image(save_dir / "chest16_x2_tiny.png")
    assert out.array.dtype == np.uint16 and out.bit_depth == 16 and out.array.shape == (80, 96)
    assert len(np.unique(out.array)) > 256  # really 16-bit content, not 8-bit values stored in 16 bits
    ds = pydicom.dcmread(save_dir / "MR_small_x2_tiny.dcm")
    ref = pydicom.dcmread(dcm)
    assert (ds.Rows, ds.Columns) == (2 * ref.Rows, 2 * ref.Columns)
    assert ds.BitsStored == ref.BitsStored and ds.SOPInstanceUID != ref.SOPInstanceUID
    assert (ARTIFACTS / "app.png").stat().st_size > 10_000
