"""The protocol's one-pass CPU kernel (numba, float64): squared error and SSIM sums of one image plane.

:func:`plane_sums` reads the SR and HR rows once each: converts them to float64, quantizes SR
(``round(clamp(x, 0, 1) * peak) / peak``, half to even as ``torch.round``), takes BT.601 Y of RGB with
the coefficients :mod:`mdrn.protocol.color` owns (passed in by the caller), and keeps the four maps
``s = a + b``, ``d = a - b``, ``s^2 + C1 + C2``, ``d^2`` of the last 12 rows in a ring buffer; each
output row of the SSIM map is the separable 11-tap Gaussian of those rows (vertical, then horizontal;
two output rows per pass, which share 10 of their 11 rows) and Wang et al.'s formula in the s/d form
:class:`mdrn.protocol.metrics._BandScorer` documents. Nothing bigger than a few rows is ever allocated,
so the working set stays in the core's cache.

The function releases the GIL (``nogil``): :mod:`mdrn.protocol.metrics` splits an image's rows between
Python threads. Float64 in a fixed order (the sums use four partial accumulators, never reassociated);
the one fast-math flag is ``contract``: a multiply followed by an add may run as one fused multiply-add
(measured 10% faster on an AVX-512 Xeon; results change in the last bit of an operation, 1e-15 of an
SSIM).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["plane_sums"]

_FASTMATH = {"contract"}
#: rows kept in the ring: the 11 of one window and the one more that the next output row needs, so that
#: two output rows are filtered per pass (:func:`_vertical2`)
_RING = 12


def _jit(fn):  # noqa: ANN001, ANN202 - a decorator
    """``numba.njit(nogil=True)``, compiled code cached on disk where numba finds a writable place (beside
    this file or in the user's cache folder; else compiled once per process: about 2 s)."""
    try:
        return njit(nogil=True, cache=True, fastmath=_FASTMATH)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install, no home)
        return njit(nogil=True, fastmath=_FASTMATH)(fn)


@_jit
def _prep_row(src, n, ch, ymode, row, left, w, quant, peak, ky, out):  # pragma: no cover - compiled
    """Row ``row`` of plane ``ch`` (or of Y) of image ``n`` as float64 into ``out`` (quantized if quant)."""
    if ymode:
        for j in range(w):
            r = np.float64(src[n, 0, row, left + j])
            g = np.float64(src[n, 1, row, left + j])
            b = np.float64(src[n, 2, row, left + j])
            if quant:
                r = np.rint(min(max(r, 0.0), 1.0) * peak) / peak
                g = np.rint(min(max(g, 0.0), 1.0) * peak) / peak
                b = np.rint(min(max(b, 0.0), 1.0) * peak) / peak
            out[j] = r * ky[0] + g * ky[1] + b * ky[2] + ky[3]
    else:
        for j in range(w):
            v = np.float64(src[n, ch, row, left + j])
            if quant:
                v = np.rint(min(max(v, 0.0), 1.0) * peak) / peak
            out[j] = v


