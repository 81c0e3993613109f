"""What every bench section shares: sizes, rows, timing, the run's context and small helpers."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mdrn.perf import FastPath
from mdrn.weights import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[2]
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
#: P of the H100 projection: a sustained bf16 matmul rate on an H100/H200 (FLOP/s); the data sheet's
#: dense peak is 989e12 (``mdrn.bench.gpu.BF16_DENSE_PEAK``); an H200 here measured 821-837e12 on
#: 8192^3 products (``experiments/results/bench/h200-2026-11-30*``)
H100_BF16_MATMUL = 790e12
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
    # the paper's network tiled (opt-in section tiling_full)
    full_model: dict[str, Any] = field(default_factory=lambda: dict(PAPER_MODEL))
    full_lr: int = 1024
    #: untimed runs per variant first (0: every run takes seconds and allocates afresh; the median of 5
    #: absorbs a slower first run)
    tile_warmup: int = 0
    # profiles (opt-in section profile)
    profile_blocks: tuple[int, ...] = (16, 80)
    profile_timed: int = 3
    profile_steps: int = 2
    #: every variant (False: the fast path's training step and x4 forward only)
    profile_all: bool = True
    # GPU section: the paper's network, training steps per pixel budget and variant, forward tiles (opt-in)
    gpu_model: dict[str, Any] = field(default_factory=lambda: dict(PAPER_MODEL))
    #: the paper's budget (batch x LR patch), the one the projection and the first goal read
    gpu_batch: int = 16
    gpu_patch: int = 48
    #: the training budgets measured (batch, LR patch), the paper's first: 36,864 to 589,824 LR pixels
    gpu_budgets: tuple[tuple[int, int], ...] = ((16, 48), (64, 48), (16, 96), (64, 96))
    #: shapes beyond the budgets where the ceiling (the convolution alone) is also measured
    gpu_ceiling_extra: tuple[tuple[int, int], ...] = ((256, 48), (128, 96), (64, 192))
    #: distinct convolutions per captured pass of the ceiling
    gpu_ceiling_inner: int = 8
    #: seconds the training variants may take in all (then compiled variants are skipped, with the reason)
    gpu_budget_s: float = 120.0
    #: seconds kept for a compilation: a compiled variant starts only with this much of the budget left
    gpu_compile_reserve_s: float = 40.0
    #: profile one step, eager and compiled, to show the fusion (CUDA only)
    gpu_profile: bool = True
    #: the forward rows (a tile at x2 and x4, compiled variants; ~90 s of compilation: opt-in)
    gpu_forward: bool = False
    gpu_tile: int = 256
    #: untimed calls per variant first (a compiled variant compiles in them)
    gpu_warmup: int = 3
    gpu_compile: bool = True
    #: the bf16 matmul of the GPU's measured ceiling (n x n x n)
    gpu_matmul_n: int = 8192
    #: products per timed call of the matmul limit (one is microseconds there)
    gpu_limit_inner: int = 20
    # the clinician path (opt-in section clinical): a CT slice and a series of it, the shipped model
    clinical_model: str = DEFAULT_MODEL
    clinical_side: int = 512
    clinical_slices: int = 20
    clinical_scales: tuple[int, ...] = (2, 4)
    clinical_repeats: int = 3
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
            full_model={"n_resblocks": 1, "n_feats": 8, "scales": (4,)},
            full_lr=48,
            profile_blocks=(1,),
            gpu_model={"n_resblocks": 1, "n_feats": 8, "scales": (2, 4)},
            gpu_batch=2,
            gpu_patch=16,
            gpu_budgets=((2, 16), (4, 16), (2, 24)),
            gpu_ceiling_extra=((4, 24),),
            gpu_ceiling_inner=2,
            gpu_budget_s=600.0,
            gpu_compile_reserve_s=0.0,
            gpu_forward=True,
            gpu_tile=16,
            gpu_warmup=1,
            gpu_compile=False,
            gpu_matmul_n=64,
            gpu_limit_inner=2,
            profile_timed=2,
            profile_steps=1,
            profile_all=False,
            metrics_max_side=64,
            clinical_side=32,
            clinical_slices=2,
            clinical_scales=(2,),
            clinical_repeats=2,
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


def sync(device: torch.device) -> None:
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
            sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            t0 = time.perf_counter()
            variants[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def median(values: list[float]) -> float:
    """Median of the timed repeats."""
    return float(statistics.median(values))


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
    ours, base = (work / median(times[key]) / per for key in keys)
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
        self.log(f"  {row.name}: ours {fmt(row.ours)} vs {fmt(row.baseline)} {row.unit} (ratio {ratio})")

    def skip(self, name: str, reason: str) -> None:
        """Record a row that could not run, with the reason."""
        self.skipped.append({"name": name, "reason": reason})
        self.log(f"  {name}: skipped ({reason})")


def fmt(value: float | None) -> str:
    """Four significant digits, thousands separated; '-' for None."""
    if value is None:
        return "-"
    if value == 0 or not math.isfinite(value):
        return str(value)
    digits = max(0, 3 - int(math.floor(math.log10(abs(value)))))
    return f"{value:,.{digits}f}"


def seed(seed: int = 0) -> torch.Generator:
    """Seed torch and return a CPU generator for the inputs."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def build_mdrn(args: dict[str, Any]) -> nn.Module:
    """Build an MDRN with fixed random weights."""
    from mdrn.models import MDRN

    torch.manual_seed(0)
    return MDRN(**args)


def gpu_tag(device_name: str | None) -> str:
    """A file-name tag for a GPU: 'h100' for 'NVIDIA H100 80GB HBM3', 'a100' for 'NVIDIA A100-SXM4-80GB';
    'cuda' where the name has no model number of that form."""
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", device_name or "")
    return m.group(1).lower() if m else "cuda"


def describe(args: dict[str, Any]) -> str:
    """'B=80 F=64' for MDRN arguments."""
    return f"B={args['n_resblocks']} F={args['n_feats']}"


def path_label(path: FastPath, training: bool) -> str:
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


def load_script(name: str) -> types.ModuleType | None:
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
