"""The evaluation protocol: quantization, PSNR and SSIM (per image, float64), and a torchmetrics ``Metric``.

Images are float tensors ``(N, C, H, W)`` with the n-bit range ``0 .. 2^n - 1`` mapped to [0, 1]
(C = 1 gray or C = 3 RGB). With ``y_channel=True`` an RGB image is scored on its BT.601 luma
(:func:`mdrn.color.rgb_to_y`, float, not rounded); a gray image is always scored on its raw values
(never promoted to RGB). With ``y_channel=False`` an RGB image is scored on all channels (PSNR on the
MSE over all channels, SSIM = mean of the per-channel SSIMs).

PSNR is ``10 log10(1 / MSE)`` on the [0, 1] scale, which equals the paper's Eq. 4,
``10 log10((2^n - 1)^2 / MSE_n)`` with the MSE in n-bit units (peak 255 for 8 bit, 4095 for 12 bit,
65535 for 16 bit), because both the peak and the error scale by ``2^n - 1``.

SSIM follows Wang et al. (2004) as BasicSR's ``calculate_ssim``: 11-tap Gaussian window with sigma 1.5
(applied separably), statistics only at 'valid' positions (no padding), biased variances (no n - 1
correction), C1 = 0.01^2 and C2 = 0.03^2 on the [0, 1] scale; the image's SSIM is the mean of the map.

Everything is computed in float64 with autocast disabled, whatever the input dtype (bf16 included).
:func:`score` is THE protocol every other module calls: quantize SR to the bit depth, shave ``scale``
pixels on every side, Y for RGB.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torchmetrics import Metric

from mdrn.color import rgb_to_y

__all__ = ["SRMetric", "psnr", "quantize", "score", "ssim"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def quantize(x: torch.Tensor, bit_depth: int = 8) -> torch.Tensor:
    """Return ``round(clamp(x, 0, 1) * (2^n - 1)) / (2^n - 1)``: x as an n-bit image would store it."""
    if not isinstance(bit_depth, int) or not 1 <= bit_depth <= 32:
        raise ValueError(f"quantize: bit_depth must be an integer in 1..32, got {bit_depth!r}")
    if not x.is_floating_point():
        raise TypeError(f"quantize expects a floating tensor in [0, 1], got dtype {x.dtype}")
    peak = float(2**bit_depth - 1)
    return torch.round(x.clamp(0.0, 1.0) * peak) / peak


# Working-set size of one block on CPU (elements per temporary): large temporaries cost page faults that
# dominate the arithmetic, so CPU work is done in blocks of rows small enough to stay in cache, on one
# thread (many small ops across threads pay a synchronisation per op, ruinous on a loaded machine).
_CPU_BLOCK = 1 << 18


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run the block loop with one intra-op thread on CPU (restored afterwards); no-op elsewhere."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check(sr: torch.Tensor, hr: torch.Tensor, shave: int, name: str, min_size: int) -> int:
    """Raise a clear error for bad shapes/sizes; return the shave as int."""
    for label, t in (("sr", sr), ("hr", hr)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{name}: {label} must have shape (N, C, H, W), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name}: {label} must be a floating tensor in [0, 1], got dtype {t.dtype}")
    if sr.shape != hr.shape:
        raise ValueError(f"{name}: sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    c = sr.shape[1]
    if c not in (1, 3):
        raise ValueError(f"{name}: images must have 1 (gray) or 3 (RGB) channels, got {c}")
    shave = int(shave)
    if shave < 0:
        raise ValueError(f"{name}: shave must be >= 0, got {shave}")
    h, w = sr.shape[-2], sr.shape[-1]
    if h - 2 * shave < min_size or w - 2 * shave < min_size:
        raise ValueError(
            f"{name}: image of {h}x{w} is too small for a shave of {shave} pixels per side "
            f"(needs at least {min_size}x{min_size} after shaving)"
        )
    return shave


def _per_image_sums(
    sr: torch.Tensor,
    hr: torch.Tensor,
    *,
    shave: int,
    y_channel: bool,
    halo: int,
    bit_depth: int | None,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Sum ``fn`` (a per-pixel map of float64 (n, c, rows + halo, W) blocks) over each image: (N,) float64.

    Each block is cast to float64, quantized to ``bit_depth`` (SR only, if given) and converted to Y
    (RGB with ``y_channel``) before ``fn``; the shave is applied first. Blocks are small on CPU only.
    """
    if shave:
        sr = sr[..., shave:-shave, shave:-shave]
        hr = hr[..., shave:-shave, shave:-shave]
    n, c, h, w = sr.shape
    h_out = h - halo
    if sr.device.type == "cpu":
        rows = max(1, _CPU_BLOCK // (c * w) - halo)
        images = max(1, _CPU_BLOCK // (c * h * w)) if rows >= h_out else 1
    else:
        rows, images = h_out, n
    sums = torch.zeros(n, dtype=torch.float64, device=sr.device)
    with _one_thread(sr.device):
        for n0 in range(0, n, images):
            n1 = min(n, n0 + images)
            for r0 in range(0, h_out, rows):
                r1 = min(h_out, r0 + rows)
                a = sr[n0:n1, :, r0 : r1 + halo].to(torch.float64)
                b = hr[n0:n1, :, r0 : r1 + halo].to(torch.float64)
                if bit_depth is not None:
                    a = quantize(a, bit_depth)
                if y_channel and c == 3:
                    a, b = rgb_to_y(a), rgb_to_y(b)
                sums[n0:n1] += fn(a, b).sum(dim=(1, 2, 3))
    return sums


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    """Return a context that disables autocast on x's device type."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _squared_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return the per-pixel squared error."""
    return (a - b).square_()


def _psnr(
    sr: torch.Tensor, hr: torch.Tensor, shave: int, y_channel: bool, bit_depth: int | None
) -> torch.Tensor:
    """PSNR per image (see :func:`psnr`), optionally quantizing SR block by block."""
    shave = _check(sr, hr, shave, "psnr", 1)
    with _no_autocast(sr):
        sse = _per_image_sums(
            sr, hr, shave=shave, y_channel=y_channel, halo=0, bit_depth=bit_depth, fn=_squared_error
        )
        channels = 1 if (y_channel and sr.shape[1] == 3) else sr.shape[1]
        count = channels * (sr.shape[-2] - 2 * shave) * (sr.shape[-1] - 2 * shave)
        return 10.0 * torch.log10(count / sse)


def psnr(sr: torch.Tensor, hr: torch.Tensor, *, shave: int = 0, y_channel: bool = True) -> torch.Tensor:
    """Return the PSNR ``10 log10(1 / MSE)`` in dB of each image of (N, C, H, W) tensors, float64 (N,)."""
    return _psnr(sr, hr, shave, y_channel, None)


def _gauss_1d() -> list[float]:
    """Return the normalised 11-tap Gaussian (sigma 1.5) as float64 numbers (cv2.getGaussianKernel)."""
    r = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    return (g / g.sum()).tolist()


_GAUSS = _gauss_1d()


def _filter_valid(x: torch.Tensor) -> torch.Tensor:
    """Filter (..., H, W) with the separable 11x11 Gaussian window at 'valid' positions only.

    Shifted in-place multiply-adds: several times faster than ``conv2d`` in float64 on CPU.
    """
    g = _GAUSS
    h = x.shape[-2] - SSIM_WINDOW + 1
    rows = x[..., 0:h, :] * g[0]
    for k in range(1, SSIM_WINDOW):
        rows.add_(x[..., k : k + h, :], alpha=g[k])
    w = x.shape[-1] - SSIM_WINDOW + 1
    out = rows[..., 0:w] * g[0]
    for k in range(1, SSIM_WINDOW):
        out.add_(rows[..., k : k + w], alpha=g[k])
    return out


def _ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return the SSIM map of float64 blocks (n, c, h, w) at the 'valid' positions."""
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    stats = _filter_valid(torch.stack([a, b, a * a, b * b, a * b], dim=2))  # (n, c, 5, h', w')
    mu1, mu2, e11, e22, e12 = stats.unbind(dim=2)
    mu12 = mu1 * mu2
    mu_sq = mu1.square() + mu2.square()
    num = (2 * mu12 + c1) * (2 * (e12 - mu12) + c2)
    den = (mu_sq + c1) * ((e11 + e22) - mu_sq + c2)
    return num.div_(den)


def _ssim(
    sr: torch.Tensor, hr: torch.Tensor, shave: int, y_channel: bool, bit_depth: int | None
) -> torch.Tensor:
    """SSIM per image (see :func:`ssim`), optionally quantizing SR block by block."""
    shave = _check(sr, hr, shave, "ssim", SSIM_WINDOW)
    with _no_autocast(sr):
        halo = SSIM_WINDOW - 1
        total = _per_image_sums(
            sr, hr, shave=shave, y_channel=y_channel, halo=halo, bit_depth=bit_depth, fn=_ssim_map
        )
        channels = 1 if (y_channel and sr.shape[1] == 3) else sr.shape[1]
        count = channels * (sr.shape[-2] - 2 * shave - halo) * (sr.shape[-1] - 2 * shave - halo)
        return total / count


def ssim(sr: torch.Tensor, hr: torch.Tensor, *, shave: int = 0, y_channel: bool = True) -> torch.Tensor:
    """Return the SSIM (Wang et al.; Gaussian 11x11, sigma 1.5, valid) of each image, float64 (N,)."""
    return _ssim(sr, hr, shave, y_channel, None)


def score(
    sr: torch.Tensor, hr: torch.Tensor, *, scale: int, bit_depth: int = 8, y_channel: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the protocol's per-image ``(psnr, ssim)``: SR quantized to ``bit_depth``, shave = scale, Y."""
    if not isinstance(bit_depth, int) or not 1 <= bit_depth <= 32:
        raise ValueError(f"score: bit_depth must be an integer in 1..32, got {bit_depth!r}")
    return _psnr(sr, hr, scale, y_channel, bit_depth), _ssim(sr, hr, scale, y_channel, bit_depth)


class SRMetric(Metric):
    """Mean protocol PSNR/SSIM (:func:`score`) over all images seen; float64 sum states, DDP-safe."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, scale: int, bit_depth: int = 8, y_channel: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = int(scale)
        self.bit_depth = int(bit_depth)
        self.y_channel = bool(y_channel)
        zero = torch.tensor(0.0, dtype=torch.float64)
        self.add_state("psnr_sum", default=zero.clone(), dist_reduce_fx="sum")
        self.add_state("ssim_sum", default=zero.clone(), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, sr: torch.Tensor, hr: torch.Tensor) -> None:
        """Score a batch (N, C, H, W) and add its per-image values to the sums."""
        p, s = score(sr, hr, scale=self.scale, bit_depth=self.bit_depth, y_channel=self.y_channel)
        self.psnr_sum += p.sum().to(self.psnr_sum)
        self.ssim_sum += s.sum().to(self.ssim_sum)
        self.count += p.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        """Return ``{"psnr": mean PSNR, "ssim": mean SSIM}`` over the images seen (float64)."""
        n = self.count.to(torch.float64)
        return {"psnr": self.psnr_sum / n, "ssim": self.ssim_sum / n}
