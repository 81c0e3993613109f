"""mdrn.data: cache integrity, one scale per batch from the seed, aligned patches, sample data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mdrn.data import ImageCache, ScaleBatchSampler, SRDataModule, TrainPatchDataset
from mdrn.data.cache import MANIFEST
from mdrn.data.datasets import augment
from mdrn.io.images import write_image
from mdrn.protocol.resize import degrade


@pytest.fixture()
def images(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for i, (shape, bits) in enumerate([((120, 144, 3), 8), ((130, 100), 16), ((96, 96), 8)]):
        arr = rng.integers(0, 2**bits, size=shape, dtype=np.uint16 if bits > 8 else np.uint8)
        files.append(write_image(tmp_path / "src" / f"im{i}.png", arr, bit_depth=bits))
    return files


def test_cache_roundtrip_and_lr(images: list[Path], tmp_path: Path) -> None:
    cache = ImageCache(images, tmp_path / "cache", scales=(2, 3))
    ims = cache.images
    assert [im.bit_depth for im in ims] == [8, 16, 8]
    assert isinstance(ims[0].hr, np.memmap)
    from mdrn.io.images import image_to_tensor, read_image
    from mdrn.protocol.metrics import quantize

    img = read_image(images[1])
    lr = quantize(degrade(image_to_tensor(img, torch.float64), 3), 16)
    assert np.array_equal(ims[1].lr[3], np.round(lr[0].numpy() * 65535).astype(np.uint16))
    assert ims[0].lr[2].shape == (60, 72, 3) and ims[1].lr[3].shape == (43, 33)


def test_image_smaller_than_the_scale_is_named(images: list[Path], tmp_path: Path) -> None:
    # before: "modcrop: image 3x50 is smaller than the scale 4", no file named, from deep in the LR resize
    tiny = write_image(tmp_path / "src" / "scout.png", np.zeros((3, 50), np.uint8), bit_depth=8)
    with pytest.raises(ValueError, match=r"^\S+scout\.png: image 3x50 is smaller than the scale x4$"):
        ImageCache([*images, tiny], tmp_path / "cache", scales=(2, 4)).build()


def test_interrupted_build_is_rebuilt(images: list[Path], tmp_path: Path) -> None:
    cache = ImageCache(images, tmp_path / "cache", scales=(2,))
    cache.build()
    (cache.folder / MANIFEST).unlink()  # as if the build had been killed before the manifest
    assert not cache.is_valid()
    cache2 = ImageCache(images, tmp_path / "cache", scales=(2,))
    assert len(cache2.images) == 3 and cache2.is_valid()
    # a truncated array file is detected (size check) and rebuilt
    victim = cache2.folder / json.loads((cache2.folder / MANIFEST).read_text())["images"][0]["hr"]["file"]
    victim.write_bytes(victim.read_bytes()[:-10])
    assert not ImageCache(images, tmp_path / "cache", scales=(2,)).is_valid()
    assert ImageCache(images, tmp_path / "cache", scales=(2,)).images[0].hr.shape == (120, 144, 3)
    # altered content with the same size: caught by verify="hash"
    victim = cache2.folder / json.loads((cache2.folder / MANIFEST).read_text())["images"][1]["hr"]["file"]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert ImageCache(images, tmp_path / "cache", scales=(2,)).is_valid()
    assert not ImageCache(images, tmp_path / "cache", scales=(2,), verify="hash").is_valid()


def test_sampler_one_scale_per_batch_reproducible() -> None:
    kw = dict(n_images=5, batch_size=4, batches_per_epoch=50, scales=(2, 3, 4), seed=7)
    a, b = ScaleBatchSampler(**kw), ScaleBatchSampler(**kw)
    ba, bb = list(a), list(b)
    assert ba == bb
    for batch in ba:
        assert len({s for _, s, _ in batch}) == 1
    assert {batch[0][1] for batch in ba} == {2, 3, 4}
    assert list(ScaleBatchSampler(**{**kw, "seed": 8})) != ba
    # same scale on every DDP rank, different images
    r0 = ScaleBatchSampler(**kw, rank=0, world_size=2)
    r1 = ScaleBatchSampler(**kw, rank=1, world_size=2)
    for x, y in zip(r0, r1):
        assert x[0][1] == y[0][1] and x != y
    # resuming at batch 20 yields exactly the rest of the epoch
    c = ScaleBatchSampler(**kw)
    c.start_batch = 20
    assert list(c) == ba[20:]
    c.set_epoch(1)
    assert list(c)[0] == ScaleBatchSampler(**kw).batch(50)
    # a run that ended at batch 20 (max_steps mid-epoch) and is continued: the trainer counts that epoch as
    # done and starts its epoch 1 there; the batches go on from 20, then 50, as in an uninterrupted run
    d = ScaleBatchSampler(**kw)
    d.start_batch = 20
    d.set_epoch(1)
    assert list(d) == ba[20:]
    d.set_epoch(2)
    assert list(d) == [ScaleBatchSampler(**kw).batch(b) for b in range(50, 100)]
    # weights: a zero-weight scale is never drawn
    w = ScaleBatchSampler(**{**kw, "batches_per_epoch": 200}, scale_weights=[1, 0, 1])
    assert {bt[0][1] for bt in w} == {2, 4}


def test_patches_aligned(images: list[Path], tmp_path: Path) -> None:
    cache = ImageCache(images[:1], tmp_path / "cache", scales=(2,))
    ds = TrainPatchDataset([cache], patch_size=16, n_colors=3, augment=False)
    item = ds[(0, 2, 123)]
    assert item["lr"].shape == (3, 16, 16) and item["hr"].shape == (3, 32, 32)

    def lr_error(hr_patch: torch.Tensor) -> float:
        """Max |degrade(HR patch) - LR patch| away from the borders (3 LR px > the kernel's 2-px reach)."""
        lr_from_hr = degrade(hr_patch[None].double(), 2)[0]
        return (lr_from_hr[:, 3:-3, 3:-3] - item["lr"][:, 3:-3, 3:-3]).abs().max().item()

    # aligned, the only difference is the LR's rounding to 8 bits: at most half a grey level (measured on
    # 200 patches of this noise image: 0.001961 <= 0.5/255); one HR pixel off it is >= 0.206
    tolerance = 0.5 / 255 + 1e-6
    assert lr_error(item["hr"]) <= tolerance
    hr = torch.from_numpy(np.asarray(cache.images[0].hr, dtype=np.float32) / 255).permute(2, 0, 1)
    h, w = hr.shape[-2:]
    spots = [(y, x) for y in range(h - 31) for x in range(w - 31)]
    ((y, x),) = [(y, x) for y, x in spots if torch.equal(hr[:, y : y + 32, x : x + 32], item["hr"])]
    shifted = [(y + dy, x + dx) for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)) if (y + dy, x + dx) in spots]
    assert len(shifted) >= 2
    for y1, x1 in shifted:
        assert lr_error(hr[:, y1 : y1 + 32, x1 : x1 + 32]) > 50 * tolerance, (y1 - y, x1 - x)
    gray = TrainPatchDataset([ImageCache(images[1:2], tmp_path / "cache", scales=(2,))], 16, n_colors=3)
    assert gray[(0, 2, 1)]["lr"].shape == (3, 16, 16)
    x = torch.arange(12.0).reshape(1, 3, 4)
    assert len({tuple(augment(x, k).flatten().tolist()) for k in range(8)}) == 8


