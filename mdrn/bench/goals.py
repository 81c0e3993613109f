"""The performance goals (issue 12) judged on every recorded run: met, not met, or not measured.

Each goal reads only the rows and facts of a recorded run's JSON, so the bench README can say, for
every run in ``experiments/results/bench/``, which goals that machine met. Runs recorded before the conv
limit was measured inside each row's window (their fractions compare a row's median with a limit
measured minutes apart) are judged on those fractions and say so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdrn.bench.core import GPU_ASSUMED_FRACTION, H100_BF16_MATMUL, PAPER_SCHEDULE

#: (status, figures) of one goal on one run; status is "met", "not met" or "not measured"
Verdict = tuple[str, str]

SCORING_RATIO = 5.0
TRAIN_FRACTION = 0.80
FORWARD_FRACTION = 0.90
#: issue 26: the best step at the paper's budget against the measured ceiling; the largest budget's
#: against the data sheet's bf16 peak
CEILING_FRACTION = 0.70
PEAK_FRACTION = 0.25


def _rows(run: dict[str, Any], test: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The rows of ``run`` whose name passes ``test``."""
    return [r for r in run["rows"] if test(r["name"])]


def _fraction(row: dict[str, Any]) -> tuple[float | None, str]:
    """A row's fraction of the conv limit and a mark for runs that measured the limit apart."""
    frac = row.get("extra", {}).get("fraction_ours")
    interleaved = "conv_limit_shape" in row.get("extra", {})
    return frac, "" if interleaved else "*"


def _judge_fractions(
    rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str], bar: float
) -> Verdict:
    """Met if every row's fraction reaches ``bar`` (and none is a measurement error)."""
    parts, ok = [], True
    for r in rows:
        frac, mark = _fraction(r)
        if frac is None:
            return "not measured", "no conv limit in this run"
        err = r.get("extra", {}).get("fraction_error") or frac > 1.0
        parts.append(f"{label(r)} {frac:.0%}{mark}" + (" (error)" if err else ""))
        ok = ok and frac >= bar and not err
    return ("met" if ok else "not met"), ", ".join(parts)


def scoring(run: dict[str, Any]) -> Verdict:
    """Protocol scoring at least 5x the per-image numpy + scikit-image loop, same values."""
    rows = _rows(run, lambda n: n.startswith("PSNR+SSIM"))
    if not rows:
        return "not measured", ""
    r = rows[0]
    dp, ds = r["extra"].get("max_abs_diff_psnr", 0.0), r["extra"].get("max_abs_diff_ssim", 0.0)
    same = dp <= 1e-6 and ds <= 1e-7
    ok = r["ratio"] >= SCORING_RATIO and same
    return ("met" if ok else "not met"), f"{r['ratio']:.2f}x (max dPSNR {dp:.0e} dB, dSSIM {ds:.0e})"


def training(run: dict[str, Any]) -> Verdict:
    """MDRN training steps (B=16 and B=80) at or above 80% of the conv limit."""
    rows = _rows(run, lambda n: " train step x2, batch " in n and ":" not in n and " on " not in n)
    if not rows:
        return "not measured", ""
    return _judge_fractions(rows, lambda r: r["name"].split(" F=")[0].removeprefix("MDRN "), TRAIN_FRACTION)


def inference(run: dict[str, Any]) -> Verdict:
    """MDRN forward at or above 90% of the conv limit at every scale."""
    rows = _rows(run, lambda n: " forward x" in n and ":" not in n and " on " not in n)
    if not rows:
        return "not measured", ""
    status, text = _judge_fractions(
        rows, lambda r: r["name"].split(" forward ")[1].split(",")[0], FORWARD_FRACTION
    )
    chain = [r["extra"] for r in rows if "conv_chain" in r["extra"]]
    if len(chain) == len(rows):
        ours = " / ".join(f"{e['chain_fraction_ours']:.0%}" for e in chain)
        own = " / ".join(f"{e['conv_chain'] / e['conv_limit']:.0%}" for e in chain)
        text += f" (reference: {ours} of a chain of distinct convolutions, itself at {own} of the limit)"
    return status, text


