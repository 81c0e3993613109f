"""A+ (Timofte, De Smet, Van Gool, ACCV 2014): adjusted anchored neighbourhood regression, in numpy/torch.

Follows the authors' MATLAB code (``go_run_Set5.m``, ``learn_dict.m``, ``collectSamplesScales.m``,
``scaleup_ANR.m``, built on Zeyde et al.'s framework):

* everything works on the luma Y (float, MATLAB ``rgb2ycbcr``); chroma is enlarged by bicubic;
* LR = MATLAB bicubic 1/s of the mod-cropped HR (:func:`mdrn.protocol.resize.degrade`), the mid-resolution
image
  = MATLAB bicubic x s of the LR (:func:`mdrn.protocol.resize.imresize`);
* features: the mid-resolution image filtered (MATLAB ``conv2(.., 'same')``, zero padding) by
  ``G = [1, 0 x (s-1), -1]`` and ``L = [1, 0 x (s-1), -2, 0 x (s-1), 1] / 2``, horizontally and
  vertically (for s = 2 these are [1, 0, -1] and [1, 0, -2, 0, 1] / 2), sampled in patches of 3 x 3 LR
  pixels (3s x 3s on the mid-resolution grid) leaving a border of one LR pixel, then reduced by a PCA
  (no centring) that keeps 99.9% of the energy;
* dictionary: 1024 atoms learned by approximate K-SVD (Rubinstein's KSVD-Box: OMP with 3 atoms per
  sample, 20 iterations, random data initialisation, replacement of unused and near-duplicate atoms) on
  the features of T91 sampled with a step of 2 LR pixels;
* regressors: samples from an image pyramid of T91 (scales 0.98^k, k = 0..11, the first 5 million
  samples kept) with a step of one LR pixel; LR features l2-normalised, HR residual patches
  (HR - mid-resolution) divided by the same norm unless it is below 0.1 (the authors' code); for each atom
  its 2048 most correlated samples (|<feature, atom>|) give the ridge regressor
  ``P = Hi Lo^T (Lo Lo^T + 0.1 I)^-1`` (the authors' ``Hi (Lo^T Lo + 0.1 I)^-1 Lo^T``, identical);
* prediction: every 3 x 3 LR patch (step 1) takes the regressor of its most correlated atom, the
  predicted residual patches are averaged where they overlap and added to the mid-resolution image; the
  border of one LR pixel (s pixels, which the evaluation shaves) keeps the bicubic value.

:class:`APlus` is one trained model for one scale (``fit``/``predict``/``save``/``load``, ``.npz`` files
read with ``allow_pickle=False``); :class:`APlusSR` wraps trained models as an ``nn.Module`` with
``forward(x, scale)``, ``scales`` and ``n_colors`` so that it is evaluated like every other network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mdrn.io.images import atomic_write
from mdrn.protocol.color import rgb_to_ycbcr, ycbcr_to_rgb
from mdrn.protocol.resize import degrade, imresize, modcrop

__all__ = ["APlus", "APlusSR", "feature_filters", "ksvd", "omp"]

FORMAT = "mdrn-aplus-1"
_ARRAYS = ("pca", "atoms", "regressors")


# --------------------------------------------------------------------------------------------------
# features, patches and their overlap-add (one sampling grid for all three)
# --------------------------------------------------------------------------------------------------
def feature_filters(scale: int) -> list[np.ndarray]:
    """Return the authors' 1-D high-pass filters ``G`` and ``L`` upsampled to ``scale``."""
    zeros = [0.0] * (scale - 1)
    grad = np.array([1.0, *zeros, -1.0])
    lap = np.array([1.0, *zeros, -2.0, *zeros, 1.0]) / 2.0
    return [grad, lap]


