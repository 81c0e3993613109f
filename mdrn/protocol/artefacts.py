"""Artefacts a super-resolution network can add: a lattice at its upsampler's grid, and rims at strong edges.

Two measurements of an SR image against the MATLAB-bicubic enlargement of the same LR image (and, for
overshoot, against the true HR image where one exists), both on one plane (BT.601 Y of RGB images, the
raw values of gray ones), in float64:

- :func:`periodic_ratio`: a sub-pixel upsampler (``PixelShuffle``) computes each of the ``s x s`` output
  phases with its own filters; where they disagree, the output carries a pattern of period ``s`` pixels:
  a lattice that a reader can take for structure. The detail the network adds, ``D = SR - bicubic``, is
  cut into patches of ``patch`` pixels (a multiple of ``s``); the flattest quarter of them (least
  variation of the bicubic image: flat tissue, background) is kept, each patch's mean removed and a Hann
  window applied, and their power spectra are averaged. The power at the grid frequencies ``(u, v)``
  with ``u, v`` multiples of ``patch / s`` (not both 0: ``k / s`` cycles per pixel) is divided by the
  mean power of the frequencies around each (Chebyshev distance 1 to 3 bins, other grid frequencies left
  out). The largest of these ratios is the score: about 1 for detail without a lattice (white noise
  gives 1.0-1.7 over a few dozen patches), far above 1 where a lattice stands out.
- :func:`edge_overshoot`: at the strongest edges of the true image (top 2% of its gradient magnitude),
  how far the SR image goes beyond the local range (min..max over ``2s + 1`` pixels) of the true image:
  a rim or halo. Reported as the mean excursion in percent of the local edge contrast (max - min there:
  a step's overshoot, whatever the bit depth or the edge's height), its 99th percentile over the pixels
  near those edges (a rim, not the average pixel), beside bicubic's own (bicubic's kernel has negative
  lobes, so it overshoots too). ``within()``: no larger than bicubic's, or under 0.5% of the contrast.

``python scripts/check_artefacts.py`` prints both for the shipped models on MR, CT, X-ray and natural
images at x2, x3 and x4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mdrn.protocol.color import rgb_to_y

__all__ = ["EdgeOvershoot", "edge_overshoot", "periodic_ratio", "plane"]

#: the fraction of patches (the flattest) the periodic ratio looks at
FLAT_FRACTION = 0.25
#: neighbourhood of a grid frequency (Chebyshev distance in bins) whose mean power is the reference
_NEAR = (1, 3)
#: strong edges: the top ``EDGE_FRACTION`` of the true image's gradient magnitude
EDGE_FRACTION = 0.02
#: the overshoot reported: this quantile of the excursions near strong edges (a rim, not the average pixel)
OVERSHOOT_QUANTILE = 0.99
#: an overshoot under this percentage of the local edge contrast counts as none (``EdgeOvershoot.within``)
OVERSHOOT_FLOOR = 0.5


def plane(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """One float64 plane (H, W) of an image: the Y (BT.601, float) of RGB, the values of gray.

    Accepts (H, W), (C, H, W) or (1, C, H, W) tensors/arrays in [0, 1] (C = 1 or 3).
    """
    t = torch.as_tensor(x).double()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"one image at a time, got a batch of {t.shape[0]}")
        t = t[0]
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(
            f"expected an image (H, W), (C, H, W) or (1, C, H, W) with C = 1 or 3, got {tuple(t.shape)}"
        )
    if t.shape[0] == 3:
        return ((rgb_to_y(t[None]) - 16.0 / 255.0)[0, 0]).numpy()  # Y without its offset (differences only)
    return t[0].numpy()


def _patches(a: np.ndarray, patch: int) -> np.ndarray:
    """Non-overlapping ``patch x patch`` patches of a plane, (n, patch, patch)."""
    h, w = (a.shape[0] // patch) * patch, (a.shape[1] // patch) * patch
    if h == 0 or w == 0:
        raise ValueError(f"an image of {a.shape[1]}x{a.shape[0]} pixels holds no {patch}x{patch} patch")
    return a[:h, :w].reshape(h // patch, patch, w // patch, patch).swapaxes(1, 2).reshape(-1, patch, patch)


def periodic_ratio(
    sr: torch.Tensor | np.ndarray,
    bicubic: torch.Tensor | np.ndarray,
    scale: int,
    *,
    patch: int | None = None,
    flat_fraction: float = FLAT_FRACTION,
) -> float:
    """How far the detail ``sr - bicubic`` stands out at the upsampler's grid frequencies (see the module).

    ``sr`` and ``bicubic`` are the same image's SR and bicubic enlargements by ``scale`` (same shape).
    ``patch`` (default: the multiple of ``scale`` nearest 48) sets the spectral resolution. Returns the
    largest ratio of the power at a grid frequency ``k / scale`` to the mean power around it; 1 means no
    lattice. ``ValueError`` if the image holds fewer than 4 patches.
    """
    scale = int(scale)
    if scale < 2:
        raise ValueError(f"scale must be an integer >= 2, got {scale}")
    patch = int(patch or scale * max(2, round(48 / scale)))
    if patch % scale:
        raise ValueError(f"patch ({patch}) must be a multiple of the scale ({scale})")
    d, b = plane(sr), plane(bicubic)
    if d.shape != b.shape:
        raise ValueError(f"sr {d.shape} and bicubic {b.shape} differ in size")
    detail, flat = _patches(d - b, patch), _patches(b, patch)
    if len(detail) < 4:
        raise ValueError(f"{len(detail)} patches of {patch} px: too small an image for a spectrum")
    order = np.argsort(flat.std(axis=(1, 2)), kind="stable")
    keep = order[: max(4, int(round(len(order) * flat_fraction)))]
    sel = detail[keep]
    sel = sel - sel.mean(axis=(1, 2), keepdims=True)
    hann = np.hanning(patch + 2)[1:-1]
    power = (np.abs(np.fft.fft2(sel * np.outer(hann, hann))) ** 2).mean(axis=0)
    step = patch // scale
    grid = np.zeros((patch, patch), bool)
    grid[::step, ::step] = True
    idx = np.arange(patch)
    best = 0.0
    for u in range(0, patch, step):
        for v in range(0, patch, step):
            if u == 0 and v == 0:
                continue
            du = np.minimum(np.abs(idx - u), patch - np.abs(idx - u))
            dv = np.minimum(np.abs(idx - v), patch - np.abs(idx - v))
            dist = np.maximum(du[:, None], dv[None, :])
            near = (dist >= _NEAR[0]) & (dist <= _NEAR[1]) & ~grid
            near[0, 0] = False
            ref = power[near].mean()
            ratio = float(power[u, v] / ref) if ref > 0 else (0.0 if power[u, v] == 0 else float("inf"))
            best = max(best, ratio)
    return best


@dataclass(frozen=True)
class EdgeOvershoot:
    """Mean excursion beyond the true local range at strong edges, in percent of the local edge contrast:
    SR's, bicubic's, their ratio; and how many edge pixels were looked at."""

    sr: float
    bicubic: float
    edges: int

    @property
    def ratio(self) -> float:
        """SR's excursion over bicubic's (<= 1: no more rim than interpolation)."""
        return self.sr / self.bicubic if self.bicubic > 0 else (1.0 if self.sr == 0 else float("inf"))

    def within(self, floor: float = OVERSHOOT_FLOOR) -> bool:
        """True if SR's rim is no larger than bicubic's, or under ``floor`` percent of the edge contrast."""
        return self.sr <= max(self.bicubic, floor)


def _local_range(a: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``a`` over a (2 radius + 1)^2 window (edge-replicated)."""
    from scipy.ndimage import maximum_filter, minimum_filter

    size = 2 * radius + 1
    return minimum_filter(a, size=size, mode="nearest"), maximum_filter(a, size=size, mode="nearest")


