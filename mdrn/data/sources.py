"""Where images come from: folder trees, DIV2K, the benchmark sets, and the embedded sample data.

Downloads (``prepare_div2k``, ``prepare_benchmarks``) use :mod:`mdrn.io.download` with the public addresses
and sha256 of the DIV2K archives; benchmark HR images are verified by the sha256 of their decoded pixels
(so any mirror's PNG encoding is accepted). A missing data set raises :class:`DataNotFoundError`, whose
message (:func:`mdrn.data.catalog.missing_message`) names the ``python -m mdrn.data download`` command,
the archives and the one folder to put them in.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mdrn.data.catalog import BENCHMARK_URL, BSDS300_SHA256, BSDS300_URL, FACTS, DataNotFoundError
from mdrn.io.dicom import is_dicom_file
from mdrn.io.download import NetworkUnavailableError, download_file, safe_extract
from mdrn.io.images import is_image_file, read_image, write_image

__all__ = [
    "BENCHMARK_SETS",
    "BENCHMARK_URL",
    "DIV2K_ARCHIVES",
    "DataNotFoundError",
    "SAMPLE_README",
    "SAMPLE_SPLITS",
    "benchmark_files",
    "bsd200_files",
    "div2k_files",
    "list_images",
    "pixel_sha256",
    "prepare_benchmarks",
    "prepare_bsd200",
    "prepare_div2k",
    "prepare_sample",
    "sample_files",
]

_FACTS = FACTS
#: DIV2K archives: url, bytes, sha256 (tensorflow-datasets' checksums)
DIV2K_ARCHIVES: list[dict] = _FACTS["div2k"]
#: the benchmark HR images' sizes and decoded-pixel sha256
BENCHMARK_HR: dict[str, dict[str, dict]] = _FACTS["benchmark_hr"]
BENCHMARK_SETS = ("Set5", "Set14", "B100", "Urban100")


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """All image files (PNG/JPEG/TIFF/BMP/DICOM) under ``folder``, recursively, sorted.

    DICOM files are recognised by their ``DICM`` header too (a scanner's or PACS export names them
    ``IM0001`` or by UID), as :func:`mdrn.clinical.inputs.open_inputs` does; a ``DICOMDIR`` is no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"image folder {folder} does not exist")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and ".part" not in p.name
        and (is_image_file(p) or (p.name.upper() != "DICOMDIR" and is_dicom_file(p)))
    )
    if not files:
        raise DataNotFoundError(f"no PNG/JPEG/TIFF/BMP/DICOM images under {folder}")
    return files


def pixel_sha256(array: np.ndarray) -> str:
    """sha256 of a decoded uint8/uint16 array (C order), the check used for benchmark HR images."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------------- DIV2K


def _div2k_archive(name: str) -> dict:
    """The facts of archive ``DIV2K_<name>.zip``."""
    for a in DIV2K_ARCHIVES:
        if a["url"].endswith(f"/DIV2K_{name}.zip"):
            return a
    raise KeyError(name)


def div2k_files(root: str | os.PathLike[str], split: str = "train") -> list[Path]:
    """DIV2K HR images 0001-0800 (``train``) or 0801-0900 (``valid``) under ``root/DIV2K``."""
    root = Path(root)
    folder = root / "DIV2K" / f"DIV2K_{split}_HR"
    expected = 800 if split == "train" else 100
    if not folder.is_dir() or len(list(folder.glob("*.png"))) < expected:
        raise DataNotFoundError(missing=[f"div2k_{split}"], root=root)
    return sorted(folder.glob("*.png"))


def div2k_lr_dirs(root: str | os.PathLike[str], split: str, scales: Sequence[int]) -> dict[int, Path]:
    """DIV2K's own LR_bicubic folders present for ``scales`` (used instead of our resize when present)."""
    out = {}
    for s in scales:
        d = Path(root) / "DIV2K" / f"DIV2K_{split}_LR_bicubic" / f"X{s}"
        if d.is_dir():
            out[int(s)] = d
    return out


