"""Bench, GPU section: the paper's training step at several pixel budgets, per way of running it.

For each budget (batch x LR patch: 16x48^2 is the paper's, up to 64x96^2), MDRN B=80 F=64 x2 with L1 and
Adam, each variant timed on its own after warm-up (CUDA events; the best and the median sample):

- eager fp32 NCHW (the baseline every ratio divides by; cuDNN may use TF32, PyTorch's default);
- bf16-mixed NHWC eager (autocast, as Lightning's ``bf16-mixed``);
- the same with the whole step (forward, backward, Adam) captured as one CUDA graph, with cuDNN's
  benchmark mode on and, alternating with it in the same process, off (the A/B);
- the presets of ``mdrn.train`` (:data:`mdrn.perf.TRAIN_PRESETS`): the residual body compiled by inductor
  (``compiled``), and compiled and run as CUDA graphs (``cudagraphs``, what ``train_preset=auto`` runs on
  one GPU); compiled once with dynamic shapes for every budget (a training run compiles one static shape);
- the compiled body with the whole step captured as one CUDA graph by hand (what the preset leaves:
  the eager head, pre-processing, upsampler, loss and optimizer launches, and Lightning's own loop).

Each is reported as steps/s, TFLOP/s (counted), and as fractions of the data sheet's bf16 peak, of the
ceiling (:mod:`mdrn.bench.gpu_ceiling`) and of the convolution's own rate at the same shape. A compiled
variant that would run past the section's time budget, or fails, is skipped with its reason. One step of
the eager and the compiled variant is profiled: the kernels per step by kind show whether the compiler
fused each residual block's elementwise work (ReLU, residual add, bias, their gradients) into a few
Triton kernels.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mdrn.bench.core import Context, build_mdrn, describe, make_row, seed, sync
from mdrn.bench.gpu_ceiling import calls_for, capture, shape_rate, timed
from mdrn.perf import TRAIN_PRESETS, apply_train_preset, count_flops, cudagraph_skips, start_train_step

BASELINE = "eager fp32 NCHW"
EAGER = "bf16-mixed NHWC eager"
EAGER_GRAPH = "bf16-mixed NHWC eager, whole step as one CUDA graph"
NO_BENCHMARK = EAGER_GRAPH + ", cuDNN benchmark off"
COMPILED = "bf16-mixed NHWC, body compiled (preset compiled)"
PRESET = "bf16-mixed NHWC, body compiled, CUDA graphs (preset cudagraphs: mdrn.train on one GPU)"
COMPILED_GRAPH = "bf16-mixed NHWC, body compiled, whole step as one CUDA graph"
#: the variant of each preset, and the preset a compiled variant's network is built with
PRESET_OF = {COMPILED: "compiled", COMPILED_GRAPH: "compiled", PRESET: "cudagraphs"}
SCALE = 2
#: words in the names of cuDNN's and CUTLASS's convolution and matmul kernels
CONV_KERNEL_WORDS = ("conv", "cudnn", "xmma", "implicit", "dgrad", "wgrad", "fprop", "cutlass", "gemm")


def _step(
    ctx: Context,
    net: nn.Module,
    batch: int,
    patch: int,
    *,
    bf16: bool,
    nhwc: bool,
    graph: bool,
    preset: str | None = None,
) -> Callable[[], None]:
    """One training step (x2, L1, Adam) on static random data; ``graph``: Adam capturable."""
    g = seed()
    cuda = ctx.device.type == "cuda"
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True if cuda else None, capturable=graph and cuda)
    x = torch.rand(batch, 3, patch, patch, generator=g).to(ctx.device)
    y = torch.rand(batch, 3, patch * SCALE, patch * SCALE, generator=g).to(ctx.device)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    p = TRAIN_PRESETS[preset] if preset else None

    def call() -> None:
        start_train_step(p)
        opt.zero_grad(set_to_none=True)
        # no autocast weight cache: each weight is cast once per step anyway, and a cast cached during a
        # CUDA graph capture would live in the graph's pool (PyTorch's advice for AMP with graphs)
        amp = (
            torch.autocast(ctx.device.type, dtype=torch.bfloat16, cache_enabled=False)
            if bf16
            else contextlib.nullcontext()
        )
        with amp:
            out = net(x, SCALE)
        nn.functional.l1_loss(out.float(), y).backward()
        opt.step()

    return call


def _net(ctx: Context, args: dict[str, Any], nhwc: bool) -> nn.Module:
    """The paper's network (fixed random weights) on the device, NHWC if asked, in training mode."""
    net = build_mdrn(args).to(ctx.device).train()
    return net.to(memory_format=torch.channels_last) if nhwc else net


