"""DICOM in and out: pixels in mdrn's convention, enlarged images as derived instances true to PS3.3.

Reading: any transfer syntax pydicom can decode (big endian, RLE, 8-bit JPEG and JPEG 2000 through
Pillow; 12-bit JPEG and other compressed syntaxes where a decoder package such as pylibjpeg is installed,
the error naming the packages otherwise); the header is
read first, so the pixel limit is checked before any pixel is decoded; multi-frame files are read one
frame at a time. Signed pixels are offset to unsigned (``ImageData.signed_offset``), colour (RGB, YBR) is
RGB.

Writing an enlarged image makes a *derived* instance (PS3.3 C.7.6.1 General Image, C.7.6.2 Image Plane):
a new SOP Instance UID; a new Series Instance UID per source series (:class:`Derivation` hands out one per
source series, so all enlarged slices of a series share it); Study and Frame of Reference UIDs, patient
and study data, Instance Number and windowing kept; Image Type ``DERIVED\\SECONDARY`` (its other values
kept; enhanced IODs keep value 2, which must be PRIMARY there); Derivation Description and Derivation
Code Sequence (DCM 113085 "Spatial resampling") naming the method, model and scale; Source Image Sequence
referencing the source instance (purpose DCM 121322); Lossy Image Compression (with ratio and method)
kept once set, and set when the source was decoded from a lossy transfer syntax; Rows/Columns x s; Pixel
Spacing (and Imager/Nominal Scanned Pixel Spacing) / s; Image Position (Patient) moved to the centre of
the new first pixel, ``-(s-1)/(2s)`` of the old spacing along the row and column directions of Image
Orientation (Patient) (also in the functional groups of enhanced multi-frame images); overlays enlarged
with them; ultrasound regions rescaled; a Series Description saying the series is enlarged. Output is
explicit VR little endian, pixels streamed band by band after the header (nothing full-size in memory).
"""

from __future__ import annotations

import contextlib
import datetime
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mdrn.io.images import ImageData, ImageReadError, _keep_icc, check_pixel_count

__all__ = [
    "LOSSY_TRANSFER_SYNTAXES",
    "Derivation",
    "derived_dataset",
    "derived_series_number",
    "frame_count",
    "is_dicom_file",
    "is_mdrn_derived",
    "missing_decoder",
    "read_dicom",
    "read_frame",
    "read_header",
    "sort_series",
    "write_dicom",
]

#: Transfer syntaxes that are always lossy, with the Lossy Image Compression Method they imply.
LOSSY_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG extended
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS near-lossless
}
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
# elements about the source's pixel data or its encoding that do not hold for the enlarged pixels
_DROPPED = {
    0x7FE00010,  # Pixel Data
    0x7FE00008,  # Float Pixel Data
    0x7FE00009,  # Double Float Pixel Data
    0x7FE00001,  # Extended Offset Table
    0x7FE00002,  # Extended Offset Table Lengths
    0x00880200,  # Icon Image Sequence (a thumbnail of the source)
    0x00280106,  # Smallest Image Pixel Value
    0x00280107,  # Largest Image Pixel Value
    0x00280108,  # Smallest Pixel Value in Series
    0x00280109,  # Largest Pixel Value in Series
    0x00287FE0,  # Pixel Data Provider URL
    0x00280006,  # Planar Configuration (set again for colour)
    0x00082112,  # Source Image Sequence (replaced: it references our source)
    0xFFFCFFFC,  # Data Set Trailing Padding
}
#: Segmentation SOP classes: label maps (1-bit BINARY or 8-bit FRACTIONAL/LABELMAP), not images to enlarge
_SEGMENTATIONS = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_SPATIAL_RESAMPLING = ("113085", "DCM", "Spatial resampling")
_SOURCE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")


