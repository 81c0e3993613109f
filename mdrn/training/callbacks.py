"""Lightning callbacks of the training entry point: validation at the end, the progress bar, score lines."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

__all__ = ["StepProgressBar", "TrainSpeed", "ValidateAtEnd", "ValidationReport", "val_scores"]

log = logging.getLogger("mdrn.train")


class ValidateAtEnd(L.Callback):
    """Validate after the last training step, wherever ``max_steps`` falls in an epoch.

    Lightning validates at epoch ends only, so a run whose ``max_steps`` ends mid-epoch would end
    unscored and its best-checkpoint callback would have nothing to select on. At the last step this
    asks the trainer to stop (``trainer.should_stop``), which makes Lightning run the validation loop
    and the epoch-end hooks (checkpoints) first. ``min_epochs``/``min_steps`` cannot hold the run
    anyway at ``max_steps``, so they are lifted then.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """At ``max_steps``, stop through ``should_stop`` so that Lightning validates first."""
        if trainer.max_steps is None or trainer.max_steps < 0 or trainer.global_step < trainer.max_steps:
            return
        trainer.fit_loop.min_epochs = None
        trainer.fit_loop.epoch_loop.min_steps = None
        trainer.should_stop = True


def _epoch_length(trainer: L.Trainer) -> int | None:
    """Training batches per epoch (None if unknown or infinite)."""
    n = trainer.num_training_batches
    return int(n) if isinstance(n, int) or (isinstance(n, float) and math.isfinite(n)) else None


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar with true totals: ``Epoch e/E`` when the run is bounded by ``max_steps``
    (not ``Epoch 0/-2``), and an epoch total that counts the batches already done in a resumed epoch
    and the ones ``max_steps`` leaves (not ``800/399``).
    """

    @property
    def total_train_batches(self) -> int | float:
        """Batches of this epoch: the epoch length, cut where ``max_steps`` ends the run."""
        t = self.trainer
        n = _epoch_length(t)
        if n is None or t.max_steps is None or t.max_steps < 0:
            return t.num_training_batches
        accumulate = int(t.accumulate_grad_batches)
        done = max(0, int(t.global_step) * accumulate - t.current_epoch * n)  # > 0 after a mid-epoch resume
        return max(1, min(n, done + (int(t.max_steps) - int(t.global_step)) * accumulate))

    def _get_train_description(self, current_epoch: int) -> str:
        """``Epoch e/last``, the last epoch being the one where ``max_steps`` (or ``max_epochs``) ends."""
        t = self.trainer
        n = _epoch_length(t)
        last = None
        if t.max_steps is not None and t.max_steps > 0 and n:
            last = math.ceil(int(t.max_steps) * int(t.accumulate_grad_batches) / n) - 1
        if t.max_epochs is not None and t.max_epochs >= 0:
            last = t.max_epochs - 1 if last is None else min(last, t.max_epochs - 1)
        desc = f"Epoch {current_epoch}" + (f"/{last}" if last is not None else "")
        if len(self.validation_description) > len(desc):
            desc = f"{desc:{len(self.validation_description)}}"
        return desc


def val_scores(metrics: dict[str, Any], stage: str = "val") -> dict[str, float]:
    """``{name: value}`` of the ``<stage>/...`` scalars among logged metrics."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if k.startswith(f"{stage}/") and getattr(v, "numel", lambda: 1)() == 1
    }


class ValidationReport(L.Callback):
    """One line per validation in the run's log: the mean PSNR and each (set, scale)'s PSNR/SSIM."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the scores just computed (rank 0, not during the sanity check)."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        scores = val_scores(trainer.callback_metrics)
        if "val/psnr" not in scores:
            return
        sets: dict[str, list[str]] = {}
        for k, v in scores.items():
            if k.endswith("/psnr") and k != "val/psnr":
                name, _, s = k.split("/")[1].rpartition("_x")
                ssim = scores.get(k[: -len("psnr")] + "ssim")
                sets.setdefault(name, []).append(
                    f"x{s} {v:.2f}" + (f"/{ssim:.4f}" if ssim is not None else "")
                )
        per_set = [f"{name} {', '.join(sorted(v))}" for name, v in sorted(sets.items())]
        head = f"validation at step {trainer.global_step}: mean PSNR {scores['val/psnr']:.3f} dB"
        if len(per_set) == 1:
            log.info("%s (PSNR/SSIM %s)", head, per_set[0])
        else:  # one line per set
            log.info("%s; PSNR/SSIM:\n%s", head, "\n".join(f"  {line}" for line in per_set))


class TrainSpeed(L.Callback):
    """The wall clock of a fit, written to ``path`` (JSON) when training ends.

    ``first_seconds``: from the start of training to the end of step ``warmup`` (data workers starting,
    compilation, CUDA graph recording); ``steps_per_s``: the steps after it. ``stopped_by`` says whether
    ``max_steps`` ended the run or something else (``trainer.max_time``). The device is synchronized
    twice only (after step ``warmup`` and at the end), so the figures include every queued kernel.
    """

    def __init__(self, path: str, warmup: int = 20) -> None:
        self.path = Path(path)
        self.warmup = int(warmup)
        self._t0 = self._tw = 0.0

    @staticmethod
    def _sync(pl_module: L.LightningModule) -> None:
        import torch

        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock."""
        self._t0 = self._tw = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Split the first ``warmup`` steps off."""
        if trainer.global_step == self.warmup:
            self._sync(pl_module)
            self._tw = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the figures (rank 0)."""
        self._sync(pl_module)
        end = time.perf_counter()
        steps = int(trainer.global_step)
        after = steps - self.warmup if steps > self.warmup else 0
        max_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        data = {
            "steps": steps,
            "max_steps": max_steps,
            "stopped_by": "max_steps" if max_steps and steps >= max_steps else "another limit (max_time?)",
            "seconds": end - self._t0,
            "first_steps": min(steps, self.warmup),
            "first_seconds": (self._tw if after else end) - self._t0,
            "steps_per_s": after / (end - self._tw) if after else None,
        }
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(data, indent=1) + "\n")
