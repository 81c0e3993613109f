"""The DICOMweb side: find a study's image series (QIDO-RS), read them (WADO-RS), store the result (STOW-RS).

:func:`connect` opens a :class:`PacsClient` on a DICOMweb root URL with credentials from the environment
or a file (:func:`credentials`; never from the command line), TLS checked against the system's CAs or a
CA file, and refuses to send credentials unencrypted to another computer. :func:`enlarge_study` enlarges
each image series of a study (or the series asked for) with :func:`mdrn.pacs.series.enlarge_series`:
instances are read a few at a time into a private folder (0700), each WADO-RS answer streamed to its file
as the PACS sent it (never held in memory whole; one over :data:`MAX_INSTANCE_BYTES` is refused), and
deleted once the series is done, so memory holds one instance, whatever the length of the series.
Because derived UIDs are stable, a rerun asks the PACS which derived instances it already has and
enlarges and stores only the others.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shutil
import stat
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import requests
from urllib3.util.retry import Retry

from mdrn.pacs.multipart import AnswerError, TooLarge, write_answer
from mdrn.pacs.series import (
    Enlarger,
    SendFailed,
    SeriesError,
    SeriesResult,
    enlarge_series,
    instance_file,
)

__all__ = [
    "add_connection_arguments",
    "connect_args",
    "ENV_PASSWORD",
    "ENV_TOKEN",
    "ENV_USER",
    "MAX_INSTANCE_BYTES",
    "PacsClient",
    "PacsError",
    "SeriesInfo",
    "StudyInfo",
    "connect",
    "credentials",
    "enlarge_study",
    "read_series",
]

#: Environment variables holding DICOMweb credentials: a bearer token, or a user and a password.
ENV_TOKEN, ENV_USER, ENV_PASSWORD = "MDRN_PACS_TOKEN", "MDRN_PACS_USER", "MDRN_PACS_PASSWORD"
#: Instances read at once (WADO-RS requests in flight).
READ_THREADS = 4
#: The largest instance read from a PACS (bytes of one WADO-RS answer's DICOM file); a larger one is refused.
MAX_INSTANCE_BYTES = 2 * 2**30
_READ_CHUNK = 2**20
_ACCEPT_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class PacsError(Exception):
    """A problem with the PACS or the request (one line: URL, UIDs, what to do; never patient data)."""


class _Session(requests.Session):
    """A session whose CA file wins over ``REQUESTS_CA_BUNDLE`` (plain requests lets the variable win)."""

    ca_file: str | None = None

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings = super().merge_environment_settings(*args, **kwargs)
        if self.ca_file is not None:
            settings["verify"] = self.ca_file
        return settings


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials(auth_file: str | os.PathLike[str] | None = None) -> tuple[str, Any] | None:
    """``("token", TOKEN)``, ``("basic", (USER, PASSWORD))`` or None, from ``auth_file`` or the environment.

    The file's first line is ``USER:PASSWORD`` or ``Bearer TOKEN``; it must not be readable by others
    (``chmod 600``). Otherwise ``MDRN_PACS_TOKEN``, or ``MDRN_PACS_USER`` and ``MDRN_PACS_PASSWORD``.
    """
    if auth_file is not None:
        path = Path(auth_file)
        try:
            mode = path.stat().st_mode
            lines = path.read_text().splitlines()
        except OSError as err:
            raise PacsError(f"{path}: cannot read the credentials file ({err.strerror})") from err
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PacsError(f"{path}: the credentials file is readable by others: chmod 600 {path}")
        line = lines[0].strip() if lines else ""
        if line.lower().startswith("bearer "):
            return "token", line[7:].strip()
        user, sep, password = line.partition(":")
        if not sep or not user:
            raise PacsError(f"{path}: the first line must be USER:PASSWORD or 'Bearer TOKEN'")
        return "basic", (user, password)
    if os.environ.get(ENV_TOKEN):
        return "token", os.environ[ENV_TOKEN]
    if os.environ.get(ENV_USER):
        if ENV_PASSWORD not in os.environ:
            raise PacsError(f"{ENV_USER} is set but {ENV_PASSWORD} is not")
        return "basic", (os.environ[ENV_USER], os.environ[ENV_PASSWORD])
    return None


@dataclass
class StudyInfo:
    """A study as listed (no patient data unless initials were asked for)."""

    uid: str
    date: str
    modalities: str
    description: str
    n_series: int
    n_instances: int
    initials: str = ""


@dataclass
class SeriesInfo:
    """A series of a study as listed."""

    uid: str
    modality: str
    number: str
    description: str
    n_instances: int


def _value(item: dict[str, Any], tag: str, default: Any = "") -> Any:
    values = item.get(tag, {}).get("Value") or [default]
    value = values[0]
    if isinstance(value, dict):  # a person name
        return value.get("Alphabetic", default)
    return value


def initials(name: str) -> str:
    """Initials of a DICOM person name (``Doe^Jane`` -> ``J.D.``)."""
    parts = [p for p in str(name).split("=")[0].split("^")[:2] if p.strip()]
    order = parts[1:2] + parts[:1]
    return "".join(f"{p.strip()[0].upper()}." for p in order)


class PacsClient:
    """A DICOMweb connection (a ``DICOMwebClient``) whose errors are one-line :class:`PacsError`."""

    def __init__(self, url: str, client: Any) -> None:
        self.url = url
        self.client = client

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except requests.exceptions.SSLError as err:
            raise PacsError(
                f"{self.url}: the server's TLS certificate is not trusted ({_reason(err)}); give the PACS's "
                "CA certificate with --ca-file"
            ) from err
        except (requests.ConnectionError, requests.Timeout) as err:
            raise PacsError(f"{self.url}: cannot reach the PACS while {what} ({_reason(err)})") from err
        except requests.HTTPError as err:
            code = err.response.status_code if err.response is not None else "?"
            hint = {
                401: f": the PACS wants credentials (set {ENV_USER} and {ENV_PASSWORD}, {ENV_TOKEN}, or "
                "--auth-file)",
                403: ": the credentials are not allowed to do this",
                404: ": not found (is the URL the DICOMweb root, e.g. http://host:8042/dicom-web?)",
            }.get(code, "")
            raise PacsError(f"{self.url}: HTTP {code} while {what}{hint}") from err
        except requests.RequestException as err:  # an answer cut off or not what was asked (a broken proxy)
            raise PacsError(f"{self.url}: broken answer of the PACS while {what} ({_reason(err)})") from err

    def studies(self, *, limit: int = 100, with_initials: bool = False) -> list[StudyInfo]:
        """The PACS's studies (QIDO-RS), newest first; patient initials only if asked for."""
        fields = [
            "StudyDescription",
            "ModalitiesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        ] + (["PatientName"] if with_initials else [])
        found = self._call("listing studies", self.client.search_for_studies, fields=fields, limit=limit)
        out = []
        for item in found:
            mods = item.get("00080061", {}).get("Value") or []
            out.append(
                StudyInfo(
                    uid=str(_value(item, "0020000D")),
                    date=str(_value(item, "00080020")),
                    modalities="/".join(str(m) for m in mods),
                    description=str(_value(item, "00081030")),
                    n_series=int(_value(item, "00201206", 0) or 0),
                    n_instances=int(_value(item, "00201208", 0) or 0),
                    initials=initials(_value(item, "00100010")) if with_initials else "",
                )
            )
        return sorted(out, key=lambda s: s.date, reverse=True)

    def series(self, study: str) -> list[SeriesInfo]:
        """The series of ``study`` (QIDO-RS); :class:`PacsError` if the study is unknown."""
        found = self._call(
            f"finding the series of study {study}",
            self.client.search_for_series,
            study_instance_uid=study,
            fields=["SeriesDescription", "NumberOfSeriesRelatedInstances"],
        )
        if not found:
            raise PacsError(f"{self.url}: study {study} not found (no series)")
        out = [
            SeriesInfo(
                uid=str(_value(item, "0020000E")),
                modality=str(_value(item, "00080060")),
                number=str(_value(item, "00200011")),
                description=str(_value(item, "0008103E")),
                n_instances=int(_value(item, "00201209", 0) or 0),
            )
            for item in found
        ]
        return sorted(out, key=lambda s: (int(s.number) if s.number.isdigit() else 0, s.uid))

    def instances(self, study: str, series: str) -> list[tuple[str, str]]:
        """(SOP Instance UID, SOP Class UID) of each instance of a series (QIDO-RS; empty if none)."""
        try:
            found = self.client.search_for_instances(
                study_instance_uid=study,
                series_instance_uid=series,
                fields=["SOPClassUID"],
                get_remaining=True,
            )
        except requests.HTTPError as err:
            if err.response is not None and err.response.status_code == 404:
                return []
            return self._call(f"listing series {series}", _raise, err)
        except Exception as err:  # noqa: BLE001 - mapped to one line by _call
            return self._call(f"listing series {series}", _raise, err)
        return [(str(_value(i, "00080018")), str(_value(i, "00080016"))) for i in found]

    def read(
        self, study: str, series: str, sop: str, dest: Path, *, max_bytes: int = MAX_INSTANCE_BYTES
    ) -> None:
        """Read one instance (WADO-RS, in the transfer syntax the PACS holds) into the file ``dest``, as the
        PACS sent it: streamed through a temporary file beside ``dest``, at most ``max_bytes`` bytes."""
        import pydicom
        from dicomweb_client import URI
        from pydicom.errors import InvalidDicomError

        prefix = getattr(self.client, "wado_url_prefix", None)
        try:
            url = str(URI(self.client.base_url + (f"/{prefix}" if prefix else ""), study, series, sop))
        except ValueError as err:
            raise PacsError(f"{self.url}: instance {sop}: cannot be asked for ({_reason(err)})") from err
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        part = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                self._call(f"reading instance {sop}", self._stream, url, out, max_bytes)
            pydicom.dcmread(part, stop_before_pixels=True)
            part.replace(dest)
        except TooLarge as err:
            raise PacsError(f"{self.url}: instance {sop}: the PACS's answer is {err}") from err
        except InvalidDicomError as err:
            raise PacsError(f"{self.url}: instance {sop}: the PACS's answer is not a DICOM instance") from err
        except (AnswerError, ValueError, KeyError, IndexError, EOFError) as err:  # framing or header broken
            raise PacsError(
                f"{self.url}: instance {sop}: unreadable answer of the PACS ({_reason(err)})"
            ) from err
        finally:
            part.unlink(missing_ok=True)

    def _stream(self, url: str, out: BinaryIO, limit: int) -> int:
        """GET a WADO-RS instance through the client's session (its credentials, CA file, retries) into
        ``out``; returns the bytes written."""
        # dicomweb-client has no public accessor of the session connect() gave it, nor of its timeout
        session, timeout = self.client._session, self.client._timeout
        headers = {"Accept": _ACCEPT_INSTANCE}
        with session.get(url, headers=headers, stream=True, timeout=timeout) as answer:
            answer.raise_for_status()
            length = answer.headers.get("Content-Length", "")
            plain = answer.headers.get("Content-Encoding", "identity").lower() == "identity"
            declared = int(length) if length.isdigit() and plain else None
            chunks = answer.iter_content(_READ_CHUNK)
            return write_answer(chunks, answer.headers.get("Content-Type", ""), out, limit, declared)

    def store(self, paths: Sequence[Path]) -> list[tuple[Path, str]]:
        """Store files (STOW-RS, one request); returns the files the PACS refused, with its reason.

        Raises :class:`mdrn.pacs.series.SendFailed` when the PACS cannot be reached.
        """
        import pydicom

        datasets = [pydicom.dcmread(p) for p in paths]
        try:
            answer = self._call(f"storing {len(paths)} instance(s)", self.client.store_instances, datasets)
        except PacsError as err:
            if "cannot reach" in str(err):
                raise SendFailed(str(err)) from err
            return [(p, str(err)) for p in paths]
        by_uid = {str(ds.SOPInstanceUID): p for ds, p in zip(datasets, paths)}
        refused = []
        for item in getattr(answer, "FailedSOPSequence", None) or []:
            uid = str(item.get("ReferencedSOPInstanceUID", ""))
            if uid in by_uid:
                refused.append(
                    (by_uid[uid], f"refused by the PACS (failure reason {item.get('FailureReason', '?')})")
                )
        answered = {
            str(i.get("ReferencedSOPInstanceUID", "")) for i in answer.get("ReferencedSOPSequence", [])
        }
        answered |= {str(i.get("ReferencedSOPInstanceUID", "")) for i in answer.get("FailedSOPSequence", [])}
        unconfirmed = [ds for ds in datasets if str(ds.SOPInstanceUID) not in answered]
        if unconfirmed:  # an answer naming neither (empty, or one the client could not read): ask the PACS
            refused += self._not_held(unconfirmed, by_uid)
        return refused

    def _not_held(self, datasets: Sequence[Any], by_uid: dict[str, Path]) -> list[tuple[Path, str]]:
        """The files of ``datasets`` the PACS does not list (QIDO-RS) after a store that did not say."""
        series: dict[tuple[str, str], list[str]] = {}
        for ds in datasets:
            series.setdefault((str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)), []).append(
                str(ds.SOPInstanceUID)
            )
        missing = []
        for (study, uid), sops in series.items():
            try:
                held = {sop for sop, _ in self.instances(study, uid)}
            except PacsError:
                held = set()
            why = "the PACS's answer did not confirm it and the PACS does not list it"
            missing += [(by_uid[sop], why) for sop in sops if sop not in held]
        return missing


