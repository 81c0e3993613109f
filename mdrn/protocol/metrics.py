"""The evaluation protocol: quantization, PSNR and SSIM (per image, float64), and a torchmetrics ``Metric``.

Images are float tensors ``(N, C, H, W)`` with the n-bit range ``0 .. 2^n - 1`` mapped to [0, 1]
(C = 1 gray or C = 3 RGB). With ``y_channel=True`` an RGB image is scored on its BT.601 luma
(:func:`mdrn.protocol.color.rgb_to_y`, float, not rounded); a gray image is always scored on its raw values
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

Implementation (one pass per image): PSNR and SSIM come from the same prepared rows (quantized, Y).
On CPU the numba kernel :func:`mdrn.protocol.score_kernel.plane_sums` reads each row once and keeps
the last 11 rows' maps in cache; an image's rows are split between ``torch.get_num_threads()`` Python
threads (the kernel releases the GIL). On other devices (CUDA) :class:`_BandScorer` runs the same
formula as torch operations: the Gaussian filtering is two batched banded matrix products over four
maps of all images side by side (tests check the two against each other and against the textbook
five-map SSIM). ``python -m mdrn.bench --only metrics`` measures it against the per-image
numpy + scikit-image loop (same values within 1e-6 dB and 1e-7).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from mdrn.protocol.color import Y_FACTORS, rgb_to_y

__all__ = ["SRMetric", "psnr", "quantize", "score", "ssim"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def quantize(
    x: torch.Tensor, bit_depth: int = 8, *, inplace: bool = False, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Return ``round(clamp(x, 0, 1) * (2^n - 1)) / (2^n - 1)``: x as an n-bit image would store it.

    ``inplace=True`` overwrites ``x`` (a floating tensor the caller owns); ``out`` (a floating tensor of
    x's shape) receives ``x`` cast to its dtype, quantized in place (float32 into float64: exact).
    """
    if not isinstance(bit_depth, int) or not 1 <= bit_depth <= 32:
        raise ValueError(f"quantize: bit_depth must be an integer in 1..32, got {bit_depth!r}")
    if not x.is_floating_point():
        raise TypeError(f"quantize expects a floating tensor in [0, 1], got dtype {x.dtype}")
    peak = float(2**bit_depth - 1)
    # out: a separate cast, then one dtype (mixed-dtype kernels are not vectorized: measured 2x slower)
    if out is not None:
        y = out.copy_(x).clamp_(0.0, 1.0)
    else:
        y = x.clamp_(0.0, 1.0) if inplace else x.clamp(0.0, 1.0)
    return y.mul_(peak).round_().div_(peak)


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run the band loop with one intra-op thread on CPU (restored afterwards); no-op elsewhere.

    Many small operations across threads pay a synchronisation each, and on a machine shared with other
    jobs a multi-threaded BLAS call waits for descheduled threads (measured: 40x slower under load); the
    cores are used by splitting the image between Python threads instead.
    """
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


def _gauss_1d() -> list[float]:
    """Return the normalised 11-tap Gaussian (sigma 1.5) as float64 numbers (cv2.getGaussianKernel)."""
    r = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    return (g / g.sum()).tolist()


_GAUSS = _gauss_1d()
_HALO = SSIM_WINDOW - 1
#: Output rows (and columns) per block of the banded filter matrices: the separable Gaussian runs as two
#: batched matrix products, ``(B, B + 10) @ (B + 10, width)`` per block of B output rows and the same along
#: the columns: B + 10 multiply-adds per output instead of 11, but at BLAS speed (several times the
#: elementwise shifted adds in float64 on CPU).
_BLOCK = 16
#: Float64 elements of one band's stacked maps on CPU (rows x all columns, ~1 MB): a band and its filtered
#: copies stay in the core's cache. On other devices a band is the whole image.
_CPU_BAND = 1 << 17
#: Python threads per image at most: each holds the GIL for its operations' dispatch (~10% of its time)
_MAX_WORKERS = 4
#: On CPU the numba kernel (:mod:`mdrn.protocol.score_kernel`) scores; False runs the torch path (the
#: one other devices use) on CPU too: the tests compare the two.
_CPU_KERNEL = True
#: Fewest rows per range of the CPU kernel (a range also prepares the 10 rows below it)
_KERNEL_MIN_ROWS = 32
# SSIM constants, doubled: the map is computed from s = a + b and d = a - b (see _BandScorer).
_C1 = 2 * SSIM_K1**2
_C2 = 2 * SSIM_K2**2


assert _GAUSS == _GAUSS[::-1], "the CPU kernel uses the Gaussian's symmetry"
#: the CPU kernel's Y coefficients (kr, kg, kb, offset on the [0, 1] scale) and Gaussian taps
_KERNEL_CONSTANTS = (
    np.array(Y_FACTORS),
    np.array(_GAUSS),
)


def _band_matrix(block: int, device: torch.device) -> torch.Tensor:
    """``(block, block + 10)`` float64 matrix whose row j holds the Gaussian at columns j .. j + 10."""
    g = torch.tensor(_GAUSS, dtype=torch.float64)
    m = torch.zeros(block, block + _HALO, dtype=torch.float64)
    for j in range(block):
        m[j, j : j + SSIM_WINDOW] = g
    return m.to(device)


class _Prep:
    """Float64 planes (n * planes, rows, w) of SR and HR rows: SR quantized if ``bit_depth``, Y if asked.

    The buffers are reused from band to band, so that they stay in the core's cache.
    """

    def __init__(
        self, n: int, c: int, rows: int, w: int, bit_depth: int | None, y: bool, device: torch.device
    ) -> None:
        self.bit_depth, self.y = bit_depth, y and c == 3
        f64 = torch.float64
        self.sr = torch.empty(n, c, rows, w, dtype=f64, device=device)
        self.hr = torch.empty(n, c, rows, w, dtype=f64, device=device)
        self.y_sr = torch.empty(n, 1, rows, w, dtype=f64, device=device) if self.y else None
        self.y_hr = torch.empty(n, 1, rows, w, dtype=f64, device=device) if self.y else None

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The planes of SR and HR rows (N, C, rows, w), views of the buffers."""
        k = sr.shape[-2]
        a, b = self.sr[..., :k, :], self.hr[..., :k, :].copy_(hr)
        if self.bit_depth is not None:
            quantize(sr, self.bit_depth, out=a)
        else:
            a.copy_(sr)
        if self.y_sr is not None and self.y_hr is not None:
            a, b = rgb_to_y(a, out=self.y_sr[..., :k, :]), rgb_to_y(b, out=self.y_hr[..., :k, :])
        return a.flatten(0, 1), b.flatten(0, 1)


