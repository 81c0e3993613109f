"""Evaluation entry point (the form users and the benchmark scripts type)::

    python -m mdrn.evaluate model=bicubic eval.root=DIR 'eval.sets=[Set5,Set14]' 'eval.scales=[2,3,4]'

DIR holds one folder of HR images per set (``DIR/Set5/*.png`` or ``DIR/Set5/HR/*.png``; default
``data/benchmark``, filled by ``python -m mdrn.data download benchmarks``). HR is mod-cropped, LR =
MATLAB bicubic 1/s quantized to the image's bit depth; scores follow :func:`mdrn.protocol.metrics.score` (Y
channel, shave = scale). One CSV row per image (``set,scale,image,psnr,ssim``; ``<run>/results.csv``
unless ``eval.output`` names another file), ``<run>/means.csv`` and a printed table of per-set means.
``weights=PATH`` (our safetensors or an official EDSR/MDSR/VDSR file) or ``ckpt=PATH`` (a training
checkpoint) evaluates trained networks. Missing sets, unreadable images and unknown checkpoints end
the command with one message (no traceback).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from mdrn.data.cache import make_lr
from mdrn.data.catalog import DataNotFoundError
from mdrn.data.sources import benchmark_files, prepare_benchmarks
from mdrn.io.images import ImageReadError, image_to_tensor, read_image
from mdrn.models import Bicubic
from mdrn.models.inference import upscale
from mdrn.protocol.metrics import score
from mdrn.protocol.resize import modcrop
from mdrn.training.config import print_config, results_table
from mdrn.training.report import describe_run_folder, display_path, duration, write_csv, write_results
from mdrn.training.run_log import run_logging

__all__ = ["evaluate", "load_net", "main"]

log = logging.getLogger("mdrn.evaluate")


def load_net(cfg: DictConfig) -> torch.nn.Module:
    """The network to evaluate: ``weights=``/``ckpt=`` via mdrn.weights.load_model, else ``model.net``."""
    if cfg.get("weights") and cfg.get("ckpt"):
        raise SystemExit(
            f"mdrn.evaluate: weights={cfg.weights} and ckpt={cfg.ckpt} name two models: give one of them"
        )
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


def _set_files(cfg: DictConfig, root: Path) -> dict[str, list[Path]]:
    """The HR images of every set; one DataNotFoundError naming every missing set."""
    ev = cfg.eval
    data_dir = Path(cfg.paths.data_dir) if cfg.get("paths") else None
    if ev.get("download"):
        downloads = data_dir / "downloads" if data_dir is not None else None
        prepare_benchmarks(root, [str(s) for s in ev.sets], downloads=downloads)
    files, errors = {}, []
    for set_name in ev.sets:
        try:
            files[str(set_name)] = benchmark_files(root, str(set_name))
        except DataNotFoundError as exc:
            errors.append(exc)
    if errors:
        if root.name == "benchmark" or data_dir is None:  # the download writes <data>/benchmark: reaches it
            raise DataNotFoundError.merge(errors, root=root.parent if root.name == "benchmark" else None)
        # another eval.root: the download would write where this command does not look
        lines = [d for e in errors for d in e.details]
        default = (data_dir / "benchmark").resolve()
        lines.append(
            f"Put the sets there, or drop eval.root to read {default}, where mdrn.data download puts them"
        )
        raise DataNotFoundError("\n".join(lines))
    return files


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    """Score the network on every image of every set at every scale; write the CSVs; return the rows.

    Ends with ``SystemExit`` and one message for missing data, unreadable images and unknown checkpoints.
    """
    out_dir = Path(cfg.paths.output_dir) if cfg.get("paths") and cfg.paths.get("output_dir") else None
    with run_logging(out_dir / "evaluate.log" if out_dir is not None else None):
        try:
            return _evaluate(cfg, out_dir)
        except (DataNotFoundError, ImageReadError) as exc:
            raise SystemExit(f"mdrn.evaluate: {exc}") from None
        except (ValueError, FileNotFoundError) as exc:  # CheckpointError, another architecture, no file
            raise SystemExit(f"mdrn.evaluate: {exc}") from None


@torch.no_grad()
def _evaluate(cfg: DictConfig, out_dir: Path | None) -> list[dict[str, Any]]:
    """``evaluate`` with the run's logging set up."""
    start = time.monotonic()
    ev = cfg.eval
    net = load_net(cfg).to(cfg.get("device", "cpu")).eval()
    scales = [int(s) for s in (ev.scales or net.scales)]
    missing = [s for s in scales if s not in net.scales]
    if missing:
        raise SystemExit(f"mdrn.evaluate: {type(net).__name__} serves {list(net.scales)}, not {missing}")
    window = ev.get("window", "auto") or "none"  # the network's own rule, or one forced on every model
    root = Path(ev.root).expanduser()
    files = _set_files(cfg, root)
    n_images = sum(len(v) for v in files.values())
    log.info(
        "mdrn: evaluating %s at %s on %s (%d images) from %s%s",
        type(net).__name__,
        "/".join(f"x{s}" for s in scales),
        ", ".join(files),
        n_images,
        root,
        f"; run folder: {display_path(out_dir)}" if out_dir is not None else "",
    )
    rows: list[dict[str, Any]] = []
    for set_name, set_files in files.items():
        for f in set_files:
            img = read_image(f)
            hr_full = image_to_tensor(img, torch.float64)[None]
            for s in scales:
                try:  # an image too small for the scale or the SSIM window, an SR with NaN: named
                    hr = modcrop(hr_full, s)
                    lr = make_lr(hr, s, img.bit_depth).float().to(cfg.get("device", "cpu"))
                    sr = upscale(
                        net, lr, s, tile=ev.get("tile"), ensemble=bool(ev.get("self_ensemble")), window=window
                    )
                    p, q = score(sr.cpu(), hr, scale=s, bit_depth=img.bit_depth, y_channel=bool(ev.y_channel))
                except ValueError as exc:
                    raise ValueError(f"{f} (x{s}): {exc}") from None
                rows.append(
                    {"set": str(set_name), "scale": s, "image": f.name, "psnr": float(p), "ssim": float(q)}
                )
    csv_path = Path(ev.output) if ev.get("output") else (out_dir / "results.csv" if out_dir else None)
    if csv_path is not None:
        text = [{**r, "psnr": f"{r['psnr']:.6f}", "ssim": f"{r['ssim']:.8f}"} for r in rows]
        write_csv(csv_path, text, ["set", "scale", "image", "psnr", "ssim"])
    means = []
    for set_name in files:  # the sets' names as strings (a set named 2023 is the int 2023 in ev.sets)
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
    if out_dir is not None:
        write_csv(out_dir / "means.csv", [{**m, "scale": int(m["scale"][1:])} for m in means])
        scores = {f"test/{m['set']}_{m['scale']}/{k.lower()}": m[k] for m in means for k in ("PSNR", "SSIM")}
        psnrs = [v for k, v in scores.items() if k.endswith("/psnr")]
        write_results(out_dir, {"test": {**scores, "test/psnr": sum(psnrs) / len(psnrs)} if psnrs else {}})
        where = "\n".join(describe_run_folder(out_dir))
        extra = f"\n  per-image scores: {csv_path}" if csv_path and csv_path.parent != out_dir else ""
        log.info(
            "mdrn: done in %s. Run folder %s:\n%s%s",
            duration(time.monotonic() - start),
            display_path(out_dir),
            where,
            extra,
        )
    return rows


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``python -m mdrn.evaluate``."""
    out_dir = Path(cfg.paths.output_dir)
    print_config(cfg, out_dir / "config_tree.log", show=bool(cfg.get("print_config")))
    evaluate(cfg)


if __name__ == "__main__":
    main()
