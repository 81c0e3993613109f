"""Downloads with sha256 checks and HTTP Range resume, and archive extraction that cannot leave its folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = [
    "ChecksumError",
    "NetworkUnavailableError",
    "UnsafeArchiveError",
    "download_file",
    "safe_extract",
    "sha256_file",
]

_CHUNK = 1 << 20


class NetworkUnavailableError(RuntimeError):
    """The file could not be fetched; the message names the URL and where to put the file by hand."""

    def __init__(self, url: str, dest: Path, reason: str = "") -> None:
        self.url = url
        self.dest = Path(dest)
        self.reason = reason
        msg = (
            f"could not download {url}"
            + (f" ({reason})" if reason else "")
            + f".\nDownload it by hand (browser, wget, curl) and put it at: {self.dest.resolve()}"
        )
        super().__init__(msg)


class ChecksumError(RuntimeError):
    """A downloaded file's size or sha256 differs from the expected value."""


class UnsafeArchiveError(RuntimeError):
    """An archive member would be written outside the extraction folder (or is a link/device), or the
    archive's declared sizes exceed the free space there."""


def sha256_file(path: str | os.PathLike[str], progress: Callable[[int], None] | None = None) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


def _open_part(path: Path, append: bool) -> IO[bytes]:
    """A ``.part`` file opened for writing (appending to it for a resume) that never follows a symbolic
    link placed at its name (in a shared folder, one could point at any file of the user's)."""
    if path.is_symlink():
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o666), "ab" if append else "wb")


def _check(path: Path, sha256: str | None, sha256_prefix: str | None, expected_bytes: int | None) -> None:
    """Raise ChecksumError if ``path`` does not match the expected size/hash."""
    if expected_bytes is not None and path.stat().st_size != expected_bytes:
        raise ChecksumError(f"{path}: size {path.stat().st_size} bytes, expected {expected_bytes}")
    if sha256 is None and sha256_prefix is None:
        return
    digest = sha256_file(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        raise ChecksumError(f"{path}: sha256 {digest}, expected {sha256}")
    if sha256_prefix is not None and not digest.lower().startswith(sha256_prefix.lower()):
        raise ChecksumError(f"{path}: sha256 {digest} does not start with {sha256_prefix}")


def _is_network_error(exc: BaseException) -> bool:
    """True for failures meaning 'no route to the file' rather than a server answer."""
    if isinstance(exc, urllib.error.HTTPError):
        return False
    return isinstance(exc, urllib.error.URLError | OSError | TimeoutError)


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    expected_bytes: int | None = None,
    resume: bool = True,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (atomic rename from ``dest.part``), resuming and verifying; return dest.

    An existing ``dest`` that matches the checks is kept without any network access. A partial
    ``dest.part`` is continued with an HTTP ``Range`` request when ``resume`` is true (the server may
    ignore it; then the download restarts). No network: ``NetworkUnavailableError`` naming the URL
    and the path to place the file at. Mismatch: ``ChecksumError`` (the bad file is removed).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stale = ""  # said when offline: a file put there by hand that failed its check is gone
    if dest.exists():
        try:
            _check(dest, sha256, sha256_prefix, expected_bytes)
            return dest
        except ChecksumError as exc:
            dest.unlink()
            stale = (
                f"; the file that was there failed its check and was removed: {str(exc).split(': ', 1)[-1]}"
            )
    part = dest.with_name(dest.name + ".part")
    if part.is_symlink():  # not ours: never resumed, written or measured through
        part.unlink()
    if not resume and part.exists():
        part.unlink()
    offset = part.stat().st_size if part.exists() else 0
    if expected_bytes is not None and offset > expected_bytes:
        part.unlink()
        offset = 0

    if offset == 0 or expected_bytes is None or offset < expected_bytes:
        req = urllib.request.Request(url, headers={"User-Agent": "mdrn-download/1.0"})
        if offset and url.startswith(("http://", "https://")):
            req.add_header("Range", f"bytes={offset}-")
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # range not satisfiable: the part is probably complete
                resp = None
            else:
                raise NetworkUnavailableError(url, dest, f"HTTP {exc.code} {exc.reason}{stale}") from exc
        except Exception as exc:
            if _is_network_error(exc):
                raise NetworkUnavailableError(url, dest, f"{getattr(exc, 'reason', exc)}{stale}") from exc
            raise
        if resp is not None:
            with resp:
                status = getattr(resp, "status", None) or resp.getcode()
                mode = "ab" if (offset and status == 206) else "wb"
                if mode == "wb":
                    offset = 0
                total = resp.headers.get("Content-Length")
                total_i = int(total) + offset if total is not None else expected_bytes
                bar = _progress_bar(dest.name, total_i, offset) if progress else None
                try:
                    with _open_part(part, append=mode == "ab") as f:
                        while chunk := resp.read(_CHUNK):
                            f.write(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
                except (urllib.error.URLError, OSError, TimeoutError) as exc:
                    raise NetworkUnavailableError(
                        url, dest, f"connection lost after {part.stat().st_size} bytes; rerun to resume"
                    ) from exc
                finally:
                    if bar is not None:
                        bar.close()
                got = part.stat().st_size
                if total_i is not None and got < total_i:  # the server closed the connection early
                    raise NetworkUnavailableError(
                        url, dest, f"connection lost after {got} of {total_i} bytes; rerun to resume"
                    )
    try:
        _check(part, sha256, sha256_prefix, expected_bytes)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def _progress_bar(name: str, total: int | None, initial: int):  # noqa: ANN202
    """A tqdm bar when tqdm is present, else None."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, leave=False)


def _safe_target(dest: Path, name: str, archive: Path) -> Path:
    """Resolve member ``name`` under ``dest`` or raise UnsafeArchiveError."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {dest}")
    target = (dest / Path(*pure.parts)).resolve() if pure.parts else dest
    if target != dest and dest not in target.parents:
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves outside {dest}")
    return target


_Member = tuple[str, bool, int, Callable[[], IO[bytes]]]  # (name, is a folder, declared size, opener)


def _tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> IO[bytes]:
    src = tf.extractfile(member)
    if src is None:  # pragma: no cover
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} cannot be read")
    return src


