"""Check the public lightweight models (CARN-M, IMDN, RLFN, RLFN-S) against their published Set5 PSNR.

Run from the project root: ``python scripts/check_peers.py [--shared ../shared] [--models carn_m ...]``
(``--shared`` defaults to ``$MDRN_SHARED``, else ``../shared``).
Each authors' weight file in ``<shared>/peers/`` is loaded through ``mdrn.weights.load_model`` (its sha256
checked against ``mdrn.models.peers.PEER_WEIGHTS`` first) and scored on Set5 at every scale it serves:
LR = MATLAB-bicubic degradation quantized to uint8 RGB, the whole image through the network, scored with
``mdrn.protocol.metrics.score`` (Y in float, border = scale). Printed beside it: the same output scored
with Y rounded to uint8 (the MATLAB ``rgb2ycbcr`` convention of older papers), the published PSNR
(``experiments/published.json``, from ``<shared>/peers/README.md``) and the difference. A model more than
``TOLERANCE`` from its published figure is a MISMATCH (exit status 1), unless ``KNOWN`` explains it and it
is above the figure (then KNOWN and its reason are printed). A model without a published figure (RLFN-S)
is printed, not judged.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from mdrn.io.download import sha256_file
from mdrn.io.images import image_to_tensor, read_image
from mdrn.models.peers import PEER_WEIGHTS
from mdrn.protocol.color import rgb_to_y
from mdrn.protocol.metrics import psnr, quantize, score
from mdrn.protocol.resize import degrade, modcrop
from mdrn.reproduce.results import load_published
from mdrn.weights import load_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MDRN_SHARED", ROOT.parent / "shared"))
#: largest |measured - published| accepted (dB)
TOLERANCE = 0.05
BAD = "MISMATCH"
#: (model, scale) -> why the measured figure differs from the paper's by more than TOLERANCE
KNOWN: dict[tuple[str, int], str] = {
    (name, s): (
        "above the paper, not below, and not from the protocol: this network gives the authors' code's "
        "output exactly with their file, and its multiply-adds equal the paper's; the authors' README says "
        "the released model was retrained with changed settings (batch and patch 64, grouped upsampler), so "
        "carn_m.pth is likely not the run behind the paper's figures"
    )
    for name, s in (("carn_m", 2), ("carn_m", 3))
}


def set5_psnr(net: torch.nn.Module, set5_dir: Path, scale: int) -> dict[str, float]:
    """Mean Set5 scores at ``scale``: ``psnr``/``ssim`` (the protocol) and ``psnr_uint8_y`` (Y rounded)."""
    rows = []
    for path in sorted(set5_dir.glob("*.png")):
        hr = modcrop(image_to_tensor(read_image(path), torch.float64)[None], scale)
        with torch.inference_mode():
            sr = net(quantize(degrade(hr, scale)).float(), scale).double()
        p, s = score(sr, hr, scale=scale)
        rounded = [quantize(rgb_to_y(quantize(x)), 8) for x in (sr, hr)]
        rows.append((p.item(), s.item(), psnr(*rounded, shave=scale).item()))
    return {
        key: sum(r[i] for r in rows) / len(rows) for i, key in enumerate(("psnr", "ssim", "psnr_uint8_y"))
    }


def check(shared: Path, names: list[str]) -> tuple[list[dict], list[str]]:
    """Score every model in ``names``; print one line per scale; return (rows, failures)."""
    published = load_published()["lightweight_peers"]
    rows, failures = [], []
    print(f"Set5 PSNR (dB) / SSIM; published from {shared / 'peers' / 'README.md'}; tolerance {TOLERANCE} dB")
    print(f"  {'model':10s} {'scale':5s} {'measured':>17s} {'uint8 Y':>8s} {'published':>9s} {'diff':>7s}")
    for name in names:
        path = shared / "peers" / f"{name}.pth"
        if not path.is_file():
            failures.append(f"{path}: no such file")
            print(f"  {name:10s} {BAD}: {failures[-1]}")
            continue
        if sha256_file(path) != PEER_WEIGHTS[name].sha256:
            failures.append(f"{path}: sha256 is not the pinned {PEER_WEIGHTS[name].sha256}")
            print(f"  {name:10s} {BAD}: {failures[-1]}")
            continue
        net = load_model(path)
        pub_model = published.get(PEER_WEIGHTS[name].model, {}).get("Set5", {})
        for scale in net.scales:
            got = set5_psnr(net, shared / "datasets" / "Set5", scale)
            pub = pub_model.get(str(scale))
            diff = None if pub is None else got["psnr"] - pub
            if diff is None:
                verdict = "no published figure"
            elif abs(diff) <= TOLERANCE:
                verdict = "OK"
            elif (name, scale) in KNOWN and diff > 0:  # explained only above the paper
                verdict = f"KNOWN: {KNOWN[(name, scale)]}"
            else:
                verdict = BAD
                failures.append(f"{name} x{scale}: {got['psnr']:.3f} dB, published {pub} ({diff:+.3f})")
            rows.append({"model": name, "scale": scale, **got, "published": pub, "diff": diff})
            pub_text = "-" if pub is None else f"{pub:.2f}"
            diff_text = "" if diff is None else f"{diff:+.3f}"
            measured = f"{got['psnr']:8.3f} / {got['ssim']:.4f} {got['psnr_uint8_y']:8.3f}"
            print(
                f"  {name:10s} x{scale:<4d} {measured} {pub_text:>9s} {diff_text:>7s}  {verdict}", flush=True
            )
    if failures:
        print(f"\n{len(failures)} check(s) {BAD}:")
        for line in failures:
            print(f"  {BAD}: {line}")
    else:
        print("\nall checks OK (KNOWN lines explained above)")
    return rows, failures


def main(argv: list[str] | None = None) -> int:
    """Run the checks; return 1 if any fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=SHARED,
        help="the ../shared folder (default: $MDRN_SHARED or ../shared)",
    )
    parser.add_argument("--models", nargs="+", default=list(PEER_WEIGHTS), choices=list(PEER_WEIGHTS))
    args = parser.parse_args(argv)
    return 1 if check(args.shared, args.models)[1] else 0


if __name__ == "__main__":
    sys.exit(main())
