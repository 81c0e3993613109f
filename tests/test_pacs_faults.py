"""mdrn-pacs against a DICOMweb server that misbehaves (a broken proxy, a faulty or hostile PACS).

A small in-process server on loopback plays the PACS, because a real Orthanc never sends these answers:
a WADO-RS answer cut off mid-instance or holding no DICOM, a STOW-RS answer that confirms nothing while
the PACS stored nothing. Each must be one line naming the instance, exit code 1, no patient data, and the
private temporary folder left empty; the other series of the study are still enlarged and stored.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pacs_data import assert_private, make_study

pytest.importorskip("dicomweb_client")

from mdrn.pacs.cli import main  # noqa: E402

BOUNDARY = "mdrn-test-boundary"


class FakePacs:
    """A DICOMweb server holding some series; ``broken`` maps a SOP Instance UID to how its WADO-RS
    answer is sent or broken (``cut``: the connection closes mid-instance; ``cut-unsized``: the same
    without a Content-Length; ``garbage``: a part holding no DICOM; ``unsized``: whole, without a
    Content-Length; ``bare``: the file as ``application/dicom``, not multipart); ``stow_silent``:
    STOW-RS answers 200 with an empty status report and stores nothing."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, bytes]] = {}  # series -> SOP UID -> file
        self.study = ""
        self.broken: dict[str, str] = {}
        self.stow_silent = False
        handler = type("Handler", (_Handler,), {"pacs": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"

    def add(self, files: list[Path]) -> None:
        """Hold these DICOM files."""
        for path in files:
            ds = pydicom.dcmread(path)
            self.study = str(ds.StudyInstanceUID)
            self.instances.setdefault(str(ds.SeriesInstanceUID), {})[str(ds.SOPInstanceUID)] = (
                path.read_bytes()
            )

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    pacs: FakePacs
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, items: Any) -> None:
        self._send(json.dumps(items).encode(), "application/dicom+json")

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = self.path.split("?")[0].strip("/").split("/")[1:]  # after dicom-web
        offset = "offset=0" in self.path or "offset=" not in self.path
        if parts == ["studies", self.pacs.study, "series"]:
            return self._json(
                [
                    {"0020000E": {"vr": "UI", "Value": [uid]}, "00200011": {"vr": "IS", "Value": [i + 1]}}
                    for i, uid in enumerate(self.pacs.instances)
                ]
            )
        if len(parts) == 5 and parts[4] == "instances":
            held = self.pacs.instances.get(parts[3], {}) if offset else {}
            return self._json([{"00080018": {"vr": "UI", "Value": [uid]}} for uid in held])
        if len(parts) == 6 and parts[4] == "instances":
            data = self.pacs.instances[parts[3]][parts[5]]
            how = self.pacs.broken.get(parts[5], "")
            if how == "garbage":
                data = b"\x00 not a DICOM instance " * 64
            body = (
                f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                + data
                + f"\r\n--{BOUNDARY}--".encode()
            )
            content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
            if how == "bare":
                body, content_type = data, "application/dicom"
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            if how in ("cut", "garbage", "bare", ""):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if how.startswith("cut") else body)
            self.close_connection = how in ("cut", "cut-unsized", "unsized")  # the end of the body
            return None
        self._send(b"", "text/plain", 404)
        return None

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.headers.get("Transfer-Encoding") == "chunked":
            data = b""
            while size := int(self.rfile.readline().strip(), 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        stored = []
        for part in data.split(b"\r\n--")[:-1]:
            payload = part.partition(b"\r\n\r\n")[2]
            if not payload:
                continue
            ds = pydicom.dcmread(io.BytesIO(payload))
            stored.append(str(ds.SOPInstanceUID))
            if not self.pacs.stow_silent:
                self.pacs.instances.setdefault(str(ds.SeriesInstanceUID), {})[str(ds.SOPInstanceUID)] = (
                    payload
                )
        if self.pacs.stow_silent:
            return self._json({})
        return self._json(
            {
                "00081199": {
                    "vr": "SQ",
                    "Value": [{"00081155": {"vr": "UI", "Value": [uid]}} for uid in stored],
                }
            }
        )


@pytest.fixture
def fake_pacs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePacs]:
    """A fake PACS holding two 3-slice series of one study; mdrn's temporary folders under tmp_path/tmp."""
    for k in ("MDRN_PACS_USER", "MDRN_PACS_PASSWORD", "MDRN_PACS_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    pacs = FakePacs()
    first = make_study(tmp_path / "a", 3)
    second = make_study(tmp_path / "b", 3)
    for path in second.files:  # the same study
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = first.study
        ds.save_as(path)
    pacs.add(first.files + second.files)
    try:
        yield pacs
    finally:
        pacs.close()


def _enlarge(pacs: FakePacs) -> list[str]:
    return [
        "enlarge",
        "--dicomweb",
        pacs.url,
        "--study",
        pacs.study,
        "--scale",
        "2",
        "--model",
        "bicubic",
        "-q",
    ]


def _sources(pacs: FakePacs) -> list[str]:
    return sorted(pacs.instances)


@pytest.mark.parametrize("how", ["cut", "cut-unsized", "garbage"])
def test_a_broken_wado_answer_is_one_line_and_the_other_series_are_stored(fake_pacs, tmp_path, capsys, how):
    first, second = _sources(fake_pacs)
    bad = sorted(fake_pacs.instances[first])[1]
    fake_pacs.broken[bad] = how
    assert main(_enlarge(fake_pacs)) == 1
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and f"series {first}" in errors[0] and bad in errors[0], err
    what = {"cut": "broken answer", "cut-unsized": "answer cut off", "garbage": "not a DICOM instance"}[how]
    assert what in errors[0], errors[0]
    assert "Traceback" not in err
    assert f"series {second} -> derived series" in out and "3 instance(s) stored" in out, out
    assert len(fake_pacs.instances) == 3  # the second series' derived series, nothing of the first
    assert_private(out + err)
    assert list((tmp_path / "tmp").iterdir()) == []  # no patient data left behind


#: run in a fresh process, so that what earlier tests left in this one's heap does not move the figure
_READ_PEAK_RSS_SCRIPT = """
import sys
from pathlib import Path
from mdrn.pacs.dicomweb import connect
from mdrn.perf import set_malloc_reuse

def kib(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])

url, study, series, small, large, folder = sys.argv[1:]
set_malloc_reuse(False)  # as the commands do: freed buffers go back
pacs = connect(url)
pacs.read(study, series, small, Path(folder) / "small.dcm")  # warms up: imports, the connection
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from the current size
start = kib("VmRSS")
pacs.read(study, series, large, Path(folder) / "large.dcm")
print((kib("VmHWM") - start) * 1024)
"""


@pytest.mark.parametrize("how", ["", "unsized", "bare"])
def test_a_large_wado_answer_is_streamed_to_its_file(fake_pacs, tmp_path, how):
    """A 64 MiB instance (multipart with or without a Content-Length, or bare application/dicom) is
    written as the PACS sent it, while the reading process's peak resident memory (Linux: VmHWM reset
    through /proc/self/clear_refs) grows by less than a quarter of it: the answer is never held whole."""
    import os
    import subprocess
    import sys

    import numpy as np
    from pydicom.uid import generate_uid

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to measure the peak resident memory")
    series = _sources(fake_pacs)[0]
    small = sorted(fake_pacs.instances[series])[0]
    ds = pydicom.dcmread(io.BytesIO(fake_pacs.instances[series][small]))
    ds.Rows, ds.Columns = 4096, 8192  # 16 bit: 64 MiB of pixel data
    ds.PixelData = (np.arange(4096 * 8192, dtype=np.uint32) % 4093).astype(np.uint16).tobytes()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "large.dcm", enforce_file_format=True)
    del ds
    fake_pacs.add([tmp_path / "large.dcm"])
    large = str(pydicom.dcmread(tmp_path / "large.dcm", stop_before_pixels=True).SOPInstanceUID)
    size = len(fake_pacs.instances[series][large])
    assert size > 64 * 2**20
    if how:
        fake_pacs.broken[large] = how
    folder = tmp_path / "in"
    folder.mkdir()
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDRN_PACS_")}
    env["PYTHONPATH"] = f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    args = [fake_pacs.url, fake_pacs.study, series, small, large, str(folder)]
    res = subprocess.run(
        [sys.executable, "-c", _READ_PEAK_RSS_SCRIPT, *args], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    growth = int(res.stdout.strip().splitlines()[-1])
    print(f"peak RSS growth reading a {size / 2**20:.1f} MiB answer ({how or 'multipart'}): "
          f"{growth / 2**20:.1f} MiB")  # fmt: skip
    assert growth < size / 4, (growth, size)
    assert (folder / "large.dcm").read_bytes() == fake_pacs.instances[series][large]
    assert sorted(p.name for p in folder.iterdir()) == ["large.dcm", "small.dcm"]


@pytest.mark.parametrize("how", ["", "unsized", "bare"])
def test_a_wado_answer_over_the_size_cap_is_one_line_and_leaves_no_file(fake_pacs, tmp_path, how):
    """An answer larger than the cap (``max_bytes``, lowered here; declared in its Content-Length or
    not) is refused naming the instance and the cap, and nothing of it is left; at the cap it is read."""
    from mdrn.pacs.dicomweb import PacsError, connect

    series = _sources(fake_pacs)[0]
    sop = sorted(fake_pacs.instances[series])[0]
    held = fake_pacs.instances[series][sop]
    if how:
        fake_pacs.broken[sop] = how
    folder = tmp_path / "in"
    folder.mkdir()
    pacs = connect(fake_pacs.url)
    with pytest.raises(PacsError) as caught:
        pacs.read(fake_pacs.study, series, sop, folder / f"{sop}.dcm", max_bytes=len(held) - 1)
    line = str(caught.value)
    assert len(line.splitlines()) == 1 and sop in line and f"{len(held) - 1:,} bytes" in line, line
    assert list(folder.iterdir()) == []  # no partial file
    pacs.read(fake_pacs.study, series, sop, folder / f"{sop}.dcm", max_bytes=len(held))
    assert (folder / f"{sop}.dcm").read_bytes() == held  # the PACS's bytes, not re-encoded
    assert list(folder.iterdir()) == [folder / f"{sop}.dcm"]


def test_the_multipart_parser_finds_the_part_however_the_answer_is_cut_into_chunks():
    """A boundary may straddle chunks (down to one byte each); the framing around the one part is skipped
    (preamble, headers or none, a quoted boundary, an epilogue); what is not one complete part is refused."""
    from mdrn.pacs.multipart import AnswerError, TooLarge, write_answer

    data = b"DICM\r\n--c\r\n-b--b\r\n" * 50 + b"\r\n-"  # near-boundaries inside the body, and at its end
    framed = b"preamble\r\n--b \r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--b--\r\nend"
    for body, content_type in [
        (framed, 'multipart/related; type="application/dicom"; boundary="b"'),
        (b"--b\r\n\r\n" + data + b"\r\n--b--", "Multipart/Related; boundary=b"),
        (data, "application/dicom"),
    ]:
        for n in (1, 7, len(body)):
            out = io.BytesIO()
            chunks = (body[i : i + n] for i in range(0, len(body), n))
            assert write_answer(chunks, content_type, out, len(data)) == len(data)
            assert out.getvalue() == data, (content_type, n)
    multipart = "multipart/related; boundary=b"
    for body, why in [
        (framed[:-9], "cut off"),
        (b"--b\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b--", "more than one instance"),
        (b"--b--", "no instance"),
        (b"x" * 70000, "no multipart boundary"),
        (b"--b\r\n" + b"x" * 70000, "headers never end"),
    ]:
        with pytest.raises(AnswerError, match=why):
            write_answer([body], multipart, io.BytesIO(), 2**20)
    with pytest.raises(AnswerError, match="media type 'text/html'"):
        write_answer([b"<html>"], "text/html", io.BytesIO(), 2**20)
    with pytest.raises(TooLarge, match="limit of 1,000 bytes"):
        write_answer([], multipart, io.BytesIO(), 1000, declared=10**9)  # before a byte is read


def test_a_stow_answer_that_confirms_nothing_is_not_taken_as_stored(fake_pacs, capsys):
    """200 with an empty status report while nothing was stored: each instance is checked (QIDO-RS)."""
    fake_pacs.stow_silent = True
    assert main(_enlarge(fake_pacs)) == 1
    out, err = capsys.readouterr()
    assert "0 instance(s) stored; 3 NOT stored (the PACS's answer did not confirm it" in err, out + err
    assert "6 instance(s) of 2 series NOT stored; run the same command again" in err
    fake_pacs.stow_silent = False
    assert main(_enlarge(fake_pacs)) == 0  # the rerun stores them
    assert len(fake_pacs.instances) == 4 and all(len(v) == 3 for v in fake_pacs.instances.values())


def test_the_app_panel_keeps_a_hostile_series_uid_inside_the_session_folder(tmp_path):
    """A series UID listed by the PACS names a folder of the app: ``../..`` must not lead out of it."""
    gr = pytest.importorskip("gradio")
    from types import SimpleNamespace

    from mdrn.pacs.app_panel import pacs_panel

    class Listing:
        url = "http://127.0.0.1:1/dicom-web"

        def instances(self, study: str, series: str) -> list[tuple[str, str]]:
            return []

    session = SimpleNamespace(folder=tmp_path / "app" / "session", uploads=set())
    with gr.Blocks() as page:
        files = gr.File(file_count="multiple")
        pacs_panel(Listing(), files=files, session_of=lambda request: session)
    (on_open,) = [f.fn for f in page.fns.values() if f.fn.__name__ == "on_open"]
    _, status = on_open("1.2.3", "../../../../escaped", None)
    assert status.startswith("error: not a valid") and "escaped" in status, status
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "app" / "escaped").exists()
    assert on_open("1.2.3", "1.2.3.4", None)[1] == "opened series 1.2.3.4: 0 instance(s); now Enlarge"
    assert (session.folder / "pacs" / "0-1.2.3.4").is_dir()


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")  # this process's own reading of the test files
def test_a_malformed_patient_value_is_not_printed(tmp_path):
    """pydicom's warning about a value it cannot validate quotes the value: a birth date written
    1945-08-17 (a PACS's non-conformant data) must not reach mdrn-pacs's output (a node's journal)."""
    import os
    import subprocess
    import sys

    from pydicom import config

    study = make_study(tmp_path / "ct", 2)
    writing = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        for path in study.files:
            ds = pydicom.dcmread(path)
            ds.PatientBirthDate, ds.PatientName = "1945-08-17", "Doe^Jane\x01"
            ds.save_as(path)
    finally:
        config.settings.writing_validation_mode = writing
    pacs = FakePacs()
    pacs.add(study.files)
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDRN_PACS_")}
    env["PYTHONPATH"] = f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    try:
        res = subprocess.run(
            [sys.executable, "-m", "mdrn.pacs", *_enlarge(pacs)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        pacs.close()
    assert res.returncode == 0, res.stderr
    assert "1945-08-17" not in res.stdout + res.stderr and "Doe" not in res.stdout + res.stderr, res.stderr
