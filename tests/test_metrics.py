"""mdrn.protocol.metrics: PSNR/SSIM against BasicSR's reference values, the protocol (score) and SRMetric."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import SHARED, shared_path
from protocol_data import PSNR_TOLERANCE, SSIM_TOLERANCE, metric_check, record_name
from skimage.metrics import structural_similarity

from mdrn.protocol.color import rgb_to_y
from mdrn.protocol.metrics import SRMetric, psnr, quantize, score, ssim


def _record_ids() -> list[str]:
    path = SHARED / "reference" / "protocol" / "reference.json"
    if not path.exists():
        return ["reference-data-missing"]
    return [record_name(r) for r in json.loads(path.read_text())]


@pytest.mark.parametrize("name", _record_ids())
def test_matches_reference_psnr_ssim(name: str) -> None:
    protocol = shared_path("reference", "protocol")
    rec = next(r for r in json.loads((protocol / "reference.json").read_text()) if record_name(r) == name)
    diff = metric_check(protocol, rec)
    for key in ("psnr_y", "psnr_rgb"):
        assert abs(diff[key]) <= PSNR_TOLERANCE, f"{name} {key} off by {diff[key]:.2e} dB"
    for key in ("ssim_y", "ssim_rgb"):
        assert abs(diff[key]) <= SSIM_TOLERANCE, f"{name} {key} off by {diff[key]:.2e}"


def test_quantize() -> None:
    x = torch.tensor([-0.2, 0.0, 0.3, 1.0, 1.7, 100.4 / 255, 100.6 / 255], dtype=torch.float64)
    expected = torch.tensor([0, 0, 76, 255, 255, 100, 101], dtype=torch.float64) / 255
    torch.testing.assert_close(quantize(x), expected, rtol=0, atol=0)
    q12 = quantize(x, 12)
    torch.testing.assert_close(q12 * 4095, torch.round(q12 * 4095), rtol=0, atol=1e-9)
    torch.testing.assert_close(quantize(q12, 12), q12, rtol=0, atol=0)
    with pytest.raises(ValueError, match="bit_depth"):
        quantize(x, 0)


def test_psnr_known_value_and_peak_of_eq4() -> None:
    hr = torch.rand(2, 1, 20, 20, dtype=torch.float64)
    sr = hr + torch.tensor([0.01, 0.1], dtype=torch.float64).view(2, 1, 1, 1)
    torch.testing.assert_close(psnr(sr, hr), torch.tensor([40.0, 20.0], dtype=torch.float64))
    # 12-bit image: 10 log10(1/MSE) on [0, 1] == 10 log10(4095^2 / MSE) in 12-bit units (Eq. 4)
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4096, (1, 1, 30, 30), generator=gen).double()
    b = (a + torch.randint(-40, 41, a.shape, generator=gen)).clamp(0, 4095)
    eq4 = 10 * math.log10(4095**2 / (a - b).square().mean().item())
    assert abs(psnr(b / 4095, a / 4095).item() - eq4) < 1e-9


def test_shave_removes_border() -> None:
    hr = torch.rand(1, 1, 20, 20, dtype=torch.float64)
    sr = hr.clone()
    sr[..., :2, :] += 0.5  # error only in the top 2 rows
    assert torch.isinf(psnr(sr, hr, shave=2)).all()
    assert psnr(sr, hr, shave=1).item() < 100
    assert ssim(sr, hr, shave=2).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_skimage_gaussian_valid() -> None:
    rng = np.random.default_rng(0)
    hr = rng.random((2, 1, 40, 37))
    sr = np.clip(hr + 0.1 * rng.standard_normal(hr.shape), 0, 1)
    ours = ssim(torch.from_numpy(sr), torch.from_numpy(hr))
    for i in range(2):
        ref = structural_similarity(
            sr[i, 0], hr[i, 0], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        assert abs(ours[i].item() - ref) < 1e-10


def test_y_gray_and_all_channels() -> None:
    torch.manual_seed(1)
    hr = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    sr = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1)
    # Y on RGB = scoring the Y images as gray
    torch.testing.assert_close(psnr(sr, hr), psnr(rgb_to_y(sr), rgb_to_y(hr)), rtol=0, atol=1e-12)
    torch.testing.assert_close(ssim(sr, hr), ssim(rgb_to_y(sr), rgb_to_y(hr)), rtol=0, atol=1e-12)
    # all channels: PSNR on the MSE over all channels, SSIM = mean over channels
    mse = (sr - hr).square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(psnr(sr, hr, y_channel=False), 10 * torch.log10(1 / mse), rtol=0, atol=1e-10)
    per_channel = torch.stack([ssim(sr[:, c : c + 1], hr[:, c : c + 1]) for c in range(3)], 1)
    torch.testing.assert_close(ssim(sr, hr, y_channel=False), per_channel.mean(1), rtol=0, atol=1e-12)
    # gray: raw values whatever y_channel says, never promoted to RGB
    g_sr, g_hr = sr[:, :1], hr[:, :1]
    torch.testing.assert_close(psnr(g_sr, g_hr), psnr(g_sr, g_hr, y_channel=False), rtol=0, atol=0)
    promoted = psnr(g_sr.repeat(1, 3, 1, 1), g_hr.repeat(1, 3, 1, 1))
    assert (promoted - psnr(g_sr, g_hr)).abs().min() > 0.5  # Y of gray-as-RGB shrinks the range


def test_batched_equals_per_image_and_float64_output() -> None:
    hr = torch.rand(3, 3, 30, 30)
    sr = (hr + 0.03 * torch.randn_like(hr)).clamp(0, 1)
    for fn in (psnr, ssim):
        batched = fn(sr, hr, shave=2)
        assert batched.dtype == torch.float64 and batched.shape == (3,)
        single = torch.cat([fn(sr[i : i + 1], hr[i : i + 1], shave=2) for i in range(3)])
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)


def _ssim_direct(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-plane SSIM of float64 (P, H, W) planes the textbook way: five maps, 2-D Gaussian conv2d."""
    import torch.nn.functional as F

    from mdrn.protocol.metrics import _GAUSS

    g = torch.tensor(_GAUSS, dtype=torch.float64)
    w = (g[:, None] * g[None, :])[None, None]
    x = torch.stack([a, b, a * a, b * b, a * b], 1).flatten(0, 1)[:, None]
    y = F.conv2d(x, w)
    mu1, mu2, e11, e22, e12 = y.view(a.shape[0], 5, *y.shape[-2:]).unbind(1)
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu1 * mu2 + c1) * (2 * (e12 - mu1 * mu2) + c2)
    den = (mu1**2 + mu2**2 + c1) * (e11 - mu1**2 + e22 - mu2**2 + c2)
    return (num / den).mean(dim=(1, 2))


