"""Fig. 8: the multi-scale MDRN against single-scale models per image, at equal updates per scale."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mdrn.reproduce.record import preset_summary, run_line
from mdrn.reproduce.results import (
    RESULTS,
    SCALES,
    fmt_diff,
    fmt_num,
    image_facts,
    load_published,
    markdown_table,
    mean_scores,
    optional_per_image,
    per_image,
    write_csv,
    write_text,
)

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
            cells += [fmt_num(one, digits), fmt_num(many, digits), fmt_diff(many, one, digits)]
        body.append(cells[: len(first)] + [f"x{r['scale']}"] + cells[len(first) :])
    return markdown_table(head, body)


def render_fig8(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``fig8.csv``/``.md`` and PNGs: single- vs multi-scale per set and scale, 16-bit set on its own.

    The 8-bit sets (Set5, the 8-bit medical images) are compared per (set, scale) and summarised by the
    mean absolute difference, the paper's figure. A set of 10- to 16-bit images (each image its own PSNR
    peak, so no set mean) is reported on its own, per image, with its own mean absolute difference.
    """
    from mdrn.reproduce.viz import bar_chart, save_figure

    pub = pub or load_published()
    claim = pub["mdrn_paper_claims"]["fig8_single_vs_multi_mean_abs_diff"]
    folder = results / "fig8"
    facts = image_facts(results)
    high = {f["set"] for f in facts.values() if int(f.get("bit_depth") or 8) > 8 and f.get("set")}
    multi_img = per_image(folder / f"{FIG8_MULTI}.csv")
    single_img: dict[tuple[str, int, str], tuple[float, float]] = {}
    for s, name in zip(SCALES, FIG8_SINGLE):
        single_img.update({k: v for k, v in optional_per_image(folder / f"{name}.csv").items() if k[1] == s})
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
        f"PSNR {fmt_num(_mad(low_rows, 'psnr'), 3)} dB, SSIM {fmt_num(_mad(low_rows, 'ssim'), 4)} — paper: "
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
            f"{fmt_num(_mad(high_rows, 'psnr'), 3)} dB, SSIM {fmt_num(_mad(high_rows, 'ssim'), 4)}.\n",
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
    md.append("\n## Recorded runs\n\n" + run_line([p for p in weights + runs if p.is_file()]))
    out["md"] = write_text(results / "fig8.md", "\n".join(md) + "\n")
    return out
