"""Figs. 15-16: PSNR and SSIM of bicubic, SRCNN, EDSR and MDRN on the medical images."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mdrn.reproduce.record import preset_summary, run_line
from mdrn.reproduce.results import (
    RESULTS,
    fmt_num,
    load_published,
    markdown_table,
    optional_per_image,
    write_csv,
    write_text,
)

FIGS15_16_METHODS = (
    ("Bicubic", "bicubic"),
    ("SRCNN", "srcnn_cpu_x4"),
    ("EDSR", "edsr_cpu"),
    ("MDRN", "mdrn_cpu"),
)


def render_figs15_16(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``figs15_16.csv``/``.md``, ``fig15_psnr.png``, ``fig16_ssim.png``: 4 methods, x4, per image."""
    from mdrn.reproduce.viz import bar_chart, save_figure

    pub = pub or load_published()
    folder = results / "table2"
    scores = {m: optional_per_image(folder / f"{f}.csv") for m, f in FIGS15_16_METHODS}
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
                    f"{fmt_num(get[(image, m)]['psnr'], 2)} / {fmt_num(get[(image, m)]['ssim'], 4)}"
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
    md.append("\n## Recorded runs\n\n" + run_line(files))
    out["md"] = write_text(results / "figs15_16.md", "\n".join(md) + "\n")
    return out
