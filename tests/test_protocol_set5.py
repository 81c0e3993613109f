"""Bicubic on Set5 with the protocol functions (degrade -> uint8 LR -> imresize up -> score)."""

from __future__ import annotations

import pytest
from conftest import shared_path
from protocol_data import SET5_BICUBIC, SET5_TOLERANCE, set5_bicubic


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_bicubic_psnr(scale: int) -> None:
    psnr, ssim = set5_bicubic(shared_path("datasets", "Set5"), scale)
    assert abs(psnr - SET5_BICUBIC[scale]) <= SET5_TOLERANCE, (
        f"x{scale}: {psnr:.4f} dB, expected {SET5_BICUBIC[scale]}"
    )
    assert 0.7 < ssim < 1.0
