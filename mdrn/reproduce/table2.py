"""Table 2: MDRN (CPU preset) against bicubic per medical image and scale."""

from __future__ import annotations

from collections.abc import Mapping
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
    optional_per_image,
    per_image,
    write_csv,
    write_text,
)


def render_table2(results: Path = RESULTS, pub: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write ``table2.csv``/``.md``/``.png``: MDRN (CPU preset) vs bicubic per medical image and scale."""
    from mdrn.reproduce.viz import bar_chart, save_figure

    pub = pub or load_published()
    folder = results / "table2"
    mdrn = per_image(folder / "mdrn_cpu.csv")
    bic = optional_per_image(folder / "bicubic.csv")
    facts = image_facts(results)
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
                    fmt_num(r["psnr"], 2),
                    fmt_num(r["ssim"], 4),
                    fmt_num(r["bicubic_psnr"], 2),
                    fmt_num(r["bicubic_ssim"], 4),
                    fmt_diff(r["psnr"], r["bicubic_psnr"], 2),
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
        + run_line([p for p in (folder / "mdrn_cpu.csv", folder / "bicubic.csv") if p.is_file()])
    )
    out["md"] = write_text(results / "table2.md", "\n".join(md) + "\n")
    return out
