"""Speed and peak memory of tiled inference against EDSR-PyTorch's recursive 4-quadrant ``forward_chop``.

x4 of a 1024x1024 LR image (4096x4096 output) with MDRN B=80, F=64 (random weights: speed and memory do
not depend on the values) on CPU. Each variant runs in its own subprocess so that its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own. Also prints the largest difference of tiled
against untiled output for a few overlaps on a small image (the B=80 receptive field is 175 LR pixels,
so the tiles are exact only with that much context).

    python scripts/bench_tiling.py [--size 1024] [--tile 256] [--overlap 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def forward_chop(net, x: torch.Tensor, scale: int, shave: int = 10, min_size: int = 160000) -> torch.Tensor:  # noqa: ANN001
    """EDSR-PyTorch ``Model.forward_chop`` (src/model/__init__.py, one GPU): recursive quadrant split."""
    b, c, h, w = x.size()
    h_half, w_half = h // 2, w // 2
    h_size, w_size = h_half + shave, w_half + shave
    lr_list = [
        x[:, :, 0:h_size, 0:w_size],
        x[:, :, 0:h_size, (w - w_size) : w],
        x[:, :, (h - h_size) : h, 0:w_size],
        x[:, :, (h - h_size) : h, (w - w_size) : w],
    ]
    if w_size * h_size < min_size:
        sr_list = [net(patch, scale) for patch in lr_list]
    else:
        sr_list = [forward_chop(net, patch, scale, shave=shave, min_size=min_size) for patch in lr_list]
    h, w = scale * h, scale * w
    h_half, w_half = scale * h_half, scale * w_half
    h_size, w_size = scale * h_size, scale * w_size
    output = x.new(b, c, h, w)
    output[:, :, 0:h_half, 0:w_half] = sr_list[0][:, :, 0:h_half, 0:w_half]
    output[:, :, 0:h_half, w_half:w] = sr_list[1][:, :, 0:h_half, (w_size - w + w_half) : w_size]
    output[:, :, h_half:h, 0:w_half] = sr_list[2][:, :, (h_size - h + h_half) : h_size, 0:w_half]
    output[:, :, h_half:h, w_half:w] = sr_list[3][
        :, :, (h_size - h + h_half) : h_size, (w_size - w + w_half) : w_size
    ]
    return output


def _net() -> torch.nn.Module:
    from mdrn.models import MDRN

    torch.manual_seed(0)
    return MDRN(n_resblocks=80, n_feats=64, scales=(2, 3, 4)).eval()


def run_variant(variant: str, size: int, tile: int, overlap: int, threads: int) -> dict:
    """Run one variant in this process; return seconds and peak RSS."""
    from mdrn.inference import upscale

    torch.set_num_threads(threads)
    net = _net()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with torch.inference_mode():
        if variant == "chop":
            y = forward_chop(net, x, 4)
        else:
            y = upscale(net, x, 4, tile=tile, overlap=overlap)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "size": size, "tile": tile, "overlap": overlap, "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak), "rss_before_mb": round(rss0), "out_shape": list(y.shape)}  # fmt: skip


def seam_errors(overlaps: list[int], size: int = 96, tile: int = 32) -> dict:
    """Max |tiled - untiled| of the B=80 network (x4) on a small image for several overlaps."""
    from mdrn.inference import upscale

    net = _net()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    full = upscale(net, x, 4)
    return {ov: float((upscale(net, x, 4, tile=tile, overlap=ov) - full).abs().max()) for ov in overlaps}


def main() -> None:
    """Run every variant in a subprocess and print a JSON line per variant."""
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--seams", action="store_true", help="only measure tiled-vs-untiled differences")
    args = p.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.size, args.tile, args.overlap, args.threads)))
        return
    if args.seams:
        torch.set_num_threads(args.threads)
        print(json.dumps({"seam_max_abs_diff_by_overlap": seam_errors([8, 16, 32, 64])}))
        return
    for variant in ("tiled", "chop"):
        opts = ["--size", str(args.size), "--tile", str(args.tile), "--overlap", str(args.overlap)]
        cmd = [sys.executable, __file__, "--variant", variant, *opts, "--threads", str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        print(res.stdout.strip() or res.stderr.strip()[-2000:], flush=True)


if __name__ == "__main__":
    main()