@pytest.mark.parametrize("kernel", [True, False], ids=["cpu-kernel", "torch-path"])
@pytest.mark.parametrize("shape", [(1, 1, 11, 11), (2, 3, 70, 50), (3, 1, 43, 97), (1, 3, 27, 200)])
def test_bands_blocks_and_threads_equal_the_textbook_ssim(
    monkeypatch: pytest.MonkeyPatch, shape, kernel: bool
) -> None:
    """The numba kernel (CPU) and the torch path (other devices) each equal the textbook SSIM, whole
    images and split in bands of rows between threads."""
    import mdrn.protocol.metrics as metrics

    monkeypatch.setattr(metrics, "_CPU_KERNEL", kernel)
    gen = torch.Generator().manual_seed(sum(shape))
    hr = torch.rand(shape, dtype=torch.float64, generator=gen)
    sr = (hr + 0.05 * torch.randn(shape, dtype=torch.float64, generator=gen)).clamp(0, 1)
    n, c = shape[:2]
    for y_channel in (True, False):
        a, b = (rgb_to_y(t) if (y_channel and c == 3) else t for t in (sr, hr))
        expected = _ssim_direct(a.flatten(0, 1), b.flatten(0, 1)).view(n, -1).mean(1)
        whole = ssim(sr, hr, y_channel=y_channel)
        torch.testing.assert_close(whole, expected, rtol=0, atol=1e-12)
        threads = torch.get_num_threads()
        # bands of one block of rows, one image per chunk, the rows split between 3 threads (torch path);
        # ranges of one row at least split between 3 threads (kernel)
        monkeypatch.setattr(metrics, "_CPU_BAND", 600)
        monkeypatch.setattr(metrics, "_KERNEL_MIN_ROWS", 1)
        torch.set_num_threads(3)
        try:
            banded = ssim(sr, hr, y_channel=y_channel)
            p_banded = psnr(sr, hr, y_channel=y_channel)
        finally:
            torch.set_num_threads(threads)
            monkeypatch.setattr(metrics, "_CPU_BAND", 1 << 17)
            monkeypatch.setattr(metrics, "_KERNEL_MIN_ROWS", 32)
        torch.testing.assert_close(banded, whole, rtol=0, atol=1e-12)
        torch.testing.assert_close(p_banded, psnr(sr, hr, y_channel=y_channel), rtol=0, atol=1e-12)
        # score's PSNR (computed with the SSIM maps) equals psnr's own pass
        p, _ = score(sr, hr, scale=0 if min(shape[-2:]) < 13 else 1, y_channel=y_channel)
        q = psnr(quantize(sr), hr, shave=0 if min(shape[-2:]) < 13 else 1, y_channel=y_channel)
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
    assert torch.get_num_threads() == threads


def test_quantize_inplace_and_input_untouched() -> None:
    x = torch.tensor([[-0.1, 0.5, 0.25, 2.0]], dtype=torch.float64)
    keep = x.clone()
    q = quantize(x)
    torch.testing.assert_close(x, keep, rtol=0, atol=0)
    y = x.clone()
    assert quantize(y, inplace=True).data_ptr() == y.data_ptr()
    torch.testing.assert_close(y, q, rtol=0, atol=0)
    # score never writes into its inputs, float64 or not
    sr = torch.rand(1, 3, 24, 24, dtype=torch.float64)
    hr, before = sr.clone(), sr.clone()
    score(sr * 1.2, hr, scale=2)
    score(sr, hr, scale=2, y_channel=False)
    torch.testing.assert_close(sr, before, rtol=0, atol=0)


