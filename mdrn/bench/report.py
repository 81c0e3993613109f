"""The bench's Markdown: the table of a run, the decisions it supports, the README (goals, projection)."""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path
from typing import Any

from mdrn.bench.clinical import clinical_markdown
from mdrn.bench.core import (
    GPU_ASSUMED_FRACTION,
    H100_BF16_MATMUL,
    PAPER_MODEL,
    PAPER_SCHEDULE,
    fmt,
    gpu_tag,
)
from mdrn.bench.goals import (
    THREADED,
    goals_markdown,
    gpu_best_step,
    is_cuda,
    recorded_runs,
    train_fraction,
)
from mdrn.bench.profile import profiles_markdown


def table_markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown document: machine, table of rows, skipped rows, total time."""
    m = result["machine"]
    lines = [
        f"# mdrn bench: {m['host']}, {result['started_utc']}"
        + (" (--quick: sizes for tests only)" if result["quick"] else ""),
        "",
        f"Machine: {m['cpu']}, {m['cores_available']} cores available, torch {m['torch']} "
        f"({m['torch_threads']} threads), device {m['device']}"
        + (f" ({m['gpu']})" if m.get("gpu") else "")
        + f"; load average {m['load_average'][0]:.2f} at the start, "
        f"{m['load_average_end'][0]:.2f} at the end.",
        f"Fast path: {result['fast_path']}.",
        "",
        "Each row: ours and the baseline in the same process, alternating, median of `repeats` after "
        "warm-up; ratio = ours / baseline (`better`: which direction wins).",
        "",
        "| row | ours | baseline | unit | ratio | better | repeats | ours is | baseline is | notes |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: | --- | --- | --- |",
    ]
    for r in result["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3g}"
        r = {k: v.replace("|", "\\|") if isinstance(v, str) else v for k, v in r.items()}
        lines.append(
            f"| {r['name']} | {fmt(r['ours'])} | {fmt(r['baseline'])} | {r['unit']} | {ratio} "
            f"| {r['better']} "
            f"| {r['repeats']} | {r['ours_label']} | {r['baseline_label']} | {r['notes']} |"
        )
    if result["skipped"]:
        lines += ["", "Not measured:"] + [f"- {s['name']}: {s['reason']}" for s in result["skipped"]]
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in result["section_seconds"].items())
    lines += ["", f"Total time: {result['total_seconds']:.1f} s ({secs})."]
    if result["facts"].get("profiles"):
        lines += profiles_markdown(result["facts"]["profiles"])
    if result["facts"].get("clinical"):
        lines += clinical_markdown(result["facts"]["clinical"])
    return "\n".join(lines) + "\n"


def _ratios(result: dict[str, Any], *needles: str) -> list[tuple[str, float]]:
    """(name, speed-up of ours) of the rows whose name contains every needle (1 / ratio for times)."""
    return [
        (r["name"], r["ratio"] if r.get("better", "higher") == "higher" else 1 / r["ratio"])
        for r in result["rows"]
        if r["ratio"] and all(n in r["name"] for n in needles)
    ]


def decisions_markdown(result: dict[str, Any]) -> str:
    """Which optimisation the recorded run supports on its device, each with the rows that show it."""
    dev = result["machine"]["device"]
    out = [
        f"## What the run shows about each optimisation ({dev})",
        "",
        "Speed-ups of ours against the baseline of the rows named (ours / baseline for rates, baseline / "
        "ours for times), in this run (the opt-in sections tiling_full and gpu: in their latest recorded "
        "run).",
        "",
    ]

    def verdict(title: str, rows: list[tuple[str, float]], keep: str, drop: str, bar: float = 1.0) -> None:
        if not rows:
            out.append(f"- {title}: not measured in this run.")
            return
        ratios = ", ".join(f"{r:.2f}x" for _, r in rows)
        ok = all(r >= bar for _, r in rows)
        out.append(f"- {title}: {ratios} ({len(rows)} row{'s' * (len(rows) > 1)}). {keep if ok else drop}")

    verdict(
        "channels_last + inference_mode (forward)",
        [r for r in _ratios(result, " forward x") if ":" not in r[0]],
        "Kept: `mdrn.perf.prepare_for_inference` default.",
        "Not faster everywhere: revisit the default.",
    )
    train = [r for r in result["rows"] if "train step x2, batch" in r["name"] and ":" not in r["name"]]
    verdict(
        f"training fast path ({train[0]['ours_label'] if train else '-'}) against eager NCHW + default Adam",
        [(r["name"], r["ratio"]) for r in train],
        "Kept: not slower than eager (within 2% run-to-run noise); `mdrn.perf.training_defaults`.",
        "Slower than eager by more than 2% in some row: revisit the default.",
        bar=0.98,
    )
    verdict(
        "fused Adam alone",
        _ratios(result, "Adam step"),
        "Kept (`torch.optim.Adam(..., fused=True)`), though it is < 1% of a step.",
        "Not faster: keep the default loop.",
    )
    verdict(
        "in-place ReLU + in-place residual add in `mdrn.models.blocks.ResBlock` (against out of place)",
        _ratios(result, "in-place ReLU"),
        "Kept: gain >= 2% in every row.",
        "Gain < 2% (within noise) in some row: small tiles gain little; see the large-image row.",
        bar=1.02,
    )
    verdict(
        "module.compile() on this device",
        _ratios(result, "module.compile()"),
        "Faster in steady state; see the row for the compile time it must pay back.",
        "Not faster in steady state: not a default here.",
    )
    verdict(
        "decoded-image cache against decoding a PNG per patch",
        _ratios(result, "data pipeline"),
        "Kept (mdrn.data's default).",
        "Not faster: revisit.",
    )
    verdict(
        "tiled inference against the 4-quadrant split",
        [(n, r) for n, r in _ratios(result, " LR image: time")],
        "Faster than the quadrant split.",
        "Slower than the quadrant split: see the row's recomputed-pixel factors (tile size vs overlap).",
    )
    verdict(
        "glibc keeping freed memory while the network runs (`mdrn.perf.malloc_reuse`)",
        _ratios(result, "allocator hypothesis"),
        "Kept: `mdrn.models.inference` runs the body with it; training processes switch it on.",
        "Not faster: drop it.",
    )
    verdict(
        "one large body tile against body tiles capped under 32 MB maps (recomputed context)",
        _ratios(result, "body tiles under 32 MB"),
        "Kept: the memory budget sizes body tiles.",
        "Capped tiles were faster: cap the body tiles.",
    )
    verdict(
        "metrics (mdrn.protocol.metrics.score) against the per-image scikit-image loop",
        [r for r in _ratios(result, "PSNR+SSIM") if THREADED not in r[0]],
        "Faster.",
        "Slower than the per-image scikit-image loop on this CPU.",
    )
    out.append("")
    return "\n".join(out) + "\n"


def projection_markdown(
    result: dict[str, Any],
    decisions_from: dict[str, Any] | None = None,
    gpu_run: dict[str, Any] | None = None,
) -> str:
    """The H100 projection of the paper's schedule from a measured result, with the arithmetic shown.

    ``decisions_from``: the result whose rows the decisions read (default ``result``); ``gpu_run``: a
    recorded run with section gpu, whose fastest training step becomes a row of the table."""
    f = result["facts"]
    per = f["paper_step_flops"]
    scales = sorted(per, key=int)
    step = statistics.mean(per[s]["training"] for s in scales)
    it, batch = PAPER_SCHEDULE["iterations"], PAPER_SCHEDULE["batch"]
    total = step * it
    frac = train_fraction(result)  # of the convolution's forward + backward limit (the row's own)
    lines = [
        "# Benchmark results and the H100 projection",
        "",
        "Generated by `python -m mdrn.bench` from the recorded run "
        f"`{result.get('_source', '?')}` (regenerate with `python -m mdrn.bench --readme-from <run>.json`).",
        "",
        "## FLOPs of one training step (counted from the layer shapes, `mdrn.perf.count_flops`)",
        "",
        f"MDRN B={PAPER_MODEL['n_resblocks']} F={PAPER_MODEL['n_feats']} ({f['paper_params']:,} parameters), "
        f"batch {batch} of {PAPER_SCHEDULE['patch']}x{PAPER_SCHEDULE['patch']} LR patches; "
        "forward + backward "
        "(weight gradients, and input gradients for every layer but the first):",
        "",
        "| scale | forward GFLOP | training step GFLOP | per patch GFLOP |",
        "| --- | ---: | ---: | ---: |",
    ]
    for s in scales:
        lines.append(
            f"| x{s} | {per[s]['forward'] / 1e9:,.1f} | {per[s]['training'] / 1e9:,.1f} "
            f"| {per[s]['training'] / batch / 1e9:,.1f} |"
        )
    lines += [
        "",
        f"One scale is drawn per batch (uniformly), so a step costs on average "
        f"F_step = {step / 1e12:.3f} TFLOP. Schedule (EDSR-PyTorch's MDSR recipe, followed by the paper): "
        f"{it:,} iterations, so the run costs F_step x {it:,} = {total / 1e18:.3f} EFLOP "
        f"({total:.3e} FLOP). Adam (~10 FLOP per parameter per step) and elementwise ops are not counted "
        "(< 0.2%).",
        "",
        "## Projected time on H100 (P = 790 TFLOP/s: sustained bf16 matmul; data sheet peak 989)",
        "",
    ]
    cases = []
    if frac:
        cases.append(
            (
                f"the fraction this bench measured on CPU (training step at {frac:.1%} of the "
                "convolution's forward + backward limit measured in its window)",
                frac,
            )
        )
    measured = gpu_best_step(gpu_run["facts"]["gpu"]) if gpu_run else None
    if measured and gpu_run:
        k, best = measured
        cases.append(
            (
                f"the rate measured on {gpu_run['facts']['gpu']['device_name']} "
                f"(`{gpu_run.get('_source', '?')}`, {k}: {best['flops'] / best['seconds'] / 1e12:.1f} "
                "TFLOP/s per x2 step)",
                best["flops"] / best["seconds"] / H100_BF16_MATMUL,
            )
        )
        cases += _budget_cases(gpu_run)
    cases.append(
        (
            f"{GPU_ASSUMED_FRACTION:.0%} of peak (the issue's assumption for a tuned bf16 run)",
            GPU_ASSUMED_FRACTION,
        )
    )
    rate = f.get("cache_patches_per_s_per_core")
    lines += [
        "| utilisation u | 1 H100: time = total / (u P) | 8 H100: time / 8 | patches/s to feed 1 / 8 "
        "(= 16 / step time) | CPU cores of the cache needed for 1 / 8 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, u in cases:
        t1 = total / (u * H100_BF16_MATMUL)
        sps = u * H100_BF16_MATMUL / step
        need = sps * batch
        cores = f"{need / rate:.1f} / {8 * need / rate:.1f}" if rate else "not measured"
        lines.append(
            f"| {label}: u = {u:.3f} | {total:.3e} / ({u:.3f} x 7.9e14) = {t1:,.0f} s = {t1 / 3600:.1f} h "
            f"| {t1 / 8 / 3600:.2f} h | {need:,.0f} / {8 * need:,.0f} | {cores} |"
        )
    grad_bytes = f["paper_params"] * 4
    allreduce = 2 * 7 / 8 * grad_bytes / 450e9
    lines += [
        "",
        "8 GPUs: data-parallel, batch 16 per GPU, the same number of patches in total (iterations / 8), "
        "so the "
        "time is divided by 8; the gradient all-reduce (ring, fp32 gradients: 2 x 7/8 x "
        f"{grad_bytes / 1e6:.0f} MB over ~450 GB/s NVLink = {allreduce * 1e3:.2f} ms per step) is small "
        "against the step time and overlaps the backward.",
        "",
        "The CPU fraction is an upper bound for the GPU: 64-channel 3x3 convolutions on 48x48 patches "
        "are small "
        "for an H100 and reach well under half of its tensor-core peak; the 40% row is the planning figure"
        + (
            " (the measured row is what one H200 reached; the H200 has the H100's bf16 peak)."
            if measured
            else "."
        ),
        "",
    ]
    if rate:
        lines.append(
            f"Data: the decoded-image cache delivers {rate:,.0f} patches/s per CPU core on this machine "
            "(row 'data pipeline'); the table divides the patches/s an H100 consumes by it."
        )
    else:
        lines.append("Data: the cache's patches/s per core was not measured in this run.")
    cpu = f.get("train_gflops")
    if cpu:
        t_cpu = total / (cpu * 1e9)
        lines += [
            "",
            f"For scale: this machine trains at {cpu:.1f} GFLOP/s (row 'train step B=80'), so the schedule "
            f"would take {total:.3e} / {cpu * 1e9:.3e} = {t_cpu / 86400:,.0f} days here.",
        ]
    lines += [
        "",
        decisions_markdown(decisions_from or result),
        "## The recorded run",
        "",
        table_markdown(result).split("\n", 2)[2],
    ]
    return "\n".join(lines) + "\n"


def _budget_cases(gpu_run: dict[str, Any]) -> list[tuple[str, float]]:
    """Projection rows from a GPU run's budgets: the mdrn.train preset at the paper's budget and the
    fastest step at the largest budget (the same patches in fewer, larger steps: the same FLOPs per pixel)."""
    g = gpu_run["facts"]["gpu"]
    budgets = [b for b in g.get("budgets", []) if b.get("variants")]
    if not budgets:
        return []
    out = []
    preset = g.get("preset", {}).get("variant")
    paper = next(
        (
            b
            for b in budgets
            if (b["batch"], b["patch"]) == (PAPER_SCHEDULE["batch"], PAPER_SCHEDULE["patch"])
        ),
        None,
    )
    if paper and preset in paper["variants"] and paper["best"] != preset:
        v = paper["variants"][preset]
        label = f"the mdrn.train preset ({preset}) at {paper['batch']}x{paper['patch']}^2"
        out.append((f"{label}: {v['flops_per_s'] / 1e12:.1f} TFLOP/s", v["flops_per_s"] / H100_BF16_MATMUL))
    big = max(budgets, key=lambda b: b["lr_pixels"])
    if big is not paper:
        v = big["variants"][big["best"]]
        out.append((f"the fastest step at {big['batch']}x{big['patch']}^2 LR ({big['best']}: "
                    f"{v['flops_per_s'] / 1e12:.1f} TFLOP/s; the schedule's patches in larger steps)",
                    v["flops_per_s"] / H100_BF16_MATMUL))  # fmt: skip
    return out


def _measured(run: dict[str, Any], fact: str) -> bool:
    """Whether ``run`` measured the opt-in section ``fact`` (section gpu: only on a CUDA device)."""
    return bool(run["facts"].get(fact)) and (fact != "gpu" or is_cuda(run))


def _latest_rows_markdown(runs: list[dict[str, Any]], fact: str, needle: str, title: str) -> list[str]:
    """The rows (and profiles) of the latest run that measured an opt-in section, as Markdown lines."""
    run = next((r for r in reversed(runs) if _measured(r, fact)), None)
    if run is None:
        return []
    lines = ["", f"## {title} (latest: `{run['_source']}`)", ""]
    rows = [r for r in run["rows"] if needle in r["name"]]
    if rows:
        table = table_markdown({**run, "rows": rows, "skipped": []}).split("\n")
        start = next(i for i, line in enumerate(table) if line.startswith("| row |"))
        end = next(i for i in range(start, len(table)) if not table[i].startswith("|"))
        lines += table[start:end]
    if fact == "profiles":
        lines += profiles_markdown(run["facts"]["profiles"])[2:]
    if fact == "gpu":
        lines += gpu_projection_markdown(run["facts"]["gpu"])
    if fact == "clinical":
        lines += clinical_markdown(run["facts"]["clinical"])[2:]
    return lines


def gpu_projection_markdown(g: dict[str, Any]) -> list[str]:
    """The measured GPU training step against the projection's assumption (40% of P = 790 TFLOP/s)."""
    measured = gpu_best_step(g)
    if measured is None or "paper_schedule_hours" not in g:
        return []
    k, best = measured
    rate = best["flops"] / best["seconds"]
    assumed = GPU_ASSUMED_FRACTION * H100_BF16_MATMUL
    hours = PAPER_SCHEDULE["iterations"] * best["flops"] / assumed / 3600
    mm = g.get("matmul_bf16", {}).get("flops_per_s")
    lines = [
        "",
        f"Measured against the projection: the fastest batch-{best.get('batch', '?')} training step "
        f"(x2, {k}) took {best['seconds'] * 1e3:.1f} ms = {rate / 1e12:.1f} TFLOP/s"
        + (
            f" = {best['fraction_of_peak']:.1%} of the data sheet's bf16 dense peak"
            if best.get("fraction_of_peak")
            else ""
        )
        + (
            f", {rate / mm:.1%} of the bf16 matmul measured in the same run ({mm / 1e12:.0f} TFLOP/s)"
            if mm
            else ""
        )
        + (
            f", {best['fraction_of_conv_limit']:.0%} of the bf16 convolution's forward + backward alone"
            if best.get("fraction_of_conv_limit") and best["fraction_of_conv_limit"] <= 1.0
            else ""
        )
        + f". {PAPER_SCHEDULE['iterations']:,} such steps take {g['paper_schedule_hours']:.1f} h on one "
        f"{g['device_name']}; the projection's planning row (u = {GPU_ASSUMED_FRACTION:.0%} of "
        f"{H100_BF16_MATMUL / 1e12:.0f} TFLOP/s = {assumed / 1e12:.0f} TFLOP/s) gives {hours:.1f} h for "
        f"them: measured / planned rate = {rate / assumed:.2f}.",
    ]
    fracs = [
        v["fraction_of_conv_limit"]
        for part in ("train", "forward")
        for v in g.get(part, {}).values()
        if v.get("fraction_of_conv_limit")
    ]
    over = [f for f in fracs if f > 1.0]
    if over:
        lines += [
            "",
            f"{len(over)} of {len(fracs)} network rows ran above the bf16 convolution limit measured in the "
            f"same run (up to {max(over):.0%}): on this GPU that limit (a stack of 64->64 convolutions, "
            "eager or compiled with CUDA graphs) is not a ceiling of the network, so those fractions are "
            "measurement errors, not results; the fractions of the bf16 peak above do not depend on it.",
        ]
    lines += _budgets_markdown(g)
    comp = {**g.get("compile_seconds_train", {}), **g.get("compile_seconds_forward", {})}
    if comp:
        lines += [
            "",
            "Compilation (the first call of each compiled variant, timed apart): "
            + ", ".join(f"{name} {sec:.0f} s" for name, sec in comp.items())
            + ".",
        ]
    return lines


