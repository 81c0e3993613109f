"""The GPU's own ceiling for the paper's network, and the CUDA-graph helpers of the GPU section.

The ceiling ("maximum achievable FLOPS" for this network's work): the best rate of the network's own
convolution, 64->64 3x3 in bf16 with NHWC tensors, forward + backward (input and weight gradients), with
cuDNN's benchmark mode on, each pass captured as one CUDA graph with ``torch.cuda.CUDAGraph`` (no launch
overhead, no compiler in between), at several batches and patch sizes; the best of them is the ceiling, the
most a network made only of these convolutions could reach on this GPU. Every rate is also measured
eagerly in the same window, so a capture that did not pay shows as graph <= eager. On a CPU (tests) the
same code runs eagerly (no graphs) and says so.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mdrn.bench.core import Context, make_row, seed, sync


def timed(fn: Callable[[], object], *, device: torch.device, calls: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn``, ``repeats`` samples of ``calls`` back-to-back calls each.

    On CUDA, CUDA events around each sample (the stream's time, launches queued ahead); elsewhere the
    wall clock."""
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3 / calls)
        else:
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            out.append((time.perf_counter() - t0) / calls)
    return out


def calls_for(fn: Callable[[], object], device: torch.device, target: float = 0.05, most: int = 50) -> int:
    """How many back-to-back calls make a timed sample of about ``target`` seconds (one call timed)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return max(1, min(most, round(target / max(time.perf_counter() - t0, 1e-6))))


def capture(fn: Callable[[], object], device: torch.device, warmup: int = 3) -> Callable[[], None]:
    """``fn`` captured as one CUDA graph (after ``warmup`` calls on a side stream): returns its replay.

    ``fn`` must read and write the same tensors on every call (static inputs, outputs, gradients) and
    must not synchronize with the host. Raises ``RuntimeError`` off CUDA."""
    if device.type != "cuda":
        raise RuntimeError(f"CUDA graphs need a CUDA device, got {device.type}")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    sync(device)

    def replay() -> None:
        graph.replay()

    replay.graph = graph  # type: ignore[attr-defined]  # kept alive with the replay
    return replay


def _stack_pass(
    feats: int, batch: int, patch: int, inner: int, device: torch.device, training: bool
) -> Callable[[], object]:
    """One pass of ``inner`` distinct 64->64 3x3 bf16 NHWC convolutions (forward, or forward + backward)."""
    g = seed()
    stack = nn.Sequential(*(nn.Conv2d(feats, feats, 3, padding=1) for _ in range(inner)))
    stack = stack.to(device=device, dtype=torch.bfloat16, memory_format=torch.channels_last)
    x = torch.rand(batch, feats, patch, patch, generator=g).to(device, torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(training)
    params = [x, *stack.parameters()]
    grad_out = torch.ones_like(stack(x)).contiguous(memory_format=torch.channels_last) if training else None

    def call() -> object:
        if not training:
            with torch.no_grad():
                return stack(x)
        return torch.autograd.grad(stack(x), params, grad_out)

    return call


def measure_ceiling(
    ctx: Context,
    shapes: Sequence[tuple[int, int]],
    *,
    feats: int,
    inner: int,
    peak: float | None,
    name: str,
    training: bool = True,
) -> dict[str, Any]:
    """The ceiling: the best rate of the convolution over ``shapes`` ((batch, LR patch) pairs); one row.

    Returns ``{"flops_per_s", "shape", "graphs", "per_shape": [{batch, patch, graph, eager}], "training"}``
    (``graph`` None where no graph was captured: off CUDA, or the capture failed, with the reason)."""
    s = ctx.sizes
    cuda = ctx.device.type == "cuda"
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    per_shape: list[dict[str, Any]] = []
    try:
        for batch, patch in shapes:
            call = _stack_pass(feats, batch, patch, inner, ctx.device, training)
            flops = 2 * feats * feats * 9 * batch * patch * patch * (3 if training else 1) * inner
            entry: dict[str, Any] = {"batch": batch, "patch": patch, "flops": flops, "graph": None}
            variants = {"eager": call}
            if cuda:
                try:
                    variants["graph"] = capture(call, ctx.device)
                except RuntimeError as err:
                    entry["graph_error"] = str(err).splitlines()[0][:200]
            else:
                entry["graph_error"] = "no CUDA device: measured eagerly"
            for k, fn in variants.items():
                fn()
                n = calls_for(fn, ctx.device)
                t = timed(fn, device=ctx.device, calls=n, repeats=s.repeats)
                entry[k] = flops / min(t)  # the best sample: the most the GPU achieved
                entry[f"{k}_median"] = flops / statistics.median(t)
            per_shape.append(entry)
            del variants, call
            if cuda:
                torch.cuda.empty_cache()
    finally:
        torch.backends.cudnn.benchmark = benchmark
    best = max(per_shape, key=lambda e: max(e["eager"], e["graph"] or 0.0))
    rate = max(best["eager"], best["graph"] or 0.0)
    graphs = best["graph"] is not None and best["graph"] >= best["eager"]
    what = "forward + backward" if training else "forward"
    rates = "; ".join(
        f"{e['batch']}x{e['patch']}^2 "
        + (f"graph {e['graph'] / 1e12:.1f}, " if e["graph"] else "")
        + f"eager {e['eager'] / 1e12:.1f}"
        for e in per_shape
    )
    ctx.add(
        make_row(
            f"ceiling: conv {feats}->{feats} 3x3 bf16 NHWC {what}, best of {len(per_shape)} shapes on {name}",
            rate / 1e12,
            peak / 1e12 if peak else None,
            "TFLOP/s",
            ours_label=f"{best['batch']}x{best['patch']}^2"
            + (", one CUDA graph per pass" if graphs else ", eager"),
            baseline_label="the data sheet's bf16 dense peak" if peak else "-",
            repeats=s.repeats,
            notes=f"cuDNN benchmark on; a pass = {inner} distinct convolutions; best sample per shape "
            f"(TFLOP/s): {rates}" + ("" if cuda else "; no CUDA device: eager only, not a GPU ceiling"),
            extra={"flops_per_s": rate, "per_shape": per_shape},
        )
    )
    return {
        "flops_per_s": rate,
        "shape": [best["batch"], best["patch"]],
        "graphs": graphs,
        "training": training,
        "inner": inner,
        "per_shape": per_shape,
    }


def shape_rate(ceiling: dict[str, Any], batch: int, patch: int) -> float | None:
    """The convolution's best rate measured at (``batch``, ``patch``), or None if not measured."""
    for e in ceiling.get("per_shape", []):
        if e["batch"] == batch and e["patch"] == patch:
            return max(e["eager"], e["graph"] or 0.0)
    return None
