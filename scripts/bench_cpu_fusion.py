"""CPU inference with and without the fused residual blocks of :mod:`mdrn.models.cpu_fusion`.

One residual block (64->64 3x3 convolutions on a 1x64xTxT map) and the whole MDRN on one LR tile at x2
and x4, each unfused (the module's own conv, in-place ReLU, conv, in-place add) and fused (oneDNN
conv+ReLU, conv+add on reordered weights), both on the inference fast path of ``mdrn.perf`` under one
:func:`mdrn.perf.malloc_reuse` block (as ``upscale`` runs tiles). The variants alternate in rounds in
one process (the machine's speed drifts); each round takes the best of ``--calls`` calls per variant;
the figure printed is the median over ``--rounds`` rounds, and the largest output difference.

    python scripts/bench_cpu_fusion.py [--blocks 80] [--feats 64] [--tile 64] [--rounds 7] [--calls 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from mdrn.bench.core import build_mdrn
from mdrn.models.blocks import ResBlock
from mdrn.models.cpu_fusion import available, unfuse_resblocks
from mdrn.perf import fast_path, inference_context, malloc_reuse, prepare_for_inference


def _median_best(calls: dict[str, Callable[[], object]], rounds: int, per_round: int) -> dict[str, float]:
    """Median over rounds of each variant's best call (ms), the variants alternating."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    for r in range(rounds):
        for k in list(calls) if r % 2 == 0 else list(calls)[::-1]:
            best = float("inf")
            for _ in range(per_round):
                t0 = time.perf_counter()
                calls[k]()
                best = min(best, time.perf_counter() - t0)
            times[k].append(best * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    """Print the median times of the block and the network, unfused and fused, and the speed-up."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=80)
    ap.add_argument("--feats", type=int, default=64)
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    if not available():
        raise SystemExit("this torch build lacks oneDNN's fused convolution ops: nothing to compare")
    path = fast_path("cpu")
    torch.manual_seed(0)
    t, f = args.tile, args.feats
    block = prepare_for_inference(ResBlock(f), path=path)
    block_plain = copy.deepcopy(block)  # a deep copy runs unfused
    xb = torch.rand(1, f, t, t).contiguous(memory_format=torch.channels_last)
    spec = {"n_resblocks": args.blocks, "n_feats": f, "scales": [2, 3, 4]}
    fused = prepare_for_inference(build_mdrn(spec), path=path)
    plain = prepare_for_inference(build_mdrn(spec), path=path)
    unfuse_resblocks(plain)
    x = torch.rand(1, 3, t, t)
    print(f"threads {torch.get_num_threads()}, tile {t}x{t}, {args.rounds} rounds x best of {args.calls}")
    with malloc_reuse(), inference_context(path=path):
        cases = [(f"ResBlock {f}->{f} 3x3 on 1x{f}x{t}x{t}", block_plain, block, (xb,))]
        cases += [(f"MDRN B={args.blocks} F={f} x{s}", plain, fused, (x, s)) for s in (2, 4)]
        for name, a, b, inputs in cases:
            diff = float((a(*inputs) - b(*inputs)).abs().max())
            calls = {"unfused": partial(a, *inputs), "fused": partial(b, *inputs)}
            med = _median_best(calls, args.rounds, args.calls)
            print(
                f"{name}: unfused {med['unfused']:.2f} ms, fused {med['fused']:.2f} ms "
                f"({med['unfused'] / med['fused'] - 1:+.1%} speed), max |diff| {diff:.1e}"
            )


if __name__ == "__main__":
    main()
