"""What a training run prints and leaves: start/validation/end lines, the log file, the scores, the totals."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from train_helpers import ROOT, TINY_TRAIN, subprocess_env, train_cmd

from mdrn.training.callbacks import StepProgressBar
from mdrn.training.report import describe_run_folder, write_csv


def _bar(**trainer: object) -> StepProgressBar:
    bar = StepProgressBar()
    defaults = {"max_epochs": -1, "accumulate_grad_batches": 1, "current_epoch": 0, "global_step": 0}
    bar._trainer = SimpleNamespace(**{**defaults, **trainer})
    return bar


def test_progress_bar_true_totals() -> None:
    # max_steps=5 in an epoch of 1000 batches: the bar counts to 5, and the run has one epoch
    bar = _bar(num_training_batches=1000, max_steps=5)
    assert bar.total_train_batches == 5
    assert bar._get_train_description(0).strip() == "Epoch 0/0"
    # resumed at step 400 of an 800-batch epoch that max_steps ends: 800 (not 400)
    bar = _bar(num_training_batches=800, max_steps=800, global_step=400)
    assert bar.total_train_batches == 800
    # 600k steps of 1000-batch epochs: the last epoch is 599 (not -2); the 2nd epoch is full
    bar = _bar(num_training_batches=1000, max_steps=600_000, current_epoch=1, global_step=1000)
    assert bar.total_train_batches == 1000
    assert bar._get_train_description(1).strip() == "Epoch 1/599"


def test_run_folder_description(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    write_csv(tmp_path / "test_results.csv", [{"set": "a", "psnr": 1.5}])
    (tmp_path / "extra.txt").write_text("")
    lines = describe_run_folder(tmp_path)
    assert lines[0].split()[0] == "test_results.csv" and "last.ckpt" in lines[1]
    assert "best" not in lines[1]  # no monitored metric: last.ckpt alone, not called the best
    assert lines[-1].strip() == "extra.txt"
    (tmp_path / "checkpoints" / "best-step0000010.ckpt").write_bytes(b"")
    assert "the best by val/psnr" in describe_run_folder(tmp_path)[1]
    # a best checkpoint alone (callbacks.last_checkpoint=null): no last.ckpt promised; before,
    # "best-step...ckpt: the best by val/psnr; last.ckpt resumes the run (ckpt_path=)" named a missing file
    (tmp_path / "checkpoints" / "last.ckpt").unlink()
    line = describe_run_folder(tmp_path)[1]
    assert "best-step0000010.ckpt: the best by val/psnr" in line and "last.ckpt" not in line, line
    # csv/ says what its metrics.csv holds: a run that trained nothing (model=bicubic) has test scores only;
    # before, every run was said to hold "loss, learning rate and validation scores per step"
    metrics = tmp_path / "csv" / "version_0" / "metrics.csv"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("epoch,step,test/s_x2/psnr,test/s_x2/ssim\n0,0,30.1,0.9\n")
    (line,) = [ln for ln in describe_run_folder(tmp_path) if ln.split()[0] == "csv/"]
    assert line.split(None, 1)[1] == "metrics.csv: test scores", line
    metrics.write_text("epoch,lr-Adam,step,train/loss,val/psnr\n")
    (line,) = [ln for ln in describe_run_folder(tmp_path) if ln.split()[0] == "csv/"]
    assert line.split(None, 1)[1] == "metrics.csv: loss, learning rate, validation scores per step", line


@pytest.mark.slow
def test_short_run_says_what_matters(tmp_path: Path, sample_data: Path) -> None:
    """5 steps in an epoch of 100 batches: validated at the end, best checkpoint kept, <= 60 lines."""
    run = tmp_path / "run"
    overrides = [o for o in TINY_TRAIN if o != "~callbacks.rich_progress_bar"]
    overrides += ["trainer.max_steps=5", "data.batches_per_epoch=100", "compare_bicubic=true",
                  "data.val=[{name:v12,kind:sample,split:val_12bit,limit:1}]"]  # fmt: skip
    proc = subprocess.run(train_cmd(run, sample_data, *overrides), cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    lines = [ln for ln in out.splitlines() if "━" not in ln and "it/s" not in ln]
    assert len(lines) <= 60, out
    assert lines[0].startswith("mdrn: training MDRN x2/x3/x4") and f"run folder: {run}" in out
    assert "validation at step 5: mean PSNR" in out and "v12 x2" in out
    for noise in ("CONFIG", "GPU available", "litlogger", "Warning", "Epoch 0/-"):
        assert noise not in out, noise
    assert f"Run folder {run}:" in out and "test_results.csv" in out
    log = (run / "train.log").read_text()
    assert "GPU available" in log and "validation at step 5" in log  # the log file holds the log
    assert "CONFIG" in (run / "config_tree.log").read_text()
    # validation happened at step 5 (mid-epoch), so the best checkpoint was selected
    assert [p.name for p in (run / "checkpoints").glob("best-*.ckpt")] == ["best-step0000005.ckpt"]
    rows = list(csv.DictReader((run / "test_results.csv").open()))
    assert [(r["set"], r["scale"]) for r in rows] == [("s16", "2"), ("s16", "3"), ("s16", "4")]
    for r in rows:
        gain = float(r["psnr"]) - float(r["bicubic_psnr"])
        assert float(r["gain_db"]) == pytest.approx(gain, abs=1e-9) and r["model"] == "MDRN"
    results = json.loads((run / "results.json").read_text())
    assert results["test"]["test/s16_x2/psnr"] == pytest.approx(float(rows[0]["psnr"]))
    assert results["train"]["val/psnr"] > 0


def test_missing_data_named_at_once(tmp_path: Path) -> None:
    """data=div2k without data: one message naming every missing data set and the command."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from mdrn.train import train

    data = tmp_path / "data"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        overrides = [
            f"paths.data_dir={data}",
            "data.download=false",
            "model.net.n_resblocks=1",
            "trainer=cpu",
        ]
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        del cfg["hydra"]
    with pytest.raises(SystemExit) as ei:
        train(cfg)
    msg = str(ei.value.code)
    for name in ("div2k_train", "div2k_valid", "Set5", "Set14", "B100", "Urban100"):
        assert f"{name} (" in msg
    assert f"python -m mdrn.data download div2k benchmarks --root {data.resolve()}" in msg
    assert msg.count(f"{data.resolve() / 'downloads'}/") == 1
