"""The data sets the configs use: where each lives under the data folder, its archive, and the message
that tells how to get whatever is missing (``python -m mdrn.data``).

One folder layout under the data folder (``paths.data_dir``: ``$MDRN_DATA``, else ``./data``)::

    downloads/                     archives, downloaded or put there by hand (checked by sha256)
    DIV2K/DIV2K_train_HR/          0001.png ... 0800.png
    DIV2K/DIV2K_valid_HR/          0801.png ... 0900.png
    benchmark/<set>/HR/            Set5, Set14, B100, Urban100
    BSD200/                        the 200 BSDS300 training images (PNG, decoded from the archive's JPEGs)
    sample/                        the embedded sample data (written on first use, no download)
    cache/                         decoded images (rebuilt when missing)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ARCHIVES",
    "BENCHMARK_URL",
    "BSDS300_SHA256",
    "BSDS300_URL",
    "DATASETS",
    "GROUPS",
    "Archive",
    "DataNotFoundError",
    "DataSet",
    "default_data_dir",
    "expand_names",
    "format_size",
    "group_names",
    "missing_message",
]

FACTS = json.loads((Path(__file__).with_name("downloads.json")).read_text())
#: EDSR-PyTorch's benchmark archive (Set5, Set14, B100, Urban100 as benchmark/<set>/HR/*.png)
BENCHMARK_URL = "https://cv.snu.ac.kr/research/EDSR/benchmark.tar"
#: the Berkeley Segmentation Dataset's images at their canonical address (BSDS300: 200 train JPEGs in
#: BSDS300/images/train, and the 100 test images, which are B100 and never used for training); its sha256
#: as pinned by a public download script of another project (not re-checked here: no network)
BSDS300_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz"
BSDS300_SHA256 = "a5f7d0e49fe135c75518a3543ced24470156fd69305ae77845dff2a5138652b4"


@dataclass(frozen=True)
class Archive:
    """A downloadable archive: its address, size and sha256 (None where no checksum is published)."""

    url: str
    bytes: int | None = None
    sha256: str | None = None

    @property
    def file(self) -> str:
        """The archive's file name (its name in ``<data>/downloads/``)."""
        return self.url.rsplit("/", 1)[-1]


#: every archive by file name: DIV2K's (sizes and sha256 from tensorflow-datasets) and EDSR's benchmarks
ARCHIVES: dict[str, Archive] = {
    a.file: a
    for a in [Archive(d["url"], int(d["bytes"]), d["sha256"]) for d in FACTS["div2k"]]
    + [Archive(BENCHMARK_URL), Archive(BSDS300_URL, None, BSDS300_SHA256)]
}


@dataclass(frozen=True)
class DataSet:
    """One data set of the configs: its name on the command line, its folder, archive and users."""

    name: str
    title: str
    folder: str  # relative to the data folder
    images: int  # expected number of images (0: any)
    archive: str | None  # file name in ARCHIVES; None: embedded, nothing to download
    used_by: str


DATASETS: dict[str, DataSet] = {
    d.name: d
    for d in [
        DataSet("div2k_train", "DIV2K train HR 0001-0800", "DIV2K/DIV2K_train_HR", 800, "DIV2K_train_HR.zip",
                "data=div2k train"),
        DataSet("div2k_valid", "DIV2K valid HR 0801-0900", "DIV2K/DIV2K_valid_HR", 100, "DIV2K_valid_HR.zip",
                "data=div2k val"),
        DataSet("Set5", "Set5 HR", "benchmark/Set5", 5, "benchmark.tar", "data=div2k test, evaluate"),
        DataSet("Set14", "Set14 HR", "benchmark/Set14", 14, "benchmark.tar", "data=div2k test, evaluate"),
        DataSet("B100", "B100 HR", "benchmark/B100", 100, "benchmark.tar", "data=div2k test, evaluate"),
        DataSet("Urban100", "Urban100 HR", "benchmark/Urban100", 100, "benchmark.tar",
                "data=div2k test, evaluate"),
        DataSet("BSD200", "BSDS300 train images (200; its 100 test images are B100)", "BSD200", 200,
                "BSDS300-images.tgz", "data source kind: bsd200"),
        DataSet("sample", "sample data: skimage photos, retina, pydicom CT/MR", "sample", 0, None,
                "data=sample, quickstart"),
    ]
}  # fmt: skip
#: names standing for several data sets on the command line
GROUPS: dict[str, tuple[str, ...]] = {
    "div2k": ("div2k_train", "div2k_valid"),
    "benchmarks": ("Set5", "Set14", "B100", "Urban100"),
    "all": tuple(DATASETS),
}