def tiling(run: dict[str, Any]) -> Verdict:
    """B=80 x4 of a 1024x1024 image: tiled faster than the 4-quadrant split, peak within the budget."""
    full = run["facts"].get("tiling_full")
    if not full:
        return "not measured", "opt-in section tiling_full"
    v = full["variants"]
    tiled, split = v["tiled"], v["split"]
    out_bytes = 3 * 16 * int(run["sizes"]["full_lr"]) ** 2 * 4
    grown = tiled["peak_rss"] - tiled["setup_rss"]
    within = grown <= full["memory_budget"] + out_bytes
    faster = tiled["seconds"] < split["seconds"]
    text = (
        f"{tiled['seconds']:.0f} s vs {split['seconds']:.0f} s; peak {tiled['peak_rss'] / 2**30:.2f} GiB "
        f"({grown / 2**30:.2f} GiB above setup; budget {full['memory_budget'] / 2**30:.2f} GiB + output "
        f"{out_bytes / 2**30:.2f} GiB)"
    )
    return ("met" if faster and within else "not met"), text


def is_cuda(run: dict[str, Any]) -> bool:
    """Whether a recorded run ran on a CUDA device."""
    return str(run["machine"].get("device", "cpu")).startswith("cuda")


def gpu_best_step(g: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The fastest training variant at the bench's batch (not the larger batch) of a gpu section's facts."""
    train = {k: v for k, v in g.get("train", {}).items() if not v.get("large_batch") and v.get("flops")}
    return min(train.items(), key=lambda kv: kv[1]["seconds"]) if train else None


def gpu(run: dict[str, Any]) -> Verdict:
    """GPU figures: the training step's fraction of the bf16 dense peak, against the projection's 40%."""
    g = run["facts"].get("gpu")
    if not g or not is_cuda(run):
        return "not measured", "no GPU in this run"
    best = gpu_best_step(g)
    if best is None or best[1]["fraction_of_peak"] is None:
        return "measured", f"{g['device_name']}: bf16 peak unknown"
    k, frac = best[0], best[1]["fraction_of_peak"]
    large = [f"; {k}: {v['fraction_of_peak']:.1%}" for k, v in g["train"].items() if v.get("large_batch")]
    planned = GPU_ASSUMED_FRACTION * H100_BF16_MATMUL / g["bf16_peak"]  # the projection's, on that scale
    return (
        "measured",
        f"{g['device_name']} {k}: {frac:.1%} of the data sheet's bf16 peak{''.join(large)} (the projection "
        f"plans {GPU_ASSUMED_FRACTION:.0%} of {H100_BF16_MATMUL / 1e12:.0f} TFLOP/s = {planned:.0%} of that "
        "peak)",
    )


def _budget(run: dict[str, Any], largest: bool) -> tuple[dict[str, Any] | None, str]:
    """The paper's budget (or the largest) of a GPU run with a measured ceiling, else why not."""
    g = run["facts"].get("gpu")
    if not g or not is_cuda(run):
        return None, "no GPU in this run"
    budgets = [b for b in g.get("budgets", []) if b.get("variants")]
    if "ceiling" not in g or not budgets:
        return None, "no ceiling and budgets in this run (GPU runs from issue 26 on)"
    if largest:
        return max(budgets, key=lambda b: b["lr_pixels"]), ""
    paper = (PAPER_SCHEDULE["batch"], PAPER_SCHEDULE["patch"])
    b = next((b for b in budgets if (b["batch"], b["patch"]) == paper), None)
    return b, "" if b else "the paper's budget was not measured"


def _judge_budget(run: dict[str, Any], largest: bool, key: str, bar: float) -> Verdict:
    """Met if the budget's fastest variant reaches ``bar`` of the ceiling or the peak (``key``)."""
    b, why = _budget(run, largest)
    if b is None:
        return "not measured", why
    name, v = max(b["variants"].items(), key=lambda kv: kv[1]["flops_per_s"])
    frac = v.get(key)
    if frac is None:
        return "not measured", f"{run['facts']['gpu']['device_name']}: bf16 peak unknown"
    preset = run["facts"]["gpu"].get("preset", {}).get("variant")
    also = (
        f"; the mdrn.train preset {b['variants'][preset][key]:.0%}"
        if preset in b["variants"] and preset != name
        else ""
    )
    err = frac > 1.0
    text = f"{b['batch']}x{b['patch']}^2, {name}: {frac:.0%}" + (" (error: above 100%)" if err else "") + also
    return ("met" if frac >= bar and not err else "not met"), text


def gpu_ceiling(run: dict[str, Any]) -> Verdict:
    """The fastest training step at the paper's budget (16x48^2) at >= 70% of the measured conv ceiling."""
    return _judge_budget(run, False, "fraction_of_ceiling", CEILING_FRACTION)


def gpu_peak(run: dict[str, Any]) -> Verdict:
    """The fastest training step at the largest budget at >= 25% of the data sheet's bf16 dense peak."""
    return _judge_budget(run, True, "fraction_of_peak", PEAK_FRACTION)


def fractions(run: dict[str, Any]) -> Verdict:
    """No fraction above 100% of the conv limit reported as a result."""
    rows = [r for r in run["rows"] if "fraction_ours" in r.get("extra", {})]
    if not rows:
        return "not measured", ""
    bad = [r["name"] for r in rows if r["extra"].get("fraction_error") or r["extra"]["fraction_ours"] > 1.0]
    if any("conv_limit_shape" not in r["extra"] for r in rows):
        return (
            "not met" if bad else "met"
        ), f"{len(bad)} of {len(rows)} rows above 100% (limit measured apart)"
    return ("not met" if bad else "met"), f"{len(bad)} of {len(rows)} rows flagged as measurement errors"


GOALS: list[tuple[str, Callable[[dict[str, Any]], Verdict]]] = [
    (f"scoring >= {SCORING_RATIO:.0f}x the per-image loop", scoring),
    (f"training step >= {TRAIN_FRACTION:.0%} of the conv limit (B=16, B=80)", training),
    (f"inference >= {FORWARD_FRACTION:.0%} of the conv limit (x2, x3, x4)", inference),
    ("B=80 x4 1024x1024: tiled faster than the split, peak within budget", tiling),
    ("GPU: fraction of the bf16 peak", gpu),
    (f"GPU step >= {CEILING_FRACTION:.0%} of the measured ceiling (16x48^2)", gpu_ceiling),
    (f"GPU step >= {PEAK_FRACTION:.0%} of the bf16 peak (largest budget)", gpu_peak),
    ("fractions <= 100% (else a measurement error)", fractions),
]


def recorded_runs(folder: str | Path) -> list[dict[str, Any]]:
    """The recorded runs (``*.json`` with rows) of a results folder, oldest first; ``_source`` = file name."""
    runs = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(run, dict) and "rows" in run and "machine" in run:
            runs.append({**run, "_source": path.name})
    return sorted(runs, key=lambda r: (r.get("started_utc", ""), r["_source"]))


def goals_markdown(runs: list[dict[str, Any]]) -> str:
    """A table: one line per recorded run (file, machine), each goal met / not met / not measured."""
    lines = [
        "## Which goals each recorded run meets (issue 12)",
        "",
        "One line per recorded run in this folder (`--quick` runs left out). A fraction marked * compares "
        "a row's median with a conv limit measured apart (runs before the limit was measured inside each "
        "row's window); the others compare best calls of the same window.",
        "",
        "| run | machine | " + " | ".join(title for title, _ in GOALS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in GOALS) + " |",
    ]
    for run in runs:
        m = run["machine"]
        machine = f"{m['cpu']}, {m['cores_available']} cores, {m['device']}" + (
            f" ({m['gpu']})" if m.get("gpu") else ""
        )
        cells = []
        for _, judge in GOALS:
            status, text = judge(run)
            cells.append(f"**{status}**" + (f": {text}" if text else ""))
        lines.append(
            f"| `{run['_source']}` ({run.get('started_utc', '?')[:16]}) | {machine} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"
