"""Check mdrn against the official models: parameter counts, converted official outputs, VDSR on Set5.

Run from the project root: ``python scripts/check_official.py [--shared ../shared] [--skip-set5]``.
Prints the trainable parameter counts of MDRN/EDSR next to the official ones (summary.json), the max
absolute difference (0..255 scale) between our outputs and the official EDSR-PyTorch outputs at every
scale, and the Set5 PSNR/SSIM of VDSR with the official weights (LR = MATLAB-bicubic degrade quantized to
uint8 RGB, network on Y in float, bicubic chroma, scored with ``mdrn.protocol.metrics.score``). A count that
differs, an output further than ``OUTPUT_TOLERANCE`` or a VDSR score further than ``VDSR_TOLERANCE``
from the published one is printed as MISMATCH and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mdrn.io.images import image_to_tensor, read_image
from mdrn.models import build_model
from mdrn.protocol.metrics import quantize, score
from mdrn.protocol.resize import degrade, modcrop
from mdrn.weights import convert_official, load_model

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ("mdsr", "mdsr_baseline", "edsr_baseline_x2", "edsr_baseline_x3", "edsr_baseline_x4", "edsr_x2",
            "edsr_x3", "edsr_x4")  # fmt: skip
#: max |ours - official| on the 0..255 scale (fp32 summation order; measured: 6.1e-5 to 9.2e-5)
OUTPUT_TOLERANCE = 2e-4
#: VDSR on Set5 vs the published PSNR (dB; the paper's MATLAB scoring rounds Y: measured <= 0.03)
VDSR_TOLERANCE = 0.05
BAD = "MISMATCH"


def param_counts(ref_dir: Path) -> dict[str, tuple[int, int]]:
    """Return {official name: (our trainable count, official count)}, ours built on the meta device."""
    summary = json.loads((ref_dir / "summary.json").read_text())
    out = {}
    for name in OFFICIAL:
        shapes = json.loads((ref_dir / f"{name}.json").read_text())
        spec, _ = convert_official({k: torch.empty(v, device="meta") for k, v in shapes.items()}, name)
        with torch.device("meta"):
            net = build_model(spec)
        ours = sum(p.numel() for p in net.parameters() if p.requires_grad)
        out[name] = (ours, summary[name]["params_trainable"])
    return out


def output_differences(ref_dir: Path) -> dict[tuple[str, int], float]:
    """Return {(model, scale): max |ours - official|} on 0..255 for every *_seed0.pt / *_io.pt pair."""
    out = {}
    for weights in sorted(ref_dir.glob("*_seed0.pt")):
        name = weights.name[: -len("_seed0.pt")]
        io = torch.load(ref_dir / f"{name}_io.pt", map_location="cpu", weights_only=True)
        net = load_model(weights)
        with torch.no_grad():
            for scale, expected in io["output"].items():
                got = net(io["input"] / 255.0, int(scale)) * 255.0
                out[(name, int(scale))] = (got - expected).abs().max().item()
    return out


def set5_scores(net: torch.nn.Module, set5_dir: Path, scale: int) -> tuple[float, float]:
    """Return mean (PSNR, SSIM) of ``net`` on Set5 at ``scale`` (uint8 MATLAB-bicubic LR, score protocol)."""
    psnrs, ssims = [], []
    for path in sorted(set5_dir.glob("*.png")):
        hr = modcrop(image_to_tensor(read_image(path), torch.float64)[None], scale)
        lr = quantize(degrade(hr, scale)).float()
        with torch.no_grad():
            sr = net(lr, scale).double()
        p, s = score(sr, hr, scale=scale)
        psnrs.append(p.item())
        ssims.append(s.item())
    return sum(psnrs) / len(psnrs), sum(ssims) / len(ssims)


def check(shared: Path, skip_set5: bool = False) -> list[str]:
    """Print the checks; return the failed ones."""
    ref_dir = shared / "reference" / "edsr_pytorch"
    failures = []
    print("trainable parameters (ours / official):")
    for name, (ours, official) in param_counts(ref_dir).items():
        print(f"  {name:18s} {ours:>12,} / {official:>12,}  {'OK' if ours == official else BAD}")
        if ours != official:
            failures.append(f"{name}: {ours:,} trainable parameters, official {official:,}")
    print(f"max |ours - official| on 0..255 (converted *_seed0.pt vs *_io.pt; <= {OUTPUT_TOLERANCE:g}):")
    for (name, scale), diff in output_differences(ref_dir).items():
        print(f"  {name:18s} x{scale}: {diff:.3e}  {'OK' if diff <= OUTPUT_TOLERANCE else BAD}")
        if not diff <= OUTPUT_TOLERANCE:
            failures.append(f"{name} x{scale}: max |ours - official| = {diff:.3e} > {OUTPUT_TOLERANCE:g}")
    if not skip_set5:
        vdsr = load_model(shared / "reference" / "vdsr" / "VDSR_Official.mat")
        published = json.loads((shared / "reference" / "published.json").read_text())
        published = published["vdsr_official"]["Set5"]
        print(f"VDSR (official weights) on Set5, mean PSNR / SSIM (published: {json.dumps(published)}):")
        for scale in (2, 3, 4):
            p, s = set5_scores(vdsr, shared / "datasets" / "Set5", scale)
            ok = abs(p - published[str(scale)]) <= VDSR_TOLERANCE
            print(f"  x{scale}: {p:.3f} dB / {s:.4f}  {'OK' if ok else BAD}")
            if not ok:
                failures.append(f"VDSR Set5 x{scale}: {p:.3f} dB, published {published[str(scale)]}")
    if failures:
        print(f"\n{len(failures)} check(s) {BAD}:")
        for line in failures:
            print(f"  {BAD}: {line}")
    else:
        print("\nall checks OK")
    return failures


def main(argv: list[str] | None = None) -> int:
    """Run the checks; return 1 if any fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the ../shared folder")
    parser.add_argument("--skip-set5", action="store_true", help="skip the VDSR Set5 scores (slowest part)")
    args = parser.parse_args(argv)
    return 1 if check(args.shared, args.skip_set5) else 0


if __name__ == "__main__":
    sys.exit(main())
