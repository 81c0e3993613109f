"""The clinician command line: formats in and out, bit depth and gray kept, DICOM tags, bad inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from mdrn.clinical.enlarge import ACTIVATION_MEMORY, DEFAULT_TILE
from mdrn.io.images import ImageData, image_to_tensor, read_image, tensor_to_array
from mdrn.models import MDRN, Bicubic
from mdrn.models.inference import upscale
from mdrn.upscale import main
from mdrn.weights import save_model


def assert_same_pixels(got: np.ndarray, ref: np.ndarray, float_diff: float, bit_depth: int) -> None:
    """Pixels of two float outputs ``float_diff`` apart (max |a - b| on [0, 1]), each rounded to n bits.

    The tolerance is derived, not fixed: tiles, bands and whole images sum a convolution's terms in
    different orders on different CPUs (float32 rounding), so the float outputs differ by ``float_diff``;
    values that far apart round to grey levels at most ``floor(float_diff * peak) + 1`` apart: one grey
    level while ``float_diff`` is under one level (1 / peak), as it must be for a seamless tiling.
    """
    peak = (1 << bit_depth) - 1
    assert float_diff * peak < 1, f"tiling is not seamless: {float_diff:.1e} = {float_diff * peak:.2f} levels"
    levels = int(np.floor(float_diff * peak)) + 1
    worst = int(np.abs(got.astype(np.int64) - ref.astype(np.int64)).max())
    assert worst <= levels, (
        f"{worst} grey levels apart; at most {levels} for a float difference {float_diff:.1e}"
    )


def _bicubic_expected(src: Path, scale: int) -> np.ndarray:
    img = read_image(src)
    return tensor_to_array(upscale(Bicubic(), image_to_tensor(img), scale), img.bit_depth)


def _make(path: Path, kind: str) -> Path:
    rng = np.random.default_rng(0)
    if kind == "rgb8":
        Image.fromarray(rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)).save(path)
    elif kind == "gray8":
        Image.fromarray(rng.integers(0, 256, (18, 22), dtype=np.uint8)).save(path)
    elif kind == "gray16":
        arr = rng.integers(0, 65536, (18, 22), dtype=np.uint16)
        if path.suffix == ".png":
            Image.fromarray(arr).save(path)
        else:
            tifffile.imwrite(path, arr)
    return path


@pytest.mark.parametrize(
    "name, kind, bit_depth, channels, out_suffix",
    [
        ("rgb.png", "rgb8", 8, 3, ".png"),
        ("gray.png", "gray8", 8, 1, ".png"),
        ("gray16.png", "gray16", 16, 1, ".png"),
        ("gray16.tif", "gray16", 16, 1, ".tif"),
        ("rgb.bmp", "rgb8", 8, 3, ".png"),
        ("gray.jpg", "gray8", 8, 1, ".png"),
    ],
)
def test_formats_keep_gray_and_bit_depth(tmp_path, name, kind, bit_depth, channels, out_suffix) -> None:
    src = _make(tmp_path / name, kind)
    out = tmp_path / "out"
    assert main([str(src), "--scale", "3", "--weights", "bicubic", "-o", str(out), "-q"]) == 0
    dest = out / f"{src.stem}_x3_bicubic{out_suffix}"
    got = read_image(dest)
    ref = read_image(src)
    assert got.bit_depth == bit_depth
    assert got.channels == channels
    assert got.array.dtype == ref.array.dtype
    assert got.array.shape[:2] == (ref.height * 3, ref.width * 3)
    np.testing.assert_array_equal(got.array, _bicubic_expected(src, 3))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm"])
def test_dicom_out(tmp_path, name) -> None:
    src = Path(get_testdata_file(name))
    out = tmp_path / "out"
    assert main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q"]) == 0
    dest = out / f"{src.stem}_x2_bicubic.dcm"
    ref, got = pydicom.dcmread(src), pydicom.dcmread(dest)
    assert (got.Rows, got.Columns) == (ref.Rows * 2, ref.Columns * 2)
    assert got.BitsStored == ref.BitsStored and got.BitsAllocated == 16
    assert got.PixelRepresentation == ref.PixelRepresentation
    assert got.SOPInstanceUID != ref.SOPInstanceUID
    assert got.PatientID == ref.PatientID and got.StudyInstanceUID == ref.StudyInstanceUID
    if "PixelSpacing" in ref:
        np.testing.assert_allclose(
            [float(v) for v in got.PixelSpacing], [float(v) / 2 for v in ref.PixelSpacing], rtol=1e-5
        )
    back = read_image(dest)
    assert back.bit_depth == read_image(src).bit_depth
    np.testing.assert_array_equal(back.array, _bicubic_expected(src, 2))
    # and as a 16-bit PNG on request
    assert (
        main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q", "--format", "png"]) == 0
    )
    png = read_image(out / f"{src.stem}_x2_bicubic.png")
    assert png.array.dtype == back.array.dtype and png.channels == 1


def _no_pixel_dicom(path: Path) -> Path:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    del ds.PixelData
    ds.save_as(path)
    return path


def test_bad_inputs_one_line_each_no_partial_output(tmp_path, capsys) -> None:
    good = _make(tmp_path / "good.png", "gray8")
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image\n")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "dot.png")
    _no_pixel_dicom(tmp_path / "nopix.dcm")
    bad = ["trunc.png", "empty.png", "notes.png", "dot.png", "nopix.dcm"]
    out = tmp_path / "out"
    args = [str(tmp_path / n) for n in bad[:3]] + [str(good)] + [str(tmp_path / n) for n in bad[3:]]
    assert main([*args, "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == len(bad)
    for name, line in zip(bad, err):
        assert name in line, line
    joined = "\n".join(err)
    for problem in ("truncated", "empty", "not a recognised image", "too small", "no pixel data"):
        assert problem in joined
    assert sorted(p.name for p in out.iterdir()) == ["good_x2_bicubic.png"]  # no partial or temporary files


def test_model_weights_scale_it_lacks_and_tiling(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    net = MDRN(n_resblocks=2, n_feats=8, scales=(2,)).eval()
    weights = save_model(net, tmp_path / "tiny.safetensors")
    src = _make(tmp_path / "img.png", "rgb8")
    out = tmp_path / "out"
    assert main([str(src), "--scale", "4", "--weights", str(weights), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "tiny.safetensors" in err and "x4" in err
    assert not out.exists() or not any(out.iterdir())
    # x2 with tiles of 8 pixels and the network's full receptive field as overlap: same as untiled
    assert main([str(src), "--scale", "2", "--weights", str(weights), "-o", str(out), "-q", "--tile", "8",
                 "--overlap", "19"]) == 0  # fmt: skip
    img = read_image(src)
    x = image_to_tensor(img)[None]
    with torch.no_grad():
        whole = net(x, 2)
    tiled = upscale(net, x, 2, tile=8, overlap=19, memory=ACTIVATION_MEMORY)  # as the command tiles it
    diff = float((tiled - whole).abs().max())
    assert_same_pixels(read_image(out / "img_x2_tiny.png").array, tensor_to_array(whole, 8), diff, 8)


def test_existing_output_kept_unless_overwrite(tmp_path, capsys) -> None:
    src = _make(tmp_path / "a.png", "gray8")
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "a_x2_bicubic.png"
    dest.write_bytes(b"precious")
    assert main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert dest.read_bytes() == b"precious"
    assert main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q", "--overwrite"]) == 0
    assert read_image(dest).height == 36


def test_two_inputs_of_one_name_never_replace_each_others_output(tmp_path, capsys) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _make(tmp_path / "a" / "scan.png", "gray8"), _make(tmp_path / "b" / "scan.png", "rgb8")
    out = tmp_path / "out"
    args = [str(first), str(second), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q"]
    assert main([*args, "--overwrite"]) == 1  # replaces last run's file, not this run's first output
    err = capsys.readouterr().err
    assert "another input of the same name" in err
    assert f"{second} not enlarged" in err and str(first) not in err  # which input failed: the second
    assert read_image(out / "scan_x2_bicubic.png").channels == 1  # the first input's result


def test_module_entry_point(tmp_path) -> None:
    src = _make(tmp_path / "g.tif", "gray16")
    res = subprocess.run(
        [sys.executable, "-m", "mdrn.upscale", str(src), "--scale", "2", "--weights", "bicubic", "-o",
         str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert read_image(tmp_path / "o" / "g_x2_bicubic.tif").array.dtype == np.uint16


def test_pixel_bomb_is_refused_before_decoding(tmp_path, capsys) -> None:
    from medical_data import make_png_bomb

    bomb = make_png_bomb(tmp_path / "bomb.png")
    out = tmp_path / "out"
    assert main([str(bomb), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert (
        len(err) == 1 and "bomb.png" in err[0] and "144.0 megapixels" in err[0] and "--max-pixels" in err[0]
    )
    assert list(out.iterdir()) == []
    src = _make(tmp_path / "g.png", "gray8")  # 18 x 22 = 396 pixels
    assert (
        main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q", "--max-pixels", "300"])
        == 1
    )
    assert (
        main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q", "--max-pixels", "4e2"])
        == 0
    )


@pytest.mark.parametrize("bits", [8, 16])
def test_rgba_keeps_its_alpha_enlarged_with_bicubic(tmp_path, bits) -> None:
    from mdrn.io.images import write_image

    rng = np.random.default_rng(1)
    dtype = np.uint8 if bits == 8 else np.uint16
    rgb = rng.integers(0, 1 << bits, (14, 17, 3)).astype(dtype)
    alpha = rng.integers(0, 1 << bits, (14, 17)).astype(dtype)
    src = write_image(tmp_path / "rgba.png", rgb, bit_depth=bits, alpha=alpha)
    assert main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(tmp_path / "o"), "-q"]) == 0
    got = read_image(tmp_path / "o" / "rgba_x2_bicubic.png")
    expected_alpha = tensor_to_array(upscale(Bicubic(), image_to_tensor(ImageData(alpha, bits)), 2), bits)
    np.testing.assert_array_equal(got.alpha, expected_alpha)
    np.testing.assert_array_equal(got.array, _bicubic_expected(src, 2))


def test_large_images_stream_in_bands_with_the_untiled_result(tmp_path, monkeypatch) -> None:
    import mdrn.clinical.enlarge
    import mdrn.perf

    torch.manual_seed(0)
    net = MDRN(n_resblocks=2, n_feats=8, scales=(2,), n_colors=1).eval()
    weights = save_model(net, tmp_path / "tiny.safetensors")
    src = _make(tmp_path / "img.tif", "gray16")  # 18 rows
    bands = []
    original = mdrn.clinical.enlarge.enlarge_bands

    def counted(*args, **kwargs):
        for band in original(*args, **kwargs):
            bands.append(band.shape)
            yield band

    monkeypatch.setattr(mdrn.clinical.enlarge, "enlarge_bands", counted)
    monkeypatch.setattr(mdrn.clinical.enlarge, "DEFAULT_BAND_VALUES", 22 * 4 * 5)  # 5 input rows per band
    # bounded memory: bands over REUSE_MAX_PIXELS give large buffers back (malloc_reuse never switched on;
    # with it a 36 MP 16-bit image x2 peaked at 2.54 GB, without at 1.58 GB); smaller ones keep them
    monkeypatch.setattr(mdrn.clinical.enlarge, "REUSE_MAX_PIXELS", 22 * 5 - 1)  # under one band here
    switched = []
    real_switch = mdrn.perf.set_malloc_reuse
    monkeypatch.setattr(mdrn.perf, "set_malloc_reuse", lambda on: switched.append(on) or real_switch(on))
    out = tmp_path / "out"
    assert (
        main([str(src), "--scale", "2", "--weights", str(weights), "-o", str(out), "-q", "--overlap", "19"])
        == 0
    )
    assert [shape[0] for shape in bands] == [10, 10, 10, 6]
    assert True not in switched
    monkeypatch.setattr(mdrn.clinical.enlarge, "REUSE_MAX_PIXELS", 18 * 22)  # the whole image: kept
    assert (
        main([str(src), "--scale", "2", "--weights", str(weights), "-o", str(out), "-q", "--overwrite"]) == 0
    )
    assert True in switched and switched[-1] is False  # on for each band, given back after
    x = image_to_tensor(read_image(src))[None]
    with torch.no_grad():
        whole = net(x, 2)
    diffs = []
    for r in range(0, 18, 5):  # the command's bands: 5 rows with 19 rows of context, as upscale runs them
        a0 = max(0, r - 19)
        band = upscale(net, x[..., a0 : r + 5 + 19, :], 2, tile=DEFAULT_TILE, memory=ACTIVATION_MEMORY)
        core = band[..., (r - a0) * 2 : (r - a0 + 5) * 2, :]
        diffs.append(float((core - whole[..., r * 2 : (r + 5) * 2, :]).abs().max()))
    diff = max(diffs)
    assert_same_pixels(read_image(out / "img_x2_tiny.tif").array, tensor_to_array(whole, 16), diff, 16)


def test_output_option_errors_are_one_line(tmp_path, capsys) -> None:
    src = _make(tmp_path / "a.png", "gray8")
    (tmp_path / "file.txt").write_text("x")
    for target, problem in [
        (tmp_path / "file.txt", "-o names a file"),
        (tmp_path / "out.png", "-o takes a folder"),
    ]:
        assert main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(target), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and problem in err[0] and str(target) in err[0]


def test_truncated_checkpoint_is_one_line_with_its_path(tmp_path, capsys) -> None:
    weights = save_model(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), tmp_path / "w.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    src = _make(tmp_path / "a.png", "gray8")
    assert main([str(src), "--scale", "2", "--weights", str(cut), "-o", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cut) in err[0] and "Traceback" not in err[0]


def test_a_pickled_model_is_refused_as_such_in_one_line(tmp_path, capsys) -> None:
    """A whole pickled module (not a state dict) is named and refused: never the advice to load it with
    weights_only=False; a corrupt .pt is one line too."""
    whole = tmp_path / "whole.pt"
    torch.save(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), whole)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04" + bytes(200))
    src = _make(tmp_path / "a.png", "gray8")
    for weights, problem in [
        (whole, "a pickled mdrn.models.mdrn.MDRN"),
        (corrupt, "not a readable PyTorch file"),
    ]:
        assert (
            main([str(src), "--scale", "2", "--weights", str(weights), "-o", str(tmp_path / "o"), "-q"]) == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(weights) in err[0] and problem in err[0], err
        assert "weights_only` set to `False" not in err[0]


@pytest.fixture
def small_disk(tmp_path):
    """A 256 kB tmpfs where it can be mounted (root on Linux), else None."""
    import os

    mount = tmp_path / "disk"
    mount.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        yield None
        return
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    yield None if res.returncode else mount
    if not res.returncode:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_and_unwritable_folder_are_one_line(tmp_path, small_disk, capsys, monkeypatch) -> None:
    """On a real 256 kB tmpfs where it can be mounted; elsewhere the same OS errors are raised on write."""
    import errno
    import tempfile

    import mdrn.io.writers

    rng = np.random.default_rng(0)
    src = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 65536, (300, 300), dtype=np.uint16)).save(src)  # x2: ~700 kB of noise
    out = (small_disk or tmp_path / "disk") / "out"
    if small_disk is None:

        def full(fh, bands, **kwargs):  # noqa: ANN001, ANN003, ANN202
            fh.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(mdrn.io.writers, "write_png", full)
    assert main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == [f"error: {out / 'noise_x2_bicubic.png'}: no space left on device"]
    assert list(out.iterdir()) == []  # no partial or temporary file
    if small_disk is not None:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        reason = "read-only file system"
    else:

        def refused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise PermissionError(errno.EACCES, "Permission denied", str(out / "tmpab12cd"))

        monkeypatch.setattr(tempfile, "TemporaryFile", refused)
        reason = "permission denied"
    assert main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {out}: {reason}"]


def test_the_default_is_the_shipped_model_and_names_say_what_ran(tmp_path, capsys) -> None:
    from mdrn.weights import DEFAULT_MODEL

    src = Path(get_testdata_file("MR_small.dcm"))
    out = tmp_path / "out"
    assert main([str(src), "--scale", "2", "-o", str(out), "-q"]) == 0
    assert f"x2 by the super-resolution network {DEFAULT_MODEL} (MDRN" in capsys.readouterr().out
    model = pydicom.dcmread(out / f"MR_small_x2_{DEFAULT_MODEL}.dcm")
    assert DEFAULT_MODEL in model.DerivationDescription and DEFAULT_MODEL in model.SeriesDescription
    # bicubic writes beside the model's result, never over it, and says it used no network
    assert main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q"]) == 0
    bicubic = pydicom.dcmread(out / "MR_small_x2_bicubic.dcm")
    assert "bicubic interpolation (no network)" in bicubic.DerivationDescription
    assert model.SeriesInstanceUID != bicubic.SeriesInstanceUID
    assert not np.array_equal(model.pixel_array, bicubic.pixel_array)


def _icc(space: bytes) -> bytes:
    """An ICC profile of colour space ``space`` (Pillow's sRGB, the header's space changed for others)."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return srgb[:16] + space + srgb[20:]


