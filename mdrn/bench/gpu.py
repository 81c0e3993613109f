"""Bench section ``gpu``: MDRN training steps and inference on a GPU, as a fraction of its bf16 peak.

Runs by default with ``--device cuda`` (``mdrn-bench --device cuda``); elsewhere only with ``--only gpu``
(on CPU it runs the same code without ``compile``, for tests). Training step variants: eager fp32
NCHW (the baseline; on CUDA cuDNN's default lets its convolutions use TF32), bf16-mixed (autocast) in
NHWC, and the same compiled (``module.compile()``); the
forward: eager fp32 against bf16 NHWC, compiled or not. Each row gives the counted TFLOP/s and, for a
GPU whose bf16 dense peak is known (:data:`BF16_DENSE_PEAK`), the fraction of that peak.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mdrn.bench.core import Context, alternate, build_mdrn, describe, make_row, median, seed, sync
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
        "eager fp32 NCHW": {"amp": None, "nhwc": False, "compile": False},
        "bf16-mixed NHWC": {"amp": torch.bfloat16, "nhwc": True, "compile": False},
    }
    if ctx.sizes.gpu_compile:
        out["bf16-mixed NHWC compiled"] = {"amp": torch.bfloat16, "nhwc": True, "compile": True}
    return out


def _build(ctx: Context, args: dict[str, Any], v: dict[str, Any], train: bool) -> nn.Module:
    """The network of one variant on the device: NHWC and compiled (in place) as the variant says."""
    net = build_mdrn(args).to(ctx.device).train(train)
    if v["nhwc"]:
        net = net.to(memory_format=torch.channels_last)
    if v["compile"]:
        net.compile()
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


def bench_gpu(ctx: Context) -> None:
    """Training steps and forward passes of the paper's network per variant, against eager fp32."""
    s = ctx.sizes
    name, peak = bf16_peak(ctx.device)
    args = dict(s.gpu_model)
    g = seed()
    b, p, scale = s.gpu_batch, s.gpu_patch, 2
    x = torch.rand(b, 3, p, p, generator=g).to(ctx.device)
    y = torch.rand(b, 3, p * scale, p * scale, generator=g).to(ctx.device)
    variants = _variants(ctx)
    train_flops = count_flops(build_mdrn(args), tuple(x.shape), scale).training

    def step(net: nn.Module, v: dict[str, Any]) -> Callable[[], None]:
        opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=ctx.device.type == "cuda" or None)
        xin = x.contiguous(memory_format=torch.channels_last) if v["nhwc"] else x

        def call() -> None:
            opt.zero_grad(set_to_none=True)
            with _amp(ctx, v["amp"]):
                out = net(xin, scale)
            nn.functional.l1_loss(out.float(), y).backward()
            opt.step()

        return call

    calls = {k: step(_build(ctx, args, v, True), v) for k, v in variants.items()}
    times = alternate(calls, repeats=s.repeats, warmup=s.gpu_warmup, device=ctx.device)
    facts: dict[str, Any] = {"device_name": name, "bf16_peak": peak, "train": {}, "forward": {}}
    base = median(times["eager fp32 NCHW"])
    for k in variants:
        t = median(times[k])
        note, frac = _peak_note(train_flops, t, peak)
        facts["train"][k] = {"seconds": t, "fraction_of_peak": frac}
        if k == "eager fp32 NCHW":
            continue
        ctx.add(
            make_row(
                f"MDRN {describe(args)} train step x2, batch {b}, {p}x{p} LR on {name}: {k}",
                1 / t,
                1 / base,
                "steps/s",
                ours_label=k,
                baseline_label="eager fp32 NCHW (fused Adam)",
                repeats=s.repeats,
                notes=f"{note}; {train_flops / 1e12:.3f} TFLOP per step (counted); {s.gpu_warmup} warm-ups",
                extra={
                    "flops": train_flops,
                    "fraction_of_peak": frac,
                    "seconds": t,
                    "seconds_baseline": base,
                },
            )
        )
    del calls
    t = s.gpu_tile
    xt = torch.rand(1, 3, t, t, generator=g).to(ctx.device)
    for scale in (2, 4):
        flops = count_flops(build_mdrn(args), tuple(xt.shape), scale).forward

        def forward(net: nn.Module, v: dict[str, Any], scale: int = scale) -> Callable[[], None]:
            xin = xt.contiguous(memory_format=torch.channels_last) if v["nhwc"] else xt

            def call() -> None:
                with torch.inference_mode(), _amp(ctx, v["amp"]):
                    net(xin, scale)

            return call

        calls = {k: forward(_build(ctx, args, v, False), v) for k, v in variants.items()}
        times = alternate(calls, repeats=s.repeats, warmup=s.gpu_warmup, device=ctx.device)
        base = median(times["eager fp32 NCHW"])
        for k in variants:
            sec = median(times[k])
            note, frac = _peak_note(flops, sec, peak)
            facts["forward"][f"x{scale} {k}"] = {"seconds": sec, "fraction_of_peak": frac}
            if k == "eager fp32 NCHW":
                continue
            ctx.add(
                make_row(
                    f"MDRN {describe(args)} forward x{scale}, {t}x{t} LR tile on {name}: {k}",
                    t * t / sec,
                    t * t / base,
                    "LR px/s",
                    ours_label=k,
                    baseline_label="eager fp32 NCHW",
                    repeats=s.repeats,
                    notes=f"{note}; counted {flops / 1e9:.1f} GFLOP per tile",
                    extra={"flops": flops, "fraction_of_peak": frac, "seconds": sec},
                )
            )
        del calls
    sync(ctx.device)
    ctx.facts["gpu"] = facts
