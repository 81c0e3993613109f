"""NIfTI volumes (``.nii``, ``.nii.gz``; NIfTI-1 and -2) read and written one slice at a time.

A volume is enlarged in one plane, slice by slice. The plane is two voxel axes: ``ij`` (the default: the
first two axes, usually the acquired slices), ``ik`` or ``jk``; or an anatomical plane, ``axial``,
``coronal`` or ``sagittal``, resolved from the affine (:func:`nibabel.aff2axcodes`). A slice is shown and
processed as an image whose columns run along the plane's first axis and whose rows run along its
second. The enlarged volume keeps the header (data type, scaling slope/intercept, units, extensions,
qform/sform codes); the in-plane voxel sizes are divided by the scale and the affine's in-plane columns
with them, and its origin moves to the centre of the new first voxel (``-(s-1)/(2s)`` of the old voxel
along each in-plane axis), as for DICOM in :mod:`mdrn.io.dicom`.

Values: ``uint8``/``uint16`` are used as they are (8/16 bit), ``int8``/``int16`` offset to unsigned as
signed DICOM is; other types (``int32``, floats...) are mapped linearly from the volume's range onto 16 bits
and back, so the result has the input's type with a precision of 1/65535 of its range. In a float volume,
NaN and infinite voxels (a map's "outside") are left out of the range; they are enlarged as the lowest value
(NaN, -inf) or the highest (+inf) and written back as they were, each over the ``s x s`` voxels it became
(nearest neighbour), so the enlarged volume has NaN/inf where the input had them.

A label map (intent code ``NIFTI_INTENT_LABEL`` or ``NEURONAME``) is refused: interpolating labels makes
other labels, not a finer map.

Memory stays bounded: the data are memory-mapped (a ``.nii.gz`` is first decompressed into a private
temporary file) and the pages of each slice are released once it has been read or written.
"""

from __future__ import annotations

import gzip
import mmap
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from mdrn.io.images import ImageData, ImageReadError, check_pixel_count

