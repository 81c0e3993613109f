"""mdrn-pacs against a real Orthanc (DICOMweb: QIDO-RS, WADO-RS, STOW-RS) and its faults (issue 24).

The Orthanc is the session's (tests/conftest.py ``orthanc``: loopback, DICOMweb plugin, basic auth); a test
that stops its PACS starts one of its own. Missing Orthanc skips with the reason, and fails in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from conftest import require_tool
from pacs_data import (
    PASSWORD,
    USER,
    assert_private,
    check_derived,
    download_series,
    make_study,
    series_uids,
    upload,
    upscale_files,
)

pytest.importorskip("dicomweb_client")
pytest.importorskip("pynetdicom")

from mdrn.pacs.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The test Orthanc's credentials in the environment (as a user would set them)."""
    env = {"MDRN_PACS_USER": USER, "MDRN_PACS_PASSWORD": PASSWORD}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MDRN_PACS_TOKEN", raising=False)
    return env


def _enlarge(orthanc, study: str, *extra: str, model: str = "bicubic") -> list[str]:
    return [
        "enlarge",
        "--dicomweb",
        orthanc.dicomweb,
        "--study",
        study,
        "--scale",
        "2",
        "--model",
        model,
        "-q",
        *extra,
    ]


def _derived(orthanc, study) -> str:
    (new,) = series_uids(orthanc, study.study) - {study.series}
    return new