def _write_members(archive: Path, dest: Path, members: list[_Member]) -> list[Path]:
    """Check every member's target first, then write each file via a .part file renamed into place."""
    for name, _, _, _ in members:
        _safe_target(dest, name, archive)
    need, free = sum(size for _, _, size, _ in members), shutil.disk_usage(dest).free
    if need > free:  # the declared sizes bound what is written (zipfile and tarfile read no further)
        raise UnsafeArchiveError(
            f"{archive}: its files need {need:,} bytes, {dest} has {free:,} free; nothing was extracted"
        )
    out: list[Path] = []
    for name, is_dir, _, open_member in members:
        target = _safe_target(dest, name, archive)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        try:
            with open_member() as src, _open_part(tmp, append=False) as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)
        out.append(target)
    return out


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Extract a zip or tar archive under ``dest``; refuse members escaping it, links, and devices.

    Every member is checked before anything is written; returns the extracted file paths. A damaged
    or truncated archive is one ValueError naming it (the member being written is removed).
    """
    archive = Path(archive)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    try:
        return _extract(archive, dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise ValueError(
            f"{archive}: damaged or truncated archive ({exc}); delete it and download it again"
        ) from exc


def _extract(archive: Path, dest: Path) -> list[Path]:
    """safe_extract's work, ``dest`` resolved."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            zmembers = []
            for info in zf.infolist():
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link")
                zmembers.append(
                    (info.filename, info.is_dir(), info.file_size, lambda info=info: zf.open(info))
                )
            return _write_members(archive, dest, zmembers)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tmembers = []
            for m in tf.getmembers():
                if m.issym() or m.islnk():
                    raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a link ({m.linkname!r})")
                if not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(f"{archive}: member {m.name!r} is not a regular file or folder")
                tmembers.append((m.name, m.isdir(), m.size, lambda m=m: _tar_member(tf, m, archive)))
            return _write_members(archive, dest, tmembers)
    raise ValueError(f"{archive}: not a zip or tar archive")