def is_dicom_file(path: str | Path) -> bool:
    """Whether the file starts like a DICOM Part 10 file (128-byte preamble, then ``DICM``)."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


@contextlib.contextmanager
def quiet_value_warnings() -> Iterator[None]:
    """Within it, pydicom does not warn about values it cannot validate: its warning quotes the value
    ("Invalid value for VR DA: '1945-08-17'"), a patient's data on stderr or in a journal. Values are read
    and written the same; usable as a decorator (the command-line entry points)."""
    from pydicom import config

    before = (config.settings.reading_validation_mode, config.settings.writing_validation_mode)
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = before


def read_header(path: str | Path) -> Any:
    """The dataset of a DICOM file with large values (pixel data) left on disk until used."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, defer_size=4096)
    except InvalidDicomError as exc:
        raise ImageReadError(path, "not a DICOM file (no DICOM file header)") from exc
    except Exception as exc:  # pydicom raises many kinds on damaged headers
        raise ImageReadError(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    _check_elements(path, ds, path.stat().st_size)
    return ds


def _check_elements(path: Path, ds: Any, size: int) -> None:
    """Every value read with the header converts, and every one left on disk lies within the file
    (pydicom converts values when first used: a damaged one would fail in the middle of the work)."""
    for tag, raw in list(ds._dict.items()):
        if getattr(raw, "value", b"") is None:  # a large value left on disk (pixel data: checked later)
            if tag != 0x7FE00010 and raw.length != 0xFFFFFFFF and raw.value_tell + raw.length > size:
                raise ImageReadError(path, f"truncated or damaged file: element {tag} runs past its end")
            continue
        try:
            elem = ds[tag]
        except Exception as exc:  # its message quotes the value's bytes: not repeated
            raise ImageReadError(path, f"damaged DICOM element {tag} ({type(exc).__name__})") from exc
        if elem.VR == "SQ":
            for item in elem.value:
                _check_elements(path, item, size)


def frame_count(ds: Any) -> int:
    """Number of frames in the dataset (1 for single-frame images)."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _check_image_header(path: Path, ds: Any, max_pixels: int | None) -> None:
    """Pixel data present, a supported layout, and within the pixel limit (before decoding)."""
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise ImageReadError(path, "floating-point DICOM pixel data is not supported")
    if "PixelData" not in ds:  # a file cut before its pixel data reads as a shorter dataset: say which
        uid = ds.get("SOPClassUID") or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", None)
        kind = getattr(getattr(uid, "name", None), "strip", lambda: "")()
        what = f"a DICOM {kind} object" if kind else "a DICOM file"
        why = "not an image" if kind else "not an image, or a truncated file"
        why = "a truncated or damaged file" if "Image Storage" in kind else why
        raise ImageReadError(path, f"{what} with no pixel data ({why})")
    if str(ds.get("SOPClassUID", "")) in _SEGMENTATIONS:
        raise ImageReadError(path, "a DICOM Segmentation is a label map, not an image: it is not enlarged")
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    if bits_stored > 16:
        raise ImageReadError(path, f"{bits_stored}-bit DICOM pixel data is not supported (at most 16 bit)")
    check_pixel_count(path, int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0), max_pixels)
    raw = ds._dict.get(0x7FE00010)  # the raw element (pixel data not read): its length and file offset
    end = getattr(raw, "value_tell", None)
    if end is not None and raw.length != 0xFFFFFFFF and end + raw.length > path.stat().st_size:
        have = max(0, path.stat().st_size - end)
        raise ImageReadError(path, f"truncated file: pixel data holds {have} of {raw.length} bytes")
    _check_native_length(path, ds, raw)


def _check_native_length(path: Path, ds: Any, raw: Any) -> None:
    """Uncompressed pixel data holds the bytes its header asks for (else a short file's or a wrong
    NumberOfFrames' error, before the decoder's reshape error)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if raw is None or syntax is None or syntax.is_compressed:
        return
    stored = raw.length if hasattr(raw, "length") else len(raw.value or b"")
    if stored == 0xFFFFFFFF:
        return
    try:
        rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
        frames, samples = frame_count(ds), int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return  # a header without these is named by the decoder
    if samples == 3 and str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
        samples = 2  # two pixels share one Cb and one Cr: Y Y Cb Cr (PS3.3 C.7.6.3.1.2)
    need = (rows * cols * frames * samples * bits + 7) // 8
    if stored < need:
        layout = f"{frames} frame(s) of {cols}x{rows}" + (f" x {samples} samples" if samples > 1 else "")
        raise ImageReadError(
            path, f"pixel data holds {stored} bytes where {layout} at {bits} bits allocated need {need}"
        )


def _to_image(path: Path, ds: Any, array: np.ndarray) -> ImageData:
    """Decoded pixels (pydicom's array: colour already RGB) as ImageData in mdrn's convention."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    signed_offset = 0
    if photometric in _MONOCHROME:
        if array.ndim != 2:
            raise ImageReadError(path, f"unexpected monochrome pixel array shape {array.shape}")
        if int(ds.get("PixelRepresentation", 0)) == 1:
            signed_offset = 1 << (bits_stored - 1)
            array = array.astype(np.int32) + signed_offset
        if array.min() < 0 or array.max() > (1 << bits_stored) - 1:
            raise ImageReadError(path, f"pixel values exceed the {bits_stored} stored bits")
    elif photometric == "RGB" or photometric.startswith("YBR"):
        if array.ndim != 3 or array.shape[2] != 3:
            raise ImageReadError(path, f"unexpected colour pixel array shape {array.shape}")
        photometric = "RGB"  # pydicom returns YCbCr data converted to RGB
    else:
        raise ImageReadError(path, f"{photometric} DICOM images are not supported")
    out = np.ascontiguousarray(array.astype(np.uint8 if bits_stored <= 8 else np.uint16))
    image = ImageData(
        out, bits_stored, path=path, dicom=ds, photometric=photometric, signed_offset=signed_offset,
        meta={"format": "DICOM"},
    )  # fmt: skip
    _keep_icc(image, ds.get("ICCProfile"))  # (0028,2000): a PNG or TIFF output carries it
    return image


#: JPEG Extended (Process 2 and 4): 8- or 12-bit JPEG
_JPEG_12_BIT = "1.2.840.10008.1.2.4.51"


def missing_decoder(transfer_syntax: str, *, every_depth: bool = False) -> str | None:
    """Why pixels in ``transfer_syntax`` cannot be decoded here (the syntax named, the packages to install).

    None when a decoder is available. ``every_depth``: a decoder for every bit depth the syntax allows
    (JPEG Extended: 12-bit too, which Pillow does not read; a node accepting data it has not seen yet).
    """
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    uid = UID(str(transfer_syntax))
    name = f"{uid.name} ({uid})" if uid.name != str(uid) else f"transfer syntax {uid}"
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"{name}: pydicom has no decoder for this transfer syntax"
    if not decoder.is_available:
        return f"{name} pixel data cannot be decoded here: install a decoder, e.g. {_install_hint(decoder)}"
    if every_depth and uid == _JPEG_12_BIT and not set(decoder.available_plugins) - {"pillow"}:
        return (
            f"{name} pixel data of 12 bits cannot be decoded here (Pillow reads only 8-bit JPEG): install a "
            f"decoder, e.g. {_install_hint(decoder)}"
        )
    return None


def _install_hint(decoder: Any) -> str:
    """``pip install ...`` for the decoder's plugins that are not installed ('' if none is missing)."""
    import re

    options = []
    for line in (
        decoder.missing_dependencies
    ):  # e.g. "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"
        needs = [p.strip() for p in re.split(r"\band\b|,", line.split("requires", 1)[-1])]
        options.append(" ".join(f"'{p}'" for p in needs if p and p != "numpy"))
    if not options:
        return ""
    options.sort(key=lambda o: "pylibjpeg" not in o)  # pip-installable wheels first
    text = f"pip install {options[0]}"
    return text + (f" (or {'; or '.join(options[1:])})" if len(options) > 1 else "")


def read_frame(path: str | Path, ds: Any, index: int | None = None) -> ImageData:
    """Decode one frame (``index``; None for a single-frame file) of a DICOM file whose header is ``ds``."""
    from pydicom.pixels import pixel_array

    path = Path(path)
    try:
        array = pixel_array(path, index=index)
    except Exception as exc:  # decoder errors: missing plugin, truncated or corrupt data
        text = " ".join(str(exc).split())  # pydicom lists the decoder packages to install on further lines
        problem = f"cannot decode DICOM pixel data ({type(exc).__name__}: {text})"
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and syntax.is_compressed:
            with contextlib.suppress(Exception):  # no decoder installed, or the installed one failed
                from pydicom.pixels import get_decoder

                decoder = get_decoder(syntax)
                hint = _install_hint(decoder)
                if not decoder.is_available:
                    problem = missing_decoder(syntax) or problem
                elif hint:  # e.g. Pillow on 12-bit JPEG Extended: another decoder may read it
                    problem += f"; another decoder may read {syntax.name}: {hint}"
        raise ImageReadError(path, problem) from exc
    return _to_image(path, ds, array)


def read_dicom(path: str | Path, *, max_pixels: int | None = None) -> ImageData:
    """Read a single-frame DICOM image (header checked against ``max_pixels`` before decoding)."""
    path = Path(path)
    ds = read_header(path)
    _check_image_header(path, ds, max_pixels)
    frames = frame_count(ds)
    if frames > 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames): open it as a volume")
    return read_frame(path, ds)


