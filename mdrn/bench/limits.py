"""Bench section ``limits``: the machine's limits (matmul, the MDRN convolution, memory copy)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mdrn.bench.core import (
    Context,
    Row,
    alternate,
    make_row,
    median,
    rate_row,
    seed,
)
from mdrn.perf import (
    inference_context,
)


def _conv_gflops(ctx: Context, shape: tuple[int, int, int, int]) -> Row:
    """64->64 3x3 convolution at ``shape``: fast path (NHWC) against NCHW, GFLOP/s."""
    n, c, h, w = shape
    conv = nn.Conv2d(c, c, 3, padding=1).to(ctx.device)
    fast = copy.deepcopy(conv)
    if ctx.path.channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    x = torch.rand(shape, generator=seed(), device="cpu").to(ctx.device)
    xf = x.contiguous(memory_format=torch.channels_last) if ctx.path.channels_last else x
    flops = 2 * c * c * 9 * n * h * w

    def ours() -> None:
        with inference_context(path=ctx.path):
            fast(xf)

    def base() -> None:
        with torch.no_grad():
            conv(x)

    t = alternate(
        {"ours": ours, "base": base}, repeats=max(ctx.sizes.repeats, 5), warmup=2, device=ctx.device
    )
    g_o, g_b = flops / median(t["ours"]) / 1e9, flops / median(t["base"]) / 1e9
    return make_row(
        f"conv 64->64 3x3 fp32, {n}x{c}x{h}x{w}" if c == 64 else f"conv {c}->{c} 3x3, {n}x{c}x{h}x{w}",
        g_o,
        g_b,
        "GFLOP/s",
        ours_label="NHWC (channels_last)" if ctx.path.channels_last else "fast path",
        baseline_label="NCHW",
        repeats=max(ctx.sizes.repeats, 5),
    )


def bench_limits(ctx: Context) -> None:
    """Machine limits: large fp32 matmul, the MDRN convolution at training and tile shapes, memory copy."""
    s = ctx.sizes
    n = s.matmul_n
    g = seed()
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    an, bn = a.numpy(), b.numpy()
    a, b = a.to(ctx.device), b.to(ctx.device)
    t = alternate(
        {"ours": lambda: a @ b, "base": lambda: an @ bn},
        repeats=max(s.repeats, 5),
        warmup=1,
        device=ctx.device,
    )
    flops = 2 * n**3
    ctx.add(
        rate_row(
            f"matmul fp32 {n}x{n}",
            flops,
            t,
            "GFLOP/s",
            per=1e9,
            ours_label=f"torch ({ctx.device.type})",
            baseline_label="numpy (OpenBLAS)",
            repeats=max(s.repeats, 5),
        )
    )

    feats = s.train_feats
    train_shape = (s.train_batch, feats, s.train_patch, s.train_patch)
    fwd_feats = int(s.fwd_model["n_feats"])
    tile_shape = (1, fwd_feats, s.fwd_tile, s.fwd_tile)
    for key, shape in (("conv_limit_train", train_shape), ("conv_limit_tile", tile_shape)):
        row = _conv_gflops(ctx, shape)
        ctx.facts[key] = {"gflops": max(row.ours, row.baseline or 0.0), "shape": list(shape)}
        row.notes = "the conv limit used for the fractions below = the faster of the two"
        ctx.add(row)
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu" and threads > 1:
        conv = nn.Conv2d(feats, feats, 3, padding=1).to(memory_format=torch.channels_last)
        x = torch.rand(train_shape, generator=g).contiguous(memory_format=torch.channels_last)

        def with_threads(n: int) -> Callable[[], None]:
            def call() -> None:
                torch.set_num_threads(n)
                try:
                    with torch.inference_mode():
                        conv(x)
                finally:
                    torch.set_num_threads(threads)

            return call

        t = alternate(
            {"all": with_threads(threads), "one": with_threads(1)}, repeats=max(s.repeats, 5), warmup=2
        )
        flops = 2 * feats * feats * 9 * math.prod(train_shape) // feats
        ctx.add(
            rate_row(
                f"conv {feats}->{feats} 3x3 NHWC, {'x'.join(map(str, train_shape))}: threads",
                flops,
                t,
                "GFLOP/s",
                keys=("all", "one"),
                per=1e9,
                ours_label=f"{threads} threads (one per available core)",
                baseline_label="1 thread",
                repeats=max(s.repeats, 5),
                notes="on a machine shared with other jobs, multi-threaded ops wait for descheduled threads",
            )
        )

    mb = s.memcpy_mb
    src = torch.rand(mb * 2**20 // 4, generator=g)
    dst = torch.empty_like(src)
    srcn, dstn = src.numpy(), np.empty_like(src.numpy())
    t = alternate(
        {"ours": lambda: dst.copy_(src), "base": lambda: np.copyto(dstn, srcn)},
        repeats=max(s.repeats, 5),
        warmup=1,
    )
    nbytes = src.numel() * 4
    ctx.add(
        rate_row(
            f"memory copy {mb} MB",
            nbytes,
            t,
            "GB/s",
            per=1e9,
            ours_label="torch copy_ (multi-threaded)",
            baseline_label="numpy copyto (one thread)",
            repeats=max(s.repeats, 5),
            notes="bytes copied per second (each byte is read once and written once)",
        )
    )
