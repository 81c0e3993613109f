"""Print how closely mdrn's protocol reproduces the reference data in ../shared.

Per record of ../shared/reference/protocol/reference.json: the fraction of uint8 values off by one
(and the largest difference) of our LR (degrade of hr/) and SR (imresize of lr/), float32 and float64,
and our PSNR/SSIM minus BasicSR's (Y and RGB); then bicubic on ../shared/datasets/Set5.

Usage: python scripts/check_protocol.py [SHARED_DIR]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from protocol_data import (  # noqa: E402
    SET5_BICUBIC,
    metric_check,
    record_name,
    records,
    resize_check,
    set5_bicubic,
)


def main(argv: list[str]) -> int:
    """Print the per-record differences and the Set5 bicubic scores; return 0."""
    default = os.environ.get("MDRN_SHARED", ROOT.parent / "shared")
    shared = Path(argv[0] if argv else default).resolve()
    protocol = shared / "reference" / "protocol"
    worst: dict[str, float] = {}
    print(
        f"{'record':24s} {'LR f32':>14s} {'SR f32':>14s} {'LR f64':>14s} {'SR f64':>14s}   "
        f"{'dPSNR_y':>9s} {'dSSIM_y':>9s} {'dPSNR_rgb':>9s} {'dSSIM_rgb':>9s}"
    )
    for rec in records(protocol):
        cells = []
        for dtype, tag in ((torch.float32, "f32"), (torch.float64, "f64")):
            for kind, (fraction, largest) in resize_check(protocol, rec, dtype).items():
                cells.append(f"{fraction:8.4%} max{largest}")
                key = f"{kind} {tag} off-by-one fraction"
                worst[key] = max(worst.get(key, 0.0), fraction)
                key = f"{kind} {tag} largest difference"
                worst[key] = max(worst.get(key, 0), largest)
        diff = metric_check(protocol, rec)
        for key, value in diff.items():
            worst[f"|d {key}|"] = max(worst.get(f"|d {key}|", 0.0), abs(value))
        print(
            f"{record_name(rec):24s} "
            + " ".join(f"{c:>14s}" for c in cells)
            + "   "
            + " ".join(f"{diff[k]:9.1e}" for k in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"))
        )
    print("\nworst over the records:")
    for key, value in worst.items():
        print(f"  {key:32s} {value:.3g}" if isinstance(value, float) else f"  {key:32s} {value}")
    print("\nSet5 bicubic (float-Y protocol):")
    for scale, expected in SET5_BICUBIC.items():
        p, s = set5_bicubic(shared / "datasets" / "Set5", scale)
        verdict = "ok" if abs(p - expected) <= 0.002 else "OUT OF TOLERANCE"
        print(f"  x{scale}: PSNR {p:.4f} dB (expected {expected} +- 0.002: {verdict}), SSIM {s:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
