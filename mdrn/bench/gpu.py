"""Bench section ``gpu``: the paper's network on a GPU, against the GPU's own ceiling and its bf16 peak.

Runs by default with ``--device cuda`` (``mdrn-bench --device cuda``, ``make gpu-checks``); elsewhere only
with ``--only gpu`` (on a CPU it runs the same code eagerly, without CUDA graphs, for tests). In order:

1. the GPU's limits: a large bf16 matmul against the data sheet's dense peak (:data:`BF16_DENSE_PEAK`),
   and the ceiling of the network's own work (:mod:`mdrn.bench.gpu_ceiling`: its 64->64 3x3 convolution
   in bf16 NHWC, forward + backward, cuDNN benchmark on, each pass one ``torch.cuda.CUDAGraph``, at the
   training budgets and larger; the best rate);
2. the training step at the pixel budgets 16x48^2 (the paper's), 64x48^2, 16x96^2 and 64x96^2, per way
   of running it, with the cuDNN benchmark A/B and the kernel profile (:mod:`mdrn.bench.gpu_steps`);
   the goals of issue 26 read these figures (:mod:`mdrn.bench.goals`);
3. opt-in (``Sizes.gpu_forward``): forward passes of a 256x256 LR tile at x2 and x4, eager fp32 against
   bf16 NHWC, compiled, and compiled with CUDA graphs, against the forward ceiling at that shape.

The whole section keeps to ``Sizes.gpu_budget_s`` (a compiled variant that would run past it is skipped
with the reason), so that ``make gpu-checks`` fits its device lease.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mdrn.bench.core import (
    PAPER_SCHEDULE,
    Context,
    alternate,
    build_mdrn,
    describe,
    make_row,
    median,
    seed,
    sync,
)
from mdrn.bench.goals import gpu_best_step
from mdrn.bench.gpu_ceiling import measure_ceiling
from mdrn.bench.gpu_steps import BASELINE, bench_steps
from mdrn.perf import count_flops

#: Dense bf16 tensor-core peak (FLOP/s, no sparsity) by a substring of ``torch.cuda.get_device_name``;
#: the vendors' data sheets (SXM boards; PCIe H100 756e12).
BF16_DENSE_PEAK: dict[str, float] = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
}


def bf16_peak(device: torch.device) -> tuple[str, float | None]:
    """The device's name and its bf16 dense peak (``None`` when unknown or not a GPU)."""
    if device.type != "cuda":
        return device.type, None
    name = torch.cuda.get_device_name(device)
    return name, next((v for k, v in BF16_DENSE_PEAK.items() if k in name), None)


def _variants(ctx: Context) -> dict[str, dict[str, Any]]:
    """The variants: eager fp32 NCHW, bf16 NHWC, bf16 NHWC compiled (the last only if compiling)."""
    out = {
        BASELINE: {"amp": None, "nhwc": False, "compile": False},
        "bf16-mixed NHWC": {"amp": torch.bfloat16, "nhwc": True, "compile": False},
    }
    if ctx.sizes.gpu_compile:
        out["bf16-mixed NHWC compiled"] = {"amp": torch.bfloat16, "nhwc": True, "compile": True}
        if ctx.device.type == "cuda":
            out["bf16-mixed NHWC compiled, CUDA graphs"] = {
                "amp": torch.bfloat16,
                "nhwc": True,
                "compile": True,
                "mode": "reduce-overhead",
            }
    return out


def _build(ctx: Context, args: dict[str, Any], v: dict[str, Any], train: bool) -> nn.Module:
    """The network of one variant on the device: NHWC and compiled (in place) as the variant says."""
    net = build_mdrn(args).to(ctx.device).train(train)
    if v["nhwc"]:
        net = net.to(memory_format=torch.channels_last)
    if v["compile"]:
        net.compile(**({"mode": v["mode"]} if v.get("mode") else {}))
    return net


