"""Intensity windows (mdrn.models.window): fitted per image or series, exact on the way back, recorded in the
model spec, the same for training patches and inference, whatever the tiling or banding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdrn.clinical.enlarge import UpscaleOptions, enlarge_bands, stack_window
from mdrn.clinical.inputs import open_inputs
from mdrn.io.images import ImageData, image_to_tensor, read_image
from mdrn.models import MDRN, Bicubic, build_model, model_spec
from mdrn.models.inference import upscale, window_for
from mdrn.models.window import IntensityWindow, WindowRule, rule_of, set_rule
from mdrn.weights import load_model, save_model
from tests.medical_data import make_ct_series


def _net(rule: str | None = "percentile", seed: int = 0) -> MDRN:
    torch.manual_seed(seed)
    net = MDRN(n_resblocks=2, n_feats=8, scales=(2, 3), n_colors=1, bicubic_skip=True).eval()
    torch.nn.init.normal_(net.tail.weight, std=0.05)  # a detail path that is not zero
    return set_rule(net, rule)


def _narrow16(h: int = 40, w: int = 36, seed: int = 1) -> np.ndarray:
    """A 16-bit image filling ~3% of its range, as a CT does."""
    g = np.random.default_rng(seed)
    base = 32900 + 1800 * np.sin(np.linspace(0, 6, w))[None, :] * np.cos(np.linspace(0, 4, h))[:, None]
    return np.clip(base + g.normal(0, 40, (h, w)), 0, 65535).astype(np.uint16)


def test_percentile_window_fits_the_values_and_caps_the_stretch() -> None:
    a = _narrow16()
    win = WindowRule("percentile").fit(image_to_tensor(ImageData(a, 16))[None])
    lo, hi = np.percentile(a / 65535.0, [0.1, 99.9])
    assert float(win.low) == pytest.approx(lo, rel=1e-6)
    assert float(win.width) == pytest.approx(hi - lo, rel=1e-6)
    # a flat image is widened about its centre to min_width, never divided by ~0
    flat = WindowRule("percentile").fit(torch.full((1, 1, 8, 8), 0.5))
    assert float(flat.width) == pytest.approx(1 / 256) and float(flat.low) == pytest.approx(0.5 - 1 / 512)
    assert WindowRule().fit(torch.rand(2, 1, 4, 4)).is_identity()
    with pytest.raises(ValueError, match="unknown input window mode 'minmax'"):
        WindowRule.parse("minmax")
    with pytest.raises(ValueError, match="NaN or infinite"):
        WindowRule("percentile").fit(torch.tensor([[[[0.1, float("nan")]]]]))


def test_the_inverse_is_exact_and_interpolation_commutes_with_the_window() -> None:
    x = image_to_tensor(ImageData(_narrow16(), 16))[None]
    win = WindowRule("percentile").fit(x)
    torch.testing.assert_close(win.invert_(win.apply(x.double())), x.double(), rtol=0, atol=1e-15)
    # bicubic (weights summing to 1) through a window = bicubic: only a network's detail is scaled
    bic = Bicubic(scales=(2,))
    torch.testing.assert_close(upscale(bic, x, 2, window="percentile"), upscale(bic, x, 2), rtol=0, atol=1e-6)


def test_window_changes_the_detail_and_tiles_share_the_whole_image_window() -> None:
    net = _net()
    x = image_to_tensor(ImageData(_narrow16(), 16))[None]
    whole = upscale(net, x, 2)  # auto: the network's rule
    assert float((whole - upscale(net, x, 2, window=None)).abs().max()) > 1e-5
    for kwargs in ({"tile": 12, "memory": None}, {"tile": 8}):
        tiled = upscale(net, x, 2, **kwargs)
        torch.testing.assert_close(tiled, whole, rtol=0, atol=2e-6)
    # a band of rows given the whole image's window gives the whole image's rows
    win = window_for(net, x)
    band = upscale(net, x[..., :20, :], 2, window=win)
    assert float((band[..., :10, :] - whole[..., :10, :]).abs().max()) < 2e-6
    # its own window would differ
    assert float((upscale(net, x[..., :20, :], 2)[..., :10, :] - whole[..., :10, :]).abs().max()) > 1e-6


def test_rule_is_recorded_in_the_spec_and_survives_save_and_load(tmp_path) -> None:
    net = _net()
    spec = model_spec(net)
    assert spec["input_window"] == {"mode": "percentile", "low": 0.1, "high": 99.9, "min_width": 1 / 256}
    assert rule_of(build_model(spec)) == WindowRule("percentile")
    loaded = load_model(save_model(net, tmp_path / "w.safetensors"))
    assert rule_of(loaded) == WindowRule("percentile")
    x = image_to_tensor(ImageData(_narrow16(), 16))[None]
    torch.testing.assert_close(upscale(loaded, x, 3), upscale(net, x, 3), rtol=0, atol=0)
    # a network without a rule has none, and its spec says nothing of windows (old files unchanged)
    plain = _net(None)
    assert "input_window" not in model_spec(plain) and not rule_of(plain).active


def test_bands_and_a_series_use_one_window(tmp_path) -> None:
    net = _net()
    a = _narrow16(h=30)
    image = ImageData(a, 16)
    opts = UpscaleOptions(scale=2, tile=None, band_values=36 * 2 * 2 * 7)  # 7 input rows per band
    banded = np.concatenate(list(enlarge_bands(net, image, opts)))
    from mdrn.io.images import tensor_to_array

    ref = tensor_to_array(upscale(net, image_to_tensor(image)[None], 2), 16)
    assert np.abs(banded.astype(int) - ref.astype(int)).max() <= 1
    # a series: one window for all its slices, not one per slice
    files = make_ct_series(tmp_path / "series", n=3)
    (stack,) = open_inputs(tmp_path / "series")
    win = stack_window(net, stack, UpscaleOptions(scale=2))
    values = np.concatenate([read_image(f).array.ravel() for f in files]) / (
        2 ** read_image(files[0]).bit_depth - 1
    )
    lo, hi = np.percentile(values, [0.1, 99.9])
    assert float(win.low) == pytest.approx(lo, abs=1e-9)
    assert float(win.low + win.width) == pytest.approx(max(hi, lo + 1 / 256), abs=1e-9)
    assert stack_window(net, stack, UpscaleOptions(scale=2, window="none")) is None
    assert stack_window(_net(None), stack, UpscaleOptions(scale=2)) is None


def test_training_patches_are_mapped_by_their_whole_image_window(tmp_path) -> None:
    from mdrn.data.cache import ImageCache
    from mdrn.data.datasets import TrainPatchDataset
    from mdrn.io.images import write_image

    write_image(tmp_path / "img" / "a.png", _narrow16(64, 64), bit_depth=16)
    cache = ImageCache([tmp_path / "img" / "a.png"], tmp_path / "cache", scales=(2,))
    cache.build()
    plain = TrainPatchDataset([cache], patch_size=16, n_colors=1, augment=False)
    mapped = TrainPatchDataset([cache], patch_size=16, n_colors=1, augment=False, window="percentile")
    key = (0, 2, 123)
    a, b = plain[key], mapped[key]
    win = WindowRule("percentile").fit_many([cache.images[0].lr[2]], 16)
    torch.testing.assert_close(b["lr"], win.apply(a["lr"][None])[0])
    torch.testing.assert_close(b["hr"], win.apply(a["hr"][None])[0])
    assert float(b["lr"].max() - b["lr"].min()) > 10 * float(a["lr"].max() - a["lr"].min())


def test_the_training_module_records_the_rule_in_its_spec() -> None:
    from mdrn.training.module import SRModule

    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,))
    module = SRModule(net, input_window={"mode": "percentile", "low": 1.0, "high": 99.0})
    assert module.hparams.net_spec["input_window"]["low"] == 1.0
    assert rule_of(module.net) == WindowRule("percentile", 1.0, 99.0)


def test_explicit_window_objects() -> None:
    win = IntensityWindow.of(0.5, 0.25)
    assert win.describe(16) == "32768..49151 of 65535"
    with pytest.raises(ValueError, match="positive width"):
        IntensityWindow.of(0.5, 0.0)
    net = _net(None)
    x = torch.rand(1, 1, 10, 10)
    torch.testing.assert_close(
        upscale(net, x, 2, window=win),
        win.invert_(upscale(net, win.apply(x), 2, window=None)),
        rtol=0,
        atol=1e-6,
    )


def test_the_method_named_in_outputs_says_which_window_the_network_saw() -> None:
    """The Derivation Description (describe_method): a network's own window, or the one --window forces."""
    from mdrn.clinical.enlarge import describe_method

    net = set_rule(MDRN(n_resblocks=1, n_feats=8, scales=(2,), bicubic_skip=True), "percentile")
    seen = "each image or series seen through its own percentile window (0.1..99.9) and mapped back exactly"
    assert describe_method("model.safetensors", net).endswith(seen)
    assert "window" not in describe_method("model.safetensors", net, "none")
    plain = MDRN(n_resblocks=1, n_feats=8, scales=(2,))
    assert "window" not in describe_method("plain.safetensors", plain)
    assert describe_method("plain.safetensors", plain, "percentile").endswith(seen)
    assert describe_method("bicubic", None) == "bicubic interpolation (no network)"