def check_volume_header(path: str | Path, ds: Any, max_pixels: int | None) -> None:
    """The checks of :func:`read_dicom` for a file read frame by frame (the limit applies per frame)."""
    _check_image_header(Path(path), ds, max_pixels)


# ------------------------------------------------------------------------------------------------------ #
# series


def sort_series(headers: Sequence[tuple[Path, Any]]) -> list[list[tuple[Path, Any]]]:
    """Group (file, dataset) pairs by Series Instance UID; order each group along the slice normal.

    The position along the normal of Image Orientation (Patient) orders slices where every file has a
    position and an orientation; otherwise Instance Number, then the file name.
    """
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for path, ds in headers:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))

    def along_normal(ds: Any) -> float | None:
        try:
            iop = np.array([float(v) for v in ds.ImageOrientationPatient])
            ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        except (AttributeError, TypeError, ValueError):
            return None
        return float(np.dot(ipp, np.cross(iop[:3], iop[3:])))

    out = []
    for members in groups.values():
        where = [along_normal(ds) for _, ds in members]
        if all(w is not None for w in where):
            order = sorted(range(len(members)), key=lambda i: (where[i], members[i][0].name))
        else:
            order = sorted(
                range(len(members)),
                key=lambda i: (int(members[i][1].get("InstanceNumber", 0) or 0), members[i][0].name),
            )
        out.append([members[i] for i in order])
    return sorted(out, key=lambda g: g[0][0].name)


