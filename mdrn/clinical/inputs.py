"""What a clinician opens, as a stack of 2-D slices: an image, a multi-frame DICOM, a DICOM series, a volume.

:func:`open_inputs` turns a path into :class:`Stack` objects: an image file is one slice; a multi-frame
DICOM file its frames; a folder its DICOM series (grouped by Series Instance UID, each sorted along the
slice normal, see :func:`mdrn.io.dicom.sort_series`) and each other image in it; a NIfTI file its slices in
the chosen plane (:mod:`mdrn.io.nifti`). Subfolders are searched only in a DICOM media export (a folder
with a ``DICOMDIR``, as on a patient CD/DVD: ``DICOM/PAT1/STU1/SER1/IMG1``...); elsewhere they may hold
earlier outputs. DICOM files are recognised by their ``DICM`` header too, so series
exported without a file suffix are found. A stack reads one slice at a time (:meth:`Stack.slice`), so a
series or a volume of any length is processed in bounded memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdrn.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    ImageData,
    ImageReadError,
    image_size,
    is_image_file,
    read_image,
)

__all__ = [
    "KINDS",
    "Stack",
    "error_line",
    "is_media_export",
    "job_pixels",
    "open_inputs",
    "stack_name",
]

#: What a stack is: one image, the frames of one DICOM file, a DICOM series (files), a NIfTI volume.
KINDS = ("image", "frames", "series", "volume")


def error_line(src: str | os.PathLike[str], err: BaseException) -> str:
    """One line naming the file ``src`` and the problem (``err``'s first line; an ``OSError``, which
    names its own file, and a message that already names ``src`` are not prefixed again)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # no terminal colour codes (torch's exporter)
    text = text.splitlines()[0] if text else type(err).__name__
    return text if str(src) in text or isinstance(err, OSError) else f"{src}: {text}"


def stack_name(path: str | os.PathLike[str]) -> str:
    """The name outputs are derived from: the file name without its suffix(es), or the folder name."""
    from mdrn.io.nifti import is_nifti, nifti_stem

    p = Path(path)
    return nifti_stem(p) if is_nifti(p) else p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name


@dataclass
class Stack:
    """Slices to enlarge, read one at a time; ``files`` are the slice files of a series."""

    path: Path
    kind: str
    n_slices: int
    files: list[Path] = field(default_factory=list)
    header: Any = None  # the DICOM header of a multi-frame file
    volume: Any = None  # the mdrn.io.nifti.NiftiVolume of a volume
    image: ImageData | None = None  # the decoded image of a single image (read once)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    label: str | None = None  # the name of a series not read from its own folder

    @property
    def name(self) -> str:
        """The base of output names (file stem, folder name, or the series' label)."""
        return self.label or stack_name(self.path)

    def slice(self, i: int) -> ImageData:
        """Slice ``i`` (0-based) as an image."""
        if not 0 <= i < self.n_slices:
            raise IndexError(f"{self.path}: slice {i + 1} of {self.n_slices}")
        if self.kind == "image":
            if self.image is None:
                self.image = read_image(self.path, max_pixels=self.max_pixels)
            return self.image
        if self.kind == "series":
            return read_image(self.files[i], max_pixels=self.max_pixels)
        if self.kind == "frames":
            from mdrn.io.dicom import read_frame

            return read_frame(self.path, self.header, i)
        return self.volume.slice(i)

    def slices(self) -> Iterator[ImageData]:
        """The slices in order."""
        for i in range(self.n_slices):
            yield self.slice(i)

    def close(self) -> None:
        """Release a volume's mapping and temporary copy, and an image's decoded pixels."""
        self.image = None
        if self.volume is not None:
            self.volume.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dicom_stack(path: Path, max_pixels: int | None) -> Stack:
    from mdrn.io.dicom import check_volume_header, frame_count, read_header

    ds = read_header(path)
    check_volume_header(path, ds, max_pixels)
    frames = frame_count(ds)
    if frames == 1:
        return Stack(path, "image", 1, max_pixels=max_pixels)
    return Stack(path, "frames", frames, header=ds, max_pixels=max_pixels)


def _volume(path: Path, plane: str, max_pixels: int | None) -> Stack:
    from mdrn.io.nifti import NiftiVolume

    volume = NiftiVolume(path, plane=plane, max_pixels=max_pixels)
    return Stack(path, "volume", volume.n_slices, volume=volume, max_pixels=max_pixels)


def _series_label(ds: Any) -> str:
    """A name for a series whose files do not share a folder: its description or number."""
    import re

    text = str(ds.get("SeriesDescription", "") or "").strip() or f"series{ds.get('SeriesNumber', '') or ''}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "series"


#: what grouping, sorting and naming a series read from its slices' headers
_SORT_KEYS = ("SeriesInstanceUID", "ImageOrientationPatient", "ImagePositionPatient", "InstanceNumber",
              "SeriesDescription", "SeriesNumber")  # fmt: skip