def prepare_div2k(
    root: str | os.PathLike[str], splits: Sequence[str] = ("train", "valid"), lr_scales: Sequence[int] = ()
) -> None:
    """Download (resumable, sha256-checked) and extract DIV2K HR (and optionally LR_bicubic) archives."""
    root = Path(root)
    names = [f"{sp}_HR" for sp in splits] + [f"{sp}_LR_bicubic_X{s}" for sp in splits for s in lr_scales]
    names = [n for n in names if not (root / "DIV2K" / f".{n}.done").exists()]
    for name in names:
        marker = root / "DIV2K" / f".{name}.done"
        if marker.exists():  # extracted meanwhile by another process
            continue
        a = _div2k_archive(name)
        dest = root / "downloads" / Path(a["url"]).name
        try:
            download_file(a["url"], dest, sha256=a["sha256"], expected_bytes=a["bytes"])
        except NetworkUnavailableError as exc:
            hr = [f"div2k_{n[:-3]}" for n in names if n.endswith("_HR")]
            lr = [f"optional LR images: {_div2k_archive(n)['url']}" for n in names if "_LR_" in n]
            raise DataNotFoundError(
                "\n".join(lr) or None, missing=hr, root=root, reason=str(exc).split("\n")[0]
            ) from exc
        safe_extract(dest, root / "DIV2K")
        marker.write_text("ok\n")


# ------------------------------------------------------------------------------------------ benchmarks


def _missing_set(root: Path, name: str, reason: str | None = None) -> DataNotFoundError:
    """The error for benchmark set ``name`` absent from ``root`` (``<data>/benchmark`` or another)."""
    known = [name] if name in BENCHMARK_SETS else []
    if root.name == "benchmark" and known:
        return DataNotFoundError(missing=known, root=root.parent, reason=reason)
    detail = f"no images of set {name} under {root} (expected {root}/{name}/HR/*.png or {root}/{name}/*.png)"
    return DataNotFoundError(detail, missing=known, reason=reason)


def benchmark_files(root: str | os.PathLike[str], name: str) -> list[Path]:
    """HR images of set ``name``: ``root/name/HR/*`` if that folder exists, else ``root/name/*``."""
    root = Path(root)
    folder = root / name
    if (folder / "HR").is_dir():
        folder = folder / "HR"
    if not folder.is_dir():
        raise _missing_set(root, name)
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise _missing_set(root, name)
    return files


def verify_benchmark(root: str | os.PathLike[str], name: str) -> list[str]:
    """Check the decoded pixels of set ``name`` against the known hashes; return the unverifiable names."""
    known = BENCHMARK_HR.get(name, {})
    unknown = []
    for f in benchmark_files(root, name):
        facts = known.get(f.name)
        if facts is None:
            unknown.append(f.name)
            continue
        h = pixel_sha256(read_image(f).array)
        if h != facts["pixel_sha256"]:
            raise ValueError(f"{f}: decoded pixels differ from the original {name} image (sha256 {h})")
    return unknown