# ------------------------------------------------------------------------------------------------------ #
# derived instances


@dataclass
class Derivation:
    """How derived images are made (scale, method, model) and the new series UID of each source series."""

    scale: int
    method: str  # e.g. "bicubic interpolation (no network)" or "the super-resolution network mdrn_small"
    model: str  # the model's short name, as in output file names
    _series: dict[str, str] = field(default_factory=dict, repr=False)

    def series_uid(self, source_series_uid: str) -> str:
        """The new Series Instance UID for a source series (the same for all its slices)."""
        from pydicom.uid import generate_uid

        return self._series.setdefault(source_series_uid, generate_uid())

    def instance_uid(self, source_instance_uid: str) -> str:
        """The SOP Instance UID of the image derived from a source instance (a new one each call)."""
        from pydicom.uid import generate_uid

        return generate_uid()


def _ds(value: float) -> Any:
    """A decimal string of at most 16 characters (PS3.5), without needless trailing digits."""
    from pydicom.valuerep import DSfloat

    text = f"{float(value):.10g}"
    return DSfloat(text) if len(text) <= 16 else DSfloat(float(value), auto_format=True)


def _copy(src: Any, swap: bool, skip: set[int]) -> Any:
    """A new Dataset with ``src``'s elements (sequences copied deeply), byte-swapped OW/OF/... if ``swap``."""
    from pydicom import Dataset
    from pydicom.dataelem import DataElement
    from pydicom.sequence import Sequence as DicomSequence

    out = Dataset()
    for tag in src.keys():
        if int(tag) in skip:
            continue
        elem = src[tag]
        if elem.VR == "SQ":
            value = DicomSequence([_copy(item, swap, set()) for item in elem.value])
        elif swap and elem.VR in _SWAP_WIDTH and isinstance(elem.value, bytes):
            width = _SWAP_WIDTH[elem.VR]
            value = np.frombuffer(elem.value, f">u{width}").astype(f"<u{width}").tobytes()
        else:
            value = elem.value
        out.add(DataElement(elem.tag, elem.VR, value))
    return out


