"""``python -m mdrn.data`` (``mdrn-data``): what data is present, and getting what is missing.

::

    python -m mdrn.data status [--root DIR]            # every data set the configs use: present or missing
    python -m mdrn.data download NAME... [--root DIR]  # div2k, div2k_train, div2k_valid, benchmarks,
                                                       # Set5, Set14, B100, Urban100, BSD200, sample, all

``--root`` is the data folder (default: ``$MDRN_DATA``, else ``./data``, as ``paths.data_dir``); its
layout is in :mod:`mdrn.data.catalog`. Downloads are sha256-checked and resumable; an archive put in
``<root>/downloads/`` by hand is checked and extracted without network. Without network the command
exits with status 1 and one message naming every missing archive, its address and sha256.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mdrn.data.catalog import (
    ARCHIVES,
    DATASETS,
    GROUPS,
    DataNotFoundError,
    DataSet,
    default_data_dir,
    expand_names,
    format_size,
    group_names,
)
from mdrn.data.sources import (
    SAMPLE_SPLITS,
    benchmark_files,
    bsd200_files,
    div2k_files,
    list_images,
    prepare_benchmarks,
    prepare_bsd200,
    prepare_div2k,
    prepare_sample,
)
from mdrn.io.download import ChecksumError, UnsafeArchiveError

__all__ = ["Status", "download", "main", "status"]


@dataclass(frozen=True)
class Status:
    """Whether a data set is on disk: ``state`` is present, missing or ``on first use`` (sample data)."""

    dataset: DataSet
    state: str
    images: int = 0
    bytes: int = 0


def _files(ds: DataSet, root: Path) -> list[Path]:
    """The data set's images under ``root`` (DataNotFoundError if absent or incomplete)."""
    if ds.name.startswith("div2k_"):
        return div2k_files(root, ds.name.removeprefix("div2k_"))
    if ds.archive == "benchmark.tar":
        return benchmark_files(root / "benchmark", ds.name)
    if ds.name == "BSD200":
        return bsd200_files(root)
    if not (root / ds.folder / ".complete").exists():
        raise DataNotFoundError(f"{root / ds.folder} is written on first use")
    return list_images(root / ds.folder / SAMPLE_SPLITS["train"]) + list_images(
        root / ds.folder / SAMPLE_SPLITS["test"]
    )


def status(root: str | Path | None = None) -> list[Status]:
    """The state of every data set of the catalog under the data folder ``root``."""
    root = Path(root) if root is not None else default_data_dir()
    out = []
    for ds in DATASETS.values():
        try:
            files = _files(ds, root)
        except DataNotFoundError:
            out.append(Status(ds, "missing" if ds.archive else "on first use"))
            continue
        out.append(Status(ds, "present", len(files), sum(f.stat().st_size for f in files)))
    return out


def _print_status(root: Path) -> int:
    """Print the status table; return the number of missing data sets."""
    rows = status(root)
    print(f"data folder {root.resolve()}  (archives go to {root.resolve() / 'downloads'}/)")
    header = ("name", "state", "images", "size", "used by", "address")
    table = [header]
    for r in rows:
        ds = r.dataset
        if r.state == "present":
            size, images = format_size(r.bytes), str(r.images)
        elif ds.archive:
            n = ARCHIVES[ds.archive].bytes
            size, images = (f"{format_size(n)} to download" if n else "size not recorded"), "-"
        else:
            size, images = "-", "-"
        source = ARCHIVES[ds.archive].url if ds.archive else "embedded (scikit-image, pydicom): no download"
        table.append((ds.name, r.state, images, size, ds.used_by, source))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    missing = [r.dataset.name for r in rows if r.state == "missing"]
    if missing:
        names = " ".join(group_names(missing))
        print(
            f"{len(missing)} missing; get them: python -m mdrn.data download {names} --root {root.resolve()}"
        )
    else:
        print("all data sets present")
    return len(missing)


def download(names: Sequence[str], root: str | Path | None = None) -> list[Status]:
    """Download (sha256-checked, resumable), verify and extract the named data sets; return their status.

    Every data set is tried; one :class:`DataNotFoundError` then names all that could not be had. After
    a failed download no other is tried over the network (archives already in ``downloads/`` still are).
    """
    root = Path(root) if root is not None else default_data_dir()
    wanted = expand_names(names)
    present = {s.dataset.name for s in status(root) if s.state == "present"}
    errors: list[DataNotFoundError] = []
    offline = False

    def attempt(missing: list[str], fetch) -> None:  # noqa: ANN001 - a callable without arguments
        nonlocal offline
        archive = DATASETS[missing[0]].archive
        if offline and archive and not (root / "downloads" / archive).exists():
            errors.append(DataNotFoundError(missing=missing, root=root, reason=errors[-1].reason))
            return
        print(f"mdrn.data: getting {', '.join(missing)} ...", flush=True)
        try:
            fetch()
        except DataNotFoundError as exc:
            errors.append(exc)
            offline |= exc.reason is not None

    for name in wanted:
        if name in present or DATASETS[name].archive == "benchmark.tar":
            continue
        if name == "sample":
            prepare_sample(root)
        elif name == "BSD200":
            attempt([name], lambda: prepare_bsd200(root))
        else:
            attempt([name], lambda name=name: prepare_div2k(root, splits=(name.removeprefix("div2k_"),)))
    sets = [n for n in wanted if DATASETS[n].archive == "benchmark.tar" and n not in present]
    if sets:
        attempt(sets, lambda: prepare_benchmarks(root / "benchmark", sets, downloads=root / "downloads"))
    if errors:
        raise DataNotFoundError.merge(errors, root=root)
    return [s for s in status(root) if s.dataset.name in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m mdrn.data``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mdrn.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="list every data set the configs use, present or missing")
    dl = sub.add_parser("download", help="download, verify and extract data sets")
    dl.add_argument("names", nargs="+", metavar="NAME", help=f"one of {', '.join([*DATASETS, *GROUPS])}")
    for p in (st, dl):
        p.add_argument(
            "--root", type=Path, default=None, help="the data folder (default: $MDRN_DATA or ./data)"
        )
    args = parser.parse_args(argv)
    root = args.root if args.root is not None else default_data_dir()
    if args.command == "status":
        _print_status(root)
        return 0
    try:
        expand_names(args.names)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        done = download(args.names, root)
    except (DataNotFoundError, ChecksumError, UnsafeArchiveError, ValueError) as exc:
        print(f"mdrn.data: {exc}", file=sys.stderr)
        return 1
    for s in done:
        size = format_size(s.bytes)
        print(f"{s.dataset.name}: {s.state}, {s.images} images ({size}), {root / s.dataset.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
