"""mdrn.reproduce.viz: the SR panel (Figs. 10-14), bar charts with values, curves, PNG output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import AxesImage
from PIL import Image

from mdrn.protocol.color import rgb_to_y
from mdrn.protocol.resize import degrade, imresize
from mdrn.reproduce.viz import RESIDUAL_CMAP, bar_chart, best_crop, curve_chart, save_figure, sr_panel


def _images(c: int = 3, size: int = 48, scale: int = 2):
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, c, size, size, generator=g, dtype=torch.float64)
    lr = degrade(hr, scale)
    bic = imresize(lr, scale)
    sr = bic.clone()
    sr[..., 8:20, 24:36] += 0.2  # the "network" adds detail in one place only
    return lr, bic, sr, hr


def test_best_crop_finds_the_strongest_residual():
    res = torch.zeros(1, 64, 64)
    res[0, 40:56, 8:24] = 1.0
    top, left, h, w = best_crop(res, 16)
    assert (h, w) == (16, 16)
    assert abs(top - 40) <= 4 and abs(left - 8) <= 4


def test_sr_panel_shows_residual_on_diverging_map_and_crops():
    lr, bic, sr, hr = _images()
    fig = sr_panel(lr, bic, sr, hr, scale=2, title="t")
    images = [ax for ax in fig.axes if ax.get_images()]
    assert len(images) == 10  # 5 panels x (full, zoom)
    residual_axes = [ax for ax in images if ax.get_images()[0].get_cmap().name == RESIDUAL_CMAP]
    assert len(residual_axes) == 2
    full: AxesImage = residual_axes[0].get_images()[0]
    expected = (rgb_to_y(sr) - rgb_to_y(bic))[0, 0].numpy()
    np.testing.assert_allclose(np.asarray(full.get_array()), expected, atol=1e-12)
    lo, hi = full.get_clim()
    assert lo == pytest.approx(-hi) and hi > 0  # centred on 0
    # the default crop sits on the added detail: the zoomed residual is mostly non-zero
    zoom = np.asarray(residual_axes[1].get_images()[0].get_array())
    assert (np.abs(zoom) > 0.1).mean() > 0.3


def test_sr_panel_gray_high_bit_depth_without_hr():
    lr, bic, sr, _ = _images(c=1)
    fig = sr_panel(lr * 0.1, bic * 0.1, sr * 0.1, scale=2, bit_depth=12)  # a dark 12-bit image
    assert len([ax for ax in fig.axes if ax.get_images()]) == 8  # no HR column
    shown = fig.axes[1].get_images()[0].get_array()  # the bicubic panel, windowed for display
    assert np.asarray(shown).max() > 200  # the window stretches the dark image


def test_sr_panel_bad_input():
    lr, bic, sr, hr = _images()
    with pytest.raises(ValueError, match="same shape"):
        sr_panel(lr, bic, sr[..., :-2, :], hr, scale=2)
    with pytest.raises(ValueError, match="does not give the SR size"):
        sr_panel(lr, bic, sr, hr, scale=3)
    with pytest.raises(ValueError, match="outside"):
        sr_panel(lr, bic, sr, hr, scale=2, crop=(40, 40, 16, 16))


def test_bar_chart_writes_values_and_missing():
    fig = bar_chart(["Set5 x2", "Set5 x3"], {"ours": [33.68, None], "published": [33.66, 30.39]}, ylabel="dB")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts) == sorted(["33.68", "not run", "33.66", "30.39"])
    with pytest.raises(ValueError, match="categories"):
        bar_chart(["a"], {"x": [1.0, 2.0]}, ylabel="y")


def test_curve_chart_and_save(tmp_path):
    fig = curve_chart(
        {"a": ([100, 200], [20.0, 21.0]), "b": ([100, 200], [19.0, 22.0])}, xlabel="s", ylabel="dB"
    )
    assert len(fig.axes[0].lines) == 2
    path = save_figure(fig, tmp_path / "c.png")
    assert Image.open(path).format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # atomic: no temporary file left
    with pytest.raises(ValueError, match="x values"):
        curve_chart({"a": ([1, 2], [1.0])}, xlabel="s", ylabel="dB")
