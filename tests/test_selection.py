"""The model-selection rule: a run tests the best checkpoint on its validation sets and says which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from mdrn.training.selection import (
    SELECTION_FILE,
    Selection,
    read_selection,
    select_checkpoint,
    val_set_names,
)


def _cfg(config: str, overrides: list[str], output_dir: Path):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.work_dir = str(ROOT)
        del cfg["hydra"]
    return cfg


def test_describe_lines() -> None:
    best = Selection(
        "best", 300, "/r/best-step0000300.ckpt", "val/psnr", 41.23456, ("sample_val_8bit x2, x3",)
    )
    assert best.describe() == "checkpoint: best (val/psnr 41.2346 on sample_val_8bit x2, x3) at step 300"
    assert best.to_dict()["line"] == best.describe()
    assert Selection("last", 800).describe() == (
        "checkpoint: last at step 800 (no checkpoint selection: no validation set)"
    )
    assert val_set_names([("a", 2), ("a", 3), ("b", 2)]) == ["a x2, x3", "b x2"]


class _Callback:
    def __init__(self, monitor: str | None, path: str, score: float | None) -> None:
        self.monitor, self.best_model_path = monitor, path
        self.best_model_score = None if score is None else torch.tensor(score)


class _Trainer:
    def __init__(self, callbacks: list[_Callback], step: int) -> None:
        self.checkpoint_callbacks, self.global_step = callbacks, step


def test_select_best_else_last(tmp_path: Path) -> None:
    ckpt = tmp_path / "best.ckpt"
    torch.save({"global_step": 200, "state_dict": {}}, ckpt)
    callbacks = [_Callback(None, "", None), _Callback("val/psnr", str(ckpt), 30.5)]
    got = select_checkpoint(_Trainer(callbacks, 400), [("v", 2)])
    assert (got.kind, got.step, got.path, got.score, list(got.val_sets)) == (
        "best",
        200,
        str(ckpt),
        30.5,
        ["v x2"],
    )
    last = select_checkpoint(_Trainer([_Callback(None, "", None)], 400))
    assert (last.kind, last.step, last.path) == ("last", 400, None)


@pytest.mark.slow
def test_run_tests_and_reports_the_selected_checkpoint(tmp_path: Path) -> None:
    """A short run: the tested checkpoint is the best by val/psnr; its line heads test_results.txt."""
    from mdrn.data import prepare_sample
    from mdrn.evaluate import evaluate
    from mdrn.train import train

    data = tmp_path / "data"
    prepare_sample(data)
    run = tmp_path / "run"
    cfg = _cfg("train", ["model=srcnn", "model.net.n1=8", "model.net.n2=4", "model.net.scales=[2]",
                         "data=sample", "trainer=cpu", "trainer.max_steps=6", "data.batches_per_epoch=2",
                         "data.batch_size=2", "data.patch_size=12", "print_config=false", "logger=csv",
                         "model.lr=1e-2", "model.save_images=0", f"paths.data_dir={data}",
                         "data.val=[{name:v8,kind:sample,split:val_8bit}]",
                         "data.test=[{name:t8,kind:sample,split:test_8bit,limit:1}]",
                         "callbacks.rich_progress_bar=null", "callbacks.model_summary=null",
                         # the worst (an early step, not the weights in memory at the end): a wrong
                         # checkpoint tested would then show in the scores
                         "callbacks.best_checkpoint.mode=min"], run)  # fmt: skip
    results = train(cfg)
    sel = read_selection(run)
    assert sel == results["checkpoint"] and sel["kind"] == "best" and sel["val_sets"] == ["v8 x2"]
    metrics = [r for r in (run / "csv" / "metrics.csv").read_text().splitlines()[1:] if r]
    assert sel["step"] in {2, 4, 6} and Path(sel["path"]).name == f"best-step{sel['step']:07d}.ckpt"
    assert metrics  # validation was logged
    assert (run / "test_results.txt").read_text().splitlines()[0] == sel["line"]
    assert sel["line"].startswith("checkpoint: best (val/psnr ") and sel["line"].endswith(
        f"at step {sel['step']}"
    )
    # the printed scores are those of the selected checkpoint
    ecfg = _cfg("eval", [f"ckpt={sel['path']}", f"eval.root={data / 'sample' / 'test'}", "eval.sets=[8bit]",
                         "eval.scales=[2]"], tmp_path / "eval")  # fmt: skip
    rows = evaluate(ecfg)
    first = sorted(rows, key=lambda r: r["image"])[0]
    assert results["test"]["test/t8_x2/psnr"] == pytest.approx(first["psnr"], abs=1e-6)
    assert json.loads((run / SELECTION_FILE).read_text())["path"] == results["best_ckpt"]
