"""Resuming after a SIGKILL mid-epoch gives the same per-step losses as an uninterrupted run (CPU, seed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from train_helpers import ROOT, TINY_TRAIN, read_steps, step_log, subprocess_env, train_cmd

from mdrn.training.module import AtomicCheckpointIO

KILL = ["+callbacks.kill._target_=train_helpers.KillAtStep", "+callbacks.kill.step=17"]
RUN = [*TINY_TRAIN, "trainer.max_steps=24", "data.batches_per_epoch=7", "test=false",
       "callbacks.last_checkpoint.every_n_train_steps=5"]  # fmt: skip


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding the embedded sample data (written once)."""
    from mdrn.data import prepare_sample

    root = tmp_path_factory.mktemp("sample_data")
    prepare_sample(root)
    return root


@pytest.mark.slow
def test_sigkill_resume_same_losses(tmp_path: Path, sample_dir: Path) -> None:
    env = subprocess_env()
    full, killed, resumed = tmp_path / "full", tmp_path / "killed", tmp_path / "resumed"
    procs = [
        subprocess.Popen(train_cmd(full, sample_dir, *RUN, *step_log(full)), cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(train_cmd(killed, sample_dir, *RUN, *step_log(killed), *KILL),
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    ]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    assert procs[0].returncode == 0, outs[0][1][-3000:]
    assert procs[1].returncode == -9, outs[1][1][-3000:]  # killed by SIGKILL, no clean-up ran
    ckpt = killed / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    assert state["global_step"] == 15 and 15 % 7 != 0  # mid-epoch (epoch 2, batch 1)
    # the data position is saved by Lightning with the training loader (mdrn.data.ResumableDataLoader)
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"next_batch": 15, "seed": 0}]
    assert not list(ckpt.parent.glob("*.part"))

    proc = subprocess.run(train_cmd(resumed, sample_dir, *RUN, *step_log(resumed), f"ckpt_path={ckpt}"),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not resumable" not in proc.stdout + proc.stderr + (resumed / "train.log").read_text()
    assert "resuming from" in proc.stdout
    ref = read_steps(full / "steps_rank0.txt")
    before = read_steps(killed / "steps_rank0.txt")
    after = read_steps(resumed / "steps_rank0.txt")
    assert sorted(ref) == list(range(1, 25))
    assert sorted(after) == list(range(16, 25))
    for step in range(1, 18):
        assert before[step] == ref[step]
    for step in range(16, 25):
        assert after[step][0] == ref[step][0]
        assert after[step][1] == pytest.approx(ref[step][1], abs=1e-6), step
    assert {s for s, _ in after.values()} == {2, 3, 4}


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1

    def interrupted(obj: object, fh) -> None:  # a crash half-way through writing
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
