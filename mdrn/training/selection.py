"""Model selection: which checkpoint a training run tests and exports, and the line that says which.

The rule (one for every run): a run with validation sets keeps the checkpoint with the best
``val/psnr`` (the mean validation PSNR over its validation loaders); without validation the weights at
the end of training (``last``) are used. Validation sets are never test sets (``conf/experiment``
presets are checked by ``tests/test_experiments.py``), so no test image takes part in the choice. The
run's printed test table, ``test_results.txt``, ``checkpoint.json`` (beside them), the recorded
``.run.json`` and the rendered tables all name the same checkpoint with :meth:`Selection.describe`, e.g.
``checkpoint: best (val/psnr 41.2345 on sample_val_8bit x2) at step 19000``.

A recipe states its rule before it runs: the config key ``selection`` (``best`` or ``last``; every
``conf/experiment`` recipe states it, ``tests/test_selection_rules.py`` checks that, and that a ``best``
rule validates on at least :data:`MIN_VAL_IMAGES` images). :func:`check_rule` refuses a run whose
callbacks would do something else than the stated rule, and the run's ``checkpoint.json`` carries it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MIN_VAL_IMAGES",
    "RULES",
    "SELECTION_FILE",
    "Selection",
    "check_rule",
    "given_checkpoint",
    "keep_best_of_resumed",
    "read_selection",
    "select_checkpoint",
    "val_set_names",
]

#: the file a training run writes in its output folder
SELECTION_FILE = "checkpoint.json"
#: the rules a config may state (``selection: best`` / ``selection: last``)
RULES = ("best", "last")
#: the fewest validation images a ``best`` rule selects on (recipes in ``conf/experiment``)
MIN_VAL_IMAGES = 8
#: the metric and direction of the ``best`` rule
MONITOR, MODE = "val/psnr", "max"


@dataclass(frozen=True)
class Selection:
    """The checkpoint a run was tested with: best by a validation metric, the last one, or a given file."""

    kind: str  # "best" | "last" | "given"
    step: int | None
    path: str | None = None  # the checkpoint file (None: the weights in memory at the end of training)
    monitor: str | None = None
    score: float | None = None
    val_sets: Sequence[str] = field(default_factory=tuple)
    rule: str | None = None  # the rule the config stated before the run (None: not stated)

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


def check_rule(rule: str | None, callbacks: Mapping[str, Any] | None, n_val_sources: int) -> str:
    """The rule a run follows: the stated one, checked against its callbacks and validation sets.

    ``best`` needs validation sets and a checkpoint callback monitoring ``val/psnr`` in mode ``max``;
    ``last`` needs no monitoring checkpoint callback. ``None`` (not stated: ad-hoc runs) gives what the
    callbacks do. Anything else raises one ``ValueError`` naming the config keys to change.
    """
    monitoring = {
        name: (cb.get("monitor"), cb.get("mode", "min"))
        for name, cb in (callbacks or {}).items()
        if isinstance(cb, Mapping)
        and str(cb.get("_target_", "")).endswith("ModelCheckpoint")
        and cb.get("monitor")
    }
    if rule is None:
        return "best" if monitoring and n_val_sources else "last"
    if rule not in RULES:
        raise ValueError(f"selection: {rule!r} is not a selection rule (one of {', '.join(RULES)})")
    if rule == "last" and monitoring:
        names = ", ".join(f"callbacks.{n}" for n in monitoring)
        raise ValueError(f"selection: last, but {names} keeps a best checkpoint: set {names}=null")
    if rule == "best":
        if not n_val_sources:
            raise ValueError("selection: best needs validation sets (data.val is empty)")
        if not monitoring:
            raise ValueError(
                "selection: best, but no checkpoint callback monitors val/psnr (callbacks.best_checkpoint)"
            )
        wrong = {n: m for n, m in monitoring.items() if m != (MONITOR, MODE)}
        if wrong:
            got = "; ".join(f"callbacks.{n}: monitor {m[0]}, mode {m[1]}" for n, m in wrong.items())
            raise ValueError(
                f"selection: best keeps the highest {MONITOR} (monitor {MONITOR}, mode {MODE}); got {got}"
            )
    return rule


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


def select_checkpoint(
    trainer: Any, val_keys: Iterable[tuple[str, int]] = (), rule: str | None = None
) -> Selection:
    """The checkpoint to test after ``trainer.fit``: the best of a monitoring callback, else the last."""
    sets = val_set_names(val_keys)
    for cb in getattr(trainer, "checkpoint_callbacks", []):
        if getattr(cb, "monitor", None) and cb.best_model_path and cb.best_model_score is not None:
            path = str(cb.best_model_path)
            score = float(cb.best_model_score)
            return Selection("best", _checkpoint_step(path), path, cb.monitor, score, tuple(sets), rule)
    return Selection("last", int(trainer.global_step), val_sets=tuple(sets), rule=rule)


def keep_best_of_resumed(
    checkpoint_callbacks: Iterable[Any], states: Mapping[str, Any]
) -> list[tuple[str, float]]:
    """Give each monitoring checkpoint callback the best checkpoint of the run that this run resumes
    (``states``: the ``callbacks`` of its Lightning checkpoint); return the (path, score) pairs kept so.

    A resumed run writes into a new run folder, and Lightning then forgets the best score kept before the
    resume (it reloads it only into the same folder): a later, worse checkpoint would be called the best.
    The earlier best stays where it is (never deleted from another folder) and competes with the new ones.
    """
    kept: list[tuple[str, float]] = []
    for cb in checkpoint_callbacks:
        state = states.get(getattr(cb, "state_key", None)) if getattr(cb, "monitor", None) else None
        if not state or state.get("dirpath") == cb.dirpath or state.get("best_model_score") is None:
            continue  # nothing kept, or the same folder (Lightning restores it all)
        path, score = state.get("best_model_path"), state["best_model_score"]
        if path and os.path.isfile(path):
            cb.best_model_path = cb.kth_best_model_path = path
            cb.best_model_score = cb.kth_value = score
            cb.best_k_models = {path: score}
            kept.append((path, float(score)))
    return kept


def given_checkpoint(path: str | os.PathLike[str]) -> Selection:
    """A checkpoint named by the user (``ckpt_path=...`` without training)."""
    return Selection("given", _checkpoint_step(path), str(path))


def read_selection(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``checkpoint.json`` a run wrote (a file or its run folder), or None where there is none."""
    path = Path(path)
    if path.is_dir():
        path = path / SELECTION_FILE
    return json.loads(path.read_text()) if path.is_file() else None