def _code_item(code: tuple[str, str, str]) -> Any:
    from pydicom import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def _set_type(values: Any, enhanced: bool) -> list[str]:
    """Image/Frame Type with value 1 DERIVED and value 2 SECONDARY, other values kept.

    Enhanced multi-frame IODs allow only PRIMARY as value 2 (PS3.3 C.8.16.1.2): it is kept there.
    """
    out = [values] if isinstance(values, str) else list(values or ["DERIVED", "PRIMARY"])
    out += [""] * (2 - len(out))
    out[0] = "DERIVED"
    if not enhanced:
        out[1] = "SECONDARY"
    return out


def _is_enhanced(ds: Any) -> bool:
    """Whether the SOP class is an enhanced (functional-group) multi-frame image."""
    name = getattr(ds.get("SOPClassUID"), "name", "") or ""
    return "Enhanced" in name or "SharedFunctionalGroupsSequence" in ds


def _shift_position(position: Any, orientation: Any, spacing: Any, scale: int) -> list[Any] | None:
    """Image Position (Patient) of the new first pixel centre: -(s-1)/(2s) of a pixel along rows, columns."""
    try:
        ipp = np.array([float(v) for v in position])
        iop = np.array([float(v) for v in orientation])
        row_spacing, col_spacing = (float(v) for v in spacing)
    except (TypeError, ValueError):
        return None
    shift = -(scale - 1) / (2 * scale) * (col_spacing * iop[:3] + row_spacing * iop[3:])
    return [_ds(v) for v in ipp + shift]


def _scale_spacing(item: Any, scale: int) -> None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        if item.get(keyword):
            item[keyword].value = [_ds(float(v) / scale) for v in item[keyword].value]


