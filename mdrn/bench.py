"""The benchmark: every hot path of mdrn against the naive way and against the machine's limits, in one run.

``python -m mdrn.bench`` (or ``mdrn-bench``, ``make bench``) prints one table and writes it to
``experiments/results/bench/<machine>-<date>.md`` and ``.json`` (rows ``{"name", "ours", "baseline",
"unit", "ratio"}`` plus the machine), and regenerates ``experiments/results/bench/README.md`` (the
projection of the paper's training schedule onto H100s) from the measured JSON.

Method: in every row ours and the baseline run in the same process (the tiled-inference rows: in two
worker processes, one per variant, so that each has its own peak RSS), alternating A B B A ..., after
warm-up; a row reports the median of its repeats and ``ratio = ours / baseline`` of the reported figures
(``better`` says whether higher or lower is better). ``--quick`` runs everything on tiny sizes in
seconds (for tests); its figures say nothing about speed. FLOPs are counted from the layer shapes
(:func:`mdrn.perf.count_flops`), never estimated from the time.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import importlib.util
import json
import math
import multiprocessing as mp
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mdrn.perf import (
    FastPath,
    available_cores,
    configure_threads,
    count_flops,
    fast_path,
    inference_context,
    prepare_for_inference,
    prepare_for_training,
    resolve_device,
)

__all__ = [
    "PAPER_MODEL",
    "PAPER_SCHEDULE",
    "Row",
    "Sizes",
    "alternate",
    "machine_info",
    "main",
    "make_row",
    "projection_markdown",
    "run_bench",
]

ROOT = Path(__file__).resolve().parents[1]
#: Where the recorded runs live (in a source checkout).
RESULTS = ROOT / "experiments" / "results" / "bench"
#: The ../shared reference data (Set5), as tests/conftest.py finds it.
SHARED = Path(os.environ.get("MDRN_SHARED", ROOT.parent / "shared"))

#: The paper's network (MDSR layout, 80 blocks, 64 filters, x2/x3/x4).
PAPER_MODEL: dict[str, Any] = {"n_resblocks": 80, "n_feats": 64, "scales": (2, 3, 4)}
#: The training schedule projected onto H100s: EDSR-PyTorch's MDSR recipe that the paper follows
#: (batch 16 of 48x48 LR patches, one scale drawn per batch, Adam, lr halved every 2e5 iterations;
#: 650 epochs of 1,000 iterations).
PAPER_SCHEDULE: dict[str, Any] = {"iterations": 650_000, "batch": 16, "patch": 48, "scales": (2, 3, 4)}
#: H100 SXM dense bf16 tensor-core peak (FLOP/s).
H100_BF16_DENSE = 790e12
#: Utilisation the issue assumes for a tuned GPU run (fraction of the bf16 peak).
GPU_ASSUMED_FRACTION = 0.40


@dataclass
class Sizes:
    """Problem sizes and repeat counts of one bench run."""

    repeats: int = 5
    warmup: int = 1
    # machine limits
    matmul_n: int = 2048
    memcpy_mb: int = 256
    # MDRN forward on LR tiles
    fwd_model: dict[str, Any] = field(default_factory=lambda: dict(PAPER_MODEL))
    fwd_tile: int = 64
    fwd_scales: tuple[int, ...] = (2, 3, 4)
    # training steps (x2, L1, Adam)
    train_blocks: tuple[int, ...] = (16, 80)
    train_feats: int = 64
    train_batch: int = 16
    train_patch: int = 48
    #: repeats of the most expensive training row (B=80: ~22 s per step on 2 cores)
    train_big_repeats: int = 3
    # data pipeline
    pipe_images: int = 4
    pipe_hw: tuple[int, int] = (1356, 2040)
    pipe_patch: int = 48
    pipe_scale: int = 2
    pipe_decode_patches: int = 8
    pipe_cache_patches: int = 2000
    # tiled inference x4 (worker processes)
    tile_lr: int = 1024
    #: a light MDRN: the B=80 F=64 network needs minutes per 1024x1024 image here (see the row's notes)
    tile_model: dict[str, Any] = field(
        default_factory=lambda: {"n_resblocks": 4, "n_feats": 8, "scales": (4,)}
    )
    tile_repeats: int = 5
    #: untimed runs per variant first (0: every run takes seconds and allocates afresh; the median of 5
    #: absorbs a slower first run)
    tile_warmup: int = 0
    # metrics
    metrics_scale: int = 4
    metrics_max_side: int | None = None
    #: intra-op threads (None: the fast path's, one per available core)
    threads: int | None = None

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes: every row runs in seconds (for tests; the figures say nothing about speed)."""
        tiny = {"n_resblocks": 2, "n_feats": 16, "scales": (2, 3, 4)}
        return cls(
            matmul_n=128,
            memcpy_mb=4,
            fwd_model=tiny,
            fwd_tile=16,
            train_blocks=(1, 2),
            train_feats=16,
            train_batch=2,
            train_patch=16,
            train_big_repeats=5,
            pipe_images=2,
            pipe_hw=(96, 128),
            pipe_patch=16,
            pipe_decode_patches=4,
            pipe_cache_patches=50,
            tile_lr=48,
            tile_model={"n_resblocks": 1, "n_feats": 8, "scales": (4,)},
            metrics_max_side=64,
            threads=1,
        )


@dataclass
class Row:
    """One measured comparison: ours and the baseline in the same unit, and ``ratio = ours / baseline``."""

    name: str
    ours: float
    baseline: float | None
    unit: str
    ratio: float | None
    #: "higher" or "lower": which direction of ``ours`` (and the ratio) is better
    better: str
    ours_label: str
    baseline_label: str
    repeats: int
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def make_row(
    name: str,
    ours: float,
    baseline: float | None,
    unit: str,
    *,
    better: str = "higher",
    ours_label: str,
    baseline_label: str,
    repeats: int,
    notes: str = "",
    extra: dict[str, Any] | None = None,
) -> Row:
    """Build a row; the ratio is always ``ours / baseline`` of the figures reported in it."""
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    ratio = None if baseline in (None, 0) else ours / baseline
    return Row(
        name,
        float(ours),
        None if baseline is None else float(baseline),
        unit,
        ratio,
        better,
        ours_label,
        baseline_label,
        int(repeats),
        notes,
        dict(extra or {}),
    )


