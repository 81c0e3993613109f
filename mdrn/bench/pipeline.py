"""Bench section ``pipeline``: training patches per second from the decoded-image cache."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mdrn.bench.core import (
    Context,
    alternate,
    make_row,
    median,
)


def bench_pipeline(ctx: Context) -> None:
    """Training patches/s on one core: mdrn.data's cache against decoding the PNGs for every patch.

    Both sides are the same ``TrainPatchDataset`` + ``ScaleBatchSampler`` + ``DataLoader`` (the training
    path); only the image source differs: the decoded-image cache, or mdrn.data's decode-per-patch
    stand-in (EDSR-PyTorch ``--ext img``: HR and LR PNGs decoded for every patch).
    """
    from torch.utils.data import DataLoader

    try:
        from mdrn.data.bench_utils import _DecodingSource, make_div2k_like
    except ImportError as exc:
        ctx.skip("data pipeline patches/s", f"mdrn.data.bench_utils not available ({exc})")
        return
    from mdrn.data.cache import ImageCache
    from mdrn.data.datasets import ScaleBatchSampler, TrainPatchDataset

    s = ctx.sizes
    scale, batch = s.pipe_scale, 16
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core: a loader worker is one single-threaded process
    try:
        with tempfile.TemporaryDirectory(prefix="mdrn-bench-pipe-") as tmp:
            root = Path(tmp)
            hr_files, lr_dir = make_div2k_like(root / "images", n=s.pipe_images, size=s.pipe_hw, scale=scale)
            cache = ImageCache(hr_files, root / "cache", (scale,), {scale: lr_dir})
            t0 = time.perf_counter()
            cache.build(log=None)
            build = time.perf_counter() - t0

            def loader(source: Any, size: int, n_batches: int) -> DataLoader:
                ds = TrainPatchDataset([source], patch_size=s.pipe_patch, n_colors=3)
                sampler = ScaleBatchSampler(len(ds), size, n_batches, scales=(scale,), seed=0)
                return DataLoader(ds, batch_sampler=sampler, num_workers=0)

            n_batches = max(1, s.pipe_cache_patches // batch)
            cached = loader(cache, batch, n_batches)
            decoding = loader(_DecodingSource(hr_files, lr_dir, scale), 1, s.pipe_decode_patches)

            def drain(dl: DataLoader) -> Callable[[], None]:
                def call() -> None:
                    for _ in dl:
                        pass

                return call

            t = alternate(
                {"ours": drain(cached), "base": drain(decoding)}, repeats=s.repeats, warmup=s.warmup
            )
    finally:
        torch.set_num_threads(threads)
    rate_o = n_batches * batch / median(t["ours"])
    rate_b = s.pipe_decode_patches / median(t["base"])
    h, w = s.pipe_hw
    ctx.add(
        make_row(
            f"data pipeline x{scale}, {s.pipe_patch}x{s.pipe_patch} LR patches from {w}x{h} PNGs, one core",
            rate_o,
            rate_b,
            "patches/s",
            ours_label="mdrn.data decoded-image cache (memory-mapped), batches of 16",
            baseline_label="decode HR + LR PNG per patch (EDSR --ext img; mdrn.data.bench_utils)",
            repeats=s.repeats,
            notes=f"same TrainPatchDataset + DataLoader, one process, one thread; {s.pipe_images} images, "
            f"cache built once in {build:.1f} s",
            extra={"per_core_rate": rate_o, "cache_build_seconds": build},
        )
    )
    ctx.skip("data pipeline, GPU-resident", "mdrn.data has no GPU-resident option yet")