def _budgets_markdown(g: dict[str, Any]) -> list[str]:
    """The ceiling, the step per budget and variant, the cuDNN A/B and the fusion profile (issue 26)."""
    budgets = [b for b in g.get("budgets", []) if b.get("variants")]
    c = g.get("ceiling")
    if not budgets or not c:
        return []
    peak = g.get("bf16_peak")
    lines = [
        "",
        f"Ceiling (the network's 64->64 3x3 bf16 NHWC convolution, forward + backward, cuDNN benchmark on, "
        f"{'each pass one CUDA graph' if c['graphs'] else 'eager: no captured graph was faster'}; best of "
        f"{len(c['per_shape'])} shapes): {c['flops_per_s'] / 1e12:.1f} TFLOP/s at "
        f"{c['shape'][0]}x{c['shape'][1]}^2"
        + (
            f" = {c['flops_per_s'] / peak:.1%} of the data sheet's bf16 dense peak ({peak / 1e12:.0f})"
            if peak
            else ""
        )
        + ". Per shape (graph / eager, TFLOP/s): "
        + "; ".join(
            f"{e['batch']}x{e['patch']}^2 "
            + (f"{e['graph'] / 1e12:.1f} / " if e.get("graph") else "- / ")
            + f"{e['eager'] / 1e12:.1f}"
            for e in c["per_shape"]
        )
        + ".",
        "",
        "| budget (batch x LR patch) | variant | ms per step | steps/s | TFLOP/s | of the bf16 peak "
        "| of the ceiling | of the conv at this shape |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in budgets:
        for k, v in b["variants"].items():
            mark = " **(fastest)**" if k == b["best"] else ""
            lines.append(
                f"| {b['batch']}x{b['patch']}^2 ({b['lr_pixels']:,} px) | {k}{mark} "
                f"| {v['seconds'] * 1e3:.1f} | {v['steps_per_s']:.1f} | {v['flops_per_s'] / 1e12:.1f} | "
                + (f"{v['fraction_of_peak']:.1%}" if v.get("fraction_of_peak") is not None else "-")
                + f" | {v['fraction_of_ceiling']:.0%} | "
                + (f"{v['fraction_of_shape_conv']:.0%}" if v.get("fraction_of_shape_conv") else "-")
                + " |"
            )
    ab = g.get("cudnn_benchmark_ab", [])
    if ab:
        lines += [
            "",
            "cuDNN benchmark mode (the eager step as one CUDA graph, captured with it on and off, "
            "alternating in one process; best step, ms): "
            + "; ".join(
                f"{a['batch']}x{a['patch']}^2 on {a['on'] * 1e3:.1f} / off {a['off'] * 1e3:.1f} "
                f"({a['off'] / a['on']:.2f}x)"
                for a in ab
            )
            + ".",
        ]
    fusion = g.get("fusion") or {}
    if fusion.get("eager"):
        parts = []
        for k in ("eager", "compiled"):
            f = fusion.get(k)
            if f:
                kinds = ", ".join(f"{n} {c}" for n, c in sorted(f["by_kind"].items(), key=lambda kv: -kv[1]))
                per = f["kernels"] / fusion["blocks"]
                parts.append(f"{k}: {f['kernels']} kernels per step ({per:.1f} per residual block; {kinds})")
        top = ", ".join(
            f"`{n}` x{c}" for n, c in list((fusion.get("compiled") or {}).get("triton", {}).items())[:4]
        )
        lines += ["", "Kernel profile of one step at the paper's budget: " + "; ".join(parts)
                  + (f". Most frequent fused kernels: {top}." if top else ".")]  # fmt: skip
    skips = g.get("cudagraph_skips")
    if skips:
        lines += [
            "",
            f"Inductor fell back from CUDA graphs {skips} time(s) in this run: the preset's rows are not "
            "graph-run; see the run's log.",
        ]
    comp = g.get("compile_seconds")
    if comp:
        lines += ["", "Compilation and first steps (dynamic shapes, the body only): "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in comp.items()) + "."]  # fmt: skip
    return lines


