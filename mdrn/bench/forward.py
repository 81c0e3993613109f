"""Bench sections ``forward`` and ``compile``: MDRN inference on LR tiles, fast path against eager."""

from __future__ import annotations

import copy
import time
import types
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from mdrn.bench.core import (
    Context,
    alternate,
    build_mdrn,
    describe,
    make_row,
    median,
    path_label,
    rate_row,
    seed,
    sync,
)
from mdrn.bench.limits import ConvLimit, fraction_facts, fraction_note
from mdrn.perf import (
    amx_bf16_available,
    count_flops,
    inference_context,
    malloc_reuse,
    prepare_for_inference,
)


def out_of_place_variant(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose residual blocks work out of place, as before they were made in place:
    ReLUs not in place and ``x + res_scale * body(x)`` into a new tensor (the baseline of the in-place rows).
    """
    from mdrn.models.blocks import ResBlock

    def forward(self: ResBlock, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1.0:
            res = res * self.res_scale
        return x + res

    out = copy.deepcopy(net)
    for m in out.modules():
        if isinstance(m, ResBlock):
            for a in m.body:
                if isinstance(a, nn.ReLU):
                    a.inplace = False
            m.forward = types.MethodType(forward, m)
    return out


def bench_forward(ctx: Context) -> None:
    """MDRN forward on LR tiles at each scale: fast path against eager NCHW fp32 (LR px/s, GFLOP/s).

    Every variant runs as :func:`mdrn.models.inference.upscale` runs the tiles of an image: under one
    :func:`mdrn.perf.malloc_reuse` block (on CPU), so a tile's maps reuse the memory the previous tile freed.
    """
    with malloc_reuse(ctx.device.type == "cpu"):
        _bench_forward(ctx)


def _bench_forward(ctx: Context) -> None:
    """:func:`bench_forward`'s rows."""
    s = ctx.sizes
    args = dict(s.fwd_model)
    eager = build_mdrn(args).to(ctx.device).eval()
    ours_net = prepare_for_inference(copy.deepcopy(eager), path=ctx.path)
    t = s.fwd_tile
    x = torch.rand(1, 3, t, t, generator=seed()).to(ctx.device)
    for scale in s.fwd_scales:
        with torch.no_grad():
            ref = eager(x, scale)
        with inference_context(path=ctx.path):
            diff = float((ours_net(x, scale).float() - ref).abs().max())

        def ours(scale: int = scale) -> None:
            with inference_context(path=ctx.path):
                ours_net(x, scale)

        def base(scale: int = scale) -> None:
            with torch.no_grad():
                eager(x, scale)

        flops = count_flops(eager, (1, 3, t, t), scale).forward
        limit = ConvLimit(
            ctx, (1, int(args["n_feats"]), t, t), training=False, flops_per_slot=flops, chain=True
        )
        times = alternate(
            {"ours": ours, "base": base, **limit.calls()},
            repeats=s.repeats,
            warmup=s.warmup,
            device=ctx.device,
        )
        facts = fraction_facts(flops, times, limit)
        ctx.add(
            make_row(
                f"MDRN {describe(args)} forward x{scale}, {t}x{t} LR tile",
                t * t / median(times["ours"]),
                t * t / median(times["base"]),
                "LR px/s",
                ours_label=path_label(ctx.path, training=False),
                baseline_label="eager NCHW fp32 (no_grad)",
                repeats=s.repeats,
                notes=f"{fraction_note(facts)}; max |ours - eager| {diff:.1e}; "
                "both under glibc memory reuse, as upscale runs an image's tiles",
                extra={**facts, "max_abs_diff": diff},
            )
        )

    _bench_bf16(ctx, ours_net, x, args)

    # the model's in-place blocks against the out-of-place ones they replaced, both on the fast path
    scale = s.fwd_scales[0]
    variant = prepare_for_inference(out_of_place_variant(eager), path=ctx.path)
    with inference_context(path=ctx.path):
        diff = float((variant(x, scale) - ours_net(x, scale)).abs().max())

    def run(net: nn.Module) -> Callable[[], None]:
        def call() -> None:
            with inference_context(path=ctx.path):
                net(x, scale)

        return call

    times = alternate(
        {"v": run(variant), "m": run(ours_net)}, repeats=s.repeats, warmup=s.warmup, device=ctx.device
    )
    ctx.add(
        rate_row(
            f"MDRN {describe(args)} forward x{scale}: in-place ReLU + residual add",
            t * t,
            times,
            "LR px/s",
            keys=("m", "v"),
            ours_label="mdrn.models blocks (in place)",
            baseline_label="out-of-place blocks (local variant)",
            repeats=s.repeats,
            notes=f"both on the fast path; max |diff| {diff:.1e}",
            extra={"max_abs_diff": diff},
        )
    )


def _bench_bf16(ctx: Context, net: nn.Module, x: torch.Tensor, args: dict) -> None:
    """On a CPU with AMX bf16 tiles: the fast path under bf16 autocast against fp32 (not a default)."""
    scale, t = ctx.sizes.fwd_scales[0], x.shape[-1]
    name = f"MDRN {describe(args)} forward x{scale}, {t}x{t} LR tile: bf16 autocast (AMX)"
    if ctx.device.type != "cpu" or not amx_bf16_available():
        ctx.skip(name, "CPU only, with AMX bf16 tiles (without them bf16 runs 10-500x slower than fp32)")
        return

    def fp32() -> torch.Tensor:
        with torch.inference_mode():
            return net(x, scale)

    def bf16() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x, scale)

    diff = float((bf16().float() - fp32()).abs().max())
    times = alternate({"b": bf16, "f": fp32}, repeats=ctx.sizes.repeats, warmup=ctx.sizes.warmup)
    ctx.add(
        rate_row(
            name,
            t * t,
            times,
            "LR px/s",
            keys=("b", "f"),
            ours_label="NHWC, bf16 autocast, inference_mode",
            baseline_label="the fp32 fast path",
            repeats=ctx.sizes.repeats,
            notes=f"not a default: max |bf16 - fp32| {diff:.1e} on [0, 1] (random weights) = "
            f"{diff * 255:.1f} grey levels of an 8-bit image, {diff * 65535:.0f} of a 16-bit one",
            extra={"max_abs_diff": diff},
        )
    )