def _conv_same(img: torch.Tensor, kernel: np.ndarray, axis: int) -> torch.Tensor:
    """MATLAB ``conv2(img, kernel, 'same')`` of ``img`` (H, W) along ``axis`` (1 = rows/horizontal)."""
    n = len(kernel)
    centre = n // 2  # conv2 'same': out[i] = sum_k kernel[k] img[i + centre - k], zero outside
    pad = n - 1
    padded = F.pad(img[None], (pad, pad) if axis == 1 else (0, 0, pad, pad))[0]
    length = img.shape[axis]
    out = torch.zeros_like(img)
    for k, weight in enumerate(kernel):
        if weight != 0.0:
            out += float(weight) * padded.narrow(axis, pad + centre - k, length)
    return out


def _grid(height: int, width: int, scale: int, window: int, step: int) -> tuple[int, int, int, int]:
    """Return (patch size, stride, rows, columns) of the sampling grid on a mid-resolution image."""
    size, stride, border = window * scale, step * scale, scale
    rows = (height - 2 * border - size) // stride + 1
    cols = (width - 2 * border - size) // stride + 1
    return size, stride, max(rows, 0), max(cols, 0)


def _unfold(planes: torch.Tensor, scale: int, window: int, step: int) -> torch.Tensor:
    """Sample patches (n, C * size^2) from ``planes`` (C, H, W) on the grid, border of one LR pixel."""
    c, h, w = planes.shape
    size, stride, rows, cols = _grid(h, w, scale, window, step)
    if rows == 0 or cols == 0:
        return planes.new_zeros((0, c * size * size))
    inner = planes[:, scale : h - scale, scale : w - scale]
    return F.unfold(inner[None], size, stride=stride)[0].T


def extract_features(mid: torch.Tensor, scale: int, window: int = 3, step: int = 1) -> torch.Tensor:
    """Return the A+ features (n, 4 (window scale)^2) of a mid-resolution Y image (H, W)."""
    planes = [_conv_same(mid, k, axis) for k in feature_filters(scale) for axis in (1, 0)]
    return _unfold(torch.stack(planes), scale, window, step)


def extract_patches(img: torch.Tensor, scale: int, window: int = 3, step: int = 1) -> torch.Tensor:
    """Return the raw pixel patches (n, (window scale)^2) of an image (H, W) on the A+ grid."""
    return _unfold(img[None], scale, window, step)


def overlap_average(
    patches: torch.Tensor, height: int, width: int, scale: int, window: int = 3
) -> torch.Tensor:
    """Average overlapping patches (step one LR pixel) into an (H, W) image; zero where none falls."""
    size, stride, rows, cols = _grid(height, width, scale, window, 1)
    out = patches.new_zeros((height, width))
    if rows == 0 or cols == 0:
        return out
    inner = (height - 2 * scale, width - 2 * scale)
    total = F.fold(patches.T[None], inner, size, stride=stride)[0, 0]
    count = F.fold(torch.ones_like(patches.T[None]), inner, size, stride=stride)[0, 0]
    out[scale : height - scale, scale : width - scale] = total / count.clamp_min(1.0)
    return out


