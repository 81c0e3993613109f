"""Multirun summary (Hydra callback, summary.csv) and W&B grouping of a sweep's runs."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from train_helpers import TINY_TRAIN, subprocess_env

from mdrn.train import _prepare_wandb
from mdrn.training.report import write_results
from mdrn.training.sweep import summarize_sweep


def _job(sweep: Path, num: int, overrides: list[str], results: dict | None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if results is not None:
        write_results(job, results)


def test_summary_rows_and_csv(tmp_path: Path, capsys) -> None:
    res = {"train": {"val/psnr": 30.0}, "test": {"test/A_x2/psnr": 31.0, "test/psnr": 31.0},
           "bicubic": {"test/A_x2/psnr": 30.5}}  # fmt: skip
    _job(tmp_path, 0, ["model=mdrn_x2", "model.lr=0.001"], res)
    _job(tmp_path, 1, ["model=mdrn_x2", "model.lr=0.0001"], None)  # a failed job
    _job(tmp_path, 10, ["model=mdrn_x2", "model.lr=0.01"], res)
    rows = summarize_sweep(tmp_path)
    assert [r["job"] for r in rows] == ["0", "1", "10"]
    assert rows[0]["gain_db"] == pytest.approx(0.5) and rows[1]["status"].startswith("no results")
    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert list(table[0])[:4] == ["job", "model", "model.lr", "status"]
    assert table[2]["test/A_x2/psnr"] == "31.0" and table[1]["val/psnr"] == ""
    out = capsys.readouterr().out
    assert "model.lr" in out and "0.0001" in out and "model=" not in out  # only swept keys are printed


def test_wandb_groups_a_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["logger=wandb"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.sweep.dir = str(tmp_path / "2026-01-01_00-00-00")
        cfg.hydra.job.override_dirname = "model.lr=0.001"
        cfg.hydra.runtime.output_dir = str(tmp_path / "0")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "0")
        del cfg["hydra"]
    _prepare_wandb(cfg)
    assert cfg.logger.wandb.group == "train/2026-01-01_00-00-00"
    assert cfg.logger.wandb.name == "model.lr=0.001"


@pytest.mark.slow
def test_multirun_ends_with_a_summary(tmp_path: Path, sample_data: Path) -> None:
    data = sample_data
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "mdrn.train", "-m", f"hydra.sweep.dir={sweep}", f"paths.data_dir={data}",
           *TINY_TRAIN, "trainer.max_steps=2", "model.lr=0.001,0.0001"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["job"], r["model.lr"], r["status"]) for r in rows] == [
        ("0", "0.001", "ok"),
        ("1", "0.0001", "ok"),
    ]
    assert all(float(r["val/psnr"]) > 0 and float(r["test/s16_x2/psnr"]) > 0 for r in rows)
    assert "sweep summary (2 jobs)" in proc.stdout
