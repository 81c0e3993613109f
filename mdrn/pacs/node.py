"""The DICOM node of ``mdrn-pacs listen``: receive series by C-STORE, enlarge each, send the result back.

:class:`Node` is a Storage SCP (C-ECHO, C-STORE, pynetdicom) on 127.0.0.1 unless told otherwise. It
answers only calling AE titles on its allow-list (by default the AE it sends results to), keeps what it
receives in a private temporary folder (0700), one sub-folder per series, and enlarges a series once no
instance of it came for ``stable_after`` seconds, with :func:`mdrn.pacs.series.enlarge_series` (the code
path of ``mdrn-upscale``). The derived series goes back by C-STORE to ``send_to``; the received files are
deleted once their series is done, whether it succeeded or not. A series that fails is reported in one
line and the node goes on. It accepts the transfer syntaxes this machine can decode at every bit depth
(JPEG Extended only with a 12-bit JPEG decoder, not Pillow alone), so a PACS that transcodes, such as
Orthanc, sends decodable data, and names the package to install for any syntax it had to refuse. TLS:
``tls_cert``/``tls_key`` serve and send over TLS, ``tls_ca`` checks the peers.
Log lines carry UIDs, AE titles and counts only: no patient name, ID or birth date.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import signal
import ssl
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdrn.pacs.series import Enlarger, SendFailed, SeriesError, enlarge_series, instance_file

__all__ = ["Destination", "Node", "add_arguments", "listen", "parse_destination"]

#: Seconds without a new instance after which a series is enlarged (``--stable-after``).
DEFAULT_STABLE_AFTER = 10.0
_AE = re.compile(r"^[\x20-\x7e]{1,16}$")


@dataclass(frozen=True)
class Destination:
    """A DICOM node: AE title, host and port."""

    ae: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae}@{self.host}:{self.port}"


def _check_ae(text: str) -> str:
    ae = text.strip()
    if not _AE.match(ae) or "\\" in ae:
        raise argparse.ArgumentTypeError(
            f"not an AE title (1-16 printable characters, no backslash): {text!r}"
        )
    return ae


def parse_destination(text: str) -> Destination:
    """``AE@HOST:PORT`` as a :class:`Destination`."""
    ae, sep, rest = text.rpartition("@")
    host, colon, port = rest.rpartition(":")
    if not sep or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected AE@HOST:PORT (e.g. ORTHANC@127.0.0.1:4242), got {text!r}")
    return Destination(_check_ae(ae), host.strip("[]"), int(port))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``mdrn-pacs listen``."""
    p.add_argument("--ae", type=_check_ae, default="MDRN", help="this node's AE title (default MDRN)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)"
    )
    p.add_argument("--port", type=int, default=11112, help="DICOM port to listen on (default 11112)")
    p.add_argument(
        "--send-to",
        type=parse_destination,
        required=True,
        metavar="AE@HOST:PORT",
        help="where derived series are sent by C-STORE (usually the PACS that sent the study)",
    )
    p.add_argument(
        "--allow",
        type=_check_ae,
        action="append",
        default=None,
        metavar="AE",
        help="calling AE title allowed to connect (repeat; default: the AE of --send-to)",
    )
    p.add_argument(
        "--stable-after",
        type=float,
        default=DEFAULT_STABLE_AFTER,
        metavar="SECONDS",
        help=f"enlarge a series once no instance came for this long (default {DEFAULT_STABLE_AFTER:g})",
    )
    p.add_argument("--work-dir", type=Path, default=None, help="where the private temporary folder is made")
    p.add_argument("--tls-cert", type=Path, default=None, help="this node's certificate (PEM): TLS on")
    p.add_argument("--tls-key", type=Path, default=None, help="the private key of --tls-cert (PEM)")
    p.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        help="CA certificate(s) (PEM) the peers' certificates must be signed by",
    )


class _Stopping(Exception):
    """The node is stopping: the series in hand is left unfinished."""


@dataclass
class _Incoming:
    folder: Path
    last: float
    count: int = 0
    calling: str = ""
    classes: set[str] = field(default_factory=set)


