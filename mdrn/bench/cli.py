"""The ``mdrn-bench`` command line (``python -m mdrn.bench``, ``make bench``)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import mdrn.bench as _package
from mdrn.bench.core import RESULTS
from mdrn.bench.goals import recorded_runs
from mdrn.bench.report import readme_markdown, table_markdown, write_results
from mdrn.bench.run import OPT_IN_SECTIONS, SECTIONS, default_sections, run_bench
from mdrn.perf import resolve_device


def main(argv: list[str] | None = None) -> int:
    """Command line: run the bench, print the table and total time, write the results."""
    parser = argparse.ArgumentParser(prog="mdrn-bench", description=(_package.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for tests)")
    parser.add_argument("--only", default=None, help=f"comma-separated sections of {','.join(SECTIONS)}")
    opt_in = ", ".join(OPT_IN_SECTIONS)
    parser.add_argument("--all", action="store_true", help=f"every section: also the opt-in ones ({opt_in})")
    parser.add_argument(
        "--out", default=None, help=f"output folder (default {RESULTS}; --quick: a temp folder)"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--overwrite", action="store_true", help="replace today's files instead of -2, -3...")
    parser.add_argument("--no-readme", action="store_true", help="do not regenerate README.md")
    parser.add_argument("--readme-from", default=None, help="only regenerate README.md from a recorded .json")
    args = parser.parse_args(argv)
    if args.readme_from:
        src = Path(args.readme_from)
        result = {**json.loads(src.read_text()), "_source": src.name}
        from mdrn.io.images import atomic_write

        dest = Path(args.out or src.parent) / "README.md"
        text = readme_markdown(result, recorded_runs(src.parent))
        atomic_write(dest, lambda p: p.write_text(text), overwrite=True)
        print(f"wrote {dest}")
        return 0
    only = [s.strip() for s in args.only.split(",")] if args.only else (list(SECTIONS) if args.all else None)
    t0 = time.perf_counter()
    result = run_bench(quick=args.quick, only=only, device=args.device)
    print()
    print(table_markdown(result))
    out = (
        Path(args.out)
        if args.out
        else (Path(tempfile.mkdtemp(prefix="mdrn-bench-")) if args.quick else RESULTS)
    )
    defaults = default_sections(resolve_device(args.device))
    complete = set(defaults) <= set(only or defaults)
    md, js = write_results(result, out, overwrite=args.overwrite, readme=complete and not args.no_readme)
    print(f"wrote {md} and {js}")
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0
