"""Where an MDRN forward's time goes inside oneDNN: each primitive's execution time, as oneDNN reports it.

    python scripts/onednn_breakdown.py [--tile 64] [--scales 2 4] [--blocks 80] [--passes 3]

Runs the CPU fast path (NHWC fp32, inference mode, glibc memory reuse, as ``upscale`` runs a tile) under
``torch.backends.mkldnn.verbose`` and sums the execution times oneDNN prints per primitive (convolutions
by shape, weight reorders), against the same number of calls of one 64->64 convolution on one input (the
bench's conv limit). Verbose mode slows the Python side (a printed line per primitive), so each variant
is also timed without it (best of ``--passes`` passes): that wall time minus oneDNN's sums is the time
spent outside oneDNN (PyTorch's own operators, dispatch, Python; and convolutions PyTorch does not hand to
oneDNN: on 16x16 tiles and smaller it runs the 3x3 ones itself). Prints a table per variant.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict

import torch
from torch import nn

from mdrn.bench.core import PAPER_MODEL, build_mdrn
from mdrn.perf import inference_context, malloc_reuse, prepare_for_inference


def _verbose_lines(call, passes: int) -> tuple[list[str], float]:
    """oneDNN's verbose lines printed while ``call`` runs ``passes`` times, and the wall seconds per pass."""
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                t0 = time.perf_counter()
                for _ in range(passes):
                    call()
                wall = (time.perf_counter() - t0) / passes
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        return [line for line in log if ",primitive,exec," in line], wall


def _best_wall(call, passes: int) -> float:
    """Best wall-clock seconds of ``passes`` calls without verbose output."""
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def _table(name: str, lines: list[str], wall: float, passes: int, quiet_wall: float) -> float:
    """Print the per-primitive sums of one variant; return oneDNN's milliseconds per pass."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for line in lines:
        fields = line.strip().split(",")
        kind, problem, ms = fields[5], fields[-2], float(fields[-1])
        sums[(kind, problem)][0] += 1
        sums[(kind, problem)][1] += ms
    total = sum(v[1] for v in sums.values()) / passes
    print(
        f"\n{name}: oneDNN {total:.1f} ms per pass; wall without verbose {quiet_wall * 1e3:.1f} ms "
        f"(best), so {quiet_wall * 1e3 - total:.1f} ms outside oneDNN; wall with verbose printing "
        f"{wall * 1e3:.1f} ms"
    )
    print("| primitive | problem | calls | ms per pass | share | ms per call |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for (kind, problem), (calls, ms) in sorted(sums.items(), key=lambda kv: -kv[1][1]):
        per = ms / passes
        share = per / total
        print(f"| {kind} | {problem[:60]} | {calls // passes} | {per:.2f} | {share:.1%} | {ms / calls:.3f} |")
    return total


def main() -> None:
    """Parse the arguments and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=64, help="LR tile side (default 64, the bench's)")
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--blocks", type=int, default=int(PAPER_MODEL["n_resblocks"]))
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    if not torch.backends.mkldnn.is_available():
        raise SystemExit("this torch build has no oneDNN (mkldnn): nothing to break down")
    model = {**PAPER_MODEL, "n_resblocks": args.blocks}
    net = prepare_for_inference(build_mdrn(model), "cpu")
    x = torch.rand(1, 3, args.tile, args.tile)
    feats = int(model["n_feats"])
    conv = nn.Conv2d(feats, feats, 3, padding=1).to(memory_format=torch.channels_last)
    xc = torch.rand(1, feats, args.tile, args.tile).contiguous(memory_format=torch.channels_last)
    n_convs = sum(1 for m in net.body.modules() if isinstance(m, nn.Conv2d))
    threads = torch.get_num_threads()
    print(f"MDRN {model}, {args.tile}x{args.tile} LR tile, {threads} threads, torch {torch.__version__}")
    with malloc_reuse(True), inference_context("cpu"):
        for scale in args.scales:
            for _ in range(2):
                net(x, scale)
            quiet = _best_wall(lambda scale=scale: net(x, scale), args.passes)
            lines, wall = _verbose_lines(lambda scale=scale: net(x, scale), args.passes)
            _table(f"forward x{scale}", lines, wall, args.passes, quiet)

        def limit() -> None:
            for _ in range(n_convs):
                conv(xc)

        limit()
        quiet = _best_wall(limit, args.passes)
        lines, wall = _verbose_lines(limit, args.passes)
        name = f"conv limit: one 64->64 convolution on one input, {n_convs} calls"
        _table(name, lines, wall, args.passes, quiet)


if __name__ == "__main__":
    main()
