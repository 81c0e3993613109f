"""VDSR with the official MATLAB weights on Set5 (protocol of ../shared/README.md)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import script, shared_path

from mdrn.models import VDSR
from mdrn.weights import CheckpointError, load_model


def test_vdsr_mat_loads_as_vdsr():
    net = load_model(shared_path("reference", "vdsr", "VDSR_Official.mat"))
    assert isinstance(net, VDSR) and net.scales == (2, 3, 4)
    convs = [m for m in net.net if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 20 and convs[0].in_channels == 1 and convs[-1].out_channels == 1


def test_vdsr_mat_corrupt(tmp_path):
    (tmp_path / "VDSR.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(CheckpointError, match="VDSR.mat: not a VDSR MATLAB file"):
        load_model(tmp_path / "VDSR.mat")


# measured on Set5 with the protocol (../shared/README.md): 37.55 / 33.67 / 31.35 dB
@pytest.mark.slow
@pytest.mark.parametrize(("scale", "expected"), [(2, 37.55), (3, 33.67), (4, 31.35)])
def test_vdsr_official_set5(scale, expected):
    net = load_model(shared_path("reference", "vdsr", "VDSR_Official.mat"))
    psnr, ssim = script("check_official").set5_scores(net, shared_path("datasets", "Set5"), scale)
    assert psnr == pytest.approx(expected, abs=0.02)
    published = json.loads(shared_path("reference", "published.json").read_text())["vdsr_official"]["Set5"]
    assert psnr == pytest.approx(published[str(scale)], abs=0.05)  # the paper's MATLAB figures
    assert 0.85 < ssim < 1.0
