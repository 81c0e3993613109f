"""A 2-process DDP run (gloo, CPU) of the multi-scale MDRN: every rank trains the same scale sequence."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
import torch
from train_helpers import ROOT, TINY_TRAIN, read_steps, step_log, subprocess_env, train_cmd

from mdrn.data import ScaleBatchSampler


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    from mdrn.data import prepare_sample

    prepare_sample(tmp_path / "data")
    out = tmp_path / "run"
    cmd = train_cmd(out, tmp_path / "data", *TINY_TRAIN, "trainer=ddp", "trainer.accelerator=cpu",
                    "trainer.devices=2", "trainer.max_steps=6", "data.batches_per_epoch=3",
                    *step_log(out))  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [read_steps(out / f"steps_rank{r}.txt") for r in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1]) == list(range(1, 7))
    expected = ScaleBatchSampler(1, 1, 1, scales=(2, 3, 4), seed=0)
    for step in range(1, 7):
        assert ranks[0][step][0] == ranks[1][step][0] == expected.scale_of(step - 1)
    # each rank draws its own patches: the per-rank losses differ
    assert any(ranks[0][s][1] != ranks[1][s][1] for s in range(1, 7))
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6 and "mdrn_arch" in ckpt
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    psnr = [float(r["val/s16_x2/psnr"]) for r in rows if r.get("val/s16_x2/psnr")]
    assert len(psnr) == 2 and all(p > 0 for p in psnr)  # validated after each of the 2 epochs
    assert any(r.get("test/s16_x4/psnr") for r in rows)
    assert "s16" in (out / "test_results.txt").read_text()
