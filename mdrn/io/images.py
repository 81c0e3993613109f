"""Reading and writing medical and natural images without silent conversions.

One module owns image files: PNG, JPEG, TIFF, BMP and DICOM in; PNG, TIFF and DICOM out. Gray stays gray,
16-bit stays 16-bit, a 12-bit DICOM keeps its 12 significant bits, an alpha channel is kept beside the
pixels (``ImageData.alpha``), an ICC colour profile goes from PNG, JPEG, TIFF, DICOM input to PNG, TIFF output
(``ImageData.meta["icc_profile"]``). Every failure is one :class:`ImageReadError` that names the file and
the problem. The pixel count is checked from the file header before anything is decoded (``max_pixels``,
default :data:`DEFAULT_MAX_PIXELS`), so a small file declaring a huge image is refused at no cost; a
truncated file is an error, never a partial image. Writes are atomic (temporary file in the same folder,
then ``os.replace``), never overwrite an existing file unless asked, and report a missing permission or a
full disk as one line naming the file or folder. DICOM specifics live in :mod:`mdrn.io.dicom`, the encoders
in :mod:`mdrn.io.writers`.

Pixel convention: ``ImageData.array`` is ``uint8`` or ``uint16`` of shape ``(H, W)`` (gray) or
``(H, W, 3)`` (RGB) holding values in ``0 .. 2**bit_depth - 1``; :func:`image_to_tensor` maps that range
to ``[0, 1]``, which is the convention of every model and metric in ``mdrn``.
"""

from __future__ import annotations

import errno
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ImageData",
    "ImageReadError",
    "atomic_write",
    "check_pixel_count",
    "image_size",
    "image_to_tensor",
    "is_image_file",
    "os_error",
    "read_image",
    "tensor_to_array",
    "write_bands",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")
DICOM_SUFFIXES = (".dcm", ".dicom")
#: Largest input image (pixels per image or slice) read unless the caller raises it: about 100 megapixels.
DEFAULT_MAX_PIXELS = 100_000_000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ICC_MAX_BYTES = 1 << 26  # an ICC profile is kilobytes, a few megabytes at most


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
    alpha: np.ndarray | None = None  # (H, W) opacity of the same type and bit depth, when the file has one

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