def test_score_is_quantize_shave_y() -> None:
    hr = quantize(torch.rand(2, 3, 32, 32, dtype=torch.float64))
    sr = hr + 0.02 * torch.randn_like(hr)  # not quantized, out of range in places
    p, s = score(sr, hr, scale=4)
    q = quantize(sr)
    torch.testing.assert_close(p, psnr(q, hr, shave=4), rtol=0, atol=1e-12)
    torch.testing.assert_close(s, ssim(q, hr, shave=4), rtol=0, atol=1e-12)
    assert not torch.allclose(p, psnr(sr, hr, shave=4))
    p_rgb, _ = score(sr, hr, scale=4, y_channel=False)
    torch.testing.assert_close(p_rgb, psnr(q, hr, shave=4, y_channel=False), rtol=0, atol=1e-12)
    p12, _ = score(sr, hr, scale=4, bit_depth=12)
    torch.testing.assert_close(p12, psnr(quantize(sr, 12), hr, shave=4), rtol=0, atol=1e-12)


def test_low_precision_input_and_autocast() -> None:
    hr = torch.rand(2, 3, 32, 32)
    sr = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1)
    sr16 = sr.bfloat16()
    expected = score(sr16.double(), hr, scale=2)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = score(sr16, hr, scale=2)
    for e, g in zip(expected, got):
        assert g.dtype == torch.float64
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_bad_input() -> None:
    x = torch.rand(1, 3, 30, 30)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(x, torch.rand(1, 3, 30, 31))
    with pytest.raises(ValueError, match=r"30x30 is too small for a shave of 10"):
        ssim(x, x, shave=10)
    with pytest.raises(ValueError, match="too small"):
        ssim(torch.rand(1, 1, 10, 40), torch.rand(1, 1, 10, 40))
    with pytest.raises(ValueError, match="too small"):
        psnr(x, x, shave=15)
    with pytest.raises(ValueError, match="got 2"):
        psnr(torch.rand(1, 2, 20, 20), torch.rand(1, 2, 20, 20))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        psnr(torch.rand(3, 20, 20), torch.rand(3, 20, 20))


def test_srmetric_mean_over_batches_float64_and_bf16() -> None:
    torch.manual_seed(2)
    batches = []
    for n in (3, 1, 2):
        hr = quantize(torch.rand(n, 3, 28, 28))
        batches.append(((hr + 0.04 * torch.randn_like(hr)), hr))
    metric = SRMetric(scale=2)
    for sr, hr in batches:
        metric.update(sr, hr)
    out = metric.compute()
    ps, ss = zip(*(score(sr, hr, scale=2) for sr, hr in batches))
    assert out["psnr"].dtype == torch.float64 and out["ssim"].dtype == torch.float64
    torch.testing.assert_close(out["psnr"], torch.cat(ps).mean(), rtol=0, atol=1e-12)
    torch.testing.assert_close(out["ssim"], torch.cat(ss).mean(), rtol=0, atol=1e-12)
    # bf16 SR (mixed-precision validation): cast, not an error; states stay float64 after .half()
    metric.reset()
    metric.half()
    for sr, hr in batches:
        metric.update(sr.bfloat16(), hr)
    out16 = metric.compute()
    ps16 = torch.cat([score(sr.bfloat16().double(), hr, scale=2)[0] for sr, hr in batches])
    assert out16["psnr"].dtype == torch.float64
    torch.testing.assert_close(out16["psnr"], ps16.mean(), rtol=0, atol=1e-12)
    # Y off: a different figure
    rgb = SRMetric(scale=2, y_channel=False)
    rgb.update(*batches[0])
    assert not torch.isclose(rgb.compute()["psnr"], torch.cat(ps[:1]).mean())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bit_depth", [8, 12, 16])
def test_cuda_scores_equal_the_cpu_kernel_even_under_bf16_autocast(bit_depth: int) -> None:
    """The torch path on a GPU gives the CPU kernel's protocol scores (float64), bf16 autocast or not."""
    gen = torch.Generator().manual_seed(bit_depth)
    hr = quantize(torch.rand(3, 3, 131, 97, dtype=torch.float64, generator=gen), bit_depth)
    sr = (hr + 0.02 * torch.randn(hr.shape, dtype=torch.float64, generator=gen)).float()
    p_cpu, s_cpu = score(sr, hr, scale=4, bit_depth=bit_depth)
    for autocast in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            p_gpu, s_gpu = score(sr.cuda(), hr.cuda(), scale=4, bit_depth=bit_depth)
        assert p_gpu.dtype == s_gpu.dtype == torch.float64
        torch.testing.assert_close(p_gpu.cpu(), p_cpu, rtol=0, atol=1e-9)
        torch.testing.assert_close(s_gpu.cpu(), s_cpu, rtol=0, atol=1e-11)
