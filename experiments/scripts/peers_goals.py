"""Issue 21's goals for the shipped model, read from the peers table (``experiments/results/peers.csv``).

    make peers SHARED=../shared && python experiments/scripts/peers_goals.py

Prints, per intensity-window section, ``mdrn_small`` (and ``mdrn_small_v1``) against CARN-M (published
and measured) and IMDN on Set5, and against IMDN on each medical held-out set, as differences in dB.
"""

from __future__ import annotations

import csv
from collections import defaultdict

from mdrn.reproduce.results import RESULTS

#: the papers' Set5 PSNR (dB) at x2 / x3 / x4
CARN_M_PAPER = {2: 37.53, 3: 33.99, 4: 31.92}
IMDN_PAPER = {2: 38.00, 3: 34.36, 4: 32.21}


def main() -> None:
    """Print the differences."""
    with (RESULTS / "peers.csv").open() as f:
        rows = list(csv.DictReader(f))
    psnr: dict[tuple[str, str], dict[tuple[str, int], float]] = defaultdict(dict)
    for r in rows:
        psnr[(r["model"], r["window"])][(r["set"], int(r["scale"]))] = float(r["psnr"])
    for window in sorted({r["window"] for r in rows}):
        print(f"## window {window}")
        ours, v1, carn = (psnr[(m, window)] for m in ("mdrn_small", "mdrn_small_v1", "carn_m"))
        for s in (2, 3, 4):
            k = ("Set5", s)
            imdn = psnr[(f"imdn_x{s}", window)][k]
            print(
                f"Set5 x{s}: mdrn_small {ours[k]:.2f} (v1 {v1.get(k, float('nan')):.2f}); CARN-M paper "
                f"{CARN_M_PAPER[s]:.2f} ({ours[k] - CARN_M_PAPER[s]:+.2f}), measured {carn[k]:.2f} "
                f"({ours[k] - carn[k]:+.2f}); IMDN paper {IMDN_PAPER[s]:.2f} "
                f"({ours[k] - IMDN_PAPER[s]:+.2f}), measured {imdn:.2f}"
            )
        for name in ("Medical_8bit", "Medical_10to16bit", "8bit", "16bit"):
            for s in (2, 3, 4):
                k = (name, s)
                if k in ours:
                    imdn = psnr[(f"imdn_x{s}", window)][k]
                    print(f"{name} x{s}: mdrn_small {ours[k]:.2f} (v1 {v1.get(k, float('nan')):.2f}); "
                          f"IMDN {imdn:.2f} ({ours[k] - imdn:+.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
