"""``mdrn-pacs`` (``python -m mdrn.pacs``): enlarge a PACS's series and store the derived series back.

- ``mdrn-pacs list --dicomweb URL [--study UID]``: the PACS's studies (UID, date, modalities, counts;
  patient initials only with ``--initials``), or the series of one study.
- ``mdrn-pacs enlarge --dicomweb URL --study UID [--series UID ...] --scale S [--model NAME]``: finds the
  image series of the study (QIDO-RS), reads them instance by instance (WADO-RS), enlarges each with the
  code path of ``mdrn-upscale`` (one derived series per source series) and stores it (STOW-RS); prints
  each derived series' UID and count. Exit code 0 when everything was stored, 1 when an instance or a
  series was not (each named), 2 when nothing could start (URL, credentials, unknown study, model).
- ``mdrn-pacs listen --ae MDRN --port 11112 --send-to AE@HOST:PORT --scale S``: a DICOM node (Storage
  SCP) that enlarges each series it receives once no instance came for ``--stable-after`` seconds and
  sends the derived series back by C-STORE (see :mod:`mdrn.pacs.node`).

Credentials come from the environment (``MDRN_PACS_TOKEN``, or ``MDRN_PACS_USER`` and
``MDRN_PACS_PASSWORD``) or from ``--auth-file`` (mode 600), never from the command line. Output lines
carry UIDs and counts only: no patient name, ID or birth date.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from mdrn.io.dicom import quiet_value_warnings

__all__ = ["main"]


def _common_model(p: argparse.ArgumentParser) -> None:
    from mdrn.clinical.enlarge import DEFAULT_TILE
    from mdrn.weights import DEFAULT_MODEL

    p.add_argument("--scale", type=int, required=True, help="magnification (2, 3, 4)")
    p.add_argument(
        "--model",
        "--weights",
        dest="model",
        default=DEFAULT_MODEL,
        help=f"{DEFAULT_MODEL} (default, shipped), a weights file, a name such as mdsr, or 'bicubic'",
    )
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size in input pixels (0: whole)")
    p.add_argument("--ensemble", action="store_true", help="x8 geometric self-ensemble (8x slower)")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: cuda if available)")


def _parser() -> argparse.ArgumentParser:
    from mdrn.pacs.dicomweb import add_connection_arguments

    p = argparse.ArgumentParser(
        prog="mdrn-pacs", description="Enlarge series of a PACS and store the derived series back."
    )
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list the PACS's studies, or a study's series (DICOMweb)")
    add_connection_arguments(ls)
    ls.add_argument("--study", default=None, help="list this study's series")
    ls.add_argument("--initials", action="store_true", help="show the patients' initials (hidden by default)")
    ls.add_argument("--limit", type=int, default=100, help="at most this many studies (default 100)")
    en = sub.add_parser("enlarge", help="enlarge a study's series and store them back (DICOMweb)")
    add_connection_arguments(en)
    en.add_argument("--study", required=True, help="Study Instance UID")
    en.add_argument("--series", nargs="+", default=[], help="only these Series Instance UIDs")
    _common_model(en)
    en.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    li = sub.add_parser("listen", help="a DICOM node: receive series by C-STORE, send the derived ones back")
    from mdrn.pacs.node import add_arguments

    add_arguments(li)
    _common_model(li)
    return p


def _list(args: argparse.Namespace) -> int:
    from mdrn.pacs.dicomweb import connect_args

    pacs = connect_args(args)
    if args.study:
        for s in pacs.series(args.study):
            print(
                f"{s.uid}  {s.modality or '-':3}  #{s.number or '-':>3}  {s.n_instances:4d} instance(s)  "
                f"{s.description}".rstrip()
            )
        return 0
    studies = pacs.studies(limit=args.limit, with_initials=args.initials)
    for st in studies:
        who = f"  {st.initials or '-'}" if args.initials else ""
        print(
            f"{st.uid}  {st.date or '-':8}  {st.modalities or '-':8}  {st.n_series} series  "
            f"{st.n_instances} instance(s){who}  {st.description}".rstrip()
        )
    if not studies:
        print(f"no studies on {args.dicomweb}", file=sys.stderr)
    return 0


def _enlarge(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mdrn.pacs.dicomweb import connect_args, enlarge_study
    from mdrn.perf import set_malloc_reuse

    set_malloc_reuse(False)  # as mdrn-upscale: large buffers go back to the system, bounded memory
    pacs = connect_args(args)
    pacs.series(args.study)  # an unknown study or an unreachable PACS fails before the model is loaded
    enlarger = _enlarger(args)
    print(f"x{args.scale} by {enlarger.how.method}")
    bars: list[Any] = []  # the bar of the series being enlarged (none before the first slice)

    def progress(done: int, total: int) -> None:
        if not bars or total != bars[-1].total or done < bars[-1].n:  # the next series
            close()
            bars.append(
                tqdm(total=total, unit="slice", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
            )
        bars[-1].update(done - bars[-1].n)

    def close() -> None:
        while bars:
            bars.pop().close()

    def say(line: str) -> None:
        close()  # a series is done: its line, then the next series' bar
        print(line, file=sys.stderr if line.startswith("error") else sys.stdout, flush=True)

    try:
        results = enlarge_study(pacs, args.study, enlarger, series=args.series, say=say, progress=progress)
    finally:
        close()
    failed = [r for r in results if not r.ok]
    if failed:
        n = sum(len(r.not_stored) if r.error is None else r.images for r in failed)
        print(
            f"{n} instance(s) of {len(failed)} series NOT stored; run the same command again to store "
            "them (instances already stored are skipped)",
            file=sys.stderr,
        )
        return 1
    if not results:
        print(f"study {args.study}: no image series to enlarge", file=sys.stderr)
    return 0


def _enlarger(args: argparse.Namespace):  # noqa: ANN202
    from mdrn.pacs.series import Enlarger

    try:
        return Enlarger.create(
            args.model, args.scale, device=args.device, ensemble=args.ensemble, tile=args.tile or None,
            reuse_memory=args.command == "enlarge",  # a run that ends with its study, as mdrn-upscale
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - one clear line for any unusable model
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _SetupError(text if args.model in text else f"{args.model}: {text}") from err


class _SetupError(Exception):
    """Nothing could start (exit code 2)."""


@quiet_value_warnings()  # pydicom's warnings quote a patient's values
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mdrn-pacs``; 0: all stored, 1: something was not stored (named), 2: nothing could start."""
    from mdrn.clinical.interrupt import Terminated, sigterm_stops
    from mdrn.pacs.dicomweb import PacsError

    args = _parser().parse_args(argv)
    try:
        with sigterm_stops():  # as Ctrl-C: the series fetched into the temporary folder is deleted
            if args.command == "list":
                return _list(args)
            if args.command == "enlarge":
                return _enlarge(args)
            from mdrn.pacs.node import listen

            return listen(args, _enlarger(args))
    except (PacsError, _SetupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:  # the DICOM node without the pacs extra
        if (err.name or "").partition(".")[0] != "pynetdicom":
            raise
        print(f"error: the DICOM node needs {err.name}, which is not installed: pip install 'mdrn[pacs]'",
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt as exc:
        print("interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