GPU_SESSION = (
    "GPU figures come from `make gpu-checks` on a CUDA machine (`scripts/gpu_checks.sh`: `PART=bench` for "
    "the tests marked gpu and this bench, under 4 minutes; `PART=learn` for `scripts/gpu_learn.py`, "
    "under 8): "
    "the README's section 'On a GPU' gives the exact commands, the data to carry (`make gpu-data`) and what "
    "to commit."
)


def readme_markdown(result: dict[str, Any], runs: list[dict[str, Any]] | None = None) -> str:
    """The bench README: which goals each recorded run meets, the projection from ``result``, and the
    latest figures of the opt-in sections (tiling_full, profile, gpu) among ``runs``."""
    runs = [r for r in (runs or []) if not r.get("quick")]
    if not any(r.get("_source") == result.get("_source") for r in runs):
        runs = [*runs, result]
    result = _projection_source(result, runs)
    opt_in = []
    for fact in ("tiling_full", "profiles", "clinical", "gpu"):
        run = next((r for r in reversed(runs) if _measured(r, fact)), None)
        if run is not None and run is not result and run.get("_source") != result.get("_source"):
            opt_in += [r for r in run["rows"] if r not in result["rows"] and r not in opt_in]
    gpu_run = next((r for r in reversed(runs) if r["facts"].get("gpu") and is_cuda(r)), None)
    body = projection_markdown(result, {**result, "rows": result["rows"] + opt_in}, gpu_run).split("\n")
    names = ", ".join(f"`{r['_source']}`" for r in runs if r.get("_source"))
    lines = [
        "# Benchmark results: the goals per machine and the H100 projection",
        "",
        f"Generated by `python -m mdrn.bench` from the recorded runs in this folder ({names}); the "
        f"projection and the decisions from `{result.get('_source', '?')}` (regenerate with "
        "`python -m mdrn.bench --readme-from <run>.json`).",
        "",
        GPU_SESSION,
        "",
        goals_markdown(runs),
        *body[4:],
    ]
    for fact, needle, title in (
        ("tiling_full", "x4 of a 1024x1024", "The paper's network tiled: B=80 x4, section tiling_full"),
        ("profiles", "\0", "Where a step's time goes: section profile"),
        ("clinical", "clinician path", "The clinician path against its network: section clinical"),
        ("gpu", " on ", "GPU: section gpu"),
    ):
        lines += _latest_rows_markdown(runs, fact, needle, title)
    return "\n".join(lines).rstrip("\n") + "\n"


