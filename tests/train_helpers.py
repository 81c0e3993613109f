"""Helpers of the training-subprocess tests: callbacks injected with ``+callbacks.<name>._target_=...``."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L


class StepLog(L.Callback):
    """Append ``step scale loss`` (full precision) per training step to ``<folder>/steps_rank<r>.txt``."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:  # fmt: skip
        """Record the step just taken."""
        self.folder.mkdir(parents=True, exist_ok=True)
        loss = float(outputs["loss"] if isinstance(outputs, dict) else outputs)
        line = f"{trainer.global_step} {int(batch['scale'][0])} {loss!r}\n"
        with open(self.folder / f"steps_rank{trainer.global_rank}.txt", "a") as fh:
            fh.write(line)
            fh.flush()


class KillAtStep(L.Callback):
    """SIGKILL this process right after training step ``step`` (an abrupt crash mid-epoch)."""

    def __init__(self, step: int) -> None:
        self.step = int(step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:  # fmt: skip
        """Kill the process once ``step`` steps are done."""
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def read_steps(path: Path) -> dict[int, tuple[int, float]]:
    """``{step: (scale, loss)}`` from a StepLog file."""
    out = {}
    for line in Path(path).read_text().split("\n"):
        if line.strip():
            step, scale, loss = line.split()
            out[int(step)] = (int(scale), float(loss))
    return out


TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
#: a tiny multi-scale MDRN on the sample data: 16-bit CT as the only evaluation image, no progress bar
TINY_TRAIN = [
    "model=mdrn_multiscale",
    "model.net.n_resblocks=1",
    "model.net.n_feats=8",
    "model.save_images=0",
    "data=sample",
    "data.batch_size=2",
    "data.patch_size=12",
    "data.num_workers=0",
    "data.val=[{name:s16,kind:sample,split:test_16bit,limit:1}]",
    "data.test=[{name:s16,kind:sample,split:test_16bit,limit:1}]",
    "trainer=cpu",
    "logger=csv",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
    "print_config=false",
    "threads=1",
]


def subprocess_env() -> dict[str, str]:
    """The environment of a training subprocess: these helpers importable, no W&B prompt."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    env.setdefault("WANDB_MODE", "offline")
    return env


def train_cmd(out_dir: Path, data_dir: Path, *overrides: str) -> list[str]:
    """``python -m mdrn.train`` writing into ``out_dir`` with the sample data of ``data_dir``."""
    import sys

    return [sys.executable, "-m", "mdrn.train", f"hydra.run.dir={out_dir}", f"paths.data_dir={data_dir}",
            *overrides]  # fmt: skip


def step_log(folder: Path) -> list[str]:
    """Overrides adding a StepLog callback writing into ``folder``."""
    return ["+callbacks.steplog._target_=train_helpers.StepLog", f"+callbacks.steplog.folder={folder}"]
