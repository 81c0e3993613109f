"""The protocol's rules at their edges: what ``score()`` refuses, rounding at k + 0.5 grey levels, and the
protocol check held to the precision the README claims."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import ROOT
from protocol_data import MAX_OFF_BY_ONE, PSNR_TOLERANCE, SSIM_TOLERANCE

from mdrn.protocol.metrics import SRMetric, quantize, score


def _pair(n: int = 2, c: int = 3, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(n, c, size, size, generator=g, dtype=torch.float64)
    return (hr + 0.05 * torch.randn(hr.shape, generator=g, dtype=torch.float64)).clamp(0, 1), hr


# ------------------------------------------------------------------------------ score() refuses
def test_score_refuses_hr_outside_0_1() -> None:
    sr, hr = _pair()
    for bad in (1.2, -0.1):
        h = hr.clone()
        h[1, 0, 3, 4] = bad
        with pytest.raises(
            ValueError, match=r"hr \(the reference\) must lie in \[0, 1\].*1 value\(s\) outside"
        ):
            score(sr, h, scale=2)
    h = hr * 255  # an 8-bit image not divided by its peak
    span = rf"spans \[{float(h.min()):.6g}, {float(h.max()):.6g}\] with {int((h > 1).sum())} value"
    with pytest.raises(ValueError, match=span):
        score(sr, h, scale=2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_score_refuses_non_finite_sr_counted_and_named(dtype: torch.dtype) -> None:
    sr, hr = _pair(n=3)
    sr = sr.to(dtype)
    sr[1, 0, 5, 5] = float("inf")
    sr[1, 2, 6, 6] = float("inf")
    sr[2, 1, 7, 7] = float("nan")
    with pytest.raises(
        ValueError, match=r"sr .* not finite: 1 NaN, 2 \+Inf in image\(s\) \[1, 2\]; it is not clamped"
    ):
        score(sr, hr.to(dtype), scale=2)
    sr, hr = _pair()
    sr[0, 0, 0, 0] = float("-inf")  # in the shaved border: still an error, not a score
    with pytest.raises(ValueError, match=r"1 -Inf in image\(s\) \[0\]"):
        score(sr, hr, scale=2)


@pytest.mark.parametrize("scale", [2.7, 2.0, True, "2", None, -1])
def test_score_refuses_a_scale_that_is_not_an_integer(scale: object) -> None:
    sr, hr = _pair()
    with pytest.raises(ValueError, match=r"score: scale must be an integer"):
        score(sr, hr, scale=scale)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"SRMetric: scale must be an integer"):
        SRMetric(scale=scale)  # type: ignore[arg-type]


@pytest.mark.parametrize("bit_depth", [True, False, 8.0, 0, 33])
def test_score_refuses_a_bit_depth_that_is_not_an_integer(bit_depth: object) -> None:
    sr, hr = _pair()
    with pytest.raises(ValueError, match=r"score: bit_depth must be an integer"):
        score(sr, hr, scale=2, bit_depth=bit_depth)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"SRMetric: bit_depth must be an integer"):
        SRMetric(scale=2, bit_depth=bit_depth)  # type: ignore[arg-type]


def test_score_refuses_an_empty_batch() -> None:
    sr, hr = _pair()
    with pytest.raises(ValueError, match=r"score: the batch is empty \(N = 0\)"):
        score(sr[:0], hr[:0], scale=2)


def test_score_takes_numpy_integers_and_the_edges_of_0_1() -> None:
    sr, hr = _pair()
    hr[0, 0, 0, 0], hr[0, 0, 0, 1] = 0.0, 1.0
    p, s = score(sr, hr, scale=np.int64(2), bit_depth=np.int32(8))  # type: ignore[arg-type]
    q, t = score(sr, hr, scale=2)
    assert torch.equal(p, q) and torch.equal(s, t) and bool(torch.isfinite(p).all())
    sr[0, 0, 0, 0] = 1.5  # SR out of range is fine: the protocol quantizes (clamps) it as a file would
    assert bool(torch.isfinite(score(sr, hr, scale=2)[0]).all())


# ------------------------------------------------------------------------- rounding at k + 0.5
@pytest.mark.parametrize("bit_depth", [8, 12, 16])
def test_quantize_rounds_half_to_even_at_k_plus_half(bit_depth: int) -> None:
    """A value exactly between two grey levels goes to the even one (numpy/BasicSR and torch.round),
    never always up (MATLAB's uint8) nor always down; the CPU kernel and the torch path agree."""
    peak = 2**bit_depth - 1
    k = torch.arange(0, peak, max(1, peak // 200), dtype=torch.float64)
    x = (k + 0.5) / peak
    exact = x * peak == k + 0.5  # only the values whose product is exactly the tie
    assert int(exact.sum()) > 0.9 * len(k)
    got = quantize(x[exact], bit_depth) * peak
    even = torch.where(k[exact] % 2 == 0, k[exact], k[exact] + 1)
    torch.testing.assert_close(got, even, rtol=0, atol=0)
    # the same ties through score(): its CPU kernel quantizes SR itself (gray, no Y conversion)
    side = 40
    ties = x[exact][: side * side].repeat(side * side // int(exact.sum()) + 1)[: side * side]
    sr = ties.view(1, 1, side, side)
    hr = torch.where(torch.arange(side * side).view(1, 1, side, side) % 3 == 0, sr, torch.zeros_like(sr))
    rounded = quantize(sr.clone(), bit_depth)
    mse = float(((rounded - hr)[..., 2:-2, 2:-2] ** 2).mean())
    psnr, _ = score(sr, hr, scale=2, bit_depth=bit_depth)
    assert float(psnr[0]) == pytest.approx(10 * np.log10(1 / mse), abs=1e-9)


# ---------------------------------------------------------------- the protocol check's tolerance
def _bound(figure: str) -> float:
    """What a printed figure allows: the figure plus half its last digit (percent as a fraction)."""
    mantissa, _, exponent = figure.rstrip("%").partition("e")
    half = 0.5 * 10.0 ** (-len(mantissa.partition(".")[2]) + (int(exponent) if exponent else 0))
    return (float(mantissa) * 10.0 ** (int(exponent) if exponent else 0) + half) / (
        100 if figure.endswith("%") else 1
    )


def test_protocol_check_holds_the_readme_claim() -> None:
    """tests/protocol_data.py (tests/test_metrics.py, scripts/check_protocol.py) checks the agreement with
    BasicSR's values at the precision README.md states, not at a looser bound."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    claim = re.search(
        r"agrees with the reference values \(BasicSR's functions\) to ([\d.e-]+) dB PSNR and "
        r"([\d.e-]+) SSIM; "
        r"MATLAB-bicubic LR images differ in at most ([\d.]+%) of uint8 values",
        readme,
    )
    assert claim is not None, "README.md: the protocol's agreement sentence changed; update this test"
    for name, tolerance, figure in (
        ("PSNR_TOLERANCE", PSNR_TOLERANCE, claim.group(1)),
        ("SSIM_TOLERANCE", SSIM_TOLERANCE, claim.group(2)),
        ("MAX_OFF_BY_ONE", MAX_OFF_BY_ONE, claim.group(3)),
    ):
        assert tolerance <= _bound(figure) * (1 + 1e-9), (
            f"{name} = {tolerance:g} is looser than README's {figure}"
        )


def test_srmetric_turns_a_non_finite_image_into_nan_not_a_number_it_clamps() -> None:
    """SRMetric (the DDP-safe mean) never raises mid-epoch for one rank's NaN output: the mean becomes NaN
    and the images are counted, so every rank sees the same NaN after the sync (SRModule raises then)."""
    sr, hr = _pair(n=3)
    metric = SRMetric(scale=2)
    metric.update(sr[:1], hr[:1])
    finite = metric.compute()["psnr"]
    assert bool(torch.isfinite(finite))
    bad = sr.clone()
    bad[1, 0, 4, 4] = float("inf")
    metric.update(bad, hr)
    out = metric.compute()
    assert bool(torch.isnan(out["psnr"])) and bool(torch.isnan(out["ssim"]))
    assert int(metric.nonfinite) == 1 and int(metric.count) == 4
