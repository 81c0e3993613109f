"""Bench section ``tiling``: tiled x4 inference of a large image against the 4-quadrant split."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import resource
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from mdrn.bench.core import (
    PAPER_MODEL,
    Context,
    build_mdrn,
    describe,
    load_script,
    make_row,
    median,
    seed,
    sync,
)
from mdrn.perf import (
    count_flops,
    inference_context,
    prepare_for_inference,
)


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
    """Worker process of the tiled rows: build the net and image, run on request, report peak RSS.

    ``spec``: ``variant`` "ours" (:func:`mdrn.models.inference.upscale` on the fast path) or "base" (the
    4-quadrant split of scripts/bench_tiling.py, eager NCHW); optional ``memory`` (the two-stage budget)
    ``allocator`` "glibc default" (upscale without :func:`mdrn.perf.malloc_reuse`) and ``out_of_place``
    (residual blocks out of place, as before they were made in place).
    """
    try:
        torch.set_num_threads(int(spec["threads"]))
        device = torch.device(spec["device"])
        net = build_mdrn(spec["model"]).to(device).eval()
        n = int(spec["lr"])
        x = torch.rand(1, 3, n, n, generator=seed(1)).to(device)
        scale = int(spec["scale"])
        pixels = [0]  # LR pixels the network's first convolution ran on (overlap recomputation included)

        def count(module: nn.Module, args: tuple[Any, ...]) -> None:
            pixels[0] += args[0].shape[0] * args[0].shape[-2] * args[0].shape[-1]

        next(m for m in net.modules() if isinstance(m, nn.Conv2d)).register_forward_pre_hook(count)
        if spec.get("out_of_place"):
            from mdrn.bench.forward import out_of_place_variant

            net = out_of_place_variant(net)
        if spec["variant"] == "ours":
            import mdrn.models.inference as inference

            if spec.get("allocator") == "glibc default":
                inference.malloc_reuse = lambda enabled=True: contextlib.nullcontext()  # type: ignore
            net = prepare_for_inference(net, device)
            memory = spec.get("memory") or inference.DEFAULT_MEMORY

            def run() -> None:
                with inference_context(device):
                    inference.upscale(
                        net, x, scale, tile=spec["tile"], overlap=spec["overlap"], memory=memory
                    )

        else:
            chop = getattr(load_script("bench_tiling"), spec["chop"])

            def run() -> None:
                with torch.no_grad():
                    chop(net, x, scale)

        conn.send(("ready", _rss_now()))
        while True:
            cmd = conn.recv()
            if cmd == "run":
                pixels[0] = 0
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                run()
                sync(device)
                dt = time.perf_counter() - t0
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                faults = (r1.ru_minflt - r0.ru_minflt) * resource.getpagesize()
                stats = {"seconds": dt, "recompute": pixels[0] / (n * n), "fault_bytes": faults}
                stats["sys_seconds"] = r1.ru_stime - r0.ru_stime
                stats["user_seconds"] = r1.ru_utime - r0.ru_utime
                conn.send(("time", stats))
            else:
                conn.send(("peak", _rss_now("VmHWM:")))
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


@contextlib.contextmanager
def _workers(specs: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Start one spawned worker process per spec; yield their pipe ends; join (or end) them afterwards."""
    mpc = mp.get_context("spawn")
    procs, conns = [], {}
    try:
        for name, spec in specs.items():
            parent, child = mpc.Pipe()
            proc = mpc.Process(target=_tile_worker, args=(child, spec), daemon=True)
            proc.start()
            procs.append(proc)
            conns[name] = parent
        yield conns
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()


def _chop_name() -> str | None:
    """The 4-quadrant function of scripts/bench_tiling.py (the baseline of mdrn.models.inference's owner)."""
    script = load_script("bench_tiling")
    names = ("forward_chop", "chop_forward", "quadrant_chop", "chop")
    return next((n for n in names if script and callable(getattr(script, n, None))), None)


