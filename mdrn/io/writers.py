"""Image encoders that take the pixels band by band, so that no full-size copy of a large output exists.

A *band* is a block of consecutive rows, ``(h, W)`` or ``(h, W, C)`` with C = 2 (gray + alpha), 3 (RGB)
or 4 (RGB + alpha), ``uint8`` or ``uint16``; the bands of one image arrive top to bottom and add up to its
height. :func:`write_png` writes a standard PNG (adaptive row filters as libpng chooses them, zlib level 6,
an ``sBIT`` chunk for 9-15 significant bits, values not shifted, as
:mod:`mdrn.io.images` reads them); :func:`write_tiff` a tiled, zlib-compressed TIFF. Both keep
at most one band (plus one row of tiles for TIFF) in memory. DICOM is written by :mod:`mdrn.io.dicom`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["BIGTIFF_BYTES", "TIFF_TILE", "write_png", "write_tiff"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray+alpha, RGB, RGBA
#: Largest number of rows filtered at once (bounds the filter's temporary arrays).
_PNG_CHUNK_BYTES = 1 << 22
#: TIFF tag MaxSampleValue: the top value of 12-bit samples in a 16-bit TIFF (TIFF 6.0, baseline).
_MAX_SAMPLE_VALUE = 281
#: Tile side of the TIFF files we write (a multiple of 16, as TIFF requires).
TIFF_TILE = 256
#: Pixel bytes above which a TIFF is written as BigTIFF (a classic TIFF's offsets end at 4 GiB).
BIGTIFF_BYTES = 2**32 - 2**25


def _channels(band: np.ndarray) -> int:
    return 1 if band.ndim == 2 else int(band.shape[2])


def _check_band(band: np.ndarray, width: int, channels: int, dtype: np.dtype) -> None:
    if band.shape[1] != width or _channels(band) != channels or band.dtype != dtype:
        raise ValueError(
            f"band of shape {band.shape} and type {band.dtype} does not continue an image of width "
            f"{width}, {channels} channel(s), {dtype}"
        )


def _chunk(fh: BinaryIO, kind: bytes, payload: bytes) -> None:
    fh.write(struct.pack(">I", len(payload)) + kind + payload)
    fh.write(struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filter_rows(raw: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """PNG-filtered rows (filter byte first), each with the filter of least absolute sum (PNG spec 12.8)."""
    x = raw.astype(np.int16)
    b = np.vstack([above[None].astype(np.int16), x[:-1]])  # the row above (raw values, not filtered)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    c = np.zeros_like(x)
    c[:, bpp:] = b[:, :-bpp]
    candidates = np.stack([x, x - a, x - b, x - (a + b) // 2, x - _paeth(a, b, c)]) & 0xFF
    cost = np.where(candidates > 127, 256 - candidates, candidates).sum(axis=2, dtype=np.int64)
    best = cost.argmin(axis=0)
    rows = candidates[best, np.arange(x.shape[0])].astype(np.uint8)
    return np.hstack([best.astype(np.uint8)[:, None], rows])


def write_png(
    fh: BinaryIO,
    bands: Iterable[np.ndarray],
    *,
    height: int,
    width: int,
    channels: int,
    bit_depth: int,
    icc_profile: bytes | None = None,
) -> None:
    """Encode the bands as one PNG of ``height`` x ``width`` into ``fh`` (8-bit container up to 8 bits),
    with ``icc_profile`` as its ``iCCP`` chunk when given."""
    if channels not in _PNG_COLOUR_TYPE:
        raise ValueError(f"PNG cannot hold {channels} channels")
    depth = 8 if bit_depth <= 8 else 16
    dtype = np.dtype(np.uint8 if depth == 8 else np.uint16)
    bpp = channels * depth // 8
    fh.write(_PNG_SIGNATURE)
    _chunk(fh, b"IHDR", struct.pack(">IIBBBBB", width, height, depth, _PNG_COLOUR_TYPE[channels], 0, 0, 0))
    if icc_profile:
        _chunk(fh, b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile))  # name, method 0: zlib
    if bit_depth not in (8, 16):
        _chunk(fh, b"sBIT", bytes([bit_depth] * channels))
    compressor = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_FILTERED)  # libpng's choice
    above = np.zeros(width * bpp, np.uint8)
    done = 0
    step = max(1, _PNG_CHUNK_BYTES // (width * bpp))
    for band in bands:
        _check_band(band, width, channels, dtype)
        raw = np.ascontiguousarray(band, dtype=dtype.newbyteorder(">")).view(np.uint8)
        raw = raw.reshape(band.shape[0], width * bpp)
        for r in range(0, raw.shape[0], step):
            block = raw[r : r + step]
            data = compressor.compress(_filter_rows(block, above, bpp).tobytes())
            if data:
                _chunk(fh, b"IDAT", data)
            above = block[-1]
        done += band.shape[0]
    if done != height:
        raise ValueError(f"PNG of {height} rows received {done}")
    _chunk(fh, b"IDAT", compressor.flush())
    _chunk(fh, b"IEND", b"")


def _tiles(
    bands: Iterable[np.ndarray], height: int, width: int, tile: tuple[int, int]
) -> Iterator[np.ndarray]:
    """Regroup bands of rows into TIFF tiles (row-major), zero-padded at the right and bottom edges."""
    th, tw = tile
    pending: list[np.ndarray] = []
    rows = done = 0

    def cut(block: np.ndarray) -> Iterator[np.ndarray]:
        for x in range(0, width, tw):
            piece = block[:, x : x + tw]
            if piece.shape[:2] != (th, tw):
                pad = [(0, th - piece.shape[0]), (0, tw - piece.shape[1])] + [(0, 0)] * (piece.ndim - 2)
                piece = np.pad(piece, pad)
            yield np.ascontiguousarray(piece)

    for band in bands:
        pending.append(band)
        rows += band.shape[0]
        done += band.shape[0]
        while rows >= th or (done == height and rows):
            block = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield from cut(block[:th])
            rest = block[th:]
            pending, rows = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)
    if done != height:
        raise ValueError(f"TIFF of {height} rows received {done}")


def write_tiff(
    path: Path,
    bands: Iterable[np.ndarray],
    *,
    height: int,
    width: int,
    channels: int,
    dtype: np.dtype,
    icc_profile: bytes | None = None,
    bit_depth: int | None = None,
) -> None:
    """Encode the bands as one tiled, zlib-compressed TIFF (gray, gray + alpha, RGB or RGBA), with
    ``icc_profile`` in tag 34675 (InterColorProfile) when given, and for 9-15 significant bits in 16
    (``bit_depth``) their top value in tag 281 (MaxSampleValue, e.g. 4095), as :mod:`mdrn.io.images`
    reads it."""
    import tifffile

    tile = (min(TIFF_TILE, -(-height // 16) * 16), min(TIFF_TILE, -(-width // 16) * 16))
    shape = (height, width) if channels == 1 else (height, width, channels)

    def checked() -> Iterator[np.ndarray]:
        for band in bands:
            _check_band(band, width, channels, np.dtype(dtype))
            yield band

    photometric = "minisblack" if channels <= 2 else "rgb"
    extra: dict = {"extrasamples": ("unassalpha",)} if channels in (2, 4) else {}
    if bit_depth is not None and 8 < bit_depth < 16 and np.dtype(dtype) == np.uint16:
        extra["extratags"] = [(_MAX_SAMPLE_VALUE, "H", channels, ((1 << bit_depth) - 1,) * channels, True)]
    # a classic TIFF ends at 4 GiB: pixels that may not fit compressed go into a BigTIFF (tifffile's own
    # threshold: it cannot tell from bands, and its classic TIFF fails once past 4 GiB, after all the work)
    raw = height * width * channels * np.dtype(dtype).itemsize
    tifffile.imwrite(
        path,
        _tiles(checked(), height, width, tile),
        bigtiff=raw > BIGTIFF_BYTES,
        shape=shape,
        dtype=dtype,
        tile=tile,
        photometric=photometric,
        compression="zlib",
        iccprofile=icc_profile or None,
        **extra,
    )