def _raise(err: BaseException) -> None:
    raise err


def _reason(err: BaseException) -> str:
    """The innermost cause of a requests error, short (no URL repeated, no object addresses)."""
    inner: BaseException = err
    while inner.__context__ is not None and not isinstance(inner.__context__, KeyError):
        inner = inner.__context__
    text = str(getattr(inner, "reason", None) or inner)
    for marker in ("Errno", "CERTIFICATE_VERIFY_FAILED", "timed out", "refused"):
        if marker in text:
            return text[text.index(marker) - (1 if marker == "Errno" else 0) :].split(")")[0].strip("[] '\"")
    return text.splitlines()[0][:160] if text else type(err).__name__


def connect(
    url: str,
    *,
    auth_file: str | os.PathLike[str] | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    insecure_http: bool = False,
    timeout: float = 60.0,
) -> PacsClient:
    """A client of the DICOMweb root ``url``; checks the URL, the credentials and the CA file first."""
    try:
        from dicomweb_client import DICOMwebClient
    except ModuleNotFoundError as exc:  # the pacs extra is not installed
        raise PacsError(f"DICOMweb needs {exc.name}, not installed here: pip install 'mdrn[pacs]'") from exc

    for name in ("dicomweb_client", "urllib3", "requests"):
        logging.getLogger(name).setLevel(logging.WARNING)  # their debug lines carry headers and UIDs
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError(f"{url}: not an http(s) URL of a DICOMweb root (e.g. https://pacs:8042/dicom-web)")
    if parts.username is not None or parts.password is not None:  # it would be in every message and in ps
        bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise PacsError(
            f"{bare}: credentials in the URL are refused (they would show in every message and in the "
            f"process list): set {ENV_USER} and {ENV_PASSWORD}, {ENV_TOKEN}, or use --auth-file"
        )
    auth = credentials(auth_file)
    if auth and parts.scheme == "http" and not _is_loopback(parts.hostname) and not insecure_http:
        raise PacsError(
            f"{url}: refusing to send credentials unencrypted to {parts.hostname}: use https "
            "(with --ca-file for a hospital CA), or --insecure-http on a network you trust"
        )
    session = _Session()
    # a kept-alive connection the server has closed is retried (every request here may be repeated:
    # reads are reads, and a store of the same stable UIDs stores nothing twice)
    retry = Retry(total=3, connect=3, read=2, status=0, other=0, allowed_methods=None, backoff_factor=0.2)
    for prefix in ("http://", "https://"):
        session.mount(prefix, requests.adapters.HTTPAdapter(max_retries=retry, pool_maxsize=2 * READ_THREADS))
    if ca_file is not None:
        if not Path(ca_file).is_file():
            raise PacsError(f"{ca_file}: CA file not found")
        if parts.scheme != "https":
            raise PacsError(f"{url}: --ca-file is for https URLs")
        session.verify = session.ca_file = str(ca_file)
    if auth is not None:
        kind, value = auth
        if kind == "token":
            session.headers["Authorization"] = f"Bearer {value}"
        else:
            session.auth = value
    client = DICOMwebClient(url.rstrip("/"), session=session, timeout=timeout)
    client.set_http_retry_params(retry=False)
    return PacsClient(url.rstrip("/"), client)