def edge_overshoot(
    sr: torch.Tensor | np.ndarray,
    bicubic: torch.Tensor | np.ndarray,
    hr: torch.Tensor | np.ndarray,
    scale: int,
    *,
    bit_depth: int = 8,
    fraction: float = EDGE_FRACTION,
) -> EdgeOvershoot:
    """Excursion of ``sr`` and ``bicubic`` beyond ``hr``'s local range at ``hr``'s strongest edges.

    All three are the same size (SR and bicubic of the degraded ``hr``); a border of ``scale`` pixels is
    left out (as in the protocol). The excursion at each pixel near a strong edge is divided by the local
    contrast there (the true image's max - min over the window); the result is its ``OVERSHOOT_QUANTILE``
    over those pixels, in percent.
    ``bit_depth`` is kept for callers and does not change the result.
    """
    s = int(scale)
    planes = [plane(v) for v in (sr, bicubic, hr)]
    if len({p.shape for p in planes}) != 1:
        raise ValueError(f"sr, bicubic and hr differ in size: {[p.shape for p in planes]}")
    p_sr, p_bic, p_hr = (p[s:-s, s:-s] for p in planes)
    gy, gx = np.gradient(p_hr)
    mag = np.hypot(gx, gy)
    threshold = np.quantile(mag, 1.0 - fraction)
    edges = mag >= threshold if threshold > 0 else np.zeros_like(mag, bool)
    # pixels near a strong edge: the edge pixels and their neighbours within the local window
    from scipy.ndimage import binary_dilation

    near = binary_dilation(edges, iterations=s) if edges.any() else edges
    lo, hi = _local_range(p_hr, s)
    near &= hi > lo
    contrast = np.where(near, hi - lo, 1.0)

    def excursion(p: np.ndarray) -> float:
        out = (np.maximum(p - hi, 0.0) + np.maximum(lo - p, 0.0)) / contrast
        return float(np.quantile(out[near], OVERSHOOT_QUANTILE) * 100.0) if near.any() else 0.0

    return EdgeOvershoot(sr=excursion(p_sr), bicubic=excursion(p_bic), edges=int(edges.sum()))
