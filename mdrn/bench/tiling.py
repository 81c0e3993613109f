"""Bench section ``tiling``: tiled x4 inference of a large image against the 4-quadrant split."""

from __future__ import annotations

import multiprocessing as mp
import time
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
    """Worker process of the tiled rows: build the net and image, run on request, report peak RSS."""
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
        if spec["variant"] == "ours":
            from mdrn.inference import upscale

            net = prepare_for_inference(net, device)

            def run() -> None:
                with inference_context(device):
                    upscale(net, x, scale, tile=spec["tile"], overlap=spec["overlap"])

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
                t0 = time.perf_counter()
                run()
                sync(device)
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

    script = load_script("bench_tiling")
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
    net = build_mdrn(s.tile_model)
    flops = count_flops(net, (1, 3, s.tile_lr, s.tile_lr), 4).forward
    to, tb = median(times["ours"]), median(times["base"])
    paper = count_flops(build_mdrn(dict(PAPER_MODEL)), (1, 3, s.tile_lr, s.tile_lr), 4).forward
    limit = ctx.facts.get("conv_limit_tile", {}).get("gflops")
    label = f"MDRN {describe(s.tile_model)} x4 of a {s.tile_lr}x{s.tile_lr} LR image"
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
