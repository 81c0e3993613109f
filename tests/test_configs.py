"""Every Hydra config group option composes; trainers and loggers instantiate (W&B offline, no prompt)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from mdrn.train import _prepare_wandb
from mdrn.training.config import instantiate_group

CONF = ROOT / "conf"
# values the user must give (``???``) for some data configs
REQUIRED = {
    "div2k_medical": ["data.medical_dir=/medical"],
    "folder": ["data.train_dir=/imgs/train", "data.val_dir=/imgs/val", "data.test_dir=/imgs/test"],
}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides: list[str], tmp_path: Path, config_name: str = "train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.work_dir = str(ROOT)
        del cfg["hydra"]
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # every interpolation resolves
    return cfg


GROUP_OPTIONS = [
    (group, option)
    for group in ("data", "model", "trainer", "logger", "callbacks", "debug", "paths", "experiment")
    for option in _options(group)
]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_group_option_composes(group: str, option: str, tmp_path: Path) -> None:
    cfg = _compose([f"{group}={option}", *REQUIRED.get(option, [])], tmp_path)
    assert cfg.model._target_ == "mdrn.training.module.SRModule"
    assert cfg.data._target_ == "mdrn.data.SRDataModule"
    if group in ("data", "model", "trainer"):
        assert OmegaConf.select(cfg, group) is not None


def test_every_group_is_tested() -> None:
    groups = {p.name for p in CONF.iterdir() if p.is_dir()} - {"eval", "local", "hydra"}
    assert groups == {"data", "model", "trainer", "logger", "callbacks", "debug", "paths", "experiment"}


@pytest.mark.parametrize("launcher", _options("hydra/launcher"))
def test_slurm_launchers_compose(launcher: str, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    overrides = [f"hydra/launcher={launcher}", "trainer=ddp", "trainer.devices=4"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.launcher.tasks_per_node == (4 if launcher == "slurm" else 1)


DDP_CPU = ["trainer.accelerator=cpu", "trainer.devices=2"]


@pytest.mark.parametrize("trainer", ["cpu", "default", "ddp"])
def test_trainer_instantiates(trainer: str, tmp_path: Path) -> None:
    cfg = _compose([f"trainer={trainer}", *(DDP_CPU if trainer == "ddp" else [])], tmp_path)
    t = instantiate(cfg.trainer, logger=False)
    assert t.max_steps == cfg.trainer.max_steps
    if trainer == "ddp":
        assert type(t.strategy).__name__ == "DDPStrategy" and t.num_devices == 2


def test_eval_config_composes(tmp_path: Path) -> None:
    cfg = _compose(["eval.sets=[Set5]", "eval.scales=[2,3,4]"], tmp_path, config_name="eval")
    assert list(cfg.eval.sets) == ["Set5"] and cfg.model.net._target_ == "mdrn.models.Bicubic"


def test_wandb_offline_without_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = _compose(["logger=wandb"], tmp_path)
    _prepare_wandb(cfg)
    assert cfg.logger.wandb.offline is True and cfg.logger.wandb.log_model is False
    (logger,) = instantiate_group(cfg.logger)
    logger.log_metrics({"val/psnr": 30.0}, step=0)
    logger.experiment.finish()
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
