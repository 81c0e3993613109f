"""Training entry point: ``python -m mdrn.train [model=...] [data=...] [trainer=...] [experiment=...]``.

``train(cfg)`` is the function behind it (tests call it with a composed config). Without DIV2K,
``data=div2k`` stops with one message naming every missing data set, the archives and the one folder
to put them in (``python -m mdrn.data``); ``data=sample`` needs no download. ``model=bicubic`` has
nothing to train: it is only evaluated. A run prints a start line, the progress bar, one line per
validation, the test table and its run folder's contents; the log file there keeps everything.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from mdrn.data import DataNotFoundError
from mdrn.models import Bicubic, model_spec
from mdrn.models.window import rule_of
from mdrn.training.callbacks import ValidateAtEnd, ValidationReport
from mdrn.training.config import instantiate_group, print_config, results_table
from mdrn.training.module import AtomicCheckpointIO, SRModule
from mdrn.training.report import describe_run_folder, display_path, duration, write_csv, write_results
from mdrn.training.run_log import run_logging
from mdrn.training.selection import (
    SELECTION_FILE,
    check_rule,
    given_checkpoint,
    keep_best_of_resumed,
    select_checkpoint,
)

__all__ = ["main", "train", "wandb_logged_in"]

log = logging.getLogger("mdrn.train")


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
        group, name = _sweep_names(cfg)
        if group and not wb.get("group"):
            cfg.logger.wandb.group = group  # the runs of one sweep side by side in W&B
        if name and not wb.get("name"):
            cfg.logger.wandb.name = name
    if offline:
        os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        log.info(
            "mdrn: W&B runs offline (not logged in). Upload later with: wandb sync %s/offline-run-*",
            Path(cfg.paths.output_dir) / "wandb",
        )


def _sweep_names(cfg: DictConfig) -> tuple[str | None, str | None]:
    """(W&B group, run name) of a multirun job: the sweep folder and the job's overrides; else Nones."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None, None
    hc = HydraConfig.get()
    return f"{cfg.get('task_name', 'train')}/{Path(hc.sweep.dir).name}", hc.job.override_dirname or None


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


