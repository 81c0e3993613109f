"""``mdrn-pacs listen`` against a real Orthanc: the PACS C-STOREs a series, the node sends its result back.

The node runs as the command users start (a subprocess of this module, bicubic: the model's path is tested
over DICOMweb in tests/test_pacs.py) and is registered in the session's Orthanc as modality ``mdrn``.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pacs_data import (
    assert_private,
    certificate,
    check_derived,
    download_series,
    make_study,
    series_uids,
    upload,
    upscale_files,
)

pytest.importorskip("dicomweb_client")
pytest.importorskip("pynetdicom")

ROOT = Path(__file__).resolve().parents[1]


class NodeProcess:
    """A running ``mdrn-pacs listen`` and its output."""

    def __init__(self, proc: subprocess.Popen, log: Path, work: Path) -> None:
        self.proc, self.log, self.work = proc, log, work

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if self.proc.poll() is not None:
                pytest.fail(f"mdrn-pacs listen exited ({self.proc.returncode}):\n{out}")
            time.sleep(0.2)
        pytest.fail(f"{text!r} not printed within {timeout:.0f} s:\n{self.output()}")


@pytest.fixture(scope="module")
def node(orthanc, tmp_path_factory) -> Iterator[NodeProcess]:
    work = tmp_path_factory.mktemp("node-work")
    log = work.parent / f"{work.name}.log"
    cmd = [
        sys.executable,
        "-m",
        "mdrn.pacs",
        "listen",
        "--ae",
        "MDRN",
        "--port",
        str(orthanc.node_port),
        "--send-to",
        f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",
        "--scale",
        "2",
        "--model",
        "bicubic",
        "--stable-after",
        "1",
        "--work-dir",
        str(work),
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    running = NodeProcess(proc, log, work)
    try:
        running.wait_for("listening as MDRN")
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert "stopped; temporary folder deleted" in running.output()
    assert list(work.iterdir()) == []  # nothing received is left behind
    assert_private(running.output())


def _orthanc_series_id(orthanc: Any, series: str) -> str:
    (sid,) = [r["ID"] for r in orthanc.rest("POST", "/tools/lookup", data=series) if r["Type"] == "Series"]
    return sid


@pytest.mark.slow
def test_orthanc_sends_a_series_and_gets_the_derived_series_back(orthanc, node, tmp_path) -> None:

    assert orthanc.rest("POST", "/modalities/mdrn/echo", json={}) == {}  # C-ECHO from the PACS
    study = make_study(tmp_path / "ct", 20)
    upload(orthanc, study.files)
    job = orthanc.rest(
        "POST",
        "/modalities/mdrn/store",
        json={"Resources": [_orthanc_series_id(orthanc, study.series)], "Synchronous": True},
    )
    assert job["InstancesCount"] == 20 and job["FailedInstancesCount"] == 0
    (root,) = node.work.iterdir()
    assert root.name.startswith("mdrn-node-") and stat.S_IMODE(root.stat().st_mode) == 0o700  # private
    out = node.wait_for(f"series {study.series} -> derived series")
    (line,) = [x for x in out.splitlines() if f"series {study.series} -> derived series" in x]
    assert "20 instance(s) sent to ORTHANC@127.0.0.1" in line and "error" not in line
    assert f"series {study.series}: 20 instance(s) received from ORTHANC, enlarging" in out
    assert list(root.iterdir()) == []  # received and derived files deleted once sent
    (derived,) = series_uids(orthanc, study.study) - {study.series}
    assert derived in line
    got = download_series(orthanc, derived, tmp_path / "pacs")
    check_derived(study, got, upscale_files(tmp_path / "ct", tmp_path / "files"), 2)
    assert_private(out)


def _associate(port: int, calling: str, contexts: list[tuple[str, list[str]]], tls: Any = None) -> Any:
    from pynetdicom import AE, build_context

    ae = AE(ae_title=calling)
    ae.requested_contexts = [build_context(a, ts) for a, ts in contexts]
    return ae.associate("127.0.0.1", port, ae_title="MDRN", tls_args=tls)


def test_an_ae_title_not_on_the_allow_list_is_refused(orthanc, node) -> None:
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom.sop_class import Verification

    assoc = _associate(orthanc.node_port, "INTRUDER", [(Verification, [ExplicitVRLittleEndian])])
    assert assoc.is_rejected
    out = node.wait_for("refused an association from AE 'INTRUDER'")
    (line,) = [x for x in out.splitlines() if "INTRUDER" in x]
    assert line.endswith("not on the allow-list (ORTHANC; see --allow)")


def test_a_transfer_syntax_without_a_decoder_is_refused_naming_the_package(orthanc, node) -> None:
    from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless
    from pynetdicom.sop_class import MRImageStorage, Verification

    from mdrn.io.dicom import missing_decoder

    if missing_decoder(JPEGLSLossless) is None:
        pytest.skip("a JPEG-LS decoder is installed here: the syntax is accepted")
    assoc = _associate(
        orthanc.node_port,
        "ORTHANC",
        [(Verification, [ExplicitVRLittleEndian]), (MRImageStorage, [JPEGLSLossless])],
    )
    assert assoc.is_established
    assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == [Verification]
    assoc.release()
    out = node.wait_for("refused MR Image Storage offered by ORTHANC in JPEG-LS Lossless")
    assert "pip install 'pylibjpeg>=2.0' 'pylibjpeg-libjpeg>=2.1'" in out


def test_a_failing_series_does_not_stop_the_node(orthanc, node, tmp_path) -> None:
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom.sop_class import CTImageStorage

    bad, good = make_study(tmp_path / "bad", 2), make_study(tmp_path / "good", 2)
    for path in bad.files:  # pixel data too short for the rows it declares
        ds = pydicom.dcmread(path)
        ds.Rows = 256
        ds.save_as(path, enforce_file_format=True)
    assoc = _associate(orthanc.node_port, "ORTHANC", [(CTImageStorage, [ExplicitVRLittleEndian])])
    assert assoc.is_established
    for path in bad.files:
        assert assoc.send_c_store(path).Status == 0
    assoc.release()
    out = node.wait_for(f"error: series {bad.series} -> derived series")
    (line,) = [x for x in out.splitlines() if f"error: series {bad.series}" in x]
    assert "0 instance(s) sent" in line and "2 NOT stored (" in line
    assoc = _associate(orthanc.node_port, "ORTHANC", [(CTImageStorage, [ExplicitVRLittleEndian])])
    for path in good.files:
        assert assoc.send_c_store(path).Status == 0
    assoc.release()
    out = node.wait_for(f"series {good.series} -> derived series")
    assert (
        "2 instance(s) sent to ORTHANC" in [x for x in out.splitlines() if f"series {good.series} ->" in x][0]
    )
    assert len(series_uids(orthanc, good.study)) == 1  # the derived series (the source went only to the node)


def test_dicom_tls_both_ways(tmp_path) -> None:
    """The node serves TLS, checks the peer's certificate against --tls-ca, and sends back over TLS."""
    pytest.importorskip("cryptography")
    import ssl

    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    from mdrn.pacs.node import Destination, Node
    from mdrn.pacs.sandbox import free_port
    from mdrn.pacs.series import Enlarger

    cert, key = certificate(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cert))
    server.load_cert_chain(str(cert), str(key))
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    client.load_cert_chain(str(cert), str(key))
    received = []

    def on_store(event: Any) -> int:
        received.append(event.dataset.SOPInstanceUID)
        return 0

    pacs = AE(ae_title="PACS")  # the PACS's own TLS Storage SCP, receiving the derived series
    pacs.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian])
    pacs_server = pacs.start_server(
        ("127.0.0.1", 0), block=False, ssl_context=server, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    lines: list[str] = []
    study = make_study(tmp_path / "ct", 2)
    try:
        with Node(
            Enlarger.create("bicubic", 2),
            send_to=Destination("PACS", "127.0.0.1", pacs_server.server_address[1]),
            port=free_port(),
            stable_after=0.5,
            work_dir=tmp_path,
            tls_cert=cert,
            tls_key=key,
            tls_ca=cert,
            say=lines.append,
        ) as node:
            plain = _associate(node.port, "PACS", [(CTImageStorage, [ExplicitVRLittleEndian])])
            assert not plain.is_established  # no TLS: no association
            assoc = _associate(
                node.port, "PACS", [(CTImageStorage, [ExplicitVRLittleEndian])], tls=(client, "127.0.0.1")
            )
            assert assoc.is_established
            for path in study.files:
                assert assoc.send_c_store(path).Status == 0
            assoc.release()
            deadline = time.monotonic() + 120
            while len(received) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        pacs_server.shutdown()
    assert len(received) == 2, lines
    assert "(TLS)" in lines[0]


def test_stopping_mid_series_leaves_no_patient_data(tmp_path) -> None:
    """SIGTERM or Ctrl-C while a long series is enlarged: the node stops after the slice in hand (not a
    minute later, when a container manager has long killed it, leaving the received series on disk), says
    which series was not finished, and its temporary folder is gone."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    from mdrn.pacs.node import Destination, Node
    from mdrn.pacs.sandbox import free_port
    from mdrn.pacs.series import Enlarger

    received = []
    pacs = AE(ae_title="PACS")  # receives the derived series
    pacs.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian])
    pacs_server = pacs.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, lambda event: received.append(event.dataset.SOPInstanceUID) or 0)],
    )
    enlarger = Enlarger.create("bicubic", 2, device="cpu")
    forward = enlarger.net.forward
    enlarger.net.forward = lambda *a, **k: (time.sleep(2.0), forward(*a, **k))[1]  # 40 slices: 80 s
    study = make_study(tmp_path / "ct", 40)
    work = tmp_path / "work"
    work.mkdir()
    lines: list[str] = []
    node = Node(
        enlarger,
        send_to=Destination("PACS", "127.0.0.1", pacs_server.server_address[1]),
        port=free_port(),
        stable_after=0.2,
        work_dir=work,
        say=lines.append,
    ).start()
    try:
        assoc = _associate(node.port, "PACS", [(CTImageStorage, [ExplicitVRLittleEndian])])
        for path in study.files:
            assert assoc.send_c_store(path).Status == 0
        assoc.release()
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:  # a derived slice is out: mid-series
            time.sleep(0.1)
        assert received, lines
    finally:
        node.stop()
        pacs_server.shutdown()
    assert node._worker is not None and not node._worker.is_alive()  # nothing runs on after stop()
    time.sleep(1)
    assert list(work.iterdir()) == [], lines
    assert any(f"series {study.series}: not finished" in line for line in lines), lines
    assert len(received) < 40


def test_only_a_run_that_ends_with_its_study_keeps_freed_memory_for_reuse() -> None:
    """`mdrn-pacs enlarge` reuses freed memory within a series as `mdrn-upscale` does (the PACS path was
    +32% slower than the files without it, +3.7% with it: `python scripts/bench_pacs.py`); the node, which
    runs for days, gives memory back."""
    from mdrn.pacs.cli import _enlarger, _parser

    study = ["--dicomweb", "http://127.0.0.1:1/dicom-web", "--study", "1.2.3", "--model", "bicubic"]
    enlarge = _parser().parse_args(["enlarge", *study, "--scale", "2"])
    listen = _parser().parse_args(
        ["listen", "--send-to", "PACS@127.0.0.1:104", "--model", "bicubic", "--scale", "2"]
    )
    assert _enlarger(enlarge).opts.reuse_memory is True
    assert _enlarger(listen).opts.reuse_memory is False


def test_an_instance_refused_for_its_uid_opens_no_series(tmp_path: Path) -> None:
    """A C-STORE whose SOP Instance UID cannot name a file is refused (0xC210) before its series is opened:
    no empty series is later processed and logged as '0 instance(s) sent'."""
    from types import SimpleNamespace

    from mdrn.pacs.node import Destination, Node
    from mdrn.pacs.series import Enlarger

    node = Node(Enlarger.create("bicubic", 2), send_to=Destination("PACS", "127.0.0.1", 1), work_dir=tmp_path)
    try:
        from mdrn.io.dicom import quiet_value_warnings

        bad = pydicom.Dataset()
        with quiet_value_warnings():  # a hostile UID is what is tested; pydicom need not warn about it
            bad.SeriesInstanceUID, bad.SOPInstanceUID = "1.2.3", "../../x"
        event = SimpleNamespace(
            dataset=bad, assoc=SimpleNamespace(requestor=SimpleNamespace(ae_title="PACS"))
        )
        assert node._on_store(event) == 0xC210
        assert node._incoming == {} and not any(node.root.iterdir())
    finally:
        node.stop()


@pytest.mark.parametrize("plugins", [("pillow",), ("pillow", "pylibjpeg")])
def test_jpeg_extended_is_accepted_only_with_a_12_bit_jpeg_decoder(monkeypatch, plugins) -> None:
    """Pillow counts as a JPEG Extended decoder but reads only 8-bit JPEG: 12-bit images failed later."""
    from types import SimpleNamespace

    import pydicom.pixels
    from pydicom.uid import ExplicitVRLittleEndian, JPEGExtended12Bit

    from mdrn.io.dicom import missing_decoder
    from mdrn.pacs.node import _syntaxes

    decoder = SimpleNamespace(
        is_available=True, available_plugins=plugins,
        missing_dependencies=["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"],
    )  # fmt: skip
    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: decoder)
    accepted = _syntaxes()
    assert ExplicitVRLittleEndian in accepted
    assert (JPEGExtended12Bit in accepted) == ("pylibjpeg" in plugins)  # else a PACS sends another syntax
    assert missing_decoder(JPEGExtended12Bit) is None  # a file at hand: Pillow decodes the 8-bit ones
    problem = missing_decoder(JPEGExtended12Bit, every_depth=True)  # what the node says when it refuses
    expected = None if "pylibjpeg" in plugins else (
        "JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51) pixel data of 12 bits cannot be decoded "
        "here (Pillow reads only 8-bit JPEG): install a decoder, e.g. pip install 'pylibjpeg>=2.0' "
        "'pylibjpeg-libjpeg>=2.1'"
    )  # fmt: skip
    assert problem == expected


def test_a_node_open_to_the_network_without_tls_warns(tmp_path) -> None:
    """Bound to another address than loopback without TLS, the node says what that exposes (was silent)."""
    from mdrn.pacs.node import Destination, Node
    from mdrn.pacs.sandbox import free_port
    from mdrn.pacs.series import Enlarger

    lines: list[str] = []
    for host in ("0.0.0.0", "127.0.0.1"):
        node = Node(
            Enlarger.create("bicubic", 2), send_to=Destination("PACS", "127.0.0.1", 1), host=host,
            port=free_port(), work_dir=tmp_path, say=lines.append,
        ).start()  # fmt: skip
        node.stop()
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "0.0.0.0 without TLS" in warnings[0] and "--tls-cert" in warnings[0], lines


def test_a_tls_key_readable_by_others_is_refused(tmp_path) -> None:
    """The TLS private key must be private (chmod 600), as the PACS credentials file; nothing is made."""
    pytest.importorskip("cryptography")
    from pacs_data import certificate

    from mdrn.pacs.node import Destination, Node
    from mdrn.pacs.series import Enlarger

    cert, key = certificate(tmp_path)
    key.chmod(0o644)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ValueError, match=r"key.pem: the TLS private key is readable by others: chmod 600"):
        Node(Enlarger.create("bicubic", 2), send_to=Destination("PACS", "127.0.0.1", 1), work_dir=work,
             tls_cert=cert, tls_key=key)  # fmt: skip
    assert list(work.iterdir()) == []  # no temporary folder left behind
