"""mdrn.io.download: checksums, resume over HTTP Range (local server), offline message, safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from mdrn.io.download import (
    ChecksumError,
    NetworkUnavailableError,
    UnsafeArchiveError,
    download_file,
    safe_extract,
)

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file.bin, honouring `Range: bytes=N-`; records the ranges asked for."""

    ranges: list[str | None] = []
    sent: list[int] = []

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = 0
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            body = PAYLOAD[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            body = PAYLOAD
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        type(self).sent.append(len(body))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server():
    _RangeHandler.ranges = []
    _RangeHandler.sent = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_file_url_checked(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    out = download_file(src.as_uri(), tmp_path / "d" / "x.bin", sha256=digest, expected_bytes=len(PAYLOAD))
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "d" / "x.bin.part").exists()
    # present and valid: kept, no access to the source
    src.unlink()
    assert download_file(src.as_uri(), out, sha256_prefix=digest[:8]) == out


def test_checksum_mismatch_removes_file(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    with pytest.raises(ChecksumError, match="sha256"):
        download_file(src.as_uri(), tmp_path / "x.bin", sha256="0" * 64)
    with pytest.raises(ChecksumError, match="does not start with"):
        download_file(src.as_uri(), tmp_path / "x.bin", sha256_prefix="deadbeef")
    with pytest.raises(ChecksumError, match="size"):
        download_file(src.as_uri(), tmp_path / "x.bin", expected_bytes=5)
    assert not (tmp_path / "x.bin").exists() and not (tmp_path / "x.bin.part").exists()


def test_a_symlink_placed_at_a_part_name_is_not_followed(tmp_path: Path) -> None:
    # in a shared data folder, someone could place x.bin.part (or, where an archive is extracted,
    # DIV2K/0001.png.part) as a link to one of the user's files: the download or the extraction wrote there
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.bin.part").symlink_to(victim)
    out = download_file(src.as_uri(), tmp_path / "d" / "x.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert out.read_bytes() == PAYLOAD and not out.is_symlink()
    arc = _zip(tmp_path / "a.zip", {"DIV2K/0001.png": b"a"})
    (tmp_path / "out" / "DIV2K").mkdir(parents=True)
    (tmp_path / "out" / "DIV2K" / "0001.png.part").symlink_to(victim)
    safe_extract(arc, tmp_path / "out")
    assert (tmp_path / "out" / "DIV2K" / "0001.png").read_bytes() == b"a"
    assert victim.read_bytes() == b"precious"


def test_resume_with_range(tmp_path: Path, server: str) -> None:
    dest = tmp_path / "file.bin"
    half = len(PAYLOAD) // 3
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:half])
    out = download_file(
        f"{server}/file.bin", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), expected_bytes=len(PAYLOAD)
    )
    assert out.read_bytes() == PAYLOAD
    assert _RangeHandler.ranges == [f"bytes={half}-"]
    assert _RangeHandler.sent == [len(PAYLOAD) - half]


class _DroppingHandler(_RangeHandler):
    """Like _RangeHandler, but the first answer declares the whole length and closes after a third of it."""

    dropped = False

    def do_GET(self) -> None:  # noqa: N802
        if type(self).dropped:
            return super().do_GET()
        type(self).dropped = True
        type(self).ranges.append(self.headers.get("Range"))
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True