def _bicubic_results(module: SRModule, dm: L.LightningDataModule, device: torch.device) -> dict[str, float]:
    """Test scores of MATLAB bicubic on the same test loaders, on the model's device (CPU or one GPU)."""
    net = module.net
    bic = SRModule(Bicubic(scales=net.scales, n_colors=net.n_colors), save_images=0)
    t = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    t.test(bic, datamodule=dm, verbose=False)
    return bic.test_results


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (unless nothing to train) and test the configured model; return scores and paths.

    The scores are also saved in the run folder: ``results.json`` (all), ``test_results.csv`` (the
    table: model, bicubic and gain per set and scale).
    """
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_logging(out_dir / "train.log"):
        try:
            return _train(cfg, out_dir)
        except (MissingMandatoryValue, InterpolationToMissingValueError) as exc:  # a ??? left in the config
            key = str(exc).split("Missing mandatory value: ")[-1].splitlines()[0].strip()
            raise SystemExit(f"mdrn: {key} has no value: add {key}=... to the command") from None


def _train(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """``train`` with the run's logging set up."""
    start = time.monotonic()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    rank0 = int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0
    print_config(cfg, out_dir / "config_tree.log", show=bool(cfg.get("print_config")) and rank0)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=False)
    _prepare_wandb(cfg)

    try:
        module: SRModule = instantiate(cfg.model)
    except InstantiationException as exc:  # one line for the errors of model.init_from (Hydra wraps them)
        if isinstance(exc.__cause__, ValueError) and str(exc.__cause__).startswith("model.init_from="):
            raise SystemExit(f"mdrn: {exc.__cause__}") from None
        raise
    resumed = _check_checkpoint(str(cfg.ckpt_path), module) if cfg.get("ckpt_path") else None
    if module.init_report:
        log.info("mdrn: %s", module.init_report)
        (out_dir / "init_report.txt").write_text(module.init_report + "\n")
    net = module.net
    trainable = any(p.requires_grad for p in module.parameters())
    fit = bool(cfg.get("train", True)) and trainable
    if not trainable:
        log.info("mdrn: %s has no trainable parameters: nothing to train, evaluating it.", type(net).__name__)

    data_cfg = _datamodule_config(cfg.data)
    dm = instantiate(
        data_cfg,
        scales=list(data_cfg.scales) if data_cfg.get("scales") else list(net.scales),
        n_colors=int(data_cfg.n_colors) if data_cfg.get("n_colors") else int(net.n_colors),
        input_window=rule_of(net),  # training patches are mapped as the network's inputs will be
    )
    lacking = [s for s in dm.scales if s not in net.scales]
    if lacking:
        has, serves = (", ".join(f"x{s}" for s in v) for v in (lacking, net.scales))
        raise SystemExit(
            f"mdrn: data.scales {list(dm.scales)}: the model ({type(net).__name__}) has no {has}; "
            f"it serves {serves} (model.net)"
        )
    if not cfg.get("test", True):
        dm.test_sources = []  # neither read nor required
    if not fit:
        dm.train_sources, dm.val_sources = [], []
    else:
        # the selection rule the config states (best / last), checked against its callbacks before training
        try:
            check_rule(cfg.get("selection"), cfg.get("callbacks"), len(getattr(dm, "val_sources", []) or []))
        except ValueError as exc:
            raise SystemExit(f"mdrn: {exc}") from None

    callbacks = [*instantiate_group(cfg.get("callbacks")), ValidateAtEnd(), ValidationReport()] if fit else []
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=_log_interval(cfg, dm),
    )
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]

    if trainer.is_global_zero:
        log.info("%s", _start_line(cfg, module, dm, trainer, fit, out_dir))
    try:
        if fit:
            kept = keep_best_of_resumed(trainer.checkpoint_callbacks, resumed) if resumed is not None else []
            for path, score in kept:
                log.info("resumed into a new run folder: the best checkpoint before it (%.4f, %s) "
                         "stays in the running", score, display_path(path))  # fmt: skip
            with warnings.catch_warnings():
                if kept:  # Lightning's "... won't be reloaded" would say the opposite of what happens
                    warnings.filterwarnings("ignore", r"The dirpath has changed from .* won't be reloaded")
                # weights_only: a checkpoint holding code is refused, whatever torch defaults to (or a URL)
                trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        results: dict[str, Any] = {"train": dict(_scalars(trainer.callback_metrics))}
        results["global_step"] = int(trainer.global_step)
        # the model-selection rule (mdrn.training.selection): best by val/psnr on the validation sets, else
        # last
        sel = (
            select_checkpoint(
                trainer,
                dm.eval_keys("val") if getattr(dm, "val_sources", None) else (),
                cfg.get("selection"),
            )
            if fit
            else None
        )
        if sel is None and cfg.get("ckpt_path"):
            sel = given_checkpoint(cfg.ckpt_path)
        results["best_ckpt"] = sel.path if sel is not None and sel.kind == "best" else None
        results["checkpoint"] = sel.to_dict() if sel is not None else None
        if sel is not None and trainer.is_global_zero:
            log.info("%s", sel.describe())
            (out_dir / SELECTION_FILE).write_text(json.dumps(sel.to_dict(), indent=2) + "\n")
        if cfg.get("test", True):
            trainer.test(
                module,
                datamodule=dm,
                ckpt_path=sel.path if sel is not None else None,
                verbose=False,
                weights_only=True,
            )
            results["test"] = dict(module.test_results)
            if trainer.is_global_zero:
                _print_results(cfg, module, dm, results, trainer)
    except DataNotFoundError as exc:
        raise SystemExit(f"mdrn: {exc}") from None
    if trainer.is_global_zero:
        write_results(out_dir, results)
        lines = describe_run_folder(out_dir)
        log.info(
            "mdrn: done in %s. Run folder %s:\n%s",
            duration(time.monotonic() - start),
            display_path(out_dir),
            "\n".join(lines),
        )
    return results