def _functional_groups(ds: Any, scale: int) -> None:
    """Frame types, plane positions and pixel spacing in the shared and per-frame functional groups."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    frames = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    groups = [g for g in (shared, *frames) if g is not None]

    def first(frame: Any, keyword: str) -> Any:
        """The macro item that applies to a frame: its own, else the shared one."""
        for group in (frame, shared):
            if group is not None and group.get(keyword):
                return group[keyword].value[0]
        return None

    for group in groups:
        for seq in group:
            if seq.VR == "SQ" and seq.keyword.endswith("FrameTypeSequence"):
                for item in seq.value:
                    if "FrameType" in item:
                        item.FrameType = _set_type(item.FrameType, enhanced=True)
    moved: set[int] = set()  # a shared plane position is moved once, not once per frame
    for frame in frames or [None]:
        plane, orient, measures = (
            first(frame, f"{k}Sequence") for k in ("PlanePosition", "PlaneOrientation", "PixelMeasures")
        )
        if plane is None or orient is None or measures is None or id(plane) in moved:
            continue
        if "ImagePositionPatient" in plane and "PixelSpacing" in measures:
            position = _shift_position(
                plane.ImagePositionPatient, orient.ImageOrientationPatient, measures.PixelSpacing, scale
            )
            if position is not None:
                plane.ImagePositionPatient = position
                moved.add(id(plane))
    scaled: set[int] = set()
    for group in groups:
        for measures in group.get("PixelMeasuresSequence") or []:
            if id(measures) not in scaled:
                scaled.add(id(measures))
                _scale_spacing(measures, scale)


def _overlays(dest: Any, src: Any, scale: int) -> None:
    """Single-frame overlays enlarged by pixel repetition with their origin; others are left out."""
    from pydicom.pixels import pack_bits
    from pydicom.tag import Tag

    for group in range(0x6000, 0x6020, 2):
        if Tag(group, 0x3000) not in src:
            continue
        if int(src[Tag(group, 0x0015)].value or 1) > 1 if Tag(group, 0x0015) in src else False:
            continue  # multi-frame overlay: not carried over
        bits = src.overlay_array(group)
        big = np.repeat(np.repeat(bits, scale, axis=0), scale, axis=1)
        for tag in [t for t in src.keys() if t.group == group and t.element != 0x3000]:
            dest.add(_copy_element(src[tag]))
        dest[Tag(group, 0x0010)].value, dest[Tag(group, 0x0011)].value = big.shape
        if Tag(group, 0x0050) in dest:
            dest[Tag(group, 0x0050)].value = [
                (int(v) - 1) * scale + 1 for v in dest[Tag(group, 0x0050)].value
            ]
        dest.add_new(Tag(group, 0x3000), "OW", pack_bits(big.ravel()))


def _copy_element(elem: Any) -> Any:
    from pydicom.dataelem import DataElement

    return DataElement(elem.tag, elem.VR, elem.value)


def _ultrasound_regions(ds: Any, scale: int) -> None:
    """Region bounds and reference pixels in the new pixel grid, physical deltas divided by the scale."""
    for region in ds.get("SequenceOfUltrasoundRegions") or []:
        for keyword in ("RegionLocationMinX0", "RegionLocationMinY0"):
            if keyword in region:
                region[keyword].value = int(region[keyword].value) * scale
        for keyword in ("RegionLocationMaxX1", "RegionLocationMaxY1"):
            if keyword in region:
                region[keyword].value = int(region[keyword].value) * scale + scale - 1
        for keyword in ("ReferencePixelX0", "ReferencePixelY0"):
            if keyword in region:
                region[keyword].value = int(round(int(region[keyword].value) * scale + (scale - 1) / 2))
        for keyword in ("PhysicalDeltaX", "PhysicalDeltaY"):
            if keyword in region:
                region[keyword].value = float(region[keyword].value) / scale


_MARK = "mdrn "  # in the Derivation Description, before the version: "(mdrn 0.1.0)"


def is_mdrn_derived(ds: Any) -> bool:
    """Whether a dataset is an image that mdrn enlarged (its Derivation Description says so)."""
    return f"({_MARK}" in str(ds.get("DerivationDescription", "") or "")


def derived_series_number(original: Any, scale: int) -> int:
    """The derived series' number: the source's plus 1000 x scale (series 3 enlarged x2 is 2003), so a
    PACS lists it apart from its source; 1000 x scale for a source without one. Kept within IS's range."""
    try:
        number = int(str(original).strip()) if original not in (None, "") else 0
    except ValueError:
        number = 0
    return min(number + 1000 * int(scale), 2**31 - 1) if number >= 0 else 1000 * int(scale)


