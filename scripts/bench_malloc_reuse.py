"""Forward time of MDRN on one LR tile under three settings of glibc's reuse of freed memory.

- ``none``: no reuse, the state the CLI and the app set (:func:`mdrn.perf.set_malloc_reuse` ``False``:
  maps of 4 MiB and more mmap-ed and page-faulted afresh);
- ``per call``: one :func:`mdrn.perf.malloc_reuse` block per network call (what
  ``mdrn.models.inference.upscale`` did per tile before it held one block for the whole image);
- ``one block``: reuse kept on across calls (what ``upscale`` now does over the tiles of an image).

The three settings alternate in rounds in one process (the machine's speed drifts); each round takes the
best of ``--calls`` calls per setting; the figure printed is the median over ``--rounds`` rounds. Random
weights (speed does not depend on the values), the inference fast path of ``mdrn.perf``.

    python scripts/bench_malloc_reuse.py [--blocks 80] [--feats 64] [--tile 64] [--rounds 5] [--calls 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mdrn.bench.core import build_mdrn
from mdrn.perf import fast_path, inference_context, malloc_reuse, prepare_for_inference, set_malloc_reuse


def main() -> None:
    """Print the median forward time per scale and setting."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=80)
    ap.add_argument("--feats", type=int, default=64)
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    path = fast_path("cpu")
    spec = {"n_resblocks": args.blocks, "n_feats": args.feats, "scales": [2, 3, 4]}
    net = prepare_for_inference(build_mdrn(spec).eval(), path=path)
    x = torch.rand(1, 3, args.tile, args.tile)
    set_malloc_reuse(False)

    def call(scale: int) -> None:
        with inference_context(path=path):
            net(x, scale)

    times: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.rounds):
        for scale in (2, 4):
            for mode in ("none", "per call", "one block"):
                if mode == "one block":
                    set_malloc_reuse(True)
                    call(scale)  # the block's first call faults its maps in, as a first tile does
                best = float("inf")
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    if mode == "per call":
                        with malloc_reuse(True):
                            call(scale)
                    else:
                        call(scale)
                    best = min(best, time.perf_counter() - t0)
                if mode == "one block":
                    set_malloc_reuse(False)
                times.setdefault((scale, mode), []).append(best)
    tile = f"{args.tile}x{args.tile}"
    print(f"MDRN B={args.blocks} F={args.feats}, {tile} LR tile, {torch.get_num_threads()} threads")
    for (scale, mode), ts in times.items():
        rounds = ", ".join(f"{t * 1e3:.0f}" for t in ts)
        print(f"x{scale} {mode:<10} {statistics.median(ts) * 1e3:7.1f} ms  (rounds: {rounds})")


if __name__ == "__main__":
    main()