def test_sample_datamodule(tmp_path: Path) -> None:
    dm = SRDataModule(
        train=[{"name": "sample", "kind": "sample", "split": "train"}],
        val=[{"name": "sample", "kind": "sample", "split": "test"}],
        test=[],
        data_dir=str(tmp_path),
        scales=(2, 4),
        batch_size=3,
        batches_per_epoch=4,
        patch_size=24,
    )
    dm.prepare_data()
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 4
    for b in batches:
        s = int(b["scale"][0])
        assert (b["scale"] == s).all() and b["hr"].shape[-1] == 24 * s and b["lr"].shape[1] == 3
    assert dm.eval_keys("val") == [("sample", 2), ("sample", 4)]
    names = {x["name"][0] for x in dm.val_dataloader()[0]}
    assert {"retina", "CT_small", "MR_small"} <= names
    bits = {int(x["bit_depth"][0]) for x in dm.val_dataloader()[0]}
    assert 8 in bits and max(bits) > 8  # 16-bit DICOM kept


def test_missing_div2k_message(tmp_path: Path) -> None:
    from mdrn.data import DataNotFoundError, div2k_files

    with pytest.raises(DataNotFoundError) as ei:
        div2k_files(tmp_path, "train")
    msg = str(ei.value)
    assert "DIV2K_train_HR.zip" in msg and str(tmp_path) in msg