__all__ = ["NIFTI_SUFFIXES", "PLANES", "NiftiVolume", "is_nifti", "write_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: The planes a volume can be enlarged in.
PLANES = ("ij", "ik", "jk", "axial", "coronal", "sagittal")
_ANATOMY = {"axial": ("LR", "AP"), "coronal": ("LR", "SI"), "sagittal": ("AP", "SI")}
_CHUNK = 1 << 24
#: NIFTI_INTENT_LABEL, NIFTI_INTENT_NEURONAME: voxels are labels, which interpolation would turn into others
_LABEL_INTENTS = (1002, 1003)


def is_nifti(path: str | os.PathLike[str]) -> bool:
    """Whether the file name ends in ``.nii`` or ``.nii.gz``."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike[str]) -> str:
    """The file name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem


class _Mapped:
    """A file mapped into memory as an array whose pages can be handed back after each slice."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int, write: bool) -> None:
        self._write = write
        self._fh = path.open("r+b" if write else "rb")
        self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_WRITE if write else mmap.ACCESS_READ)
        self.array = np.ndarray(shape, dtype=dtype, buffer=self._map, offset=offset, order="F")

    def release(self) -> None:
        """Drop the mapped pages from this process (the data stay in the file and the page cache)."""
        if hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Flush and unmap."""
        del self.array
        if not self._map.closed:
            if self._write:
                self._map.flush()
            self._map.close()
        self._fh.close()


def _plane_axes(plane: str, affine: np.ndarray) -> tuple[int, int]:
    """The two voxel axes of ``plane``."""
    if plane in ("ij", "ik", "jk"):
        return "ijk".index(plane[0]), "ijk".index(plane[1])
    if plane not in _ANATOMY:
        raise ValueError(f"unknown plane {plane!r} (choose from {', '.join(PLANES)})")
    import nibabel as nib

    codes = nib.aff2axcodes(affine)
    axes = [next((i for i, c in enumerate(codes) if c in pair), None) for pair in _ANATOMY[plane]]
    if None in axes:
        raise ValueError(f"the volume's orientation {''.join(map(str, codes))} has no {plane} plane")
    return int(axes[0]), int(axes[1])  # type: ignore[arg-type]


class NiftiVolume:
    """A NIfTI volume as 2-D slices in one plane (:data:`PLANES`); see the module docstring."""

    def __init__(
        self, path: str | os.PathLike[str], *, plane: str = "ij", max_pixels: int | None = None
    ) -> None:
        self.path = Path(path)
        try:
            import nibabel as nib
        except ImportError as exc:
            raise ImageReadError(self.path, "NIfTI needs nibabel: pip install 'mdrn[medical]'") from exc
        if not self.path.is_file():
            raise ImageReadError(self.path, "file not found")
        try:
            img = nib.load(self.path)
        except Exception as exc:  # nibabel raises several kinds on bad headers
            raise ImageReadError(
                self.path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise ImageReadError(self.path, f"{type(img).__name__} is not supported (use .nii or .nii.gz)")
        self.header = img.header.copy()
        # a loaded image's header has its data offset and scaling moved into ``dataobj``: put them back
        self.header.set_data_offset(int(img.dataobj.offset))
        self.header.set_slope_inter(float(img.dataobj.slope), float(img.dataobj.inter))
        self.shape = tuple(int(n) for n in img.shape)
        self.dtype = self.header.get_data_dtype()
        if len(self.shape) < 3:
            raise ImageReadError(self.path, f"NIfTI of shape {self.shape} is not a volume (3 or more axes)")
        if min(self.shape) < 1:
            raise ImageReadError(
                self.path, f"NIfTI of shape {self.shape} holds no voxels (an axis of {min(self.shape)})"
            )
        if self.dtype.fields is not None or self.dtype.kind not in "uif":
            raise ImageReadError(self.path, f"NIfTI data type {self.dtype} is not supported")
        if int(self.header["intent_code"]) in _LABEL_INTENTS:
            raise ImageReadError(
                self.path, "a NIfTI label map (intent label/neuroname), not an image: it is not enlarged"
            )
        self.affine = np.asarray(img.affine, dtype=np.float64)
        try:
            self.axes = _plane_axes(plane, self.affine)
        except ValueError as exc:
            raise ImageReadError(self.path, str(exc)) from exc
        self.plane = plane
        check_pixel_count(self.path, self.shape[self.axes[0]], self.shape[self.axes[1]], max_pixels)
        self._others = [a for a in range(len(self.shape)) if a not in self.axes]
        self.n_slices = int(np.prod([self.shape[a] for a in self._others]))
        self._scratch: Path | None = None
        self._nonfinite: set[int] = set()  # the slices with NaN or infinite voxels (float volumes)
        data_file = self.path
        offset = int(self.header.get_data_offset())
        nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        if self.path.name.lower().endswith(".gz"):
            data_file = self._scratch = self._decompress(nbytes + offset)
            # a volume dropped without close() (or still open at exit): its copy is deleted all the same
            self._drop_scratch = weakref.finalize(self, data_file.unlink, True)
        try:  # whatever stops the opening (Ctrl-C included) leaves no decompressed copy behind
            if data_file.stat().st_size < offset + nbytes:
                raise ImageReadError(
                    self.path,
                    f"truncated file: {self.shape} {self.dtype} voxels need {offset + nbytes} bytes",
                )
            self._data = _Mapped(data_file, self.shape, self.dtype, offset, write=False)
            self.bit_depth, self.signed_offset, self.range = self._value_mapping()
        except BaseException:
            self.close()
            raise

    def _decompress(self, limit: int) -> Path:
        fd, name = tempfile.mkstemp(prefix="mdrn-nifti-", suffix=".nii")
        scratch = Path(name)
        try:
            with gzip.open(self.path, "rb") as src, os.fdopen(fd, "wb") as dst:
                copied = 0
                while copied < limit and (chunk := src.read(min(_CHUNK, limit - copied))):
                    dst.write(chunk)
                    copied += len(chunk)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            scratch.unlink(missing_ok=True)
            raise ImageReadError(self.path, f"truncated or corrupt gzip data ({exc})") from exc
        except BaseException:  # Ctrl-C: no copy of the volume left in the temporary folder
            scratch.unlink(missing_ok=True)
            raise
        return scratch

    def _value_mapping(self) -> tuple[int, int, tuple[float, float] | None]:
        """(bit depth, signed offset, (lo, hi) of a linear map onto 16 bits or None)."""
        kind, size = self.dtype.kind, self.dtype.itemsize
        if kind in "ui" and size <= 2:
            return 8 * size, (1 << (8 * size - 1)) if kind == "i" else 0, None
        lo, hi = np.inf, -np.inf
        for i in range(self.n_slices):
            values = self._raw(i)
            if kind == "f":
                finite = np.isfinite(values)
                if not finite.all():
                    self._nonfinite.add(i)
                values = values[finite]
            if values.size:
                lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        if not np.isfinite(lo):
            lo, hi = 0.0, 1.0
        return 16, 0, (lo, hi if hi > lo else lo + 1.0)

    def _index(self, i: int) -> tuple[Any, ...]:
        """The array index of slice ``i`` (slices run fastest along the first axis not in the plane)."""
        if not 0 <= i < self.n_slices:
            raise IndexError(f"{self.path}: slice {i} of {self.n_slices}")
        index: list[Any] = [slice(None)] * len(self.shape)
        for axis, k in zip(
            self._others, np.unravel_index(i, [self.shape[a] for a in self._others], order="F")
        ):
            index[axis] = int(k)
        return tuple(index)

    def _raw(self, i: int) -> np.ndarray:
        plane = np.array(self._data.array[self._index(i)])
        self._data.release()
        return plane if self.axes[0] < self.axes[1] else plane.T

    def slice(self, i: int) -> ImageData:
        """Slice ``i`` as an image: columns along the plane's first axis, rows along its second."""
        raw = self._raw(i).T.astype(np.float64 if self.range else np.int64)
        if self.range is not None:
            lo, hi = self.range
            raw = np.nan_to_num(raw, nan=lo, posinf=hi, neginf=lo)
            raw = np.rint((raw - lo) / (hi - lo) * 65535).clip(0, 65535)
        pixels = (raw + self.signed_offset).astype(np.uint8 if self.bit_depth <= 8 else np.uint16)
        return ImageData(
            np.ascontiguousarray(pixels), self.bit_depth, path=self.path, signed_offset=self.signed_offset,
            meta={"format": "NIfTI", "slice": i, "rescale": self.rescale()},
        )  # fmt: skip

    def rescale(self) -> tuple[float, float]:
        """(slope, intercept) from a slice's pixels (less ``signed_offset``) to the volume's physical values
        (``scl_slope``/``scl_inter`` applied), for a display window in those units (e.g. HU)."""
        slope, inter = (float(v) for v in self.header.get_slope_inter())  # set in __init__: finite
        slope = slope or 1.0
        if self.range is None:
            return slope, inter
        lo, hi = self.range
        return slope * (hi - lo) / 65535, slope * lo + inter

    def to_raw(self, pixels: np.ndarray, index: int | None = None) -> np.ndarray:
        """An enlarged slice's pixels back in the volume's type and axis order (inverse of :meth:`slice`).

        With the slice's ``index``, its NaN and infinite voxels are put back, each over the voxels it became.
        """
        values = pixels.astype(np.float64 if self.range else np.int64) - self.signed_offset
        if self.range is not None:
            lo, hi = self.range
            values = lo + values / 65535 * (hi - lo)
            if self.dtype.kind in "ui":
                info = np.iinfo(self.dtype)
                values = np.rint(values).clip(info.min, info.max)
        values = values.astype(self.dtype).T
        if index in self._nonfinite:
            raw = self._raw(index)
            scale = values.shape[0] // raw.shape[0]
            big = np.repeat(np.repeat(raw, scale, axis=0), scale, axis=1)
            values[~np.isfinite(big)] = big[~np.isfinite(big)]
        return values if self.axes[0] < self.axes[1] else values.T

    def close(self) -> None:
        """Unmap the data and delete the decompressed copy of a ``.nii.gz``."""
        if getattr(self, "_data", None) is not None:
            self._data.close()
            self._data = None  # type: ignore[assignment]
        if self._scratch is not None:
            self._drop_scratch()  # deletes the decompressed copy (once)
            self._scratch = None

    def __enter__(self) -> NiftiVolume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _enlarged_affine(self, affine: np.ndarray, scale: int) -> np.ndarray:
        """``affine`` with the plane's voxels ``scale`` times smaller, the first voxel's centre moved."""
        affine = np.array(affine, dtype=np.float64)
        shift = -(scale - 1) / (2 * scale)
        for axis in self.axes:
            affine[:3, 3] += affine[:3, axis] * shift
            affine[:3, axis] /= scale
        return affine

    def enlarged_header(self, scale: int, description: str) -> tuple[Any, tuple[int, ...]]:
        """The header and shape of the volume enlarged ``scale`` times in its plane."""
        shape = list(self.shape)
        for axis in self.axes:
            shape[axis] *= scale
        header = self.header.copy()
        header.set_data_shape(shape)
        zooms = list(header.get_zooms())
        for axis in self.axes:
            zooms[axis] /= scale
        header.set_zooms(zooms)
        for code_name, getter, setter in (
            ("qform_code", self.header.get_qform, header.set_qform),
            ("sform_code", self.header.get_sform, header.set_sform),
        ):
            code = int(header[code_name])
            if code:  # each from its own matrix: a qform (scanner) and an sform (e.g. a template) may differ
                setter(self._enlarged_affine(getter(), scale), code=code)
        header["descrip"] = description.encode("ascii", "replace")[:79]
        return header, tuple(shape)


def write_nifti(path: Path, volume: NiftiVolume, scale: int, description: str, slices: Any) -> None:
    """Write the enlarged volume to ``path`` (.nii or .nii.gz by name) from its slices, one at a time.

    ``slices`` yields (index, pixels) with the enlarged pixels of slice ``index`` in the volume's image
    convention (see :meth:`NiftiVolume.slice`); every slice must come once.
    """
    header, shape = volume.enlarged_header(scale, description)
    gz = path.name.lower().endswith(".gz") or path.name.lower().endswith(".gz.part")
    raw_path = path
    if gz:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".nii", dir=path.parent)
        os.close(fd)
        raw_path = Path(name)
    try:
        with raw_path.open("wb") as fh:
            header.write_to(fh)
            offset = int(header.get_data_offset())
            fh.write(b"\0" * (offset - fh.tell()))
            fh.truncate(offset + int(np.prod(shape)) * volume.dtype.itemsize)
        out = _Mapped(raw_path, shape, volume.dtype, offset, write=True)
        seen = np.zeros(volume.n_slices, bool)
        try:
            for index, pixels in slices:
                out.array[volume._index(index)] = volume.to_raw(pixels, index)
                out.release()
                seen[index] = True
        finally:
            out.close()
        if not seen.all():
            raise ValueError(f"{path}: {int((~seen).sum())} of {volume.n_slices} slices were not written")
        if gz:
            with raw_path.open("rb") as src, gzip.open(path, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
    finally:
        if gz:
            raw_path.unlink(missing_ok=True)
