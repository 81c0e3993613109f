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
#: the scoring rows' names: ours and the loop on one thread each; ours threaded against its one-thread self
EQUAL_THREADS = "one thread each"
THREADED = "threads against 1"
#: issue 26: the best step at the paper's budget against the measured ceiling; the largest budget's
#: against the data sheet's bf16 peak
CEILING_FRACTION = 0.70
PEAK_FRACTION = 0.25


def _rows(run: dict[str, Any], test: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The rows of ``run`` whose name passes ``test``."""
    return [r for r in run["rows"] if test(r["name"])]


def row_fraction(row: dict[str, Any], training: bool) -> dict[str, Any] | None:
    """A network row's fraction of its own conv limit: ``best``, ``median``, ``mark``, ``error`` (or None).

    Its own limit: the convolution's forward + backward for a training step, its forward for a forward.
    Rows recorded before ``limit_kind`` existed carry the forward fraction as ``fraction_ours`` and (since
    the training limit was measured) the training one as ``fraction_ours_train_limit``; their median is
    ours' median against the limit's best call (mark ``†``: no median of the limit was recorded). A
    training row with no forward + backward limit is not measured against it (None). Mark ``*``: the
    limit was measured apart (runs before the limit was measured inside each row's window).
    """
    e = row.get("extra", {})
    if "limit_kind" in e:
        return {"best": e["fraction_ours"], "median": e["fraction_ours_median"], "mark": "",
                "error": bool(e.get("fraction_error"))}  # fmt: skip
    if "fraction_ours" not in e:
        return None
    if training:
        if "fraction_ours_train_limit" not in e:
            return None
        best, limit = e["fraction_ours_train_limit"], e.get("conv_train_limit")
        error = best > 1.0 or e.get("fraction_baseline_train_limit", 0.0) > 1.0
    else:
        best, limit = e["fraction_ours"], e.get("conv_limit")
        error = best > 1.0 or e.get("fraction_baseline", 0.0) > 1.0
    interleaved = "conv_limit_shape" in e
    median = e["gflops_ours"] / limit if interleaved and limit and "gflops_ours" in e else None
    return {"best": best, "median": median, "mark": "†" if interleaved else "*", "error": error}


def _judge_fractions(
    rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str], bar: float, training: bool
) -> Verdict:
    """Met if every row's best-call fraction of its own limit reaches ``bar`` and none is an error."""
    parts, ok = [], True
    for r in rows:
        f = row_fraction(r, training)
        if f is None:
            old = r.get("extra", {}).get("fraction_ours")
            seen = f" (recorded only against the forward-only limit: {old:.0%})" if old is not None else ""
            return "not measured", f"no forward + backward conv limit in this run{seen}"
        median = f" (median {f['median']:.0%})" if f["median"] is not None else ""
        parts.append(f"{label(r)} {f['best']:.0%}{median}{f['mark']}" + (" (error)" if f["error"] else ""))
        ok = ok and f["best"] >= bar and not f["error"]
    return ("met" if ok else "not met"), ", ".join(parts)


def _scoring_rows(run: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the equal-threads row, the row recorded before it: ours threaded against a one-thread loop)."""
    rows = _rows(run, lambda n: n.startswith("PSNR+SSIM"))
    equal = next((r for r in rows if EQUAL_THREADS in r["name"]), None)
    unequal = next((r for r in rows if ":" not in r["name"] and EQUAL_THREADS not in r["name"]), None)
    return equal, unequal


def scoring(run: dict[str, Any]) -> Verdict:
    """Protocol scoring at least 5x the per-image numpy + scikit-image loop, one thread each, same values."""
    r, unequal = _scoring_rows(run)
    if r is None:
        if unequal is None:
            return "not measured", ""
        return "not measured", (
            f"not with equal threads (recorded: {unequal['ratio']:.2f}x, ours threaded against the "
            "one-thread loop)"
        )
    dp, ds = r["extra"].get("max_abs_diff_psnr", 0.0), r["extra"].get("max_abs_diff_ssim", 0.0)
    same = dp <= 1e-6 and ds <= 1e-7
    ok = r["ratio"] >= SCORING_RATIO and same
    threaded = next((x for x in _rows(run, lambda n: n.startswith("PSNR+SSIM") and THREADED in n)), None)
    more = f"; threaded: {threaded['ratio']:.2f}x its one-thread self" if threaded else ""
    return ("met" if ok else "not met"), f"{r['ratio']:.2f}x (max dPSNR {dp:.0e} dB, dSSIM {ds:.0e}){more}"


def training(run: dict[str, Any]) -> Verdict:
    """MDRN training steps (B=16 and B=80) at or above 80% of the convolution's forward + backward limit."""
    rows = _rows(run, lambda n: " train step x2, batch " in n and ":" not in n and " on " not in n)
    if not rows:
        return "not measured", ""
    label = lambda r: r["name"].split(" F=")[0].removeprefix("MDRN ")  # noqa: E731
    return _judge_fractions(rows, label, TRAIN_FRACTION, training=True)


def train_fraction(run: dict[str, Any]) -> float | None:
    """The B=80 training step's best-call fraction of its forward + backward conv limit (None if none).

    From its row (runs of any date); a run without that row: its ``train_fraction`` fact, if any.
    """
    rows = _rows(run, lambda n: n.startswith("MDRN B=80 F=64 train step x2, batch ") and ":" not in n)
    if not rows:
        return run["facts"].get("train_fraction")
    f = row_fraction(rows[0], training=True)
    return f["best"] if f else None


def inference(run: dict[str, Any]) -> Verdict:
    """MDRN forward at or above 90% of the convolution's forward limit at every scale."""
    rows = _rows(run, lambda n: " forward x" in n and ":" not in n and " on " not in n)
    if not rows:
        return "not measured", ""
    status, text = _judge_fractions(
        rows, lambda r: r["name"].split(" forward ")[1].split(",")[0], FORWARD_FRACTION, training=False
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
    """GPU training step: met if its fraction of the bf16 data-sheet peak reaches the projection's plan.

    The projection plans ``GPU_ASSUMED_FRACTION`` of ``H100_BF16_MATMUL`` (a sustained bf16 matmul rate);
    on the device's data-sheet scale that is ``GPU_ASSUMED_FRACTION * H100_BF16_MATMUL / bf16_peak``. The
    fastest training variant at the bench's batch (not the larger batch) is judged.
    """
    g = run["facts"].get("gpu")
    if not g or not is_cuda(run):
        return "not measured", "no GPU in this run"
    best = gpu_best_step(g)
    if best is None or best[1]["fraction_of_peak"] is None or not g.get("bf16_peak"):
        return "not measured", f"{g['device_name']}: bf16 peak unknown"
    k, frac = best[0], best[1]["fraction_of_peak"]
    large = [f"; {k}: {v['fraction_of_peak']:.1%}" for k, v in g["train"].items() if v.get("large_batch")]
    planned = GPU_ASSUMED_FRACTION * H100_BF16_MATMUL / g["bf16_peak"]  # the projection's, on that scale
    return (
        "met" if frac >= planned else "not met",
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
    """No fraction of a row's own conv limit above 100% reported as a result (best calls and medians)."""
    rows = [(r, " train step " in r["name"]) for r in run["rows"] if "fraction_ours" in r.get("extra", {})]
    judged = [(r, row_fraction(r, training)) for r, training in rows]
    judged = [(r, f) for r, f in judged if f is not None]
    if not judged:
        return "not measured", ""
    bad = [r["name"] for r, f in judged if f["error"]]
    apart = any(f["mark"] == "*" for _, f in judged)
    where = " (limit measured apart)" if apart else " flagged as measurement errors"
    return ("not met" if bad else "met"), f"{len(bad)} of {len(judged)} rows above 100%{where}"


GOALS: list[tuple[str, Callable[[dict[str, Any]], Verdict]]] = [
    (f"scoring >= {SCORING_RATIO:.0f}x the per-image loop, one thread each", scoring),
    (f"training step >= {TRAIN_FRACTION:.0%} of the conv forward + backward limit (B=16, B=80)", training),
    (f"inference >= {FORWARD_FRACTION:.0%} of the conv forward limit (x2, x3, x4)", inference),
    ("B=80 x4 1024x1024: tiled faster than the split, peak within budget", tiling),
    (f"GPU training step >= the projection's {GPU_ASSUMED_FRACTION:.0%} of 790 TFLOP/s", gpu),
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
        "One line per recorded run in this folder (`--quick` runs left out). Each fraction is a row's best "
        "call against the best call of its own conv limit in the same window (a training step against the "
        "convolution's forward + backward, a forward against its forward), the median beside it (median "
        "against median). Marked † (runs recorded before the limit's median was kept): the median is "
        "ours' median against the limit's best call. Marked * (runs before the limit was measured inside "
        "each row's window): a row's median against a limit measured apart. Runs recorded before the "
        "scoring rows had equal threads, or before the training limit was measured, are *not measured* on "
        "those goals, with what they recorded.",
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
