"""The bench run: its sections, the machine's description, and ``run_bench``."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mdrn.bench.clinical import bench_clinical
from mdrn.bench.core import PAPER_MODEL, PAPER_SCHEDULE, Context, Sizes, build_mdrn
from mdrn.bench.forward import bench_compile, bench_forward
from mdrn.bench.gpu import bench_gpu
from mdrn.bench.limits import bench_limits
from mdrn.bench.pipeline import bench_pipeline
from mdrn.bench.profile import bench_profile
from mdrn.bench.scoring import bench_metrics
from mdrn.bench.tiling import bench_tiling, bench_tiling_full
from mdrn.bench.training import bench_adam, bench_inplace_train, bench_training
from mdrn.perf import available_cores, configure_threads, count_flops, fast_path, resolve_device

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
    "tiling_full": bench_tiling_full,
    "profile": bench_profile,
    "clinical": bench_clinical,
    "gpu": bench_gpu,
}
#: Sections of the default run (the others are opt-in measurements: minutes on CPU, or for one owner).
OPT_IN_SECTIONS = ("compile", "inplace_train", "tiling_full", "profile", "clinical", "gpu")
DEFAULT_SECTIONS = [name for name in SECTIONS if name not in OPT_IN_SECTIONS]
#: Sections of the default run on a GPU: its limits and the GPU section (minutes: compiling included).
CUDA_SECTIONS = ["limits", "gpu"]


def default_sections(device: torch.device) -> list[str]:
    """The sections a run without ``--only`` measures on ``device``."""
    return CUDA_SECTIONS if device.type == "cuda" else DEFAULT_SECTIONS


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
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
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
        if name not in (only or default_sections(dev)):
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
    net = build_mdrn(dict(PAPER_MODEL))
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
