"""Figs. 10-14 panels: a model with the low/high-frequency split shows its own two parts."""

from __future__ import annotations

import csv
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import AxesImage

from mdrn.io.images import write_image
from mdrn.models import MDRN
from mdrn.models.inference import low_frequency_image, upscale
from mdrn.protocol.resize import degrade, imresize
from mdrn.reproduce.figs10_14 import render_figs10_14
from mdrn.reproduce.viz import RESIDUAL_CMAP, sr_panel
from mdrn.weights import save_model

ROOT = Path(__file__).resolve().parents[1]


def _trained_looking(bicubic_skip: bool) -> MDRN:
    """A tiny MDRN whose tail is not zero (as after training), so the high-frequency image is not 0."""
    torch.manual_seed(0)
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2, 3), bicubic_skip=bicubic_skip)
    with torch.no_grad():
        net.tail.weight.normal_(0, 0.05)
    return net.eval()


@pytest.mark.parametrize("channels", [1, 3])
def test_low_frequency_image_is_the_models_own_bicubic(channels):
    x = torch.rand(1, channels, 10, 12, generator=torch.Generator().manual_seed(1))
    net = _trained_looking(True)
    low = low_frequency_image(net, x, 2)
    torch.testing.assert_close(low, imresize(x, 2))
    # what the network adds is its high-frequency image (reconstruct of its features), gray through RGB
    xin = x.expand(-1, 3, -1, -1) if channels == 1 else x
    with torch.no_grad():
        high = net.reconstruct(net.features(xin, 2), 2)
    high = high.mean(dim=1, keepdim=True) if channels == 1 else high
    torch.testing.assert_close(upscale(net, x, 2) - low, high, atol=1e-6, rtol=0)
    assert float(high.abs().max()) > 1e-3
    assert low_frequency_image(_trained_looking(False), x, 2) is None


def test_sr_panel_split_shows_the_models_parts():
    hr = torch.rand(1, 1, 36, 36, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lr = degrade(hr, 3).float()
    net = _trained_looking(True)
    sr, low = upscale(net, lr, 3), low_frequency_image(net, lr, 3)
    fig = sr_panel(lr, low, sr, hr, scale=3, split=True)
    titles = [ax.get_title() for ax in fig.axes]
    assert "Low frequency (model's bicubic)" in titles and "High frequency (model's network)" in titles
    assert "Bicubic (low frequency)" in [ax.get_title() for ax in sr_panel(lr, low, sr, hr, scale=3).axes]
    # the diverging panel is exactly what the network added
    shown: AxesImage = next(
        ax.get_images()[0]
        for ax in fig.axes
        if ax.get_images() and ax.get_images()[0].get_cmap().name == RESIDUAL_CMAP
    )
    np.testing.assert_allclose(np.asarray(shown.get_array()), (sr - low)[0, 0].double().numpy(), atol=1e-12)


def _run_panels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, net: MDRN, name: str) -> list[dict]:
    images = tmp_path / "images"
    rgb = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    gray12 = (np.random.default_rng(1).random((24, 24)) * 4095).astype(np.uint16)
    write_image(images / "rgb.png", rgb, bit_depth=8, overwrite=True)
    write_image(images / "gray.png", gray12, bit_depth=12, overwrite=True)
    weights = save_model(net, tmp_path / f"{name}.safetensors")
    out = tmp_path / name
    argv = ["panels.py", "--weights", str(weights), "--images", str(images), "--scales", "2", "3"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out), "--dpi", "30"])
    runpy.run_path(str(ROOT / "experiments" / "scripts" / "panels.py"), run_name="__main__")
    with (out / "panels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all((out / r["figure"]).is_file() for r in rows)
    return rows


def test_panels_script_shows_the_split_of_a_model_that_has_it(tmp_path, monkeypatch):
    rows = _run_panels(tmp_path, monkeypatch, _trained_looking(True), "with_path")
    assert {r["split"] for r in rows} == {"model"} and {r["model"] for r in rows} == {"with_path"}
    assert {int(r["bit_depth"]) for r in rows} == {8, 12}
    rows = _run_panels(tmp_path, monkeypatch, _trained_looking(False), "no_path")
    assert {r["split"] for r in rows} == {"bicubic reference"}
    results = tmp_path / "results"
    (results / "figs10_14").mkdir(parents=True)
    (tmp_path / "with_path" / "panels.csv").replace(results / "figs10_14" / "panels.csv")
    text = render_figs10_14(results)["md"].read_text()
    assert "`with_path`" in text and "its own parts" in text and "| rgb | x2 | 8 |" in text
