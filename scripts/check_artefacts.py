"""Does a model invent texture? The lattice and edge-overshoot measurements of mdrn.protocol.artefacts for
several models side by side, at x2, x3 and x4, on held-out MR, CT, X-ray and natural images.

    python scripts/check_artefacts.py                                  # mdrn_small_v1 and mdrn_small
    python scripts/check_artefacts.py --models mdrn_small FILE.safetensors --save out/   # detail panels

For each image and scale:
- ``lattice``: :func:`mdrn.protocol.artefacts.periodic_ratio` of the image enlarged as it is (what a
  clinician sees), and ``lattice (restored)`` of its degraded-and-restored copy (LR = MATLAB bicubic 1/s);
  about 1 means no lattice; the goal is <= 2;
- ``overshoot``: :func:`mdrn.protocol.artefacts.edge_overshoot` of the restored copy: the excursion beyond
  the true image's local range at its strongest edges (99th percentile, % of the local edge contrast),
  the model's and bicubic's; the goal: no more rim than interpolation (or under 0.5% of the contrast).
Images (none of them trained on by a shipped model): pydicom's MR_small and CT_small (16 bit), the
chest radiograph RG1_UNCR (15 bit, centre 384x384; pydicom-data) and Set5's baby and woman (natural,
8 bit; ``--shared``). Each model runs with its own input window (``window=auto``). ``--save DIR`` writes
the detail each model adds at x4 (SR - bicubic, x4 in the image's display window) beside its SR image.
Prints which goals each model misses; with ``--strict`` exits 1 if any model misses one (the earlier
models are listed for comparison, so the default run, which shows v1's misses, exits 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from mdrn.io.images import image_to_tensor, read_image, tensor_to_array, write_image
from mdrn.models.inference import upscale
from mdrn.protocol.artefacts import OVERSHOOT_FLOOR, edge_overshoot, periodic_ratio
from mdrn.protocol.metrics import quantize
from mdrn.protocol.resize import degrade, imresize, modcrop
from mdrn.weights import load_model

ROOT = Path(__file__).resolve().parents[1]
#: goal of issue 21: lattice ratio at most this (overshoot: EdgeOvershoot.within)
LATTICE_GOAL = 2.0
#: name -> (source, crop side or None, what it is)
IMAGES = {
    "MR_small": ("pydicom:MR_small.dcm", None, "MR, 16 bit"),
    "CT_small": ("pydicom:CT_small.dcm", None, "CT, 16 bit"),
    "RG1_UNCR": ("pydicom:RG1_UNCR.dcm", 384, "chest X-ray, 15 bit"),
    "baby": ("set5:baby.png", None, "natural, 8 bit"),
    "woman": ("set5:woman.png", None, "natural, 8 bit"),
}


def load_images(shared: Path) -> dict[str, tuple[torch.Tensor, int, str]]:
    """The test images that are available: name -> ((1, C, H, W) in [0, 1], bit depth, description)."""
    from pydicom.data import get_testdata_file

    out = {}
    for name, (source, crop, what) in IMAGES.items():
        kind, file = source.split(":", 1)
        if kind == "pydicom":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                path = get_testdata_file(file, download=False)
        else:
            path = shared / "datasets" / "Set5" / file
        if not path or not Path(path).is_file():
            print(f"({name}: {file} not found, left out)")
            continue
        img = read_image(path)
        x = image_to_tensor(img)[None].float()
        if crop:
            h, w = x.shape[-2:]
            top, left = (h - min(h, crop)) // 2, (w - min(w, crop)) // 2
            x = x[..., top : top + crop, left : left + crop]
        out[name] = (x, img.bit_depth, what)
    return out


def _ratio(sr: torch.Tensor, bic: torch.Tensor, scale: int) -> float:
    """The periodic ratio, NaN where the image is too small for a spectrum (MR_small restored: 64 px)."""
    try:
        return periodic_ratio(sr, bic, scale)
    except ValueError:
        return float("nan")


def measure(net: torch.nn.Module, x: torch.Tensor, bits: int, scale: int) -> dict[str, float]:
    """Lattice ratios (as is, restored) and the overshoot of one model on one image at one scale."""
    with torch.inference_mode():
        sr = upscale(net, x, scale)
    row = {"lattice": _ratio(sr, imresize(x, scale), scale)}
    hr = modcrop(x, scale)
    lr = quantize(degrade(hr, scale), bits)
    with torch.inference_mode():
        restored = upscale(net, lr, scale)
    bic = imresize(lr, scale)
    row["lattice_restored"] = _ratio(restored, bic, scale)
    over = edge_overshoot(restored, bic, hr, scale, bit_depth=bits)
    row.update(overshoot=over.sr, overshoot_bicubic=over.bicubic, overshoot_ok=float(over.within()))
    return row


def save_panels(folder: Path, label: str, name: str, net: torch.nn.Module, x: torch.Tensor) -> None:
    """The x4 SR image and its detail (SR - bicubic) as 8-bit PNGs, both shown in the image's display
    window (0.5-99.5 percentiles); the detail x4 around mid-grey, so a lattice or rim is visible."""
    with torch.inference_mode():
        sr = upscale(net, x, 4)
    lo, hi = float(torch.quantile(x.flatten(), 0.005)), float(torch.quantile(x.flatten(), 0.995))
    width = max(hi - lo, 1e-6)
    detail = ((sr - imresize(x, 4)).mean(1, keepdim=True) / width * 4 + 0.5).clamp(0, 1)
    shown = ((sr - lo) / width).clamp(0, 1)
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, img in (("", shown), ("_detail", detail)):
        path = folder / f"{name}_x4_{label}{suffix}.png"
        write_image(path, tensor_to_array(img[0], 8), bit_depth=8, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    """Print the table; 1 if a goal is missed and ``--strict``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mdrn_small_v1", "mdrn_small"], help="names or files")
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("MDRN_SHARED", ROOT.parent / "shared"))
    )
    parser.add_argument("--save", type=Path, default=None, help="folder for x4 SR and detail panels")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any model misses a goal")
    args = parser.parse_args(argv)
    images = load_images(args.shared)
    nets = {label: load_model(label).eval() for label in args.models}
    missed = []
    print(f"{'image':10} {'scale':>5} {'model':>16} {'lattice':>8} {'restored':>9}  overshoot % (bicubic %)")
    for name, (x, bits, _what) in images.items():
        for scale in args.scales:
            for label, net in nets.items():
                r = measure(net, x, bits, scale)
                print(
                    f"{name:10} {'x' + str(scale):>5} {Path(label).stem:>16} {r['lattice']:8.2f} "
                    f"{r['lattice_restored']:9.2f}  {r['overshoot']:6.2f} ({r['overshoot_bicubic']:.2f})"
                )
                worst = max(r["lattice"], np.nan_to_num(r["lattice_restored"]))  # NaN: too small to measure
                if worst > LATTICE_GOAL or not r["overshoot_ok"]:
                    missed.append(f"{Path(label).stem} {name} x{scale}")
        if args.save is not None:
            for label, net in nets.items():
                save_panels(args.save, Path(label).stem, name, net, x)
    print(
        f"goals: lattice <= {LATTICE_GOAL} (as is and restored); overshoot <= bicubic's or "
        f"< {OVERSHOOT_FLOOR}% of the edge contrast"
    )
    if missed:
        print(f"missed ({len(missed)}): " + "; ".join(missed))
        return 1 if args.strict else 0
    print("all goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
