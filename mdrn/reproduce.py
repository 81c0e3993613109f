"""The paper's tables and figures, rendered from the recorded runs in ``experiments/results/``.

Every artefact is rendered from files that runs wrote (per-image score CSVs of ``python -m
mdrn.evaluate``, training logs, timing CSVs), never from numbers typed in here; the published values
come from ``experiments/published.json`` (a copy of ``../shared/reference/published.json``). Each
render writes a CSV, a Markdown table and PNG figures beside the inputs, with the published value, our
value and their difference side by side. A cell whose run has not happened says so, with the command
that fills it.

Commands::

    python -m mdrn.reproduce table1            # or table2, fig8, figs10_14, figs15_16, claims, all
    python -m mdrn.reproduce record OUT -- CMD  # run CMD; command/machine/date/duration -> OUT.run.json
    python -m mdrn.reproduce params             # the parameter-count claim (exact counts from the models)

Runs are launched by the ``make`` targets of ``experiments/experiments.mk``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import glob
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS",
    "SCALES",
    "SETS",
    "TABLE1_METHODS",
    "Table1Source",
    "machine_info",
    "markdown_table",
    "mean_scores",
    "param_counts",
    "published_table1",
    "read_csv",
    "record",
    "render",
    "render_params",
    "render_table1",
    "run_info",
    "train_preset",
    "write_csv",
    "write_text",
]

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
#: where runs record their outputs and renders write the artefacts
RESULTS = Path(os.environ.get("MDRN_RESULTS", EXPERIMENTS / "results"))
PUBLISHED = EXPERIMENTS / "published.json"
SETS = ("Set5", "Set14", "B100", "Urban100")
SCALES = (2, 3, 4)
TABLE1_METHODS = ("Bicubic", "A+", "SRCNN", "VDSR", "MDRN")
TABLE1_COLUMNS = ["method", "set", "scale", "psnr", "ssim", "published_psnr", "published_ssim"]
#: the folder of benchmark sets on this machine, as the make targets spell it
DATA_HINT = "DIR"

NOT_RUN_DATA = "not run here (data not available)"
NOT_YET_RUN = "not yet run (`make table1` runs it)"


# ------------------------------------------------------------------------------------------ files


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (overwriting: renders are regenerated)."""
    from mdrn.io import atomic_write

    return atomic_write(path, lambda tmp: tmp.write_text(text), overwrite=True)


def _fmt(value: Any) -> str:
    """CSV cell text: floats with enough digits, None/NaN as empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1 else f"{value:.4f}"
    return str(value)


def write_csv(
    path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> Path:
    """Write ``rows`` (dicts) with ``columns`` (extra keys ignored) as CSV, atomically."""
    lines = [",".join(columns)]
    for row in rows:
        cells = [_fmt(row.get(c)) for c in columns]
        lines.append(",".join(f'"{c}"' if ("," in c or '"' in c) else c for c in cells))
    return write_text(path, "\n".join(lines) + "\n")


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read a CSV file with a header into a list of dicts (a clear error if it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file (run its make target first)")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def mean_scores(paths: Iterable[str | os.PathLike[str]]) -> dict[tuple[str, int], tuple[float, float, int]]:
    """Mean PSNR/SSIM and image count per (set, scale) of score CSVs.

    A CSV with an ``image`` column holds per-image rows (``set,scale,image,psnr,ssim``, as written by
    ``python -m mdrn.evaluate``) and is averaged; one without holds already averaged rows (``set,scale,
    psnr,ssim``; e.g. ``results/aplus/aplus.csv``), taken as they are (image count 0 = unknown).
    """
    acc: dict[tuple[str, int], list[tuple[float, float]]] = {}
    means: dict[tuple[str, int], tuple[float, float, int]] = {}
    for path in paths:
        for row in read_csv(path):
            missing = {"set", "scale", "psnr", "ssim"} - set(row)
            if missing:
                raise ValueError(f"{path}: not a score CSV (missing columns {sorted(missing)})")
            key = (row["set"], int(row["scale"]))
            if "image" in row:
                acc.setdefault(key, []).append((float(row["psnr"]), float(row["ssim"])))
            else:
                means[key] = (float(row["psnr"]), float(row["ssim"]), int(row.get("images") or 0))
    both = sorted(set(acc) & set(means))
    if both:
        raise ValueError(f"{both}: both per-image and averaged rows were given")
    out = {
        k: (math.fsum(p for p, _ in v) / len(v), math.fsum(s for _, s in v) / len(v), len(v))
        for k, v in acc.items()
    }
    return {**out, **means}


def load_published(path: str | os.PathLike[str] = PUBLISHED) -> dict[str, Any]:
    """Return the published figures (``experiments/published.json``)."""
    return json.loads(Path(path).read_text())


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return a GitHub Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in rows:
        out.append("| " + " | ".join("" if c is None else str(c) for c in row) + " |")
    return "\n".join(out) + "\n"


def _num(value: float | None, digits: int) -> str:
    """Markdown number or an em dash."""
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _diff(ours: float | None, pub: float | None, digits: int) -> str:
    """Signed difference ours - published, or an em dash."""
    if ours is None or pub is None:
        return "—"
    return f"{ours - pub:+.{digits}f}"


# ------------------------------------------------------------------------------------- recording


def machine_info() -> dict[str, Any]:
    """Facts about this machine that matter for the recorded numbers (CPU, cores, versions)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _git_commit() -> str | None:
    """The current git commit of the repository (None outside a clone)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


def run_info_path(output: str | os.PathLike[str]) -> Path:
    """The run record beside a recorded output: ``<output>.run.json``."""
    output = Path(output)
    return output.with_name(output.name + ".run.json")


def record(output: str | os.PathLike[str], command: Sequence[str], *, log: bool = True) -> int:
    """Run ``command``; write ``<output>.run.json``: command, machine, UTC dates, seconds, commit, exit code.

    With ``log`` the command's output is also written to ``<output>.log``. Returns the exit code.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    log_lines: list[str] = []
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        log_lines.append(line)
    code = proc.wait()
    info = {
        "command": shlex.join(command),
        "output": output.name,
        "machine": machine_info(),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 1),
        "git_commit": _git_commit(),
        "returncode": code,
    }
    write_text(run_info_path(output), json.dumps(info, indent=2) + "\n")
    if log:
        write_text(output.with_name(output.name + ".log"), "".join(log_lines))
    return code