def derived_dataset(image: ImageData, how: Derivation, *, frames: int = 1) -> Any:
    """The header of the enlarged image of ``image`` (a DICOM input; pixel data appended by the writer)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from mdrn import __version__

    src = image.dicom
    if src is None:
        raise ValueError("a derived DICOM needs a DICOM source")
    scale = int(how.scale)
    encoding = getattr(src, "original_encoding", (False, True))
    overlay_groups = {int(t) for t in src.keys() if 0x6000 <= t.group <= 0x601E}
    ds = _copy(src, swap=encoding[1] is False, skip=_DROPPED | overlay_groups)
    _overlays(ds, src, scale)

    uid = how.instance_uid(str(src.get("SOPInstanceUID", "")))
    ds.SOPInstanceUID = uid
    ds.SeriesInstanceUID = how.series_uid(str(src.get("SeriesInstanceUID", "")))
    ds.SeriesNumber = derived_series_number(src.get("SeriesNumber"), scale)
    ds.ImageType = _set_type(src.get("ImageType"), _is_enhanced(src))
    ds.DerivationDescription = (
        f"Enlarged x{scale} in-plane by {how.method} ({_MARK}{__version__}); "
        f"pixel spacing divided by {scale}, "
        "image position moved to the centre of the new first pixel."
    )
    ds.DerivationCodeSequence = [_code_item(_SPATIAL_RESAMPLING)]
    reference = _code_item(_SOURCE_FOR_PROCESSING)
    source_item = Dataset()
    source_item.ReferencedSOPClassUID = src.SOPClassUID
    source_item.ReferencedSOPInstanceUID = src.SOPInstanceUID
    source_item.PurposeOfReferenceCodeSequence = [reference]
    ds.SourceImageSequence = [source_item]
    syntax = str(getattr(getattr(src, "file_meta", None), "TransferSyntaxUID", ""))
    if syntax in LOSSY_TRANSFER_SYNTAXES and ds.get("LossyImageCompression") != "01":
        ds.LossyImageCompression = "01"
        methods = list(ds.get("LossyImageCompressionMethod") or [])
        ds.LossyImageCompressionMethod = [*methods, LOSSY_TRANSFER_SYNTAXES[syntax]]
    original = str(src.get("SeriesDescription", "") or "").strip()
    suffix = f" (enlarged x{scale}, {how.model})"
    ds.SeriesDescription = (
        (original[: 64 - len(suffix)] + suffix)[:64] if original else f"Enlarged x{scale} ({how.model})"[:64]
    )

    ds.Rows, ds.Columns = image.height * scale, image.width * scale
    ds.SamplesPerPixel = 1 if image.photometric in _MONOCHROME else 3
    ds.PhotometricInterpretation = image.photometric
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if image.bit_depth <= 8 else 16
    ds.BitsStored = image.bit_depth
    ds.HighBit = image.bit_depth - 1
    ds.PixelRepresentation = 1 if image.signed_offset else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds and "PixelSpacing" in ds:
        moved = _shift_position(ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing, scale)
        if moved is not None:
            ds.ImagePositionPatient = moved
    _scale_spacing(ds, scale)
    _functional_groups(ds, scale)
    _ultrasound_regions(ds, scale)
    now = datetime.datetime.now()
    ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S.%f")

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = src.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_dicom(fh: BinaryIO, ds: Any, bands: Iterable[np.ndarray], *, signed_offset: int = 0) -> None:
    """Write ``ds`` (explicit VR little endian), then its pixel data from ``bands`` (rows of all frames)."""
    from pydicom.filewriter import dcmwrite

    dcmwrite(fh, ds, enforce_file_format=True)
    eight = int(ds.BitsAllocated) == 8
    expected = (
        int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * frame_count(ds) * (1 if eight else 2)
    )
    padded = expected + (expected % 2)
    if padded > 0xFFFFFFFE:  # the longest value a DICOM element holds (e.g. a NumberOfFrames far too high)
        raise ValueError(
            f"{frame_count(ds)} frame(s) enlarged to {ds.Columns}x{ds.Rows} need {padded / 2**30:.1f} GiB of "
            "pixel data, over the 4 GiB a DICOM file holds"
        )
    fh.write(struct.pack("<HH", 0x7FE0, 0x0010) + (b"OB" if eight else b"OW") + b"\0\0")
    fh.write(struct.pack("<I", padded))
    stored = np.dtype("<i1" if eight else "<i2") if signed_offset else np.dtype("<u1" if eight else "<u2")
    written = 0
    for band in bands:
        values = band.astype(np.int32) - signed_offset if signed_offset else band
        data = np.ascontiguousarray(values.astype(stored)).tobytes()
        written += len(data)
        if written > expected:
            raise ValueError(f"more pixel data than {ds.Rows}x{ds.Columns}x{frame_count(ds)} frames")
        fh.write(data)
    if written != expected:
        raise ValueError(f"pixel data of {written} bytes, expected {expected}")
    if padded != expected:
        fh.write(b"\0")
