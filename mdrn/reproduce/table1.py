"""Table 1: PSNR/SSIM of bicubic, A+, SRCNN, VDSR and MDRN on the benchmark sets, beside the paper's."""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdrn.reproduce.record import checkpoint_line, run_line, selection_facts, trained_model
from mdrn.reproduce.results import (
    DATA_HINT,
    NOT_RUN_DATA,
    NOT_YET_RUN,
    RESULTS,
    SCALES,
    SETS,
    fmt_diff,
    fmt_num,
    load_published,
    markdown_table,
    mean_scores,
    partial_set,
    write_csv,
    write_text,
)

TABLE1_METHODS = ("Bicubic", "A+", "SRCNN", "VDSR", "MDRN")
TABLE1_COLUMNS = ["method", "set", "scale", "psnr", "ssim", "published_psnr", "published_ssim"]


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
    Table1Source("Bicubic", "MATLAB bicubic (mdrn.protocol.resize), float-Y protocol", "table1/bicubic*.csv",
                 _eval_command("model=bicubic")),
    Table1Source("A+", "mdrn.reproduce.aplus trained on T91 (run in results/aplus/aplus.md)",
                 "aplus/aplus.csv",
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
    """'measured', why the cell is empty, or that its mean is over part of the set ('partial: ...')."""
    if (dataset, scale) in found:
        return partial_set(dataset, found[(dataset, scale)][2]) or "measured"
    if not found:
        return source.pending or NOT_YET_RUN
    return NOT_RUN_DATA


def _fill(command: str, sets: Sequence[str], out: str) -> str:
    """The command of a source for the given sets and output file."""
    return command.replace("{sets}", ",".join(sets)).replace("{out}", out)


def render_table1(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``table1.csv``, ``table1.md`` and ``table1_<set>.png`` from the recorded score CSVs."""
    from mdrn.reproduce.viz import bar_chart, save_figure

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
                whole = ours if status == "measured" else None  # a part of a set is not compared
                body.append(
                    [f"{src.method}", src.variant, f"x{s}",
                     fmt_num(ours[0] if ours else None, 2), fmt_num(ps, 2),
                     fmt_diff(whole[0] if whole else None, ps, 2),
                     fmt_num(ours[1] if ours else None, 4), fmt_num(ss, 3),
                     fmt_diff(whole[1] if whole else None, ss, 4), status]
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
        measured = [
            (src, s)
            for src in TABLE1_SOURCES
            for s in SCALES
            if _status(src, found_by[id(src)], dataset, s) == "measured"
        ]
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
        missing = [d for d in SETS if any(_status(src, found, d, s) != "measured" for s in SCALES)]
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
    md.append("\n## Checkpoints and selection rules\n")
    md.append(
        "The trained rows use the checkpoint each run tested (mdrn.training.selection: the rule its recipe "
        "states, `selection: best` = the highest val/psnr on validation images that are never test images, "
        "`selection: last` = the last step); the same weights are in `results/models/` and in the run's "
        "printed table. Per cell: the checkpoint, whether the rule was stated before the run, and the "
        "notes added to the run's record afterwards:\n"
    )
    for src in TABLE1_SOURCES:
        by_model: dict[Path, list[int]] = {}
        for f in files_by[id(src)]:
            model = trained_model(f)
            if model is not None:
                by_model.setdefault(model, []).extend(s for _, s in mean_scores([f]))
        for model, scales in by_model.items():
            cells = ", ".join(f"x{s}" for s in sorted(set(scales)))
            md.append(f"- {src.method} {cells} (`{model.stem}`): {checkpoint_line(model)}")
            md += [f"  - {fact}" for fact in selection_facts(model, results)]
    md.append("\n## Recorded runs\n")
    for src in TABLE1_SOURCES + TABLE1_EXTRA:
        if files_by[id(src)]:
            md.append(f"\n{src.method} ({src.variant}):\n\n" + run_line(files_by[id(src)]))
    out["md"] = write_text(results / "table1.md", "\n".join(md) + "\n")
    return out