def add_connection_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The options that reach a PACS by DICOMweb (``mdrn-pacs`` and ``mdrn-app --dicomweb``)."""
    p.add_argument(
        "--dicomweb",
        required=required,
        default=None,
        metavar="URL",
        help="the PACS's DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web",
    )
    p.add_argument(
        "--auth-file",
        type=Path,
        default=None,
        help="file whose first line is USER:PASSWORD or "
        f"'Bearer TOKEN' (chmod 600); default: {ENV_USER}/{ENV_PASSWORD} or {ENV_TOKEN}",
    )
    p.add_argument("--ca-file", type=Path, default=None, help="CA certificate(s) (PEM) of the PACS's https")
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow sending credentials over plain http to another computer",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each answer of the PACS")


def connect_args(args: argparse.Namespace) -> PacsClient:
    """:func:`connect` with the options of :func:`add_connection_arguments`."""
    return connect(
        args.dicomweb,
        auth_file=args.auth_file,
        ca_file=args.ca_file,
        insecure_http=args.insecure_http,
        timeout=args.timeout,
    )


def _is_own_result(path: Path) -> bool:
    """Whether a downloaded instance is an image mdrn derived (not enlarged again)."""
    from mdrn.io.dicom import is_mdrn_derived, read_header

    try:
        return is_mdrn_derived(read_header(path))
    except ValueError:
        return False


def _read_all(pacs: PacsClient, study: str, series: str, uids: Sequence[str], folder: Path) -> Iterator[Path]:
    """Read instances into ``folder``, a few requests in flight (never the whole series queued in memory);
    yields each file in order as it lands."""
    with ThreadPoolExecutor(READ_THREADS) as pool:
        window: deque[tuple[str, Any]] = deque()
        for uid in uids:
            window.append((uid, pool.submit(pacs.read, study, series, uid, instance_file(folder, uid))))
            if len(window) >= 2 * READ_THREADS:
                done, future = window.popleft()
                future.result()
                yield instance_file(folder, done)
        while window:
            done, future = window.popleft()
            future.result()
            yield instance_file(folder, done)


def read_series(pacs: PacsClient, study: str, series: str, folder: Path) -> list[Path]:
    """Every instance of a series (WADO-RS, the PACS's transfer syntax) as ``folder/<SOP UID>.dcm``."""
    folder.mkdir(parents=True, exist_ok=True)
    return list(_read_all(pacs, study, series, [uid for uid, _ in pacs.instances(study, series)], folder))


def enlarge_study(
    pacs: PacsClient,
    study: str,
    enlarger: Enlarger,
    *,
    series: Sequence[str] = (),
    say: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> list[SeriesResult]:
    """Enlarge the image series of ``study`` (or ``series``) and store each derived series on the PACS.

    ``say`` gets one line per event (UIDs and counts only). Raises :class:`PacsError` for an unknown study
    or series, or a PACS that cannot be reached before anything is stored; a series that fails later is
    in the results (``not_stored``), and the other series are still processed.
    """
    listed = pacs.series(study)
    known = {s.uid: s for s in listed}
    unknown = [uid for uid in series if uid not in known]
    if unknown:
        raise PacsError(f"{pacs.url}: series {', '.join(unknown)} not in study {study}")
    derived_uids = {enlarger.how.series_uid(s.uid): s.uid for s in listed}
    chosen = [known[uid] for uid in series] if series else listed
    root = Path(tempfile.mkdtemp(prefix="mdrn-pacs-", dir=work_dir))  # private: 0700
    results = []
    try:
        for info in chosen:
            if info.uid in derived_uids:
                say(f"series {info.uid}: mdrn's result of series {derived_uids[info.uid]}: skipped")
                continue
            result = _one_series(pacs, study, info, enlarger, root, say, progress)
            if result is not None:
                results.append(result)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def _one_series(
    pacs: PacsClient,
    study: str,
    info: SeriesInfo,
    enlarger: Enlarger,
    root: Path,
    say: Callable[[str], None],
    progress: Callable[[int, int], None] | None,
) -> SeriesResult | None:
    derived = enlarger.how.series_uid(info.uid)
    todo: list[str] = []
    try:
        instances = pacs.instances(study, info.uid)
        have = {uid for uid, _ in pacs.instances(study, derived)}
        todo = [uid for uid, _ in instances if enlarger.how.instance_uid(uid) not in have]
        already = len(instances) - len(todo)
        if not todo:
            say(f"series {info.uid}: all {already} derived instance(s) already stored in series {derived}")
            return SeriesResult(info.uid, derived, images=already)
        folder = instance_file(root, info.uid).with_suffix("")  # a UID, never a path of the PACS's choosing
        folder.mkdir()
        files = _read_all(pacs, study, info.uid, todo, folder)
        first = next(files)
        if already == 0 and _is_own_result(first):
            files.close()
            shutil.rmtree(folder, ignore_errors=True)
            say(f"series {info.uid}: images derived by mdrn: skipped (not enlarged again)")
            return None
        for _ in files:
            pass
    except (PacsError, ValueError) as err:  # the PACS went away, or answered nonsense
        say(f"error: series {info.uid}: nothing stored: {err}")
        return SeriesResult(info.uid, derived, images=len(todo), error=str(err))

    def send(paths: list[Path]) -> list[tuple[Path, str]]:
        return pacs.store(paths)

    try:
        result = enlarge_series(folder, enlarger, send, source_series=info.uid, progress=progress)
    except SeriesError as err:
        shutil.rmtree(folder, ignore_errors=True)
        say(f"error: {err}")
        return SeriesResult(info.uid, derived, images=len(todo), error=str(err))
    for line in result.skipped:
        say(f"series {info.uid}: {line}")
    line = result.summary()
    if already:
        line += f" ({already} already there from an earlier run)"
    say(line if result.ok else f"error: {line}")
    return result