def _free(device: torch.device) -> None:
    """Release what the last variant left (graphs, activations) before the next one is built."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def kernel_kind(name: str) -> str:
    """The kind of a GPU kernel, from its name: convolution, triton (compiler-fused), elementwise, ..."""
    n = name.lower()
    if n.startswith("triton"):
        return "triton (fused by the compiler)"
    if any(k in n for k in CONV_KERNEL_WORDS):
        return "convolution / matmul"
    if any(k in n for k in ("adam", "multi_tensor")):
        return "optimizer"
    if any(k in n for k in ("memcpy", "memset", "copy", "nchwtonhwc", "nhwctonchw", "transpose")):
        return "copies, layout"
    if any(k in n for k in ("reduce", "elementwise", "vectorized", "unrolled", "kernel")):
        return "elementwise / reduction (one op each)"
    return "other"


def _profile(ctx: Context, call: Callable[[], None]) -> dict[str, Any]:
    """The GPU kernels of one step of ``call`` (after warm-up): count per kind, the Triton kernels' names."""
    from torch.profiler import ProfilerActivity, profile

    call()
    sync(ctx.device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        sync(ctx.device)
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    kinds = Counter(kernel_kind(n) for n in names)
    triton = Counter(n for n in names if n.lower().startswith("triton"))
    return {"kernels": len(names), "by_kind": dict(kinds), "triton": dict(triton.most_common(12))}


class _Clock:
    """The section's time budget: compiled variants are skipped once they could run past it."""

    def __init__(self, seconds: float, reserve: float) -> None:
        self.seconds = seconds
        self.end = time.perf_counter() + seconds
        self.reserve = reserve

    def allows(self, compile_needed: bool) -> bool:
        """Whether a variant may start: one that compiles first needs ``reserve`` seconds of the budget
        left; the others (seconds each) may start until ``reserve`` seconds past it."""
        now = time.perf_counter()
        return now + self.reserve < self.end if compile_needed else now < self.end + self.reserve


class _Steps:
    """The measurements of one section run: the time budget, the compiled networks, the facts."""

    def __init__(self, ctx: Context, ceiling: dict[str, Any], peak: float | None, name: str) -> None:
        self.ctx, self.ceiling, self.peak, self.name = ctx, ceiling, peak, name
        self.args = dict(ctx.sizes.gpu_model)
        self.clock = _Clock(ctx.sizes.gpu_budget_s, ctx.sizes.gpu_compile_reserve_s)
        self.compiled: dict[str, nn.Module] = {}  # preset name -> its compiled network (built once)
        self.facts: dict[str, Any] = {
            "budgets": [],
            "cudnn_benchmark_ab": [],
            "compile_seconds": {},
            "train": {},
        }

    def late(self, label: str, key: str) -> None:
        """Record a variant skipped for the section's time budget."""
        self.ctx.skip(
            f"{label}: {key}", f"not run: past the section's time budget ({self.clock.seconds:.0f} s)"
        )

    def run(
        self, label: str, seconds: dict[str, list[float]], key: str, make: Callable[[], Callable[[], None]]
    ) -> None:
        """Build, warm up and time one variant; a failure or the time budget skips it with the reason."""
        s, ctx = self.ctx.sizes, self.ctx
        preset = PRESET_OF.get(key)
        if not self.clock.allows(preset is not None and preset not in self.compiled):
            self.late(label, key)
            return
        try:
            call = make()
            for _ in range(s.gpu_warmup):
                call()
            n = calls_for(call, ctx.device)
            seconds[key] = timed(call, device=ctx.device, calls=n, repeats=s.repeats)
            del call
        except Exception as err:  # noqa: BLE001 - a failed variant is reported, the others run
            ctx.skip(f"{label}: {key}", f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
        _free(ctx.device)

    def step(self, batch: int, patch: int, variant: str) -> Callable[[], None]:
        """The step of ``variant`` at (``batch``, ``patch``): its network built (or compiled) now."""
        ctx, args = self.ctx, self.args
        if variant == BASELINE:
            return _step(ctx, _net(ctx, args, False), batch, patch, bf16=False, nhwc=False, graph=False)
        if variant == EAGER:
            return _step(ctx, _net(ctx, args, True), batch, patch, bf16=True, nhwc=True, graph=False)
        preset = PRESET_OF[variant]
        net = self.compiled_net(preset, batch, patch)
        if variant == COMPILED_GRAPH:
            return capture(_step(ctx, net, batch, patch, bf16=True, nhwc=True, graph=True), ctx.device)
        return _step(ctx, net, batch, patch, bf16=True, nhwc=True, graph=False, preset=preset)

    def compiled_net(self, preset: str, batch: int, patch: int) -> nn.Module:
        """The network compiled by ``preset`` (dynamic shapes: one compilation serves every budget)."""
        if preset not in self.compiled:
            ctx = self.ctx
            net = _net(ctx, self.args, nhwc=True)
            apply_train_preset(net, TRAIN_PRESETS[preset], ctx.device, dynamic=True)
            t0 = time.perf_counter()
            first = _step(ctx, net, batch, patch, bf16=True, nhwc=True, graph=False, preset=preset)
            first()
            first()  # CUDA graphs: the first call warms up, the second records
            sync(ctx.device)
            self.facts["compile_seconds"][preset] = time.perf_counter() - t0
            self.compiled[preset] = net
        return self.compiled[preset]

    def budget(self, batch: int, patch: int) -> None:
        """Every variant at one budget, its rows, and (at the paper's budget) the profile."""
        ctx, s = self.ctx, self.ctx.sizes
        cuda = ctx.device.type == "cuda"
        flops = count_flops(build_mdrn(self.args), (batch, 3, patch, patch), SCALE).training
        label = f"MDRN {describe(self.args)} train step x2, batch {batch}, {patch}x{patch} LR on {self.name}"
        seconds: dict[str, list[float]] = {}
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = cuda
        try:
            for key in (BASELINE, EAGER):
                self.run(label, seconds, key, lambda key=key: self.step(batch, patch, key))
            if cuda:
                _ab(ctx, self.args, batch, patch, seconds, self.facts, label, self)
            else:
                for key in (EAGER_GRAPH, NO_BENCHMARK, COMPILED_GRAPH):
                    ctx.skip(f"{label}: {key}", "CUDA graphs need a CUDA device")
            keys = (COMPILED, PRESET, COMPILED_GRAPH) if cuda else (COMPILED,)
            for key in keys if s.gpu_compile else ():
                self.run(label, seconds, key, lambda key=key: self.step(batch, patch, key))
        finally:
            torch.backends.cudnn.benchmark = benchmark
        facts = self.facts
        facts["budgets"].append(_budget_rows(ctx, self, label, batch, patch, flops, seconds))
        if (batch, patch) != (s.gpu_batch, s.gpu_patch):
            return
        facts["train"] = {
            k: {
                "seconds": min(v),
                "batch": batch,
                "large_batch": False,
                "flops": flops,
                "fraction_of_peak": flops / min(v) / self.peak if self.peak else None,
                "fraction_of_conv_limit": flops / min(v) / self.ceiling["flops_per_s"],
            }
            for k, v in seconds.items()
        }
        if cuda and s.gpu_profile:
            facts["fusion"] = _fusion(ctx, self.args, batch, patch, self.compiled.get("compiled"))


def bench_steps(ctx: Context, ceiling: dict[str, Any], peak: float | None, name: str) -> dict[str, Any]:
    """Rows and facts of the training step per budget and variant; see the module docstring."""
    cuda = ctx.device.type == "cuda"
    skips = cudagraph_skips() if cuda else 0
    steps = _Steps(ctx, ceiling, peak, name)
    # the paper's budget first (the compilations happen there), then the largest (the second goal), ...
    paper = (ctx.sizes.gpu_batch, ctx.sizes.gpu_patch)
    rest = sorted((b for b in ctx.sizes.gpu_budgets if b != paper), key=lambda b: -b[0] * b[1] ** 2)
    for batch, patch in [paper, *rest] if paper in ctx.sizes.gpu_budgets else rest:
        steps.budget(batch, patch)
    steps.facts["budgets"].sort(key=lambda b: b["lr_pixels"])
    steps.compiled.clear()
    _free(ctx.device)
    facts = steps.facts
    facts["cudagraph_skips"] = cudagraph_skips() - skips if cuda else None
    facts["preset"] = {"name": "cudagraphs", "variant": PRESET}
    return facts


def _ab(
    ctx: Context,
    args: dict[str, Any],
    batch: int,
    patch: int,
    seconds: dict[str, list[float]],
    facts: dict[str, Any],
    label: str,
    steps: _Steps,
) -> None:
    """The eager step as one CUDA graph, captured with cuDNN's benchmark mode on and off, alternating."""
    s = ctx.sizes
    if not steps.clock.allows(False):
        for key in (EAGER_GRAPH, NO_BENCHMARK):
            steps.late(label, key)
        return
    calls: dict[str, Callable[[], None]] = {}
    try:
        for key, mode in ((EAGER_GRAPH, True), (NO_BENCHMARK, False)):
            torch.backends.cudnn.benchmark = mode
            step = _step(ctx, _net(ctx, args, True), batch, patch, bf16=True, nhwc=True, graph=True)
            calls[key] = capture(step, ctx.device)
        torch.backends.cudnn.benchmark = True
        n = calls_for(calls[EAGER_GRAPH], ctx.device)
        out: dict[str, list[float]] = {k: [] for k in calls}
        for r in range(s.repeats):
            for k in list(calls) if r % 2 == 0 else list(calls)[::-1]:
                out[k] += timed(calls[k], device=ctx.device, calls=n, repeats=1)
        seconds.update(out)
        facts["cudnn_benchmark_ab"].append(
            {"batch": batch, "patch": patch, "on": min(out[EAGER_GRAPH]), "off": min(out[NO_BENCHMARK])}
        )
    except Exception as err:  # noqa: BLE001 - reported; the other variants run
        for key in (EAGER_GRAPH, NO_BENCHMARK):
            if key not in seconds:
                ctx.skip(f"{label}: {key}", f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    finally:
        calls.clear()
        torch.backends.cudnn.benchmark = True
        _free(ctx.device)


def _budget_rows(
    ctx: Context,
    steps: _Steps,
    label: str,
    batch: int,
    patch: int,
    flops: int,
    seconds: dict[str, list[float]],
) -> dict[str, Any]:
    """One row per variant measured at this budget (baseline: eager fp32 NCHW); the budget's facts."""
    ceiling, peak, facts = steps.ceiling, steps.peak, steps.facts
    conv = shape_rate(ceiling, batch, patch)
    variants: dict[str, dict[str, Any]] = {}
    for k, v in seconds.items():
        best, med = min(v), sorted(v)[len(v) // 2]
        rate = flops / best
        variants[k] = {
            "seconds": best,
            "seconds_median": med,
            "steps_per_s": 1 / best,
            "flops_per_s": rate,
            "fraction_of_peak": rate / peak if peak else None,
            "fraction_of_ceiling": rate / ceiling["flops_per_s"],
            "fraction_of_shape_conv": rate / conv if conv else None,
        }
    base = variants.get(BASELINE)
    for k, v in variants.items():
        if k == BASELINE:
            continue
        frac = [f"{v['flops_per_s'] / 1e12:.1f} TFLOP/s"]
        if v["fraction_of_peak"] is not None:
            frac.append(f"{v['fraction_of_peak']:.1%} of the bf16 dense peak")
        frac.append(f"{v['fraction_of_ceiling']:.0%} of the measured ceiling")
        if v["fraction_of_shape_conv"] is not None:
            frac.append(f"{v['fraction_of_shape_conv']:.0%} of the convolution's rate at this shape")
        comp = PRESET_OF.get(k)
        compile_note = (
            f"; compilation and first steps {facts['compile_seconds'][comp]:.0f} s (dynamic shapes)"
            if comp and comp in facts["compile_seconds"] and k != COMPILED_GRAPH
            else ""
        )
        ctx.add(
            make_row(
                f"{label}: {k}",
                v["steps_per_s"],
                base["steps_per_s"] if base else None,
                "steps/s",
                ours_label=k,
                baseline_label=BASELINE + " (fused Adam)",
                repeats=ctx.sizes.repeats,
                notes=", ".join(frac)
                + f"; {v['seconds'] * 1e3:.1f} ms best, {v['seconds_median'] * 1e3:.1f} ms median step; "
                f"{flops / 1e12:.3f} TFLOP per step (counted); {batch * patch * patch:,} LR pixels"
                + compile_note,
                extra={"flops": flops, **v},
            )
        )
    best = max(variants, key=lambda k: variants[k]["flops_per_s"]) if variants else None
    return {"batch": batch, "patch": patch, "lr_pixels": batch * patch * patch, "flops": flops,
            "variants": variants, "best": best}  # fmt: skip


def _fusion(
    ctx: Context, args: dict[str, Any], batch: int, patch: int, net: nn.Module | None
) -> dict[str, Any]:
    """Kernels of one step, eager against the compiled body (the profile that shows the fusion)."""
    out: dict[str, Any] = {"blocks": int(args["n_resblocks"])}
    try:
        out["eager"] = _profile(ctx, _step(ctx, _net(ctx, args, True), batch, patch, bf16=True, nhwc=True,
                                           graph=False))  # fmt: skip
        if net is not None:
            out["compiled"] = _profile(ctx, _step(ctx, net, batch, patch, bf16=True, nhwc=True, graph=False,
                                                  preset="compiled"))  # fmt: skip
    except Exception as err:  # noqa: BLE001 - the profile is a reading, not a result
        out["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    finally:
        _free(ctx.device)
    return out