def train_preset(
    name: str,
    overrides: Sequence[str] = (),
    results: Path = RESULTS,
    logs: Path = ROOT / "logs" / "experiments",
) -> int:
    """Train ``experiment=<name>`` and record it: weights, training metrics and test table in ``results``.

    Runs ``python -m mdrn.train experiment=<name> hydra.run.dir=<logs>/<name> [overrides]`` (recorded in
    ``results/models/<name>.safetensors.run.json``) and converts the checkpoint the run tested (the model
    selection rule of :mod:`mdrn.selection`: best by ``val/psnr`` on the validation sets, which are never
    test sets, else the last) to ``results/models/<name>.safetensors``; the run record gets a
    ``checkpoint`` entry naming it. Copies the CSV logger's ``metrics.csv`` to
    ``results/train/<name>_metrics.csv`` and the printed test table (headed by the checkpoint line) beside it.
    """
    import shutil

    from mdrn.selection import read_selection

    run_dir = logs / name
    weights = results / "models" / f"{name}.safetensors"
    cmd = [sys.executable, "-m", "mdrn.train", f"experiment={name}", f"hydra.run.dir={run_dir}", *overrides]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    code = record(weights, cmd)
    if code != 0:
        return code
    selection = read_selection(run_dir)
    if selection is None:
        print(f"{run_dir}: the run wrote no checkpoint.json (which checkpoint it tested)", file=sys.stderr)
        return 1
    ckpt = Path(selection["path"]) if selection.get("path") else run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        print(f"{ckpt}: the checkpoint the run tested is missing", file=sys.stderr)
        return 1
    from mdrn.weights import load_model, save_model

    save_model(load_model(ckpt), weights, overwrite=True)
    info = run_info(weights) or {}
    info["checkpoint"] = {**selection, "path": ckpt.name}
    write_text(run_info_path(weights), json.dumps(info, indent=2) + "\n")
    train_dir = results / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    for src, dst in ((run_dir / ".hydra" / "config.yaml", f"{name}_config.yaml"),
                     (run_dir / "csv" / "metrics.csv", f"{name}_metrics.csv"),
                     (run_dir / "init_report.txt", f"{name}_init_report.txt"),
                     (run_dir / "test_results.txt", f"{name}_test_results.txt")):  # fmt: skip
        if src.is_file():
            shutil.copyfile(src, train_dir / dst)
    print(f"recorded {weights} ({selection['line']}) and {train_dir}/{name}_*")
    return 0


