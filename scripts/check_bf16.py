"""What ``--precision bf16`` costs on the medical test sets: PSNR against fp32 and grey levels, per bit depth.

For every image of the medical test sets (Table 2's held-out medical images, 8 and 10-16 bit, written by
``experiments/scripts/medical_images.py``; the sample data's test split, 8 and 16 bit) and each scale, the
LR image of the protocol (``mdrn.data.cache.make_lr``) is enlarged by the clinician tools' engine in fp32
and in bf16 (:func:`mdrn.clinical.runtime.prepare_network`; the bicubic image stays fp32) and both are
scored against the HR image (:func:`mdrn.protocol.metrics.score`). Printed per set and scale: mean PSNR in
fp32 and bf16, their difference (mean and worst image), the largest difference between the two outputs in
the image's own grey levels and the share of pixels that differ, and the CPU seconds of each.

    python scripts/check_bf16.py [--root data] [--model mdrn_small] [--scales 2 3 4] [--device cpu]

bf16 is offered where it is fast (a GPU, or a CPU with AMX bf16 tiles); elsewhere the script says so and
stops, unless ``--force`` (bf16 autocast then runs 10-500x slower than fp32).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def medical_sets(root: Path) -> dict[str, list[Path]]:
    """The medical test sets under ``root`` (written first if missing): name -> image files."""
    from mdrn.data.sources import list_images, prepare_sample

    medical = root / "medical"
    if not (medical / "Medical_8bit").is_dir():
        script = ROOT / "experiments" / "scripts" / "medical_images.py"
        subprocess.run([sys.executable, str(script), "--out", str(medical)], check=True)
    sample = prepare_sample(root) / "test"
    sets = {
        "Table 2 medical, 8 bit": medical / "Medical_8bit",
        "Table 2 medical, 10-16 bit": medical / "Medical_10to16bit",
        "sample test, 8 bit": sample / "8bit",
        "sample test, 16 bit": sample / "16bit",
    }
    return {name: list_images(folder) for name, folder in sets.items()}


def compare(
    net32: torch.nn.Module, net16: torch.nn.Module, files: list[Path], scale: int, bits: int | None = None
) -> dict[str, float]:
    """fp32 against bf16 on ``files`` at ``scale``: PSNRs, grey-level differences, CPU seconds."""
    from mdrn.clinical.enlarge import ACTIVATION_MEMORY, DEFAULT_TILE
    from mdrn.data.cache import make_lr
    from mdrn.io.images import image_to_tensor, read_image, tensor_to_array
    from mdrn.models.inference import upscale
    from mdrn.protocol.metrics import score

    psnr32, psnr16, worst, differ, pixels, cpu32, cpu16 = [], [], 0, 0, 0, 0.0, 0.0
    depths = set()
    for file in files:
        image = read_image(file)
        depth = bits or image.bit_depth
        depths.add(depth)
        hr = image_to_tensor(image)[None]
        lr = make_lr(hr, scale, depth).float()
        hr = hr[..., : lr.shape[-2] * scale, : lr.shape[-1] * scale]
        outs = []
        for net in (net32, net16):
            t0 = _cpu()
            outs.append(upscale(net, lr, scale, tile=DEFAULT_TILE, memory=ACTIVATION_MEMORY))
            if net is net32:
                cpu32 += _cpu() - t0
            else:
                cpu16 += _cpu() - t0
        (p32, _), (p16, _) = (score(o, hr, scale=scale, bit_depth=depth) for o in outs)
        psnr32.append(float(p32[0]))
        psnr16.append(float(p16[0]))
        a32, a16 = (tensor_to_array(o, depth).astype(np.int64) for o in outs)
        gap = np.abs(a16 - a32)
        worst = max(worst, int(gap.max()))
        differ += int((gap > 0).sum())
        pixels += gap.size
    d = np.array(psnr16) - np.array(psnr32)
    return {
        "images": len(files),
        "bits": "/".join(str(b) for b in sorted(depths)),
        "psnr32": float(np.mean(psnr32)),
        "psnr16": float(np.mean(psnr16)),
        "dpsnr_mean": float(d.mean()),
        "dpsnr_worst": float(d.min()),
        "max_levels": worst,
        "differ": differ / max(1, pixels),
        "cpu32": cpu32,
        "cpu16": cpu16,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the table; 0 when it ran, 2 when bf16 is not offered here (without --force)."""
    from mdrn.clinical.enlarge import load_network
    from mdrn.clinical.runtime import precision_problem, prepare_network
    from mdrn.weights import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=ROOT / "data", help="data folder (default ./data)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="run bf16 even where it is slow (no AMX, no GPU)")
    args = p.parse_args(argv)
    problem = precision_problem("bf16", args.device)
    if problem and not args.force:
        print(f"bf16 not checked: {problem}")
        return 2
    net32, _ = prepare_network(load_network(args.model), args.device, backend="torch")
    net16, runs_on = prepare_network(
        load_network(args.model), args.device, backend="torch", precision="bf16", allow_slow=args.force
    )
    sets = medical_sets(args.root)
    print(f"{args.model}: fp32 against {runs_on}; load average {os.getloadavg()[0]:.1f}")
    print("| set | bits | scale | images | PSNR fp32 | PSNR bf16 | dPSNR mean / worst | max grey levels "
          "| pixels differing | CPU s fp32 / bf16 |")  # fmt: skip
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with torch.inference_mode():
        for name, files in sets.items():
            for scale in args.scales:
                r = compare(net32, net16, files, scale)
                print(
                    f"| {name} | {r['bits']} | x{scale} | {r['images']} | {r['psnr32']:.4f} "
                    f"| {r['psnr16']:.4f} "
                    f"| {r['dpsnr_mean']:+.4f} / {r['dpsnr_worst']:+.4f} | {r['max_levels']} "
                    f"| {r['differ']:.2%} | {r['cpu32']:.1f} / {r['cpu16']:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
