"""Training entry point: ``python -m mdrn.train [model=...] [data=...] [trainer=...] [experiment=...]``.

``train(cfg)`` is the function behind it (tests call it with a composed config). Without DIV2K,
``data=div2k`` stops with one message naming the archives and where to put them; ``data=sample``
needs no download. ``model=bicubic`` has nothing to train: it is only evaluated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mdrn.data import DataNotFoundError
from mdrn.lit import AtomicCheckpointIO, SRModule
from mdrn.models import Bicubic
from mdrn.selection import SELECTION_FILE, given_checkpoint, select_checkpoint
from mdrn.utils import instantiate_group, print_config, results_table

__all__ = ["main", "train", "wandb_logged_in"]


def wandb_logged_in() -> bool:
    """True if W&B credentials exist (env, or the netrc written by ``wandb login``); never prompts."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        auth = netrc.netrc().authenticators("api.wandb.ai")
        return bool(auth and auth[2])
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _prepare_wandb(cfg: DictConfig) -> None:
    """Make ``logger=wandb`` offline (no prompt) unless the user is logged in; print the sync hint."""
    wb = (cfg.get("logger") or {}).get("wandb")
    if not wb:
        return
    offline = wb.get("offline")
    if offline is None:
        offline = os.environ.get("WANDB_MODE") == "offline" or not wandb_logged_in()
    with open_dict(cfg):
        cfg.logger.wandb.offline = bool(offline)
    if offline:
        os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        print(
            "mdrn: W&B runs offline (not logged in). Upload later with: "
            f"wandb sync {Path(cfg.paths.output_dir) / 'wandb'}/offline-run-*"
        )


def _rows(results: dict[str, float], stage: str = "test") -> dict[tuple[str, int], dict[str, float]]:
    """{(set, scale): {psnr, ssim}} from logged names ``<stage>/<set>_x<s>/<metric>``."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    for k, v in results.items():
        parts = k.split("/")
        if len(parts) != 3 or parts[0] != stage:
            continue
        name, _, s = parts[1].rpartition("_x")
        out.setdefault((name, int(s)), {})[parts[2]] = float(v)
    return out


def _bicubic_results(module: SRModule, dm: L.LightningDataModule) -> dict[str, float]:
    """Test scores of MATLAB bicubic on the same test loaders."""
    net = module.net
    bic = SRModule(Bicubic(scales=net.scales, n_colors=net.n_colors), save_images=0)
    t = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    t.test(bic, datamodule=dm, verbose=False)
    return bic.test_results


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (unless nothing to train) and test the configured model; return scores and paths."""
    L.seed_everything(int(cfg.seed), workers=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("print_config", True):
        print_config(cfg, out_dir / "config_tree.log", show=int(os.environ.get("LOCAL_RANK", "0")) == 0)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=False)
    _prepare_wandb(cfg)

    module: SRModule = instantiate(cfg.model)
    if module.init_report:
        print(module.init_report)
        (out_dir / "init_report.txt").write_text(module.init_report + "\n")
    net = module.net
    trainable = any(p.requires_grad for p in module.parameters())
    fit = bool(cfg.get("train", True)) and trainable
    if not trainable:
        print(f"mdrn: {type(net).__name__} has no trainable parameters: nothing to train, evaluating it.")

    data_cfg = cfg.data
    dm = instantiate(
        data_cfg,
        scales=list(data_cfg.scales) if data_cfg.get("scales") else list(net.scales),
        n_colors=int(data_cfg.n_colors) if data_cfg.get("n_colors") else int(net.n_colors),
    )
    if not fit:
        dm.train_sources, dm.val_sources = [], []

    callbacks = instantiate_group(cfg.get("callbacks")) if fit else []
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]

    try:
        if fit:
            trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
        results: dict[str, Any] = {"train": dict(_scalars(trainer.callback_metrics))}
        # the model-selection rule (mdrn.selection): best by val/psnr on the validation sets, else last
        sel = (
            select_checkpoint(trainer, dm.eval_keys("val") if getattr(dm, "val_sources", None) else ())
            if fit
            else None
        )
        if sel is None and cfg.get("ckpt_path"):
            sel = given_checkpoint(cfg.ckpt_path)
        results["best_ckpt"] = sel.path if sel is not None and sel.kind == "best" else None
        results["checkpoint"] = sel.to_dict() if sel is not None else None
        if sel is not None and trainer.is_global_zero:
            print(sel.describe())
            (out_dir / SELECTION_FILE).write_text(json.dumps(sel.to_dict(), indent=2) + "\n")
        if cfg.get("test", True):
            trainer.test(
                module, datamodule=dm, ckpt_path=sel.path if sel is not None else None, verbose=False
            )
            results["test"] = dict(module.test_results)
            if trainer.is_global_zero:
                _print_results(cfg, module, dm, results, trainer)
    except DataNotFoundError as exc:
        raise SystemExit(f"mdrn: {exc}") from None
    return results


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """Tensor metrics as floats."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, torch.Tensor) and v.numel() == 1}


def _print_results(
    cfg: DictConfig, module: SRModule, dm: L.LightningDataModule, results: dict, trainer: L.Trainer
) -> None:
    """Print (and save) the test table, with bicubic beside the model if asked."""
    rows = _rows(results["test"])
    bic: dict = {}
    if cfg.get("compare_bicubic") and not isinstance(module.net, Bicubic) and trainer.world_size == 1:
        results["bicubic"] = _bicubic_results(module, dm)
        bic = _rows(results["bicubic"])
    name = type(module.net).__name__
    table = []
    for (s_name, s), v in sorted(rows.items()):
        r = {"set": s_name, "scale": f"x{s}", f"{name} PSNR": v["psnr"], f"{name} SSIM": v["ssim"]}
        if bic:
            b = bic[(s_name, s)]
            r.update({"bicubic PSNR": b["psnr"], "bicubic SSIM": b["ssim"], "gain dB": v["psnr"] - b["psnr"]})
        table.append(r)
    cols = list(table[0]) if table else []
    text = results_table(f"test scores ({name}; PSNR/SSIM on Y, shave = scale)", table, cols)
    if results.get("checkpoint"):
        print(results["checkpoint"]["line"])
        text = results["checkpoint"]["line"] + "\n" + text
    (Path(cfg.paths.output_dir) / "test_results.txt").write_text(text)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``python -m mdrn.train``."""
    train(cfg)


if __name__ == "__main__":
    main()
