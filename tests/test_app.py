"""The Gradio app's logic and layout, without a browser (see test_app_browser.py for the real page)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

gr = pytest.importorskip("gradio")

from mdrn import app as app_module  # noqa: E402
from mdrn.app import Result, build_app, detail_overlay, process_files, render, save_results  # noqa: E402
from mdrn.display import Window  # noqa: E402
from mdrn.io import ImageData, read_image  # noqa: E402


def _gray16(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 65536, (20, 26), dtype=np.uint16)).save(path)
    return path


def test_build_app_without_launching() -> None:
    blocks = build_app(["bicubic"])
    assert isinstance(blocks, gr.Blocks)
    ids = {getattr(c, "elem_id", None) for c in blocks.blocks.values()}
    assert {"files", "scale", "model", "enlarge", "status", "slider", "overlay", "folder", "save"} <= ids
    assert any(isinstance(c, gr.ImageSlider) for c in blocks.blocks.values())


def test_process_and_save_keep_bit_depth_and_format(tmp_path) -> None:
    png = _gray16(tmp_path / "g16.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(png.read_bytes()[:40])
    dcm = Path(get_testdata_file("MR_small.dcm"))
    results, errors = process_files([png, bad, dcm], 2, "bicubic")
    assert [r.name for r in results] == ["g16.png", "MR_small.dcm"]
    assert len(errors) == 1 and errors[0].startswith("broken.png") and str(tmp_path) not in errors[0]
    assert results[0].output.dtype == np.uint16 and results[0].output.shape == (40, 52)
    out = tmp_path / "saved"
    lines = save_results(results, out)
    assert all(line.startswith("saved") for line in lines), lines
    back = read_image(out / "g16_x2.png")
    assert back.bit_depth == 16 and back.array.shape == (40, 52)
    np.testing.assert_array_equal(back.array, results[0].output)
    ds = pydicom.dcmread(out / "MR_small_x2.dcm")
    assert (ds.Rows, ds.Columns) == (128, 128) and ds.BitsStored == pydicom.dcmread(dcm).BitsStored
    # a second save does not overwrite unless asked
    assert all(line.startswith("not saved") for line in save_results(results, out))
    assert all(line.startswith("saved") for line in save_results(results, out, overwrite=True))


def test_scale_the_model_lacks_is_a_clear_error(tmp_path) -> None:
    import torch

    from mdrn.models import MDRN
    from mdrn.weights import save_model

    torch.manual_seed(0)
    weights = save_model(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), tmp_path / "x2.safetensors")
    with pytest.raises(ValueError, match="no x4 branch"):
        process_files([_gray16(tmp_path / "a.png")], 4, str(weights))


def test_detail_overlay_colours_and_zoom() -> None:
    base = np.full((32, 32), 30000, np.uint16)
    out = base.copy()
    out[4:10, 4:10] += 4000  # the network made this brighter than bicubic
    out[20:26, 20:26] -= 4000  # and this darker
    image = ImageData(base[::2, ::2].copy(), 16)
    r = Result("x.png", image, out, base, 2, "test")
    ov = detail_overlay(r, Window(30000.5, 20001))
    assert ov.dtype == np.uint8 and ov.shape == (32, 32, 3)
    red, blue = ov[6, 6].astype(int), ov[22, 22].astype(int)
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50
    assert ov[15, 15, 0] == ov[15, 15, 1] == ov[15, 15, 2]  # no added detail: plain gray
    pair, overlay = render([r], 0, 30000.5, 20001, "4x", 12.5, 12.5)
    before, after = pair
    k = 512 // 32  # small pictures are enlarged by whole pixels for display
    assert before.shape == after.shape == (32 * k, 32 * k) and overlay.shape == (32 * k, 32 * k, 3)
    np.testing.assert_array_equal(
        overlay[:: 4 * k, :: 4 * k], ov[0:8, 0:8]
    )  # 4x zoom of the top-left quarter


def test_main_binds_localhost_without_share(monkeypatch) -> None:
    seen: dict = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.update(kw))
    assert app_module.main(["--port", "7999"]) == 0
    assert seen["server_name"] == "127.0.0.1" and seen["share"] is False and seen["server_port"] == 7999
    assert seen["max_file_size"]
    import os

    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") == "False"