def _syntaxes() -> list[str]:
    """Transfer syntaxes this machine can decode (uncompressed always)."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES

    from mdrn.io.dicom import missing_decoder

    return [ts for ts in ALL_TRANSFER_SYNTAXES if missing_decoder(ts, every_depth=True) is None]


class _CStore:
    """The SCU that sends one derived series back (one association, opened on the first batch)."""

    def __init__(self, node: Node, classes: set[str]) -> None:
        self.node, self.classes, self.assoc = node, classes, None

    def __call__(self, paths: list[Path]) -> list[tuple[Path, str]]:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE, build_context

        dest = self.node.send_to
        if self.assoc is None or not self.assoc.is_established:
            ae = AE(ae_title=self.node.ae_title)
            contexts = [
                build_context(c, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
                for c in sorted(self.classes)
            ]
            ae.requested_contexts = contexts[:128]
            tls = (self.node.client_tls, dest.host) if self.node.client_tls is not None else None
            self.assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae, tls_args=tls)
            if not self.assoc.is_established:
                raise SendFailed(
                    f"cannot open an association with {dest} (refused, aborted or not reachable)"
                )
        refused = []
        for path in paths:
            try:
                status = self.assoc.send_c_store(path)
            except (ValueError, RuntimeError) as err:
                refused.append((path, f"not sent ({err})"))
                continue
            code = int(getattr(status, "Status", -1)) if status else -1
            if code == -1:
                raise SendFailed(f"{dest} stopped answering during C-STORE")
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                refused.append((path, f"refused by {dest.ae} (C-STORE status 0x{code:04X})"))
        return refused

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()


class Node:
    """A Storage SCP that enlarges each received series and sends it back (see the module's docstring)."""

    def __init__(
        self,
        enlarger: Enlarger,
        *,
        send_to: Destination,
        ae_title: str = "MDRN",
        host: str = "127.0.0.1",
        port: int = 11112,
        allow: list[str] | None = None,
        stable_after: float = DEFAULT_STABLE_AFTER,
        work_dir: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        tls_ca: str | Path | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.enlarger, self.send_to, self.ae_title = enlarger, send_to, ae_title
        self.host, self.port, self.stable_after = host, port, stable_after
        self.allow = list(allow) if allow else [send_to.ae]
        self.say = say or _print
        self.server_tls, self.client_tls = _tls(tls_cert, tls_key, tls_ca)  # before any folder is made
        self.root = Path(tempfile.mkdtemp(prefix="mdrn-node-", dir=work_dir))  # private: 0700
        self._incoming: dict[str, _Incoming] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._generation = 0
        self.processed: list[Any] = []  # SeriesResult of each series done (for tests and callers)
        self._server: Any = None
        self._worker: threading.Thread | None = None

    # -- receiving ------------------------------------------------------------------------------------- #

    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            series, sop = str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
            instance_file(self.root, series)  # valid UIDs (they name a folder and a file), checked before
            instance_file(self.root, sop)  # the series is opened: no empty series from a refused instance
        except Exception:  # noqa: BLE001 - a dataset we cannot file: refused, the sender is told
            return 0xC210
        calling = str(event.assoc.requestor.ae_title).strip()
        with self._lock:
            inc = self._incoming.get(series)
            if inc is None:
                self._generation += 1
                folder = self.root / f"{self._generation:06d}-{series}"
                folder.mkdir()
                inc = self._incoming[series] = _Incoming(folder, time.monotonic(), calling=calling)
                self.say(f"series {series}: receiving from {calling}")
            path = instance_file(inc.folder, sop)
            inc.count += not path.exists()  # an instance sent twice counts once
            path.write_bytes(event.encoded_dataset(include_meta=True))
            inc.last = time.monotonic()
            inc.classes.add(str(event.context.abstract_syntax))
        return 0x0000

    def _on_rejected(self, event: Any) -> None:
        req = event.assoc.requestor
        self.say(
            f"refused an association from AE {str(req.ae_title).strip()!r} at {req.address}: not on the "
            f"allow-list ({', '.join(self.allow)}; see --allow)"
        )

    def _on_accepted(self, event: Any) -> None:
        from pydicom.uid import UID

        from mdrn.io.dicom import missing_decoder

        for cx in event.assoc.rejected_contexts:
            if cx.result == 0x04 and cx.transfer_syntax:  # no transfer syntax we can decode
                problem = missing_decoder(cx.transfer_syntax[0], every_depth=True) or "not accepted"
                self.say(
                    f"refused {UID(cx.abstract_syntax).name} offered by "
                    f"{str(event.assoc.requestor.ae_title).strip()} in {problem}"
                )

    # -- processing ------------------------------------------------------------------------------------ #

    def _due(self) -> tuple[str, _Incoming] | None:
        now = time.monotonic()
        with self._lock:
            for series, inc in self._incoming.items():
                if now - inc.last >= self.stable_after:
                    return series, self._incoming.pop(series)
        return None

    def process(self, series: str, inc: _Incoming) -> None:
        """Enlarge one received series and send it back; any failure is one line, never the end."""
        self.say(f"series {series}: {inc.count} instance(s) received from {inc.calling}, enlarging")
        sender = _CStore(self, inc.classes)

        def check(done: int, total: int) -> None:
            if self._stop.is_set():
                raise _Stopping

        try:
            result = enlarge_series(inc.folder, self.enlarger, sender, source_series=series, progress=check)
        except _Stopping:
            self.say(f"series {series}: not finished (the node is stopping); send it again")
            return
        except SeriesError as err:
            self.say(f"error: {err}")
            return
        except Exception as err:  # noqa: BLE001 - one series failing never stops the node
            self.say(f"error: series {series}: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
            return
        finally:
            sender.close()
            shutil.rmtree(inc.folder, ignore_errors=True)
        self.processed.append(result)
        for line in result.skipped:
            self.say(f"series {series}: {line}")
        line = result.summary().replace(" stored", f" sent to {self.send_to}", 1)
        self.say(line if result.ok else f"error: {line}")

    def _work(self) -> None:
        while not self._stop.is_set():
            due = self._due()
            if due is None:
                self._stop.wait(0.2)
                continue
            self.process(*due)

    # -- life ------------------------------------------------------------------------------------------ #

    def start(self) -> Node:
        """Start listening and the worker thread."""
        try:
            from pynetdicom import AE, AllStoragePresentationContexts, evt
            from pynetdicom.sop_class import Verification
        except ModuleNotFoundError:  # the pacs extra is not installed: mdrn-pacs names it
            shutil.rmtree(self.root, ignore_errors=True)
            raise

        logging.getLogger("pynetdicom").setLevel(logging.ERROR)  # its lines are not ours to print
        ae = AE(ae_title=self.ae_title)
        syntaxes = _syntaxes()
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, syntaxes)
        ae.require_calling_aet = self.allow
        ae.maximum_pdu_size = 0
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ACCEPTED, self._on_accepted),
        ]
        try:
            self._server = ae.start_server(
                (self.host, self.port), block=False, evt_handlers=handlers, ssl_context=self.server_tls
            )
        except OSError as err:
            shutil.rmtree(self.root, ignore_errors=True)
            raise OSError(f"cannot listen on {self.host}:{self.port} ({err.strerror or err})") from err
        self.port = self._server.server_address[1]
        self._worker = threading.Thread(target=self._work, name="mdrn-node", daemon=True)
        self._worker.start()
        tls = "TLS" if self.server_tls is not None else "no TLS"
        if self.server_tls is None and self.host not in ("127.0.0.1", "localhost", "::1"):
            self.say(
                f"warning: listening on {self.host} without TLS: the images (with their patients' names) "
                "travel the network unencrypted, and any device that can reach this port may send as an "
                f"allowed AE title ({', '.join(self.allow)}: titles are not passwords); give --tls-cert and "
                "--tls-key, or bind 127.0.0.1 behind a trusted gateway"
            )
        self.say(
            f"listening as {self.ae_title} on {self.host}:{self.port} ({tls}); accepting "
            f"{', '.join(self.allow)}; derived series go to {self.send_to}; series enlarged "
            f"{self.stable_after:g} s after their last instance"
        )
        return self

    def stop(self) -> None:
        """Stop listening, leave the series in hand after its current slice, delete the temporary folder."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._worker is not None:
            self._worker.join()  # one slice at most: then nothing writes in the folder any more
        with self._lock:
            for series, inc in self._incoming.items():
                self.say(f"series {series}: {inc.count} instance(s) received, not enlarged; send it again")
            self._incoming.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _print(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def _tls(cert: Any, key: Any, ca: Any) -> tuple[Any, Any]:
    """(server context, client context) for DICOM TLS, or (None, None) without a certificate."""
    if cert is None and key is None:
        if ca is not None:
            raise ValueError("--tls-ca needs --tls-cert and --tls-key")
        return None, None
    if cert is None or key is None:
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    try:
        mode = Path(key).stat().st_mode
    except OSError as err:
        raise ValueError(f"{key}: cannot read the TLS private key ({err.strerror})") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):  # as the credentials file (mdrn.pacs.dicomweb.credentials)
        raise ValueError(f"{key}: the TLS private key is readable by others: chmod 600 {key}")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(cert), str(key))
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    client.load_cert_chain(str(cert), str(key))
    if ca is not None:
        server.load_verify_locations(str(ca))
        server.verify_mode = ssl.CERT_REQUIRED  # peers must show a certificate signed by the CA
    return server, client


def listen(args: argparse.Namespace, enlarger: Enlarger) -> int:
    """Run the node of ``mdrn-pacs listen`` until Ctrl-C or SIGTERM."""
    from mdrn.perf import set_malloc_reuse

    set_malloc_reuse(False)
    try:
        node = Node(
            enlarger,
            send_to=args.send_to,
            ae_title=args.ae,
            host=args.host,
            port=args.port,
            allow=args.allow,
            stable_after=args.stable_after,
            work_dir=args.work_dir,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
        ).start()
    except (OSError, ValueError, ssl.SSLError) as err:
        print(f"error: {err}", flush=True)
        return 2
    print(f"x{enlarger.how.scale} by {enlarger.how.method}", flush=True)
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        node.stop()
        print("stopped; temporary folder deleted", flush=True)
    return 0