@pytest.mark.slow
def test_dicomweb_round_trip_with_the_default_model(orthanc, tmp_path, creds) -> None:
    """``mdrn-pacs enlarge`` as a command: one derived series, the file path's tags and pixels."""
    study = make_study(tmp_path / "ct", 20)
    upload(orthanc, study.files)
    env = {**os.environ, **creds, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = ["enlarge", "--dicomweb", orthanc.dicomweb, "--study", study.study, "--scale", "2", "-q"]
    res = subprocess.run(
        [sys.executable, "-m", "mdrn.pacs", *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    derived = _derived(orthanc, study)
    assert f"-> derived series {derived}: 20 instance(s) stored" in res.stdout
    assert "mdrn_small" in res.stdout
    assert_private(res.stdout + res.stderr)
    got = download_series(orthanc, derived, tmp_path / "pacs")
    check_derived(study, got, upscale_files(tmp_path / "ct", tmp_path / "files", "mdrn_small"), 2)


def test_rerun_stores_nothing_twice_and_skips_its_own_result(orthanc, tmp_path, creds, capsys) -> None:
    study = make_study(tmp_path / "ct", 4)
    upload(orthanc, study.files)
    assert main(_enlarge(orthanc, study.study)) == 0
    first = capsys.readouterr().out
    assert main(_enlarge(orthanc, study.study)) == 0
    again = capsys.readouterr().out
    derived = _derived(orthanc, study)
    assert f"all 4 derived instance(s) already stored in series {derived}" in again
    assert f"series {derived}: mdrn's result of series {study.series}: skipped" in again
    assert len(download_series(orthanc, derived, tmp_path / "pacs")) == 4
    # another scale makes another series, and mdrn's earlier result is not enlarged again
    args = _enlarge(orthanc, study.study)
    args[args.index("--scale") + 1] = "3"
    assert main(args) == 0
    third = capsys.readouterr().out
    assert f"series {derived}: images derived by mdrn: skipped (not enlarged again)" in third
    assert len(series_uids(orthanc, study.study)) == 3
    assert_private(first + again + third)


def test_orthanc_stopped_mid_series_names_what_was_not_stored_and_a_rerun_stores_the_rest(
    tmp_path, creds, capsys, monkeypatch
) -> None:
    from mdrn.pacs import dicomweb
    from mdrn.pacs.sandbox import LocalOrthanc, OrthancNotFound, find_orthanc

    try:
        find_orthanc()
    except OrthancNotFound as err:
        require_tool(str(err))
    pacs = LocalOrthanc(users={USER: PASSWORD}, folder=tmp_path / "orthanc").start()
    try:
        study = make_study(tmp_path / "ct", 20)
        upload(pacs, study.files)
        store, calls = dicomweb.PacsClient.store, []

        def store_then_stop(self, paths):  # the PACS goes down after the first request of stores
            calls.append(len(paths))
            refused = store(self, paths)
            if len(calls) == 1:
                pacs.stop()
            return refused

        monkeypatch.setattr(dicomweb.PacsClient, "store", store_then_stop)
        monkeypatch.setattr("mdrn.pacs.series.SEND_BATCH", 4)
        assert main(_enlarge(pacs, study.study)) == 1
        out, err = capsys.readouterr()
        stored = calls[0]
        (line,) = [x for x in err.splitlines() if x.startswith("error: series")]
        assert f"{stored} instance(s) stored; {20 - stored} NOT stored (" in line
        assert "cannot reach the PACS" in line
        sources = {str(pydicom.dcmread(p).SOPInstanceUID) for p in study.files}
        named = {uid for uid in line.rsplit(": ", 1)[1].split()}
        assert len(named) == 20 - stored and named < sources  # the instances not stored, each named
        assert "run the same command again" in err
        monkeypatch.setattr(dicomweb.PacsClient, "store", store)
        pacs.start()
        assert main(_enlarge(pacs, study.study)) == 0
        out = capsys.readouterr().out
        assert f"{20 - stored} instance(s) stored ({stored} already there from an earlier run)" in out
        got = download_series(pacs, _derived(pacs, study), tmp_path / "pacs")
        refs = sorted(str(pydicom.dcmread(p).SourceImageSequence[0].ReferencedSOPInstanceUID) for p in got)
        assert refs == sorted(sources)  # 20 instances, no duplicate
        assert_private(out + err)
    finally:
        pacs.close()


def test_unknown_study_and_series_are_one_line(orthanc, tmp_path, creds, capsys) -> None:
    assert main(_enlarge(orthanc, "1.2.3.4.5.999")) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {orthanc.dicomweb}: study 1.2.3.4.5.999 not found (no series)"
    study = make_study(tmp_path / "ct", 2)
    upload(orthanc, study.files)
    assert main(_enlarge(orthanc, study.study, "--series", "1.2.3.999")) == 2
    assert capsys.readouterr().err.strip().endswith(f"series 1.2.3.999 not in study {study.study}")


_TERMINATED_WHILE_ENLARGING = """
import os, signal, sys, time
import mdrn.pacs.dicomweb
from mdrn.pacs.cli import main

def terminated(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)  # what kill, timeout, systemd or a batch scheduler sends
    time.sleep(30)

mdrn.pacs.dicomweb.enlarge_series = terminated
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_leaves_no_fetched_series_in_the_temporary_folder(orthanc, tmp_path, creds) -> None:
    # before, SIGTERM ended mdrn-pacs enlarge at once and the series read from the PACS (patient data)
    # stayed in the temporary folder; now it stops as Ctrl-C does: one line, exit 143, the folder deleted
    study = make_study(tmp_path / "ct", 2)
    upload(orthanc, study.files)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, **creds, "TMPDIR": str(scratch)}
    res = subprocess.run(
        [sys.executable, "-c", _TERMINATED_WHILE_ENLARGING, *_enlarge(orthanc, study.study)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 143, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "interrupted"
    assert list(scratch.iterdir()) == []


def _non_image(kind: str, study, series: str, number: int):
    """A Basic Text SR or a Grayscale Softcopy Presentation State in the CT series."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ref = pydicom.dcmread(study.files[0])
    ds = Dataset()
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
        "PatientSex",
    ):
        if keyword in ref:
            setattr(ds, keyword, ref.data_element(keyword).value)
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series, ref.SeriesNumber, number
    ds.SOPInstanceUID = generate_uid()
    if kind == "sr":
        ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.88.11", "SR"
        ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    else:
        ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.11.1", "PR"
        ds.ContentLabel, ds.PresentationCreationDate = "NOTE", "20240101"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID,
        ds.SOPInstanceUID,
    )
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_structured_report_and_presentation_state_in_the_series_are_skipped(orthanc, tmp_path, creds, capsys):
    study = make_study(tmp_path / "ct", 3)
    extra = []
    for i, kind in enumerate(("sr", "pr")):
        ds = _non_image(kind, study, study.series, 100 + i)
        path = tmp_path / f"{kind}.dcm"
        ds.save_as(path, enforce_file_format=True)
        extra.append((ds.SOPInstanceUID, path))
    upload(orthanc, study.files + [p for _, p in extra])
    assert main(_enlarge(orthanc, study.study)) == 0
    out = capsys.readouterr().out
    sr, pr = (uid for uid, _ in extra)
    assert f"instance {sr}: a Basic Text SR Storage, not an image: skipped" in out
    assert f"instance {pr}: a Grayscale Softcopy Presentation State Storage, not an image: skipped" in out
    assert "3 instance(s) stored" in out
    assert len(download_series(orthanc, _derived(orthanc, study), tmp_path / "pacs")) == 3


def test_transfer_syntax_without_a_decoder_is_named_with_the_package(orthanc, tmp_path, creds, capsys):
    from mdrn.io.dicom import missing_decoder

    syntax = "1.2.840.10008.1.2.4.80"  # JPEG-LS lossless: pydicom needs a plugin package
    if missing_decoder(syntax) is None:
        pytest.skip("a JPEG-LS decoder is installed here: the fault cannot happen")
    from medical_data import dicom_file
    from pacs_data import PATIENT, Study
    from pydicom.uid import generate_uid

    uids, files = (generate_uid(), generate_uid()), []
    for k in range(3):  # the compressed file as it is, three slices of one series (pixels not decoded)
        ds = pydicom.dcmread(dicom_file("MR_small_jpeg_ls_lossless.dcm"))
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = *uids, k + 1
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        for keyword, value in PATIENT.items():
            setattr(ds, keyword, value)
        files.append(tmp_path / f"mr{k}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    study = Study(files, *uids)
    upload(orthanc, study.files)
    assert main(_enlarge(orthanc, study.study)) == 1
    out, err = capsys.readouterr()
    (line,) = [x for x in err.splitlines() if x.startswith("error: series")]
    assert line == (
        f"error: series {study.series}: 3 instance(s) in JPEG-LS Lossless Image Compression ({syntax}) pixel "
        "data cannot be decoded here: install a decoder, e.g. pip install 'pylibjpeg>=2.0' "
        "'pylibjpeg-libjpeg>=2.1' (or 'gdcm>=3.0.10'; or 'pyjpegls>=1.2')"
    )
    assert series_uids(orthanc, study.study) == {study.series}  # nothing half-stored


#: run in a fresh process, so that what earlier tests left in this one's heap does not move the figures
_PEAK_RSS_SCRIPT = """
import json, sys
from pathlib import Path
from mdrn.pacs.dicomweb import connect, enlarge_study
from mdrn.pacs.series import Enlarger
from mdrn.perf import set_malloc_reuse

def kib(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])

url, work, studies = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
set_malloc_reuse(False)  # as the command does (and mdrn-upscale's tests): freed buffers go back
enlarger, pacs, growth = Enlarger.create("bicubic", 2), connect(url), []
for study in studies:
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from the current size
    start = kib("VmRSS")
    (result,) = enlarge_study(pacs, study, enlarger, say=lambda _: None, work_dir=work)
    assert result.ok, result.summary()
    growth.append((kib("VmHWM") - start) * 1024)
print(json.dumps(growth))
"""


def _peak_rss_growth(orthanc, studies: list[str], tmp_path: Path) -> list[int]:
    """Peak resident memory (bytes) over that at the start while each study is enlarged, one after the
    other, in one fresh process (credentials from the environment)."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT, orthanc.dicomweb, str(tmp_path), *studies],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_200_slice_series_is_streamed_in_bounded_memory(orthanc, tmp_path, creds) -> None:
    """The peak resident memory of a 200-slice series grows by a small part of a slice per slice over that
    of 20 slices (Linux: VmHWM reset through /proc/self/clear_refs): instances are streamed, never the series
    held in memory, in or out."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to measure the peak resident memory")
    warm, small, large = (
        make_study(tmp_path / k, n) for k, n in (("w", 2), ("s", 20), ("l", 200))
    )  # 128x128
    upload(orthanc, warm.files + small.files + large.files)
    per_slice = 128 * 128 * 2 * (1 + 4)  # the pixels of one slice in and of its derived slice out
    # the first study warms up (imports, threads, caches), then 20 slices, then 200
    _, grow_small, grow_large = _peak_rss_growth(orthanc, [warm.study, small.study, large.study], tmp_path)
    print(
        f"peak RSS growth: 20 slices {grow_small / 2**20:.1f} MiB, 200 slices {grow_large / 2**20:.1f} MiB; "
        f"the 200-slice series' pixels in+out {200 * per_slice / 2**20:.1f} MiB"
    )
    assert grow_large - grow_small < 180 * per_slice / 4, (grow_small, grow_large)
    assert len(download_series(orthanc, _derived(orthanc, large), tmp_path / "pacs")) == 200
    assert not any(p.name.startswith("mdrn-pacs-") for p in tmp_path.iterdir())  # the private folder is gone


def test_credentials_come_from_the_environment_or_a_private_file(
    orthanc, tmp_path, monkeypatch, capsys
) -> None:
    for k in ("MDRN_PACS_USER", "MDRN_PACS_PASSWORD", "MDRN_PACS_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    listing = ["list", "--dicomweb", orthanc.dicomweb]
    assert main(listing) == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "MDRN_PACS_USER" in err and len(err.strip().splitlines()) == 1
    auth = tmp_path / "pacs-auth"
    auth.write_text(f"{USER}:{PASSWORD}\n")
    auth.chmod(0o644)
    assert main([*listing, "--auth-file", str(auth)]) == 2
    assert f"readable by others: chmod 600 {auth}" in capsys.readouterr().err
    auth.chmod(0o600)
    assert main([*listing, "--auth-file", str(auth)]) == 0
    monkeypatch.setenv("MDRN_PACS_USER", USER)
    monkeypatch.setenv("MDRN_PACS_PASSWORD", PASSWORD)
    capsys.readouterr()
    assert main(["list", "--dicomweb", "http://pacs.example.org/dicom-web"]) == 2  # refused before connecting
    assert (
        "refusing to send credentials unencrypted to pacs.example.org: use https" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main([*listing, "--password", PASSWORD])  # there is no such option: never on the command line


def test_credentials_in_the_url_are_refused_without_being_repeated(capsys) -> None:
    """``http://user:password@host`` would send the password unchecked and print it in every message."""
    for url in ("http://admin:s3cret-pw@pacs.example.org/dicom-web", "https://admin:s3cret-pw@127.0.0.1:1/x"):
        assert main(["list", "--dicomweb", url]) == 2  # refused before connecting
        err = capsys.readouterr().err
        assert "credentials in the URL are refused" in err and "MDRN_PACS_USER" in err, err
        assert "s3cret-pw" not in err and "admin" not in err and len(err.strip().splitlines()) == 1


def test_without_the_pacs_extra_each_command_names_what_to_install(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "dicomweb_client", None)  # as if pip install 'mdrn[pacs]' never ran
    monkeypatch.setitem(sys.modules, "pynetdicom", None)
    work = tmp_path / "work"
    work.mkdir()
    listen = ["listen", "--send-to", "ORTHANC@127.0.0.1:9", "--port", "0", "--work-dir", str(work)]
    for argv in (["list", "--dicomweb", "http://127.0.0.1:9/dicom-web"], [*listen, "--scale", "2"]):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        err = (captured.err + captured.out).strip().splitlines()[-1]
        assert err.startswith("error: ") and "pip install 'mdrn[pacs]'" in err, (argv, captured)
    assert not list(work.iterdir())


def test_https_with_a_ca_file(orthanc, tmp_path, creds, capsys, monkeypatch) -> None:
    """The PACS behind HTTPS (a TLS front, as hospitals put nginx before Orthanc): its CA must be given."""
    pytest.importorskip("cryptography")
    from pacs_data import TlsProxy, certificate

    from mdrn.pacs.dicomweb import connect

    cert, key = certificate(tmp_path)
    proxy = TlsProxy(orthanc.http_port, cert, key)
    url = f"https://127.0.0.1:{proxy.port}/dicom-web"
    try:
        assert main(["list", "--dicomweb", url]) == 2
        err = capsys.readouterr().err
        assert "TLS certificate is not trusted" in err and "--ca-file" in err
        assert len(err.strip().splitlines()) == 1
        assert main(["list", "--dicomweb", url, "--ca-file", str(cert)]) == 0
        # an instance is read (streamed) over the same TLS, the CA file winning over REQUESTS_CA_BUNDLE
        study = make_study(tmp_path / "ct", 1)
        upload(orthanc, study.files)
        sop = str(pydicom.dcmread(study.files[0]).SOPInstanceUID)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
        connect(url, ca_file=cert).read(study.study, study.series, sop, tmp_path / "read.dcm")
        assert (tmp_path / "read.dcm").read_bytes() == study.files[0].read_bytes()
        assert main(["list", "--dicomweb", orthanc.dicomweb, "--ca-file", str(cert)]) == 2
        assert "--ca-file is for https URLs" in capsys.readouterr().err
    finally:
        proxy.close()


@pytest.mark.slow
def test_the_bench_script_runs_and_prints_its_row(orthanc, capsys) -> None:
    """scripts/bench_pacs.py on a tiny series (the recorded figures come from its defaults)."""
    from conftest import script

    bench = script("bench_pacs")
    assert bench.main(["--slices", "2", "--size", "32", "--repeat", "1", "--models", "bicubic"]) in (0, 1)
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("bicubic")]
    assert "fastest" in row and "%" in row


def test_the_app_refuses_a_pacs_it_cannot_reach(capsys) -> None:
    pytest.importorskip("gradio")
    from mdrn.app import main as app
    from mdrn.pacs.sandbox import free_port

    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    assert app(["--dicomweb", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {url}: cannot reach the PACS while listing studies (") and "\n" not in err