def _sort_keys(ds: Any) -> Any:
    """The few elements of a slice's header that series grouping needs (a long series keeps little)."""
    from pydicom import Dataset

    slim = Dataset()
    for keyword in _SORT_KEYS:
        if keyword in ds:
            slim[keyword] = ds[keyword]
    return slim


def open_files(
    files: list[Path],
    *,
    plane: str = "ij",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    errors: list[ImageReadError],
    folder: Path | None = None,
) -> list[Stack]:
    """Stacks of a set of files: DICOM slices grouped into series, other images and volumes one each.

    Series are named after ``folder`` when the files are that folder's, else after their description.
    Files that cannot be opened are appended to ``errors``.
    """
    from mdrn.io.dicom import frame_count, is_dicom_file, read_header, sort_series
    from mdrn.io.nifti import is_nifti

    headers, stacks = [], []
    for path in files:
        try:
            if is_dicom_file(path) or path.suffix.lower() in (".dcm", ".dicom"):
                ds = read_header(path)
                if "PixelData" not in ds:
                    continue  # DICOMDIR, structured reports, presentation states: not slices
                if frame_count(ds) > 1:
                    stacks.append(_dicom_stack(path, max_pixels))
                else:
                    headers.append((path, _sort_keys(ds)))
            elif is_nifti(path):
                stacks.append(_volume(path, plane, max_pixels))
            elif is_image_file(path):
                stacks.append(Stack(path, "image", 1, max_pixels=max_pixels))
            else:
                errors.append(ImageReadError(path, "not an image, DICOM or NIfTI file"))
        except ImageReadError as err:
            errors.append(err)
    for series in sort_series(headers):
        paths = [p for p, _ in series]
        if len(paths) == 1 and folder is None:
            stacks.append(Stack(paths[0], "image", 1, max_pixels=max_pixels))
            continue
        label = None if folder is not None else _series_label(series[0][1])
        where = folder if folder is not None else paths[0].parent
        stacks.append(Stack(where, "series", len(paths), files=paths, max_pixels=max_pixels, label=label))
    return stacks


def _maybe_volume_or_dicom(path: Path) -> bool:
    from mdrn.io.dicom import is_dicom_file
    from mdrn.io.nifti import is_nifti

    return is_nifti(path) or is_dicom_file(path)


def is_media_export(folder: Path) -> bool:
    """True if ``folder`` is a DICOM media export (it holds a ``DICOMDIR``, any letter case)."""
    try:
        return any(p.name.upper() == "DICOMDIR" and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def _folder_files(folder: Path, recursive: bool) -> list[Path]:
    """The visible files of ``folder`` (and of its visible subfolders if ``recursive``), sorted."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    found = []
    for root, dirs, names in os.walk(folder):  # symbolic links to folders are not followed (no loops)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, n) for n in names if not n.startswith(".") and Path(root, n).is_file()]
    return sorted(found)


def open_inputs(
    path: str | os.PathLike[str],
    *,
    plane: str = "ij",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    errors: list[ImageReadError] | None = None,
) -> list[Stack]:
    """The stacks in ``path`` (file or folder). Unreadable files of a folder go to ``errors`` if given.

    A folder's subfolders are searched only where it is a DICOM media export (:func:`is_media_export`).

    A single file that cannot be used raises :class:`ImageReadError` naming it.
    """
    from mdrn.io.nifti import is_nifti

    path = Path(path)
    if path.is_dir():
        found: list[ImageReadError] = []
        media = is_media_export(path)
        files = [p for p in _folder_files(path, media) if is_image_file(p) or _maybe_volume_or_dicom(p)]
        # a media export's series are named after their description, a plain folder's after the folder
        where = None if media else path
        stacks = open_files(files, plane=plane, max_pixels=max_pixels, errors=found, folder=where)
        if errors is not None:
            errors.extend(found)
        elif found:
            raise found[0]
        return stacks
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if is_nifti(path):
        return [_volume(path, plane, max_pixels)]
    from mdrn.io.dicom import is_dicom_file

    if is_dicom_file(path) or path.suffix.lower() in (".dcm", ".dicom"):
        return [_dicom_stack(path, max_pixels)]
    return [Stack(path, "image", 1, max_pixels=max_pixels)]


def job_pixels(stacks: list[Stack]) -> int:
    """Input pixels of ``stacks``: each one's slices times its first slice's size (unreadable ones: 0)."""
    total = 0
    for stack in stacks:
        try:
            if stack.kind == "image" and stack.image is None:  # the header's size: nothing decoded and
                width, height = image_size(stack.path)  # kept before its turn (a batch's photos at once)
            else:
                first = stack.slice(0)
                width, height = first.width, first.height
        except (ValueError, OSError):
            continue
        total += stack.n_slices * height * width
    return total
