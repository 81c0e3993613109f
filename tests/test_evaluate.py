"""The evaluation command on ../shared/datasets/Set5 gives the protocol's bicubic figures."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, shared_path

EXPECTED = {2: 33.682, 3: 30.405, 4: 28.431}


def test_evaluate_bicubic_set5(tmp_path: Path) -> None:
    root = shared_path("datasets")
    out = tmp_path / "results.csv"
    cmd = [sys.executable, "-m", "mdrn.evaluate", "model=bicubic", f"eval.root={root}", "eval.sets=[Set5]",
           "eval.scales=[2,3,4]", f"eval.output={out}", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["set", "scale", "image", "psnr", "ssim"]
    assert len(rows) == 15
    for s, ref in EXPECTED.items():
        vals = [float(r["psnr"]) for r in rows if int(r["scale"]) == s]
        assert sum(vals) / len(vals) == pytest.approx(ref, abs=0.002)
    assert "Set5" in proc.stdout and "33.68" in proc.stdout


def test_evaluate_untrained_model_refused(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mdrn.evaluate", "model=mdrn_x2", f"eval.root={tmp_path}",
           "eval.sets=[Set5]", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "weights=PATH" in proc.stderr