def _profile_of(path: Path) -> bytes | None:
    """The ICC profile of a PNG or TIFF as Pillow or tifffile (not mdrn) reads it."""
    if path.suffix == ".tif":
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].iccprofile
    with Image.open(path) as im:
        return im.info.get("icc_profile")


@pytest.mark.parametrize(
    ("name", "kind", "out"),
    [
        ("rgb.png", "rgb8", "rgb_x2_bicubic.png"),
        ("rgba.png", "rgba8", "rgba_x2_bicubic.png"),
        ("rgb16.png", "rgb16", "rgb16_x2_bicubic.png"),
        ("photo.jpg", "rgb8", "photo_x2_bicubic.png"),
        ("rgb.tif", "rgb8", "rgb_x2_bicubic.tif"),
        ("rgb16.tif", "rgb16", "rgb16_x2_bicubic.tif"),
        ("gray.png", "gray8", "gray_x2_bicubic.png"),
        ("gray16.tif", "gray16", "gray16_x2_bicubic.tif"),
    ],
)
def test_the_icc_colour_profile_goes_to_the_output(tmp_path, name, kind, out) -> None:
    # a dermoscopy photo in Display P3 shown in other colours once enlarged: the profile was dropped
    rng = np.random.default_rng(2)
    gray = kind.startswith("gray")
    profile = _icc(b"GRAY" if gray else b"RGB ")
    shape = (12, 15) if gray else (12, 15, 4 if kind == "rgba8" else 3)
    bits = 16 if kind.endswith("16") else 8
    pixels = rng.integers(0, 1 << bits, shape).astype(np.uint16 if bits == 16 else np.uint8)
    src = tmp_path / name
    if src.suffix == ".tif":
        tifffile.imwrite(src, pixels, iccprofile=profile, photometric="minisblack" if gray else "rgb")
    elif bits == 16:
        from mdrn.io.images import write_image

        write_image(src, pixels, bit_depth=16, icc_profile=profile)
    else:
        Image.fromarray(pixels).save(src, icc_profile=profile)
    assert _profile_of(src) == profile
    assert main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(tmp_path / "o"), "-q"]) == 0
    dest = tmp_path / "o" / out
    assert _profile_of(dest) == profile
    assert read_image(dest).meta["icc_profile"] == profile