def _amp(ctx: Context, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on the run's device, or nothing."""
    return torch.autocast(ctx.device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def _peak_note(flops: float, seconds: float, peak: float | None) -> tuple[str, float | None]:
    """'x TFLOP/s (y% of the bf16 peak)' of a timed call, and the fraction."""
    rate = flops / seconds
    if not peak:
        return f"{rate / 1e12:.2f} TFLOP/s", None
    return f"{rate / 1e12:.2f} TFLOP/s ({rate / peak:.1%} of the bf16 dense peak)", rate / peak


def _first_calls(ctx: Context, calls: dict[str, Callable[[], None]], compiled: set[str]) -> dict[str, float]:
    """Run each compiled variant's first call (its compilation) apart: seconds per variant.

    A variant whose compilation fails is removed from ``calls`` and recorded as skipped with the error."""
    seconds = {}
    for k in [k for k in calls if k in compiled]:
        t0 = time.perf_counter()
        try:
            calls[k]()
            sync(ctx.device)
        except Exception as err:  # noqa: BLE001 - a failed compile is reported, the other variants run
            del calls[k]
            ctx.skip(k, f"compilation failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
            continue
        seconds[k] = time.perf_counter() - t0
    return seconds


def _matmul_limit(ctx: Context, name: str, peak: float | None, facts: dict[str, Any]) -> None:
    """The bf16 matmul ceiling (n x n x n products) against fp32, and against the data sheet's peak."""
    s = ctx.sizes
    g = seed()
    n = s.gpu_matmul_n
    a = torch.rand(n, n, generator=g).to(ctx.device, torch.bfloat16)
    b = torch.rand(n, n, generator=g).to(ctx.device, torch.bfloat16)
    inner = s.gpu_limit_inner
    af, bf = a.float(), b.float()

    def mm(x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
        def call() -> None:
            for _ in range(inner):
                x @ y

        return call

    t = alternate({"bf16": mm(a, b), "fp32": mm(af, bf)}, repeats=s.repeats, warmup=1, device=ctx.device)
    flops = 2 * n**3 * inner
    rate, rate32 = flops / median(t["bf16"]), flops / median(t["fp32"])
    facts["matmul_bf16"] = {"n": n, "flops_per_s": rate, "fraction_of_peak": rate / peak if peak else None}
    ctx.add(
        make_row(
            f"matmul bf16 {n}x{n} on {name}",
            rate / 1e12,
            rate32 / 1e12,
            "TFLOP/s",
            ours_label="bf16",
            baseline_label=f"fp32 (float32 matmul precision {torch.get_float32_matmul_precision()!r})",
            repeats=s.repeats,
            notes=(
                f"{rate / peak:.1%} of the data sheet's bf16 dense peak ({peak / 1e12:.0f} TFLOP/s); "
                if peak
                else ""
            )
            + f"{inner} products per timed call",
            extra={"flops_per_s": rate, "fraction_of_peak": rate / peak if peak else None},
        )
    )


def _over(frac: float | None) -> str:
    """The notes' warning for a fraction of a limit above 100%: a measurement error, not a result."""
    return "; MEASUREMENT ERROR: above 100% of its limit, not a result" if frac and frac > 1.0 else ""


def bench_gpu(ctx: Context) -> None:
    """The GPU's limits, the training step per budget and variant, and (opt-in) forward passes."""
    s = ctx.sizes
    name, peak = bf16_peak(ctx.device)
    facts: dict[str, Any] = {"device_name": name, "bf16_peak": peak, "forward": {}}
    _matmul_limit(ctx, name, peak, facts)
    feats = int(s.gpu_model["n_feats"])
    shapes = list(dict.fromkeys([*s.gpu_budgets, *s.gpu_ceiling_extra]))
    ceiling = measure_ceiling(ctx, shapes, feats=feats, inner=s.gpu_ceiling_inner, peak=peak, name=name)
    facts["ceiling"] = ceiling
    facts["conv_limit_train"] = {"flops_per_s": ceiling["flops_per_s"], "shape": ceiling["shape"]}
    facts.update(bench_steps(ctx, ceiling, peak, name))
    if s.gpu_forward:
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = ctx.device.type == "cuda" or benchmark
        try:
            _forward_rows(ctx, name, peak, facts)
        finally:
            torch.backends.cudnn.benchmark = benchmark
    sync(ctx.device)
    best = gpu_best_step(facts)
    if best is not None:
        facts["paper_schedule_hours"] = PAPER_SCHEDULE["iterations"] * best[1]["seconds"] / 3600
    ctx.facts["gpu"] = facts


def _forward_rows(ctx: Context, name: str, peak: float | None, facts: dict[str, Any]) -> None:
    """Forward passes of one LR tile at x2 and x4 per variant, against the forward ceiling at its shape."""
    s = ctx.sizes
    args = dict(s.gpu_model)
    feats = int(args["n_feats"])
    limit = measure_ceiling(ctx, [(1, s.gpu_tile)], feats=feats, inner=s.gpu_ceiling_inner, peak=peak,
                            name=name, training=False)["flops_per_s"]  # fmt: skip
    variants = _variants(ctx)
    compiled = {k for k, v in variants.items() if v["compile"]}
    g = seed()
    t = s.gpu_tile
    xt = torch.rand(1, 3, t, t, generator=g).to(ctx.device)
    facts["compile_seconds_forward"] = {}
    for scale in (2, 4):
        fflops = count_flops(build_mdrn(args), tuple(xt.shape), scale).forward

        def forward(net: nn.Module, v: dict[str, Any], scale: int = scale) -> Callable[[], None]:
            xin = xt.contiguous(memory_format=torch.channels_last) if v["nhwc"] else xt

            def call() -> None:
                with torch.inference_mode(), _amp(ctx, v["amp"]):
                    net(xin, scale)

            return call

        calls = {k: forward(_build(ctx, args, v, False), v) for k, v in variants.items()}
        first = _first_calls(ctx, calls, compiled)
        facts["compile_seconds_forward"].update({f"x{scale} {k}": v for k, v in first.items()})
        times = alternate(calls, repeats=s.repeats, warmup=s.gpu_warmup, device=ctx.device)
        base = median(times[BASELINE])
        for k in calls:
            sec = median(times[k])
            note, frac = _peak_note(fflops, sec, peak)
            conv_frac = fflops / sec / limit
            facts["forward"][f"x{scale} {k}"] = {
                "seconds": sec,
                "fraction_of_peak": frac,
                "fraction_of_conv_limit": conv_frac,
            }
            if k == BASELINE:
                continue
            compile_note = f"; compilation (first call) {first[k]:.0f} s" if k in first else ""
            ctx.add(
                make_row(
                    f"MDRN {describe(args)} forward x{scale}, {t}x{t} LR tile on {name}: {k}",
                    t * t / sec,
                    t * t / base,
                    "LR px/s",
                    ours_label=k,
                    baseline_label="eager fp32 NCHW",
                    repeats=s.repeats,
                    notes=f"{note}; {conv_frac:.0%} of the bf16 conv limit (forward) at "
                    f"1x{args['n_feats']}x{t}x{t}; counted {fflops / 1e9:.1f} GFLOP per tile{compile_note}"
                    f"{_over(conv_frac)}",
                    extra={
                        "flops": fflops,
                        "fraction_of_peak": frac,
                        "fraction_of_conv_limit": conv_frac,
                        "seconds": sec,
                    },
                )
            )
        del calls
