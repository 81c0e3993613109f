"""Content overlap between image sets: the same picture at another size, or a crop of it, is found.

A training image that is a test image (or a crop of one, at any size) makes a test score a memory test.
File names and pixel hashes miss such copies (BSD200's ``302003`` is Set5's ``woman`` at another size),
so :func:`find_overlaps` compares content:

- every image becomes a gray working copy (BT.601 luma for RGB, at most :data:`WORK` px on its longer
  side, area-averaged; cached per file);
- a thumbnail is the area mean of a box of it on a square grid, normalised to zero mean and unit norm, so
  that the dot product of two thumbnails is their correlation (brightness, contrast and bit depth do not
  matter, and an image enlarged or reduced keeps its thumbnail);
- crops: each whole image (in its 8 orientations: turned by quarter turns, and each mirrored; turned ones
  only in windows of at least :data:`TURNED_SIZE`) is compared with windows of every image of the other
  set, whose sides are :data:`SIZES` of the image's sides (independently, so a crop may change the aspect
  ratio) at every :data:`STEP` of its height and width, first on coarse thumbnails (:data:`COARSE` px);
  pairs at or above :data:`CANDIDATE` are refined (the window's position and size moved in shrinking
  steps) on :data:`THUMB`-px thumbnails, and a pair is flagged at or above ``threshold``.

What it does not find: crops smaller than the smallest window (:data:`SIZES`, about half of each side),
turned crops smaller than :data:`TURNED_SIZE`, rotations other than quarter turns, two crops that only
partly overlap, and strong filtering.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ASPECT",
    "CANDIDATE",
    "COARSE",
    "DEFAULT_THRESHOLD",
    "MIN_SIDE",
    "REFINE",
    "SIZES",
    "STEP",
    "THUMB",
    "TURNED_SIZE",
    "WORK",
    "Match",
    "OverlapReport",
    "correlation",
    "find_overlaps",
    "working_image",
]

#: the longer side of the cached gray working copy of an image (pixels)
WORK = 128
#: the side of the thumbnails the final score is measured on (pixels)
THUMB = 32
#: the side of the coarse thumbnails of the window search, then of the first refinement (pixels)
COARSE = 8
REFINE = (16, THUMB)
#: window sides, as fractions of the image's height and width (1.0 down to 0.5 in steps of 0.05)
SIZES = tuple(round(1 - 0.05 * i, 2) for i in range(11))
#: window positions: every STEP of the image's height and width
STEP = 0.05
#: the most a match may stretch one side against the other (a window's aspect ratio / the whole image's)
ASPECT = 1.25
#: a refined window's sides stay at least this fraction of the image's
MIN_SIDE = 0.45
#: turned (quarter turns, upside down) images are sought only in windows whose sides are at least this
#: fraction of the image's: smaller turned windows of unrelated images come too close to the threshold
#: (BSD200's 55067 turned 270 degrees in a 0.45 window of Set5's head: 0.94)
TURNED_SIZE = 0.75
#: coarse correlation from which a pair is refined
CANDIDATE = 0.85
#: refined correlation from which a pair is flagged as the same content
DEFAULT_THRESHOLD = 0.95

_memory: dict[tuple[str, int, int], np.ndarray] = {}


@dataclass(frozen=True)
class Match:
    """A pair of images and how alike they are: ``window`` is the box of ``inside`` that ``whole`` matches.

    ``window`` = (top, left, height, width) as fractions of ``inside``'s height and width; ``mirrored``
    when ``whole`` matches it left-right flipped, after ``turns`` quarter turns counterclockwise.
    """

    whole: Path
    inside: Path
    score: float
    window: tuple[float, float, float, float]
    mirrored: bool = False
    refined: bool = True  # False: the coarse score of the window search (the pair was not refined)
    turns: int = 0  # quarter turns counterclockwise of ``whole`` (``np.rot90``), before the mirroring

    def describe(self, show: Callable[[Path], str] = str) -> str:
        """``a.png ~ b.png: correlation 0.988 (whole b; window ...)``; ``show`` prints a path."""
        top, left, h, w = self.window
        box = "whole" if min(h, w) >= 0.999 else f"window top {top:.2f} left {left:.2f} size {h:.2f}x{w:.2f}"
        flip = (f", turned {90 * self.turns} degrees" if self.turns else "") + (
            ", mirrored" if self.mirrored else ""
        )
        k = THUMB if self.refined else COARSE
        where = f"{box} of the second{flip}"
        return f"{show(self.whole)} ~ {show(self.inside)}: correlation {self.score:.4f} at {k} px ({where})"


@dataclass
class OverlapReport:
    """What :func:`find_overlaps` found: the flagged pairs and the closest pair that was not flagged."""

    matches: list[Match] = field(default_factory=list)
    closest_other: Match | None = None  # the highest score below the threshold (the threshold's margin)
    threshold: float = DEFAULT_THRESHOLD
    pairs: int = 0  # image pairs compared

    def describe(self, show: Callable[[Path], str] = str) -> str:
        """One line per flagged pair, then the closest other pair; ``show`` prints a path."""
        lines = [
            f"{self.pairs} image pairs compared, threshold {self.threshold}: {len(self.matches)} flagged"
        ]
        lines += [f"  SAME CONTENT: {m.describe(show)}" for m in self.matches]
        if self.closest_other is not None:
            lines.append(f"  closest pair not flagged: {self.closest_other.describe(show)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------- thumbnails
def _integral(img: np.ndarray) -> np.ndarray:
    """The summed-area table with a zero first row and column (float64)."""
    s = np.zeros((img.shape[0] + 1, img.shape[1] + 1))
    s[1:, 1:] = img.astype(np.float64).cumsum(0).cumsum(1)
    return s


def _sample(table: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The summed-area table at rows ``ys`` (N, A) x columns ``xs`` (N, B), in pixels: (N, A, B).

    Exact for fractional positions: the summed-area table of a piecewise-constant image is bilinear in
    each pixel, so sampling it bilinearly gives the exact area sums.
    """
    h, w = table.shape[0] - 1, table.shape[1] - 1
    ys, xs = np.clip(ys, 0, h), np.clip(xs, 0, w)
    y0 = np.minimum(ys.astype(np.int64), h - 1)
    x0 = np.minimum(xs.astype(np.int64), w - 1)
    wy, wx = (ys - y0)[:, :, None], (xs - x0)[:, None, :]
    y0, x0 = y0[:, :, None], x0[:, None, :]
    return (
        table[y0, x0] * (1 - wy) * (1 - wx)
        + table[y0 + 1, x0] * wy * (1 - wx)
        + table[y0, x0 + 1] * (1 - wy) * wx
        + table[y0 + 1, x0 + 1] * wy * wx
    )


