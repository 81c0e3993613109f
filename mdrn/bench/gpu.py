"""Bench section ``gpu``: MDRN training steps and inference on a GPU, as a fraction of its bf16 peak.

Runs by default with ``--device cuda`` (``mdrn-bench --device cuda``); elsewhere only with ``--only
gpu`` (on CPU it runs the same code without ``compile``, for tests). First the GPU's own limits: a large
bf16 matmul (the measured tensor-core ceiling, against the data sheet's dense peak) and the network's
64->64 3x3 convolution in bf16 NHWC at the training and tile shapes (forward + backward, forward; a
stack of them in one graph): what a network made only of such convolutions would reach. Then the
training step variants: eager fp32 NCHW (the baseline; on CUDA cuDNN's default lets its convolutions use
TF32), bf16-mixed (autocast) in NHWC, the same compiled (``module.compile()``), compiled with CUDA
graphs (``mode="reduce-overhead"``: one launch per step instead of one per kernel), and bf16 NHWC at a
larger batch (is batch 16 too small to fill the GPU?); the forward: eager fp32 against the same bf16
NHWC variants. Each row gives the counted TFLOP/s, the fraction of the bf16 dense peak (for a GPU whose
peak is known, :data:`BF16_DENSE_PEAK`) and of the convolution's limit at the same shape. A compiled
variant's first call (the compilation) is timed apart; one that fails is skipped with its error, and the
others still run.
"""

from __future__ import annotations

import contextlib
import copy
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
#: The training variant every other is compared with.
BASELINE = "eager fp32 NCHW"
#: The limits' variant compiled with CUDA graphs (a stack of convolutions: one launch per call).
GRAPHS = "bf16 CUDA graphs"


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


def _conv_call(
    ctx: Context,
    stack: nn.Module,
    x: torch.Tensor,
    amp: torch.dtype | None,
    training: bool,
    graphs: bool = False,
) -> Callable[[], None]:
    """One forward (or forward + backward) pass of a stack of convolutions: a timed call of the limits.

    ``graphs``: the stack is compiled with CUDA graphs; each call starts a new step of them."""
    x = x.clone().requires_grad_(training)
    grad: list[torch.Tensor] = []

    def call() -> None:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        if not training:
            with torch.inference_mode(), _amp(ctx, amp):
                stack(x)
            return
        stack.zero_grad(set_to_none=True)
        x.grad = None
        with _amp(ctx, amp):
            out = stack(x)
        if not grad:
            grad.append(torch.ones_like(out))
        out.backward(grad[0])

    return call


def _conv_limits(ctx: Context, name: str, peak: float | None, facts: dict[str, Any]) -> dict[str, float]:
    """The bf16 matmul ceiling and the bf16 NHWC 64->64 3x3 convolution at the training and tile shapes.

    Returns the convolution's FLOP/s: ``train`` (forward + input and weight gradients) and ``forward``."""
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
    del a, b, af, bf
    feats = int(s.gpu_model["n_feats"])
    shapes = {
        "train": (s.gpu_batch, feats, s.gpu_patch, s.gpu_patch),
        "forward": (1, feats, s.gpu_tile, s.gpu_tile),
    }
    limits = {}
    for kind, shape in shapes.items():
        stack = nn.Sequential(*(nn.Conv2d(feats, feats, 3, padding=1) for _ in range(inner))).to(ctx.device)
        fast = copy.deepcopy(stack).to(memory_format=torch.channels_last)
        x = torch.rand(shape, generator=g).to(ctx.device)
        xf = x.contiguous(memory_format=torch.channels_last)
        training = kind == "train"
        calls = {
            "bf16": _conv_call(ctx, fast, xf, torch.bfloat16, training),
            "fp32": _conv_call(ctx, stack, x, None, training),
        }
        if ctx.device.type == "cuda" and s.gpu_compile:
            graphs = copy.deepcopy(fast)
            graphs.compile(mode="reduce-overhead")
            calls[GRAPHS] = _conv_call(ctx, graphs, xf, torch.bfloat16, training, graphs=True)
            _first_calls(ctx, calls, {GRAPHS})
        t = alternate(calls, repeats=s.repeats, warmup=3, device=ctx.device)
        fl = 2 * feats * feats * 9 * shape[0] * shape[2] * shape[3] * (3 if training else 1) * inner
        rates = {k: fl / median(v) for k, v in t.items()}
        best = max((k for k in rates if k != "fp32"), key=rates.__getitem__)
        limits[kind] = rates[best]
        facts[f"conv_limit_{kind}"] = {"flops_per_s": limits[kind], "shape": list(shape), "rates": rates}
        ctx.add(
            make_row(
                f"conv {feats}->{feats} 3x3 {'forward + backward' if training else 'forward'}, "
                f"{'x'.join(map(str, shape))} on {name}",
                limits[kind] / 1e12,
                rates["fp32"] / 1e12,
                "TFLOP/s",
                ours_label="bf16-mixed NHWC" + (", compiled with CUDA graphs" if best == GRAPHS else ""),
                baseline_label="fp32 NCHW"
                + (
                    " (cuDNN may use TF32)"
                    if ctx.device.type == "cuda" and torch.backends.cudnn.allow_tf32
                    else ""
                ),
                repeats=s.repeats,
                notes=(
                    "the conv limit of the model rows below at this shape"
                    + (f"; {limits[kind] / peak:.1%} of the bf16 dense peak" if peak else "")
                    + f"; a stack of {inner} convolutions per timed call, one graph (as in the network)"
                    + (
                        f"; eager bf16 {rates['bf16'] / 1e12:.2f}, compiled with CUDA graphs "
                        f"{rates[GRAPHS] / 1e12:.2f} TFLOP/s (the faster is the limit)"
                        if GRAPHS in rates
                        else ""
                    )
                ),
                extra={"flops_per_s": limits[kind]},
            )
        )
    return limits


