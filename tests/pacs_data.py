"""Helpers of the PACS tests: studies uploaded to the test Orthanc, derived series read back and checked.

The checks are those of a derived series written to files by ``mdrn-upscale`` (tests/test_dicom.py),
here on what the PACS holds: same study, one new series per source series, as many instances out as in,
``DERIVED\\SECONDARY``, pixel spacing / scale, Image Position (Patient) moved to the new first pixel,
Source Image Sequence to the sources, explicit VR little endian, ``dciodvfy`` with no new error, and
pixels equal to ``mdrn-upscale`` on the same files.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from medical_data import DCIODVFY_KNOWN, dciodvfy_errors, make_ct_series
from pydicom.uid import generate_uid

#: Patient data put in every test study: none of it may appear in any output line.
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "PID-4711-XYZ", "PatientBirthDate": "19450817"}
SECRETS = ("Doe", "Jane", "PID-4711", "19450817")
#: The test Orthanc's user (tests/conftest.py).
USER, PASSWORD = "mdrn", "pacs-test-password"


@dataclass
class Study:
    """A generated study on disk (and, once uploaded, in Orthanc)."""

    files: list[Path]
    study: str
    series: str


def make_study(folder: Path, n: int = 20, *, source: str = "CT_small.dcm") -> Study:
    """A one-series study of ``n`` real slices (CT_small.dcm by default: 128x128, 16 bit), its own UIDs."""
    study = generate_uid()
    files = make_ct_series(folder, n, source=source, study=study, tags=dict(PATIENT))
    return Study(files, study, str(pydicom.dcmread(files[0]).SeriesInstanceUID))


def upload(orthanc: Any, files: list[Path]) -> None:
    """Store files in Orthanc through its REST API."""
    for path in files:
        orthanc.upload(path)


def series_uids(orthanc: Any, study: str) -> set[str]:
    """The Series Instance UIDs Orthanc holds in a study."""
    found = orthanc.rest(
        "POST", "/tools/find", json={"Level": "Series", "Query": {"StudyInstanceUID": study}, "Expand": True}
    )
    return {s["MainDicomTags"]["SeriesInstanceUID"] for s in found}


def download_series(orthanc: Any, series: str, dest: Path) -> list[Path]:
    """Every instance of a series, as Orthanc stores it, into ``dest``."""
    (sid,) = [r["ID"] for r in orthanc.rest("POST", "/tools/lookup", data=series) if r["Type"] == "Series"]
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for inst in orthanc.rest("GET", f"/series/{sid}/instances"):
        path = dest / f"{inst['MainDicomTags']['SOPInstanceUID']}.dcm"
        path.write_bytes(orthanc.rest("GET", f"/instances/{inst['ID']}/file"))
        out.append(path)
    return out


def check_derived(
    study: Study, derived: list[Path], upscaled: Path, scale: int, *, dciodvfy: int = 3
) -> list[str]:
    """Check a derived series read back from the PACS against its sources and against ``mdrn-upscale``'s
    output folder ``upscaled`` (same files, same model); returns the tags checked."""
    sources = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in study.files}
    files_out = {
        str(pydicom.dcmread(p).SourceImageSequence[0].ReferencedSOPInstanceUID): p
        for p in sorted(upscaled.iterdir())
    }
    assert len(derived) == len(sources) == len(files_out), (len(derived), len(sources), len(files_out))
    got = [pydicom.dcmread(p) for p in derived]
    assert len({ds.SeriesInstanceUID for ds in got}) == 1, "one derived series"
    assert got[0].SeriesInstanceUID != study.series
    assert len({ds.SOPInstanceUID for ds in got}) == len(got), "no duplicate instance"
    referenced = []
    for ds in got:
        (item,) = ds.SourceImageSequence
        src = pydicom.dcmread(sources[str(item.ReferencedSOPInstanceUID)])
        referenced.append(str(item.ReferencedSOPInstanceUID))
        assert item.ReferencedSOPClassUID == src.SOPClassUID
        assert item.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        assert ds.StudyInstanceUID == study.study == src.StudyInstanceUID
        assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert ds.SOPClassUID == src.SOPClassUID and ds.SOPInstanceUID != src.SOPInstanceUID
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert ds.DerivationCodeSequence[0].CodeValue == "113085"
        assert f"x{scale}" in ds.DerivationDescription and f"x{scale}" in ds.SeriesDescription
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert (ds.Rows, ds.Columns) == (src.Rows * scale, src.Columns * scale)
        assert (ds.BitsStored, ds.PixelRepresentation) == (src.BitsStored, src.PixelRepresentation)
        assert ds.InstanceNumber == src.InstanceNumber
        np.testing.assert_allclose(
            [float(v) for v in ds.PixelSpacing], [float(v) / scale for v in src.PixelSpacing], rtol=1e-6
        )
        iop = np.array([float(v) for v in src.ImageOrientationPatient])
        row_sp, col_sp = (float(v) for v in src.PixelSpacing)
        shift = -(scale - 1) / (2 * scale) * (col_sp * iop[:3] + row_sp * iop[3:])
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient],
            np.array([float(v) for v in src.ImagePositionPatient]) + shift,
            atol=1e-4,
        )
        assert list(ds.ImageOrientationPatient) == list(src.ImageOrientationPatient)
        ref = pydicom.dcmread(files_out[str(item.ReferencedSOPInstanceUID)])
        np.testing.assert_array_equal(ds.pixel_array, ref.pixel_array)  # the file path's pixels
        assert list(ds.ImagePositionPatient) == list(ref.ImagePositionPatient)
    assert sorted(referenced) == sorted(sources), "each source referenced exactly once"
    if dciodvfy:
        for ds, path in list(zip(got, derived))[:dciodvfy]:
            src = sources[str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)]
            assert new_dciodvfy_errors(src, path) == []
    return [
        "StudyInstanceUID (same)",
        "SeriesInstanceUID (one new)",
        "SOPInstanceUID (new, unique)",
        "SOPClassUID",
        "FrameOfReferenceUID",
        "ImageType DERIVED\\SECONDARY",
        "DerivationDescription",
        "DerivationCodeSequence 113085",
        "SourceImageSequence (class, instance, purpose 121322)",
        "SeriesDescription",
        "Rows/Columns x scale",
        "BitsStored/PixelRepresentation",
        "InstanceNumber",
        "PixelSpacing / scale",
        "ImagePositionPatient shifted",
        "ImageOrientationPatient",
        "TransferSyntaxUID explicit VR LE",
        "PixelData = mdrn-upscale's",
        "dciodvfy: no new error",
    ]


def upscale_files(folder: Path, out: Path, model: str = "bicubic") -> Path:
    """``mdrn-upscale FOLDER --scale 2 --weights MODEL -o OUT`` in this process; the derived folder."""
    from mdrn.upscale import main as upscale

    assert upscale([str(folder), "--scale", "2", "--weights", model, "-o", str(out), "-q"]) == 0
    return out / f"{folder.name}_x2_{model}"


def new_dciodvfy_errors(source: Path, derived: Path) -> list[str]:
    """dciodvfy errors of ``derived`` that its source has not (the accepted ones left out)."""
    if shutil.which("dciodvfy") is None:
        from conftest import require_tool

        require_tool("dciodvfy not installed (apt-get install dicom3tools)")
    before = set(dciodvfy_errors(source))
    prefix, modules = DCIODVFY_KNOWN
    return [
        e
        for e in dciodvfy_errors(derived)
        if e not in before and not (e.startswith(f"Error - {prefix}") and e.endswith(modules))
    ]


def assert_private(text: str) -> None:
    """No patient name, ID or birth date in ``text`` (the output of a command)."""
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"patient data in the output: {leaked}"


class TlsProxy:
    """An HTTPS front for a local HTTP server (as nginx in front of a hospital's Orthanc), in threads."""

    def __init__(self, target_port: int, certfile: Path, keyfile: Path | None = None) -> None:
        import socket
        import ssl
        import threading

        self.target = target_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import ssl
        import threading

        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                tls = self.context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                client.close()  # a client that does not trust the certificate
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((tls, upstream), (upstream, tls)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: Any, b: Any) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        """Stop accepting connections."""
        self._stop.set()
        self.sock.close()


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA): (certificate PEM, private key PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mdrn test node")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file
