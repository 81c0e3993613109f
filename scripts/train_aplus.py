"""Train A+ (Timofte et al., ACCV 2014) on T91 at each scale, save the models, score them on Set5.

Example (the recorded run in experiments/results/aplus/)::

    python scripts/train_aplus.py --out models/aplus --results experiments/results/aplus

Each scale is trained on the Y channel of the T91 images (float, MATLAB rgb2ycbcr) and saved as
``<out>/aplus_x<s>.npz``. Set5 is scored with the project protocol (:func:`mdrn.protocol.metrics.score`): LR =
MATLAB bicubic 1/s of the mod-cropped HR (:func:`mdrn.protocol.resize.degrade`) stored as uint8 RGB, the A+ Y
with bicubic chroma converted back to RGB, quantized to uint8, shave = scale, PSNR/SSIM on Y. Bicubic
(:class:`mdrn.models.Bicubic` if available, else :func:`mdrn.protocol.resize.imresize`) is scored the same
way.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mdrn.io.images import atomic_write, image_to_tensor, is_image_file, read_image
from mdrn.protocol.color import rgb_to_ycbcr
from mdrn.protocol.metrics import quantize, score
from mdrn.protocol.resize import degrade, imresize, modcrop
from mdrn.reproduce.aplus import APlus, APlusSR
from mdrn.weights import cache_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MDRN_SHARED", ROOT.parent / "shared"))


def load_rgb(folder: Path) -> list[tuple[str, torch.Tensor]]:
    """Return (name, (3, H, W) float64 tensor in [0, 1]) for every image in ``folder``, sorted by name."""
    paths = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not paths:
        raise FileNotFoundError(f"{folder}: no images")
    out = []
    for p in paths:
        t = image_to_tensor(read_image(p), dtype=torch.float64)
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        out.append((p.stem, t))
    return out


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """Return the float Y (H, W) of an RGB (3, H, W) image, MATLAB rgb2ycbcr on [0, 1]."""
    return rgb_to_ycbcr(rgb)[0]


def evaluate(net: torch.nn.Module | None, images: list[tuple[str, torch.Tensor]], scale: int) -> dict:
    """Score ``net`` (None = bicubic) on the images; return per-image and mean PSNR/SSIM."""
    rows = {}
    for name, rgb in images:
        hr = modcrop(rgb, scale)[None]
        lr = quantize(degrade(hr, scale))  # the LR as stored: uint8 RGB
        with torch.no_grad():
            sr = imresize(lr, scale) if net is None else net(lr, scale)
        p, s = score(sr, hr, scale=scale)
        rows[name] = (float(p[0]), float(s[0]))
    psnr = float(np.mean([v[0] for v in rows.values()]))
    ssim = float(np.mean([v[1] for v in rows.values()]))
    return {"per_image": rows, "psnr": psnr, "ssim": ssim}


def published_aplus() -> dict[int, tuple[float, float]]:
    """Return the published A+ Set5 (PSNR, SSIM) per scale from ../shared/reference/published.json."""
    path = SHARED / "reference" / "published.json"
    table = json.loads(path.read_text())["mdrn_paper_table1"]
    col = table["columns"].index("A+")
    return {int(s): tuple(table["Set5"][s][col]) for s in table["Set5"]}


def main(argv: list[str] | None = None) -> int:
    """Train, save, score; print a summary and optionally record CSV + Markdown."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--train", type=Path, default=SHARED / "datasets" / "T91")
    ap.add_argument("--test", type=Path, default=SHARED / "datasets" / "Set5")
    ap.add_argument(
        "--out", type=Path, default=cache_dir() / "aplus", help="folder for aplus_x<s>.npz (default: cache)"
    )
    ap.add_argument("--results", type=Path, default=None, help="folder for aplus.csv / aplus.md")
    ap.add_argument("--atoms", type=int, default=1024)
    ap.add_argument("--neighbors", type=int, default=2048)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--ksvd-iters", type=int, default=20)
    ap.add_argument("--levels", type=int, default=12, help="pyramid levels 0.98^k for the regressors")
    ap.add_argument("--max-samples", type=int, default=5_000_000)
    ap.add_argument("--dict-samples", type=int, default=0, help="K-SVD on a random subset (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--eval-only", action="store_true", help="score the saved models, do not train")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    test = load_rgb(args.test)
    published = published_aplus()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    train_y = None
    for s in args.scales:
        path = args.out / f"aplus_x{s}.npz"
        if args.eval_only:
            model = APlus.load(path)
            seconds = model.timings.get("total", float("nan"))
        else:
            if train_y is None:
                train_y = [luma(t) for _, t in load_rgb(args.train)]
            model = APlus(
                s,
                n_atoms=args.atoms,
                n_neighbors=args.neighbors,
                lam=args.lam,
                ksvd_iters=args.ksvd_iters,
                n_levels=args.levels,
                max_samples=args.max_samples,
                max_dict_samples=args.dict_samples,
                seed=args.seed,
            )
            t0 = time.perf_counter()
            model.fit(train_y, log=log)
            seconds = time.perf_counter() - t0
            model.save(path, overwrite=args.overwrite)
            log(f"x{s}: trained in {seconds:.1f} s, saved {path}")
        net = APlusSR([model])
        bic = evaluate(None, test, s)
        res = evaluate(net, test, s)
        pub = published.get(s, (float("nan"), float("nan")))
        for name, (p, q) in res["per_image"].items():
            log(f"  x{s} {name:10s} A+ {p:.3f} dB / {q:.4f}   bicubic {bic['per_image'][name][0]:.3f} dB")
        log(
            f"x{s}: Set5 A+ {res['psnr']:.3f} dB / {res['ssim']:.4f} (published {pub[0]:.2f} / {pub[1]:.3f}, "
            f"diff {res['psnr'] - pub[0]:+.3f} dB); bicubic {bic['psnr']:.3f} / {bic['ssim']:.4f}"
        )
        results.append(
            {
                "method": "A+",
                "set": "Set5",
                "scale": s,
                "images": len(test),
                "psnr": round(res["psnr"], 4),
                "ssim": round(res["ssim"], 5),
                "published_psnr": pub[0],
                "published_ssim": pub[1],
                "diff_psnr": round(res["psnr"] - pub[0], 4),
                "bicubic_psnr": round(bic["psnr"], 4),
                "bicubic_ssim": round(bic["ssim"], 5),
                "train_seconds": round(seconds, 1),
                "train_cpu_seconds": round(model.timings.get("cpu", float("nan")), 1),
                "n_samples": model.n_samples,
                "pca_dims": int(model.pca.shape[1]),
            }
        )
    if args.results is not None:
        record(args, results, argv)
    return 0


