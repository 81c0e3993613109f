"""One received series in, one derived series out: the part of the PACS path shared by DICOMweb and the node.

:func:`enlarge_series` takes the files of one source series (a private folder, one file per instance,
named ``<SOP Instance UID>.dcm``), skips instances that are not images (structured reports, presentation
states) with a message, refuses a transfer syntax this machine cannot decode (naming it and the package
to install), opens the rest with :func:`mdrn.clinical.inputs.open_files` and enlarges them with
:func:`mdrn.clinical.enlarge.enlarge_stack`: the code path of ``mdrn-upscale`` on the same files, so the
derived series follows every rule of the file path (new Series Instance UID, ``DERIVED``, geometry,
Source Image Sequence, see :mod:`mdrn.io.dicom`). Each derived instance is handed to a :class:`Sender`
as soon as it is written, sent from a thread while the next slice is enlarged, and deleted once sent;
the source files are deleted when the series is done, whatever happened.

UIDs are stable (:class:`StableDerivation`): the derived series and instance UIDs are a hash of the source
UIDs and of what enlarges (scale, model and its weights, ensemble, mdrn version), so a rerun after a
failure stores only the instances that are missing and never a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from mdrn.clinical.enlarge import (
    DEFAULT_TILE,
    UpscaleOptions,
    describe_method,
    enlarge_stack,
    load_network,
    model_name,
    output_name,
)
from mdrn.io.dicom import Derivation, missing_decoder, read_header
from mdrn.io.images import ImageReadError
from mdrn.models.inference import DEFAULT_OVERLAP

__all__ = [
    "Enlarger",
    "SendFailed",
    "Sender",
    "SeriesError",
    "SeriesResult",
    "StableDerivation",
    "enlarge_series",
    "instance_file",
]

#: Derived instances sent in one request (STOW-RS) at most.
SEND_BATCH = 8


class SeriesError(Exception):
    """A series that cannot be enlarged at all (the message is one line, UIDs only)."""


class SendFailed(Exception):
    """The destination cannot be reached any more: nothing else of the series is sent."""


@dataclass
class StableDerivation(Derivation):
    """A :class:`Derivation` whose UIDs are a hash of the source UIDs and of ``key`` (what enlarges)."""

    key: str = ""

    def series_uid(self, source_series_uid: str) -> str:
        """The derived series' UID: the same for the same source series and method, run after run."""
        from pydicom.uid import generate_uid

        uid = generate_uid(entropy_srcs=["mdrn derived series", self.key, source_series_uid])
        return self._series.setdefault(source_series_uid, uid)

    def instance_uid(self, source_instance_uid: str) -> str:
        """The derived instance's SOP Instance UID (stable, like the series UID)."""
        from pydicom.uid import generate_uid

        return generate_uid(entropy_srcs=["mdrn derived instance", self.key, source_instance_uid])


def _weights_digest(net: nn.Module) -> str:
    """sha256 of the network's architecture and weights (two files of one name give different UIDs)."""
    from mdrn.models import model_spec

    h = hashlib.sha256()
    try:
        h.update(json.dumps(model_spec(net), sort_keys=True, default=str).encode())
    except (ValueError, TypeError, KeyError):
        h.update(type(net).__name__.encode())
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class Enlarger:
    """What enlarges every series of a run: the network, the options and the stable derivation."""

    net: nn.Module
    opts: UpscaleOptions
    how: StableDerivation

    @classmethod
    def create(
        cls,
        weights: str,
        scale: int,
        *,
        device: str | None = None,
        ensemble: bool = False,
        tile: int | None = DEFAULT_TILE,
        overlap: int | None = DEFAULT_OVERLAP,
        reuse_memory: bool = False,
    ) -> Enlarger:
        """Load ``weights`` (a name, a file or ``bicubic``) for ``scale``, as ``mdrn-upscale`` does.

        ``reuse_memory``: glibc keeps freed memory while a series runs (``UpscaleOptions.reuse_memory``),
        as ``mdrn-upscale`` does: for a process that ends with its study (``mdrn-pacs enlarge``), not for a
        node that runs for days."""
        import torch

        from mdrn import __version__
        from mdrn.perf import prepare_for_inference

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        net = load_network(weights, scale)
        scales = tuple(getattr(net, "scales", ()))
        if scales and scale not in scales:
            raise ValueError(f"{weights}: the model has no x{scale} branch (it serves {scales})")
        key = f"x{scale}|{model_name(weights)}|{_weights_digest(net)}|ensemble={ensemble}|mdrn {__version__}"
        how = StableDerivation(scale, describe_method(weights, net), model_name(weights), key=key)
        net = prepare_for_inference(net, device)
        # reuse_memory off by default: in a long-lived process (a node runs for days) whose slices are handed
        # to a sender thread, glibc's kept heap would grow with the series
        opts = UpscaleOptions(
            scale=scale, tile=tile, overlap=overlap, ensemble=ensemble, device=device,
            reuse_memory=reuse_memory,
        )  # fmt: skip
        return cls(net, opts, how)

    def output_file(self, source_instance_uid: str) -> str:
        """The name ``enlarge_stack`` gives the derived file of ``<source_instance_uid>.dcm``."""
        return output_name(source_instance_uid, self.how.scale, self.how.model, ".dcm")


