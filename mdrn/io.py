"""Reading and writing medical and natural images without silent conversions.

One module owns image files: PNG, JPEG, TIFF, BMP and DICOM in; PNG, TIFF and DICOM out. Gray stays gray,
16-bit stays 16-bit, a 12-bit DICOM keeps its 12 significant bits. Every failure is one
:class:`ImageReadError` that names the file and the problem. Writes are atomic (temporary file in the same
folder, then ``os.replace``) and never overwrite an existing file unless asked.

Pixel convention: ``ImageData.array`` is ``uint8`` or ``uint16`` of shape ``(H, W)`` (gray) or
``(H, W, 3)`` (RGB) holding values in ``0 .. 2**bit_depth - 1``; :func:`image_to_tensor` maps that range
to ``[0, 1]``, which is the convention of every model and metric in ``mdrn``.
"""

from __future__ import annotations

import copy
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ImageData",
    "ImageReadError",
    "atomic_write",
    "image_to_tensor",
    "is_image_file",
    "read_image",
    "tensor_to_array",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")
DICOM_SUFFIXES = (".dcm", ".dicom")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageReadError(ValueError):
    """An image file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class ImageData:
    """Decoded pixels with the facts needed to score and write them back faithfully."""

    array: np.ndarray
    bit_depth: int
    path: Path | None = None
    dicom: Any = None  # pydicom Dataset of a DICOM input (pixel data excluded from interpretation)
    photometric: str = "MONOCHROME2"  # MONOCHROME1, MONOCHROME2 or RGB
    signed_offset: int = 0  # added to signed DICOM values to make them unsigned; removed on write
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """1 for gray, 3 for RGB."""
        return 1 if self.array.ndim == 2 else self.array.shape[2]

    @property
    def peak(self) -> int:
        """Largest representable value, 2**bit_depth - 1 (the PSNR peak of the paper's Eq. 4)."""
        return (1 << self.bit_depth) - 1

    @property
    def height(self) -> int:
        """Number of rows."""
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        """Number of columns."""
        return int(self.array.shape[1])


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file name has one of the supported image suffixes."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _png_header(head: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG IHDR, or None if not a PNG."""
    if len(head) < 29 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _looks_like_dicom(path: Path, head: bytes) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES or (len(head) >= 132 and head[128:132] == b"DICM")


def read_image(path: str | os.PathLike[str]) -> ImageData:
    """Read a PNG, JPEG, TIFF, BMP or DICOM file into an :class:`ImageData` (no silent bit-depth change)."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    size = path.stat().st_size
    if size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    with path.open("rb") as fh:
        head = fh.read(132)
    try:
        if _looks_like_dicom(path, head):
            image = _read_dicom(path)
        elif path.suffix.lower() in (".tif", ".tiff") or head[:4] in (b"II*\x00", b"MM\x00*"):
            image = _read_tiff(path)
        else:
            png = _png_header(head)
            if png is not None and png[0] == 16 and png[1] in (2, 6):
                image = _read_png16_rgb(path)
            else:
                image = _read_pillow(path)
            if png is not None:
                significant = _png_significant_bits(path)
                if significant and significant < image.bit_depth:
                    image.bit_depth = significant
    except ImageReadError:
        raise
    except Exception as exc:  # decoder errors of PIL, tifffile, pydicom, png: one clear message
        raise ImageReadError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    image.path = path
    _check_shape(path, image.array)
    return image


def _check_shape(path: Path, array: np.ndarray) -> None:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise ImageReadError(path, f"unsupported pixel layout {array.shape} (expected HxW or HxWx3)")
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(path, f"unsupported sample type {array.dtype} (expected 8 to 16-bit integers)")
    if min(array.shape[:2]) < 1:
        raise ImageReadError(path, f"image has no pixels (shape {array.shape})")


def _png_significant_bits(path: Path) -> int | None:
    """The sBIT chunk's significant bits (e.g. 12 in a 16-bit PNG), or None when absent."""
    with path.open("rb") as fh:
        fh.seek(8)
        while True:
            header = fh.read(8)
            if len(header) < 8:
                return None
            length, kind = struct.unpack(">I4s", header)
            if kind == b"sBIT":
                return max(fh.read(length)[:3]) or None
            if kind in (b"IDAT", b"IEND"):
                return None
            fh.seek(length + 4, os.SEEK_CUR)


def _read_pillow(path: Path) -> ImageData:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            meta = {"format": im.format}
            if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                array = np.asarray(im, dtype=np.uint16).copy()
                return ImageData(array, 16, meta=meta)
            if mode == "I":
                raw = np.asarray(im)
                if raw.min() < 0 or raw.max() > 65535:
                    raise ImageReadError(path, "32-bit integer pixels outside 0..65535 are not supported")
                return ImageData(raw.astype(np.uint16), 16, meta=meta)
            if mode == "F":
                raise ImageReadError(path, "floating-point pixels are not supported (expected 8 to 16 bit)")
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            if mode in ("1", "L"):
                return ImageData(np.asarray(im.convert("L")).copy(), 8, meta=meta)
            if mode in ("LA", "La"):
                return ImageData(np.asarray(im.getchannel(0)).copy(), 8, meta=meta)
            if mode in ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
                rgb = np.asarray(im.convert("RGB")).copy()
                if mode in ("RGBA", "RGBa"):
                    meta["alpha_dropped"] = True
                return ImageData(rgb, 8, photometric="RGB", meta=meta)
            raise ImageReadError(path, f"unsupported image mode {mode!r}")
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not a recognised image file (PNG, JPEG, TIFF, BMP or DICOM)") from exc
    except OSError as exc:
        raise ImageReadError(path, f"truncated or corrupt image data ({exc})") from exc


def _read_png16_rgb(path: Path) -> ImageData:
    import png  # pypng: Pillow cannot decode 16-bit RGB PNGs without reducing them to 8 bits

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    meta: dict[str, Any] = {"format": "PNG"}
    if planes == 4:
        meta["alpha_dropped"] = True
    return ImageData(np.ascontiguousarray(array[..., :3]), 16, photometric="RGB", meta=meta)


def _read_tiff(path: Path) -> ImageData:
    import tifffile

    array = tifffile.imread(path)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # planar configuration
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim > 3:
        raise ImageReadError(path, f"multi-page or volumetric TIFF {array.shape} is not supported")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype.kind == "f":
        raise ImageReadError(
            path, f"floating-point TIFF ({array.dtype}) is not supported (expected 8-16 bit)"
        )
    if array.dtype.kind == "i":
        raise ImageReadError(path, f"signed integer TIFF ({array.dtype}) is not supported")
    if array.dtype.itemsize > 2:
        raise ImageReadError(path, f"{8 * array.dtype.itemsize}-bit TIFF is not supported (at most 16 bit)")
    bit_depth = 8 * array.dtype.itemsize
    photometric = "RGB" if array.ndim == 3 else "MONOCHROME2"
    return ImageData(np.ascontiguousarray(array), bit_depth, photometric=photometric, meta={"format": "TIFF"})


def _read_dicom(path: Path) -> ImageData:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ImageReadError(path, f"not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(path, "DICOM file has no pixel data")
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise ImageReadError(path, "floating-point DICOM pixel data is not supported")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(path, f"multi-frame DICOM ({frames} frames) is not supported: export one frame")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if bits_stored > 16:
        raise ImageReadError(path, f"{bits_stored}-bit DICOM pixel data is not supported (at most 16 bit)")
    try:
        array = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(path, f"cannot decode DICOM pixel data ({type(exc).__name__}: {exc})") from exc
    signed_offset = 0
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if array.ndim != 2:
            raise ImageReadError(path, f"unexpected monochrome pixel array shape {array.shape}")
        if int(ds.get("PixelRepresentation", 0)) == 1:
            signed_offset = 1 << (bits_stored - 1)
            array = array.astype(np.int32) + signed_offset
        peak = (1 << bits_stored) - 1
        if array.min() < 0 or array.max() > peak:
            raise ImageReadError(path, f"pixel values exceed the {bits_stored} stored bits")
        dtype = np.uint8 if bits_stored <= 8 else np.uint16
        out = array.astype(dtype)
    else:
        if array.ndim != 3 or array.shape[2] != 3:
            raise ImageReadError(path, f"unexpected colour pixel array shape {array.shape}")
        if photometric.startswith("YBR") and photometric not in ("YBR_RCT", "YBR_ICT"):
            from pydicom.pixels import convert_color_space

            array = convert_color_space(array, photometric, "RGB")
        out = array.astype(np.uint8 if bits_stored <= 8 else np.uint16)
        photometric = "RGB"
    return ImageData(
        np.ascontiguousarray(out),
        bits_stored,
        dicom=ds,
        photometric=photometric,
        signed_offset=signed_offset,
        meta={"format": "DICOM"},
    )


def image_to_tensor(image: ImageData, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixels as a float tensor (C, H, W) in [0, 1]: the n-bit range 0..2^n-1 maps to [0, 1]."""
    array = image.array if image.array.ndim == 3 else image.array[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float64))
    return (tensor / image.peak).to(dtype)


def tensor_to_array(tensor: torch.Tensor, bit_depth: int) -> np.ndarray:
    """A float tensor (C, H, W) or (1, C, H, W) in [0, 1] as rounded uint8/uint16 pixels (H, W[, 3])."""
    from mdrn.metrics import quantize

    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) tensor with C = 1 or 3, got shape {tuple(tensor.shape)}")
    if not 1 <= bit_depth <= 16:
        raise ValueError(f"unsupported bit depth {bit_depth} (1 to 16)")
    peak = (1 << bit_depth) - 1
    values = torch.round(quantize(tensor.detach().to("cpu", torch.float64), bit_depth) * peak)
    array = values.numpy().astype(np.uint8 if bit_depth <= 8 else np.uint16)
    array = array.transpose(1, 2, 0)
    return np.ascontiguousarray(array[..., 0] if array.shape[2] == 1 else array)


def atomic_write(
    path: str | os.PathLike[str], writer: Callable[[Path], None], *, overwrite: bool = False
) -> Path:
    """Run ``writer(tmp)`` on a temporary file beside ``path`` and move it into place; never half-written."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        if not overwrite and path.exists():
            raise FileExistsError(f"{path}: appeared while writing; not overwritten")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _umask() -> int:
    """The process umask (read by setting and restoring it; done once per call site, not per pixel)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_image(
    path: str | os.PathLike[str],
    array: np.ndarray,
    *,
    bit_depth: int,
    reference: ImageData | None = None,
    scale: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write pixels (H, W[, 3]) as PNG, TIFF or DICOM, chosen by suffix, keeping gray/RGB and bit depth.

    DICOM output needs ``reference`` (the DICOM input): its tags are kept, rows/columns and pixel data are
    replaced, the pixel spacing is divided by ``scale``, and a new SOP Instance UID is generated.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    array = np.ascontiguousarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"{path}: cannot write pixels of shape {array.shape} (expected HxW or HxWx3)")
    expected = np.uint8 if bit_depth <= 8 else np.uint16
    if array.dtype != expected:
        raise ValueError(
            f"{path}: {bit_depth}-bit output needs {np.dtype(expected).name} pixels, got {array.dtype}"
        )
    if suffix == ".png":
        writer = _png_writer(array, bit_depth)
    elif suffix in (".tif", ".tiff"):
        writer = _tiff_writer(array)
    elif suffix in DICOM_SUFFIXES:
        if reference is None or reference.dicom is None:
            raise ValueError(f"{path}: DICOM output needs a DICOM input as reference")
        writer = _dicom_writer(array, reference, scale)
    else:
        raise ValueError(f"{path}: unsupported output format {suffix!r} (use .png, .tif or .dcm)")
    return atomic_write(path, writer, overwrite=overwrite)


def _png_writer(array: np.ndarray, bit_depth: int) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        if array.dtype == np.uint16 and array.ndim == 3:
            import png

            height, width = array.shape[:2]
            writer = png.Writer(width, height, greyscale=False, bitdepth=16)
            with tmp.open("wb") as fh:
                writer.write(fh, array.reshape(height, width * 3).tolist())
        else:
            from PIL import Image

            image = Image.fromarray(array)
            image.save(tmp, format="PNG")
        if bit_depth not in (8, 16):
            _add_png_sbit(tmp, array, bit_depth)

    return write


def _add_png_sbit(path: Path, array: np.ndarray, bit_depth: int) -> None:
    """Record the significant bits (e.g. 12 of 16) in an sBIT chunk, as the PNG standard provides."""
    import zlib

    data = path.read_bytes()
    channels = 1 if array.ndim == 2 else 3
    payload = bytes([bit_depth] * channels)
    chunk = struct.pack(">I", len(payload)) + b"sBIT" + payload
    chunk += struct.pack(">I", zlib.crc32(b"sBIT" + payload) & 0xFFFFFFFF)
    ihdr_end = 8 + 8 + 13 + 4
    path.write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])


def _tiff_writer(array: np.ndarray) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        import tifffile

        photometric = "rgb" if array.ndim == 3 else "minisblack"
        tifffile.imwrite(tmp, array, photometric=photometric, compression="zlib")

    return write


def _dicom_writer(array: np.ndarray, reference: ImageData, scale: float | None) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid

        ds = copy.deepcopy(reference.dicom)
        pixels = array
        if reference.photometric == "RGB":
            if array.ndim != 3:
                raise ValueError("RGB DICOM reference needs RGB output pixels")
            ds.PhotometricInterpretation = "RGB"
            ds.SamplesPerPixel = 3
            ds.PlanarConfiguration = 0
        elif array.ndim != 2:
            raise ValueError("monochrome DICOM reference needs gray output pixels")
        if reference.signed_offset:
            pixels = (array.astype(np.int32) - reference.signed_offset).astype(np.int16)
        ds.Rows, ds.Columns = int(array.shape[0]), int(array.shape[1])
        ds.BitsAllocated = 8 if pixels.dtype.itemsize == 1 else 16
        ds.BitsStored = reference.bit_depth
        ds.HighBit = reference.bit_depth - 1
        ds.PixelData = pixels.tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        for tag in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
            if tag in ds and scale:
                ds[tag].value = [f"{float(v) / scale:.6g}" for v in ds[tag].value]
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        derivation = f"mdrn super-resolution x{scale:g}" if scale else "mdrn super-resolution"
        ds.DerivationDescription = derivation
        image_type = list(ds.get("ImageType", ["DERIVED", "SECONDARY"]))
        if image_type:
            image_type[0] = "DERIVED"
            ds.ImageType = image_type
        for tag in ("LossyImageCompression",):
            if tag in ds:
                del ds[tag]
        ds.save_as(tmp, enforce_file_format=True)

    return write
