"""Speed and peak memory of tiled inference against EDSR-PyTorch's recursive 4-quadrant ``forward_chop``.

x4 of a 1024x1024 LR image (4096x4096 output) with MDRN B=80, F=64 (random weights: speed and memory do
not depend on the values) on CPU. Variants, each in its own subprocess so that its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own:

- ``two_stage``: ``mdrn.models.inference.upscale`` as the CLI calls it (body tiles sized by the ``memory``
  budget, then the upsampler + tail over sub-tiles of the feature map);
- ``single_stage``: the same call on a wrapper that hides ``features``/``reconstruct``, i.e. the whole
  network on ``--tile`` tiles with ``--overlap`` context;
- ``chop``: EDSR-PyTorch's ``forward_chop`` (shave 10, not seamless for deep networks).

Each prints seconds, peak RSS and ``body_lr_px``: the LR pixels pushed through the residual body
(counted by a hook on ``net.body``; deterministic, the measure of the work). ``--seams`` prints the
largest difference of tiled against untiled output for a few overlaps on a small image (the B=80
receptive field is 175 LR pixels, so the tiles are exact only with that much context).

    python scripts/bench_tiling.py [--size 1024] [--blocks 80] [--tile 384] [--overlap 32] [--threads 2]
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


#: The variants ``main`` runs, in this order.
VARIANTS = ("two_stage", "single_stage", "chop")


def _net(n_resblocks: int = 80, n_feats: int = 64) -> torch.nn.Module:
    from mdrn.models import MDRN

    torch.manual_seed(0)
    return MDRN(n_resblocks=n_resblocks, n_feats=n_feats, scales=(2, 3, 4)).eval()


class SingleStage(torch.nn.Module):
    """The wrapped network without ``features``/``reconstruct``: ``upscale`` tiles it in one stage."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.scales, self.n_colors = net.scales, net.n_colors

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """The wrapped network's forward."""
        return self.net(x, scale)


def run_variant(
    variant: str,
    size: int,
    tile: int,
    overlap: int,
    threads: int,
    blocks: int = 80,
    feats: int = 64,
    memory: int | None = None,
) -> dict:
    """Run one variant in this process; return seconds, peak RSS and the LR pixels the body ran on.

    ``memory``: the two-stage budget in bytes (default ``mdrn.models.inference.DEFAULT_MEMORY``).
    """
    from mdrn.models.inference import DEFAULT_MEMORY, upscale

    memory = memory or DEFAULT_MEMORY

    torch.set_num_threads(threads)
    net = _net(blocks, feats)
    body_px = [0]
    net.body.register_forward_pre_hook(lambda m, a: body_px.__setitem__(0, body_px[0] + a[0][0, 0].numel()))
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with torch.inference_mode():
        if variant == "chop":
            y = forward_chop(net, x, 4)
        elif variant == "single_stage":
            y = upscale(SingleStage(net), x, 4, tile=tile, overlap=overlap)
        elif variant == "two_stage":
            y = upscale(net, x, 4, tile=tile, overlap=overlap, memory=memory)
        else:
            raise ValueError(f"unknown variant {variant!r}; known: {VARIANTS}")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {"variant": variant, "size": size, "blocks": blocks, "feats": feats, "seconds": round(seconds, 1),
           "peak_rss_mb": round(peak), "rss_before_mb": round(rss0), "body_lr_px": body_px[0],
           "body_px_ratio": round(body_px[0] / size**2, 4), "out_shape": list(y.shape)}  # fmt: skip
    if variant == "chop":
        res["shave"] = 10
    else:
        res.update(tile=tile, overlap=overlap)
    if variant == "two_stage":
        res["memory_budget_mb"] = round(memory / 2**20)
    return res


def seam_errors(overlaps: list[int], size: int = 96, tile: int = 32) -> dict:
    """Max |tiled - untiled| of the B=80 network (x4) on a small image for several overlaps."""
    from mdrn.models.inference import upscale

    net = _net()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    full = upscale(net, x, 4)
    return {ov: float((upscale(net, x, 4, tile=tile, overlap=ov) - full).abs().max()) for ov in overlaps}


def main() -> None:
    """Run every variant in a subprocess and print a JSON line per variant."""
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--tile", type=int, default=384, help="tile of single_stage; two_stage: tiling on")
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blocks", type=int, default=80)
    p.add_argument("--feats", type=int, default=64)
    p.add_argument("--memory-mb", type=int, default=None, help="two_stage budget (default: DEFAULT_MEMORY)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, run one after another")
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--seams", action="store_true", help="only measure tiled-vs-untiled differences")
    args = p.parse_args()
    if args.variant:
        memory = args.memory_mb << 20 if args.memory_mb else None
        res = run_variant(
            args.variant, args.size, args.tile, args.overlap, args.threads, args.blocks, args.feats, memory
        )
        print(json.dumps(res))
        return
    if args.seams:
        torch.set_num_threads(args.threads)
        print(json.dumps({"seam_max_abs_diff_by_overlap": seam_errors([8, 16, 32, 64])}))
        return
    for variant in args.variants.split(","):
        opts = ["--size", str(args.size), "--tile", str(args.tile), "--overlap", str(args.overlap)]
        opts += ["--blocks", str(args.blocks), "--feats", str(args.feats)]
        opts += ["--memory-mb", str(args.memory_mb)] if args.memory_mb else []
        cmd = [sys.executable, __file__, "--variant", variant, *opts, "--threads", str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        print(res.stdout.strip() or res.stderr.strip()[-2000:], flush=True)


if __name__ == "__main__":
    main()