def test_download_facts_match_shared() -> None:
    from conftest import shared_path

    from mdrn.data.sources import _FACTS

    ref = json.loads(shared_path("reference", "downloads.json").read_text())
    assert _FACTS["div2k"] == ref["div2k"] and _FACTS["benchmark_hr"] == ref["benchmark_hr"]


def test_sample_sets_split_by_bit_depth(tmp_path: Path) -> None:
    from mdrn.data import sample_files

    bits8 = {p.stem for p in sample_files(tmp_path, "test_8bit")}
    bits16 = {p.stem for p in sample_files(tmp_path, "test_16bit")}
    assert "retina" in bits8 and {"CT_small", "MR_small"} <= bits16
    assert {p.stem for p in sample_files(tmp_path, "test")} == bits8 | bits16
    with pytest.raises(ValueError, match="unknown sample split"):
        sample_files(tmp_path, "valid")
    sets = [{"name": "s8", "kind": "sample", "split": "test_8bit"},
            {"name": "s16", "kind": "sample", "split": "test_16bit"},
            {"name": "mixed", "kind": "sample", "split": "test"}]  # fmt: skip
    dm = SRDataModule(val=sets[:2], test=sets, data_dir=str(tmp_path), scales=(2, 3))
    assert dm.eval_bit_depths("val") == [8, 8, 16, 16]
    with pytest.raises(ValueError, match="'mixed' mixes bit depths"):
        dm.eval_bit_depths("test")


def test_concurrent_cache_builders(images: list[Path], tmp_path: Path) -> None:
    """Two builders opening the same new cache at once: one builds, the other waits and reads it."""
    from concurrent.futures import ThreadPoolExecutor

    # threads, not forked processes (a fork of a process running torch can deadlock); the file lock
    # (flock on separate open files) excludes threads of one process as it does processes
    with ThreadPoolExecutor(2) as pool:
        shapes = list(pool.map(lambda _: _cache_shapes(images, tmp_path / "cache"), range(2)))
    assert shapes[0] == shapes[1] == [(120, 144, 3), (130, 100), (96, 96)]
    assert ImageCache(images, tmp_path / "cache", scales=(2, 3)).is_valid()


def _cache_shapes(files: list[Path], root: Path) -> list[tuple[int, ...]]:
    return [im.hr.shape for im in ImageCache(files, root, scales=(2, 3)).images]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("patch_size", -4, "data.patch_size must be at least 1, got -4"),
        ("batch_size", 0, "data.batch_size must be at least 1"),
        ("num_workers", -1, "data.num_workers must be at least 0"),
        ("scales", (2, 0), r"data.scales must be integers of at least 1, got \[2, 0\]"),
    ],
)
def test_impossible_loader_settings_are_named_before_any_image_is_read(tmp_path, key, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        SRDataModule(data_dir=str(tmp_path), **{key: value})


def test_folder_source_finds_dicom_files_without_suffix(tmp_path: Path) -> None:
    # a PACS export names its slices IM0001 or by UID (suffix ".504"): a folder source of DICOM files finds
    # them by their DICM header (as mdrn-upscale does); before, "no PNG/JPEG/TIFF/BMP/DICOM images"
    from medical_data import make_ct_series

    from mdrn.data import list_images

    slices = make_ct_series(tmp_path / "export" / "series1", 3)
    (tmp_path / "export" / "DICOMDIR").write_bytes(slices[0].read_bytes())  # a DICOM file, no image
    (tmp_path / "export" / "notes.txt").write_text("not an image")
    assert all(p.suffix == "" for p in slices)
    assert list_images(tmp_path / "export") == sorted(slices)


def test_a_low_resolution_image_of_another_bit_depth_is_named(tmp_path) -> None:
    """An LR folder image (DIV2K-style LR_bicubic/X2) of another bit depth than its HR image is refused,
    naming it: its values would otherwise be taken on the HR's scale (an 8-bit LR as 1/256 of a 16-bit HR)."""
    from mdrn.data.cache import build_cache
    from mdrn.io.images import ImageReadError

    hr = tmp_path / "HR" / "0001.png"
    hr.parent.mkdir()
    write_image(hr, (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16), bit_depth=16)
    lr_dir = tmp_path / "LR" / "X2"
    lr_dir.mkdir(parents=True)
    write_image(lr_dir / "0001x2.png", np.zeros((32, 32), np.uint8), bit_depth=8)
    with pytest.raises(ImageReadError, match=r"0001x2.png.*8-bit low-resolution image of a 16-bit"):
        build_cache([hr], tmp_path / "cache", scales=(2,), lr_dirs={2: tmp_path / "LR" / "X2"}, log=None)