def test_a_slice_that_cannot_be_read_leaves_the_others_of_a_windowed_series_written(tmp_path) -> None:
    """One truncated slice of a series: the series' window is fitted to the slices that can be read, so that
    slice alone is reported (as with no window) instead of the whole series being lost."""
    from mdrn.clinical.enlarge import enlarge_stack
    from mdrn.io.dicom import Derivation

    files = make_ct_series(tmp_path / "series", n=4)
    data = files[2].read_bytes()
    files[2].write_bytes(data[:-5000])  # cut short in transfer
    (stack,) = open_inputs(tmp_path / "series")
    opts = UpscaleOptions(scale=2, tile=None)
    net = _net()
    good = [f for f in files if f != files[2]]
    win = stack_window(net, stack, opts)
    assert win is not None
    ref = WindowRule("percentile").fit_many([read_image(f).array for f in good], 16, count=4)
    assert float(win.low) == pytest.approx(float(ref.low))
    assert float(win.width) == pytest.approx(float(ref.width))
    errors: list = []
    written = enlarge_stack(net, stack, tmp_path / "out", opts, Derivation(2, "test", "t"), errors=errors)
    assert len(written) == 3 and [f for f, _ in errors] == [files[2]]
    assert "truncated" in str(errors[0][1])


def test_a_network_that_outputs_nan_writes_no_image(tmp_path) -> None:
    """Weights broken by a diverged training run give NaN: one clear error, no file (it was written with the
    NaN pixels quantized to 0, for a signed CT -32768, and the run reported success)."""
    from mdrn.clinical.enlarge import enlarge_stack
    from mdrn.io.dicom import Derivation

    net = _net()
    with torch.no_grad():
        net.tail.bias.fill_(float("nan"))
    files = make_ct_series(tmp_path / "series", n=1)
    (stack,) = open_inputs(files[0])
    out = tmp_path / "out"
    out.mkdir()
    for window in ("auto", "none"):
        opts = UpscaleOptions(scale=2, window=window)
        with pytest.raises(ValueError, match="output holds NaN or infinite values"):
            enlarge_stack(net, stack, out, opts, Derivation(2, "test", "t"))
    assert list(out.iterdir()) == []  # no output, no temporary file left