def bench_compile(ctx: Context) -> None:
    """``module.compile()`` (inductor) against the eager fast path on CPU: compile time and steady speed.

    Not in the default run (compiling costs tens of seconds to minutes); ``--only compile`` or ``--all``.
    """
    s = ctx.sizes
    args = {**s.fwd_model, "n_resblocks": min(4, int(s.fwd_model["n_resblocks"])), "scales": (2,)}
    eager = prepare_for_inference(build_mdrn(args), path=replace(ctx.path, compile=False))
    compiled = copy.deepcopy(eager)
    compiled.compile()
    t = s.fwd_tile
    x = torch.rand(1, 3, t, t, generator=seed()).to(ctx.device)
    with inference_context(path=ctx.path):
        t0 = time.perf_counter()
        out = compiled(x, 2)
        sync(ctx.device)
        compile_s = time.perf_counter() - t0
        diff = float((out - eager(x, 2)).abs().max())

    def run(net: nn.Module) -> Callable[[], None]:
        def call() -> None:
            with inference_context(path=ctx.path):
                net(x, 2)

        return call

    times = alternate(
        {"c": run(compiled), "e": run(eager)}, repeats=s.repeats, warmup=s.warmup, device=ctx.device
    )
    tc, te = median(times["c"]), median(times["e"])
    gain = te - tc
    breakeven = f"{compile_s / gain:,.0f} tiles" if gain > 0 else "never (not faster)"
    ctx.add(
        make_row(
            f"MDRN {describe(args)} forward x2, {t}x{t} LR tile: module.compile()",
            t * t / tc,
            t * t / te,
            "LR px/s",
            ours_label="module.compile() (inductor) on the fast path",
            baseline_label="eager fast path",
            repeats=s.repeats,
            notes=f"first call (compiling) {compile_s:.1f} s; pays back after {breakeven}; "
            f"max |diff| {diff:.1e}",
            extra={"compile_seconds": compile_s, "max_abs_diff": diff},
        )
    )
