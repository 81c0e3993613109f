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


def test_evaluate_writes_its_csv_in_the_run_folder(tmp_path: Path) -> None:
    root = shared_path("datasets")
    cmd = [sys.executable, "-m", "mdrn.evaluate", "model=bicubic", f"eval.root={root}", "eval.sets=[Set5]",
           "eval.scales=[4]", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert len(rows) == 5 and {r["scale"] for r in rows} == {"4"}
    (mean,) = csv.DictReader((tmp_path / "run" / "means.csv").open())
    assert mean["set"] == "Set5" and float(mean["PSNR"]) == pytest.approx(EXPECTED[4], abs=0.002)
    assert f"Run folder {tmp_path / 'run'}:" in proc.stdout and "results.csv" in proc.stdout
    assert "evaluating Bicubic" in (tmp_path / "run" / "evaluate.log").read_text()


def test_evaluate_without_data_names_every_missing_set(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mdrn.evaluate", "model=bicubic", f"paths.data_dir={tmp_path / 'data'}",
           f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith("mdrn.evaluate: Missing under")
    for name in ("Set5", "Set14", "B100", "Urban100"):
        assert f"{name} (" in proc.stderr
    assert f"python -m mdrn.data download benchmarks --root {(tmp_path / 'data').resolve()}" in proc.stderr


def test_evaluate_untrained_model_refused(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mdrn.evaluate", "model=mdrn_x2", f"eval.root={tmp_path}",
           "eval.sets=[Set5]", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "weights=PATH" in proc.stderr