def test_a_large_rgb_image_is_windowed_on_all_its_colours() -> None:
    """Over MAX_SAMPLES values an image is sampled with a stride; for an RGB (H, W, 3) array a stride that is
    a multiple of 3 sampled the red values alone (a 1700x1700 photo: 150..255 where its values span 0..255),
    and the command line's window differed from upscale()'s."""
    g = np.random.default_rng(0)
    h = w = 1700  # 8.67 M values: a stride of 3
    a = np.empty((h, w, 3), np.uint8)
    a[..., 0] = g.integers(150, 256, (h, w))
    a[..., 1] = g.integers(60, 200, (h, w))
    a[..., 2] = g.integers(0, 100, (h, w))
    rule = WindowRule("percentile")
    many = rule.fit_many([a], 8)
    assert float(many.low) * 255 < 1  # the blue values are in it
    one = rule.fit(image_to_tensor(ImageData(a, 8))[None])  # what upscale() fits to the same image
    assert float(many.low) == pytest.approx(float(one.low), abs=1 / 255)
    assert float(many.width) == pytest.approx(float(one.width), abs=1 / 255)
    # a series of such images, sampled again after they are put together: still every colour
    assert float(rule.fit_many([a[:200, :200]] * 3000, 8, count=3000).low) * 255 < 1