@_jit
def _sum4(x, count):  # pragma: no cover - compiled
    """Sum of ``x[:count]`` with four partial accumulators (vectorizable without reassociation)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = 0
    while j + 4 <= count:
        s0 += x[j]
        s1 += x[j + 1]
        s2 += x[j + 2]
        s3 += x[j + 3]
        j += 4
    while j < count:
        s0 += x[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


@_jit
def _vertical2(ring, i, m, g, out0, out1, w):  # pragma: no cover - compiled
    """``out0[j]``, ``out1[j]`` = the 11-tap Gaussian down map ``m`` of ring rows ``i .. i + 10`` and
    ``i + 1 .. i + 11``: the 12 rows are read once for both output rows (an FMA chain per output)."""
    r0 = ring[i % _RING, m]
    r1 = ring[(i + 1) % _RING, m]
    r2 = ring[(i + 2) % _RING, m]
    r3 = ring[(i + 3) % _RING, m]
    r4 = ring[(i + 4) % _RING, m]
    r5 = ring[(i + 5) % _RING, m]
    r6 = ring[(i + 6) % _RING, m]
    r7 = ring[(i + 7) % _RING, m]
    r8 = ring[(i + 8) % _RING, m]
    r9 = ring[(i + 9) % _RING, m]
    r10 = ring[(i + 10) % _RING, m]
    r11 = ring[(i + 11) % _RING, m]
    g0, g1, g2, g3, g4, g5 = g
    for j in range(w):
        x1 = r1[j]
        x2 = r2[j]
        x3 = r3[j]
        x4 = r4[j]
        x5 = r5[j]
        x6 = r6[j]
        x7 = r7[j]
        x8 = r8[j]
        x9 = r9[j]
        x10 = r10[j]
        out0[j] = (
            g0 * r0[j] + g1 * x1 + g2 * x2 + g3 * x3 + g4 * x4 + g5 * x5
            + g4 * x6 + g3 * x7 + g2 * x8 + g1 * x9 + g0 * x10
        )  # fmt: skip
        out1[j] = (
            g0 * x1 + g1 * x2 + g2 * x3 + g3 * x4 + g4 * x5 + g5 * x6
            + g4 * x7 + g3 * x8 + g2 * x9 + g1 * x10 + g0 * r11[j]
        )  # fmt: skip


@_jit
def _ssim_row(hz, c1, smap, wv):  # pragma: no cover - compiled
    """Sum of one row of the SSIM map from the four filtered maps ``hz`` (the s/d form)."""
    ms = hz[0]
    md = hz[1]
    es = hz[2]
    ed = hz[3]
    for j in range(wv):
        big_b = ms[j] * ms[j] + c1
        dd = md[j] * md[j]
        big_a = big_b - dd
        big_b = big_b + dd
        smap[j] = big_a * (es[j] - ed[j] - big_a) / (big_b * (es[j] + ed[j] - big_b))
    return _sum4(smap, wv)


@_jit
def _horizontal(x, g, out, wv):  # pragma: no cover - compiled
    """``out[j]`` = the 11-tap Gaussian of ``x[j .. j + 10]``, ``j < wv`` (the taps in the order of
    :func:`_vertical2`)."""
    g0, g1, g2, g3, g4, g5 = g
    for j in range(wv):
        out[j] = (
            g0 * x[j] + g1 * x[j + 1] + g2 * x[j + 2] + g3 * x[j + 3] + g4 * x[j + 4] + g5 * x[j + 5]
            + g4 * x[j + 6] + g3 * x[j + 7] + g2 * x[j + 8] + g1 * x[j + 9] + g0 * x[j + 10]
        )  # fmt: skip


@_jit
def plane_sums(
    sr, hr, n, ch, ymode, top, left, h, w, r0, r1, sse_end, quant, peak, ky, gauss, c1, c2
):  # pragma: no cover - compiled
    """``(squared-error sum, SSIM-map sum)`` of one plane of image ``n`` over a range of rows.

    ``sr``, ``hr``: float arrays (N, C, H, W) in [0, 1], any strides; the scored region is rows
    ``top .. top + h`` and columns ``left .. left + w`` (the shave). ``ch``: the channel (ignored if
    ``ymode``: Y of channels 0-2). SSIM map rows ``r0 .. r1`` (of the ``h - 10`` valid ones) are summed;
    the squared error over region rows ``r0 .. sse_end``. ``quant``: quantize SR to ``peak``; ``ky``: Y's
    (kr, kg, kb, offset); ``gauss``: the 11 taps (symmetric: the first 6 are read); ``c1``, ``c2``: the
    doubled SSIM constants.
    """
    taps = 11
    halo = taps - 1
    wv = max(w - halo, 0)
    ring = np.zeros((_RING, 4, w))  # zeros: a lone last row reads one slot it never prepared
    a = np.empty(w)
    b = np.empty(w)
    v = np.empty((2, 4, w))
    hz = np.empty((2, 4, max(wv, 1)))
    smap = np.empty(max(wv, 1))
    c12 = c1 + c2
    g = (gauss[0], gauss[1], gauss[2], gauss[3], gauss[4], gauss[5])  # symmetric: g[k] = g[10 - k]
    sse = 0.0
    ssim = 0.0
    nxt = r0
    for i in range(r0, r1, 2):
        pair = i + 1 < r1  # output rows i and i + 1 (else i alone: the range's last, odd one)
        while nxt <= i + halo + pair:  # prepare the rows the windows of these output rows still lack
            _prep_row(sr, n, ch, ymode, top + nxt, left, w, quant, peak, ky, a)
            _prep_row(hr, n, ch, ymode, top + nxt, left, w, False, peak, ky, b)
            slot = ring[nxt % _RING]
            for j in range(w):
                s = a[j] + b[j]
                d = a[j] - b[j]
                slot[0, j] = s
                slot[1, j] = d
                slot[2, j] = s * s + c12
                slot[3, j] = d * d
            if nxt < sse_end:
                sse += _sum4(slot[3], w)
            nxt += 1
        for m in range(4):  # the separable Gaussian of the windows' rows, one FMA chain per output
            # (without a pair, v[1] comes from a slot not prepared for it: unused)
            _vertical2(ring, i, m, g, v[0, m], v[1, m], w)
            _horizontal(v[0, m], g, hz[0, m], wv)
            if pair:
                _horizontal(v[1, m], g, hz[1, m], wv)
        ssim += _ssim_row(hz[0], c1, smap, wv)
        if pair:
            ssim += _ssim_row(hz[1], c1, smap, wv)
    while nxt < sse_end:  # rows below the last window (the image's last range) or a PSNR-only range
        _prep_row(sr, n, ch, ymode, top + nxt, left, w, quant, peak, ky, a)
        _prep_row(hr, n, ch, ymode, top + nxt, left, w, False, peak, ky, b)
        for j in range(w):
            d = a[j] - b[j]
            a[j] = d * d
        sse += _sum4(a, w)
        nxt += 1
    return sse, ssim