# --------------------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA) so that wall-clock times are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(
    variants: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int,
    device: torch.device | None = None,
) -> dict[str, list[float]]:
    """Time each variant ``repeats`` times after ``warmup`` untimed calls, alternating A B, B A, ...

    Returns the wall-clock seconds of every timed call, per variant.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    device = device or torch.device("cpu")
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
            _sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            _sync(device)
            t0 = time.perf_counter()
            variants[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def _median(values: list[float]) -> float:
    """Median of the timed repeats."""
    return float(statistics.median(values))


def _limit_facts(go: float, gb: float, flops: float, limit: float | None) -> dict[str, Any]:
    """Achieved GFLOP/s of ours and the baseline, the counted FLOPs, and their fractions of the conv limit."""
    return {
        "gflops_ours": go,
        "gflops_baseline": gb,
        "flops": flops,
        "conv_limit": limit,
        "fraction_ours": go / limit if limit else None,
        "fraction_baseline": gb / limit if limit else None,
    }


def rate_row(
    name: str,
    work: float,
    times: dict[str, list[float]],
    unit: str,
    *,
    keys: tuple[str, str] = ("ours", "base"),
    per: float = 1.0,
    **labels: Any,
) -> Row:
    """A row of rates, ``work / median seconds / per``, for ours (keys[0]) and the baseline (keys[1])."""
    ours, base = (work / _median(times[key]) / per for key in keys)
    return make_row(name, ours, base, unit, **labels)


# ------------------------------------------------------------------------------------------- context


@dataclass
class Context:
    """What one run shares between its sections: sizes, device, fast path, limits found, facts, log."""

    sizes: Sizes
    device: torch.device
    path: FastPath
    quick: bool
    rows: list[Row] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def add(self, row: Row) -> None:
        """Record a row and print it as it comes."""
        self.rows.append(row)
        ratio = "-" if row.ratio is None else f"{row.ratio:.3g}"
        self.log(f"  {row.name}: ours {_fmt(row.ours)} vs {_fmt(row.baseline)} {row.unit} (ratio {ratio})")

    def skip(self, name: str, reason: str) -> None:
        """Record a row that could not run, with the reason."""
        self.skipped.append({"name": name, "reason": reason})
        self.log(f"  {name}: skipped ({reason})")


def _fmt(value: float | None) -> str:
    """Four significant digits, thousands separated; '-' for None."""
    if value is None:
        return "-"
    if value == 0 or not math.isfinite(value):
        return str(value)
    digits = max(0, 3 - int(math.floor(math.log10(abs(value)))))
    return f"{value:,.{digits}f}"


def _seed(seed: int = 0) -> torch.Generator:
    """Seed torch and return a CPU generator for the inputs."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _mdrn(args: dict[str, Any]) -> nn.Module:
    """Build an MDRN with fixed random weights."""
    from mdrn.models import MDRN

    torch.manual_seed(0)
    return MDRN(**args)


def _describe(args: dict[str, Any]) -> str:
    """'B=80 F=64' for MDRN arguments."""
    return f"B={args['n_resblocks']} F={args['n_feats']}"


# ------------------------------------------------------------------------------------ machine limits


def _conv_gflops(ctx: Context, shape: tuple[int, int, int, int]) -> Row:
    """64->64 3x3 convolution at ``shape``: fast path (NHWC) against NCHW, GFLOP/s."""
    n, c, h, w = shape
    conv = nn.Conv2d(c, c, 3, padding=1).to(ctx.device)
    fast = copy.deepcopy(conv)
    if ctx.path.channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    x = torch.rand(shape, generator=_seed(), device="cpu").to(ctx.device)
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
    g_o, g_b = flops / _median(t["ours"]) / 1e9, flops / _median(t["base"]) / 1e9
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
    g = _seed()
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


# -------------------------------------------------------------------------------------- MDRN forward