def _mid_resolution(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Return the bicubic enlargement (H s, W s) of an LR Y image (H, W)."""
    return imresize(lr, scale)


def reconstruct(
    lr: torch.Tensor,
    scale: int,
    pca: torch.Tensor,
    atoms: torch.Tensor,
    regressors: torch.Tensor,
    window: int = 3,
    chunk: int = 8192,
) -> torch.Tensor:
    """Return the A+ enlargement (H s, W s) of an LR Y image (H, W) with the given trained arrays."""
    mid = _mid_resolution(lr, scale)
    feats = extract_features(mid, scale, window).to(pca.dtype) @ pca
    residual = []
    for start in range(0, feats.shape[0], chunk):
        f = feats[start : start + chunk]
        anchor = (f @ atoms.T).abs().argmax(dim=1)
        residual.append(torch.einsum("nd,ndp->np", f, regressors[anchor]))
    if not residual:
        return mid
    res = torch.cat(residual).to(mid.dtype)
    return mid + overlap_average(res, mid.shape[0], mid.shape[1], scale, window)


# --------------------------------------------------------------------------------------------------
# dictionary learning: batch OMP and approximate K-SVD (Rubinstein et al.'s KSVD-Box)
# --------------------------------------------------------------------------------------------------
def omp(
    x: np.ndarray, dictionary: np.ndarray, sparsity: int, chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch OMP of ``x`` (n, d) on unit-norm atoms (K, d): (indices, coefficients, squared errors)."""
    n = x.shape[0]
    gram = dictionary.astype(np.float64) @ dictionary.T.astype(np.float64)
    idx = np.zeros((n, sparsity), dtype=np.int64)
    coef = np.zeros((n, sparsity), dtype=x.dtype)
    err = np.zeros(n, dtype=np.float64)
    ridge = np.eye(sparsity) * 1e-8  # keeps the systems solvable if two atoms coincide
    for start in range(0, n, chunk):
        xc = x[start : start + chunk]
        rows = np.arange(len(xc))[:, None]
        sel = idx[start : start + len(xc)]
        a0 = xc @ dictionary.T
        resid = xc
        for k in range(sparsity):
            a = np.abs(a0 if k == 0 else resid @ dictionary.T)
            if k:
                a[rows, sel[:, :k]] = -1.0  # never select an atom twice
            sel[:, k] = a.argmax(axis=1)
            cur = sel[:, : k + 1]
            b = np.take_along_axis(a0, cur, axis=1).astype(np.float64)
            g = gram[cur[:, :, None], cur[:, None, :]] + ridge[: k + 1, : k + 1]
            c = np.linalg.solve(g, b[..., None])[..., 0].astype(x.dtype)
            resid = xc - np.einsum("mk,mkd->md", c, dictionary[cur])
        coef[start : start + len(xc)] = c
        err[start : start + len(xc)] = np.einsum("md,md->m", resid, resid, dtype=np.float64)
    return idx, coef, err


def _residual_errors(x: np.ndarray, dictionary: np.ndarray, idx: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Return the squared representation error of every sample of ``x`` given its sparse code."""
    err = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], 65536):
        sl = slice(start, start + 65536)
        recon = np.einsum("mt,mtd->md", coef[sl], dictionary[idx[sl]])
        err[sl] = ((x[sl] - recon) ** 2).sum(axis=1)
    return err


def ksvd(
    x: np.ndarray,
    n_atoms: int,
    sparsity: int = 3,
    n_iter: int = 20,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Learn a unit-norm dictionary (n_atoms, d) for ``x`` (n, d) by approximate K-SVD (KSVD-Box defaults)."""
    rng = np.random.default_rng(seed)
    norms = np.linalg.norm(x, axis=1)
    nonzero = np.flatnonzero(norms > 1e-12)
    if len(nonzero) < n_atoms:
        raise ValueError(f"ksvd: {len(nonzero)} non-zero training samples for {n_atoms} atoms")
    init = rng.choice(nonzero, size=n_atoms, replace=False)
    dictionary = x[init] / norms[init, None]
    n = x.shape[0]
    for it in range(n_iter):
        idx, coef, _ = omp(x, dictionary, sparsity)
        flat = idx.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=n_atoms))])
        coef_flat = coef.reshape(-1)
        unused_atoms = []
        for j in rng.permutation(n_atoms):
            pos = order[bounds[j] : bounds[j + 1]]
            if len(pos) == 0:
                unused_atoms.append(j)
                continue
            samp = pos // sparsity
            gj = coef_flat[pos]
            recon = np.einsum("mt,mtd->md", coef[samp], dictionary[idx[samp]])
            e = x[samp] - recon + np.outer(gj, dictionary[j])
            atom = e.T @ gj
            norm = np.linalg.norm(atom)
            if norm < 1e-12:
                unused_atoms.append(j)
                continue
            atom /= norm
            dictionary[j] = atom
            coef_flat[pos] = e @ atom
        # clear unused and near-duplicate atoms: replace them by the worst-represented samples
        err = _residual_errors(x, dictionary, idx, coef)
        usecount = np.bincount(flat[np.abs(coef_flat) > 1e-7], minlength=n_atoms)
        available = np.ones(n, dtype=bool)
        available[norms <= 1e-12] = False
        ranked = np.argsort(-err)
        ptr = 0
        cleared = 0
        gram = dictionary @ dictionary.T
        np.fill_diagonal(gram, 0.0)
        for j in range(n_atoms):
            if usecount[j] < 4 or np.max(gram[j] ** 2) > 0.99**2:
                while ptr < n and not available[ranked[ptr]]:
                    ptr += 1
                if ptr == n:
                    break
                i = ranked[ptr]
                available[i] = False
                dictionary[j] = x[i] / norms[i]
                col = dictionary @ dictionary[j]
                col[j] = 0.0
                gram[j] = col
                gram[:, j] = col
                cleared += 1
        if log is not None:
            rmse = float(np.sqrt(err.mean()))
            log(f"  K-SVD iteration {it + 1}/{n_iter}: rmse {rmse:.5f}, {cleared} atoms replaced")
    return dictionary


