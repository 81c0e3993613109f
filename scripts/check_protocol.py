"""Check how closely mdrn's protocol reproduces the reference data in ../shared; exit 1 if out of tolerance.

Per record of ../shared/reference/protocol/reference.json: the fraction of uint8 values off by one
(and the largest difference) of our LR (degrade of hr/) and SR (imresize of lr/), float32 and float64,
and our PSNR/SSIM minus BasicSR's (Y and RGB); then bicubic on ../shared/datasets/Set5. Every figure is
checked against the agreement ../shared/README.md expects (tests/protocol_data.py); each one outside it
is printed as OUT OF TOLERANCE and the exit status is 1.

Usage: python scripts/check_protocol.py [SHARED_DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from protocol_data import (  # noqa: E402
    MAX_OFF_BY_ONE,
    PSNR_TOLERANCE,
    SET5_BICUBIC,
    SET5_TOLERANCE,
    SSIM_TOLERANCE,
    metric_check,
    record_name,
    records,
    resize_check,
    set5_bicubic,
)

BAD = "OUT OF TOLERANCE"


def check(shared: Path) -> list[str]:
    """Print the per-record differences and the Set5 bicubic scores; return the failed checks."""
    protocol = shared / "reference" / "protocol"
    worst: dict[str, float] = {}
    failures: list[str] = []
    print(
        f"{'record':24s} {'LR f32':>14s} {'SR f32':>14s} {'LR f64':>14s} {'SR f64':>14s}   "
        f"{'dPSNR_y':>9s} {'dSSIM_y':>9s} {'dPSNR_rgb':>9s} {'dSSIM_rgb':>9s}"
    )
    for rec in records(protocol):
        name = record_name(rec)
        cells = []
        for dtype, tag in ((torch.float32, "f32"), (torch.float64, "f64")):
            for kind, (fraction, largest) in resize_check(protocol, rec, dtype).items():
                cells.append(f"{fraction:8.4%} max{largest}")
                if fraction > MAX_OFF_BY_ONE or largest > 1:
                    failures.append(f"{name} {kind} {tag}: {fraction:.4%} off by one, largest {largest}")
                key = f"{kind} {tag} off-by-one fraction"
                worst[key] = max(worst.get(key, 0.0), fraction)
                key = f"{kind} {tag} largest difference"
                worst[key] = max(worst.get(key, 0), largest)
        diff = metric_check(protocol, rec)
        for key, value in diff.items():
            worst[f"|d {key}|"] = max(worst.get(f"|d {key}|", 0.0), abs(value))
            if abs(value) > (PSNR_TOLERANCE if key.startswith("psnr") else SSIM_TOLERANCE):
                failures.append(f"{name} {key}: off by {value:.3g}")
        print(
            f"{record_name(rec):24s} "
            + " ".join(f"{c:>14s}" for c in cells)
            + "   "
            + " ".join(f"{diff[k]:9.1e}" for k in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"))
        )
    print("\nworst over the records:")
    for key, value in worst.items():
        print(f"  {key:32s} {value:.3g}" if isinstance(value, float) else f"  {key:32s} {value}")
    print(
        f"tolerances: off-by-one fraction <= {MAX_OFF_BY_ONE:.4%}, largest difference <= 1, "
        f"|d psnr| <= {PSNR_TOLERANCE:g} dB, |d ssim| <= {SSIM_TOLERANCE:g}"
    )
    print("\nSet5 bicubic (float-Y protocol):")
    for scale, expected in SET5_BICUBIC.items():
        p, s = set5_bicubic(shared / "datasets" / "Set5", scale)
        verdict = "ok" if abs(p - expected) <= SET5_TOLERANCE else BAD
        if verdict != "ok":
            failures.append(f"Set5 bicubic x{scale}: {p:.4f} dB, expected {expected} +- {SET5_TOLERANCE}")
        print(
            f"  x{scale}: PSNR {p:.4f} dB (expected {expected} +- {SET5_TOLERANCE}: {verdict}), SSIM {s:.4f}"
        )
    if failures:
        print(f"\n{len(failures)} check(s) {BAD}:")
        for line in failures:
            print(f"  {BAD}: {line}")
    else:
        print("\nall checks within tolerance")
    return failures


def main(argv: list[str] | None = None) -> int:
    """Run the checks; return 1 if any is out of tolerance."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = os.environ.get("MDRN_SHARED", ROOT.parent / "shared")
    parser.add_argument("shared", nargs="?", type=Path, default=Path(default), help="the ../shared folder")
    args = parser.parse_args(argv)
    return 1 if check(args.shared.resolve()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
