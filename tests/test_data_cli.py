"""``python -m mdrn.data``: status, downloads from a local server, archives put by hand, offline message."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, shared_path
from PIL import Image

from mdrn.data import __main__ as cli
from mdrn.data import catalog, sources


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _valid_zip(path: Path) -> Path:
    """A stand-in for DIV2K_valid_HR.zip: DIV2K_valid_HR/0801.png ... 0900.png (8x8)."""
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(801, 901):
            zf.writestr(f"DIV2K_valid_HR/{i:04d}.png", _png(i % 256))
    return path


def _benchmark_tar(path: Path) -> Path:
    """A stand-in for EDSR's benchmark.tar holding the real Set5 HR images (pixel hashes are checked)."""
    with tarfile.open(path, "w") as tf:
        for f in sorted(shared_path("datasets", "Set5").glob("*.png")):
            tf.add(f, arcname=f"benchmark/Set5/HR/{f.name}")
    return path


@pytest.fixture()
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Serve a folder on 127.0.0.1 and point the DIV2K-valid and benchmark addresses at it."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield folder, base
    httpd.shutdown()


def _point_at(monkeypatch: pytest.MonkeyPatch, base: str, archive: Path | None = None) -> None:
    """DIV2K_valid_HR.zip and benchmark.tar fetched from ``base`` (facts of ``archive`` for the zip)."""
    entry = next(a for a in sources.DIV2K_ARCHIVES if a["url"].endswith("/DIV2K_valid_HR.zip"))
    monkeypatch.setitem(entry, "url", f"{base}/DIV2K_valid_HR.zip")
    if archive is not None:
        monkeypatch.setitem(entry, "bytes", archive.stat().st_size)
        monkeypatch.setitem(entry, "sha256", hashlib.sha256(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(sources, "BENCHMARK_URL", f"{base}/benchmark.tar")
    monkeypatch.setattr(sources, "BSDS300_URL", f"{base}/BSDS300-images.tgz")


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def test_status_of_an_empty_folder(tmp_path: Path, capsys) -> None:
    assert cli.main(["status", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, ds in catalog.DATASETS.items():
        (row,) = [ln for ln in lines if ln.startswith(name + " ")]
        assert ("missing" if ds.archive else "on first use") in row
        if ds.archive:
            assert catalog.ARCHIVES[ds.archive].url in row
    assert lines[-1].endswith(f"download div2k benchmarks BSD200 --root {tmp_path.resolve()}")


def test_module_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "mdrn.data", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "status" in proc.stdout and "download" in proc.stdout


def test_download_from_local_server_then_status(tmp_path: Path, served, monkeypatch) -> None:
    www, base = served
    archive = _valid_zip(www / "DIV2K_valid_HR.zip")
    _benchmark_tar(www / "benchmark.tar")
    _point_at(monkeypatch, base, archive)
    root = tmp_path / "data"
    assert cli.main(["download", "div2k_valid", "Set5", "--root", str(root)]) == 0
    assert len(sources.div2k_files(root, "valid")) == 100
    assert [f.name for f in sources.benchmark_files(root / "benchmark", "Set5")][0] == "baby.png"
    assert (root / "downloads" / "DIV2K_valid_HR.zip").is_file()  # kept: a later run needs no network
    states = {s.dataset.name: s for s in cli.status(root)}
    assert states["div2k_valid"].state == "present" and states["div2k_valid"].images == 100
    assert states["Set5"].state == "present" and states["Set14"].state == "missing"


def test_archive_put_by_hand_needs_no_network(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "data"
    archive = _valid_zip(tmp_path / "DIV2K_valid_HR.zip")
    _point_at(monkeypatch, _dead_address(), archive)
    (root / "downloads").mkdir(parents=True)
    archive.rename(root / "downloads" / "DIV2K_valid_HR.zip")
    assert cli.main(["download", "div2k_valid", "--root", str(root)]) == 0
    assert len(sources.div2k_files(root, "valid")) == 100


def test_benchmark_archive_with_altered_pixels_is_never_used(tmp_path: Path) -> None:
    # before: the first call raised, but left the altered Set5 in data/benchmark, and the next call (the
    # next training run) found it "present" and used it without a word
    src = tmp_path / "altered" / "baby.png"
    src.parent.mkdir()
    Image.fromarray(np.zeros((512, 512, 3), np.uint8)).save(src)
    root = tmp_path / "data"
    (root / "downloads").mkdir(parents=True)
    archive = root / "downloads" / "benchmark.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(src, arcname="benchmark/Set5/HR/baby.png")
    for _ in range(2):
        with pytest.raises(ValueError, match=r"benchmark\.tar: Set5/HR/baby\.png: decoded pixels differ"):
            sources.prepare_benchmarks(root / "benchmark", ["Set5"])
    assert not (root / "benchmark" / "Set5").exists()
    assert sorted(p.name for p in (root / "downloads").iterdir()) == ["benchmark.tar"]


def test_offline_download_names_every_archive_once(tmp_path: Path, monkeypatch, capsys) -> None:
    _point_at(monkeypatch, _dead_address())
    root = tmp_path / "data"
    assert cli.main(["download", "all", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for a in sources.DIV2K_ARCHIVES:
        if a["url"].endswith(("/DIV2K_train_HR.zip", "/DIV2K_valid_HR.zip")):
            assert err.count(a["sha256"]) == 1
    assert err.count("benchmark.tar") == 1
    assert err.count(f"{root.resolve() / 'downloads'}/") == 1  # one folder to put them in
    for name in ("div2k_train", "div2k_valid", "Set5", "Set14", "B100", "Urban100"):
        assert f"{name} (" in err
    assert "download div2k benchmarks" in err
    assert (root / "sample" / ".complete").exists()  # the embedded data needs no network


def test_unknown_name_is_a_usage_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as ei:
        cli.main(["download", "div2k_test", "--root", str(tmp_path)])
    assert ei.value.code == 2 and "div2k_valid" in capsys.readouterr().err


def test_missing_message_groups_and_details(tmp_path: Path) -> None:
    err = catalog.DataNotFoundError.merge(
        [
            catalog.DataNotFoundError(missing=["div2k_train"], root=tmp_path),
            catalog.DataNotFoundError("image folder /x does not exist"),
            catalog.DataNotFoundError(missing=["Set14"], root=tmp_path),
        ]
    )
    msg = str(err)
    assert msg.startswith("image folder /x does not exist\n")
    assert f"download div2k_train Set14 --root {tmp_path.resolve()}" in msg
    assert isinstance(err, FileNotFoundError)


def _bsds300_tgz(path: Path) -> Path:
    """A stand-in for BSDS300-images.tgz: 200 train and 3 test JPEGs (8x8) under BSDS300/images/."""
    with tarfile.open(path, "w:gz") as tf:
        for split, n in (("train", 200), ("test", 3)):
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(np.full((8, 8, 3), (i * 7) % 256, np.uint8)).save(buf, format="JPEG")
                info = tarfile.TarInfo(f"BSDS300/images/{split}/{1000 * (split == 'test') + i}.jpg")
                info.size = len(buf.getvalue())
                tf.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def test_bsd200_from_the_bsds300_archive_without_its_test_images(tmp_path: Path, monkeypatch) -> None:
    """``download BSD200``: the archive (sha256-checked) gives the 200 train images as PNG, never B100's."""
    root = tmp_path / "data"
    (root / "downloads").mkdir(parents=True)
    archive = _bsds300_tgz(root / "downloads" / "BSDS300-images.tgz")
    _point_at(monkeypatch, _dead_address())
    monkeypatch.setattr(sources, "BSDS300_SHA256", hashlib.sha256(b"another archive").hexdigest())
    assert cli.main(["download", "BSD200", "--root", str(root)]) == 1  # a wrong checksum is refused
    assert not (root / "BSD200").exists()
    archive = _bsds300_tgz(archive)  # (the refused file was removed, to be fetched again)
    monkeypatch.setattr(sources, "BSDS300_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    assert cli.main(["download", "BSD200", "--root", str(root)]) == 0
    files = sources.bsd200_files(root)
    assert len(files) == 200 and all(f.suffix == ".png" for f in files)
    assert not any(int(f.stem) >= 1000 for f in files)  # the test split (B100) is never written
    with tarfile.open(archive) as tf:
        jpg = np.asarray(Image.open(tf.extractfile("BSDS300/images/train/5.jpg")))
    np.testing.assert_array_equal(np.asarray(Image.open(root / "BSD200" / "5.png")), jpg)
    assert {s.dataset.name: s.state for s in cli.status(root)}["BSD200"] == "present"
    # a data source of kind bsd200 takes a given path where it holds the images, else the data folder's
    from mdrn.data.datamodule import resolve_source

    src = {"name": "BSD200", "kind": "bsd200", "path": str(tmp_path / "absent"), "exclude": ["5"]}
    got, _ = resolve_source(src, root, (2,))
    assert len(got) == 199 and got[0].parent == root / "BSD200"


def test_status_says_which_stage_of_data_div2k_uses_each_set() -> None:
    # the "used by" column of `python -m mdrn.data status` against conf/data/div2k.yaml: a benchmark set is a
    # test set only (never validation), DIV2K 0801-0900 validates
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf" / "data" / "div2k.yaml")

    def used(src: dict) -> str:
        return f"div2k_{src['split']}" if src["kind"] == "div2k" else src["name"]

    actual = {(used(src), stage) for stage in ("train", "val", "test") for src in cfg[stage]}
    claimed = set()
    for ds in catalog.DATASETS.values():
        for use in ds.used_by.split(", "):
            if use.startswith("data=div2k "):
                claimed |= {(ds.name, stage) for stage in use.split(" ", 1)[1].split("/")}
    assert claimed == actual