def _tile_setting(model: dict[str, Any]) -> tuple[int, int]:
    """The CLI's tile (switches tiling on) and the overlap upscale uses by default for ``model``."""
    import mdrn.models.inference as inference

    try:
        from mdrn.upscale import DEFAULT_TILE
    except ImportError:  # pragma: no cover - the CLI module is part of the package
        DEFAULT_TILE = 192
    overlap = getattr(inference, "DEFAULT_OVERLAP", None)
    if overlap is None:  # the network's receptive radius (seamless tiles)
        overlap = inference.default_overlap(build_mdrn(model))
    return DEFAULT_TILE, overlap


def bench_tiling(ctx: Context) -> None:
    """Tiled x4 of a large LR image: ``mdrn.models.inference.upscale`` against the 4-quadrant split."""
    chop_name = _chop_name()
    name = "tiled x4"
    if chop_name is None:
        ctx.skip(
            name,
            "scripts/bench_tiling.py (the 4-quadrant baseline of mdrn.models.inference's owner) not found",
        )
        return
    s = ctx.sizes
    tile, overlap = _tile_setting(s.tile_model) if not ctx.quick else (16, 4)
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
    with _workers({v: {**base, "variant": v} for v in ("ours", "base")}) as conns:
        setup = {v: _recv(c, "ready") for v, c in conns.items()}
        times: dict[str, list[float]] = {"ours": [], "base": []}
        recompute: dict[str, float] = {}
        order = list(conns)
        for r in range(s.tile_warmup + s.tile_repeats):
            for v in order if r % 2 == 0 else order[::-1]:
                conns[v].send("run")
                stats = _recv(conns[v], "time")
                recompute[v] = stats["recompute"]
                if r >= s.tile_warmup:
                    times[v].append(stats["seconds"])
        peak = {}
        for v, c in conns.items():
            c.send("stop")
            peak[v] = _recv(c, "peak")
    net = build_mdrn(s.tile_model)
    flops = count_flops(net, (1, 3, s.tile_lr, s.tile_lr), 4).forward
    to, tb = median(times["ours"]), median(times["base"])
    paper = count_flops(build_mdrn(dict(PAPER_MODEL)), (1, 3, s.tile_lr, s.tile_lr), 4).forward
    limit = ctx.facts.get("conv_limit_tile", {}).get("gflops")
    label = f"MDRN {describe(s.tile_model)} x4 of a {s.tile_lr}x{s.tile_lr} LR image"
    import mdrn.models.inference as inference

    budget = getattr(inference, "DEFAULT_MEMORY", None)
    ours_label = f"mdrn.models.inference.upscale (tile {tile}, overlap {overlap}" + (
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


def bench_tiling_full(ctx: Context) -> None:
    """The paper's network tiled: B=80 x4 of a 1024x1024 LR image, tiled against the 4-quadrant split.

    Opt-in (``--only tiling_full``; minutes per variant on CPU). Each variant runs once, in its own
    process, one after the other: time, peak RSS, page faults and the kernel's time. Besides the shipped
    tiling and the split, two variants test why large tiles were slow (the allocator hypothesis): the
    shipped tiling without :func:`mdrn.perf.malloc_reuse` (glibc's default: every map of 32 MB or more
    mmap-ed and page-faulted afresh), and body tiles capped so that their maps stay under 32 MB
    (reused by glibc's heap without any setting, at the price of recomputed context).
    """
    from mdrn.models.inference import _BODY_MAPS, DEFAULT_MEMORY

    chop_name = _chop_name()
    if chop_name is None:
        ctx.skip("tiled x4, paper model", "scripts/bench_tiling.py (the 4-quadrant baseline) not found")
        return
    s = ctx.sizes
    tile, overlap = _tile_setting(s.full_model) if not ctx.quick else (16, 4)
    feats = int(s.full_model["n_feats"])
    capped = (32 << 20) // (feats * 4) * feats * 4 * _BODY_MAPS  # body maps of at most 32 MB
    if ctx.quick:
        capped = (40 * 40) * feats * 4 * _BODY_MAPS
    base = {"model": dict(s.full_model), "lr": s.full_lr, "scale": 4, "tile": tile, "overlap": overlap,
            "threads": torch.get_num_threads(), "device": str(ctx.device), "chop": chop_name}  # fmt: skip
    specs = {
        "split": {**base, "variant": "base"},
        "tiled": {**base, "variant": "ours"},
        "default allocator": {**base, "variant": "ours", "allocator": "glibc default"},
        # capped tiles need a small context to fit at all: the 32 pixels of the earlier default
        "capped tiles": {**base, "variant": "ours", "memory": capped, "overlap": min(overlap, 32)},
        "out-of-place blocks": {**base, "variant": "ours", "out_of_place": True},
    }
    results: dict[str, dict[str, Any]] = {}
    for name, spec in specs.items():
        ctx.log(f"  variant {name} ...")
        with _workers({name: spec}) as conns:
            conn = conns[name]
            setup = _recv(conn, "ready")
            conn.send("run")
            stats = _recv(conn, "time")
            conn.send("stop")
            results[name] = {**stats, "setup_rss": setup, "peak_rss": _recv(conn, "peak")}
    flops = count_flops(build_mdrn(s.full_model), (1, 3, s.full_lr, s.full_lr), 4).forward
    ctx.facts["tiling_full"] = {"flops": flops, "variants": results, "memory_budget": DEFAULT_MEMORY}
    label = f"MDRN {describe(s.full_model)} x4 of a {s.full_lr}x{s.full_lr} LR image"
    gb = 2**30

    def info(name: str) -> str:
        r = results[name]
        return (
            f"{name}: {r['recompute']:.2f}x the LR pixels through the first conv, "
            f"{flops / r['seconds'] / 1e9:.1f} GFLOP/s counted, page faults {r['fault_bytes'] / gb:.1f} GB, "
            f"kernel {r['sys_seconds']:.1f} s, user {r['user_seconds']:.1f} s"
        )

    tiled = (
        f"mdrn.models.inference.upscale (tile {tile}, overlap {overlap}, "
        f"budget {DEFAULT_MEMORY / gb:.1f} GiB), NHWC"
    )
    common = {"better": "lower", "repeats": 1}
    pairs = (
        ("time", "tiled", "split", f"4-quadrant split (scripts/bench_tiling.py {chop_name}), eager NCHW"),
        ("allocator hypothesis, time", "tiled", "default allocator", "the same without malloc_reuse"),
        (
            "body tiles under 32 MB maps, time",
            "tiled",
            "capped tiles",
            f"budget {capped / 2**20:.1f} MB, overlap {min(overlap, 32)}",
        ),
        (
            "in-place ReLU + residual add, time",
            "tiled",
            "out-of-place blocks",
            "the same, blocks out of place",
        ),
    )
    for what, ours, other, base_label in pairs:
        ctx.add(
            make_row(
                f"{label}: {what}",
                results[ours]["seconds"],
                results[other]["seconds"],
                "s",
                ours_label=tiled if ours == "tiled" else f"{tiled}, {ours}",
                baseline_label=base_label,
                notes=f"{info(ours)}; {info(other)}; one run per variant, each in its own process",
                extra={"ours": results[ours], "baseline": results[other], "flops": flops},
                **common,
            )
        )
    ctx.add(
        make_row(
            f"{label}: peak RSS",
            results["tiled"]["peak_rss"] / 2**20,
            results["split"]["peak_rss"] / 2**20,
            "MB",
            ours_label=tiled,
            baseline_label="4-quadrant split, eager NCHW",
            notes=(
                f"whole worker process; after setup {results['tiled']['setup_rss'] / 2**20:.0f} / "
                f"{results['split']['setup_rss'] / 2**20:.0f} MB; configured budget "
                f"{DEFAULT_MEMORY / 2**20:.0f} MB of activations + the 4096x4096 output "
                f"({3 * 16 * s.full_lr**2 * 4 / 2**20:.0f} MB) + framework"
            ),
            extra={"budget": DEFAULT_MEMORY},
            **common,
        )
    )