@pytest.mark.parametrize("fmt", ["png", "tiff", "dcm"])
def test_a_dicom_icc_profile_goes_to_the_output(tmp_path, fmt) -> None:
    # an RGB DICOM (dermoscopy, photography: VL) with ICC Profile (0028,2000): PNG/TIFF outputs had none
    profile = _icc(b"RGB ")
    ds = pydicom.dcmread(get_testdata_file("SC_rgb.dcm"))
    ds.ICCProfile = profile
    ds.save_as(tmp_path / "photo.dcm")
    args = ["--scale", "2", "--weights", "bicubic", "--format", fmt, "-o", str(tmp_path / "o"), "-q"]
    assert main([str(tmp_path / "photo.dcm"), *args]) == 0
    (dest,) = (tmp_path / "o").iterdir()
    if fmt == "dcm":
        assert pydicom.dcmread(dest).ICCProfile == profile  # the derived DICOM keeps its copy
    else:
        assert _profile_of(dest) == profile
    assert read_image(dest).meta["icc_profile"] == profile


def test_a_profile_of_another_colour_space_is_not_copied(tmp_path) -> None:
    # a CMYK JPEG's pixels become RGB: its CMYK profile would misdescribe them; an RGB profile on gray too
    cmyk = np.random.default_rng(3).integers(0, 256, (10, 12, 4), dtype=np.uint8)
    Image.frombytes("CMYK", (12, 10), cmyk.tobytes()).save(tmp_path / "print.jpg", icc_profile=_icc(b"CMYK"))
    Image.fromarray(cmyk[..., 0]).save(tmp_path / "gray.png", icc_profile=_icc(b"RGB "))
    assert main([str(tmp_path / "print.jpg"), str(tmp_path / "gray.png"), "--scale", "2", "--weights",
                 "bicubic", "-o", str(tmp_path / "o"), "-q"]) == 0  # fmt: skip
    for out in ("print_x2_bicubic.png", "gray_x2_bicubic.png"):
        assert _profile_of(tmp_path / "o" / out) is None


