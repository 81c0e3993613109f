"""No image a preset trained or validated on is, by content, an image the project reports a score on.

``mdrn.data.overlap`` compares content (resized, cropped, mirrored, turned copies are found: BSD200's 302003
is
Set5's "woman" at another size); ``mdrn.reproduce.leakage`` gathers every seen image of every recipe and
recorded run, and every image of every reported evaluation set (benchmarks on this machine, the medical
images of Table 2 and the figures, the sample data's test split of the model card, the presets' test sets).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, shared_path

from mdrn.data.overlap import DEFAULT_THRESHOLD, correlation, find_overlaps, working_image
from mdrn.io.images import read_image, write_image
from mdrn.protocol.resize import imresize
from mdrn.reproduce.leakage import check_leakage, preset_data

#: the closest unrelated pair must stay this far below the threshold (the threshold's margin)
MARGIN = 0.05


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mdrn.data import prepare_sample

    root = tmp_path_factory.mktemp("data")
    prepare_sample(root)
    return root


@pytest.fixture(scope="module")
def presets() -> dict:
    """Every recipe and recorded run's data sources (composed once)."""
    return preset_data()


@pytest.fixture(scope="module")
def medical_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Table 2's medical images, written by the script the make targets use."""
    out = tmp_path_factory.mktemp("medical")
    cmd = [sys.executable, str(ROOT / "experiments" / "scripts" / "medical_images.py"), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=600)
    assert (out / "Medical_8bit").is_dir() and (out / "Medical_10to16bit").is_dir()
    return out


def _crop_resize(src: Path, dest: Path, box: tuple[float, float, float, float], scale: tuple[float, float],
                 mirror: bool = False) -> Path:  # fmt: skip
    """Write a crop (top, left, height, width: fractions) of ``src`` resized by ``scale`` (MATLAB bicubic)."""
    a = read_image(src).array
    h, w = a.shape[:2]
    top, left, ch, cw = int(box[0] * h), int(box[1] * w), int(box[2] * h), int(box[3] * w)
    crop = torch.from_numpy(a[top : top + ch, left : left + cw].astype(np.float64) / 255).permute(2, 0, 1)
    size = (round(ch * scale[0]), round(cw * scale[1]))
    out = imresize(crop[None], size=size)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    out = np.round(out * 255).astype(np.uint8)
    write_image(dest, np.ascontiguousarray(out[:, ::-1] if mirror else out), bit_depth=8, overwrite=True)
    return dest


def test_bsd200_302003_is_set5_woman_and_nothing_else_of_bsd200_or_t91_is_a_set5_image() -> None:
    set5 = sorted(shared_path("datasets", "Set5").glob("*.png"))
    seen = sorted(shared_path("datasets", "BSD200").glob("*.png")) + sorted(
        shared_path("datasets", "T91").glob("*.png")
    )
    report = find_overlaps(seen, set5)
    print(report.describe())
    assert [(m.whole.name, m.inside.name) for m in report.matches] in (
        [("302003.png", "woman.png")],
        [("woman.png", "302003.png")],
    ), report.describe()
    assert report.matches[0].score >= 0.98
    assert report.closest_other is not None and report.closest_other.score <= DEFAULT_THRESHOLD - MARGIN


def test_crops_and_resizes_of_a_test_image_are_found(tmp_path: Path) -> None:
    """A training image that is a crop of a test image (any size, any aspect, mirrored), and a test image
    that is a crop of a training image; unrelated images beside them are not flagged."""
    set5 = shared_path("datasets", "Set5")
    t91 = sorted(shared_path("datasets", "T91").glob("*.png"))[:12]
    copies = {
        "woman_crop": _crop_resize(set5 / "woman.png", tmp_path / "a.png", (0.13, 0.27, 0.62, 0.71),
                                   (0.6, 0.6)),
        "baby_crop": _crop_resize(set5 / "baby.png", tmp_path / "b.png", (0.2, 0.05, 0.55, 0.8), (1.3, 1.1)),
        "butterfly_crop": _crop_resize(set5 / "butterfly.png", tmp_path / "c.png", (0.12, 0.2, 0.77, 0.66),
                                       (0.5, 0.5)),
        "head_mirrored": _crop_resize(set5 / "head.png", tmp_path / "d.png", (0, 0, 1, 1), (0.7, 0.7), True),
    }  # fmt: skip
    report = find_overlaps([*t91, *copies.values()], sorted(set5.glob("*.png")))
    print(report.describe())
    found = {m.whole if m.whole in copies.values() else m.inside for m in report.matches}
    assert found == set(copies.values()) and len(report.matches) == len(copies), report.describe()
    assert report.closest_other is not None and report.closest_other.score <= DEFAULT_THRESHOLD - MARGIN
    # the other way round: the evaluated image is a crop of a (larger) training image
    inside = _crop_resize(t91[3], tmp_path / "e.png", (0.1, 0.2, 0.6, 0.6), (0.8, 0.8))
    report = find_overlaps(t91, [inside])
    assert [m.inside for m in report.matches] == [t91[3]] or [m.whole for m in report.matches] == [t91[3]]