def record(args: argparse.Namespace, results: list[dict], argv: list[str] | None) -> None:
    """Write aplus.csv and aplus.md (command, machine, date, figures) under ``args.results``."""
    args.results.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(results[0]))
    writer.writeheader()
    writer.writerows(results)
    text = buf.getvalue()
    atomic_write(args.results / "aplus.csv", lambda p: p.write_text(text), overwrite=True)
    cmd = "python scripts/train_aplus.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = [
        "# A+ on Set5 (Timofte et al., ACCV 2014), trained here on T91",
        "",
        f"- command: `{cmd}`",
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, Python {platform.python_version()}",
        f"- settings: {args.atoms} atoms (approximate K-SVD, {args.ksvd_iters} iterations, 3 atoms/sample), "
        f"K-SVD samples {args.dict_samples or 'all'}, {args.neighbors} neighbours, lambda {args.lam}, "
        f"pyramid {args.levels} levels of 0.98^k, "
        f"at most {args.max_samples} regression samples",
        "- protocol: LR = MATLAB bicubic 1/s of the mod-cropped HR, rounded to uint8 RGB; A+ on Y, chroma "
        "bicubic; SR quantized to uint8, shave = scale, PSNR/SSIM on float Y (mdrn.protocol.metrics.score)",
        "",
        "| scale | PSNR (dB) | SSIM | published PSNR | published SSIM | diff (dB) | bicubic PSNR "
        "| train time (s) | train CPU time (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| x{r['scale']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['published_psnr']:.2f} | "
            f"{r['published_ssim']:.3f} | {r['diff_psnr']:+.2f} | {r['bicubic_psnr']:.2f} | "
            f"{r['train_seconds']} | {r['train_cpu_seconds']} |"
        )
    md = "\n".join(lines) + "\n"
    atomic_write(args.results / "aplus.md", lambda p: p.write_text(md), overwrite=True)
    print(f"recorded {args.results / 'aplus.csv'} and {args.results / 'aplus.md'}")


if __name__ == "__main__":
    raise SystemExit(main())
