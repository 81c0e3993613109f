"""Check that no image a preset trained or validated on is, by content, an image the project reports on.

Every image of every recipe (``conf/experiment``) and recorded run (``experiments/results/train``: the
shipped model's included) that trained or validated on it, against every image of every set a table,
figure or model card reports (the benchmark sets found in SHARED/datasets and data/benchmark, the medical
images of Table 2, the sample data's test split, the presets' test sets), compared by content
(``mdrn.data.overlap``: resized, cropped and mirrored copies are found). Prints what was compared, every
flagged pair with the presets and sets involved, and the closest pair that was not flagged (the
threshold's margin); exit 1 if a pair is flagged.

Usage: python scripts/check_overlap.py [--shared DIR] [--data DIR] [--medical DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; return 1 if an image is flagged."""
    from mdrn.data import prepare_sample
    from mdrn.reproduce.leakage import check_leakage

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = os.environ.get("MDRN_SHARED", ROOT.parent / "shared")
    parser.add_argument("--shared", type=Path, default=Path(default), help="the ../shared folder")
    parser.add_argument(
        "--data", type=Path, default=ROOT / "data", help="data folder (sample data, benchmark)"
    )
    parser.add_argument(
        "--medical",
        type=Path,
        default=ROOT / "data" / "medical",
        help="the medical images (written if absent)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MDRN_SHARED", str(args.shared.resolve()))
    prepare_sample(args.data)
    with tempfile.TemporaryDirectory(prefix="mdrn-medical-") as tmp:
        medical = args.medical
        if not (medical / "Medical_8bit").is_dir():
            medical = Path(tmp)
            script = ROOT / "experiments" / "scripts" / "medical_images.py"
            subprocess.run(
                [sys.executable, str(script), "--out", str(medical)], check=True, capture_output=True
            )
        report = check_leakage(
            data_dir=args.data,
            medical_dir=medical,
            shared=args.shared.resolve(),
            cache_dir=args.data / "cache" / "overlap",
        )
        print(report.describe())
    return 1 if report.overlap.matches else 0


if __name__ == "__main__":
    raise SystemExit(main())