def run_info(output: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run record of a recorded output, or None if it was not recorded."""
    path = run_info_path(output)
    return json.loads(path.read_text()) if path.is_file() else None


def checkpoint_line(path: str | os.PathLike[str]) -> str | None:
    """Which checkpoint a recorded model file holds, or the model a recorded score CSV evaluated.

    ``models/<preset>.safetensors``: the ``checkpoint`` entry of its run record (``checkpoint: best
    (val/psnr ... on ...) at step N``). A score CSV: that of the ``weights=...`` file its command names.
    None where the run is not recorded or evaluated no trained preset.
    """
    info = run_info(path)
    if info is None:
        return None
    if info.get("checkpoint"):
        return str(info["checkpoint"]["line"])
    for arg in shlex.split(info.get("command", "")):
        if arg.startswith("weights=") and arg.endswith(".safetensors"):
            model = Path(arg.split("=", 1)[1])
            model = model if model.is_absolute() else Path(path).parent.parent / "models" / model.name
            return checkpoint_line(model)
    return None


def _run_line(paths: Sequence[Path]) -> str:
    """One Markdown line per recorded output: command, date, duration, machine."""
    lines = []
    for p in paths:
        info = run_info(p)
        if info is None:
            md = p.with_suffix(".md")
            note = f"recorded in `{md.parent.name}/{md.name}`" if md.is_file() else "no run record"
            lines.append(f"- `{p.name}`: {note}")
            continue
        m = info.get("machine", {})
        ckpt = info.get("checkpoint")
        lines.append(
            f"- `{p.name}`: `{info['command']}` — {info['started_utc']} UTC, {info['seconds']:.0f} s, "
            f"{m.get('cpu')} ({m.get('cores')} cores{', ' + m['gpu'] if m.get('gpu') else ''}), "
            f"torch {m.get('torch')}, commit {str(info.get('git_commit'))[:8]}"
            + (f"; {ckpt['line']}" if ckpt else "")
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ Table 1


@dataclass(frozen=True)
class Table1Source:
    """Where a Table 1 method's scores come from and how to make them."""

    method: str
    variant: str  # what ran, in words (e.g. "official weights", "CPU preset, not the paper's training")
    pattern: str  # glob of per-image score CSVs, relative to the results folder
    command: str  # the command that makes them; {sets} and {out} are filled in
    pending: str | None = None  # why nothing ran yet (e.g. weights not downloadable here)
    output: str | None = None  # the output the command writes, {sets} filled in (default: from pattern)


def _eval_command(model_args: str) -> str:
    """The evaluate command of a Table 1 method with placeholders for sets and output."""
    return (
        f"python -m mdrn.evaluate {model_args} eval.root={DATA_HINT} 'eval.sets=[{{sets}}]' "
        "'eval.scales=[2,3,4]' eval.output={out}"
    )


TABLE1_SOURCES: tuple[Table1Source, ...] = (
    Table1Source("Bicubic", "MATLAB bicubic (mdrn.resize), float-Y protocol", "table1/bicubic*.csv",
                 _eval_command("model=bicubic")),
    Table1Source("A+", "mdrn.aplus trained on T91 (run in results/aplus/aplus.md)", "aplus/aplus.csv",
                 "python scripts/train_aplus.py --results experiments/results/aplus --dict-samples 100000"
                 " --overwrite"),
    Table1Source("SRCNN", "9-1-5 trained here on T91, one network per scale: CPU presets srcnn_cpu_x2/x3/x4 "
                 "(x3, x4 start from x2; not the paper's 8e8 backprops)", "table1/srcnn_cpu_x*.csv",
                 "for s in 2 3 4; do python -m mdrn.evaluate "
                 "weights=experiments/results/models/srcnn_cpu_x$s.safetensors eval.root=DIR "
                 "'eval.sets=[{sets}]' eval.output={out}; done",
                 output="table1/srcnn_cpu_x${s}_{sets}.csv"),
    Table1Source("VDSR", "official weights (VDSR_Official.mat)", "table1/vdsr*.csv",
                 _eval_command("weights=../shared/reference/vdsr/VDSR_Official.mat")),
    Table1Source("MDRN", "CPU preset mdrn_cpu (small model, sample data; NOT the paper's model)",
                 "table1/mdrn_cpu*.csv",
                 _eval_command("weights=experiments/results/models/mdrn_cpu.safetensors")),
)  # fmt: skip

#: rows shown in the Markdown only (reference variants), not in table1.csv
TABLE1_EXTRA: tuple[Table1Source, ...] = (
    Table1Source("Bicubic", "MATLAB convention: Y rounded to uint8 before scoring",
                 "table1/uint8y/bicubic*.csv",
                 "python experiments/scripts/bicubic_uint8_y.py --root DIR --out {out}"),
    Table1Source("MDRN", "official MDSR weights (the paper's MDRN = MDSR, B=80)", "table1/mdrn_official*.csv",
                 _eval_command("weights=mdsr"),
                 pending="not yet run: the official MDSR weights cannot be downloaded on this machine"),
)  # fmt: skip


def published_table1(
    pub: Mapping[str, Any], method: str, dataset: str, scale: int
) -> tuple[float | None, float | None, str]:
    """Published (PSNR, SSIM, source) of a Table 1 cell: the MDRN paper, else EDSR/VDSR papers for B100."""
    t1 = pub["mdrn_paper_table1"]
    if dataset in t1:
        psnr, ssim = t1[dataset][str(scale)][t1["columns"].index(method)]
        return float(psnr), float(ssim), "Ren et al. 2019, Table 1"
    if dataset == "B100" and method == "Bicubic":
        return float(pub["edsr_paper_table6"]["B100"][str(scale)][0]), None, "Lim et al. 2017, Table 6"
    if dataset == "B100" and method == "VDSR":
        return float(pub["vdsr_official"]["B100"][str(scale)]), None, "Kim et al. 2016"
    return None, None, ""


def _scores_for(results: Path, source: Table1Source) -> tuple[dict, list[Path]]:
    """Mean scores per (set, scale) of a source and the files they came from."""
    files = sorted(Path(p) for p in glob.glob(str(results / source.pattern)))
    files = [f for f in files if f.suffix == ".csv"]
    return (mean_scores(files) if files else {}), files


def _checkpoints(files: Sequence[Path]) -> dict[tuple[str, int], str]:
    """(set, scale) -> the checkpoint line of the trained model that scored it (see ``checkpoint_line``)."""
    out = {}
    for f in files:
        line = checkpoint_line(f)
        if line:
            out.update({key: line for key in mean_scores([f])})
    return out


def _status(source: Table1Source, found: Mapping, dataset: str, scale: int) -> str:
    """'measured', or why the cell is empty."""
    if (dataset, scale) in found:
        return "measured"
    if not found:
        return source.pending or NOT_YET_RUN
    return NOT_RUN_DATA


def _fill(command: str, sets: Sequence[str], out: str) -> str:
    """The command of a source for the given sets and output file."""
    return command.replace("{sets}", ",".join(sets)).replace("{out}", out)


def render_table1(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``table1.csv``, ``table1.md`` and ``table1_<set>.png`` from the recorded score CSVs."""
    from mdrn.viz import bar_chart, save_figure

    pub = pub or load_published()
    rows: list[dict[str, Any]] = []
    md = ["# Table 1: average PSNR / SSIM (Y channel, border = scale removed)\n"]
    md.append(
        "Ours beside the published values of Ren et al. 2019 (Table 1) and, for B100, Lim et al. 2017 / "
        "Kim et al. 2016; Δ = ours − published. Rendered by `python -m mdrn.reproduce table1` from the "
        "recorded runs listed at the end.\n"
    )
    found_by = {}
    files_by = {}
    for src in TABLE1_SOURCES + TABLE1_EXTRA:
        found_by[id(src)], files_by[id(src)] = _scores_for(results, src)
    for src in TABLE1_SOURCES:
        found = found_by[id(src)]
        ckpts = _checkpoints(files_by[id(src)])
        for dataset in SETS:
            for s in SCALES:
                ps, ss, psrc = published_table1(pub, src.method, dataset, s)
                ours = found.get((dataset, s))
                rows.append(
                    {
                        "method": src.method, "set": dataset, "scale": s,
                        "psnr": ours[0] if ours else None, "ssim": ours[1] if ours else None,
                        "published_psnr": ps, "published_ssim": ss,
                        "variant": src.variant, "images": ours[2] if ours else None,
                        "status": _status(src, found, dataset, s), "published_source": psrc,
                        "checkpoint": ckpts.get((dataset, s), ""),
                    }
                )  # fmt: skip
    extra = ["variant", "images", "status", "published_source", "checkpoint"]
    out = {"csv": write_csv(results / "table1.csv", rows, TABLE1_COLUMNS + extra)}
    for dataset in SETS:
        md.append(f"\n## {dataset}\n")
        body = []
        for src in TABLE1_SOURCES + TABLE1_EXTRA:
            found = found_by[id(src)]
            for s in SCALES:
                ours = found.get((dataset, s))
                ps, ss, _ = published_table1(pub, src.method, dataset, s)
                status = _status(src, found, dataset, s)
                if ours is None and src in TABLE1_EXTRA and status == NOT_RUN_DATA:
                    continue
                body.append(
                    [f"{src.method}", src.variant, f"x{s}",
                     _num(ours[0] if ours else None, 2), _num(ps, 2), _diff(ours[0] if ours else None, ps, 2),
                     _num(ours[1] if ours else None, 4), _num(ss, 3), _diff(ours[1] if ours else None, ss, 4),
                     "measured" if ours else status]
                )  # fmt: skip
        md.append(
            markdown_table(
                [
                    "method",
                    "what ran",
                    "scale",
                    "PSNR ours",
                    "PSNR published",
                    "Δ PSNR",
                    "SSIM ours",
                    "SSIM published",
                    "Δ SSIM",
                    "status",
                ],
                body,
            )  # fmt: skip
        )
        measured = [(src, s) for src in TABLE1_SOURCES for s in SCALES if (dataset, s) in found_by[id(src)]]
        if measured:
            cats = [f"{src.method}{'*' if 'CPU preset' in src.variant else ''}\nx{s}" for src, s in measured]
            series = {
                "ours": [found_by[id(src)][(dataset, s)][0] for src, s in measured],
                "published": [published_table1(pub, src.method, dataset, s)[0] for src, s in measured],
            }
            title = f"Table 1, {dataset}: ours vs published (* = small CPU preset, not the paper's training)"
            fig = bar_chart(cats, series, ylabel="PSNR (dB)", title=title)
            out[f"png_{dataset}"] = save_figure(fig, results / f"table1_{dataset}.png")
            md.append(f"\n![Table 1 {dataset}](table1_{dataset}.png)\n")
    md.append("\n## How to fill the empty cells\n")
    for src in TABLE1_SOURCES + TABLE1_EXTRA:
        found = found_by[id(src)]
        missing = [d for d in SETS if any((d, s) not in found for s in SCALES)]
        if missing:
            if src.output:
                out_file = "experiments/results/" + src.output.replace("{sets}", "_".join(missing))
            else:
                name = Path(src.pattern).name.replace("*", "_" + "_".join(missing))
                out_file = f"experiments/results/{Path(src.pattern).parent}/{name}"
            md.append(f"- {src.method} ({src.variant}): `{_fill(src.command, missing, out_file)}`")
    md.append(
        f"\n`{DATA_HINT}` is a folder holding one folder of HR images per set (`{DATA_HINT}/Set14/*.png` or "
        f"`{DATA_HINT}/Set14/HR/*.png`); `python -m mdrn.data download benchmarks` puts them in "
        f"`data/benchmark` (then {DATA_HINT} = data/benchmark) where there is network. "
        "Then `make table1` re-renders.\n"
    )
    md.append("\n## Checkpoints\n")
    md.append(
        "The trained rows use the checkpoint each run tested (mdrn.selection: the best by val/psnr on "
        "validation images that are never test images, else the last); the same weights are in "
        "`results/models/` and in the run's printed table:\n"
    )
    for src in TABLE1_SOURCES:
        per_scale = {s: line for (_, s), line in _checkpoints(files_by[id(src)]).items()}
        md += [f"- {src.method} x{s}: {line}" for s, line in sorted(per_scale.items())]
    md.append("\n## Recorded runs\n")
    for src in TABLE1_SOURCES + TABLE1_EXTRA:
        if files_by[id(src)]:
            md.append(f"\n{src.method} ({src.variant}):\n\n" + _run_line(files_by[id(src)]))
    out["md"] = write_text(results / "table1.md", "\n".join(md) + "\n")
    return out


# ------------------------------------------------------------------------------- parameter claim


def param_counts(n_resblocks: int = 80, n_feats: int = 64) -> dict[str, int]:
    """Trainable parameters of the multi-scale MDRN and of the three single-scale MDRNs of the same size."""
    from mdrn.models import MDRN

    def count(net: Any) -> int:
        return sum(p.numel() for p in net.parameters() if p.requires_grad)

    out = {"multi": count(MDRN(n_resblocks=n_resblocks, n_feats=n_feats))}
    for s in SCALES:
        out[f"single_x{s}"] = count(MDRN(n_resblocks=n_resblocks, n_feats=n_feats, scales=(s,)))
    return out


def render_params(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``claims/params.csv`` and ``.md``: multi-scale MDRN vs the sum of three single-scale MDRNs."""
    pub = pub or load_published()
    claimed = float(pub["mdrn_paper_claims"]["multiscale_param_reduction_vs_sum_of_single_scale"])
    rows = []
    for b in (80, 16):
        c = param_counts(n_resblocks=b)
        singles = sum(c[f"single_x{s}"] for s in SCALES)
        rows.append(
            {"n_resblocks": b, "n_feats": 64, "multi": c["multi"], "single_x2": c["single_x2"],
             "single_x3": c["single_x3"], "single_x4": c["single_x4"], "sum_single": singles,
             "reduction": 1 - c["multi"] / singles, "published_reduction": claimed}
        )  # fmt: skip
    cols = list(rows[0])
    folder = results / "claims"
    out = {"csv": write_csv(folder / "params.csv", rows, cols)}
    md = [
        "# Claim: the multi-scale model has fewer parameters than three single-scale ones\n",
        "Exact trainable-parameter counts of `mdrn.models.MDRN` (multi-scale, scales 2, 3, 4) and of "
        "`MDRN(scales=(s,))` for s = 2, 3, 4 with the same blocks and filters "
        "(`python -m mdrn.reproduce params`).\n",
        markdown_table(
            [
                "B",
                "F",
                "multi-scale",
                "single x2",
                "single x3",
                "single x4",
                "sum of singles",
                "reduction (ours)",
                "reduction (paper)",
            ],
            [
                [
                    r["n_resblocks"],
                    r["n_feats"],
                    f"{r['multi']:,}",
                    f"{r['single_x2']:,}",
                    f"{r['single_x3']:,}",
                    f"{r['single_x4']:,}",
                    f"{r['sum_single']:,}",
                    f"{r['reduction']:.1%}",
                    f"{claimed:.0%}",
                ]
                for r in rows
            ],
        ),  # fmt: skip
        f"With B = 80 the multi-scale model has {rows[0]['reduction']:.1%} fewer parameters than three "
        f"same-depth single-scale models ({'more' if rows[0]['reduction'] > claimed else 'less'} than the "
        f"paper's {claimed:.0%}): the body is shared between the scales and only the pre-processing blocks "
        "and upsamplers are per scale. The paper does not say which single-scale configuration its figure "
        "refers to; the same-depth comparison is the one made here.\n",
    ]
    out["md"] = write_text(folder / "params.md", "\n".join(md))
    return out


# ------------------------------------------------------------------------------- per-image helpers


def per_image(path: str | os.PathLike[str]) -> dict[tuple[str, int, str], tuple[float, float]]:
    """Per-image scores ``(set, scale, image stem) -> (psnr, ssim)`` of an evaluate CSV."""
    return {
        (r["set"], int(r["scale"]), Path(r["image"]).stem): (float(r["psnr"]), float(r["ssim"]))
        for r in read_csv(path)
    }


def _optional(path: Path) -> dict[tuple[str, int, str], tuple[float, float]]:
    """Per-image scores of ``path`` or an empty dict if that run has not happened."""
    return per_image(path) if path.is_file() else {}


def _image_facts(results: Path) -> dict[str, dict[str, Any]]:
    """The medical images' descriptions and bit depths recorded beside Table 2 (empty if absent)."""
    path = results / "table2" / "images.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def preset_summary(results: Path, name: str) -> str:
    """Words for a trained preset from its recorded config: net size, steps, batch, patch, data."""
    path = results / "train" / f"{name}_config.yaml"
    if not path.is_file():
        return f"`{name}` (conf/experiment/{name}.yaml; not recorded yet)"
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    net, data = cfg.model.net, cfg.data
    keys = ("n_resblocks", "n_feats", "n1", "n2", "f1", "f2", "f3", "scales", "scale", "bicubic_skip")
    size = ", ".join(f"{k}={net[k]}" for k in keys if k in net)
    size = size.replace("n_resblocks", "B").replace("n_feats", "F")
    sources = ", ".join(str(src.get("name")) for src in data.train)
    ckpt = checkpoint_line(results / "models" / f"{name}.safetensors")
    return (
        f"`{name}`: {net._target_.rsplit('.', 1)[-1]} ({size}), {cfg.trainer.max_steps} steps of "
        f"{data.batch_size} LR patches {data.patch_size}x{data.patch_size} on {sources}, seed {cfg.seed}"
        + (f"; {ckpt}" if ckpt else "")
    )


# ------------------------------------------------------------------------------------------ Table 2


def render_table2(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``table2.csv``/``.md``/``.png``: MDRN (CPU preset) vs bicubic per medical image and scale."""
    from mdrn.viz import bar_chart, save_figure

    pub = pub or load_published()
    folder = results / "table2"
    mdrn = per_image(folder / "mdrn_cpu.csv")
    bic = _optional(folder / "bicubic.csv")
    facts = _image_facts(results)
    rows = []
    for (dataset, s, image), (p, q) in sorted(mdrn.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        b = bic.get((dataset, s, image))
        rows.append(
            {
                "image": image,
                "bit_depth": facts.get(image, {}).get("bit_depth"),
                "scale": s,
                "psnr": p,
                "ssim": q,
                "bicubic_psnr": b[0] if b else None,
                "bicubic_ssim": b[1] if b else None,
                "gain_db": p - b[0] if b else None,
                "about": facts.get(image, {}).get("about", ""),
            }
        )
    cols = ["image", "bit_depth", "scale", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "gain_db", "about"]
    out = {"csv": write_csv(results / "table2.csv", rows, cols)}
    md = [
        "# Table 2: MDRN on medical images (x2 / x3 / x4)\n",
        "PSNR with the image's own bit depth (the paper's Eq. 4: peak 2^n − 1), SSIM, on Y (RGB) or the "
        "gray values, border = scale removed. The paper's images (demodicosis, retinopathy) are private; "
        "these are held-out medical images that need no download (`experiments/scripts/medical_images.py`). "
        f"MDRN here is the CPU preset {preset_summary(results, 'mdrn_cpu')}; not the paper's model: its "
        "numbers are a laptop-scale measurement, not a reproduction of the paper's values.\n",
        markdown_table(
            ["image", "bits", "scale", "MDRN PSNR", "MDRN SSIM", "bicubic PSNR", "bicubic SSIM", "gain dB"],
            [
                [
                    r["image"],
                    r["bit_depth"] or "?",
                    f"x{r['scale']}",
                    _num(r["psnr"], 2),
                    _num(r["ssim"], 4),
                    _num(r["bicubic_psnr"], 2),
                    _num(r["bicubic_ssim"], 4),
                    _diff(r["psnr"], r["bicubic_psnr"], 2),
                ]
                for r in rows
            ],
        ),
        "\nPublished (Ren et al. 2019, Table 2, private images; for reference only, not comparable image "
        "by image):\n",
        markdown_table(
            ["image type", "x2", "x3", "x4"],
            [
                [k] + [f"{v[str(s)][0]:.2f} / {v[str(s)][1]:.4f}" for s in SCALES]
                for k, v in pub["mdrn_paper_table2"].items()
                if not k.startswith("_")
            ],
        ),
    ]
    if rows:
        cats = [f"{r['image']}\nx{r['scale']}" for r in rows]
        fig = bar_chart(
            cats,
            {"MDRN (CPU preset)": [r["psnr"] for r in rows], "Bicubic": [r["bicubic_psnr"] for r in rows]},
            ylabel="PSNR (dB, image's own bit depth)",
            title="Table 2: medical images",
        )
        out["png"] = save_figure(fig, results / "table2.png")
        md.append("\n![Table 2](table2.png)\n")
    md.append(
        "\n## Recorded runs\n\n"
        + _run_line([p for p in (folder / "mdrn_cpu.csv", folder / "bicubic.csv") if p.is_file()])
    )
    out["md"] = write_text(results / "table2.md", "\n".join(md) + "\n")
    return out


# ------------------------------------------------------------------------------------------- Fig. 8

FIG8_MULTI = "mdrn_cpu"
FIG8_SINGLE = tuple(f"fig8_x{s}" for s in SCALES)
FIG8_COLUMNS = [
    "set",
    "image",
    "bit_depth",
    "scale",
    "single_psnr",
    "single_ssim",
    "multi_psnr",
    "multi_ssim",
    "diff_psnr",
    "diff_ssim",
]


def _fig8_row(key: tuple, bits: Any, multi: tuple, single: tuple | None) -> dict[str, Any]:
    """One Fig. 8 row: single- and multi-scale scores and multi − single."""
    row = {"set": key[0], "image": key[2] if len(key) > 2 else "", "bit_depth": bits, "scale": key[1]}
    for i, metric in enumerate(("psnr", "ssim")):
        row[f"single_{metric}"] = single[i] if single else None
        row[f"multi_{metric}"] = multi[i]
        row[f"diff_{metric}"] = multi[i] - single[i] if single else None
    return row


def _mad(rows: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    """Mean absolute multi − single difference over the rows that have both."""
    vals = [abs(r[f"diff_{metric}"]) for r in rows if r[f"diff_{metric}"] is not None]
    return math.fsum(vals) / len(vals) if vals else None


def _fig8_table(rows: Sequence[Mapping[str, Any]], per_image: bool) -> str:
    """The Markdown table of Fig. 8 rows."""
    first = ["set", "image", "bits"] if per_image else ["set"]
    head = first + ["scale", "single PSNR", "multi PSNR", "Δ PSNR", "single SSIM", "multi SSIM", "Δ SSIM"]
    body = []
    for r in rows:
        cells = [r["set"], r["image"], r["bit_depth"]] if per_image else [r["set"]]
        for metric, digits in (("psnr", 3), ("ssim", 4)):
            one, many = r[f"single_{metric}"], r[f"multi_{metric}"]
            cells += [_num(one, digits), _num(many, digits), _diff(many, one, digits)]
        body.append(cells[: len(first)] + [f"x{r['scale']}"] + cells[len(first) :])
    return markdown_table(head, body)


def render_fig8(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``fig8.csv``/``.md`` and PNGs: single- vs multi-scale per set and scale, 16-bit set on its own.

    The 8-bit sets (Set5, the 8-bit medical images) are compared per (set, scale) and summarised by the
    mean absolute difference, the paper's figure. A set of 10- to 16-bit images (each image its own PSNR
    peak, so no set mean) is reported on its own, per image, with its own mean absolute difference.
    """
    from mdrn.viz import bar_chart, save_figure

    pub = pub or load_published()
    claim = pub["mdrn_paper_claims"]["fig8_single_vs_multi_mean_abs_diff"]
    folder = results / "fig8"
    facts = _image_facts(results)
    high = {f["set"] for f in facts.values() if int(f.get("bit_depth") or 8) > 8 and f.get("set")}
    multi_img = per_image(folder / f"{FIG8_MULTI}.csv")
    single_img: dict[tuple[str, int, str], tuple[float, float]] = {}
    for s, name in zip(SCALES, FIG8_SINGLE):
        single_img.update({k: v for k, v in _optional(folder / f"{name}.csv").items() if k[1] == s})
    multi = {k: v for k, v in mean_scores([folder / f"{FIG8_MULTI}.csv"]).items() if k[0] not in high}
    single: dict[tuple[str, int], tuple[float, float, int]] = {}
    for s, name in zip(SCALES, FIG8_SINGLE):
        if (folder / f"{name}.csv").is_file():
            single.update({k: v for k, v in mean_scores([folder / f"{name}.csv"]).items() if k[1] == s})
    low_rows = [_fig8_row(k, 8, multi[k], single.get(k)) for k in sorted(multi)]
    high_keys = sorted((k for k in multi_img if k[0] in high), key=lambda k: (k[0], k[2], k[1]))
    high_rows = [
        _fig8_row(k, facts.get(k[2], {}).get("bit_depth"), multi_img[k], single_img.get(k)) for k in high_keys
    ]
    out = {"csv": write_csv(results / "fig8.csv", low_rows + high_rows, FIG8_COLUMNS)}
    n_low = sum(r["diff_psnr"] is not None for r in low_rows)
    n_high = sum(r["diff_psnr"] is not None for r in high_rows)
    models = (FIG8_MULTI, *FIG8_SINGLE)
    md = [
        "# Fig. 8: single-scale vs multi-scale MDRN\n",
        "Small CPU scale, identical networks (B, F, the low/high-frequency split), data, batch, schedule, "
        "validation and seed; the multi-scale model runs 3x the steps of each single-scale model and shares "
        "them among x2/x3/x4 (one random scale per batch), so each scale gets as many updates as in its "
        "single-scale model:\n\n"
        + "".join(f"- {preset_summary(results, n)}\n" for n in models)
        + "\nScored with `python -m mdrn.evaluate` on Set5 and the held-out medical images (never used for "
        "training or checkpoint selection). Δ = multi − single.\n",
        "## 8-bit sets\n",
        _fig8_table(low_rows, per_image=False),
        f"\n**Mean absolute difference** over the {n_low} (set, scale) pairs of 8-bit sets: "
        f"PSNR {_num(_mad(low_rows, 'psnr'), 3)} dB, SSIM {_num(_mad(low_rows, 'ssim'), 4)} — paper: "
        f"{claim['psnr_db']} dB, {claim['ssim']} (full-size models, fully trained, 8-bit images).\n",
    ]
    if low_rows:
        cats = [f"{r['set']}\nx{r['scale']}" for r in low_rows]
        for metric, label, fmt in (("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.3f}")):
            series = {f"{k}-scale": [r[f"{k}_{metric}"] for r in low_rows] for k in ("single", "multi")}
            title = f"Fig. 8: single- vs multi-scale, 8-bit sets, {label}"
            fig = bar_chart(cats, series, ylabel=label, fmt=fmt, title=title)
            out[f"png_{metric}"] = save_figure(fig, results / f"fig8_{metric}.png")
            md.append(f"![Fig. 8 {metric}](fig8_{metric}.png)\n")
    if high_rows:
        md += [
            "## 10- to 16-bit medical images, on their own\n",
            "PSNR at each image's own peak 2^n − 1: a set mean would mix peaks, so every image is listed; "
            "these are far from the paper's 8-bit benchmark images and are not part of the figure above.\n",
            _fig8_table(high_rows, per_image=True),
            f"\n**Mean absolute difference** over the {n_high} (image, scale) pairs: PSNR "
            f"{_num(_mad(high_rows, 'psnr'), 3)} dB, SSIM {_num(_mad(high_rows, 'ssim'), 4)}.\n",
        ]
        series = {f"{k}-scale": [r[f"{k}_psnr"] for r in high_rows] for k in ("single", "multi")}
        fig = bar_chart(
            [f"{r['image']}\nx{r['scale']}" for r in high_rows],
            series,
            ylabel="PSNR (dB, image's own bit depth)",
            title="Fig. 8: 10- to 16-bit medical images",
        )
        out["png_highbit"] = save_figure(fig, results / "fig8_highbit_psnr.png")
        md.append("![Fig. 8 10- to 16-bit](fig8_highbit_psnr.png)\n")
    runs = [folder / f"{n}.csv" for n in models]
    weights = [results / "models" / f"{n}.safetensors" for n in models]
    md.append("\n## Recorded runs\n\n" + _run_line([p for p in weights + runs if p.is_file()]))
    out["md"] = write_text(results / "fig8.md", "\n".join(md) + "\n")
    return out


# ------------------------------------------------------------------------------------- Figs. 10-14


def render_figs10_14(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``figs10_14.md``: the panels written by ``experiments/scripts/panels.py`` with their scores."""
    folder = results / "figs10_14"
    rows = read_csv(folder / "panels.csv")
    md = [
        "# Figs. 10-14: what the network adds\n",
        "For an image of each type and each scale: LR, the low-frequency image, the high-frequency image "
        "(diverging colour map, red = brighter), the SR output and the HR original, with the zoomed crop "
        "(yellow box) below. " + " ".join(_figs10_14_models(rows)) + " PSNR at the image's own bit depth.\n",
        markdown_table(
            ["image", "scale", "bits", "bicubic PSNR", "SR PSNR", "figure"],
            [
                [
                    r["image"],
                    f"x{r['scale']}",
                    r["bit_depth"],
                    _num(float(r["bicubic_psnr"]), 2),
                    _num(float(r["sr_psnr"]), 2),
                    f"[{r['figure']}](figs10_14/{r['figure']})",
                ]
                for r in rows
            ],
        ),
    ]
    for r in rows:
        if int(r["scale"]) == 4:
            md.append(f"\n![{r['image']} x4](figs10_14/{r['figure']})\n")
    md.append("\n## Recorded run\n\n" + _run_line([folder / "panels.csv"]))
    return {"md": write_text(results / "figs10_14.md", "\n".join(md) + "\n")}


def _figs10_14_models(rows: Sequence[Mapping[str, str]]) -> list[str]:
    """One sentence per model of ``panels.csv``: which model, and whose low/high-frequency parts are shown."""
    from mdrn.weights import SHIPPED_MODELS

    out = []
    for model, split in dict.fromkeys((r.get("model", "?"), r.get("split", "")) for r in rows):
        what = f"`{model}`"
        if model in SHIPPED_MODELS:
            what += f" (the shipped default model; card: `mdrn/pretrained/{model}.md`), not the paper's model"
        if split == "model":
            out.append(
                f"Model: {what}. It has the paper's low/high-frequency split (Fig. 9), so the middle "
                "panels are its own parts: the MATLAB-bicubic image it starts from (low frequency) and what "
                "its residual network adds (high frequency = SR − low frequency)."
            )
        else:
            out.append(
                f"Model: {what}, without the low/high-frequency split: the middle panels are the bicubic "
                "reference and the residual SR − bicubic."
            )
    return out


# ------------------------------------------------------------------------------------- Figs. 15-16

FIGS15_16_METHODS = (
    ("Bicubic", "bicubic"),
    ("SRCNN", "srcnn_cpu_x4"),
    ("EDSR", "edsr_cpu"),
    ("MDRN", "mdrn_cpu"),
)


def render_figs15_16(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``figs15_16.csv``/``.md``, ``fig15_psnr.png``, ``fig16_ssim.png``: 4 methods, x4, per image."""
    from mdrn.viz import bar_chart, save_figure

    pub = pub or load_published()
    folder = results / "table2"
    scores = {m: _optional(folder / f"{f}.csv") for m, f in FIGS15_16_METHODS}
    images = sorted({k[2] for v in scores.values() for k in v if k[1] == 4})
    rows = []
    for image in images:
        for m, _ in FIGS15_16_METHODS:
            v = next((x for k, x in scores[m].items() if k[1] == 4 and k[2] == image), None)
            rows.append(
                {
                    "image": image,
                    "method": m,
                    "scale": 4,
                    "psnr": v[0] if v else None,
                    "ssim": v[1] if v else None,
                    "status": "measured" if v else "not run",
                }
            )
    out = {
        "csv": write_csv(
            results / "figs15_16.csv", rows, ["image", "method", "scale", "psnr", "ssim", "status"]
        )
    }
    get = {(r["image"], r["method"]): r for r in rows}
    md = [
        "# Figs. 15-16: PSNR and SSIM at x4 on the medical images\n",
        "Bicubic, SRCNN (the x4 network of the Table 1 SRCNN column), EDSR (a small `edsr_baseline`-style "
        "CPU run) and MDRN (the CPU preset of Table 1), on the held-out medical images, PSNR at the image's "
        "own bit depth. Laptop-scale models, not the paper's:\n\n"
        + "".join(f"- {preset_summary(results, f)}\n" for m, f in FIGS15_16_METHODS if m != "Bicubic"),
        markdown_table(
            ["image"] + [f"{m} PSNR / SSIM" for m, _ in FIGS15_16_METHODS],
            [
                [image]
                + [
                    f"{_num(get[(image, m)]['psnr'], 2)} / {_num(get[(image, m)]['ssim'], 4)}"
                    if get[(image, m)]["psnr"] is not None
                    else "not run"
                    for m, _ in FIGS15_16_METHODS
                ]
                for image in images
            ],
        ),
        "\nValues quoted in the paper's text (its private images; one image of each type, x4): "
        + "; ".join(
            f"{k.replace('_', ' ')} {v[0]:.2f} dB / {v[1]:.3f}"
            for k, v in pub["mdrn_paper_figs15_16"].items()
            if not k.startswith("_")
        )
        + ".\n",
    ]
    if images:
        for metric, label, fmt, name in (
            ("psnr", "PSNR (dB)", "{:.2f}", "fig15_psnr"),
            ("ssim", "SSIM", "{:.3f}", "fig16_ssim"),
        ):
            series = {m: [get[(i, m)][metric] for i in images] for m, _ in FIGS15_16_METHODS}
            fig = bar_chart(images, series, ylabel=label, fmt=fmt, title=f"x4 on medical images: {label}")
            out[name] = save_figure(fig, results / f"{name}.png")
            md.append(f"![{name}]({name}.png)\n")
    files = [folder / f"{f}.csv" for _, f in FIGS15_16_METHODS if (folder / f"{f}.csv").is_file()]
    md.append("\n## Recorded runs\n\n" + _run_line(files))
    out["md"] = write_text(results / "figs15_16.md", "\n".join(md) + "\n")
    return out


# ------------------------------------------------------------------------------------------- claims


def val_curve(path: str | os.PathLike[str], metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of a metric in a Lightning CSV logger's ``metrics.csv`` (rows where it is set)."""
    steps, values = [], []
    for row in read_csv(path):
        if row.get(metric):
            steps.append(int(row["step"]))
            values.append(float(row[metric]))
    return steps, values


_X4_VAL = re.compile(r"val/(.+)_x4/psnr")


def render_claims(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``claims.md`` (+ CSV/PNG): x4-from-x2 convergence, parameter counts, MDRN vs SRCNN speed."""
    from mdrn.viz import bar_chart, curve_chart, save_figure

    pub = pub or load_published()
    folder = results / "claims"
    out = render_params(results, pub)
    md = [
        "# The paper's claims, measured\n",
        (folder / "params.md").read_text().replace("# Claim", "## Claim"),
    ]

    runs = (("x4 from scratch", "fig8_x4"), ("x4 initialised from x2", "claim_x4_from_x2"))
    logs = {label: results / "train" / f"{name}_metrics.csv" for label, name in runs}
    logs = {label: path for label, path in logs.items() if path.is_file()}
    # one curve per validation set at x4 (val/<set>_x4/psnr; the sets select checkpoints, never test sets)
    heads = {k for path in logs.values() for k in (read_csv(path)[:1] or [{}])[0]}
    sets = {m.group(0): m.group(1) for m in filter(None, map(_X4_VAL.fullmatch, sorted(heads)))}
    md.append("\n## Claim: x4 initialised from x2 converges faster than x4 from scratch\n")
    md.append(
        f'Paper: "{pub["mdrn_paper_claims"]["x4_from_x2_init"]}". Small CPU scale (same network, data, '
        "steps, schedule and seed; `fig8_x4` vs `claim_x4_from_x2`); validation PSNR at x4 on the "
        f"validation sets ({', '.join(f'`{m}`' for m in sets) or 'none logged'}), which are never test "
        "sets.\n"
    )
    report = results / "train" / "claim_x4_from_x2_init_report.txt"
    if report.is_file():
        md.append(f"Initialisation (`train/{report.name}`): {report.read_text().splitlines()[0]}.\n")
    curves = {(label, m): val_curve(path, m) for label, path in logs.items() for m in sets}
    if curves:
        columns = [f"{label} ({sets[m]})" for label, m in curves]
        steps = sorted({s for xs, _ in curves.values() for s in xs})
        rows = [
            {"step": s, **{c: dict(zip(*v)).get(s) for c, v in zip(columns, curves.values())}} for s in steps
        ]
        out["x4_csv"] = write_csv(folder / "x4_from_x2.csv", rows, ["step", *columns])
        table = [[r["step"], *(_num(r[c], 3) for c in columns)] for r in rows]
        md.append(markdown_table(["step", *columns], table))
        for m, name in sets.items():
            pair = {label: curves[(label, m)] for label, _ in runs if (label, m) in curves}
            ylabel, title = f"{name} x4 validation PSNR (dB)", f"x4 from x2 vs x4 from scratch ({name})"
            fig = curve_chart(pair, xlabel="training step", ylabel=ylabel, title=title)
            png = f"x4_from_x2_{name}.png"
            out[f"x4_png_{name}"] = save_figure(fig, folder / png)
            md.append(f"\n![x4 from x2, {name}](claims/{png})\n")
            if len(pair) == 2:
                (a_s, a_v), (b_s, b_v) = pair["x4 from scratch"], pair["x4 initialised from x2"]
                common = sorted(set(a_s) & set(b_s))
                ahead = sum(dict(zip(b_s, b_v))[s] > dict(zip(a_s, a_v))[s] for s in common)
                md.append(
                    f"{name}: the x2-initialised model is ahead at {ahead} of {len(common)} validation "
                    f"points; final: {b_v[-1]:.3f} dB vs {a_v[-1]:.3f} dB from scratch.\n"
                )
    else:
        md.append("not yet run: `make claims` trains both (experiments fig8_x4 and claim_x4_from_x2).\n")

    md.append("\n## Claim: MDRN reconstructs faster than SRCNN despite more parameters\n")
    md.append(f'Paper: "{pub["mdrn_paper_claims"]["mdrn_vs_srcnn_speed"]}".\n')
    timing = folder / "timing.csv"
    if timing.is_file():
        rows = read_csv(timing)
        md.append(
            markdown_table(
                ["model", "parameters", "scale", "HR size", "seconds / image (median)"],
                [
                    [
                        r["model"],
                        f"{int(r['params']):,}",
                        f"x{r['scale']}",
                        r["hr_size"],
                        f"{float(r['seconds']):.3f}",
                    ]
                    for r in rows
                ],
            )
        )
        models = list(dict.fromkeys(r["model"] for r in rows))
        series = {
            m: [
                next((float(r["seconds"]) for r in rows if r["model"] == m and int(r["scale"]) == s), None)
                for s in SCALES
            ]
            for m in models
        }
        top = max(v for vs in series.values() for v in vs if v)
        fig = bar_chart(
            [f"x{s}" for s in SCALES],
            series,
            ylabel="seconds per image",
            fmt="{:.3f}",
            title="Time per image (same machine, one run)",
            ylim=(0, top * 1.25),
        )
        out["timing_png"] = save_figure(fig, folder / "timing.png")
        md.append("\n![timing](claims/timing.png)\n\n" + _run_line([timing]))
    else:
        md.append("not yet run: `make claims` runs `experiments/scripts/time_models.py`.\n")
    trained = [results / "models" / f"{n}.safetensors" for n in ("fig8_x2", "fig8_x4", "claim_x4_from_x2")]
    md.append("\n## Recorded training runs\n\n" + _run_line([p for p in trained if p.is_file()]))
    out["md"] = write_text(results / "claims.md", "\n".join(md) + "\n")
    return out


# ------------------------------------------------------------------------------------------- CLI

RENDERERS: dict[str, Callable[..., dict[str, Path]]] = {
    "table1": render_table1,
    "table2": render_table2,
    "fig8": render_fig8,
    "figs10_14": render_figs10_14,
    "figs15_16": render_figs15_16,
    "claims": render_claims,
    "params": render_params,
}


def render(name: str, results: Path = RESULTS) -> dict[str, Path]:
    """Render artefact ``name`` (a key of ``RENDERERS``, or ``all``) from the recorded runs."""
    if name == "all":
        out: dict[str, Path] = {}
        for key, fn in RENDERERS.items():
            try:
                out.update({f"{key}.{k}": v for k, v in fn(results).items()})
            except FileNotFoundError as exc:
                print(f"{key}: skipped ({exc})", file=sys.stderr)
        return out
    if name not in RENDERERS:
        raise ValueError(f"unknown artefact {name!r}; known: {sorted(RENDERERS)} or 'all'")
    return RENDERERS[name](results)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: render an artefact, or record a run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["record"]:
        if "--" not in argv or argv.index("--") != 2:
            print("usage: python -m mdrn.reproduce record OUTPUT -- COMMAND...", file=sys.stderr)
            return 2
        return record(argv[1], argv[3:])
    if argv[:1] == ["train"]:
        if len(argv) < 2:
            print("usage: python -m mdrn.reproduce train EXPERIMENT [HYDRA_OVERRIDES...]", file=sys.stderr)
            return 2
        return train_preset(argv[1], argv[2:])
    parser = argparse.ArgumentParser(prog="python -m mdrn.reproduce", description=__doc__.split("\n")[0])
    parser.add_argument("artefact", choices=sorted(RENDERERS) + ["all"])
    parser.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for key, path in render(args.artefact, args.results).items():
        print(f"{key}: {path}")
    md = args.results / f"{args.artefact}.md"
    if md.is_file():
        print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