def test_an_input_named_twice_is_enlarged_once(tmp_path, capsys) -> None:
    # overlapping wildcards (scans/*.png scans/a*.png): the second copy failed as "another input of the
    # same name" and the run exited 1 although every image was enlarged
    src = _make(tmp_path / "a.png", "rgb8")
    other = tmp_path / "sub" / ".." / "a.png"
    (tmp_path / "sub").mkdir()
    out = tmp_path / "o"
    assert main([str(src), str(other), str(tmp_path), "--scale", "2", "--weights", "bicubic", "-o", str(out),
                 "-q"]) == 0  # fmt: skip
    assert capsys.readouterr().err == ""
    assert (out / "a_x2_bicubic.png").is_file()
    assert (out / f"{tmp_path.name}_x2_bicubic" / "a_x2_bicubic.png").is_file()  # a folder is another job


def test_a_batch_of_images_is_decoded_one_at_a_time(tmp_path, monkeypatch) -> None:
    # sizing the job (for the backend's choice) decoded every image of a batch up front, and each stack kept
    # its pixels to the end of the run: a folder of 200 photos of 24 MP held 14 GB before the first was done
    import gc
    import weakref

    import mdrn.clinical.inputs
    import mdrn.upscale

    for name in ("a.png", "b.tif", "c.jpg"):
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (18, 22, 3), dtype=np.uint8)).save(
            tmp_path / name
        )
    decoded: list[weakref.ref] = []
    real_read, real_enlarge = mdrn.clinical.inputs.read_image, mdrn.upscale.enlarge_stack
    alive_at_start: list[int] = []

    def read(*args, **kwargs):
        image = real_read(*args, **kwargs)
        decoded.append(weakref.ref(image.array))
        return image

    def enlarge(*args, **kwargs):
        gc.collect()
        alive_at_start.append(sum(ref() is not None for ref in decoded))
        return real_enlarge(*args, **kwargs)

    monkeypatch.setattr(mdrn.clinical.inputs, "read_image", read)
    monkeypatch.setattr(mdrn.upscale, "enlarge_stack", enlarge)
    assert main([str(tmp_path), "--scale", "2", "--weights", "bicubic", "-o", str(tmp_path / "o"), "-q"]) == 0
    assert alive_at_start == [0, 0, 0] and len(decoded) == 3  # each decoded in its turn, once, then let go
    from mdrn.clinical.inputs import job_pixels, open_inputs

    assert job_pixels(open_inputs(tmp_path)) == 3 * 18 * 22


