"""The benchmark: every hot path of mdrn against the naive way and against the machine's limits, in one run.

``python -m mdrn.bench`` (or ``mdrn-bench``, ``make bench``) prints one table and writes it to
``experiments/results/bench/<machine>-<date>.md`` and ``.json`` (a GPU run: ``<gpu>-<date>``, e.g.
``h100-2026-12-01``; rows ``{"name", "ours", "baseline", "unit", "ratio"}`` plus the machine), and
regenerates ``experiments/results/bench/README.md`` (the
projection of the paper's training schedule onto H100s) from the measured JSON.

Method: in every row ours and the baseline run in the same process (the tiled-inference rows: in two
worker processes, one per variant, so that each has its own peak RSS), alternating A B B A ..., after
warm-up; a row reports the median of its repeats and ``ratio = ours / baseline`` of the reported figures
(``better`` says whether higher or lower is better). ``--quick`` runs everything on tiny sizes in
seconds (for tests); its figures say nothing about speed. FLOPs are counted from the layer shapes
(:func:`mdrn.perf.count_flops`), never estimated from the time.
"""

from __future__ import annotations

from mdrn.bench.cli import main
from mdrn.bench.core import PAPER_MODEL, PAPER_SCHEDULE, Row, Sizes, alternate, make_row
from mdrn.bench.report import projection_markdown, table_markdown, write_results
from mdrn.bench.run import DEFAULT_SECTIONS, SECTIONS, machine_info, run_bench

__all__ = [
    "DEFAULT_SECTIONS",
    "PAPER_MODEL",
    "PAPER_SCHEDULE",
    "SECTIONS",
    "Row",
    "Sizes",
    "alternate",
    "machine_info",
    "main",
    "make_row",
    "projection_markdown",
    "run_bench",
    "table_markdown",
    "write_results",
]