def _stream_top_k(
    atoms: torch.Tensor, samples: torch.Tensor, k: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k |correlation| per atom by streaming chunks of samples through a running top-k."""
    n_atoms = atoms.shape[0]
    best_val = torch.full((n_atoms, 0), -1.0, dtype=samples.dtype)
    best_idx = torch.zeros((n_atoms, 0), dtype=torch.int64)
    for start in range(0, samples.shape[0], chunk):
        corr = (atoms @ samples[start : start + chunk].T).abs_()
        val, pos = torch.topk(corr, min(k, corr.shape[1]), dim=1, sorted=False)
        val = torch.cat([best_val, val], dim=1)
        idx = torch.cat([best_idx, pos + start], dim=1)
        if val.shape[1] > k:
            val, keep = torch.topk(val, k, dim=1, sorted=False)
            idx = torch.gather(idx, 1, keep)
        best_val, best_idx = val, idx
    return best_val, best_idx


def _nearest(
    atoms: torch.Tensor, samples: torch.Tensor, k: int, chunk: int = 65536, margin: float = 1.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return, for every atom (K, d), the |correlation| and indices (K, k) of its k nearest samples (n, d).

    Exact and fast: a threshold per atom is estimated on every 8th sample (the value ranked
    ``margin * k / 8`` there), one pass keeps only the correlations above it, and the few atoms left
    with fewer than k candidates are searched exhaustively.
    """
    n_atoms, n = atoms.shape[0], samples.shape[0]
    step = max(1, min(8, n // (4 * k)))
    if step == 1:
        return _stream_top_k(atoms, samples, k, chunk)
    sub_val, _ = _stream_top_k(atoms, samples[::step], min(int(margin * k / step) + 1, n // step), chunk)
    thr = sub_val.min(dim=1).values
    vals, rows, cols = [], [], []
    for start in range(0, n, chunk):
        corr = (atoms @ samples[start : start + chunk].T).abs_()
        r, c = (corr >= thr[:, None]).nonzero(as_tuple=True)
        vals.append(corr[r, c])
        rows.append(r)
        cols.append(c + start)
    val, row, col = torch.cat(vals), torch.cat(rows), torch.cat(cols)
    # sort by atom, then by decreasing value; keep the first k of every atom
    order = torch.argsort(val, descending=True, stable=True)
    order = order[torch.argsort(row[order], stable=True)]
    val, row, col = val[order], row[order], col[order]
    counts = torch.bincount(row, minlength=n_atoms)
    starts = torch.cumsum(counts, 0) - counts
    ok = counts >= k
    take = (starts[ok][:, None] + torch.arange(k)[None, :]).reshape(-1)
    best_val = torch.empty((n_atoms, k), dtype=samples.dtype)
    best_idx = torch.empty((n_atoms, k), dtype=torch.int64)
    best_val[ok] = val[take].view(-1, k)
    best_idx[ok] = col[take].view(-1, k)
    if not bool(ok.all()):  # threshold too high for a few atoms: search them exhaustively
        redo = torch.nonzero(~ok).flatten()
        best_val[redo], best_idx[redo] = _stream_top_k(atoms[redo], samples, k, chunk)
    return best_val, best_idx


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------
def _as_image(img: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    """Return ``img`` as a float64 (H, W) tensor, or raise a clear ValueError."""
    t = torch.as_tensor(img)
    if t.ndim != 2:
        raise ValueError(f"A+ {what} must be a 2-D Y image (H, W), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"A+ {what} must be a float image in [0, 1], got dtype {t.dtype}")
    return t.to(torch.float64)


class APlus:
    """A+ super-resolution of the Y channel at one scale: ``fit`` on HR images, ``predict`` from LR."""

    def __init__(
        self,
        scale: int,
        *,
        n_atoms: int = 1024,
        n_neighbors: int = 2048,
        lam: float = 0.1,
        window: int = 3,
        pca_energy: float = 0.999,
        sparsity: int = 3,
        ksvd_iters: int = 20,
        n_levels: int = 12,
        level_factor: float = 0.98,
        max_samples: int = 5_000_000,
        max_dict_samples: int = 0,
        hr_norm_floor: float = 0.1,
        seed: int = 0,
    ) -> None:
        if int(scale) != scale or scale < 2:
            raise ValueError(f"A+: scale must be an integer >= 2, got {scale!r}")
        self.scale = int(scale)
        self.n_atoms = int(n_atoms)
        self.n_neighbors = int(n_neighbors)
        self.lam = float(lam)
        self.window = int(window)
        self.pca_energy = float(pca_energy)
        self.sparsity = int(sparsity)
        self.ksvd_iters = int(ksvd_iters)
        self.n_levels = int(n_levels)
        self.level_factor = float(level_factor)
        self.max_samples = int(max_samples)
        self.max_dict_samples = int(max_dict_samples)
        self.hr_norm_floor = float(hr_norm_floor)
        self.seed = int(seed)
        self.pca: np.ndarray | None = None
        self.atoms: np.ndarray | None = None
        self.regressors: np.ndarray | None = None
        self.timings: dict[str, float] = {}
        self.n_samples = 0

    # ---------------------------------------------------------------------------------- training
    def _pairs(self, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mid-resolution, HR) of a float64 HR Y image, both mod-cropped to the scale."""
        hr = modcrop(hr, self.scale)
        lr = degrade(hr, self.scale)
        return _mid_resolution(lr, self.scale), hr

    def fit(
        self, images: Sequence[np.ndarray | torch.Tensor], log: Callable[[str], None] | None = None
    ) -> APlus:
        """Train on HR Y images (float, [0, 1]): PCA + K-SVD dictionary, then the anchored regressors."""
        images = [_as_image(im, f"training image {i}") for i, im in enumerate(images)]
        if not images:
            raise ValueError("A+ fit: no training images")
        say = log or (lambda _msg: None)
        s = self.scale
        t0, c0 = time.perf_counter(), time.process_time()
        # 1. dictionary features: T91 with a step of 2 LR pixels (partial overlap, as the authors)
        feats = []
        for hr in images:
            mid, _ = self._pairs(hr)
            feats.append(extract_features(mid, s, self.window, step=2))
        feats = torch.cat(feats).numpy()
        if feats.shape[0] < self.n_atoms:
            raise ValueError(
                f"A+ fit: the training images give {feats.shape[0]} dictionary samples, fewer than "
                f"{self.n_atoms} atoms; use more or larger images or fewer atoms"
            )
        cov = feats.T @ feats
        evals, evecs = np.linalg.eigh(cov)  # ascending
        energy = np.cumsum(evals) / evals.sum()
        first = int(np.argmax(energy >= 1.0 - self.pca_energy))
        self.pca = np.ascontiguousarray(evecs[:, first:]).astype(np.float32)
        if 0 < self.max_dict_samples < feats.shape[0]:  # a random subset, for speed (0 = all, as the authors)
            keep = np.random.default_rng(self.seed).choice(
                feats.shape[0], self.max_dict_samples, replace=False
            )
            feats = feats[np.sort(keep)]
        dict_feats = (feats @ evecs[:, first:]).astype(np.float32)
        say(
            f"x{s}: {dict_feats.shape[0]} dictionary samples, "
            f"PCA {feats.shape[1]} -> {self.pca.shape[1]} dims "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        del feats, cov
        t1 = time.perf_counter()
        self.atoms = ksvd(dict_feats, self.n_atoms, self.sparsity, self.ksvd_iters, self.seed, log).astype(
            np.float32
        )
        self.timings["dictionary"] = time.perf_counter() - t1
        say(f"x{s}: dictionary of {self.n_atoms} atoms in {self.timings['dictionary']:.1f} s")
        del dict_feats
        # 2. regression samples: image pyramid, step of one LR pixel
        t2 = time.perf_counter()
        lo, hr_index, buffers = self._collect_samples(images)
        self.n_samples = lo.shape[0]
        self.timings["samples"] = time.perf_counter() - t2
        say(f"x{s}: {self.n_samples} regression samples in {self.timings['samples']:.1f} s")
        # 3. anchored neighbourhoods and ridge regressors
        t3 = time.perf_counter()
        self.regressors = self._regressors(lo, hr_index, buffers)
        self.timings["regressors"] = time.perf_counter() - t3
        self.timings["total"] = time.perf_counter() - t0
        self.timings["cpu"] = time.process_time() - c0
        say(
            f"x{s}: regressors in {self.timings['regressors']:.1f} s; total {self.timings['total']:.1f} s "
            f"(CPU time {self.timings['cpu']:.1f} s)"
        )
        return self

    def _collect_samples(self, images: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return PCA features (n, d), patch start offsets (n, 2: offset, width) and the residual buffer."""
        s = self.scale
        pca = torch.from_numpy(self.pca.astype(np.float64))
        lows, index, buffers = [], [], []
        total, offset = 0, 0
        for level in range(self.n_levels):
            factor = self.level_factor**level
            for hr0 in images:
                hr = hr0 if level == 0 else imresize(hr0, factor)
                if min(hr.shape) < (2 + self.window) * s:
                    continue
                mid, hr = self._pairs(hr)
                h, w = mid.shape
                _, stride, rows, cols = _grid(h, w, s, self.window, 1)
                if rows == 0 or cols == 0:
                    continue
                f = (extract_features(mid, s, self.window) @ pca).to(torch.float32)
                ys = s + stride * np.arange(rows)
                xs = s + stride * np.arange(cols)
                starts = offset + (ys[:, None] * w + xs[None, :]).ravel()
                take = min(len(starts), self.max_samples - total)
                lows.append(f[:take].numpy())
                index.append(np.stack([starts[:take], np.full(take, w)], axis=1))
                buffers.append((hr - mid).to(torch.float32).numpy().ravel())
                offset += h * w
                total += take
                if total >= self.max_samples:
                    break
            if total >= self.max_samples:
                break
        return np.concatenate(lows), np.concatenate(index), np.concatenate(buffers)

    def _regressors(self, lo: np.ndarray, hr_index: np.ndarray, buffer: np.ndarray) -> np.ndarray:
        """Return the (K, d, p) ridge regressors from each atom's nearest normalised samples."""
        size = self.window * self.scale
        n, d = lo.shape
        k = min(self.n_neighbors, n)
        norms = np.sqrt((lo.astype(np.float64) ** 2).sum(axis=1)) + np.finfo(np.float64).eps
        lo_n = torch.from_numpy((lo / norms[:, None]).astype(np.float32))
        atoms = torch.from_numpy(self.atoms)
        best_val, best_idx = _nearest(atoms, lo_n, k)
        hr_scale = torch.from_numpy(np.where(norms < self.hr_norm_floor, 1.0, norms))
        dy, dx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        offsets = torch.from_numpy(dy.ravel()), torch.from_numpy(dx.ravel())
        index = torch.from_numpy(hr_index)
        buf = torch.from_numpy(buffer)
        regs = torch.empty((self.n_atoms, d, size * size), dtype=torch.float32)
        eye = self.lam * torch.eye(d, dtype=torch.float64)
        for first in range(0, self.n_atoms, 32):
            nn_idx = best_idx[first : first + 32]  # (b, k)
            start, width = index[nn_idx, 0], index[nn_idx, 1]
            flat = start[..., None] + offsets[0] * width[..., None] + offsets[1]
            hi = buf[flat].to(torch.float64) / hr_scale[nn_idx][..., None]  # (b, k, p)
            low = lo_n[nn_idx].to(torch.float64)  # (b, k, d)
            lt = low.transpose(1, 2)
            regs[first : first + 32] = torch.linalg.solve(lt @ low + eye, lt @ hi).to(torch.float32)
        return regs.numpy()

    # ---------------------------------------------------------------------------------- inference
    def _check_trained(self) -> None:
        """Raise if the model has not been fitted or loaded."""
        if self.pca is None or self.atoms is None or self.regressors is None:
            raise RuntimeError("A+ model is not trained: call fit() or APlus.load() first")

    def predict(self, lr: np.ndarray | torch.Tensor) -> np.ndarray:
        """Return the A+ enlargement (H s, W s) float64 of an LR Y image (H, W) in [0, 1]."""
        self._check_trained()
        t = _as_image(lr, "input")
        out = reconstruct(
            t,
            self.scale,
            torch.from_numpy(self.pca),
            torch.from_numpy(self.atoms),
            torch.from_numpy(self.regressors),
            self.window,
        )
        return out.numpy()

    # ---------------------------------------------------------------------------------- files
    def _meta(self) -> dict[str, float | int]:
        """Return the scalar hyper-parameters stored with the arrays."""
        return {
            "scale": self.scale,
            "n_atoms": self.n_atoms,
            "n_neighbors": self.n_neighbors,
            "lam": self.lam,
            "window": self.window,
            "pca_energy": self.pca_energy,
            "sparsity": self.sparsity,
            "ksvd_iters": self.ksvd_iters,
            "n_levels": self.n_levels,
            "level_factor": self.level_factor,
            "max_samples": self.max_samples,
            "max_dict_samples": self.max_dict_samples,
            "hr_norm_floor": self.hr_norm_floor,
            "seed": self.seed,
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the trained model to an ``.npz`` file (atomically; no pickles)."""
        self._check_trained()
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        arrays["format"] = np.array(FORMAT)
        arrays["n_samples"] = np.array(self.n_samples, dtype=np.int64)
        for key, value in self.timings.items():
            arrays[f"seconds_{key}"] = np.array(value, dtype=np.float64)
        for key, value in self._meta().items():
            arrays[f"meta_{key}"] = np.array(value)

        def writer(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        return atomic_write(path, writer, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> APlus:
        """Read a model written by :meth:`save`; raise ValueError naming the file if it is not one."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable A+ model file ({exc})") from exc
        if str(contents.get("format", "")) != FORMAT:
            raise ValueError(
                f"{path}: not an A+ model file (format {contents.get('format')!r}, want {FORMAT})"
            )
        missing = [k for k in _ARRAYS if k not in contents]
        if missing:
            raise ValueError(f"{path}: A+ model file lacks arrays {missing}")
        meta = {k[5:]: v.item() for k, v in contents.items() if k.startswith("meta_")}
        model = cls(**meta)
        pca, atoms, regs = (contents[k].astype(np.float32) for k in _ARRAYS)
        size = model.window * model.scale
        expected = {
            "pca": (4 * size * size, pca.shape[1] if pca.ndim == 2 else -1),
            "atoms": (model.n_atoms, pca.shape[1] if pca.ndim == 2 else -1),
            "regressors": (model.n_atoms, pca.shape[1] if pca.ndim == 2 else -1, size * size),
        }
        for name, arr in zip(_ARRAYS, (pca, atoms, regs)):
            if arr.shape != expected[name]:
                raise ValueError(f"{path}: A+ array {name} has shape {arr.shape}, expected {expected[name]}")
        model.pca, model.atoms, model.regressors = pca, atoms, regs
        model.n_samples = int(contents.get("n_samples", 0))
        model.timings = {k[8:]: float(v) for k, v in contents.items() if k.startswith("seconds_")}
        return model


# --------------------------------------------------------------------------------------------------
# nn.Module wrapper for the project's evaluation
# --------------------------------------------------------------------------------------------------
class _APlusBranch(nn.Module):
    """The trained arrays of one scale as buffers."""

    def __init__(self, model: APlus) -> None:
        super().__init__()
        model._check_trained()
        self.scale = model.scale
        self.window = model.window
        self.register_buffer("pca", torch.from_numpy(model.pca.copy()))
        self.register_buffer("atoms", torch.from_numpy(model.atoms.copy()))
        self.register_buffer("regressors", torch.from_numpy(model.regressors.copy()))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Enlarge one LR Y image (H, W)."""
        return reconstruct(
            y.to(torch.float64), self.scale, self.pca, self.atoms, self.regressors, self.window
        )


class APlusSR(nn.Module):
    """A+ as a network: ``forward(x, scale)`` on (N, C, H, W) in [0, 1]; Y by A+, chroma by bicubic."""

    def __init__(self, models: Mapping[int, APlus] | Iterable[APlus], n_colors: int = 3) -> None:
        super().__init__()
        items = list(models.values()) if isinstance(models, Mapping) else list(models)
        if not items:
            raise ValueError("APlusSR needs at least one trained APlus model")
        if n_colors not in (1, 3):
            raise ValueError(f"APlusSR: n_colors must be 1 or 3, got {n_colors}")
        self.branches = nn.ModuleDict({str(m.scale): _APlusBranch(m) for m in items})
        self.scales: tuple[int, ...] = tuple(sorted(int(k) for k in self.branches))
        self.n_colors = n_colors

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]], n_colors: int = 3) -> APlusSR:
        """Build the wrapper from ``.npz`` files written by :meth:`APlus.save`."""
        return cls([APlus.load(p) for p in paths], n_colors=n_colors)

    @classmethod
    def from_dir(cls, folder: str | os.PathLike[str], n_colors: int = 3) -> APlusSR:
        """Build the wrapper from the ``aplus_x<s>.npz`` files in ``folder``."""
        paths = sorted(Path(folder).glob("aplus_x*.npz"))
        if not paths:
            raise ValueError(f"{folder}: no A+ model files (aplus_x<scale>.npz)")
        return cls.from_files(paths, n_colors=n_colors)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Return the A+ enlargement of ``x`` (N, C, H, W) by ``scale``; RGB via YCbCr, gray as Y."""
        if scale not in self.scales:
            raise ValueError(f"APlusSR has scales {self.scales}, not {scale}")
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"APlusSR expects (N, 1 or 3, H, W), got {tuple(x.shape)}")
        branch = self.branches[str(scale)]
        work = x.to(torch.float64)
        if x.shape[1] == 3:
            ycc = rgb_to_ycbcr(work)
            up = imresize(ycc[:, 1:], scale)
            y = torch.stack([branch(img) for img in ycc[:, 0]])[:, None]
            out = ycbcr_to_rgb(torch.cat([y, up], dim=1))
        else:
            out = torch.stack([branch(img) for img in work[:, 0]])[:, None]
        return out.to(x.dtype)