def test_turned_flipped_gray_and_16_bit_copies_of_a_test_image_are_found(tmp_path: Path) -> None:
    """A test image turned by a quarter turn (alone, upside down, transposed), as gray, or as 16-bit gray
    (a slice read in another orientation is the same picture) is flagged, with its orientation."""
    from PIL import Image

    bird = shared_path("datasets", "Set5", "bird.png")
    rgb = Image.open(bird).convert("RGB").resize((200, 160))  # not square: a quarter turn changes the shape
    copies = {
        "rot90.png": rgb.transpose(Image.Transpose.ROTATE_90),
        "rot180.png": rgb.transpose(Image.Transpose.ROTATE_180),
        "upside_down.png": rgb.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        "transposed.png": rgb.transpose(Image.Transpose.TRANSPOSE),
        "gray.png": rgb.convert("L"),
    }
    for name, im in copies.items():
        im.save(tmp_path / name)
    gray16 = np.asarray(rgb.convert("L")).astype(np.uint16) * 257
    write_image(tmp_path / "gray16.png", gray16, bit_depth=16, overwrite=True)
    copies["gray16.png"] = None
    for name in copies:
        report = find_overlaps([tmp_path / name], [bird])
        assert len(report.matches) == 1 and report.matches[0].score >= 0.98, f"{name}: {report.describe()}"
        m = report.matches[0]
        # the orientation found turns the copy back onto the test image
        back = np.rot90(read_image(tmp_path / name).array, m.turns)
        back = back[:, ::-1] if m.mirrored else back
        assert correlation(back, np.asarray(rgb)) >= 0.98, f"{name}: {m.describe()}"


def test_working_images_are_cached(tmp_path: Path) -> None:
    src = tmp_path / "bird.png"
    shutil.copyfile(shared_path("datasets", "Set5", "bird.png"), src)
    first = working_image(src, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1 and max(first.shape) == 128
    assert working_image(src, tmp_path / "cache") is first


@pytest.mark.slow
def test_no_image_a_preset_saw_is_an_image_the_project_reports(
    data_dir: Path, medical_dir: Path, presets: dict
) -> None:
    """Every recipe and recorded run (the shipped model's included) against every reported set."""
    shared = shared_path()
    report = check_leakage(data_dir=data_dir, medical_dir=medical_dir, shared=shared, presets=presets)
    print(report.describe())
    assert not report.overlap.matches, report.describe()
    closest = report.overlap.closest_other
    assert closest is not None and closest.score <= DEFAULT_THRESHOLD - MARGIN, report.describe()
    # what was covered: the natural training sets, the sample data and every reported set here
    seen = "\n".join(report.seen)
    for needle in ("T91", "BSD200", "sample/train"):
        assert needle in seen, f"no {needle} image among the seen images"
    reported = {s for sets in report.reported.values() for s in sets}
    assert {"Set5", "Medical_8bit", "Medical_10to16bit", "sample_test_8bit", "sample_test_16bit"} <= reported


@pytest.mark.slow
def test_set5_in_a_presets_training_data_is_caught(data_dir: Path, tmp_path: Path, presets: dict) -> None:
    """The guard itself: Set5 copied into a folder a preset trains on (renamed, resized) is flagged."""
    shared = shared_path()
    folder = tmp_path / "more_training_images"
    folder.mkdir()
    _crop_resize(
        shared / "datasets" / "Set5" / "bird.png", folder / "img_0001.png", (0, 0, 1, 1), (0.75, 0.75)
    )
    shipped = {**presets["recipe mdrn_small"]}
    shipped["train"] = [*shipped["train"], {"name": "more", "kind": "folder", "path": str(folder)}]
    report = check_leakage(
        data_dir=data_dir, medical_dir=None, shared=shared, presets={"recipe mdrn_small": shipped}
    )
    assert [Path(m.whole).name for m in report.overlap.matches] == ["img_0001.png"], report.describe()
    assert "recipe mdrn_small (train)" in report.describe()