def _projection_source(result: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run the projection and decisions come from: ``result``, or for a GPU run (sections limits and
    gpu only) the latest CPU run that measured the training fraction, if any."""
    if not is_cuda(result):
        return result
    cpu = [r for r in runs if not is_cuda(r) and train_fraction(r)]
    return cpu[-1] if cpu else result


def free_stem(folder: Path, stem: str, overwrite: bool = False) -> str:
    """``stem`` or, if its .md/.json exist and not ``overwrite``, the first free ``stem-2``, ``stem-3``..."""
    if overwrite:
        return stem
    cand, k = stem, 1
    while (folder / f"{cand}.md").exists() or (folder / f"{cand}.json").exists():
        k += 1
        cand = f"{stem}-{k}"
    return cand


def write_results(
    result: dict[str, Any], folder: str | os.PathLike[str], *, overwrite: bool = False, readme: bool = True
) -> tuple[Path, Path]:
    """Write ``<machine>-<date>[-quick].md`` and ``.json`` (a free name unless ``overwrite``), README.md."""
    from mdrn.io.images import atomic_write

    folder = Path(folder)
    host = re.sub(r"[^A-Za-z0-9_.-]+", "_", result["machine"]["host"] or "machine")
    if is_cuda(result):  # a GPU run is named by its GPU: h100-<date>
        host = gpu_tag(result["machine"].get("gpu"))
    stem = free_stem(folder, f"{host}-{result['date']}" + ("-quick" if result["quick"] else ""), overwrite)
    js, md = folder / f"{stem}.json", folder / f"{stem}.md"
    result = {**result, "_source": js.name}
    atomic_write(js, lambda p: p.write_text(json.dumps(result, indent=1) + "\n"), overwrite=overwrite)
    atomic_write(md, lambda p: p.write_text(table_markdown(result)), overwrite=overwrite)
    if readme:
        text = readme_markdown(result, recorded_runs(folder))
        atomic_write(folder / "README.md", lambda p: p.write_text(text), overwrite=True)
    return md, js