def test_ctrl_c_stops_with_one_line_and_no_partial_file(tmp_path, monkeypatch, capsys) -> None:
    # Ctrl-C printed a Python traceback; the outputs already written stay, the one in progress is not left
    import mdrn.upscale

    first, second = _make(tmp_path / "a.png", "rgb8"), _make(tmp_path / "b.png", "rgb8")
    real = mdrn.upscale.enlarge_stack

    def interrupted(net, stack, *args, **kwargs):
        if stack.path.name == "b.png":
            import mdrn.clinical.enlarge

            def bands(*_args, **_kwargs):
                yield np.zeros((2, 44, 3), np.uint8)
                raise KeyboardInterrupt

            monkeypatch.setattr(mdrn.clinical.enlarge, "enlarge_bands", bands)
        return real(net, stack, *args, **kwargs)

    monkeypatch.setattr(mdrn.upscale, "enlarge_stack", interrupted)
    out = tmp_path / "o"
    assert (
        main([str(first), str(second), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q"]) == 130
    )
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a_x2_bicubic.png"]  # b's temporary file is gone


def test_the_current_folder_as_input_names_its_output_folder(tmp_path, monkeypatch) -> None:
    # `mdrn-upscale . -o ../out` wrote into ../out/_x2_bicubic/ (the name of "." is empty)
    scans = tmp_path / "scans"
    scans.mkdir()
    _make(scans / "a.png", "gray8")
    monkeypatch.chdir(scans)
    assert main([".", "--scale", "2", "--weights", "bicubic", "-o", "../out", "-q"]) == 0
    assert (tmp_path / "out" / "scans_x2_bicubic" / "a_x2_bicubic.png").is_file()


def test_readers_notes_on_damaged_files_are_not_printed_only_one_line_per_input(tmp_path) -> None:
    """tifffile's and nibabel's log lines and pydicom's warnings (two lines each, with the library's
    source path) came before or instead of mdrn's one line (a process of its own: pytest would catch them)."""
    import nibabel as nib

    tifffile.imwrite(tmp_path / "cut.tif", np.zeros((24, 20), np.uint8), description="x" * 40)
    (tmp_path / "cut.tif").write_bytes((tmp_path / "cut.tif").read_bytes()[:200])  # tags point past the end
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.int16), np.eye(4)), tmp_path / "v.nii")
    data = bytearray((tmp_path / "v.nii").read_bytes())
    data[0:4] = np.int32(0).tobytes()  # sizeof_hdr 0: nibabel fixes it and logs a line
    (tmp_path / "v.nii").write_bytes(bytes(data))
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.NumberOfFrames = 0  # pydicom warns, assumes 1 frame
    ds.save_as(tmp_path / "ct.dcm")
    inputs = [str(tmp_path / n) for n in ("cut.tif", "v.nii", "ct.dcm")]
    cmd = [sys.executable, "-m", "mdrn.upscale", *inputs, "--scale", "2", "--weights", "bicubic", "-q"]
    res = subprocess.run([*cmd, "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr
    err = res.stderr.splitlines()
    assert len(err) == 2 and "cut.tif" in err[0] and err[1] == "1 input(s) failed", err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ct_x2_bicubic.dcm", "v_x2_bicubic.nii"]
