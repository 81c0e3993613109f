"""Bench section ``metrics``: the protocol's PSNR + SSIM against the per-image scikit-image loop."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np
import torch

from mdrn.bench.core import (
    SHARED,
    Context,
    alternate,
    rate_row,
)
from mdrn.bench.goals import EQUAL_THREADS, THREADED

#: timed calls of each side: a call of ours takes ~10 ms, and its first image after the loop's ~70 ms
#: pays for the cores' idle state (measured 1.9 ms back to back, 8-12 ms after a pause): 15 calls
#: (about 1.2 s in all) keep one slow call from moving the median
_REPEATS = 15


def _skimage_scores(pairs: list[tuple[np.ndarray, np.ndarray]], scale: int) -> list[tuple[float, float]]:
    """The naive protocol: per image, numpy Y (float64) + scikit-image PSNR and SSIM (BasicSR's way)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    coef = np.array([65.481, 128.553, 24.966])
    out = []
    for sr, hr in pairs:
        ys = (sr.astype(np.float64) / 255.0) @ coef + 16.0 if sr.ndim == 3 else sr.astype(np.float64)
        yh = (hr.astype(np.float64) / 255.0) @ coef + 16.0 if hr.ndim == 3 else hr.astype(np.float64)
        ys, yh = ys[scale:-scale, scale:-scale], yh[scale:-scale, scale:-scale]
        p = peak_signal_noise_ratio(yh, ys, data_range=255)
        q = structural_similarity(
            yh, ys, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        out.append((float(p), float(q)))
    return out


def _set5_images(ctx: Context) -> tuple[list[np.ndarray], str]:
    """Set5's HR images as uint8 arrays (or scikit-image's CC0 images when ../shared is absent)."""
    from mdrn.io.images import read_image

    folder = SHARED / "datasets" / "Set5"
    files = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if files:
        arrays, label = [read_image(f).array for f in files], "Set5"
    else:
        from skimage import data

        arrays = [data.astronaut(), data.coffee(), data.chelsea(), data.camera(), data.retina()]
        label = "scikit-image images (Set5 not found)"
    m = ctx.sizes.metrics_max_side
    if m:
        arrays = [a[:m, :m] for a in arrays]
    return arrays, label


def bench_metrics(ctx: Context) -> None:
    """PSNR + SSIM of bicubic x4 on Set5: the protocol's ``score`` against a per-image scikit-image loop."""
    from mdrn.io.images import ImageData, image_to_tensor, tensor_to_array
    from mdrn.protocol.metrics import score
    from mdrn.protocol.resize import degrade, imresize, modcrop

    scale = ctx.sizes.metrics_scale
    arrays, label = _set5_images(ctx)
    tensors, pairs = [], []
    for arr in arrays:
        hr_arr = modcrop(arr, scale)
        hr = image_to_tensor(ImageData(array=hr_arr, bit_depth=8))[None]
        sr_arr = tensor_to_array(imresize(degrade(hr, scale), scale), 8)
        sr = image_to_tensor(ImageData(array=sr_arr, bit_depth=8))[None]
        tensors.append((sr, hr))
        pairs.append((sr_arr, hr_arr))

    threads = torch.get_num_threads()

    def ours(n: int) -> Callable[[], list[tuple[float, float]]]:
        def call() -> list[tuple[float, float]]:
            torch.set_num_threads(n)  # score() splits an image's rows between torch's threads
            try:
                res = []
                for sr, hr in tensors:
                    p, q = score(sr, hr, scale=scale)
                    res.append((float(p[0]), float(q[0])))
                return res
            finally:
                torch.set_num_threads(threads)

        return call

    a, b = ours(1)(), _skimage_scores(pairs, scale)
    dp = max(abs(x[0] - y[0]) for x, y in zip(a, b))
    ds = max(abs(x[1] - y[1]) for x, y in zip(a, b))
    variants: dict[str, Callable[[], object]] = {
        "one": ours(1),
        "base": lambda: _skimage_scores(pairs, scale),
    }
    if threads > 1:
        variants["all"] = ours(threads)
    repeats = max(ctx.sizes.repeats, _REPEATS)
    t = alternate(variants, repeats=repeats, warmup=1)
    n = len(pairs)
    name = f"PSNR+SSIM (Y, shave {scale}), {label} bicubic x{scale}"
    ctx.add(
        rate_row(
            f"{name}, {EQUAL_THREADS}",
            n,
            t,
            "images/s",
            keys=("one", "base"),
            ours_label="mdrn.protocol.metrics.score (numba kernel, 1 thread)",
            baseline_label="per-image numpy Y + skimage psnr/ssim (one thread)",
            repeats=repeats,
            notes=f"equal threads on both sides; max |dPSNR| {dp:.1e} dB, max |dSSIM| {ds:.1e}; "
            f"mean PSNR {statistics.mean(x[0] for x in a):.3f}",
            extra={"max_abs_diff_psnr": dp, "max_abs_diff_ssim": ds, "images": n, "threads": 1},
        )
    )
    if threads > 1:
        ctx.add(
            rate_row(
                f"{name}: {threads} {THREADED}",
                n,
                t,
                "images/s",
                keys=("all", "one"),
                ours_label=f"mdrn.protocol.metrics.score ({threads} threads)",
                baseline_label="mdrn.protocol.metrics.score (1 thread)",
                repeats=repeats,
                notes="the same calls as the row above, timed in the same loop; what the threads add",
                extra={"images": n, "threads": threads},
            )
        )
