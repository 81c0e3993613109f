"""The summary of a Hydra multirun: one row per job, its overrides and final scores (printed and as CSV).

Each job of ``python -m mdrn.train -m ...`` (or ``mdrn.evaluate``) leaves ``results.json`` in its folder
(:func:`mdrn.training.report.write_results`); at the end of the sweep :class:`SweepSummary` (a Hydra
callback, ``conf/hydra/default.yaml``) reads them and writes ``<multirun folder>/summary.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

__all__ = ["SweepSummary", "summarize_sweep"]

log = logging.getLogger("mdrn.sweep")


def _job_overrides(job_dir: Path) -> dict[str, str]:
    """``{key: value}`` of the job's command-line overrides (``.hydra/overrides.yaml``)."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out = {}
    for item in OmegaConf.load(path):
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def _metrics(results: dict[str, Any]) -> dict[str, float]:
    """Final scores of a job: last validation, test per (set, scale), means and the gain over bicubic."""
    out: dict[str, float] = {}
    train = results.get("train") or {}
    if train.get("val/psnr") is not None:
        out["val/psnr"] = train["val/psnr"]
    test = {k: v for k, v in (results.get("test") or {}).items() if v is not None}
    out.update(test)
    bicubic = results.get("bicubic") or {}
    gains = [
        v - bicubic[k] for k, v in test.items() if k.endswith("/psnr") and k != "test/psnr" and k in bicubic
    ]
    if gains:
        out["gain_db"] = sum(gains) / len(gains)
    return out


def summarize_sweep(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``<sweep_dir>/summary.csv`` (one row per job folder) and print its main columns; return rows."""
    from mdrn.training.config import results_table
    from mdrn.training.report import read_results, write_csv

    sweep_dir = Path(sweep_dir)
    jobs = sorted(
        (p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()),
        key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name),
    )
    rows = []
    for job in jobs:
        results = read_results(job)
        row: dict[str, Any] = {"job": job.name, **_job_overrides(job)}
        row["status"] = "ok" if results is not None else "no results (failed or running)"
        row.update(_metrics(results or {}))
        row["folder"] = str(job)
        rows.append(row)
    if not rows:
        return rows
    keys = list(dict.fromkeys(k for r in rows for k in r))
    metrics = [k for k in keys if "/" in k or k == "gain_db"]
    overrides = [k for k in keys if k not in metrics and k not in ("job", "status", "folder")]
    columns = ["job", *overrides, "status", *metrics, "folder"]
    path = write_csv(sweep_dir / "summary.csv", rows, columns)
    varying = [k for k in overrides if len({str(r.get(k)) for r in rows}) > 1]  # the swept parameters
    shown = ["job", *varying, *[k for k in ("val/psnr", "test/psnr", "gain_db") if k in metrics]]
    if any(r["status"] != "ok" for r in rows):
        shown.append("status")
    table = [{c: r.get(c, "-") for c in shown} for r in rows]
    results_table(f"sweep summary ({len(rows)} jobs)", table, shown)
    print(f"mdrn: every job's overrides and scores: {path}")
    return rows


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, summarize its jobs (``summarize_sweep``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write and print the summary of the sweep folder."""
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            summarize_sweep(sweep_dir)