def _check_checkpoint(path: str, module: SRModule) -> dict[str, Any] | None:
    """``ckpt_path=`` must be a Lightning checkpoint of this run's network (tensor names and shapes);
    returns its callbacks' states (read here once, for :func:`keep_best_of_resumed` too).

    A remote one (``s3://``, ``https://``: Lightning's fsspec paths) is left to Lightning, which reads it with
    ``weights_only=True`` too (None).
    """
    if "://" in str(path):
        return None
    if not Path(path).is_file():
        raise SystemExit(f"mdrn: ckpt_path={path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one line
        why = ": ".join([type(exc).__name__, *str(exc).splitlines()[:1]])
        raise SystemExit(f"mdrn: ckpt_path={path}: not a readable checkpoint ({why})") from None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise SystemExit(f"mdrn: ckpt_path={path}: not a Lightning checkpoint (weights: model.init_from=)")
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if {k: tuple(v.shape) for k, v in state.items()} != want:
        spec, ours = ckpt.get("mdrn_arch"), model_spec(module.net)
        theirs = f"{spec['arch']} {spec['args']}" if isinstance(spec, dict) else "another network"
        raise SystemExit(
            f"mdrn: ckpt_path={path}: a checkpoint of {theirs}, not of this run's {ours['arch']} "
            f"{ours['args']}: give the model settings it was trained with, or start from its weights with "
            "model.init_from="
        )
    return dict(ckpt.get("callbacks") or {})


def _datamodule_config(data_cfg: DictConfig) -> DictConfig:
    """``cfg.data`` resolved, without the values a data config only interpolates into its sources.

    ``data=folder`` asks for ``data.train_dir``, ``data=div2k_medical`` for ``data.medical_dir``: they
    fill the sources' paths and are no argument of the datamodule.
    """
    params = inspect.signature(get_class(data_cfg._target_)).parameters
    raw = OmegaConf.to_yaml(data_cfg, resolve=False)
    resolved = OmegaConf.create(OmegaConf.to_container(data_cfg, resolve=True))
    for key in [str(k) for k in resolved]:
        if key not in params and "${data." + key + "}" in raw:
            del resolved[key]
    return resolved


def _log_interval(cfg: DictConfig, dm: L.LightningDataModule) -> int:
    """``trainer.log_every_n_steps``, at most one epoch and the run's length (Lightning warns otherwise)."""
    every = int(cfg.trainer.get("log_every_n_steps") or 50)
    bounds = [int(getattr(dm, "batches_per_epoch", 0) or 0), int(cfg.trainer.get("max_steps") or -1)]
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        bounds.append(limit)
    return max(1, min([every, *[b for b in bounds if b > 0]]))


def _start_line(
    cfg: DictConfig, module: SRModule, dm: L.LightningDataModule, trainer: L.Trainer, fit: bool, out_dir: Path
) -> str:
    """What the run does: model, data, device, length, and where its outputs go."""
    net = module.net
    n_params = sum(p.numel() for p in net.parameters())
    scales = "/".join(f"x{s}" for s in net.scales)
    names = {
        stage: ", ".join(str(s.get("name")) for s in getattr(dm, f"{stage}_sources", [])) or "-"
        for stage in ("train", "val", "test")
    }
    device = f"{trainer.strategy.root_device.type} x{trainer.world_size}, precision {trainer.precision}"
    if fit:
        what = f"mdrn: training {type(net).__name__} {scales} ({n_params:,} parameters)"
        steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        what += f" for {steps:,} steps" if steps else f" for {trainer.max_epochs} epochs"
        if getattr(dm, "batches_per_epoch", None):
            what += f" (epochs of {dm.batches_per_epoch:,} batches of {dm.batch_size})"
        if cfg.get("ckpt_path"):
            what += f", resuming from {cfg.ckpt_path}"
        data = f"data: train {names['train']}; validate on {names['val']}; test on {names['test']}"
    else:
        what = f"mdrn: evaluating {type(net).__name__} {scales} ({n_params:,} parameters)"
        data = f"data: test on {names['test']}"
    return f"{what}\n      {data}; {device}\n      run folder: {display_path(out_dir)}"


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
        results["bicubic"] = _bicubic_results(module, dm, trainer.strategy.root_device)
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
    out_dir = Path(cfg.paths.output_dir)
    if results.get("checkpoint"):
        text = results["checkpoint"]["line"] + "\n" + text
    (out_dir / "test_results.txt").write_text(text)
    csv_rows = []
    for (s_name, s), v in sorted(rows.items()):
        r = {"set": s_name, "scale": s, "model": name, "psnr": v["psnr"], "ssim": v["ssim"]}
        if bic:
            b = bic[(s_name, s)]
            r.update(bicubic_psnr=b["psnr"], bicubic_ssim=b["ssim"], gain_db=v["psnr"] - b["psnr"])
        csv_rows.append(r)
    write_csv(out_dir / "test_results.csv", csv_rows)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``python -m mdrn.train``."""
    train(cfg)


if __name__ == "__main__":
    main()
