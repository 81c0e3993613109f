"""What a run leaves: the scores it writes (CSV, JSON) and the description of its run folder."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_JSON",
    "describe_run_folder",
    "display_path",
    "duration",
    "read_results",
    "write_csv",
    "write_results",
]

#: the file in a run folder holding its final scores (read by the sweep summary)
RESULTS_JSON = "results.json"

#: what the entries of a run folder are, in the order they are listed
_ENTRIES = {
    "test_results.csv": "test scores per set and scale (and bicubic's, and the gain)",
    "results.csv": "scores per image",
    "means.csv": "mean scores per set and scale",
    "checkpoints": "the best by val/psnr; last.ckpt resumes the run (ckpt_path=)",
    "checkpoint.json": "which checkpoint the test table used, and why (the selection rule)",
    "samples": "super-resolved test images",
    "csv": "metrics.csv: loss, learning rate and validation scores per step",
    "tensorboard": "TensorBoard logs (tensorboard --logdir <run>)",
    "wandb": "offline W&B run (wandb sync <run>/wandb/offline-run-*)",
    "fit-profile.txt": "where the training time goes (debug=profiler)",
    "config.yaml": "the composed config (config_tree.log: resolved)",
    "train.log": "the full log, third-party messages included",
    "evaluate.log": "the full log, third-party messages included",
}


def write_csv(
    path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` as CSV (atomically; an existing file is replaced); floats keep full precision."""
    from mdrn.io.images import atomic_write

    columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()), overwrite=True)
    return path


def _plain(value: Any) -> Any:
    """JSON-able copy (floats that are not finite become None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def write_results(out_dir: str | Path, results: Mapping[str, Any]) -> Path:
    """Save a run's final scores as ``<run>/results.json``."""
    from mdrn.io.images import atomic_write

    path = Path(out_dir) / RESULTS_JSON
    text = json.dumps(_plain(results), indent=1, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text), overwrite=True)
    return path


def read_results(run_dir: str | Path) -> dict[str, Any] | None:
    """A run folder's ``results.json`` (None if the run wrote none)."""
    path = Path(run_dir) / RESULTS_JSON
    return json.loads(path.read_text()) if path.is_file() else None


def display_path(path: str | Path) -> str:
    """``path`` relative to the working directory when inside it (as the user typed it), else absolute."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s`` or ``12.3 s``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"


def _metrics_entry(folder: Path) -> str | None:
    """What the run's ``metrics.csv`` holds, from its header (a run that trained nothing: test scores)."""
    found = sorted(folder.rglob("metrics.csv"))
    try:
        header = found[0].open().readline().strip().split(",") if found else []
    except OSError:
        return None
    kinds = [
        what
        for what, hit in (
            ("loss", lambda c: c.startswith("train/loss")),
            ("learning rate", lambda c: c.startswith("lr")),
            ("validation scores", lambda c: c.startswith("val/")),
            ("test scores", lambda c: c.startswith("test/")),
        )
        if any(hit(c) for c in header)
    ]
    return f"metrics.csv: {', '.join(kinds)}" + (" per step" if "loss" in kinds else "") if kinds else None


def describe_run_folder(out_dir: str | Path) -> list[str]:
    """One line per entry of a run folder: name and what it holds (known entries first)."""
    out_dir = Path(out_dir)
    present = {p.name: p for p in out_dir.iterdir() if not p.name.startswith(".")} if out_dir.is_dir() else {}
    skip = {"config_tree.log", "test_results.txt", RESULTS_JSON}
    names = [n for n in _ENTRIES if n in present] + sorted(
        n for n in present if n not in _ENTRIES and n not in skip
    )
    lines = []
    for n in names:
        label = n + ("/" if present[n].is_dir() else "")
        what = _ENTRIES.get(n, "")
        if n == "checkpoints":
            ckpts = sorted(p.name for p in present[n].glob("*.ckpt"))
            best, last = what.split("; ", 1)  # each part only where its file is there
            has_best, has_last = any(c.startswith("best") for c in ckpts), "last.ckpt" in ckpts
            what = "; ".join([*([best] if has_best else []), *([last] if has_last else [])])
            what = f"{', '.join(ckpts[:3])}{' ...' if len(ckpts) > 3 else ''}{': ' if what else ''}{what}"
        if n == "csv":
            what = _metrics_entry(present[n]) or what
        lines.append(f"  {label:<18} {what}".rstrip())
    return lines
