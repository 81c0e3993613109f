"""Evaluation entry point (the form users and the benchmark scripts type)::

    python -m mdrn.evaluate model=bicubic eval.root=DIR 'eval.sets=[Set5,Set14]' 'eval.scales=[2,3,4]' \
        eval.output=results.csv

DIR holds one folder of HR images per set (``DIR/Set5/*.png`` or ``DIR/Set5/HR/*.png``). HR is
mod-cropped, LR = MATLAB bicubic 1/s quantized to the image's bit depth; scores follow
:func:`mdrn.metrics.score` (Y channel, shave = scale). One CSV row per image (``set,scale,image,psnr,ssim``)
and a table of per-set means. ``weights=PATH`` (our safetensors or an official EDSR/MDSR/VDSR file)
or ``ckpt=PATH`` (a training checkpoint) evaluates trained networks.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from mdrn.data.cache import make_lr
from mdrn.data.sources import benchmark_files, prepare_benchmarks
from mdrn.inference import upscale
from mdrn.io import atomic_write, image_to_tensor, read_image
from mdrn.metrics import score
from mdrn.models import Bicubic
from mdrn.resize import modcrop
from mdrn.utils import print_config, results_table

__all__ = ["evaluate", "load_net", "main"]


def load_net(cfg: DictConfig) -> torch.nn.Module:
    """The network to evaluate: ``weights=``/``ckpt=`` via mdrn.weights.load_model, else ``model.net``."""
    path = cfg.get("weights") or cfg.get("ckpt")
    if path:
        from mdrn.weights import load_model

        return load_model(path)
    net = instantiate(cfg.model.net)
    if not isinstance(net, Bicubic):
        raise SystemExit(
            f"mdrn.evaluate: model {type(net).__name__} has no trained weights; give weights=PATH "
            "(.safetensors or an official file) or ckpt=PATH (a training checkpoint)"
        )
    return net


@torch.no_grad()
def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    """Score the network on every image of every set at every scale; write the CSV; return the rows."""
    ev = cfg.eval
    net = load_net(cfg).to(cfg.get("device", "cpu")).eval()
    scales = [int(s) for s in (ev.scales or net.scales)]
    missing = [s for s in scales if s not in net.scales]
    if missing:
        raise SystemExit(f"mdrn.evaluate: {type(net).__name__} serves {list(net.scales)}, not {missing}")
    root = Path(ev.root).expanduser()
    if ev.get("download"):
        prepare_benchmarks(root, list(ev.sets))
    rows: list[dict[str, Any]] = []
    for set_name in ev.sets:
        for f in benchmark_files(root, str(set_name)):
            img = read_image(f)
            hr_full = image_to_tensor(img, torch.float64)[None]
            for s in scales:
                hr = modcrop(hr_full, s)
                lr = make_lr(hr, s, img.bit_depth).float().to(cfg.get("device", "cpu"))
                sr = upscale(net, lr, s, tile=ev.get("tile"), ensemble=bool(ev.get("self_ensemble")))
                p, q = score(sr.cpu(), hr, scale=s, bit_depth=img.bit_depth, y_channel=bool(ev.y_channel))
                rows.append(
                    {"set": str(set_name), "scale": s, "image": f.name, "psnr": float(p), "ssim": float(q)}
                )
    if ev.get("output"):
        _write_csv(Path(ev.output), rows)
    means = []
    for set_name in ev.sets:
        for s in scales:
            sel = [r for r in rows if r["set"] == set_name and r["scale"] == s]
            if sel:
                means.append(
                    {
                        "set": set_name,
                        "scale": f"x{s}",
                        "images": len(sel),
                        "PSNR": sum(r["psnr"] for r in sel) / len(sel),
                        "SSIM": sum(r["ssim"] for r in sel) / len(sel),
                    }
                )
    results_table(
        f"{type(net).__name__}: mean PSNR (dB) / SSIM", means, ["set", "scale", "images", "PSNR", "SSIM"]
    )
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the per-image rows (atomically; an existing file is replaced)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["set", "scale", "image", "psnr", "ssim"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "psnr": f"{r['psnr']:.6f}", "ssim": f"{r['ssim']:.8f}"})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()), overwrite=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``python -m mdrn.evaluate``."""
    if cfg.get("print_config"):
        print_config(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