@pytest.mark.parametrize("expected_bytes", [None, len(PAYLOAD)])
def test_connection_lost_midway_keeps_the_part_and_resumes(
    tmp_path: Path, expected_bytes: int | None
) -> None:
    _DroppingHandler.dropped = False
    _DroppingHandler.ranges = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DroppingHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
        dest, digest = tmp_path / "file.bin", hashlib.sha256(PAYLOAD).hexdigest()
        with pytest.raises(NetworkUnavailableError, match="connection lost after .* rerun to resume"):
            download_file(url, dest, sha256=digest, expected_bytes=expected_bytes, progress=False)
        assert (tmp_path / "file.bin.part").stat().st_size == len(PAYLOAD) // 3
        out = download_file(url, dest, sha256=digest, expected_bytes=expected_bytes, progress=False)
        assert out.read_bytes() == PAYLOAD
        assert _DroppingHandler.ranges == [None, f"bytes={len(PAYLOAD) // 3}-"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_no_resume_restarts(tmp_path: Path, server: str) -> None:
    (tmp_path / "file.bin.part").write_bytes(b"garbage")
    out = download_file(f"{server}/file.bin", tmp_path / "file.bin", resume=False)
    assert out.read_bytes() == PAYLOAD
    assert _RangeHandler.ranges == [None]


def test_offline_message_names_url_and_path(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/DIV2K_train_HR.zip"
    dest = tmp_path / "DIV2K_train_HR.zip"
    with pytest.raises(NetworkUnavailableError) as ei:
        download_file(url, dest, timeout=5)
    assert url in str(ei.value) and str(dest.resolve()) in str(ei.value)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_safe_extract_zip(tmp_path: Path) -> None:
    arc = _zip(tmp_path / "a.zip", {"DIV2K/0001.png": b"a", "DIV2K/sub/0002.png": b"b"})
    files = safe_extract(arc, tmp_path / "out")
    assert sorted(p.relative_to((tmp_path / "out").resolve()).as_posix() for p in files) == [
        "DIV2K/0001.png",
        "DIV2K/sub/0002.png",
    ]
    assert (tmp_path / "out" / "DIV2K" / "sub" / "0002.png").read_bytes() == b"b"


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_safe_extract_zip_refuses_escape(tmp_path: Path, name: str) -> None:
    arc = _zip(tmp_path / "a.zip", {"ok.txt": b"ok", name: b"x"})
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()  # nothing written before the check


def test_safe_extract_tar_refuses_symlink(tmp_path: Path) -> None:
    arc = tmp_path / "a.tar"
    with tarfile.open(arc, "w") as tf:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(arc, tmp_path / "out")


def test_safe_extract_tar(tmp_path: Path) -> None:
    arc = tmp_path / "a.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        data = b"hello"
        info = tarfile.TarInfo("benchmark/Set5/HR/baby.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    files = safe_extract(arc, tmp_path / "out")
    assert [p.read_bytes() for p in files] == [b"hello"]
    with pytest.raises(ValueError, match="not a zip or tar"):
        safe_extract(tmp_path / "out" / "benchmark" / "Set5" / "HR" / "baby.png", tmp_path / "o2")


def test_safe_extract_damaged_archive_is_one_error_naming_it(tmp_path: Path) -> None:
    tar = tmp_path / "benchmark.tar"
    with tarfile.open(tar, "w") as tf:
        for i in range(3):
            info = tarfile.TarInfo(f"benchmark/Set5/HR/{i}.png")
            info.size = len(PAYLOAD)
            tf.addfile(info, io.BytesIO(PAYLOAD))
    tar.write_bytes(tar.read_bytes()[: 2 * len(PAYLOAD)])  # cut inside the second member
    zf = _zip(tmp_path / "d.zip", {"a.bin": PAYLOAD})
    raw = bytearray(zf.read_bytes())
    raw[100] ^= 0xFF  # inside the (stored) member's data: its CRC check fails while it is written
    zf.write_bytes(bytes(raw))
    for arc in (tar, zf):
        out = tmp_path / f"out_{arc.suffix[1:]}"
        with pytest.raises(ValueError, match=f"{arc.name}: damaged or truncated archive") as ei:
            safe_extract(arc, out)
        assert "\n" not in str(ei.value)
        assert not [p for p in out.rglob("*") if p.is_file()]  # no .part left behind


def test_safe_extract_refuses_more_than_the_free_space_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mdrn.io.download as download

    arc = tmp_path / "bomb.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:  # 20 MB of zeros in a few kB
        zf.writestr("small.txt", b"ok")
        zf.writestr("zeros.bin", bytes(20 << 20))
    usage = download.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: usage._replace(free=10 << 20))
    with pytest.raises(
        UnsafeArchiveError, match=r"bomb.zip: its files need 20,971,522 bytes, .* 10,485,760 free"
    ):
        safe_extract(arc, tmp_path / "out")
    assert not [p for p in (tmp_path / "out").rglob("*")]  # refused before anything was written
