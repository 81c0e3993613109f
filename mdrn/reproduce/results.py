"""Where the artefacts live and how they are read and written: paths, CSV/Markdown, published values."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
#: where runs record their outputs and renders write the artefacts
RESULTS = Path(os.environ.get("MDRN_RESULTS", EXPERIMENTS / "results"))
PUBLISHED = EXPERIMENTS / "published.json"
SETS = ("Set5", "Set14", "B100", "Urban100")
SCALES = (2, 3, 4)
#: the folder of benchmark sets on this machine, as the make targets spell it
DATA_HINT = "DIR"

#: a shipped model's name -> the recorded training run (``conf/experiment/<run>.yaml``,
#: ``results/models/<run>.safetensors``) whose weights it is; the card's scores are in ``results/<run>/``
SHIPPED_RUNS = {"mdrn_small": "mdrn_small_v2", "mdrn_small_v1": "mdrn_small"}

NOT_RUN_DATA = "not run here (data not available)"
NOT_YET_RUN = "not yet run (`make table1` runs it)"


def shipped_run(name: str) -> str:
    """The recorded training run of a shipped model (``SHIPPED_RUNS``; else the run of its own name)."""
    return SHIPPED_RUNS.get(name, name)


# ------------------------------------------------------------------------------------------ files


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (overwriting: renders are regenerated)."""
    from mdrn.io.images import atomic_write

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
    seen: dict[tuple, str | os.PathLike[str]] = {}  # a row's key -> the file it came from
    for path in paths:
        for row in read_csv(path):
            missing = {"set", "scale", "psnr", "ssim"} - set(row)
            if missing:
                raise ValueError(f"{path}: not a score CSV (missing columns {sorted(missing)})")
            key = (row["set"], int(row["scale"]))
            where = (*key, row["image"]) if "image" in row else key
            if where in seen:  # counted twice, the mean would silently change
                what = f"image {where[2]} of " if len(where) == 3 else ""
                raise ValueError(f"{path}: {what}{key[0]} x{key[1]} is scored again (also in {seen[where]})")
            seen[where] = path
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


def partial_set(dataset: str, images: int) -> str | None:
    """Why a set's mean is not the set's: ``"partial: 3 of 5 images"``, or None (whole, or size unknown).

    The expected counts are the catalog's (:data:`mdrn.data.catalog.DATASETS`: Set5 5, Set14 14, B100 100,
    Urban100 100); a mean over an unknown number of images (``images`` 0, an averaged CSV) is not judged.
    """
    from mdrn.data.catalog import DATASETS

    known = DATASETS.get(dataset)
    if known is None or not known.images or not images or images == known.images:
        return None
    return f"partial: {images} of {known.images} images"


def load_published(path: str | os.PathLike[str] = PUBLISHED) -> dict[str, Any]:
    """Return the published figures (``experiments/published.json``)."""
    return json.loads(Path(path).read_text())


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return a GitHub Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in rows:
        out.append("| " + " | ".join("" if c is None else str(c) for c in row) + " |")
    return "\n".join(out) + "\n"


def fmt_num(value: float | None, digits: int) -> str:
    """Markdown number or an em dash."""
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def fmt_diff(ours: float | None, pub: float | None, digits: int) -> str:
    """Signed difference ours - published, or an em dash."""
    if ours is None or pub is None:
        return "—"
    return f"{ours - pub:+.{digits}f}"


# ------------------------------------------------------------------------------- per-image helpers


def per_image(path: str | os.PathLike[str]) -> dict[tuple[str, int, str], tuple[float, float]]:
    """Per-image scores ``(set, scale, image stem) -> (psnr, ssim)`` of an evaluate CSV."""
    return {
        (r["set"], int(r["scale"]), Path(r["image"]).stem): (float(r["psnr"]), float(r["ssim"]))
        for r in read_csv(path)
    }


def optional_per_image(path: Path) -> dict[tuple[str, int, str], tuple[float, float]]:
    """Per-image scores of ``path`` or an empty dict if that run has not happened."""
    return per_image(path) if path.is_file() else {}


def image_facts(results: Path) -> dict[str, dict[str, Any]]:
    """The medical images' descriptions and bit depths recorded beside Table 2 (empty if absent)."""
    path = results / "table2" / "images.json"
    return json.loads(path.read_text()) if path.is_file() else {}