def _png_header(head: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG IHDR, or None if not a PNG."""
    if len(head) < 29 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height, head[24], head[25]


def _looks_like_dicom(path: Path, head: bytes) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES or (len(head) >= 132 and head[128:132] == b"DICM")


def check_pixel_count(path: str | os.PathLike[str], width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (None: no limit), before it is decoded."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            path,
            f"{width}x{height} pixels ({width * height / 1e6:.1f} megapixels) exceed the limit of "
            f"{max_pixels / 1e6:g} megapixels (raise it with --max-pixels if the image is genuine)",
        )


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of an image file from its header, no pixel decoded (else :class:`ImageReadError`)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
        if _looks_like_dicom(path, head):
            from mdrn.io.dicom import read_header

            ds = read_header(path)
            return int(ds.Columns), int(ds.Rows)
        if path.suffix.lower() in (".tif", ".tiff") or head[:4] in (b"II*\x00", b"MM\x00*"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return int(tif.pages[0].imagewidth), int(tif.pages[0].imagelength)
        png = _png_header(head)
        if png is not None:
            return png[0], png[1]
        from PIL import Image

        with Image.open(path) as im:  # reads the header only
            return int(im.width), int(im.height)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(path, f"cannot read the image header ({type(exc).__name__}: {exc})") from exc


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read a PNG, JPEG, TIFF, BMP or DICOM file into an :class:`ImageData` (no silent bit-depth change).

    Images of more than ``max_pixels`` pixels (None: no limit) are refused from their header.
    """
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
            from mdrn.io.dicom import read_dicom

            image = read_dicom(path, max_pixels=max_pixels)
        elif path.suffix.lower() in (".tif", ".tiff") or head[:4] in (b"II*\x00", b"MM\x00*"):
            image = _read_tiff(path, max_pixels)
        else:
            png = _png_header(head)
            if png is not None:
                check_pixel_count(path, png[0], png[1], max_pixels)
            if png is not None and png[2] == 16 and png[3] in (2, 4, 6):
                image = _read_png16(path)
            else:
                image = _read_pillow(path, max_pixels)
            if png is not None:
                significant, profile = _png_ancillary(path)
                if significant and significant < image.bit_depth:
                    _significant_bits(image, significant)
                _keep_icc(image, profile)
    except ImageReadError:
        raise
    except Exception as exc:  # decoder errors of PIL, tifffile, pydicom, png: one clear message
        raise ImageReadError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    image.path = path
    _check_shape(path, image.array, image.alpha)
    return image


def _check_shape(path: Path, array: np.ndarray, alpha: np.ndarray | None = None) -> None:
    if alpha is not None and (alpha.shape != array.shape[:2] or alpha.dtype != array.dtype):
        raise ImageReadError(path, f"alpha channel {alpha.shape} does not match the pixels {array.shape}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise ImageReadError(path, f"unsupported pixel layout {array.shape} (expected HxW or HxWx3)")
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(path, f"unsupported sample type {array.dtype} (expected 8 to 16-bit integers)")
    if min(array.shape[:2]) < 1:
        raise ImageReadError(path, f"image has no pixels (shape {array.shape})")


def _png_ancillary(path: Path) -> tuple[int | None, bytes | None]:
    """The sBIT chunk's significant bits (e.g. 12 in a 16-bit PNG) and the iCCP chunk's colour profile,
    each None when absent (a profile that does not decompress counts as absent)."""
    significant = profile = None
    with path.open("rb") as fh:
        fh.seek(8)
        while True:
            header = fh.read(8)
            if len(header) < 8:
                break
            length, kind = struct.unpack(">I4s", header)
            if kind in (b"IDAT", b"IEND"):
                break
            if kind == b"sBIT":
                significant = max(fh.read(length)[:3]) or None
            elif kind == b"iCCP":
                _name, _, rest = fh.read(length).partition(b"\0")
                inflate = zlib.decompressobj()
                try:  # at most _ICC_MAX_BYTES: a small chunk may inflate to gigabytes
                    profile = inflate.decompress(rest[1:], _ICC_MAX_BYTES) if rest[:1] == b"\0" else None
                except zlib.error:
                    profile = None
                profile = None if inflate.unconsumed_tail else profile
            else:
                fh.seek(length, os.SEEK_CUR)
            fh.seek(4, os.SEEK_CUR)  # the chunk's CRC
    return significant, profile


def _keep_icc(image: ImageData, profile: bytes | None) -> None:
    """Keep the file's ICC colour profile (``meta["icc_profile"]``) when it describes the decoded pixels:
    an RGB profile for RGB, a gray one for gray (a CMYK photo's profile says nothing of its RGB pixels)."""
    space = {1: b"GRAY", 3: b"RGB "}.get(image.channels)
    if profile and len(profile) >= 128 and profile[16:20] == space:
        image.meta["icc_profile"] = bytes(profile)


def _significant_bits(image: ImageData, bits: int) -> None:
    """Make ``image`` one of ``bits`` bits (a PNG's ``sBIT``), whichever way its samples were stored.

    The PNG standard scales the samples up to the container's depth (values above ``2**bits - 1``: shifted
    back down here); mdrn's own files keep the values as they are (:mod:`mdrn.io.writers`).
    """
    if not _within(image.array, image.alpha, (1 << bits) - 1):
        shift = image.bit_depth - bits
        image.array = image.array >> shift
        image.alpha = None if image.alpha is None else image.alpha >> shift
    image.bit_depth = bits


def _read_pillow(path: Path, max_pixels: int | None) -> ImageData:
    from PIL import Image, UnidentifiedImageError

    # our limit replaces Pillow's bomb check (which would refuse images a user explicitly allowed, and
    # refuse those over twice its limit in its own words, without --max-pixels): checked before load()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with im:
            check_pixel_count(path, im.width, im.height, max_pixels)
            im.load()
            profile = im.info.get("icc_profile")
            image = _pillow_pixels(path, _exif_upright(im))
            _keep_icc(image, profile)
            return image
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not a recognised image file (PNG, JPEG, TIFF, BMP or DICOM)") from exc
    except OSError as exc:
        raise ImageReadError(path, f"truncated or corrupt image data ({exc})") from exc


def _pillow_pixels(path: Path, im: Any) -> ImageData:
    """The pixels of a loaded, upright Pillow image as mdrn keeps them (gray, RGB, 16-bit, alpha)."""
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
    if mode in ("L", "RGB") and "transparency" in im.info:  # a PNG's tRNS key colour: transparent pixels
        im = im.convert("LA" if mode == "L" else "RGBA")
        mode = im.mode
    if mode in ("1", "L"):
        return ImageData(np.asarray(im.convert("L")).copy(), 8, meta=meta)
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA"))
        return ImageData(la[..., 0].copy(), 8, meta=meta, alpha=la[..., 1].copy())
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        if mode in ("RGBA", "RGBa"):
            rgba = np.asarray(im.convert("RGBA"))
            rgb, alpha = rgba[..., :3].copy(), rgba[..., 3].copy()
        else:
            rgb, alpha = np.asarray(im.convert("RGB")).copy(), None
        return ImageData(rgb, 8, photometric="RGB", meta=meta, alpha=alpha)
    raise ImageReadError(path, f"unsupported image mode {mode!r}")


def _exif_upright(im: Any) -> Any:
    """The image as viewers show it: its EXIF orientation (a phone's photo, a TIFF tag) applied."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(im) if im.getexif().get(_ORIENTATION, 1) != 1 else im


#: TIFF/EXIF Orientation tag, and the numpy steps that make each value upright (as Pillow's exif_transpose)
_ORIENTATION = 0x0112
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _read_png16(path: Path) -> ImageData:
    import png  # pypng: Pillow reduces 16-bit colour and gray + alpha PNGs to 8 bits

    with path.open("rb") as fh:  # closed here: pypng would leave its own file to the garbage collector
        reader = png.Reader(file=fh)
        reader.preamble()
        reader.sbit = None  # pypng would shift the samples by sBIT: read_image applies it (mdrn's too)
        width, height, rows, info = reader.asDirect()
        planes = info["planes"]
        array = np.empty((height, width * planes), np.uint16)
        n = 0
        for n, row in enumerate(rows, start=1):  # noqa: B007 - n counts the rows decoded
            array[n - 1] = row
    if n != height:
        raise ImageReadError(path, f"truncated image data ({n} of {height} rows)")
    array = array.reshape(height, width, planes)
    colour = planes >= 3
    alpha = np.ascontiguousarray(array[..., -1]) if planes in (2, 4) else None
    pixels = np.ascontiguousarray(array[..., :3] if colour else array[..., 0])
    photometric = "RGB" if colour else "MONOCHROME2"
    return ImageData(pixels, 16, photometric=photometric, meta={"format": "PNG"}, alpha=alpha)


#: TIFF photometric interpretations read as they are: MINISWHITE (inverted), MINISBLACK, RGB, YCbCr (JPEG)
_TIFF_PHOTOMETRIC = (0, 1, 2, 6)
#: PALETTE and SEPARATED (CMYK) of up to 8 bits: read by Pillow, which converts them to RGB
_TIFF_VIA_PILLOW = (3, 5)


def _read_tiff(path: Path, max_pixels: int | None) -> ImageData:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.pages:
            raise ImageReadError(path, "TIFF file has no image")
        page = tif.pages[0]
        check_pixel_count(path, int(page.imagewidth), int(page.imagelength), max_pixels)
        try:
            stored, chunks = len(page.dataoffsets), int(np.prod(page.chunked))
        except ValueError:  # tifffile cannot count them (e.g. RowsPerStrip 0): its decoder decides
            stored = chunks = 0
        if stored < chunks:  # tifffile would fill the missing ones with zeros
            kind = "tiles" if page.is_tiled else "strips"
            raise ImageReadError(path, f"truncated or damaged TIFF: {stored} of its {chunks} {kind} stored")
        if int(page.samplesperpixel) > 4:  # checked before decoding: 1000 samples claimed = 1000x the memory
            raise ImageReadError(
                path, f"TIFF of {page.samplesperpixel} samples per pixel is not supported (at most 4: RGBA)"
            )
        images = 1 + sum(not getattr(tif.pages[i], "is_reduced", False) for i in range(1, len(tif.pages)))
        if images > 1:  # thumbnails (reduced-resolution pages) aside
            raise ImageReadError(
                path, f"multi-page TIFF ({images} images) is not supported: one image a file"
            )
        photometric = int(page.photometric)
        if photometric in _TIFF_VIA_PILLOW and int(page.bitspersample) <= 8:
            return _read_pillow(path, max_pixels)  # palette and CMYK: Pillow's colour conversion
        if photometric not in _TIFF_PHOTOMETRIC:
            raise ImageReadError(path, f"TIFF photometric interpretation {photometric} is not supported")
        array = page.asarray()
        profile = page.iccprofile  # tag 34675 InterColorProfile
        top = page.tags.get(281)  # MaxSampleValue: e.g. 4095 for 12-bit samples in 16 bits
        top = top.value if top is not None else None
        if array.ndim == 3 and page.axes.startswith("S"):
            array = np.moveaxis(array, 0, -1)  # planar configuration
        tag = page.tags.get(_ORIENTATION)
        upright = _UPRIGHT.get(int(tag.value) if tag is not None else 1)
        array = upright(array) if upright is not None and array.ndim in (2, 3) else array
    alpha = None
    if array.ndim == 3 and array.shape[2] in (2, 4):
        array, alpha = array[..., :-1], np.ascontiguousarray(array[..., -1])
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim > 3:
        raise ImageReadError(path, f"multi-page or volumetric TIFF {array.shape} is not supported")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if photometric == 0 and array.dtype.kind == "u":  # MINISWHITE: 0 is white; mdrn's pixels say black
        array = np.iinfo(array.dtype).max - array
    if array.dtype.kind == "f":
        raise ImageReadError(
            path, f"floating-point TIFF ({array.dtype}) is not supported (expected 8-16 bit)"
        )
    if array.dtype.kind == "i":
        raise ImageReadError(path, f"signed integer TIFF ({array.dtype}) is not supported")
    if array.dtype.itemsize > 2:
        raise ImageReadError(path, f"{8 * array.dtype.itemsize}-bit TIFF is not supported (at most 16 bit)")
    bit_depth = _tiff_bit_depth(array, alpha, top)
    photometric = "RGB" if array.ndim == 3 else "MONOCHROME2"
    image = ImageData(
        np.ascontiguousarray(array), bit_depth, photometric=photometric, meta={"format": "TIFF"}, alpha=alpha
    )
    _keep_icc(image, profile)
    return image


def _tiff_bit_depth(array: np.ndarray, alpha: np.ndarray | None, top: Any) -> int:
    """A TIFF's bit depth: its container's, or 9-15 where tag MaxSampleValue says so (all samples 2^n - 1)
    and no sample exceeds it (mdrn writes 12-bit images so; other writers' values that break it: 16)."""
    depth = 8 * array.dtype.itemsize
    tops = {int(v) for v in (top if isinstance(top, (tuple, list)) else [top])} if top is not None else set()
    if depth != 16 or len(tops) != 1:
        return depth
    (value,) = tops
    bits = (value + 1).bit_length() - 1
    if not 8 < bits < 16 or value != (1 << bits) - 1:
        return depth
    return bits if _within(array, alpha, value) else depth


def _within(array: np.ndarray, alpha: np.ndarray | None, peak: int) -> bool:
    """No sample of the pixels (nor of the alpha channel) above ``peak`` (the top of a smaller bit depth)."""
    return all(not p.size or int(p.max()) <= peak for p in (array, alpha) if p is not None)


def image_to_tensor(image: ImageData, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixels as a float tensor (C, H, W) in [0, 1]: the n-bit range 0..2^n-1 maps to [0, 1]."""
    array = image.array if image.array.ndim == 3 else image.array[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float64))
    return (tensor / image.peak).to(dtype)


def tensor_to_array(tensor: torch.Tensor, bit_depth: int) -> np.ndarray:
    """A float tensor (C, H, W) or (1, C, H, W) in [0, 1] as rounded uint8/uint16 pixels (H, W[, 3]).

    The grey levels of :func:`mdrn.protocol.metrics.quantize` (``round(clamp(x, 0, 1) * peak)`` in
    float64), computed in one float64 pass without its division and multiplication by the peak (which
    give back the same whole numbers), and without importing the metrics (torchmetrics: seconds).
    """
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) tensor with C = 1 or 3, got shape {tuple(tensor.shape)}")
    if not 1 <= bit_depth <= 16:
        raise ValueError(f"unsupported bit depth {bit_depth} (1 to 16)")
    peak = (1 << bit_depth) - 1
    values = tensor.detach().to("cpu", torch.float64, copy=True).clamp_(0.0, 1.0).mul_(peak).round_()
    array = values.numpy().astype(np.uint8 if bit_depth <= 8 else np.uint16)
    array = array.transpose(1, 2, 0)
    return np.ascontiguousarray(array[..., 0] if array.shape[2] == 1 else array)


def os_error(err: OSError, where: Path) -> OSError:
    """One readable line for a failed write: the file or folder and the cause, no temporary names."""
    reasons = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOTDIR: "is not a folder",
        errno.EEXIST: "exists and is not a folder",
    }
    reason = reasons.get(err.errno or 0, err.strerror or str(err))
    out = (PermissionError if err.errno in (errno.EACCES, errno.EPERM) else OSError)(f"{where}: {reason}")
    out.errno = err.errno
    return out


def atomic_write(
    path: str | os.PathLike[str], writer: Callable[[Path], None], *, overwrite: bool = False
) -> Path:
    """Run ``writer(tmp)`` on a temporary file beside ``path`` and move it into place; never half-written.

    Failures to write (no permission, a full disk, a file where a folder should be) raise one ``OSError``
    whose message names the folder or the file, never the temporary file.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".part", dir=folder)
    except OSError as err:
        bad = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise os_error(err, bad) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            writer(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
                raise os_error(err, path) from err
            raise
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


def write_bands(
    path: str | os.PathLike[str],
    bands: Iterable[np.ndarray],
    *,
    height: int,
    width: int,
    channels: int,
    bit_depth: int,
    reference: ImageData | None = None,
    derivation: Any = None,
    frames: int = 1,
    overwrite: bool = False,
    icc_profile: bytes | None = None,
) -> Path:
    """Write an image given band by band (rows top to bottom) as PNG, TIFF or DICOM, chosen by suffix.

    ``channels`` counts an alpha channel (2: gray + alpha, 4: RGBA; PNG and TIFF only). DICOM output needs
    ``reference`` (the DICOM source; see :func:`mdrn.io.dicom.derived_dataset`) and ``derivation`` (a
    :class:`mdrn.io.dicom.Derivation`); its bands run through all ``frames`` frames of ``height`` rows.
    ``icc_profile``: the colour profile a PNG or TIFF carries (the input's ``meta["icc_profile"]``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not 1 <= bit_depth <= 16:
        raise ValueError(f"{path}: unsupported bit depth {bit_depth} (1 to 16)")
    dtype = np.dtype(np.uint8 if bit_depth <= 8 else np.uint16)

    def checked() -> Iterator[np.ndarray]:
        for band in bands:
            if band.dtype != dtype:
                raise ValueError(
                    f"{path}: {bit_depth}-bit output needs {dtype.name} pixels, got {band.dtype}"
                )
            yield band

    if suffix in DICOM_SUFFIXES:
        if reference is None or reference.dicom is None or derivation is None:
            raise ValueError(f"{path}: DICOM output needs a DICOM input as reference (and a derivation)")
        if channels != reference.channels:
            raise ValueError(f"{path}: a DICOM of {reference.channels} channel(s) cannot hold {channels}")
        from mdrn.io.dicom import derived_dataset, write_dicom

        ds = derived_dataset(reference, derivation, frames=frames)
        if (int(ds.Rows), int(ds.Columns)) != (height, width):
            raise ValueError(
                f"{path}: {width}x{height} pixels do not match the derived {ds.Columns}x{ds.Rows}"
            )

        def writer(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                write_dicom(fh, ds, checked(), signed_offset=reference.signed_offset)

    elif frames != 1:
        raise ValueError(f"{path}: {suffix} holds one image, not {frames} frames (use .dcm)")
    elif suffix == ".png":

        def writer(tmp: Path) -> None:
            from mdrn.io.writers import write_png

            with tmp.open("wb") as fh:
                write_png(
                    fh, checked(), height=height, width=width, channels=channels, bit_depth=bit_depth,
                    icc_profile=icc_profile,
                )  # fmt: skip

    elif suffix in (".tif", ".tiff"):

        def writer(tmp: Path) -> None:
            from mdrn.io.writers import write_tiff

            write_tiff(
                tmp, checked(), height=height, width=width, channels=channels, dtype=dtype,
                icc_profile=icc_profile, bit_depth=bit_depth,
            )  # fmt: skip

    else:
        raise ValueError(f"{path}: unsupported output format {suffix!r} (use .png, .tif or .dcm)")
    return atomic_write(path, writer, overwrite=overwrite)


def write_image(
    path: str | os.PathLike[str],
    array: np.ndarray,
    *,
    bit_depth: int,
    alpha: np.ndarray | None = None,
    reference: ImageData | None = None,
    derivation: Any = None,
    overwrite: bool = False,
    icc_profile: bytes | None = None,
) -> Path:
    """Write pixels (H, W[, 3]) (and an optional alpha (H, W)) as PNG, TIFF or DICOM, chosen by suffix.

    Gray/RGB and the bit depth are kept; DICOM output is a derived instance of ``reference`` described by
    ``derivation``; a PNG or TIFF carries ``icc_profile`` (see :func:`write_bands`).
    """
    path = Path(path)
    array = np.ascontiguousarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"{path}: cannot write pixels of shape {array.shape} (expected HxW or HxWx3)")
    if alpha is not None:
        if alpha.shape != array.shape[:2]:
            raise ValueError(f"{path}: alpha {alpha.shape} does not match the pixels {array.shape}")
        array = np.dstack([array, alpha.astype(array.dtype)])
    channels = 1 if array.ndim == 2 else array.shape[2]
    return write_bands(
        path, [array], height=array.shape[0], width=array.shape[1], channels=channels, bit_depth=bit_depth,
        reference=reference, derivation=derivation, overwrite=overwrite, icc_profile=icc_profile,
    )  # fmt: skip