class _BandScorer:
    """The squared-error and SSIM sums of ``planes`` image planes of ``h x w``, band by band of rows.

    One buffer holds the four maps s = a + b, d = a - b, s^2 + C1 + C2, d^2 of every plane side by side
    (zero-padded); the vertical and the horizontal Gaussian are one batched matrix product each. From the
    filtered maps mu_s, mu_d, e_s, e_d (G sums to 1): 2 mu_a mu_b + C1 = (A = mu_s^2 + C1 - mu_d^2) / 2,
    mu_a^2 + mu_b^2 + C1 = (B = mu_s^2 + C1 + mu_d^2) / 2, 2 cov + C2 = (e_s - e_d - A) / 2 and
    var_a + var_b + C2 = (e_s + e_d - B) / 2 (with the doubled constants), so SSIM = A (e_s - e_d - A) /
    (B (e_s + e_d - B)): Wang et al.'s map from four filtered maps instead of five, in 11 operations.
    The last 10 rows of a band carry over to the next, so every image row is prepared once.
    """

    def __init__(self, planes: int, h: int, w: int, band: int, device: torch.device) -> None:
        blk, f64 = _BLOCK, torch.float64
        self.p, self.h, self.w, self.band = planes, h, w, band
        self.hv, wv = h - _HALO, w - _HALO  # valid output size
        self.ncol = -(-wv // blk)  # column blocks per plane; one more (garbage) block pads each plane
        stride = (self.ncol + 1) * blk  # >= ncol * blk + halo columns per map and plane
        self.width = 4 * planes * stride + blk  # + blk: the last garbage block reads past the stride
        self.x = torch.zeros(band + _HALO, self.width, dtype=f64, device=device)
        self.maps = self.x[:, : 4 * planes * stride].view(band + _HALO, 4, planes, stride)[..., :w]
        self.rows = torch.empty(band, self.width, dtype=f64, device=device)
        nblocks = 4 * planes * (self.ncol + 1)
        self.filt = torch.empty(nblocks, band, blk, dtype=f64, device=device)
        # the SSIM map's two temporaries reuse the column-filtered rows (free after the second product)
        self.tmp = self.rows.view(-1)[: 2 * planes * (self.ncol + 1) * band * blk].view(2, -1)
        g = _band_matrix(blk, device)
        self.g_rows = g.expand(band // blk, blk, blk + _HALO)
        self.g_cols = g.t().contiguous().expand(nblocks, blk + _HALO, blk)
        col = torch.arange(self.ncol + 1, device=device)[:, None] * blk + torch.arange(blk, device=device)
        # weights of the SSIM map positions: 1 at valid columns, 0 on the padding and garbage blocks and,
        # in the last band, on the rows below the image
        self.cols_ok = (col < wv).to(f64)[:, None, :]
        self.weights = self.cols_ok.expand(self.ncol + 1, band, blk).reshape(-1)
        self.c12 = torch.tensor(_C1 + _C2, dtype=f64, device=device)
        self.c1 = torch.tensor(_C1, dtype=f64, device=device)

    def run(
        self, sr: torch.Tensor, hr: torch.Tensor, r_start: int, r_end: int, last: bool, prep: _Prep
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums over output rows ``r_start .. r_end`` (squared error over image rows ``r_start ..`` the
        next range's start, or the image's end if ``last``): ``(sse, ssim_sum)``, each (planes,)."""
        band, x, maps, p = self.band, self.x, self.maps, self.p
        sse = torch.zeros(p, dtype=torch.float64, device=x.device)
        ssim_sum = torch.zeros(p, dtype=torch.float64, device=x.device)
        limit = self.h if last else r_end
        filled = 0
        for r0 in range(r_start, r_end, band):
            if r0 > r_start:  # carry the last ``halo`` rows over: they are the next band's first rows
                x[:_HALO].copy_(x[band : band + _HALO])
                filled = _HALO
            top = r0 + filled
            new = min(band + _HALO - filled, self.h - top)  # >= 1 (top < h)
            a, b = prep(sr[:, :, top : top + new], hr[:, :, top : top + new])
            dst = maps[filled : filled + new]  # (rows, 4, planes, w)
            a, b = a.transpose(0, 1), b.transpose(0, 1)  # (rows, planes, w)
            s, d = dst[:, 0], dst[:, 1]
            torch.add(a, b, out=s)
            torch.sub(a, b, out=d)
            torch.addcmul(self.c12, s, s, out=dst[:, 2])
            torch.mul(d, d, out=dst[:, 3])
            sse += dst[: max(0, min(new, limit - top)), 3].sum(dim=(0, 2))
            if filled + new < band + _HALO:  # below the image: zeros
                x[filled + new :].zero_()
            self._filter()
            weights = self.weights
            if r0 + band > self.hv:
                rows_ok = (torch.arange(band, device=x.device) < self.hv - r0).to(x.dtype)[:, None]
                weights = (self.cols_ok * rows_ok).reshape(-1)
            ssim_sum += torch.mv(self._ssim_map().view(p, -1), weights)
        return sse, ssim_sum

    def _filter(self) -> None:
        """Filter the band's maps: Gaussian along the columns, then along the rows, into ``self.filt``."""
        blk, band = _BLOCK, self.band
        src = self.x.unfold(0, blk + _HALO, blk).transpose(1, 2)  # (band / blk, blk + 10, width)
        torch.bmm(self.g_rows, src, out=self.rows.view(band // blk, blk, self.width))
        win = self.rows.unfold(1, blk + _HALO, blk).transpose(0, 1)  # (blocks, band, blk + 10)
        torch.bmm(win, self.g_cols, out=self.filt)

    def _ssim_map(self) -> torch.Tensor:
        """The SSIM map (planes * (ncol + 1) * band * blk,) from ``self.filt`` (overwritten)."""
        ms, md, es, ed = self.filt.view(4, -1).unbind(0)
        big_a, big_b = self.tmp.unbind(0)
        torch.addcmul(self.c1, ms, ms, out=big_b)  # mu_s^2 + C1
        torch.mul(md, md, out=md)  # mu_d^2
        torch.sub(big_b, md, out=big_a)  # A
        big_b.add_(md)  # B
        torch.sub(es, ed, out=ms).sub_(big_a)  # e_s - e_d - A
        es.add_(ed).sub_(big_b)  # e_s + e_d - B
        return big_a.mul_(ms).div_(big_b.mul_(es))


_POOL: dict[str, Any] = {"pool": None, "pid": None, "size": 0}


def _map_threads(job: Callable[[int], Any], count: int) -> list[Any]:
    """``[job(0), ..., job(count - 1)]``: ``job(0)`` in the calling thread, the others in pool threads.

    The threads are kept for the next call (starting them costs ~0.2 ms, a tenth of a small image's
    scoring); a process forked since gets a pool of its own.
    """
    if count == 1:
        return [job(0)]
    count -= 1  # pool threads
    pid = os.getpid()
    if _POOL["pool"] is None or _POOL["pid"] != pid or _POOL["size"] < count:
        if _POOL["pool"] is not None and _POOL["pid"] == pid:
            _POOL["pool"].shutdown(wait=False)
        _POOL.update(pool=ThreadPoolExecutor(count, thread_name_prefix="mdrn-metrics"), pid=pid, size=count)
    futures = [_POOL["pool"].submit(job, k) for k in range(1, count + 1)]
    first = job(0)
    return [first, *(f.result() for f in futures)]


def _sums(
    sr: torch.Tensor,
    hr: torch.Tensor,
    shave: int,
    y_channel: bool,
    bit_depth: int | None,
    want_ssim: bool,
    threads: int,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Per-plane sums of the squared error and (if ``want_ssim``) of the SSIM map, and planes per image.

    One pass over the shaved image: rows are cast to float64, quantized (SR, if ``bit_depth``) and
    converted to Y (RGB with ``y_channel``) once. On CPU the numba kernel (:func:`_kernel_sums`); else
    (or with ``_CPU_KERNEL`` False) torch operations, on CPU in bands that stay in cache, the image's rows
    split between ``threads`` Python threads (each running one-threaded operations; torch releases the
    GIL inside them).
    """
    if sr.device.type == "cpu" and _CPU_KERNEL:
        return _kernel_sums(sr, hr, shave, y_channel, bit_depth, want_ssim, threads)
    if shave:
        sr = sr[..., shave:-shave, shave:-shave]
        hr = hr[..., shave:-shave, shave:-shave]
    n, c, h, w = sr.shape
    planes = 1 if (y_channel and c == 3) else c
    dev = sr.device
    cpu = dev.type == "cpu"

    if not want_ssim:
        sse = torch.zeros(n * planes, dtype=torch.float64, device=dev)
        rows = max(1, _CPU_BAND // (c * w)) if cpu else h
        prep = _Prep(n, c, min(rows, h), w, bit_depth, y_channel, dev)
        for r0 in range(0, h, rows):
            a, b = prep(sr[:, :, r0 : r0 + rows], hr[:, :, r0 : r0 + rows])
            sse += a.sub_(b).square_().sum(dim=(1, 2))
        return sse, None, planes
    hv = h - _HALO
    rows_v = -(-hv // _BLOCK) * _BLOCK  # all valid output rows, rounded up to whole blocks
    stride = (-(-(w - _HALO) // _BLOCK) + 1) * _BLOCK
    if cpu:
        images = min(n, max(1, _CPU_BAND // (4 * planes * stride * (_BLOCK + _HALO))))
        band = (_CPU_BAND // (4 * planes * stride * images) - _HALO) // _BLOCK * _BLOCK
        band = min(max(_BLOCK, band), rows_v)
    else:
        images, band = n, rows_v
    # row ranges (whole bands) per worker thread
    bands = -(-hv // band)
    workers = max(1, min(threads if cpu else 1, bands, _MAX_WORKERS))
    per = -(-bands // workers) * band
    ranges = [(r, min(r + per, hv)) for r in range(0, hv, per)]
    sse, ssim_sum = [], []
    for i0 in range(0, n, images):
        i1 = min(n, i0 + images)
        a, b = sr[i0:i1], hr[i0:i1]

        def job(k: int, a: torch.Tensor = a, b: torch.Tensor = b, i: int = i1 - i0) -> tuple:
            scorer = _BandScorer(i * planes, h, w, band, dev)
            prep = _Prep(i, c, band + _HALO, w, bit_depth, y_channel, dev)
            return scorer.run(a, b, *ranges[k], k == len(ranges) - 1, prep)

        results = _map_threads(job, len(ranges))
        sse.append(torch.stack([r[0] for r in results]).sum(0))
        ssim_sum.append(torch.stack([r[1] for r in results]).sum(0))
    return torch.cat(sse), torch.cat(ssim_sum), planes


def _kernel_sums(
    sr: torch.Tensor,
    hr: torch.Tensor,
    shave: int,
    y_channel: bool,
    bit_depth: int | None,
    want_ssim: bool,
    threads: int,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """:func:`_sums` on CPU: :func:`mdrn.protocol.score_kernel.plane_sums` per plane and range of rows.

    Each plane's rows are split into one range per thread (``threads``, at most ``_MAX_WORKERS``; ranges
    of ``_KERNEL_MIN_ROWS`` rows at least), which the calling thread and pool threads take in turn (the
    kernel releases the GIL; a pool thread that wakes late leaves its range to the others); the sums are
    added in the ranges' order, so the result does not depend on which thread ran which range. The inputs
    are read in place (any strides, float32 or float64; other float dtypes are cast to float32 first,
    exactly).
    """
    from mdrn.protocol.score_kernel import plane_sums

    def array(t: torch.Tensor) -> Any:
        t = t.detach()
        return (t if t.dtype in (torch.float32, torch.float64) else t.float()).numpy()

    a, b = array(sr), array(hr)
    n, c, full_h, full_w = sr.shape
    h, w = full_h - 2 * shave, full_w - 2 * shave
    ymode = y_channel and c == 3
    planes = 1 if ymode else c
    rows = h - _HALO if want_ssim else h  # the rows split between threads
    workers = max(1, min(threads, _MAX_WORKERS))
    parts = max(1, min(workers, rows // _KERNEL_MIN_ROWS))
    cuts = [rows * k // parts for k in range(parts + 1)]
    quant, peak = bit_depth is not None, float(2 ** (bit_depth or 1) - 1)
    ky, gauss = _KERNEL_CONSTANTS
    tasks = [(i, ch, k) for i in range(n) for ch in range(planes) for k in range(parts)]
    sums = np.zeros((n * planes, parts, 2))  # one slot per task: no two threads write the same one

    taken = itertools.count()  # the next task: next() of it is atomic under the GIL

    def job(_: int) -> None:
        while (t := next(taken)) < len(tasks):
            i, ch, k = tasks[t]
            r0, r1 = cuts[k], cuts[k + 1]
            end = (h if k == parts - 1 else r1) if want_ssim else r1
            out = plane_sums(
                a, b, i, ch, ymode, shave, shave, h, w, r0, r1 if want_ssim else r0, end,
                quant, peak, ky, gauss, _C1, _C2,
            )  # fmt: skip
            sums[i * planes + ch, k] = out

    _map_threads(job, min(workers, len(tasks)))
    total = torch.from_numpy(sums).sum(dim=1)  # the parts in order: the same value for any thread timing
    return total[:, 0], (total[:, 1] if want_ssim else None), planes


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    """Return a context that disables autocast on x's device type."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _scores(
    sr: torch.Tensor,
    hr: torch.Tensor,
    shave: int,
    y_channel: bool,
    bit_depth: int | None,
    want_ssim: bool,
    name: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-image PSNR and (if ``want_ssim``) SSIM, float64 (N,): the protocol's one implementation."""
    shave = _check(sr, hr, shave, name, SSIM_WINDOW if want_ssim else 1)
    n = sr.shape[0]
    threads = torch.get_num_threads()
    with _no_autocast(sr), _one_thread(sr.device):
        sse, ssim_sum, planes = _sums(sr, hr, shave, y_channel, bit_depth, want_ssim, threads)
        h, w = sr.shape[-2] - 2 * shave, sr.shape[-1] - 2 * shave
        psnr_ = 10.0 * torch.log10(planes * h * w / sse.view(n, planes).sum(dim=1))
        if ssim_sum is None:
            return psnr_, None
        count = (h - SSIM_WINDOW + 1) * (w - SSIM_WINDOW + 1)
        return psnr_, (ssim_sum / count).view(n, planes).mean(dim=1)


def psnr(sr: torch.Tensor, hr: torch.Tensor, *, shave: int = 0, y_channel: bool = True) -> torch.Tensor:
    """Return the PSNR ``10 log10(1 / MSE)`` in dB of each image of (N, C, H, W) tensors, float64 (N,)."""
    return _scores(sr, hr, shave, y_channel, None, False, "psnr")[0]


def ssim(sr: torch.Tensor, hr: torch.Tensor, *, shave: int = 0, y_channel: bool = True) -> torch.Tensor:
    """Return the SSIM (Wang et al.; Gaussian 11x11, sigma 1.5, valid) of each image, float64 (N,)."""
    result = _scores(sr, hr, shave, y_channel, None, True, "ssim")[1]
    assert result is not None
    return result


def _check_protocol_args(scale: Any, bit_depth: Any, name: str) -> tuple[int, int]:
    """``(scale, bit_depth)`` as ints; a bool, a non-integer or an out-of-range value raises ValueError."""
    # scale 0: no border removed (a shave of 0, as tests of the kernel use it)
    for label, value, low, high in (("scale", scale, 0, None), ("bit_depth", bit_depth, 1, 32)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}: {label} must be an integer, got {value!r} ({type(value).__name__})")
        if value < low or (high is not None and value > high):
            bounds = f"in {low}..{high}" if high is not None else f">= {low}"
            raise ValueError(f"{name}: {label} must be an integer {bounds}, got {value!r}")
    return int(scale), int(bit_depth)


def _nonfinite(x: torch.Tensor) -> str:
    """What is not finite in ``x``: the counts of NaN, +Inf and -Inf, and the images (batch indices)."""
    kinds = {"NaN": torch.isnan(x), "+Inf": torch.isposinf(x), "-Inf": torch.isneginf(x)}
    counts = ", ".join(f"{int(m.sum())} {k}" for k, m in kinds.items() if bool(m.any()))
    bad = torch.logical_not(torch.isfinite(x)).flatten(1).any(dim=1).nonzero().flatten().tolist()
    return f"{counts} in image(s) {bad}"


def _check_values(sr: torch.Tensor, hr: torch.Tensor, name: str) -> None:
    """Refuse what the protocol cannot score: an empty batch, SR that is not finite, HR outside [0, 1].

    SR is never clamped into a score: a network output of NaN or Inf is an error, counted and named. Two
    cheap passes (a sum stays finite only when every value is; HR's min and max), details only on failure.
    """
    if sr.shape[0] == 0:
        raise ValueError(f"{name}: the batch is empty (N = 0): there is no image to score")
    # a finite sum proves every value finite; an overflowing sum of finite values is checked exactly
    if not bool(torch.isfinite(sr.sum())) and not bool(torch.isfinite(sr).all()):
        raise ValueError(f"{name}: sr (the output scored) is not finite: {_nonfinite(sr)}; it is not clamped")
    if hr.device.type == "cpu" and hr.dtype in (torch.float32, torch.float64):  # numpy's min/max: faster
        a = hr.detach().numpy()
        low, high = float(a.min()), float(a.max())
    else:
        low, high = (float(v) for v in torch.aminmax(hr))
    if not (low >= 0.0 and high <= 1.0):  # NaN fails both comparisons
        if not bool(torch.isfinite(hr).all()):
            raise ValueError(f"{name}: hr (the reference) is not finite: {_nonfinite(hr)}")
        outside = int(((hr < 0) | (hr > 1)).sum())
        raise ValueError(
            f"{name}: hr (the reference) must lie in [0, 1] (an n-bit image divided by 2^n - 1); it spans "
            f"[{low:.6g}, {high:.6g}] with {outside} value(s) outside"
        )


def score(
    sr: torch.Tensor, hr: torch.Tensor, *, scale: int, bit_depth: int = 8, y_channel: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the protocol's per-image ``(psnr, ssim)``: SR quantized to ``bit_depth``, shave = scale, Y.

    Refused with one ``ValueError`` each: a scale or bit depth that is not an integer (a bool included),
    an empty batch, SR with NaN or Inf values (counted and named, never clamped), HR outside [0, 1].
    """
    scale, bit_depth = _check_protocol_args(scale, bit_depth, "score")
    _check(sr, hr, scale, "score", SSIM_WINDOW)
    with _one_thread(sr.device):  # small reductions: threads would wait for each other on a busy machine
        _check_values(sr, hr, "score")
    p, s = _scores(sr, hr, scale, y_channel, bit_depth, True, "score")
    assert s is not None
    return p, s


class SRMetric(Metric):
    """Mean protocol PSNR/SSIM (:func:`score`) over all images seen; float64 sum states, DDP-safe."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, scale: int, bit_depth: int = 8, y_channel: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale, self.bit_depth = _check_protocol_args(scale, bit_depth, "SRMetric")
        self.y_channel = bool(y_channel)
        zero = torch.tensor(0.0, dtype=torch.float64)
        self.add_state("psnr_sum", default=zero.clone(), dist_reduce_fx="sum")
        self.add_state("ssim_sum", default=zero.clone(), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("nonfinite", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, sr: torch.Tensor, hr: torch.Tensor) -> None:
        """Score a batch (N, C, H, W) and add its per-image values to the sums.

        An image whose SR holds NaN or Inf (which :func:`score` refuses) is not clamped into a number: it
        makes the sums NaN and is counted in ``nonfinite``, so the mean says so after the ranks' sync
        (every rank sees the same NaN; a caller raises there, as ``SRModule`` does).
        """
        if sr.ndim == 4 and sr.shape[0] and not bool(torch.isfinite(sr.sum())):
            finite = torch.isfinite(sr.flatten(1)).all(dim=1)
            bad = int((~finite).sum())
            if bad:
                self.nonfinite += bad
                self.count += bad
                self.psnr_sum += float("nan")
                self.ssim_sum += float("nan")
                if bad == sr.shape[0]:
                    return
                sr, hr = sr[finite], hr[finite]
        p, s = score(sr, hr, scale=self.scale, bit_depth=self.bit_depth, y_channel=self.y_channel)
        self.psnr_sum += p.sum().to(self.psnr_sum)
        self.ssim_sum += s.sum().to(self.ssim_sum)
        self.count += p.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        """Return ``{"psnr": mean PSNR, "ssim": mean SSIM}`` over the images seen (float64)."""
        n = self.count.to(torch.float64)
        return {"psnr": self.psnr_sum / n, "ssim": self.ssim_sum / n}
