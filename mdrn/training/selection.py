"""Model selection: which checkpoint a training run tests and exports, and the line that says which.

The rule (one for every run): a run with validation sets keeps the checkpoint with the best
``val/psnr`` (the mean validation PSNR over its validation loaders); without validation the weights at
the end of training (``last``) are used. Validation sets are never test sets (``conf/experiment``
presets are checked by ``tests/test_experiments.py``), so no test image takes part in the choice. The
run's printed test table, ``test_results.txt``, ``checkpoint.json`` (beside them), the recorded
``.run.json`` and the rendered tables all name the same checkpoint with :meth:`Selection.describe`, e.g.
``checkpoint: best (val/psnr 41.2345 on sample_val_8bit x2) at step 19000``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SELECTION_FILE",
    "Selection",
    "given_checkpoint",
    "read_selection",
    "select_checkpoint",
    "val_set_names",
]

#: the file a training run writes in its output folder
SELECTION_FILE = "checkpoint.json"


@dataclass(frozen=True)
class Selection:
    """The checkpoint a run was tested with: best by a validation metric, the last one, or a given file."""

    kind: str  # "best" | "last" | "given"
    step: int | None
    path: str | None = None  # the checkpoint file (None: the weights in memory at the end of training)
    monitor: str | None = None
    score: float | None = None
    val_sets: Sequence[str] = field(default_factory=tuple)

    def describe(self) -> str:
        """One line: ``checkpoint: best (val/psnr on sample_val_8bit x2) at step N``, or last/given."""
        at = f" at step {self.step}" if self.step is not None else ""
        if self.kind == "best":
            on = f" on {', '.join(self.val_sets)}" if self.val_sets else ""
            return f"checkpoint: best ({self.monitor} {self.score:.4f}{on}){at}"
        if self.kind == "given":
            return f"checkpoint: given ({Path(str(self.path)).name}){at}"
        why = "no checkpoint was monitored" if self.val_sets else "no validation set"
        return f"checkpoint: last{at} (no checkpoint selection: {why})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields plus the ``describe`` line."""
        return {**asdict(self), "val_sets": list(self.val_sets), "line": self.describe()}


def val_set_names(keys: Iterable[tuple[str, int]]) -> list[str]:
    """``["sample_val_8bit x2, x3", ...]`` from the validation loaders' (set, scale) keys, in order."""
    scales: dict[str, list[int]] = {}
    for name, s in keys:
        scales.setdefault(str(name), []).append(int(s))
    return [f"{n} " + ", ".join(f"x{s}" for s in v) for n, v in scales.items()]


def _checkpoint_step(path: str | os.PathLike[str]) -> int | None:
    """The ``global_step`` stored in a Lightning checkpoint (None if it has none)."""
    import torch

    step = torch.load(str(path), map_location="cpu", weights_only=True).get("global_step")
    return int(step) if step is not None else None


def select_checkpoint(trainer: Any, val_keys: Iterable[tuple[str, int]] = ()) -> Selection:
    """The checkpoint to test after ``trainer.fit``: the best of a monitoring callback, else the last."""
    sets = val_set_names(val_keys)
    for cb in getattr(trainer, "checkpoint_callbacks", []):
        if getattr(cb, "monitor", None) and cb.best_model_path and cb.best_model_score is not None:
            path = str(cb.best_model_path)
            score = float(cb.best_model_score)
            return Selection("best", _checkpoint_step(path), path, cb.monitor, score, tuple(sets))
    return Selection("last", int(trainer.global_step), val_sets=tuple(sets))


def given_checkpoint(path: str | os.PathLike[str]) -> Selection:
    """A checkpoint named by the user (``ckpt_path=...`` without training)."""
    return Selection("given", _checkpoint_step(path), str(path))


def read_selection(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``checkpoint.json`` a run wrote (a file or its run folder), or None where there is none."""
    path = Path(path)
    if path.is_dir():
        path = path / SELECTION_FILE
    return json.loads(path.read_text()) if path.is_file() else None
