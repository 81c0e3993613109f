"""Which images the presets saw, which images the project reports scores on, and their content compared.

A preset *saw* the images of its training and validation sources; the project *reports* scores on the
benchmark sets (Table 1: Set5, Set14, B100, Urban100, wherever they are on this machine), the medical
images of Table 2 and Figs. 8-16 (``experiments/scripts/medical_images.py``), the sample data's test
splits (the model card) and every preset's own test sources. :func:`check_leakage` compares every seen
image of every preset (every recipe in ``conf/experiment``, every recorded run's config in
``results/train/``, and so every shipped model) with every reported image by content
(:func:`mdrn.data.overlap.find_overlaps`: robust to resizing, cropping, mirroring and quarter
turns), not by name.
Sources that are not on this machine (DIV2K, Set14, ...) are listed as not checked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdrn.data.overlap import DEFAULT_THRESHOLD, OverlapReport, find_overlaps
from mdrn.reproduce.record import RECIPES
from mdrn.reproduce.results import RESULTS, ROOT, SETS

__all__ = ["LeakageReport", "check_leakage", "preset_data", "reported_sets", "source_images"]


@dataclass
class LeakageReport:
    """The comparison and what it covered."""

    overlap: OverlapReport
    seen: dict[str, list[str]] = field(default_factory=dict)  # image -> the presets (and stages) that saw it
    reported: dict[str, list[str]] = field(default_factory=dict)  # image -> the sets that report it
    not_checked: list[str] = field(default_factory=list)  # sources not on this machine

    def describe(self) -> str:
        """The report: what was compared, every flagged pair with the presets and sets, the closest other.

        Paths are shown relative to the repository (``../shared/...``).
        """
        lines = [
            f"{len(self.seen)} images seen in training or validation by the presets, "
            f"{len(self.reported)} images of reported evaluation sets"
        ]
        for m in self.overlap.matches:
            a, b = (
                (str(m.whole), str(m.inside)) if str(m.whole) in self.seen else (str(m.inside), str(m.whole))
            )
            lines.append(
                f"SAME CONTENT: {m.describe(_show)}\n    seen by {', '.join(self.seen.get(a, []))}; "
                f"reported in {', '.join(self.reported.get(b, []))}"
            )
        lines.append(self.overlap.describe(_show))
        if self.not_checked:
            lines.append("not on this machine, not checked: " + "; ".join(self.not_checked))
        return "\n".join(lines)


def _show(path: Path) -> str:
    """A path relative to the repository root."""
    return os.path.relpath(path, ROOT)


def _path(p: str) -> Path:
    """A configured path, relative ones from the repository root (as the make targets run)."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else ROOT / path


def preset_data(results: Path = RESULTS, recipes: Path = RECIPES) -> dict[str, dict[str, list[dict]]]:
    """``{label: {"train": [...], "val": [...], "test": [...]}}`` of every recipe and recorded run config.

    Labels: ``recipe <name>`` (``conf/experiment/<name>.yaml`` composed as ``python -m mdrn.train`` does)
    and ``recorded <name>`` (``results/train/<name>_config.yaml``: what the recorded run trained on).
    Interpolations resolve with this process's environment (``MDRN_SHARED``).
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    configs: dict[str, Any] = {}
    with initialize_config_dir(config_dir=str(recipes.parent.resolve()), version_base="1.3"):
        for path in sorted(recipes.glob("*.yaml")):
            configs[f"recipe {path.stem}"] = compose(
                config_name="train", overrides=[f"experiment={path.stem}"]
            )
    for path in sorted((results / "train").glob("*_config.yaml")):
        configs[f"recorded {path.name.removesuffix('_config.yaml')}"] = OmegaConf.load(path)
    out = {}
    for label, cfg in configs.items():
        data = cfg.get("data") or {}
        out[label] = {
            stage: list(OmegaConf.to_container(data.get(stage), resolve=True) if data.get(stage) else [])
            for stage in ("train", "val", "test")  # an empty list in a config is falsy: no sources
        }
    return out


def source_images(src: Mapping[str, Any], data_dir: Path) -> list[Path] | None:
    """The image files of a data source on this machine (None where its data are not here)."""
    from mdrn.data.datamodule import resolve_source
    from mdrn.data.sources import DataNotFoundError

    src = dict(src)
    if src.get("path") is not None:
        src["path"] = str(_path(str(src["path"])))
    try:
        return resolve_source(src, data_dir, (2,))[0]
    except (DataNotFoundError, FileNotFoundError):
        return None


def reported_sets(data_dir: Path, medical_dir: Path | None, shared: Path) -> dict[str, list[Path]]:
    """The evaluation sets the project reports that are on this machine: ``{set name: files}``.

    The benchmark sets (``shared/datasets/<set>``, ``data_dir/benchmark/<set>``), the sample data's test
    splits and the medical images (``medical_dir/Medical_8bit``, ``Medical_10to16bit``).
    """
    from mdrn.data.sources import list_images, sample_files

    out: dict[str, list[Path]] = {}
    for name in SETS:
        for root in (shared / "datasets", data_dir / "benchmark"):
            if (root / name).is_dir():
                out.setdefault(name, [])
                out[name] += [f for f in list_images(root / name) if f not in out[name]]
    for split in ("test_8bit", "test_16bit"):
        out[f"sample_{split}"] = sample_files(data_dir, split)
    if medical_dir is not None:
        for name in ("Medical_8bit", "Medical_10to16bit"):
            if (medical_dir / name).is_dir():
                out[name] = list_images(medical_dir / name)
    return out


def check_leakage(
    *,
    data_dir: Path,
    medical_dir: Path | None,
    shared: Path,
    presets: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LeakageReport:
    """Compare every image the presets saw (training, validation) with every reported evaluation image.

    ``presets`` defaults to :func:`preset_data` (every recipe and recorded run); the reported images are
    :func:`reported_sets` plus every preset's test sources that are on this machine.
    """
    presets = preset_data() if presets is None else presets
    report = LeakageReport(overlap=OverlapReport(threshold=threshold))
    reported_here = reported_sets(data_dir, medical_dir, shared)
    reported_names = set(reported_here)
    for label, files in reported_here.items():
        for f in files:
            report.reported.setdefault(str(f), []).append(label)
    cache: dict[str, list[Path] | None] = {}
    missing: set[str] = set()
    for label, stages in presets.items():
        for stage, sources in stages.items():
            for src in sources:
                key = json.dumps(src, sort_keys=True, default=str)
                if key not in cache:
                    cache[key] = source_images(src, data_dir)
                files = cache[key]
                if files is None:
                    missing.add(f"{src.get('name')} ({src.get('kind', 'folder')})")
                    continue
                target = report.reported if stage == "test" else report.seen
                for f in files:
                    users = target.setdefault(str(f), [])
                    what = f"{src.get('name')}" if stage == "test" else f"{label} ({stage})"
                    if what not in users:
                        users.append(what)
    # a missing test source whose set is reported from elsewhere (Set5 in ../shared) is checked there
    report.not_checked = sorted(m for m in missing if m.split(" (")[0] not in reported_names)
    report.overlap = find_overlaps(report.seen, report.reported, threshold=threshold, cache_dir=cache_dir)
    return report