def _inplace_variant(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with in-place ReLUs and in-place residual adds (``body(x).add_(x)``).

    A local variant for measuring what the change would bring in :mod:`mdrn.models`; not used elsewhere.
    """
    from mdrn.models.blocks import ResBlock

    def forward(self: ResBlock, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        return res.add_(x) if self.res_scale == 1.0 else res.mul_(self.res_scale).add_(x)

    out = copy.deepcopy(net)
    for m in out.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
        if isinstance(m, ResBlock):
            m.forward = types.MethodType(forward, m)
    return out


def bench_forward(ctx: Context) -> None:
    """MDRN forward on LR tiles at each scale: fast path against eager NCHW fp32 (LR px/s, GFLOP/s)."""
    s = ctx.sizes
    args = dict(s.fwd_model)
    eager = _mdrn(args).to(ctx.device).eval()
    ours_net = prepare_for_inference(copy.deepcopy(eager), path=ctx.path)
    t = s.fwd_tile
    x = torch.rand(1, 3, t, t, generator=_seed()).to(ctx.device)
    limit = ctx.facts.get("conv_limit_tile", {}).get("gflops")
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

        times = alternate({"ours": ours, "base": base}, repeats=s.repeats, warmup=s.warmup, device=ctx.device)
        to, tb = _median(times["ours"]), _median(times["base"])
        flops = count_flops(eager, (1, 3, t, t), scale).forward
        go, gb = flops / to / 1e9, flops / tb / 1e9
        notes = f"ours {go:.1f} GFLOP/s, eager {gb:.1f} GFLOP/s (counted)"
        if limit:
            notes += f"; {go / limit:.0%} / {gb / limit:.0%} of the conv limit ({limit:.1f})"
        notes += f"; max |ours - eager| {diff:.1e}"
        ctx.add(
            make_row(
                f"MDRN {_describe(args)} forward x{scale}, {t}x{t} LR tile",
                t * t / to,
                t * t / tb,
                "LR px/s",
                ours_label=_path_label(ctx.path, training=False),
                baseline_label="eager NCHW fp32 (no_grad)",
                repeats=s.repeats,
                notes=notes,
                extra={**_limit_facts(go, gb, flops, limit), "max_abs_diff": diff},
            )
        )

    # the in-place variant (for the models' owner): same fast path, model blocks vs in-place blocks
    scale = s.fwd_scales[0]
    variant = prepare_for_inference(_inplace_variant(eager), path=ctx.path)
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
            f"MDRN {_describe(args)} forward x{scale}: in-place ReLU + residual add",
            t * t,
            times,
            "LR px/s",
            keys=("v", "m"),
            ours_label="local variant (in-place)",
            baseline_label="mdrn.models blocks",
            repeats=s.repeats,
            notes=f"both on the fast path; max |diff| {diff:.1e}",
            extra={"max_abs_diff": diff},
        )
    )


def bench_compile(ctx: Context) -> None:
    """``module.compile()`` (inductor) against the eager fast path on CPU: compile time and steady speed.

    Not in the default run (compiling costs tens of seconds to minutes); ``--only compile`` or ``--all``.
    """
    s = ctx.sizes
    args = {**s.fwd_model, "n_resblocks": min(4, int(s.fwd_model["n_resblocks"])), "scales": (2,)}
    eager = prepare_for_inference(_mdrn(args), path=replace(ctx.path, compile=False))
    compiled = copy.deepcopy(eager)
    compiled.compile()
    t = s.fwd_tile
    x = torch.rand(1, 3, t, t, generator=_seed()).to(ctx.device)
    with inference_context(path=ctx.path):
        t0 = time.perf_counter()
        out = compiled(x, 2)
        _sync(ctx.device)
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
    tc, te = _median(times["c"]), _median(times["e"])
    gain = te - tc
    breakeven = f"{compile_s / gain:,.0f} tiles" if gain > 0 else "never (not faster)"
    ctx.add(
        make_row(
            f"MDRN {_describe(args)} forward x2, {t}x{t} LR tile: module.compile()",
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


def _path_label(path: FastPath, training: bool) -> str:
    """Human description of a fast path."""
    parts = ["NHWC" if (path.train_channels_last if training else path.channels_last) else "NCHW"]
    if path.autocast_dtype is not None:
        parts.append(str(path.autocast_dtype).replace("torch.", ""))
    else:
        parts.append("fp32")
    if path.compile:
        parts.append("compiled")
    parts.append("fused Adam" if training else "inference_mode")
    return " ".join(parts)


# ------------------------------------------------------------------------------------- training step


def _adam(params: Iterator[nn.Parameter], fused: bool) -> torch.optim.Optimizer:
    """Adam as the paper trains (lr 1e-4, betas 0.9/0.999), fused (one kernel) or the default loop."""
    kwargs: dict[str, Any] = {"lr": 1e-4, "betas": (0.9, 0.999)}
    if fused:
        kwargs["fused"] = True
    return torch.optim.Adam(params, **kwargs)


def bench_adam(ctx: Context) -> None:
    """One Adam step over the paper model's parameters: fused kernel against the default per-tensor loop."""
    params = [p.detach().clone().requires_grad_(True) for p in _mdrn(dict(PAPER_MODEL)).parameters()]
    if ctx.quick:
        params = params[:20]
    g = _seed()
    pairs = []
    for fused in (True, False):
        ps = [p.detach().clone().to(ctx.device).requires_grad_(True) for p in params]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).to(ctx.device)
        pairs.append(_adam(iter(ps), fused))
    n = sum(p.numel() for p in params)
    t = alternate(
        {"f": pairs[0].step, "l": pairs[1].step},
        repeats=max(ctx.sizes.repeats, 5),
        warmup=1,
        device=ctx.device,
    )
    ctx.add(
        rate_row(
            f"Adam step, {n / 1e6:.2f}M parameters",
            1,
            t,
            "steps/s",
            keys=("f", "l"),
            ours_label="Adam(fused=True)",
            baseline_label="Adam() default (per-tensor loop)",
            repeats=max(ctx.sizes.repeats, 5),
        )
    )


def bench_training(ctx: Context) -> None:
    """One training step (forward, L1, backward, Adam) of MDRN at x2: fast path against eager NCHW."""
    s = ctx.sizes
    scale = 2
    g = _seed()
    x = torch.rand(s.train_batch, 3, s.train_patch, s.train_patch, generator=g).to(ctx.device)
    y = torch.rand(s.train_batch, 3, s.train_patch * scale, s.train_patch * scale, generator=g).to(ctx.device)
    limit = ctx.facts.get("conv_limit_train", {}).get("gflops")
    for i, blocks in enumerate(s.train_blocks):
        args = {"n_resblocks": blocks, "n_feats": s.train_feats, "scales": (2, 3, 4)}
        eager = _mdrn(args).to(ctx.device).train()
        fast = prepare_for_training(copy.deepcopy(eager), path=ctx.path).train()
        opt_e, opt_f = _adam(eager.parameters(), False), _adam(fast.parameters(), True)
        autocast = ctx.path.autocast_dtype

        def step(net: nn.Module, opt: torch.optim.Optimizer, amp: torch.dtype | None) -> Callable[[], None]:
            def call() -> None:
                opt.zero_grad(set_to_none=True)
                amp_ctx = torch.autocast(ctx.device.type, dtype=amp) if amp else contextlib.nullcontext()
                with amp_ctx:
                    loss = nn.functional.l1_loss(net(x, scale).float(), y)
                loss.backward()
                opt.step()

            return call

        big = i == len(s.train_blocks) - 1 and len(s.train_blocks) > 1
        repeats = s.train_big_repeats if big else s.repeats
        warmup = 0 if big else s.warmup
        times = alternate(
            {"ours": step(fast, opt_f, autocast), "base": step(eager, opt_e, None)},
            repeats=repeats,
            warmup=warmup,
            device=ctx.device,
        )
        to, tb = _median(times["ours"]), _median(times["base"])
        flops = count_flops(eager, tuple(x.shape), scale).training
        go, gb = flops / to / 1e9, flops / tb / 1e9
        notes = f"ours {go:.1f} GFLOP/s, eager {gb:.1f} GFLOP/s (counted fwd+bwd)"
        if limit:
            notes += f"; {go / limit:.0%} / {gb / limit:.0%} of the conv limit ({limit:.1f})"
        if big:
            notes += (
                f"; {repeats} repeats per variant, no separate warm-up (the previous row ran the same "
                "layer shapes)"
            )
        ctx.add(
            make_row(
                f"MDRN {_describe(args)} train step x2, batch {s.train_batch}, "
                f"{s.train_patch}x{s.train_patch} LR",
                1 / to,
                1 / tb,
                "steps/s",
                ours_label=_path_label(ctx.path, training=True),
                baseline_label="eager NCHW fp32, Adam default",
                repeats=repeats,
                notes=notes,
                extra={**_limit_facts(go, gb, flops, limit), "seconds_ours": to, "seconds_baseline": tb},
            )
        )
        if blocks == PAPER_MODEL["n_resblocks"] and s.train_feats == PAPER_MODEL["n_feats"] and limit:
            ctx.facts["train_fraction"] = go / limit
            ctx.facts["train_gflops"] = go
        del eager, fast, opt_e, opt_f