def _cells(v: np.ndarray) -> np.ndarray:
    """Sums of the cells between sampled summed-area values (..., A, B) -> (..., A - 1, B - 1)."""
    return v[..., 1:, 1:] - v[..., :-1, 1:] - v[..., 1:, :-1] + v[..., :-1, :-1]


def _box_means(table: np.ndarray, boxes: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Area means of ``ny x nx`` cells of each box ``(top, left, height, width)`` in pixels: (N, ny, nx)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ys = boxes[:, :1] + boxes[:, 2:3] * np.linspace(0, 1, ny + 1)  # (N, ny+1)
    xs = boxes[:, 1:2] + boxes[:, 3:4] * np.linspace(0, 1, nx + 1)
    area = (boxes[:, 2] * boxes[:, 3] / (ny * nx)).clip(min=1e-12)[:, None, None]
    return _cells(_sample(table, ys, xs)) / area


def _window_thumbnails(img: np.ndarray) -> np.ndarray:
    """Normalised :data:`COARSE`-px thumbnails of every search window of ``img``, in the order of
    :func:`_window_fractions`: (N, COARSE^2), float32.

    Every cell edge of every window lies on a lattice of STEP / COARSE of the image's sides, so the
    summed-area table is sampled once on that lattice and the windows' cells are read from it.
    """
    h, w = img.shape
    n = _units() * COARSE  # lattice intervals per side
    lattice = _sample(_integral(img), np.arange(n + 1)[None] * h / n, np.arange(n + 1)[None] * w / n)[0]
    iy, ix = _lattice_edges()
    return _normalize(_cells(lattice[iy[:, :, None], ix[:, None, :]]).astype(np.float32))


@functools.cache
def _lattice_edges() -> tuple[np.ndarray, np.ndarray]:
    """The lattice indices of every window's cell edges: rows (N, COARSE + 1), columns (N, COARSE + 1)."""
    units = np.rint(_window_fractions() / STEP).astype(np.int64) * COARSE
    steps = np.arange(COARSE + 1)
    return units[:, :1] + units[:, 2:3] // COARSE * steps, units[:, 1:2] + units[:, 3:4] // COARSE * steps


def _gray(array: np.ndarray) -> np.ndarray:
    """The BT.601 luma of an RGB array (``mdrn.protocol.color.rgb_to_y``) or the gray plane, as float64."""
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] >= 3:
        import torch

        from mdrn.protocol.color import rgb_to_y

        return rgb_to_y(torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(2, 0, 1))[0].numpy()
    return a[..., 0] if a.ndim == 3 else a


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def working_image(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """The gray working copy of an image file: at most :data:`WORK` px on its longer side, float32.

    Kept in memory for the process (and in ``cache_dir`` as ``.npy`` when given), keyed by the file's
    path, size and modification time.
    """
    path = Path(path)
    key = _key(path)
    if key in _memory:
        return _memory[key]
    cached = None
    if cache_dir is not None:
        name = hashlib.sha256(f"{WORK}|{key}".encode()).hexdigest()[:32]
        cached = Path(cache_dir) / f"{name}.npy"
        if cached.is_file():
            _memory[key] = np.load(cached)
            return _memory[key]
    from mdrn.io.images import read_image

    img = _gray(read_image(path).array)
    h, w = img.shape
    f = min(1.0, WORK / max(h, w))
    ny, nx = max(1, round(h * f)), max(1, round(w * f))
    small = _box_means(_integral(img), np.array([[0, 0, h, w]]), ny, nx)[0].astype(np.float32)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp.npy")
        np.save(tmp, small)
        os.replace(tmp, cached)
    _memory[key] = small
    return small


def _normalize(t: np.ndarray) -> np.ndarray:
    """Thumbnails (N, k, k) as rows of zero mean and unit norm (a flat thumbnail stays zero)."""
    t = t.reshape(t.shape[0], -1)
    t = t - t.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    return t / np.where(norm > 1e-9, norm, np.inf)


def _units() -> int:
    """STEPs per image side."""
    return round(1 / STEP)


def _size_units() -> list[int]:
    """The window sides of :data:`SIZES` in STEPs."""
    return [round(f / STEP) for f in SIZES]


@functools.cache
def _window_fractions() -> np.ndarray:
    """The search windows as fractions of an image: (N, 4) = (top, left, height, width)."""
    rows = []
    for k1 in _size_units():
        for k2 in _size_units():
            t, lf = np.meshgrid(np.arange(_units() - k1 + 1), np.arange(_units() - k2 + 1), indexing="ij")
            rows.append(np.stack([t.ravel(), lf.ravel(), np.full(t.size, k1), np.full(t.size, k2)], axis=1))
    out = np.concatenate(rows) * STEP
    out.flags.writeable = False
    return out


def _whole(img: np.ndarray, k: int) -> np.ndarray:
    """The normalised thumbnail of the whole image and of its mirror image: (2, k*k)."""
    t = _box_means(_integral(img), np.array([[0, 0, *img.shape]]), k, k)
    return _normalize(np.concatenate([t, t[:, :, ::-1]]))


def _orientations(img: np.ndarray) -> list[np.ndarray]:
    """``img`` turned by 0-3 quarter turns counterclockwise, each plain, then mirrored."""
    return [v for k in range(4) for r in [np.rot90(img, k)] for v in (r, r[:, ::-1])]


def correlation(a: np.ndarray, b: np.ndarray, k: int = THUMB) -> float:
    """The correlation of two whole images' ``k x k`` thumbnails (gray or RGB arrays, any size or depth)."""
    ta = _whole(_gray(a), k)[0]
    tb = _whole(_gray(b), k)[0]
    return float(ta @ tb)


def _refine(whole: np.ndarray, table: np.ndarray, box: np.ndarray) -> tuple[float, np.ndarray]:
    """Move the edges of ``box`` (pixels) in shrinking steps to raise its correlation with ``whole``.

    ``whole`` is the image whose box is sought (a gray working image, possibly mirrored); each stage
    (:data:`REFINE` thumbnail sides) tries every edge alone, the box shifted, and the box grown or shrunk
    about its centre, keeping its sides at least :data:`MIN_SIDE` of the image's. Returns the correlation
    at :data:`THUMB` px and the box.
    """
    h, w = table.shape[0] - 1, table.shape[1] - 1
    edges = np.array([box[0], box[0] + box[2], box[1], box[1] + box[3]])  # top, bottom, left, right
    eye = np.eye(4)
    moves = np.array([*eye, *-eye, (1, 1, 0, 0), (-1, -1, 0, 0), (0, 0, 1, 1), (0, 0, -1, -1),
                      (-1, 1, -1, 1), (1, -1, 1, -1)], dtype=float)  # fmt: skip

    def score(e: np.ndarray, k: int, target: np.ndarray) -> np.ndarray:
        boxes = np.stack([e[:, 0], e[:, 2], e[:, 1] - e[:, 0], e[:, 3] - e[:, 2]], axis=1)
        return _normalize(_box_means(table, boxes, k, k)) @ target

    best = -1.0
    for k in REFINE:
        target = _whole(whole, k)[0]
        best = float(score(edges[None], k, target)[0])
        step = STEP
        while step >= STEP / 16:
            d = np.array([step * h, step * h, step * w, step * w])
            while True:
                cand = edges + moves * d
                cand[:, :2] = cand[:, :2].clip(0, h)
                cand[:, 2:] = cand[:, 2:].clip(0, w)
                cand = cand[
                    (cand[:, 1] - cand[:, 0] >= MIN_SIDE * h) & (cand[:, 3] - cand[:, 2] >= MIN_SIDE * w)
                ]
                if not len(cand):
                    break
                scores = score(cand, k, target)
                i = int(np.argmax(scores))
                if scores[i] <= best + 1e-6:
                    break
                best, edges = float(scores[i]), cand[i]
            step /= 2
    return best, np.array([edges[0], edges[2], edges[1] - edges[0], edges[3] - edges[2]])


# --------------------------------------------------------------------------------- comparison
def find_overlaps(
    seen: Iterable[str | os.PathLike[str]],
    evaluated: Iterable[str | os.PathLike[str]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    cache_dir: str | os.PathLike[str] | None = None,
) -> OverlapReport:
    """Every pair (one image of ``seen``, one of ``evaluated``) whose content is the same picture.

    Both directions of cropping are searched: a ``seen`` image inside an ``evaluated`` one, and an
    ``evaluated`` image inside a ``seen`` one (see the module's docstring). Returns the flagged pairs,
    the closest pair below ``threshold`` and the number of pairs compared.
    """
    a_paths = list(dict.fromkeys(Path(p) for p in seen))
    b_paths = list(dict.fromkeys(Path(p) for p in evaluated))
    images = {p: working_image(p, cache_dir) for p in {*a_paths, *b_paths}}
    report = OverlapReport(threshold=threshold, pairs=len(a_paths) * len(b_paths))
    if not a_paths or not b_paths:
        return report
    fractions = _window_fractions()
    small_windows = fractions[:, 2:].min(axis=1) < TURNED_SIZE
    best: dict[tuple[Path, Path], Match] = {}
    for wholes, insides, swap in ((a_paths, b_paths, False), (b_paths, a_paths, True)):
        turned = [_orientations(images[p]) for p in wholes]
        coarse = np.concatenate([_whole(v, COARSE)[:1] for vs in turned for v in vs]).astype(np.float32)
        aspect = np.log([v.shape[0] / v.shape[1] for vs in turned for v in vs])
        turned_rows = np.tile(np.arange(8) >= 2, len(wholes))  # not the plain or the mirrored image
        for q in insides:
            img = images[q]
            h, w = img.shape
            table = _integral(img)
            boxes = fractions * np.array([h, w, h, w])
            scores = coarse @ _window_thumbnails(img).T  # (rows, windows)
            # a window of another shape than the whole image would stretch it more than ASPECT
            stretch = np.abs(aspect[:, None] - np.log(boxes[:, 2] / boxes[:, 3])[None, :])
            scores[stretch > np.log(ASPECT)] = -1.0
            scores[np.ix_(turned_rows, small_windows)] = -1.0
            top = scores.argmax(axis=1)
            top_score = scores[np.arange(len(top)), top].reshape(len(wholes), -1)  # (wholes, orientations)
            for i, p in enumerate(wholes):
                o = int(top_score[i].argmax())
                s, box = float(top_score[i, o]), boxes[top[top_score.shape[1] * i + o]]
                refined = s >= CANDIDATE
                if refined:
                    s, box = _refine(turned[i][o], table, box)
                window = (box[0] / h, box[1] / w, box[2] / h, box[3] / w)
                m = Match(p, q, s, window, bool(o % 2), refined, o // 2)
                pair = (q, p) if swap else (p, q)
                if pair not in best or m.score > best[pair].score:
                    best[pair] = m
    for m in sorted(best.values(), key=lambda m: -m.score):
        if m.score >= threshold:
            report.matches.append(m)
        elif report.closest_other is None:
            report.closest_other = m
    return report


def image_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files of files and folders (folders searched recursively), in order, without repeats."""
    from mdrn.data.sources import list_images

    out: list[Path] = []
    for p in map(Path, paths):
        for f in list_images(p) if p.is_dir() else [p]:
            if f not in out:
                out.append(f)
    return out
