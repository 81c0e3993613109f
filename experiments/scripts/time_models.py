"""Claim: MDRN reconstructs faster than SRCNN despite more parameters (time per image, same machine, one run).

    python experiments/scripts/time_models.py --out experiments/results/claims/timing.csv

Times the forward pass (``torch.inference_mode``, float32, this machine's threads) of the paper's MDRN
(B=80, F=64; weights do not change the time), the CPU preset MDRN (B=4, F=32) and SRCNN 9-1-5 on one
image of ``--size`` x ``--size`` HR pixels at x2, x3, x4: MDRN runs on the LR image, SRCNN on the
bicubic-upscaled one (its bicubic enlargement is included, as it is part of SRCNN's reconstruction).
The median of ``--repeats`` runs after one warm-up is recorded.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from mdrn.models import MDRN, SRCNN
from mdrn.reproduce.results import write_csv


def seconds(net: torch.nn.Module, x: torch.Tensor, scale: int, repeats: int) -> float:
    """Median wall time of ``net(x, scale)`` over ``repeats`` runs after one warm-up."""
    times = []
    with torch.inference_mode():
        net(x, scale)
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x, scale)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=240, help="HR side in pixels (divisible by 2, 3, 4)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {
        "MDRN (B=80, F=64)": MDRN(),
        "MDRN CPU preset (B=4, F=32)": MDRN(n_resblocks=4, n_feats=32),
        "SRCNN 9-1-5": SRCNN(),
    }
    rows = []
    for name, net in models.items():
        net.eval()
        params = sum(p.numel() for p in net.parameters())
        for s in (2, 3, 4):
            x = torch.rand(1, 3, args.size // s, args.size // s)
            t = seconds(net, x, s, args.repeats)
            rows.append(
                {
                    "model": name,
                    "params": params,
                    "scale": s,
                    "hr_size": f"{args.size}x{args.size}",
                    "seconds": t,
                    "threads": torch.get_num_threads(),
                }
            )
            print(f"{name:30s} x{s}: {t:.4f} s per {args.size}x{args.size} image", flush=True)
    write_csv(args.out, rows, ["model", "params", "scale", "hr_size", "seconds", "threads"])


if __name__ == "__main__":
    main()
