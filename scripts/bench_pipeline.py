"""Speed of the training data pipeline (decode a PNG per patch vs the decoded-image cache) and of MDRN steps.

    python scripts/bench_pipeline.py [--images 3] [--seconds 5] [--steps 1] [--workdir /tmp/mdrn_bench]

Generates DIV2K-like 2040x1356 PNGs (and x2 LR PNGs) once in ``--workdir``, then prints patches/s of
both pipelines (48x48 LR patches, x2, one process) and training steps/s of MDRN B=80, F=64, batch 16,
48x48 LR on CPU. The measuring functions are in :mod:`mdrn.data.bench_utils`.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from mdrn.data.bench_utils import cache_patch_rate, decode_per_patch_rate, make_div2k_like, train_steps_per_s


def main() -> None:
    """Run the measurements and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time of each pipeline")
    ap.add_argument("--steps", type=int, default=1, help="measured MDRN training steps (after 1 warm-up)")
    ap.add_argument("--skip-train", action="store_true", help="only the data pipeline")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mdrn_bench_pipeline"))
    args = ap.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    files, lr_dir = make_div2k_like(args.workdir / "images", n=args.images)
    print(f"{len(files)} DIV2K-like 2040x1356 PNGs + x2 LR ready in {time.perf_counter() - t0:.1f} s")
    decode = decode_per_patch_rate(files, lr_dir, seconds=args.seconds)
    print(f"decode a PNG per patch (HR + LR):   {decode:9.1f} patches/s")
    shutil.rmtree(args.workdir / "cache", ignore_errors=True)
    cached, build = cache_patch_rate(files, args.workdir / "cache", lr_dir, seconds=args.seconds)
    print(f"decoded-image cache (memory-mapped): {cached:9.1f} patches/s (one-time build {build:.1f} s)")
    print(f"cache / decode-per-patch:            {cached / decode:9.1f}x (goal >= 20x)")
    if not args.skip_train:
        rate = train_steps_per_s(steps=args.steps)
        print(f"MDRN B=80 F=64, batch 16, 48x48 LR x2, CPU: {rate:.4f} steps/s ({1 / rate:.1f} s/step)")


if __name__ == "__main__":
    main()
