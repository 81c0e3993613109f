"""The peers table: every model mdrn can load, scored in one protocol on natural and medical test sets.

    make peers [PEERS_DIR=folder] [PEERS_EXTRA="name ..."]
    python -m mdrn.reproduce peers [--dir FOLDER] [--models NAME ...] [--windows none percentile] [--rescore]

Rows: bicubic, the shipped models (``mdrn.weights.SHIPPED_MODELS``), the public lightweight models
(``mdrn.models.peers.PEER_WEIGHTS``: the authors' files, read from ``--peer-files`` (default
``<shared>/peers``) when there, their sha256 checked against the pin, else downloaded by name), any name
given with ``--models``, and every file in ``--dir``. Each is loaded by ``mdrn.weights.load_model``; one
it refuses is a row "not loaded: <reason>". Sets: Set5, Set14, B100 and Urban100 wherever one of the
``--natural`` folders holds them (default: ``<shared>/datasets`` and ``data/benchmark``), the medical
images of Table 2 (``--medical``, 8 bit and 10-16 bit) and the sample data's held-out test split (8 and
16 bit); x2/x3/x4 as each model serves them. Every score comes from a recorded ``python -m
mdrn.evaluate`` run (``results/peers/<row>_<group>_<window>.csv`` with ``.run.json`` and ``.log``): the LR
is the MATLAB-bicubic degradation quantized to the image's bit depth, the whole image goes through the
network (gray images through the RGB planes of an RGB model: replicated in, averaged out), scored by
``mdrn.protocol.metrics.score`` at the image's own bit depth. A recorded run is reused while its command
(machine paths compared by name) and the model file's sha256 are unchanged (``--rescore`` runs
everything again).

Intensity normalisation (``--windows``, ``eval.window`` of ``mdrn.evaluate``; default ``none`` and
``percentile``): each window is applied to every row, one section of the table each (``auto``, each
model's own recorded rule, is offered and said to be mixed). Parameters are the network's; multiply-adds
are those of its convolutions and linear layers per output pixel, counted by ``mdrn.perf.count_flops``
for a 1280x720 output. Writes ``results/peers.md`` and ``results/peers.csv``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from mdrn.data.catalog import DataNotFoundError
from mdrn.data.sources import benchmark_files, prepare_sample
from mdrn.io.download import sha256_file
from mdrn.models import Bicubic, model_spec
from mdrn.models.peers import PEER_WEIGHTS
from mdrn.models.window import WindowRule, rule_of
from mdrn.perf import count_flops
from mdrn.reproduce.record import public_command, record, run_info
from mdrn.reproduce.results import (
    RESULTS,
    ROOT,
    SCALES,
    SETS,
    load_published,
    markdown_table,
    mean_scores,
    write_csv,
    write_text,
)
from mdrn.weights import SHIPPED_MODELS, load_model, shipped_path

__all__ = ["PeerRow", "main", "render_peers", "resolve_rows", "score_rows"]

SHARED = Path(os.environ.get("MDRN_SHARED", ROOT.parent / "shared"))
#: the output size multiply-adds are counted for (the papers' convention: a 720p output)
OUTPUT_SIZE = (720, 1280)
#: held-out medical groups: (file stem, sets, how the table names each set)
MEDICAL_SETS = {"Medical_8bit": "Table 2 medical, 8 bit", "Medical_10to16bit": "Table 2 medical, 10-16 bit"}
SAMPLE_SETS = {"8bit": "sample test, 8 bit", "16bit": "sample test, 16 bit"}
#: the intensity windows the table can apply (``eval.window`` of ``mdrn.evaluate``)
WINDOWS = ("none", "percentile", "auto")


def window_statement(window: str, rows: Sequence[PeerRow] = ()) -> str:
    """How the images were fed to the networks under ``window`` (the table's statement)."""
    if window == "none":
        return "none, for every row: each image fed as it is, scaled to [0, 1] by its own bit depth"
    if window == "percentile":
        rule = WindowRule.parse("percentile")
        return (
            f"one rule forced on every row: each LR image mapped so that its {rule.low:g}th..{rule.high:g}th "
            f"percentiles span [0, 1] (width at least 1/{1 / rule.min_width:.0f}) before the network, the "
            "output mapped back exactly (`mdrn.models.window`, `eval.window=percentile`)"
        )
    own = [f"{r.key} ({rule_of(r.net).mode})" for r in rows if r.net is not None and rule_of(r.net).active]
    return (
        "each row's own recorded rule (`eval.window=auto`), not one rule for every row: "
        f"{', '.join(own) if own else 'no row has one, so none for every row'}; the others none"
    )


@dataclass
class PeerRow:
    """One row of the table: a model to score (or the reason it could not be loaded)."""

    key: str  # file-name-safe row name
    source: str  # where the weights come from
    weights: str | None = None  # the evaluate ``weights=`` argument (None: bicubic)
    net: nn.Module | None = None
    error: str | None = None
    digest: str = ""  # sha256 of the weights file ("" for bicubic)
    files: dict[str, list[Path]] = field(default_factory=dict)  # its score CSVs per intensity window

    @property
    def scales(self) -> list[int]:
        """The table's scales this model serves."""
        return [s for s in SCALES if self.net is not None and s in self.net.scales]


def _first_line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _load(row: PeerRow, path: Path | None) -> PeerRow:
    """Load ``row.weights`` through ``load_model``; on failure keep the reason."""
    try:
        row.net = load_model(row.weights) if row.weights else Bicubic(scales=SCALES)
        row.digest = sha256_file(path) if path is not None and path.is_file() else ""
    except Exception as exc:  # noqa: BLE001 - any refusal becomes a row saying why
        row.error = f"not loaded: {_first_line(exc)}"
    return row


def _file_row(path: Path, rows: Sequence[PeerRow], where: str) -> PeerRow:
    """A row for a model file (its key: the file's stem, made unique)."""
    key = re.sub(r"[^\w.-]+", "_", path.stem)
    key = key if all(r.key != key for r in rows) else f"{key}_{len(rows)}"
    return _load(PeerRow(key, f"file {path.name}{where}", str(path.resolve())), path)


def resolve_rows(names: Sequence[str], peer_files: Path | None, folder: Path | None) -> list[PeerRow]:
    """The table's rows: bicubic, then ``names`` (shipped, peers, other names or files), then every file in
    ``folder``; each loaded by ``load_model`` (a refusal is kept as the row's error)."""
    rows = [_load(PeerRow("bicubic", "MATLAB-exact bicubic (mdrn.protocol.resize.imresize)"), None)]
    for name in names:
        if any(r.key == name for r in rows):
            continue
        if Path(name).is_file():
            rows.append(_file_row(Path(name), rows, ""))
        elif name in SHIPPED_MODELS:
            path = shipped_path(name)
            rows.append(_load(PeerRow(name, f"shipped with mdrn ({path.name})", name), path))
        elif name in PEER_WEIGHTS:
            peer = PEER_WEIGHTS[name]
            local = peer_files / f"{name}.pth" if peer_files is not None else None
            source = f"{peer.model}, authors' file {peer.repo}@{peer.commit[:7]}/{peer.path} ({peer.licence})"
            if local is not None and local.is_file():
                row = PeerRow(name, source, str(local))
                if sha256_file(local) != peer.sha256:
                    row.error = f"not loaded: {local} is not the pinned file (sha256 {peer.sha256[:12]}...)"
                    rows.append(row)
                else:
                    rows.append(_load(row, local))
            else:  # downloaded by name (or from the cache)
                row = _load(PeerRow(name, source, name), None)
                row.digest = peer.sha256
                rows.append(row)
        else:
            rows.append(_load(PeerRow(name, f"named weights {name!r} (mdrn.weights.load_model)", name), None))
    if folder is not None:
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            rows.append(_file_row(path, rows, f" in {folder}"))
    for row in rows:
        if row.net is not None and row.error is None and not row.scales:
            row.error = f"not scored: serves {list(row.net.scales)}, the table's scales are {list(SCALES)}"
    return rows


def _groups(
    natural: Sequence[Path], medical: Path, sample: Path
) -> tuple[list[tuple[str, Path, list[str]]], list[str]]:
    """Score groups ``(stem, root, sets)`` and the natural sets found nowhere."""
    groups, absent = [], []
    for name in SETS:
        for root in natural:
            try:
                benchmark_files(root, name)
            except DataNotFoundError:
                continue
            groups.append((name, root, [name]))
            break
        else:
            absent.append(name)
    for stem, root, sets in (("medical", medical, MEDICAL_SETS), ("sample", sample, SAMPLE_SETS)):
        missing = [s for s in sets if not (root / s).is_dir()]
        if missing:
            hint = " (python experiments/scripts/medical_images.py --out DIR)" if stem == "medical" else ""
            raise SystemExit(f"{root}: the sets {missing} are missing{hint}")
        groups.append((stem, root, list(sets)))
    return groups, absent


def score_rows(
    rows: list[PeerRow],
    groups: Sequence[tuple[str, Path, list[str]]],
    out: Path,
    rescore: bool,
    windows: Sequence[str] = ("none",),
) -> None:
    """Run the missing recorded evaluations (every group, every window); fill each row's ``files``
    (``{window: [csv, ...]}``); a failed run becomes the row's error."""
    for row in rows:
        if row.error is not None:
            continue
        digest_file = out / f"{row.key}.sha256"
        stale = rescore or not digest_file.is_file() or digest_file.read_text().strip() != row.digest
        model = [f"weights={row.weights}"] if row.weights else ["model=bicubic"]
        for window in windows:
            for stem, root, sets in groups:
                csv = out / f"{row.key}_{stem}_{window}.csv"
                cmd = [sys.executable, "-m", "mdrn.evaluate", *model, f"eval.root={root}",
                       f"eval.sets=[{','.join(sets)}]", f"eval.scales=[{','.join(map(str, row.scales))}]",
                       f"eval.window={window}", f"eval.output={csv}"]  # fmt: skip
                recorded = (run_info(csv) or {}).get("command")
                # the same command wherever the checkout lies (machine paths compared by their names; the
                # model file by its sha256 above)
                same = recorded is not None and public_command(recorded) == public_command(shlex.join(cmd))
                if stale or not csv.is_file() or not same:
                    csv.unlink(missing_ok=True)
                    if record(csv, cmd) != 0:
                        row.error = f"not scored: {shlex.join(cmd)} failed (log: {csv}.log)"
                        break
                row.files.setdefault(window, []).append(csv)
            if row.error is not None:
                break
        if row.error is None:
            digest_file.parent.mkdir(parents=True, exist_ok=True)
            digest_file.write_text(row.digest + "\n")


def _macs(net: nn.Module, scale: int) -> float | None:
    """Multiply-adds per output pixel (convolutions and linear layers) for a 1280x720 output, or None."""
    h, w = OUTPUT_SIZE[0] // scale, OUTPUT_SIZE[1] // scale
    colors = 3 if 3 in getattr(net, "accepted_colors", (getattr(net, "n_colors", 3),)) else 1
    try:
        flops = count_flops(net, (1, colors, h, w), scale).forward
    except Exception:  # noqa: BLE001 - a network count_flops cannot trace: no figure
        return None
    return flops / 2 / (h * scale * w * scale)


def _arch(row: PeerRow) -> str:
    """The architecture of a loaded row (spec arch and its main arguments, else the class name)."""
    try:
        spec = model_spec(row.net)
    except ValueError:
        return type(row.net).__name__
    args = {k: v for k, v in spec["args"].items() if k not in ("scales", "scale", "n_colors")}
    return f"{spec['arch']}({', '.join(f'{k}={v}' for k, v in args.items())})"


def _set_table(
    loaded: Sequence[PeerRow], means: dict, s: str, published: dict
) -> tuple[list[list[str]], int]:
    """One set's rows (``row, x2, x3, x4`` cells "PSNR / SSIM", best PSNR in bold) and its image count."""
    present = [r for r in loaded if any((s, sc) in means[r.key] for sc in SCALES)]
    best = {sc: max((means[r.key][(s, sc)][0] for r in present if (s, sc) in means[r.key]), default=None)
            for sc in SCALES}  # fmt: skip
    table = []
    for r in present:
        cells = []
        for sc in SCALES:
            if (s, sc) not in means[r.key]:
                cells.append("—")
                continue
            p, q, _ = means[r.key][(s, sc)]
            cell = f"**{p:.2f}** / {q:.4f}" if p == best[sc] else f"{p:.2f} / {q:.4f}"
            peer = PEER_WEIGHTS.get(r.key)
            pub = published.get(peer.model, {}).get(s, {}).get(str(sc)) if peer else None
            cells.append(cell + (f" (paper {pub:.2f})" if pub is not None else ""))
        table.append([r.key, *cells])
    n = max(
        (means[r.key][(s, sc)][2] for r in present for sc in SCALES if (s, sc) in means[r.key]), default=0
    )
    return table, n


def render_peers(
    rows: Sequence[PeerRow], absent: Sequence[str], command: str, results: Path = RESULTS
) -> dict[str, Path]:
    """Write ``peers.md`` and ``peers.csv`` from the rows' score CSVs (one section per intensity window)."""
    published = load_published()["lightweight_peers"]
    loaded = [r for r in rows if r.error is None]
    windows = [w for w in WINDOWS if any(w in r.files for r in loaded)]
    means = {w: {r.key: mean_scores(r.files.get(w, [])) for r in loaded} for w in windows}
    facts = {}
    for r in loaded:
        macs = {s: _macs(r.net, s) for s in r.scales}
        facts[r.key] = {"params": sum(p.numel() for p in r.net.parameters()), "macs": macs}
    set_labels = {**{s: s for s in SETS}, **MEDICAL_SETS, **SAMPLE_SETS}
    sets = [
        s
        for s in set_labels
        if any((s, sc) in m for w in windows for m in means[w].values() for sc in SCALES)
    ]
    csv_rows = []
    for w in windows:
        for r in loaded:
            for s in sets:
                for sc in r.scales:
                    if (s, sc) in means[w][r.key]:
                        p, q, n = means[w][r.key][(s, sc)]
                        fact = facts[r.key]
                        csv_rows.append(
                            {"model": r.key, "set": s, "scale": sc, "images": n, "psnr": p, "ssim": q,
                             "params": fact["params"], "macs_per_output_px": fact["macs"][sc], "window": w}
                        )  # fmt: skip
    cols = ["model", "set", "scale", "images", "psnr", "ssim", "params", "macs_per_output_px", "window"]
    out = {"csv": write_csv(results / "peers.csv", csv_rows, cols)}

    def kmacs(r: PeerRow, s: int) -> str:
        v = facts[r.key]["macs"].get(s)
        return "—" if v is None else f"{v / 1e3:.1f} K / {v * OUTPUT_SIZE[0] * OUTPUT_SIZE[1] / 1e9:.1f} G"

    model_rows = []
    for r in rows:
        if r.error is not None:
            model_rows.append([r.key, "—", r.source, "—", "—", "—", "—", "—", r.error])
            continue
        model_rows.append([r.key, _arch(r), r.source, f"{facts[r.key]['params']:,}",
                           *(kmacs(r, s) if s in r.scales else "—" for s in SCALES), rule_of(r.net).mode,
                           "scored"])  # fmt: skip
    md = [
        "# Peers: mdrn's models beside the public lightweight models, in one protocol\n",
        "PSNR (dB) / SSIM at each image's own bit depth (peak 2^n − 1), on Y for RGB images and on the gray "
        "values otherwise, border = scale removed (`mdrn.protocol.metrics.score`); the LR is the "
        "MATLAB-bicubic degradation of the mod-cropped HR, quantized to the image's bit depth; the whole "
        "image goes through the network (no tiling); a gray image goes through an RGB model's three planes "
        "(replicated in, averaged out). Mean over each set's images. Best PSNR per column in bold.\n",
        "Intensity normalisation, one section each: "
        + "; ".join(f"**{w}**: {window_statement(w, loaded)}" for w in windows)
        + ".\n",
        "## Models\n",
        "Parameters: the network's own (fixed mean shifts excluded). Multiply-adds: convolutions and linear "
        "layers only (`mdrn.perf.count_flops`; bicubic interpolation, pooling and attention arithmetic not "
        "counted), per output (HR) pixel / for a 1280×720 output (the papers' convention). Own window: the "
        "rule recorded in the model (what `eval.window=auto` would apply).\n",
        markdown_table(
            [
                "row",
                "architecture",
                "weights",
                "parameters",
                "MACs x2",
                "MACs x3",
                "MACs x4",
                "own window",
                "status",
            ],
            model_rows,
        ),  # fmt: skip
    ]
    for w in windows:
        statement = window_statement(w, loaded)
        md.append(f"## Intensity normalisation: {w}\n\n{statement[0].upper()}{statement[1:]}.\n")
        for s in sets:
            table, n = _set_table(loaded, means[w], s, published)
            if table:
                md += [
                    f"### {set_labels[s]} ({n} images), window {w}\n",
                    markdown_table(["row", "x2", "x3", "x4"], table),
                ]
    scored = ", ".join(r.key for r in loaded) or "none"
    failed = [f"- {r.key}: {r.error}" for r in rows if r.error is not None]
    md += [
        "## What ran\n",
        f"- Rows scored: {scored}.",
        *failed,
        f"- Sets scored: {', '.join(set_labels[s] for s in sets)}.",
        f"- Natural sets not found in the data folders (not run): {', '.join(absent) or 'none'}.",
        f"- Intensity windows: {', '.join(windows)} (each applied to every row).",
        "- Papers' figures (in brackets) from `experiments/published.json` (`../shared/peers/README.md`); "
        "`scripts/check_peers.py` compares each authors' file with them on Set5.",
        f"- Regenerated on {_dt.datetime.now(_dt.timezone.utc).date().isoformat()} by `{command}` (what "
        "`make peers` runs); each score is a recorded `python -m mdrn.evaluate` run in "
        "`experiments/results/peers/` (`<row>_<group>_<window>.csv`; `.run.json`: command, machine, date; "
        "`.log`).\n",
    ]
    out["md"] = write_text(results / "peers.md", "\n".join(md))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mdrn.reproduce peers``: score what is missing, then write the table."""
    parser = argparse.ArgumentParser(
        prog="python -m mdrn.reproduce peers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--models", nargs="*", default=[], help="more weights names or files (load_model)")
    parser.add_argument("--dir", type=Path, help="a folder of model files: each becomes a row")
    parser.add_argument(
        "--peer-files", type=Path, default=SHARED / "peers", help="where the authors' files already are"
    )
    natural = [SHARED / "datasets", ROOT / "data" / "benchmark"]
    parser.add_argument(
        "--natural", type=Path, nargs="+", default=natural, help="folders of Set5/Set14/B100/Urban100"
    )
    parser.add_argument(
        "--medical", type=Path, default=ROOT / "data" / "medical", help="Table 2's medical sets"
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="where the sample data is written")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: %(default)s)")
    parser.add_argument("--rescore", action="store_true", help="run every evaluation again")
    parser.add_argument(
        "--windows", nargs="+", choices=WINDOWS, default=["none", "percentile"],
        help="intensity windows, each applied to every row (auto: each model's own rule)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.dir is not None and not args.dir.is_dir():
        parser.error(f"--dir {args.dir}: no such folder")
    sample = prepare_sample(args.data) / "test"
    groups, absent = _groups(args.natural, args.medical, sample)
    rows = resolve_rows([*SHIPPED_MODELS, *PEER_WEIGHTS, *args.models], args.peer_files, args.dir)
    score_rows(rows, groups, args.results / "peers", args.rescore, args.windows)
    command = shlex.join(
        ["python", "-m", "mdrn.reproduce", "peers", *(sys.argv[1:] if argv is None else argv)]
    )
    for key, path in render_peers(rows, absent, command, args.results).items():
        print(f"peers.{key}: {path}")
    print((args.results / "peers.md").read_text())
    return 0