def bench_inplace_train(ctx: Context) -> None:
    """Training step with the in-place variant (ReLU, residual add) against the model's blocks, both NHWC.

    Opt-in (``--only inplace_train`` or ``--all``): a measurement for :mod:`mdrn.models`' owner.
    """
    s = ctx.sizes
    scale, batch = 2, max(1, s.train_batch // 4)
    g = _seed()
    x = torch.rand(batch, 3, s.train_patch, s.train_patch, generator=g).to(ctx.device)
    y = torch.rand(batch, 3, s.train_patch * scale, s.train_patch * scale, generator=g).to(ctx.device)
    args = {"n_resblocks": s.train_blocks[0], "n_feats": s.train_feats, "scales": (2,)}
    model = prepare_for_training(_mdrn(args), path=ctx.path).train()
    variant = prepare_for_training(_inplace_variant(model), path=ctx.path).train()
    opts = {id(n): _adam(n.parameters(), True) for n in (model, variant)}

    def step(net: nn.Module) -> Callable[[], None]:
        def call() -> None:
            opts[id(net)].zero_grad(set_to_none=True)
            nn.functional.l1_loss(net(x, scale), y).backward()
            opts[id(net)].step()

        return call

    times = alternate(
        {"v": step(variant), "m": step(model)}, repeats=s.repeats, warmup=s.warmup, device=ctx.device
    )
    ctx.add(
        rate_row(
            f"MDRN {_describe(args)} train step x2, batch {batch}: in-place ReLU + residual add",
            1,
            times,
            "steps/s",
            keys=("v", "m"),
            ours_label="local variant (in-place)",
            baseline_label="mdrn.models blocks",
            repeats=s.repeats,
            notes="both on the fast path",
        )
    )


# --------------------------------------------------------------------------------------------- metrics


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
    from mdrn.io import read_image

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
    """PSNR + SSIM of bicubic x4 on Set5: mdrn.metrics.score against a per-image scikit-image loop."""
    from mdrn.io import ImageData, image_to_tensor, tensor_to_array
    from mdrn.metrics import score
    from mdrn.resize import degrade, imresize, modcrop

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

    def ours() -> list[tuple[float, float]]:
        res = []
        for sr, hr in tensors:
            p, q = score(sr, hr, scale=scale)
            res.append((float(p[0]), float(q[0])))
        return res

    a, b = ours(), _skimage_scores(pairs, scale)
    dp = max(abs(x[0] - y[0]) for x, y in zip(a, b))
    ds = max(abs(x[1] - y[1]) for x, y in zip(a, b))
    t = alternate(
        {"ours": ours, "base": lambda: _skimage_scores(pairs, scale)},
        repeats=max(ctx.sizes.repeats, 5),
        warmup=1,
    )
    n = len(pairs)
    ctx.add(
        rate_row(
            f"PSNR+SSIM (Y, shave {scale}), {label} bicubic x{scale}",
            n,
            t,
            "images/s",
            ours_label="mdrn.metrics.score (torch float64)",
            baseline_label="per-image numpy Y + skimage psnr/ssim",
            repeats=max(ctx.sizes.repeats, 5),
            notes=f"max |dPSNR| {dp:.1e} dB, max |dSSIM| {ds:.1e}; "
            f"mean PSNR {statistics.mean(x[0] for x in a):.3f}",
            extra={"max_abs_diff_psnr": dp, "max_abs_diff_ssim": ds, "images": n},
        )
    )


# ------------------------------------------------------------------------------------- data pipeline


def _load_script(name: str) -> types.ModuleType | None:
    """Import ``scripts/<name>.py`` of the source checkout (the owners' baselines), or None if absent."""
    path = ROOT / "scripts" / f"{name}.py"
    if not path.exists():
        return None
    mod_name = f"_mdrn_scripts_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


def bench_pipeline(ctx: Context) -> None:
    """Training patches/s on one core: mdrn.data's cache against decoding the PNGs for every patch.

    Both sides are the same ``TrainPatchDataset`` + ``ScaleBatchSampler`` + ``DataLoader`` (the training
    path); only the image source differs: the decoded-image cache, or mdrn.data's decode-per-patch
    stand-in (EDSR-PyTorch ``--ext img``: HR and LR PNGs decoded for every patch).
    """
    from torch.utils.data import DataLoader

    try:
        from mdrn.data.bench_utils import _DecodingSource, make_div2k_like
    except ImportError as exc:
        ctx.skip("data pipeline patches/s", f"mdrn.data.bench_utils not available ({exc})")
        return
    from mdrn.data.cache import ImageCache
    from mdrn.data.datasets import ScaleBatchSampler, TrainPatchDataset

    s = ctx.sizes
    scale, batch = s.pipe_scale, 16
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core: a loader worker is one single-threaded process
    try:
        with tempfile.TemporaryDirectory(prefix="mdrn-bench-pipe-") as tmp:
            root = Path(tmp)
            hr_files, lr_dir = make_div2k_like(root / "images", n=s.pipe_images, size=s.pipe_hw, scale=scale)
            cache = ImageCache(hr_files, root / "cache", (scale,), {scale: lr_dir})
            t0 = time.perf_counter()
            cache.build(log=None)
            build = time.perf_counter() - t0

            def loader(source: Any, size: int, n_batches: int) -> DataLoader:
                ds = TrainPatchDataset([source], patch_size=s.pipe_patch, n_colors=3)
                sampler = ScaleBatchSampler(len(ds), size, n_batches, scales=(scale,), seed=0)
                return DataLoader(ds, batch_sampler=sampler, num_workers=0)

            n_batches = max(1, s.pipe_cache_patches // batch)
            cached = loader(cache, batch, n_batches)
            decoding = loader(_DecodingSource(hr_files, lr_dir, scale), 1, s.pipe_decode_patches)

            def drain(dl: DataLoader) -> Callable[[], None]:
                def call() -> None:
                    for _ in dl:
                        pass

                return call

            t = alternate(
                {"ours": drain(cached), "base": drain(decoding)}, repeats=s.repeats, warmup=s.warmup
            )
    finally:
        torch.set_num_threads(threads)
    rate_o = n_batches * batch / _median(t["ours"])
    rate_b = s.pipe_decode_patches / _median(t["base"])
    h, w = s.pipe_hw
    ctx.add(
        make_row(
            f"data pipeline x{scale}, {s.pipe_patch}x{s.pipe_patch} LR patches from {w}x{h} PNGs, one core",
            rate_o,
            rate_b,
            "patches/s",
            ours_label="mdrn.data decoded-image cache (memory-mapped), batches of 16",
            baseline_label="decode HR + LR PNG per patch (EDSR --ext img; mdrn.data.bench_utils)",
            repeats=s.repeats,
            notes=f"same TrainPatchDataset + DataLoader, one process, one thread; {s.pipe_images} images, "
            f"cache built once in {build:.1f} s",
            extra={"per_core_rate": rate_o, "cache_build_seconds": build},
        )
    )
    ctx.skip("data pipeline, GPU-resident", "mdrn.data has no GPU-resident option yet")


# ------------------------------------------------------------------------------------- tiled x4 (RSS)


def _rss_now(field: str = "VmRSS:") -> int:
    """Current (``VmRSS:``) or peak (``VmHWM:``) resident set size of this process in bytes (Linux /proc).

    The peak is the high-water mark of this process image only; ``getrusage``'s ``ru_maxrss`` would
    also count the parent's RSS at the fork that started the worker.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover


def _tile_worker(conn: Any, spec: dict[str, Any]) -> None:
    """Worker process of the tiled rows: build the net and image, run on request, report peak RSS."""
    try:
        torch.set_num_threads(int(spec["threads"]))
        device = torch.device(spec["device"])
        net = _mdrn(spec["model"]).to(device).eval()
        n = int(spec["lr"])
        x = torch.rand(1, 3, n, n, generator=_seed(1)).to(device)
        scale = int(spec["scale"])
        pixels = [0]  # LR pixels the network's first convolution ran on (overlap recomputation included)

        def count(module: nn.Module, args: tuple[Any, ...]) -> None:
            pixels[0] += args[0].shape[0] * args[0].shape[-2] * args[0].shape[-1]

        next(m for m in net.modules() if isinstance(m, nn.Conv2d)).register_forward_pre_hook(count)
        if spec["variant"] == "ours":
            from mdrn.inference import upscale

            net = prepare_for_inference(net, device)

            def run() -> None:
                with inference_context(device):
                    upscale(net, x, scale, tile=spec["tile"], overlap=spec["overlap"])

        else:
            chop = getattr(_load_script("bench_tiling"), spec["chop"])

            def run() -> None:
                with torch.no_grad():
                    chop(net, x, scale)

        conn.send(("ready", _rss_now()))
        while True:
            cmd = conn.recv()
            if cmd == "run":
                pixels[0] = 0
                t0 = time.perf_counter()
                run()
                _sync(device)
                conn.send(("time", (time.perf_counter() - t0, pixels[0] / (n * n))))
            else:
                peak = _rss_now("VmHWM:")
                conn.send(("peak", peak))
                return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _recv(conn: Any, what: str) -> Any:
    """Receive one message of kind ``what`` from a worker, raising its error if it sent one."""
    try:
        kind, value = conn.recv()
    except EOFError as exc:
        raise RuntimeError(
            "tiled-inference worker exited without answering (see its traceback above)"
        ) from exc
    if kind == "error":
        raise RuntimeError(f"tiled-inference worker failed: {value}")
    if kind != what:
        raise RuntimeError(f"tiled-inference worker sent {kind!r}, expected {what!r}")
    return value


def bench_tiling(ctx: Context) -> None:
    """Tiled x4 of a large LR image: mdrn.inference.upscale against the 4-quadrant split (time, peak RSS)."""
    from mdrn.inference import DEFAULT_OVERLAP

    script = _load_script("bench_tiling")
    chop_name = next(
        (
            n
            for n in ("forward_chop", "chop_forward", "quadrant_chop", "chop")
            if script and callable(getattr(script, n, None))
        ),
        None,
    )
    name = "tiled x4"
    if chop_name is None:
        ctx.skip(
            name, "scripts/bench_tiling.py (the 4-quadrant baseline of mdrn.inference's owner) not found"
        )
        return
    try:
        from mdrn.upscale import DEFAULT_TILE
    except ImportError:  # pragma: no cover - the CLI module is part of the package
        DEFAULT_TILE = 192
    s = ctx.sizes
    tile = DEFAULT_TILE if not ctx.quick else 16
    overlap = DEFAULT_OVERLAP if not ctx.quick else 4
    base = {
        "model": dict(s.tile_model),
        "lr": s.tile_lr,
        "scale": 4,
        "tile": tile,
        "overlap": overlap,
        "threads": torch.get_num_threads(),
        "device": str(ctx.device),
        "chop": chop_name,
    }
    mpc = mp.get_context("spawn")
    workers = {}
    try:
        for variant in ("ours", "base"):
            parent, child = mpc.Pipe()
            proc = mpc.Process(target=_tile_worker, args=(child, {**base, "variant": variant}), daemon=True)
            proc.start()
            workers[variant] = (parent, proc)
        setup = {v: _recv(c, "ready") for v, (c, _) in workers.items()}
        times: dict[str, list[float]] = {"ours": [], "base": []}
        recompute: dict[str, float] = {}
        order = list(workers)
        for r in range(s.tile_warmup + s.tile_repeats):
            for v in order if r % 2 == 0 else order[::-1]:
                workers[v][0].send("run")
                dt, recompute[v] = _recv(workers[v][0], "time")
                if r >= s.tile_warmup:
                    times[v].append(dt)
        peak = {}
        for v, (c, _) in workers.items():
            c.send("stop")
            peak[v] = _recv(c, "peak")
    finally:
        for _, proc in workers.values():
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    net = _mdrn(s.tile_model)
    flops = count_flops(net, (1, 3, s.tile_lr, s.tile_lr), 4).forward
    to, tb = _median(times["ours"]), _median(times["base"])
    paper = count_flops(_mdrn(dict(PAPER_MODEL)), (1, 3, s.tile_lr, s.tile_lr), 4).forward
    limit = ctx.facts.get("conv_limit_tile", {}).get("gflops")
    label = f"MDRN {_describe(s.tile_model)} x4 of a {s.tile_lr}x{s.tile_lr} LR image"
    import mdrn.inference as inference

    budget = getattr(inference, "DEFAULT_MEMORY", None)
    ours_label = f"mdrn.inference.upscale (tile {tile}, overlap {overlap}" + (
        f", memory budget {budget / 2**30:.1f} GiB), NHWC" if budget else "), NHWC"
    )
    base_label = f"4-quadrant split (scripts/bench_tiling.py {chop_name}), eager NCHW"
    notes = (
        f"the first conv ran on {recompute['ours']:.2f}x / {recompute['base']:.2f}x the image's LR pixels "
        f"(overlap recomputed); {flops / to / 1e9:.1f} / {flops / tb / 1e9:.1f} GFLOP/s "
        f"of the image's counted FLOPs; each variant in its own process, {s.tile_warmup} warm-up runs"
    )
    if limit:
        notes += (
            f"; the B=80 F=64 model would need {paper / 1e12:.1f} TFLOP = {paper / limit / 1e9:.0f} s "
            "at the conv limit"
        )
    ctx.add(
        make_row(
            f"{label}: time",
            to,
            tb,
            "s",
            better="lower",
            ours_label=ours_label,
            baseline_label=base_label,
            repeats=s.tile_repeats,
            notes=notes,
            extra={
                "flops": flops,
                "paper_model_flops": paper,
                "recompute_ours": recompute["ours"],
                "recompute_baseline": recompute["base"],
            },
        )
    )
    mb = 2**20
    ctx.add(
        make_row(
            f"{label}: peak RSS",
            peak["ours"] / mb,
            peak["base"] / mb,
            "MB",
            better="lower",
            ours_label=ours_label,
            baseline_label=base_label,
            repeats=1,
            notes=(
                f"whole worker process; after setup (torch, net, input) {setup['ours'] / mb:.0f} / "
                f"{setup['base'] / mb:.0f} MB"
            ),
            extra={"setup_rss_ours": setup["ours"], "setup_rss_baseline": setup["base"]},
        )
    )


# ------------------------------------------------------------------------------------------ the run

SECTIONS: dict[str, Callable[[Context], None]] = {
    "limits": bench_limits,
    "forward": bench_forward,
    "adam": bench_adam,
    "training": bench_training,
    "pipeline": bench_pipeline,
    "tiling": bench_tiling,
    "metrics": bench_metrics,
    "compile": bench_compile,
    "inplace_train": bench_inplace_train,
}
#: Sections of the default run (the others are opt-in measurements: minutes on CPU, or for one owner).
DEFAULT_SECTIONS = [name for name in SECTIONS if name not in ("compile", "inplace_train")]


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """Describe the machine: host, CPU model, cores, memory, load, library versions, threads, GPU."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        if m := re.search(r"^model name\s*:\s*(.+)$", text, re.M):
            cpu = m.group(1).strip()
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        mem = int(line.split()[1]) * 1024
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": cpu,
        "cores_available": available_cores(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": mem,
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "device": str(device or resolve_device()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_bench(
    sizes: Sizes | None = None,
    *,
    quick: bool = False,
    only: list[str] | None = None,
    device: str | torch.device | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the bench sections (all, or ``only``) and return the result (machine, rows, facts, timings)."""
    sizes = sizes or (Sizes.quick() if quick else Sizes())
    dev = resolve_device(device)
    unknown = set(only or []) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown bench sections {sorted(unknown)}; known: {list(SECTIONS)}")
    path = fast_path(dev)
    if sizes.threads is not None:
        path = replace(path, num_threads=sizes.threads)
    configure_threads(path)
    ctx = Context(sizes=sizes, device=dev, path=path, quick=quick, log=log)
    start = time.perf_counter()
    info = machine_info(dev)
    started = _dt.datetime.now(_dt.timezone.utc)
    section_seconds = {}
    for name, fn in SECTIONS.items():
        if name not in (only or DEFAULT_SECTIONS):
            continue
        log(f"[{name}]")
        t0 = time.perf_counter()
        fn(ctx)
        section_seconds[name] = time.perf_counter() - t0
        log(f"  ({section_seconds[name]:.1f} s)")
    info["load_average_end"] = list(os.getloadavg())
    ctx.facts.update(_paper_facts())
    pipe = next((r for r in ctx.rows if r.extra.get("per_core_rate")), None)
    if pipe is not None:
        ctx.facts["cache_patches_per_s_per_core"] = pipe.extra["per_core_rate"]
    return {
        "date": started.strftime("%Y-%m-%d"),
        "started_utc": started.isoformat(timespec="seconds"),
        "quick": quick,
        "machine": info,
        "sizes": _jsonable(asdict(sizes)),
        "fast_path": {
            "channels_last": path.channels_last,
            "train_channels_last": path.train_channels_last,
            "compile": path.compile,
            "autocast": str(path.autocast_dtype),
            "precision": path.precision,
            "num_threads": path.num_threads,
        },
        "rows": [_jsonable(asdict(r)) for r in ctx.rows],
        "skipped": ctx.skipped,
        "facts": _jsonable(ctx.facts),
        "section_seconds": section_seconds,
        "total_seconds": time.perf_counter() - start,
    }


def _paper_facts() -> dict[str, Any]:
    """Counted FLOPs of the paper's training step (B=80 F=64, batch 16, 48x48 LR) at each scale."""
    net = _mdrn(dict(PAPER_MODEL))
    b, p = PAPER_SCHEDULE["batch"], PAPER_SCHEDULE["patch"]
    per_scale = {}
    for s in PAPER_SCHEDULE["scales"]:
        c = count_flops(net, (b, 3, p, p), s)
        per_scale[str(s)] = {"forward": c.forward, "training": c.training}
    return {"paper_step_flops": per_scale, "paper_params": sum(q.numel() for q in net.parameters())}


def _jsonable(value: Any) -> Any:
    """Tuples to lists, recursively (JSON round trip unchanged)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# -------------------------------------------------------------------------------------------- output


def table_markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown document: machine, table of rows, skipped rows, total time."""
    m = result["machine"]
    lines = [
        f"# mdrn bench: {m['host']}, {result['started_utc']}"
        + (" (--quick: sizes for tests only)" if result["quick"] else ""),
        "",
        f"Machine: {m['cpu']}, {m['cores_available']} cores available, torch {m['torch']} "
        f"({m['torch_threads']} threads), device {m['device']}"
        + (f" ({m['gpu']})" if m.get("gpu") else "")
        + f"; load average {m['load_average'][0]:.2f} at the start, "
        f"{m['load_average_end'][0]:.2f} at the end.",
        f"Fast path: {result['fast_path']}.",
        "",
        "Each row: ours and the baseline in the same process, alternating, median of `repeats` after "
        "warm-up; ratio = ours / baseline (`better`: which direction wins).",
        "",
        "| row | ours | baseline | unit | ratio | better | repeats | ours is | baseline is | notes |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: | --- | --- | --- |",
    ]
    for r in result["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3g}"
        r = {k: v.replace("|", "\\|") if isinstance(v, str) else v for k, v in r.items()}
        lines.append(
            f"| {r['name']} | {_fmt(r['ours'])} | {_fmt(r['baseline'])} | {r['unit']} | {ratio} "
            f"| {r['better']} "
            f"| {r['repeats']} | {r['ours_label']} | {r['baseline_label']} | {r['notes']} |"
        )
    if result["skipped"]:
        lines += ["", "Not measured:"] + [f"- {s['name']}: {s['reason']}" for s in result["skipped"]]
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in result["section_seconds"].items())
    lines += ["", f"Total time: {result['total_seconds']:.1f} s ({secs})."]
    return "\n".join(lines) + "\n"


def _ratios(result: dict[str, Any], *needles: str) -> list[tuple[str, float]]:
    """(name, ratio) of the rows whose name contains every needle."""
    return [
        (r["name"], r["ratio"])
        for r in result["rows"]
        if r["ratio"] is not None and all(n in r["name"] for n in needles)
    ]


def decisions_markdown(result: dict[str, Any]) -> str:
    """Which optimisation the recorded run supports on its device, each with the rows that show it."""
    dev = result["machine"]["device"]
    out = [
        f"## What the run shows about each optimisation ({dev})",
        "",
        "Ratios are ours / baseline of the rows named (speed: higher is better), in this run.",
        "",
    ]

    def verdict(title: str, rows: list[tuple[str, float]], keep: str, drop: str, bar: float = 1.0) -> None:
        if not rows:
            out.append(f"- {title}: not measured in this run.")
            return
        ratios = ", ".join(f"{r:.2f}x" for _, r in rows)
        ok = all(r >= bar for _, r in rows)
        out.append(f"- {title}: {ratios} ({len(rows)} row{'s' * (len(rows) > 1)}). {keep if ok else drop}")

    verdict(
        "channels_last + inference_mode (forward)",
        [r for r in _ratios(result, " forward x") if ":" not in r[0]],
        "Kept: `mdrn.perf.prepare_for_inference` default.",
        "Not faster everywhere: revisit the default.",
    )
    train = [r for r in result["rows"] if "train step x2, batch" in r["name"] and ":" not in r["name"]]
    verdict(
        f"training fast path ({train[0]['ours_label'] if train else '-'}) against eager NCHW + default Adam",
        [(r["name"], r["ratio"]) for r in train],
        "Kept: not slower than eager (within 2% run-to-run noise); `mdrn.perf.training_defaults`.",
        "Slower than eager by more than 2% in some row: revisit the default.",
        bar=0.98,
    )
    verdict(
        "fused Adam alone",
        _ratios(result, "Adam step"),
        "Kept (`torch.optim.Adam(..., fused=True)`), though it is < 1% of a step.",
        "Not faster: keep the default loop.",
    )
    verdict(
        "in-place ReLU + in-place residual add (a change to mdrn.models)",
        _ratios(result, "in-place"),
        "Gain >= 2%: worth the change in `mdrn.models.blocks.ResBlock`.",
        "Gain < 2% (within noise): not worth changing the model code for speed.",
        bar=1.02,
    )
    verdict(
        "module.compile() on this device",
        _ratios(result, "module.compile()"),
        "Faster in steady state; see the row for the compile time it must pay back.",
        "Not faster in steady state: not a default here.",
    )
    verdict(
        "decoded-image cache against decoding a PNG per patch",
        _ratios(result, "data pipeline"),
        "Kept (mdrn.data's default).",
        "Not faster: revisit.",
    )
    verdict(
        "tiled inference against the 4-quadrant split (speed-up = quadrant time / tiled time)",
        [(n, 1 / r) for n, r in _ratios(result, ": time")],
        "Faster than the quadrant split.",
        "Slower than the quadrant split: see the row's recomputed-pixel factors (tile size vs overlap).",
    )
    verdict(
        "metrics (mdrn.metrics.score) against the per-image scikit-image loop",
        _ratios(result, "PSNR+SSIM"),
        "Faster.",
        "Slower than the per-image scikit-image loop on this CPU.",
    )
    out.append("")
    return "\n".join(out) + "\n"


def projection_markdown(result: dict[str, Any]) -> str:
    """The H100 projection of the paper's schedule from a measured result, with the arithmetic shown."""
    f = result["facts"]
    per = f["paper_step_flops"]
    scales = sorted(per, key=int)
    step = statistics.mean(per[s]["training"] for s in scales)
    it, batch = PAPER_SCHEDULE["iterations"], PAPER_SCHEDULE["batch"]
    total = step * it
    frac = f.get("train_fraction")
    lines = [
        "# Benchmark results and the H100 projection",
        "",
        "Generated by `python -m mdrn.bench` from the recorded run "
        f"`{result.get('_source', '?')}` (regenerate with `python -m mdrn.bench --readme-from <run>.json`).",
        "",
        "## FLOPs of one training step (counted from the layer shapes, `mdrn.perf.count_flops`)",
        "",
        f"MDRN B={PAPER_MODEL['n_resblocks']} F={PAPER_MODEL['n_feats']} ({f['paper_params']:,} parameters), "
        f"batch {batch} of {PAPER_SCHEDULE['patch']}x{PAPER_SCHEDULE['patch']} LR patches; "
        "forward + backward "
        "(weight gradients, and input gradients for every layer but the first):",
        "",
        "| scale | forward GFLOP | training step GFLOP | per patch GFLOP |",
        "| --- | ---: | ---: | ---: |",
    ]
    for s in scales:
        lines.append(
            f"| x{s} | {per[s]['forward'] / 1e9:,.1f} | {per[s]['training'] / 1e9:,.1f} "
            f"| {per[s]['training'] / batch / 1e9:,.1f} |"
        )
    lines += [
        "",
        f"One scale is drawn per batch (uniformly), so a step costs on average "
        f"F_step = {step / 1e12:.3f} TFLOP. Schedule (EDSR-PyTorch's MDSR recipe, followed by the paper): "
        f"{it:,} iterations, so the run costs F_step x {it:,} = {total / 1e18:.3f} EFLOP "
        f"({total:.3e} FLOP). Adam (~10 FLOP per parameter per step) and elementwise ops are not counted "
        "(< 0.2%).",
        "",
        "## Projected time on H100 (bf16 dense peak P = 790 TFLOP/s)",
        "",
    ]
    cases = []
    if frac:
        cases.append(
            (
                f"the fraction this bench measured on CPU (training step at {frac:.1%} of the measured "
                "conv limit)",
                frac,
            )
        )
    cases.append(
        (
            f"{GPU_ASSUMED_FRACTION:.0%} of peak (the issue's assumption for a tuned bf16 run)",
            GPU_ASSUMED_FRACTION,
        )
    )
    rate = f.get("cache_patches_per_s_per_core")
    lines += [
        "| utilisation u | 1 H100: time = total / (u P) | 8 H100: time / 8 | patches/s to feed 1 / 8 "
        "(= 16 / step time) | CPU cores of the cache needed for 1 / 8 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, u in cases:
        t1 = total / (u * H100_BF16_DENSE)
        sps = u * H100_BF16_DENSE / step
        need = sps * batch
        cores = f"{need / rate:.1f} / {8 * need / rate:.1f}" if rate else "not measured"
        lines.append(
            f"| {label}: u = {u:.3f} | {total:.3e} / ({u:.3f} x 7.9e14) = {t1:,.0f} s = {t1 / 3600:.1f} h "
            f"| {t1 / 8 / 3600:.2f} h | {need:,.0f} / {8 * need:,.0f} | {cores} |"
        )
    grad_bytes = f["paper_params"] * 4
    allreduce = 2 * 7 / 8 * grad_bytes / 450e9
    lines += [
        "",
        "8 GPUs: data-parallel, batch 16 per GPU, the same number of patches in total (iterations / 8), "
        "so the "
        "time is divided by 8; the gradient all-reduce (ring, fp32 gradients: 2 x 7/8 x "
        f"{grad_bytes / 1e6:.0f} MB over ~450 GB/s NVLink = {allreduce * 1e3:.2f} ms per step) is small "
        "against the step time and overlaps the backward.",
        "",
        "The CPU fraction is an upper bound for the GPU: 64-channel 3x3 convolutions on 48x48 patches "
        "are small "
        "for an H100 and reach well under half of its tensor-core peak; the 40% row is the planning figure.",
        "",
    ]
    if rate:
        lines.append(
            f"Data: the decoded-image cache delivers {rate:,.0f} patches/s per CPU core on this machine "
            "(row 'data pipeline'); the table divides the patches/s an H100 consumes by it."
        )
    else:
        lines.append("Data: the cache's patches/s per core was not measured in this run.")
    cpu = f.get("train_gflops")
    if cpu:
        t_cpu = total / (cpu * 1e9)
        lines += [
            "",
            f"For scale: this machine trains at {cpu:.1f} GFLOP/s (row 'train step B=80'), so the schedule "
            f"would take {total:.3e} / {cpu * 1e9:.3e} = {t_cpu / 86400:,.0f} days here.",
        ]
    lines += [
        "",
        decisions_markdown(result),
        "## The recorded run",
        "",
        table_markdown(result).split("\n", 2)[2],
    ]
    return "\n".join(lines) + "\n"


def _free_path(folder: Path, stem: str, overwrite: bool) -> str:
    """``stem`` or, if its .md/.json exist and not ``overwrite``, the first free ``stem-2``, ``stem-3``..."""
    if overwrite:
        return stem
    cand, k = stem, 1
    while (folder / f"{cand}.md").exists() or (folder / f"{cand}.json").exists():
        k += 1
        cand = f"{stem}-{k}"
    return cand


def write_results(
    result: dict[str, Any], folder: str | os.PathLike[str], *, overwrite: bool = False, readme: bool = True
) -> tuple[Path, Path]:
    """Write ``<machine>-<date>[-quick].md`` and ``.json`` (a free name unless ``overwrite``), README.md."""
    from mdrn.io import atomic_write

    folder = Path(folder)
    host = re.sub(r"[^A-Za-z0-9_.-]+", "_", result["machine"]["host"] or "machine")
    stem = _free_path(folder, f"{host}-{result['date']}" + ("-quick" if result["quick"] else ""), overwrite)
    js, md = folder / f"{stem}.json", folder / f"{stem}.md"
    result = {**result, "_source": js.name}
    atomic_write(js, lambda p: p.write_text(json.dumps(result, indent=1) + "\n"), overwrite=overwrite)
    atomic_write(md, lambda p: p.write_text(table_markdown(result)), overwrite=overwrite)
    if readme:
        text = projection_markdown(result)
        atomic_write(folder / "README.md", lambda p: p.write_text(text), overwrite=True)
    return md, js


def main(argv: list[str] | None = None) -> int:
    """Command line: run the bench, print the table and total time, write the results."""
    parser = argparse.ArgumentParser(prog="mdrn-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for tests)")
    parser.add_argument("--only", default=None, help=f"comma-separated sections of {','.join(SECTIONS)}")
    parser.add_argument("--all", action="store_true", help="also the opt-in sections (compile)")
    parser.add_argument(
        "--out", default=None, help=f"output folder (default {RESULTS}; --quick: a temp folder)"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--overwrite", action="store_true", help="replace today's files instead of -2, -3...")
    parser.add_argument("--no-readme", action="store_true", help="do not regenerate README.md")
    parser.add_argument("--readme-from", default=None, help="only regenerate README.md from a recorded .json")
    args = parser.parse_args(argv)
    if args.readme_from:
        src = Path(args.readme_from)
        result = {**json.loads(src.read_text()), "_source": src.name}
        from mdrn.io import atomic_write

        dest = Path(args.out or src.parent) / "README.md"
        atomic_write(dest, lambda p: p.write_text(projection_markdown(result)), overwrite=True)
        print(f"wrote {dest}")
        return 0
    only = [s.strip() for s in args.only.split(",")] if args.only else (list(SECTIONS) if args.all else None)
    t0 = time.perf_counter()
    result = run_bench(quick=args.quick, only=only, device=args.device)
    print()
    print(table_markdown(result))
    out = (
        Path(args.out)
        if args.out
        else (Path(tempfile.mkdtemp(prefix="mdrn-bench-")) if args.quick else RESULTS)
    )
    complete = set(DEFAULT_SECTIONS) <= set(only or DEFAULT_SECTIONS)
    md, js = write_results(result, out, overwrite=args.overwrite, readme=complete and not args.no_readme)
    print(f"wrote {md} and {js}")
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