def instance_file(folder: Path, sop_instance_uid: str) -> Path:
    """Where an instance of a series is kept while it waits: ``<folder>/<SOP Instance UID>.dcm``."""
    uid = str(sop_instance_uid).strip()
    if not uid or any(c not in "0123456789." for c in uid) or len(uid) > 64:
        raise ValueError(f"not a valid SOP Instance UID: {uid!r}")
    return folder / f"{uid}.dcm"


#: ``send(paths) -> [(path, reason)]``: stores the files, returns those refused; raises SendFailed if the
#: destination cannot be reached.
SendFn = Callable[[list[Path]], list[tuple[Path, str]]]


class Sender:
    """Sends derived files from a thread in batches, deleting each once sent; stops at the first
    :class:`SendFailed` (the files after it are not tried)."""

    def __init__(self, send: SendFn, batch: int = SEND_BATCH) -> None:
        self._send, self._batch = send, batch
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self.sent: list[Path] = []
        self.refused: list[tuple[Path, str]] = []
        self.dead: str | None = None  # why the destination cannot be reached
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mdrn-pacs-send", daemon=True)
        self._thread.start()

    def put(self, path: Path) -> None:
        """Queue a written file."""
        self._queue.put(path)

    def _take(self) -> list[Path] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self._batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            if self.dead is not None:
                self.refused += [(p, self.dead) for p in batch]
            else:
                try:
                    refused = self._send(batch)
                except SendFailed as err:
                    self.dead = str(err)
                    refused = [(p, self.dead) for p in batch]
                except Exception as err:  # noqa: BLE001 - any failure of a batch is reported, never lost
                    refused = [(p, f"{type(err).__name__}: {err}") for p in batch]
                bad = {p for p, _ in refused}
                self.refused += refused
                self.sent += [p for p in batch if p not in bad]
            for p in batch:
                p.unlink(missing_ok=True)

    def close(self) -> None:
        """Wait until every queued file is sent or refused."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()


@dataclass
class SeriesResult:
    """What became of one source series (UIDs and counts only)."""

    source: str
    derived: str | None = None
    images: int = 0  # image instances enlarged (or tried)
    stored: list[str] = field(default_factory=list)  # source SOP UIDs whose derived instance was stored
    not_stored: dict[str, str] = field(default_factory=dict)  # source SOP UID -> why
    skipped: list[str] = field(default_factory=list)  # one line per instance left out (not an image...)
    error: str | None = None  # why the series could not be enlarged at all

    @property
    def ok(self) -> bool:
        """Every image instance was stored."""
        return not self.not_stored and self.error is None

    def summary(self) -> str:
        """One line: the series and what was stored."""
        line = f"series {self.source} -> derived series {self.derived}: {len(self.stored)} instance(s) stored"
        if self.not_stored:
            reasons = sorted(set(self.not_stored.values()))
            line += f"; {len(self.not_stored)} NOT stored ({'; '.join(reasons)}): " + " ".join(
                sorted(self.not_stored)
            )
        return line


def _is_image(ds: Any) -> bool:
    return "PixelData" in ds


def _class_name(ds: Any) -> str:
    uid = ds.get("SOPClassUID")
    return str(getattr(uid, "name", "") or uid or "object without SOP class")


def _check_files(files: Sequence[Path], result: SeriesResult) -> list[Path]:
    """The image files of the series; non-images noted in ``result.skipped`` (and deleted); raises
    :class:`SeriesError` for an instance that cannot be read or decoded."""
    images, undecodable = [], {}
    for path in files:
        try:
            ds = read_header(path)
        except ImageReadError as err:
            raise SeriesError(f"series {result.source}: instance {path.stem}: {err.problem}") from err
        if not _is_image(ds):
            result.skipped.append(f"instance {path.stem}: a {_class_name(ds)}, not an image: skipped")
            path.unlink(missing_ok=True)
            continue
        syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
        problem = missing_decoder(syntax) if syntax else None
        if problem is not None:
            undecodable.setdefault(problem, []).append(path.stem)
        images.append(path)
    if undecodable:
        problem, uids = next(iter(undecodable.items()))
        raise SeriesError(f"series {result.source}: {len(uids)} instance(s) in {problem}")
    return images


def enlarge_series(
    folder: Path,
    enlarger: Enlarger,
    send: SendFn,
    *,
    source_series: str,
    out_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SeriesResult:
    """Enlarge the instances in ``folder`` (one source series) and send the derived ones with ``send``.

    Every file of ``folder`` and ``out_dir`` is deleted before returning. A series that cannot be
    enlarged at all raises :class:`SeriesError`; instances that fail are in ``not_stored``.
    """
    from mdrn.clinical.inputs import open_files

    result = SeriesResult(source_series, enlarger.how.series_uid(source_series))
    out_dir = out_dir or folder / "derived"
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".dcm")
    sender: Sender | None = None
    try:
        images = _check_files(files, result)
        result.images = len(images)
        if not images:
            return result
        problems: list[ImageReadError] = []
        stacks = open_files(images, max_pixels=enlarger.opts.max_pixels, errors=problems, folder=folder)
        for err in problems:
            result.not_stored[err.path.stem] = err.problem
        source_of = {enlarger.output_file(p.stem): p.stem for p in images}
        sender = Sender(send)
        queued: set[str] = set()

        def sweep() -> None:
            for path in sorted(out_dir.glob("*.dcm")):  # finished files (partial ones start with ".")
                if path.name not in queued and not path.name.startswith("."):
                    queued.add(path.name)
                    sender.put(path)

        def hand_over(done: int, total: int) -> None:
            sweep()
            if progress is not None:
                progress(done, total)
            if sender.dead is not None:
                raise SendFailed(sender.dead)

        for stack in stacks:
            slice_errors: list[tuple[Path, Exception]] = []
            try:
                with stack:
                    enlarge_stack(
                        enlarger.net,
                        stack,
                        out_dir,
                        enlarger.opts,
                        enlarger.how,
                        progress=hand_over,
                        errors=slice_errors,
                    )
                sweep()
            except SendFailed:
                break
            except (ValueError, OSError, RuntimeError) as err:
                for path in stack.files or [stack.path]:
                    result.not_stored[path.stem] = _one_line(err, folder)
            for path, err in slice_errors:
                result.not_stored[path.stem] = _one_line(err, folder)
        sender.close()
        for path in sender.sent:
            result.stored.append(source_of.get(path.name, path.stem))
        for path, why in sender.refused:
            result.not_stored[source_of.get(path.name, path.stem)] = why
        for uid in (p.stem for p in images):
            if uid not in result.stored and uid not in result.not_stored:
                result.not_stored[uid] = sender.dead or "not enlarged"
        return result
    finally:
        if sender is not None:
            sender.close()
        for path in [*files, *(out_dir.glob("*") if out_dir.is_dir() else [])]:
            Path(path).unlink(missing_ok=True)
        for d in (out_dir, folder):
            try:
                d.rmdir()
            except OSError:
                pass


def _one_line(err: BaseException, folder: Path) -> str:
    """The first line of an error, without the private folder's path (UIDs stay)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.replace(str(folder) + os.sep, "")