def default_data_dir() -> Path:
    """The configs' default data folder: ``$MDRN_DATA``, else ``$MDRN_ROOT/data``, else ``./data``."""
    if os.environ.get("MDRN_DATA"):
        return Path(os.environ["MDRN_DATA"])
    return Path(os.environ.get("MDRN_ROOT", ".")) / "data"


def expand_names(names: Iterable[str]) -> list[str]:
    """Names with groups (div2k, benchmarks, all) expanded, in catalog order; ValueError if unknown."""
    wanted: set[str] = set()
    for n in names:
        if n in GROUPS:
            wanted.update(GROUPS[n])
        elif n in DATASETS:
            wanted.add(n)
        else:
            raise ValueError(f"unknown data set {n!r}; known: {', '.join([*DATASETS, *GROUPS])}")
    return [n for n in DATASETS if n in wanted]


def group_names(names: Sequence[str]) -> list[str]:
    """``names`` with complete groups written as the group's name (for a suggested command)."""
    out = list(names)
    for group in ("div2k", "benchmarks"):
        members = GROUPS[group]
        if all(m in out for m in members):
            at = out.index(members[0])
            out = [n for n in out if n not in members]
            out.insert(at, group)
    return out


def format_size(n: int | None) -> str:
    """Bytes as a short human-readable size ("?" when unknown)."""
    if n is None:
        return "?"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n} B"


def missing_message(
    root: str | os.PathLike[str] | None,
    names: Sequence[str] = (),
    details: Sequence[str] = (),
    reason: str | None = None,
) -> str:
    """The one message telling what is missing, the command that gets it, and the archives to fetch by hand.

    ``names``: catalog data sets that are missing; ``details``: other problems, one line each (a folder
    that does not exist); ``reason``: why a download failed (no network...).
    """
    lines = list(dict.fromkeys(details))
    names = [n for n in DATASETS if n in set(names)]
    if not names:
        return "\n".join(lines)
    where = Path(root).resolve() if root is not None else default_data_dir().resolve()
    lines.append(f"Missing under {where}: " + ", ".join(f"{n} ({DATASETS[n].title})" for n in names) + ".")
    lines.append(f"Get them:  python -m mdrn.data download {' '.join(group_names(names))} --root {where}")
    archives = list(dict.fromkeys(DATASETS[n].archive for n in names if DATASETS[n].archive))
    if archives:
        why = (reason or "").rstrip(".")
        head = f"{why[:1].upper()}{why[1:]}. Without network, put" if reason else "Without network, put"
        lines.append(
            f"{head} these archives in {where / 'downloads'}/ and run the same command "
            "(it checks and extracts them):"
        )
        for file in archives:
            a = ARCHIVES[file]
            if a.sha256:
                check = (f"{a.bytes:,} bytes, " if a.bytes else "") + f"sha256 {a.sha256}"
            else:
                check = "no published sha256: each image is checked by the sha256 of its decoded pixels"
            lines.append(f"  {a.url}  ({check})")
    lines.append(f"`python -m mdrn.data status --root {where}` lists what is present.")
    return "\n".join(lines)


class DataNotFoundError(FileNotFoundError):
    """A data set is absent and cannot be downloaded; the message says what to get and where to put it.

    ``missing`` names catalog data sets (``DATASETS``), ``details`` other problems; ``merge`` makes one
    error (one message) of several, so that a run names everything it lacks at once.
    """

    def __init__(
        self,
        detail: str | None = None,
        *,
        missing: Sequence[str] = (),
        root: str | os.PathLike[str] | None = None,
        reason: str | None = None,
    ) -> None:
        self.missing = tuple(missing)
        self.details = (detail,) if detail else ()
        self.root = Path(root) if root is not None else None
        self.reason = reason
        super().__init__(missing_message(self.root, self.missing, self.details, reason))

    def __str__(self) -> str:
        return str(self.args[0])

    @classmethod
    def merge(
        cls, errors: Sequence[DataNotFoundError], root: str | os.PathLike[str] | None = None
    ) -> DataNotFoundError:
        """One error naming everything ``errors`` name (``root``: the data folder, else the first known)."""
        if root is None:
            root = next((e.root for e in errors if e.root is not None), None)
        err = cls(
            missing=[n for e in errors for n in e.missing],
            root=root,
            reason=next((e.reason for e in errors if e.reason), None),
        )
        err.details = tuple(dict.fromkeys(d for e in errors for d in e.details))
        err.args = (missing_message(err.root, err.missing, err.details, err.reason),)
        return err
