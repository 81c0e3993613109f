"""Every experiment config composes and runs one step: ``-m 'experiment=glob(*)' debug=fdr`` multirun."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from train_helpers import ROOT, subprocess_env, train_cmd

# the sample data (no download) replaces each experiment's data sources; everything else is theirs
SAMPLE_DATA = [
    "data.train=[{name:sample,kind:sample,split:train}]",
    "data.val=[{name:s16,kind:sample,split:test_16bit,limit:1}]",
    "data.test=[{name:s16,kind:sample,split:test_16bit,limit:1}]",
    "data.batch_size=2",
    "data.patch_size=12",
    "print_config=false",
    "threads=1",
]


@pytest.mark.slow
def test_every_experiment_fast_dev_run(tmp_path: Path) -> None:
    experiments = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    sweep = tmp_path / "sweep"
    cmd = train_cmd(tmp_path / "run", tmp_path / "data", "experiment=glob(*)", "debug=fdr",
                    f"hydra.sweep.dir={sweep}", *SAMPLE_DATA)  # fmt: skip
    cmd.insert(3, "-m")  # python -m mdrn.train -m ...
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=1200)
    done = {}
    for job in sweep.iterdir():
        overrides = job / ".hydra" / "overrides.yaml"
        if job.is_dir() and overrides.exists():
            exp = next(o for o in OmegaConf.load(overrides) if o.startswith("experiment="))
            done[exp.split("=", 1)[1]] = (job / "test_results.txt").exists()
    failed = sorted(e for e in experiments if not done.get(e))
    assert proc.returncode == 0 and not failed, f"failed: {failed}\n{proc.stderr[-4000:]}"
