"""Test data built from real files: a CT series from pydicom's CT_small.dcm, NIfTI volumes, a PNG bomb."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

#: dciodvfy errors that contradict PS3.3 and are accepted. PS3.3 C.8.13.4 (MR Pulse Sequence Module) and
#: C.7.6.18.3 (Bulk Motion Synchronization) make these attributes "Required if Image Type Value 1 is ORIGINAL
#: or MIXED. May be present otherwise", but dciodvfy reports them as errors once Image Type is DERIVED.
DCIODVFY_KNOWN = (
    "Attribute present when condition unsatisfied (which may not be present otherwise) Type 1C "
    "Conditional Element=<",
    ("Module=<MRPulseSequence>", "Module=<BulkMotionSynchronization>"),
)


def dicom_file(name: str) -> Path:
    """A pydicom test file (pydicom-data)."""
    return Path(get_testdata_file(name))


def make_ct_series(
    folder: Path,
    n: int = 5,
    *,
    spacing: float = 5.0,
    source: str = "CT_small.dcm",
    study: str | None = None,
    tags: dict[str, object] | None = None,
) -> list[Path]:
    """A CT series of ``n`` slices from CT_small.dcm (one series UID, positions along z, pixel values that
    differ per slice), saved without suffix under names in reverse order of position, as PACS exports do.

    ``source`` another single-frame file to build it from, ``study`` its Study Instance UID (default: the
    source's), ``tags`` values set on every slice (e.g. patient data)."""
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    paths = []
    for k in range(n):
        ds = pydicom.dcmread(dicom_file(source))
        ds.SeriesInstanceUID = series
        if study is not None:
            ds.StudyInstanceUID = study
        for keyword, value in (tags or {}).items():
            setattr(ds, keyword, value)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + spacing * k]
        ds.SliceLocation = z + spacing * k
        ds.PixelData = (ds.pixel_array.astype(np.int16) + 7 * k).tobytes()
        path = folder / f"IM{n - 1 - k:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_nifti(path: Path, dtype: type = np.int16, shape: tuple[int, ...] = (20, 24, 5)) -> np.ndarray:
    """A NIfTI volume with an oblique-free affine, qform and sform set and (for int16) a CT-like scaling;
    returns its stored (unscaled) data."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = np.sin(xx / 3.0)[..., None] * 300 + (yy * 20)[..., None] + np.arange(shape[2]) * 40
    data = (base + rng.normal(0, 20, shape)).astype(dtype)
    affine = np.array([[-0.8, 0, 0, 90], [0, 0.8, 0, -120], [0, 0, 2.5, -60], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    img.header.set_xyzt_units("mm", "sec")
    plain = path.with_name(path.name[: -len(".gz")]) if path.name.endswith(".gz") else path
    nib.save(img, plain)
    if dtype == np.int16:  # store a scaling (raw * 2 - 1024) in the header, as scanners do
        with plain.open("r+b") as fh:
            header = nib.Nifti1Header.from_fileobj(fh)
            header["scl_slope"], header["scl_inter"] = 2.0, -1024.0
            fh.seek(0)
            fh.write(header.binaryblock)
    if plain != path:
        with plain.open("rb") as src, gzip.open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        plain.unlink()
    return data


def make_png_bomb(path: Path, width: int = 12000, height: int = 12000) -> Path:
    """A valid 8-bit gray PNG of ``width`` x ``height`` black pixels: a ~140 kB file declaring 144 MP."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    row = b"\0" * (width + 1)
    z = zlib.compressobj(9)
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """The 'Error' lines dciodvfy (dicom3tools) prints for a file."""
    exe = shutil.which("dciodvfy")
    assert exe is not None
    res = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [line.strip() for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]
