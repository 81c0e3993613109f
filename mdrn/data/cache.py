"""Decoded-image cache: one uint8/uint16 ``.npy`` per HR image and per (image, scale) LR, memory-mapped.

Layout of a cache folder (one per list of source files, scales and LR source)::

    <root>/<key>/hr_00000.npy, lr_x2_00000.npy, ..., manifest.json

The manifest is written last (atomically) and lists every array with its shape, dtype, byte size and
sha256; a folder without a valid manifest (an interrupted build) is wiped and rebuilt, never read. On
open, every file's size is checked (``verify="size"``, cheap) or its sha256 (``verify="hash"``).
The LR of scale s is ``quantize(degrade(hr, s), bit_depth)`` (the core MATLAB resize), or the image
of a given LR folder (e.g. DIV2K's ``LR_bicubic/X2``) when one is given and has the right size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mdrn.io.images import ImageData, ImageReadError, image_to_tensor, read_image, tensor_to_array
from mdrn.protocol.metrics import quantize
from mdrn.protocol.resize import degrade, modcrop

__all__ = ["CACHE_VERSION", "CacheError", "CachedImage", "ImageCache", "build_cache", "cache_key", "make_lr"]

_log_info = logging.getLogger(__name__).info  # the run log (console and the run folder's log file)

CACHE_VERSION = 1
MANIFEST = "manifest.json"


class CacheError(RuntimeError):
    """A cache folder that is incomplete or corrupt (it is rebuilt)."""


@dataclass
class CachedImage:
    """One cached image: HR and per-scale LR arrays (memory-mapped) and its bit depth."""

    name: str
    source: str
    bit_depth: int
    hr: np.ndarray
    lr: dict[int, np.ndarray]

    @property
    def channels(self) -> int:
        """1 for gray, 3 for RGB."""
        return 1 if self.hr.ndim == 2 else self.hr.shape[2]


def cache_key(files: Sequence[Path], scales: Sequence[int], lr_dirs: dict[int, Path] | None) -> str:
    """A short hash of the sources (paths, sizes, mtimes), scales and LR folders: the cache's identity."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{sorted(int(s) for s in scales)}".encode())
    for f in files:
        st = Path(f).stat()
        h.update(f"{Path(f).resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    for s, d in sorted((lr_dirs or {}).items()):
        h.update(f"lr{s}={Path(d).resolve()}\n".encode())
    return h.hexdigest()[:16]


def make_lr(hr: torch.Tensor, scale: int, bit_depth: int) -> torch.Tensor:
    """The LR used everywhere: ``degrade(hr, scale)`` quantized to the image's bit depth (float, [0, 1])."""
    return quantize(degrade(hr.to(torch.float64), scale), bit_depth)


def _save(path: Path, array: np.ndarray) -> dict:
    """Write ``array`` to ``path`` (.npy) and return its manifest entry."""
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    return {
        "file": path.name,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def _lr_file(lr_dir: Path, hr_path: Path, scale: int) -> Path | None:
    """The DIV2K-style LR file for ``hr_path`` in ``lr_dir`` (``0001x2.png`` or ``0001.png``), if any."""
    for name in (f"{hr_path.stem}x{scale}{hr_path.suffix}", hr_path.name):
        cand = lr_dir / name
        if cand.exists():
            return cand
    return None


def build_cache(
    files: Sequence[Path],
    folder: Path,
    scales: Sequence[int],
    lr_dirs: dict[int, Path] | None = None,
    log: Callable[[str], None] | None = _log_info,
) -> None:
    """Decode ``files`` into ``folder`` (wiped first) and write the manifest last."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    tmp = folder.with_name(folder.name + ".building")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    entries = []
    if log:
        log(f"mdrn: building the decoded-image cache of {len(files)} images in {folder} (once)")
    for i, f in enumerate(files):
        img = read_image(f)
        hr = img.array
        if min(hr.shape[:2]) < max(scales, default=1):
            size = f"{hr.shape[0]}x{hr.shape[1]}"
            raise ValueError(f"{f}: image {size} is smaller than the scale x{max(scales)}")
        entry = {
            "name": Path(f).stem,
            "source": str(f),
            "bit_depth": img.bit_depth,
            "hr": _save(tmp / f"hr_{i:05d}.npy", hr),
            "lr": {},
        }
        hr_t = image_to_tensor(img, torch.float64)
        for s in scales:
            lr_arr = None
            if lr_dirs and s in lr_dirs and (lr_path := _lr_file(Path(lr_dirs[s]), Path(f), s)) is not None:
                lr_img = read_image(lr_path)
                if lr_img.bit_depth != img.bit_depth:  # its values would be taken on the HR's scale
                    raise ImageReadError(
                        lr_path, f"{lr_img.bit_depth}-bit low-resolution image of a {img.bit_depth}-bit {f}"
                    )
                mc = modcrop(hr, s)
                if (
                    lr_img.array.shape[:2] == (mc.shape[0] // s, mc.shape[1] // s)
                    and lr_img.array.ndim == hr.ndim
                ):
                    lr_arr = lr_img.array.astype(hr.dtype)
            if lr_arr is None:
                lr_arr = tensor_to_array(make_lr(hr_t, s, img.bit_depth), img.bit_depth).astype(hr.dtype)
            entry["lr"][str(s)] = _save(tmp / f"lr_x{s}_{i:05d}.npy", lr_arr)
        entries.append(entry)
    manifest = {"version": CACHE_VERSION, "scales": [int(s) for s in scales], "images": entries}
    part = tmp / (MANIFEST + ".part")
    part.write_text(json.dumps(manifest, indent=1))
    os.replace(part, tmp / MANIFEST)
    os.replace(tmp, folder)


def _verify(folder: Path, entry: dict, verify: str) -> None:
    """Raise CacheError if the array file of ``entry`` is missing, truncated or altered."""
    path = folder / entry["file"]
    if not path.exists() or path.stat().st_size != entry["bytes"]:
        raise CacheError(f"{path}: missing or wrong size")
    if verify == "hash" and hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        raise CacheError(f"{path}: sha256 mismatch")


class ImageCache:
    """The cached images of a list of source files, built on first use, opened memory-mapped."""

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        root: str | os.PathLike[str],
        scales: Sequence[int],
        lr_dirs: dict[int, str | os.PathLike[str]] | None = None,
        verify: str = "size",
    ) -> None:
        if not files:
            raise ValueError("ImageCache: no image files given")
        if verify not in ("size", "hash"):
            raise ValueError(f"verify must be 'size' or 'hash', got {verify!r}")
        self.files = [Path(f) for f in files]
        self.scales = tuple(int(s) for s in scales)
        self.lr_dirs = {int(k): Path(v) for k, v in (lr_dirs or {}).items()}
        self.verify = verify
        self.folder = Path(root) / cache_key(self.files, self.scales, self.lr_dirs)
        self._images: list[CachedImage] | None = None

    def is_valid(self) -> bool:
        """True if the folder holds a complete manifest whose files all pass the checks."""
        try:
            self._read_manifest()
            return True
        except CacheError:
            return False

    def _read_manifest(self) -> dict:
        """The checked manifest, or CacheError."""
        mpath = self.folder / MANIFEST
        if not mpath.exists():
            raise CacheError(f"{self.folder}: no manifest (cache absent or interrupted build)")
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise CacheError(f"{mpath}: unreadable manifest") from exc
        if manifest.get("version") != CACHE_VERSION or len(manifest.get("images", [])) != len(self.files):
            raise CacheError(f"{mpath}: other version or image count")
        for e in manifest["images"]:
            _verify(self.folder, e["hr"], self.verify)
            for s in self.scales:
                if str(s) not in e["lr"]:
                    raise CacheError(f"{mpath}: no LR for x{s}")
                _verify(self.folder, e["lr"][str(s)], self.verify)
        return manifest

    def build(self, force: bool = False, log: Callable[[str], None] | None = _log_info) -> None:
        """Build the cache unless a valid one exists (or ``force``); one builder at a time (file lock)."""
        if not force and self.is_valid():
            return
        from filelock import FileLock  # a dependency of torch

        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder) + ".lock"):
            if force or not self.is_valid():  # another process may have built it while we waited
                build_cache(self.files, self.folder, self.scales, self.lr_dirs, log=log)

    @property
    def images(self) -> list[CachedImage]:
        """The cached images (memory-mapped; built first if needed)."""
        if self._images is None:
            self.build()
            manifest = self._read_manifest()
            out = []
            for e in manifest["images"]:
                out.append(
                    CachedImage(
                        name=e["name"],
                        source=e["source"],
                        bit_depth=int(e["bit_depth"]),
                        hr=np.load(self.folder / e["hr"]["file"], mmap_mode="r"),
                        lr={
                            s: np.load(self.folder / e["lr"][str(s)]["file"], mmap_mode="r")
                            for s in self.scales
                        },
                    )
                )
            self._images = out
        return self._images

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_images"] = None  # memory maps are reopened in each worker process
        return state


def patch_to_tensor(array: np.ndarray, bit_depth: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer pixels (H, W[, C]) -> float (C, H, W) in [0, 1] (``mdrn.io.images``), float32 by default."""
    return image_to_tensor(ImageData(array=np.asarray(array), bit_depth=bit_depth), dtype)
