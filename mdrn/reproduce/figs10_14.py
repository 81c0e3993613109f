"""Figs. 10-14: visual comparison panels (index of the rendered panels per model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mdrn.reproduce.record import run_line
from mdrn.reproduce.results import RESULTS, fmt_num, markdown_table, read_csv, write_text


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
                    fmt_num(float(r["bicubic_psnr"]), 2),
                    fmt_num(float(r["sr_psnr"]), 2),
                    f"[{r['figure']}](figs10_14/{r['figure']})",
                ]
                for r in rows
            ],
        ),
    ]
    for r in rows:
        if int(r["scale"]) == 4:
            md.append(f"\n![{r['image']} x4](figs10_14/{r['figure']})\n")
    md.append("\n## Recorded run\n\n" + run_line([folder / "panels.csv"]))
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
