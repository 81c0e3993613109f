"""Bicubic scored the MATLAB way (Y rounded to uint8), to explain the gap to the published Bicubic rows.

The published Bicubic figures come from MATLAB code that works on uint8 images throughout: the LR and the
bicubic enlargement are stored as uint8, and ``rgb2ycbcr`` of a uint8 image returns a *rounded* uint8 Y.
Our protocol (``mdrn.protocol.metrics.score``) keeps Y in float. This script scores the same bicubic images
with Y rounded to 8 bits, so the two conventions can be compared on the same pixels. It writes one CSV row per
image: ``set,scale,image,psnr,ssim``.

    python experiments/scripts/bicubic_uint8_y.py --root ../shared/datasets --sets Set5 \
        --out experiments/results/table1/uint8y/bicubic.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mdrn.data.sources import benchmark_files
from mdrn.io.images import image_to_tensor, read_image
from mdrn.models import Bicubic
from mdrn.protocol.color import rgb_to_y
from mdrn.protocol.metrics import psnr, quantize, ssim
from mdrn.protocol.resize import degrade, modcrop
from mdrn.reproduce.results import write_csv


def uint8_y(x: torch.Tensor) -> torch.Tensor:
    """Y of an RGB image in [0, 1] rounded to 8 bits, as MATLAB's rgb2ycbcr does for uint8 input."""
    return quantize(rgb_to_y(x) if x.shape[1] == 3 else x, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--sets", nargs="+", default=["Set5"])
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    net = Bicubic()
    rows = []
    for name in args.sets:
        for path in benchmark_files(args.root, name):
            img = image_to_tensor(read_image(path), torch.float64)[None]
            for s in args.scales:
                hr = modcrop(img, s)
                lr = quantize(degrade(hr, s), 8)  # LR stored as uint8
                sr = quantize(net(lr, s), 8)  # bicubic enlargement stored as uint8
                a, b = uint8_y(sr), uint8_y(hr)
                p = float(psnr(a, b, shave=s)[0])
                q = float(ssim(a, b, shave=s)[0])
                rows.append({"set": name, "scale": s, "image": path.stem, "psnr": p, "ssim": q})
                print(f"{name} x{s} {path.stem}: {p:.4f} dB {q:.4f}")
    write_csv(args.out, rows, ["set", "scale", "image", "psnr", "ssim"])


if __name__ == "__main__":
    main()