def prepare_benchmarks(
    root: str | os.PathLike[str],
    sets: Sequence[str] = BENCHMARK_SETS,
    downloads: str | os.PathLike[str] | None = None,
) -> None:
    """Make sure ``root/<set>/HR`` exists for every set, downloading EDSR's benchmark archive if needed.

    The archive goes to ``downloads`` (default: the data folder's ``downloads`` when ``root`` is its
    ``benchmark`` folder, else ``root/downloads``); one put there by hand is used as it is.
    """
    root = Path(root)
    if downloads is None:
        downloads = root.parent / "downloads" if root.name == "benchmark" else root / "downloads"
    missing = [s for s in sets if not _has_set(root, s)]
    if not missing:
        return
    unknown = [s for s in missing if s not in BENCHMARK_SETS]
    if unknown:
        raise DataNotFoundError(
            f"no images for set(s) {unknown} under {root} and no known address to fetch them"
        )
    dest = Path(downloads) / "benchmark.tar"
    try:
        download_file(BENCHMARK_URL, dest)
    except NetworkUnavailableError as exc:
        reason = str(exc).split("\n")[0]
        raise DataNotFoundError.merge([_missing_set(root, s, reason) for s in missing]) from exc
    tmp = Path(downloads) / "benchmark_extract"
    try:
        safe_extract(dest, tmp)
        src_root = tmp / "benchmark" if (tmp / "benchmark").is_dir() else tmp
        for s in missing:
            # verified where extracted: a set whose pixels differ never reaches root (where it would be used)
            found = (src_root / s).is_dir()
            try:
                unverified = verify_benchmark(src_root if found else root, s)
            except ValueError as exc:  # named in the archive: the extracted copy is removed
                raise ValueError(str(exc).replace(f"{src_root}{os.sep}", f"{dest}: ")) from None
            if found:
                shutil.move(str(src_root / s), str(root / s))
            if unverified:
                warnings.warn(
                    f"{s}: {len(unverified)} images have no known pixel hash: {unverified[:5]}", stacklevel=2
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _has_set(root: Path, name: str) -> bool:
    """True if set ``name`` has images under ``root``."""
    try:
        return bool(benchmark_files(root, name))
    except DataNotFoundError:
        return False


# -------------------------------------------------------------------------------------------- BSD200

#: images of the BSD200 folder (the BSDS300 train split)
BSD200_IMAGES = 200


def bsd200_files(root: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> list[Path]:
    """The 200 BSDS300 training images: ``path`` if given and present (e.g. ../shared/datasets/BSD200),
    else ``<root>/BSD200`` (``python -m mdrn.data download BSD200``); DataNotFoundError if neither."""
    for folder in ([Path(path).expanduser()] if path else []) + [Path(root) / "BSD200"]:
        if folder.is_dir() and (
            path and folder == Path(path).expanduser() or (folder / ".complete").exists()
        ):
            files = list_images(folder)
            if len(files) == BSD200_IMAGES:
                return files
    raise DataNotFoundError(missing=["BSD200"], root=root)


def prepare_bsd200(root: str | os.PathLike[str], downloads: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/BSD200``: the BSDS300 archive downloaded (sha256-checked, resumable) or taken from
    ``downloads``, and its 200 training JPEGs written as PNG (decoded pixels, lossless from here on);
    its test images (B100) are left in the archive. Returns the folder."""
    root = Path(root)
    folder = root / "BSD200"
    if (folder / ".complete").exists():
        return folder
    dest = Path(downloads or root / "downloads") / BSDS300_URL.rsplit("/", 1)[-1]
    try:
        download_file(BSDS300_URL, dest, sha256=BSDS300_SHA256)
    except NetworkUnavailableError as exc:
        raise DataNotFoundError(missing=["BSD200"], root=root, reason=str(exc).split("\n")[0]) from exc
    tmp = root / "BSD200.building"
    shutil.rmtree(tmp, ignore_errors=True)
    extracted = [
        p for p in safe_extract(dest, tmp / "archive") if p.parent.name == "train" and is_image_file(p)
    ]
    if len(extracted) != BSD200_IMAGES:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(
            f"{dest}: {len(extracted)} training images in images/train, expected {BSD200_IMAGES}"
        )
    for p in sorted(extracted):
        write_image(tmp / "images" / f"{p.stem}.png", read_image(p).array, bit_depth=8)
    (tmp / "images" / ".complete").write_text("BSDS300 train, PNG\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp / "images", folder)
    shutil.rmtree(tmp, ignore_errors=True)
    return folder


# ---------------------------------------------------------------------------------------- sample data

#: skimage.data images (CC0 / public domain) used for training in the sample data
SAMPLE_TRAIN_SKIMAGE = (
    "astronaut",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
)
SAMPLE_TRAIN_SKIMAGE_GRAY = ("camera", "coins")
#: validation images (checkpoint selection; never a test image): skimage's coffee (RGB) and cell (gray
#: microscopy), 8 bit, and pydicom's examples_overlay.dcm (an MR slice, 12 bit, not the test MR)
SAMPLE_VAL_SKIMAGE = ("coffee", "cell")
SAMPLE_VAL_DICOM = ("examples_overlay.dcm",)
#: held-out test images: the retina fundus photograph (centre 768x768, 8 bit) and pydicom's CT/MR
#: test files (16 bit)
SAMPLE_TEST_DICOM = ("CT_small.dcm", "MR_small.dcm")
#: larger medical DICOM files of the optional pydicom-data package (used only if installed)
SAMPLE_TRAIN_PYDICOM_DATA = ("MR2_UNCR.dcm", "693_UNCR.dcm")
SAMPLE_TEST_PYDICOM_DATA = ("US1_UNCR.dcm",)


def _pydicom_file(name: str) -> Path | None:
    """A pydicom test file available locally (never downloaded), or None."""
    try:
        from pydicom.data import get_testdata_file
    except ImportError:  # pragma: no cover
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = get_testdata_file(name, download=False)
    return Path(p) if p and Path(p).exists() else None


#: sample-data splits -> folders: held-out images are grouped by bit depth, one set per peak value
#: (an 8-bit PSNR uses 255 as peak, a 16-bit one 65535: their means must not be averaged together)
SAMPLE_SPLITS = {
    "train": "train",
    "val": "val",
    "val_8bit": "val/8bit",
    "val_12bit": "val/12bit",
    "test": "test",
    "test_8bit": "test/8bit",
    "test_16bit": "test/16bit",
}
_SAMPLE_LAYOUT = "v4 val/<bit depth>bit test/<bit depth>bit README.md\n"
#: what the sample data holds and why; written beside the images as README.md
SAMPLE_README = """# mdrn sample data

Written by `mdrn.data.prepare_sample` from images installed with scikit-image (CC0 / public domain) and
pydicom (its test files; the larger ones come with the optional pydicom-data package, used only if
installed). Nothing is downloaded. Three disjoint splits, so that the scores reported on `test/` are
never those of a checkpoint chosen on them:

- `train/`: the training patches: photographs and textures of scikit-image (astronaut, chelsea, rocket,
  immunohistochemistry (a stained tissue slide), hubble_deep_field; gray: camera, coins) and, with
  pydicom-data, an MR (MR2_UNCR.dcm, 12 bit) and a radiograph (693_UNCR.dcm, 14 bit), so that a model
  sees RGB and gray, 8 bit and more.
- `val/` (checkpoint selection; data config `sample`: sets sample_val_8bit, sample_val_12bit):
  `8bit/` coffee (RGB photograph) and cell (gray microscopy); `12bit/` pydicom's examples_overlay.dcm
  (an MR slice, not the test MR). One set per bit depth: a PSNR uses the image's own peak 2^n - 1.
- `test/` (held out, reported; sets sample_8bit, sample_16bit): `8bit/` the retina fundus photograph
  (centre 768x768) and, with pydicom-data, an ultrasound image (US1_UNCR.dcm, RGB); `16bit/` pydicom's
  CT (CT_small.dcm, 128x128) and MR (MR_small.dcm, 64x64) test files: the medical images the paper is
  about, at the bit depths a scanner writes.
"""


def prepare_sample(root: str | os.PathLike[str]) -> Path:
    """Write the embedded sample data to ``root/sample/{train,val/<n>bit,test/<n>bit}`` (no download).

    Three disjoint splits: ``train``, ``val`` (for checkpoint selection) and ``test`` (held out for
    reporting), the last two grouped by bit depth (one PSNR peak per set). ``SAMPLE_README`` (written
    beside them as README.md) says which images each split holds and why.
    """
    import skimage.data

    folder = Path(root) / "sample"
    done = folder / ".complete"
    if done.exists() and done.read_text() == _SAMPLE_LAYOUT:
        return folder
    tmp = folder.with_name("sample.building")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    for name in SAMPLE_TRAIN_SKIMAGE + SAMPLE_TRAIN_SKIMAGE_GRAY:
        write_image(
            tmp / "train" / f"{name}.png", np.ascontiguousarray(getattr(skimage.data, name)()), bit_depth=8
        )
    for name in SAMPLE_VAL_SKIMAGE:
        write_image(
            tmp / "val" / "8bit" / f"{name}.png",
            np.ascontiguousarray(getattr(skimage.data, name)()),
            bit_depth=8,
        )
    for name in SAMPLE_VAL_DICOM:
        if (p := _pydicom_file(name)) is not None:
            dest = tmp / "val" / f"{read_image(p).bit_depth}bit" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
    retina = skimage.data.retina()
    c0, c1 = (retina.shape[0] - 768) // 2, (retina.shape[1] - 768) // 2
    write_image(
        tmp / "test" / "8bit" / "retina.png",
        np.ascontiguousarray(retina[c0 : c0 + 768, c1 : c1 + 768]),
        bit_depth=8,
    )
    for name in SAMPLE_TEST_DICOM + SAMPLE_TEST_PYDICOM_DATA:
        if (p := _pydicom_file(name)) is not None:
            dest = tmp / "test" / f"{read_image(p).bit_depth}bit" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
    for name in SAMPLE_TRAIN_PYDICOM_DATA:
        if (p := _pydicom_file(name)) is not None:
            shutil.copy2(p, tmp / "train" / name)
    (tmp / "README.md").write_text(SAMPLE_README)
    (tmp / ".complete").write_text(_SAMPLE_LAYOUT)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def sample_files(root: str | os.PathLike[str], split: str) -> list[Path]:
    """The sample data's images of ``split`` (see ``SAMPLE_SPLITS``; written on first use)."""
    if split not in SAMPLE_SPLITS:
        raise ValueError(f"unknown sample split {split!r}; known: {sorted(SAMPLE_SPLITS)}")
    return list_images(prepare_sample(root) / SAMPLE_SPLITS[split])
