"""The paper's tables and figures, rendered from the recorded runs in ``experiments/results/``.

Every artefact is rendered from files that runs wrote (per-image score CSVs of ``python -m
mdrn.evaluate``, training logs, timing CSVs), never from numbers typed in here; the published values
come from ``experiments/published.json`` (a copy of ``../shared/reference/published.json``). Each
render writes a CSV, a Markdown table and PNG figures beside the inputs, with the published value, our
value and their difference side by side. A cell whose run has not happened says so, with the command
that fills it.

Commands::

    python -m mdrn.reproduce table1            # or table2, fig8, figs10_14, figs15_16, claims, all
    python -m mdrn.reproduce record OUT -- CMD  # run CMD; command/machine/date/duration -> OUT.run.json
    python -m mdrn.reproduce train PRESET [OVERRIDES]   # record python -m mdrn.train experiment=PRESET
    python -m mdrn.reproduce params             # the parameter-count claim (exact counts from the models)
    python -m mdrn.reproduce note OUT [--selection PRESET] -- TEXT   # a dated note added to OUT.run.json
    python -m mdrn.reproduce peers [OPTIONS]    # the peers table: scores what is missing, then renders
    python -m mdrn.reproduce inputs             # recorded outputs whose weights changed since (exit 1)

Runs are launched by the ``make`` targets of ``experiments/experiments.mk``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mdrn.reproduce.claims import render_claims, render_params
from mdrn.reproduce.fig8 import render_fig8
from mdrn.reproduce.figs10_14 import render_figs10_14
from mdrn.reproduce.figs15_16 import render_figs15_16
from mdrn.reproduce.peers import main as peers_main
from mdrn.reproduce.record import add_note, changed_inputs, record, train_preset
from mdrn.reproduce.results import RESULTS
from mdrn.reproduce.table1 import render_table1
from mdrn.reproduce.table2 import render_table2

RENDERERS: dict[str, Callable[..., dict[str, Path]]] = {
    "table1": render_table1,
    "table2": render_table2,
    "fig8": render_fig8,
    "figs10_14": render_figs10_14,
    "figs15_16": render_figs15_16,
    "claims": render_claims,
    "params": render_params,
}


def render(name: str, results: Path = RESULTS) -> dict[str, Path]:
    """Render artefact ``name`` (a key of ``RENDERERS``, or ``all``) from the recorded runs."""
    if name == "all":
        out: dict[str, Path] = {}
        for key, fn in RENDERERS.items():
            try:
                out.update({f"{key}.{k}": v for k, v in fn(results).items()})
            except FileNotFoundError as exc:
                print(f"{key}: skipped ({exc})", file=sys.stderr)
        return out
    if name not in RENDERERS:
        raise ValueError(f"unknown artefact {name!r}; known: {sorted(RENDERERS)} or 'all'")
    return RENDERERS[name](results)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: render an artefact, or record a run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["record"]:
        if "--" not in argv or argv.index("--") != 2:
            print("usage: python -m mdrn.reproduce record OUTPUT -- COMMAND...", file=sys.stderr)
            return 2
        return record(argv[1], argv[3:])
    if argv[:1] == ["note"]:
        if "--" not in argv or argv.index("--") not in (2, 4) or argv.index("--") == len(argv) - 1:
            print("usage: python -m mdrn.reproduce note OUTPUT [--selection PRESET] -- TEXT", file=sys.stderr)
            return 2
        sep = argv.index("--")
        preset = argv[3] if sep == 4 and argv[2] == "--selection" else None
        if sep == 4 and preset is None:
            print("usage: python -m mdrn.reproduce note OUTPUT [--selection PRESET] -- TEXT", file=sys.stderr)
            return 2
        kind = "selection" if preset else "note"
        print(add_note(argv[1], " ".join(argv[sep + 1 :]), kind=kind, preset=preset))
        return 0
    if argv[:1] == ["peers"]:
        return peers_main(argv[1:])
    if argv[:1] == ["inputs"]:
        changed = changed_inputs(Path(argv[1]) if len(argv) > 1 else RESULTS)
        print("\n".join(changed) or "every recorded output's weights are the files it read")
        return 1 if changed else 0
    if argv[:1] == ["train"]:
        if len(argv) < 2:
            print("usage: python -m mdrn.reproduce train EXPERIMENT [HYDRA_OVERRIDES...]", file=sys.stderr)
            return 2
        return train_preset(argv[1], argv[2:])
    parser = argparse.ArgumentParser(
        prog="python -m mdrn.reproduce",
        description=__doc__.replace("::", ":").replace("``", "`"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("artefact", choices=sorted(RENDERERS) + ["all"])
    parser.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for key, path in render(args.artefact, args.results).items():
        print(f"{key}: {path}")
    md = args.results / f"{args.artefact}.md"
    if md.is_file():
        print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