def _over(frac: float | None) -> str:
    """The notes' warning for a fraction of a limit above 100%: a measurement error, not a result."""
    return "; MEASUREMENT ERROR: above 100% of its limit, not a result" if frac and frac > 1.0 else ""


def bench_gpu(ctx: Context) -> None:
    """The GPU's limits, then training steps and forward passes of the paper's network per variant.

    On CUDA with ``torch.backends.cudnn.benchmark`` on (cuDNN times its algorithms per shape), as the
    GPU trainer config sets it (``conf/trainer/gpu.yaml``: ``benchmark: true``)."""
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = ctx.device.type == "cuda" or benchmark
    try:
        _bench_gpu(ctx)
    finally:
        torch.backends.cudnn.benchmark = benchmark


def _bench_gpu(ctx: Context) -> None:
    """:func:`bench_gpu` with cuDNN's benchmark mode set."""
    s = ctx.sizes
    name, peak = bf16_peak(ctx.device)
    facts: dict[str, Any] = {"device_name": name, "bf16_peak": peak, "train": {}, "forward": {}}
    limits = _conv_limits(ctx, name, peak, facts)
    args = dict(s.gpu_model)
    g = seed()
    b, p, scale = s.gpu_batch, s.gpu_patch, 2
    variants = _variants(ctx)

    def step(net: nn.Module, v: dict[str, Any], batch: int) -> Callable[[], None]:
        opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=ctx.device.type == "cuda" or None)
        x = torch.rand(batch, 3, p, p, generator=g).to(ctx.device)
        y = torch.rand(batch, 3, p * scale, p * scale, generator=g).to(ctx.device)
        xin = x.contiguous(memory_format=torch.channels_last) if v["nhwc"] else x

        def call() -> None:
            if v.get("mode") == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()  # a new training step: replay, not a new graph
            opt.zero_grad(set_to_none=True)
            with _amp(ctx, v["amp"]):
                out = net(xin, scale)
            nn.functional.l1_loss(out.float(), y).backward()
            opt.step()

        return call

    flops = {
        bb: count_flops(build_mdrn(args), (bb, 3, p, p), scale).training for bb in (b, s.gpu_large_batch)
    }
    compiled = {k for k, v in variants.items() if v["compile"]}
    calls = {k: step(_build(ctx, args, v, True), v, b) for k, v in variants.items()}
    large = f"bf16-mixed NHWC, batch {s.gpu_large_batch}"
    calls[large] = step(
        _build(ctx, args, variants["bf16-mixed NHWC"], True), variants["bf16-mixed NHWC"], s.gpu_large_batch
    )
    facts["compile_seconds_train"] = _first_calls(ctx, calls, compiled)
    times = alternate(calls, repeats=s.repeats, warmup=s.gpu_warmup, device=ctx.device)
    base = median(times[BASELINE])
    for k in calls:
        t = median(times[k])
        batch = s.gpu_large_batch if k == large else b
        note, frac = _peak_note(flops[batch], t, peak)
        conv_frac = flops[batch] / t / limits["train"] if k != large else None
        facts["train"][k] = {
            "seconds": t,
            "batch": batch,
            "large_batch": k == large,
            "flops": flops[batch],
            "fraction_of_peak": frac,
            "fraction_of_conv_limit": conv_frac,
        }
        if k == BASELINE:
            continue
        if k == large:
            ref = median(times["bf16-mixed NHWC"])
            row = make_row(
                f"MDRN {describe(args)} train step x2, {p}x{p} LR on {name}: batch {batch} vs {b}",
                batch / t,
                b / ref,
                "patches/s",
                ours_label=large,
                baseline_label=f"bf16-mixed NHWC, batch {b}",
                repeats=s.repeats,
                notes=f"{note}; does a larger batch fill the GPU better (same layout, eager)?",
                extra={"flops": flops[batch], "fraction_of_peak": frac, "seconds": t},
            )
        else:
            compile_note = (
                f"; compilation (first call) {facts['compile_seconds_train'][k]:.0f} s"
                if k in compiled
                else ""
            )
            row = make_row(
                f"MDRN {describe(args)} train step x2, batch {b}, {p}x{p} LR on {name}: {k}",
                1 / t,
                1 / base,
                "steps/s",
                ours_label=k,
                baseline_label="eager fp32 NCHW (fused Adam)",
                repeats=s.repeats,
                notes=f"{note}; {conv_frac:.0%} of the bf16 conv limit (forward + backward) at "
                f"{b}x{args['n_feats']}x{p}x{p}; {flops[b] / 1e12:.3f} TFLOP per step (counted); "
                f"{s.gpu_warmup} warm-ups{compile_note}{_over(conv_frac)}",
                extra={
                    "flops": flops[b],
                    "fraction_of_peak": frac,
                    "fraction_of_conv_limit": conv_frac,
                    "seconds": t,
                    "seconds_baseline": base,
                },
            )
        ctx.add(row)
    del calls
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
            conv_frac = fflops / sec / limits["forward"]
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
    sync(ctx.device)
    best = min((v for k, v in facts["train"].items() if v["batch"] == b), key=lambda v: v["seconds"])
    facts["paper_schedule_hours"] = PAPER_SCHEDULE["iterations"] * best["seconds"] / 3600
    ctx.facts["gpu"] = facts
