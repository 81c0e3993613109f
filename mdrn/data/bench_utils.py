"""Measurements of the training data pipeline and of MDRN training speed (used by scripts/bench_pipeline.py).

Plain functions, importable by ``mdrn.bench``:

- :func:`make_div2k_like` writes DIV2K-like 2040x1356 RGB PNGs (smooth structure, edges and grain, so
  they compress like photographs) and their x``s`` LR PNGs (DIV2K's ``LR_bicubic`` layout);
- :func:`decode_per_patch_rate` / :func:`cache_patch_rate`: patches/s of the same
  :class:`~mdrn.data.TrainPatchDataset` reading either PNGs decoded for every patch (HR and LR, as
  EDSR-PyTorch's ``--ext img``) or the decoded-image cache (memory-mapped ``.npy``);
- :func:`train_steps_per_s`: optimizer steps/s of an MDRN (default B=80, F=64, batch 16, 48x48 LR).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mdrn.data.cache import CachedImage, ImageCache, make_lr
from mdrn.data.datasets import TrainPatchDataset
from mdrn.io.images import image_to_tensor, read_image, tensor_to_array, write_image

__all__ = ["cache_patch_rate", "decode_per_patch_rate", "make_div2k_like", "train_steps_per_s"]


def make_div2k_like(
    folder: str | os.PathLike[str],
    n: int = 3,
    size: tuple[int, int] = (1356, 2040),
    scale: int = 2,
    seed: int = 0,
) -> tuple[list[Path], Path]:
    """Write ``n`` photo-like RGB PNGs of ``size`` (H, W) and their x``scale`` LR; return (HR, LR dir)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    h, w = size
    hr_files = []
    lr_dir = folder / "LR_bicubic" / f"X{scale}"
    for i in range(n):
        path = folder / "HR" / f"{i + 1:04d}.png"
        if not path.exists():
            coarse = torch.from_numpy(rng.random((1, 3, h // 64 + 2, w // 64 + 2)))
            base = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[
                0
            ]
            yy, xx = np.mgrid[0:h, 0:w]
            stripes = (np.sin(xx / (7.0 + i) + yy / 13.0) > 0.6).astype(np.float64) * 0.25
            grain = rng.normal(0.0, 0.03, size=(3, h, w))
            img = np.clip(base.numpy() * 0.75 + stripes + grain, 0, 1)
            write_image(path, np.round(img.transpose(1, 2, 0) * 255).astype(np.uint8), bit_depth=8)
        lr_path = lr_dir / f"{path.stem}x{scale}.png"
        if not lr_path.exists():
            img = read_image(path)
            lr = make_lr(image_to_tensor(img, torch.float64), scale, 8)
            write_image(lr_path, tensor_to_array(lr, 8), bit_depth=8)
        hr_files.append(path)
    return hr_files, lr_dir


class _DecodingImages:
    """A list-like of CachedImage that decodes the HR and LR PNGs at every access (no cache)."""

    def __init__(self, files: Sequence[Path], lr_dir: Path, scale: int) -> None:
        self.files, self.lr_dir, self.scale = list(files), lr_dir, scale

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> CachedImage:
        f = self.files[i]
        hr = read_image(f)
        lr = read_image(self.lr_dir / f"{f.stem}x{self.scale}.png")
        return CachedImage(f.stem, str(f), hr.bit_depth, hr.array, {self.scale: lr.array})


class _DecodingSource:
    """Stands in for an ImageCache in TrainPatchDataset: same patches, PNGs decoded per patch."""

    def __init__(self, files: Sequence[Path], lr_dir: Path, scale: int) -> None:
        self.images = _DecodingImages(files, lr_dir, scale)
        self.scales = (scale,)

    def __len__(self) -> int:
        return len(self.images)


def _patch_rate(ds: TrainPatchDataset, scale: int, seconds: float, min_patches: int) -> float:
    """Patches/s drawing random (image, seed) patches from ``ds`` for about ``seconds``."""
    n, t0 = 0, time.perf_counter()
    while n < min_patches or time.perf_counter() - t0 < seconds:
        item = ds[(n % len(ds), scale, n)]
        assert item["lr"].shape[-1] == ds.patch_size
        n += 1
    return n / (time.perf_counter() - t0)


def decode_per_patch_rate(
    files: Sequence[Path], lr_dir: Path, scale: int = 2, patch: int = 48, seconds: float = 5.0
) -> float:
    """Patches/s when every patch decodes its HR and LR PNGs (EDSR-PyTorch ``--ext img``)."""
    ds = TrainPatchDataset([_DecodingSource(files, lr_dir, scale)], patch)  # type: ignore[list-item]
    return _patch_rate(ds, scale, seconds, min_patches=3)


def cache_patch_rate(
    files: Sequence[Path],
    cache_dir: str | os.PathLike[str],
    lr_dir: Path | None = None,
    scale: int = 2,
    patch: int = 48,
    seconds: float = 5.0,
) -> tuple[float, float]:
    """(patches/s from the decoded-image cache, seconds the one-time cache build took)."""
    cache = ImageCache(files, cache_dir, (scale,), {scale: lr_dir} if lr_dir else None)
    t0 = time.perf_counter()
    cache.build(log=None)
    build = time.perf_counter() - t0
    ds = TrainPatchDataset([cache], patch)
    ds[(0, scale, 0)]  # open the memory maps
    return _patch_rate(ds, scale, seconds, min_patches=100), build


def train_steps_per_s(
    n_resblocks: int = 80,
    n_feats: int = 64,
    batch: int = 16,
    patch: int = 48,
    scale: int = 2,
    steps: int = 1,
    warmup: int = 1,
) -> float:
    """Training steps/s (forward, L1, backward, Adam) of a multi-scale MDRN at ``scale`` on CPU."""
    from mdrn.models import MDRN

    torch.manual_seed(0)
    net = MDRN(n_resblocks=n_resblocks, n_feats=n_feats, scales=(2, 3, 4))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    lr = torch.rand(batch, 3, patch, patch)
    hr = torch.rand(batch, 3, patch * scale, patch * scale)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(net(lr, scale), hr).backward()
        opt.step()

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0)
