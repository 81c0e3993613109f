"""Figs. 10-14: for each image and scale, the panel LR | low frequency | high frequency | SR | HR, with crops.

    python experiments/scripts/panels.py --weights mdrn_small \
        --images data/medical/Medical_8bit data/medical/Medical_10to16bit --out experiments/results/figs10_14

For a network with the paper's low/high-frequency split (``bicubic_skip``, e.g. the shipped
``mdrn_small``) the middle panels are the model's own parts: its low-frequency image
(``mdrn.models.inference.low_frequency_image``, MATLAB bicubic) and its high-frequency image (SR minus it,
what the network adds). For a network without the split they are the bicubic reference and SR - bicubic.
Each panel is ``<out>/<image>_x<s>.png``; ``<out>/panels.csv`` lists them with the model, which split was
shown, and the bicubic and SR PSNR (at the image's own bit depth, the protocol of
``mdrn.protocol.metrics.score``). LR as everywhere (``mdrn.data.cache.make_lr``), SR by
``mdrn.models.inference.upscale``, figure by ``mdrn.reproduce.viz.sr_panel``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mdrn.data.cache import make_lr
from mdrn.data.sources import list_images
from mdrn.io.images import image_to_tensor, is_image_file, read_image
from mdrn.models import Bicubic
from mdrn.models.inference import low_frequency_image, upscale
from mdrn.protocol.metrics import score
from mdrn.protocol.resize import modcrop
from mdrn.reproduce.results import write_csv
from mdrn.reproduce.viz import save_figure, sr_panel
from mdrn.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--weights", required=True, help="network to show: a file mdrn.weights loads, or a name (mdrn_small)"
    )
    parser.add_argument("--name", help="the model's name in titles and panels.csv (default: the file's stem)")
    parser.add_argument("--images", nargs="+", type=Path, required=True, help="image files or folders")
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args()
    net = load_model(args.weights)
    name = args.name or Path(args.weights).stem
    bicubic = Bicubic(scales=args.scales)
    files = [f for p in args.images for f in (list_images(p) if p.is_dir() else [p]) if is_image_file(f)]
    rows = []
    for path in files:
        img = read_image(path)
        full = image_to_tensor(img, torch.float64)[None]
        for s in args.scales:
            hr = modcrop(full, s)
            lr = make_lr(hr, s, img.bit_depth).float()
            bic = bicubic(lr, s)
            sr = upscale(net, lr, s)
            low = low_frequency_image(net, lr, s)
            split = low is not None
            pb, _ = score(bic.double(), hr, scale=s, bit_depth=img.bit_depth)
            ps, _ = score(sr.double(), hr, scale=s, bit_depth=img.bit_depth)
            title = (
                f"{path.stem} x{s} ({img.bit_depth} bit): bicubic {float(pb):.2f} dB, "
                f"{name} {float(ps):.2f} dB"
            )
            fig = sr_panel(
                lr, low if split else bic, sr, hr, scale=s, bit_depth=img.bit_depth, title=title, split=split
            )
            figure = f"{path.stem}_x{s}.png"
            save_figure(fig, args.out / figure, dpi=args.dpi)
            rows.append(
                {
                    "model": name,
                    "split": "model" if split else "bicubic reference",
                    "image": path.stem,
                    "scale": s,
                    "bit_depth": img.bit_depth,
                    "bicubic_psnr": float(pb),
                    "sr_psnr": float(ps),
                    "figure": figure,
                }
            )
            print(title, "->", args.out / figure, flush=True)
    columns = ["model", "split", "image", "scale", "bit_depth", "bicubic_psnr", "sr_psnr", "figure"]
    write_csv(args.out / "panels.csv", rows, columns)


if __name__ == "__main__":
    main()
