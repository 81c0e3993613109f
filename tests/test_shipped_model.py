"""The shipped default model (``mdrn_small``): found by name with no network, its spec, gray and RGB
input at 8 to 16 bits, better than bicubic on held-out images, and the scores its card was made from."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path

import mdrn.io.download
import mdrn.weights
from mdrn.data.cache import make_lr
from mdrn.io.images import image_to_tensor, read_image
from mdrn.models import MDRN, model_spec
from mdrn.models.inference import upscale
from mdrn.protocol.metrics import score
from mdrn.protocol.resize import imresize, modcrop
from mdrn.reproduce.results import RESULTS, read_csv, shipped_run
from mdrn.weights import DEFAULT_MODEL, PRETRAINED_DIR, SHIPPED_MODELS, load_model, shipped_path

MAX_BYTES = 8 * 1024 * 1024


@pytest.fixture
def no_network(monkeypatch):
    """Any download or socket connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the shipped model must load without network")

    monkeypatch.setattr(mdrn.io.download, "download_file", refuse)
    monkeypatch.setattr(mdrn.weights, "download_file", refuse, raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def net() -> MDRN:
    return load_model(DEFAULT_MODEL)


def test_default_model_is_shipped_with_its_card():
    assert DEFAULT_MODEL in SHIPPED_MODELS
    path = shipped_path(DEFAULT_MODEL)
    assert path.parent == PRETRAINED_DIR and 0 < path.stat().st_size <= MAX_BYTES
    card = path.with_suffix(".md").read_text()
    for fact in ("bicubic_skip=True", "Set5", "sample_16bit", "SHA-256", "Training", "steps"):
        assert fact in card


def test_loads_by_name_without_network(no_network):
    net = load_model(DEFAULT_MODEL)
    spec = model_spec(net)
    assert spec["arch"] == "MDRN" and not net.training
    assert spec["args"]["bicubic_skip"] is True
    assert tuple(spec["args"]["scales"]) == (2, 3, 4) and spec["args"]["n_colors"] == 3


@pytest.mark.parametrize("channels,bit_depth", [(1, 8), (1, 16), (3, 8), (3, 16)])
def test_gray_and_rgb_8_to_16_bit(net, channels, bit_depth):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 12), torch.linspace(0, 1, 10), indexing="ij")
    planes = [
        0.5 + 0.3 * torch.sin(3 * xx + 2 * yy + c) for c in range(channels)
    ]  # smooth, with edges nowhere
    levels = 2**bit_depth - 1
    x = torch.round(torch.stack(planes)[None] * levels) / levels
    for scale in (2, 3, 4):
        y = upscale(net, x, scale)
        assert y.shape == (1, channels, 12 * scale, 10 * scale)
        # bicubic plus detail: on a smooth image almost bicubic, never a brightness or colour shift
        diff = y - imresize(x, scale)
        assert float(diff.mean().abs()) < 1e-3 and float(diff.abs().mean()) < 5e-3


def _pydicom_ct() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm", download=False))


def test_beats_bicubic_on_held_out_images(net):
    """CT_small (16-bit gray, the sample test split) and a retina crop (8-bit RGB, held out)."""
    import skimage.data

    retina = skimage.data.retina()
    c = retina.shape[0] // 2
    images = [
        (image_to_tensor(read_image(_pydicom_ct()), torch.float64)[None], 16),
        (torch.from_numpy(retina[c - 96 : c + 96, c - 96 : c + 96]).permute(2, 0, 1)[None].double() / 255, 8),
    ]
    for full, bit_depth in images:
        for s in (2, 3, 4):
            hr = modcrop(full, s)
            lr = make_lr(hr, s, bit_depth).float()
            ours, _ = score(upscale(net, lr, s).double(), hr, scale=s, bit_depth=bit_depth)
            bic, _ = score(imresize(lr, s).double(), hr, scale=s, bit_depth=bit_depth)
            assert float(ours) > float(bic), (bit_depth, s, float(ours), float(bic))


def test_reproduces_the_recorded_set5_scores(net):
    """The shipped file is the one the card's Set5 scores were measured with (one image, every scale)."""
    recorded = {
        (int(r["scale"]), r["image"]): float(r["psnr"])
        for r in read_csv(RESULTS / shipped_run(DEFAULT_MODEL) / f"{shipped_run(DEFAULT_MODEL)}_set5.csv")
    }
    path = shared_path("datasets", "Set5", "bird.png")
    img = read_image(path)
    full = image_to_tensor(img, torch.float64)[None]
    for s in (2, 3, 4):
        hr = modcrop(full, s)
        lr = make_lr(hr, s, img.bit_depth).float()
        psnr, _ = score(upscale(net, lr, s).double(), hr, scale=s, bit_depth=img.bit_depth)
        assert float(psnr) == pytest.approx(recorded[(s, "bird.png")], abs=2e-3)
    assert np.isfinite(list(recorded.values())).all()
