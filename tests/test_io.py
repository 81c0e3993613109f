"""Image files in and out: formats, bit depths, DICOM tags, bad input, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mdrn.io.dicom import Derivation
from mdrn.io.images import ImageReadError, image_to_tensor, read_image, tensor_to_array, write_image

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("suffix", "shape", "dtype", "bits"),
    [
        (".png", (17, 23), np.uint8, 8),
        (".png", (17, 23, 3), np.uint8, 8),
        (".png", (17, 23), np.uint16, 16),
        (".png", (17, 23, 3), np.uint16, 16),
        (".png", (17, 23), np.uint16, 12),
        (".png", (17, 23, 3), np.uint16, 12),
        (".tif", (17, 23), np.uint16, 16),
        (".tif", (17, 23, 3), np.uint16, 16),
        (".tif", (17, 23, 3), np.uint8, 8),
    ],
)
def test_round_trip_keeps_pixels_channels_and_bit_depth(tmp_path: Path, suffix, shape, dtype, bits) -> None:
    array = RNG.integers(0, 1 << bits, size=shape).astype(dtype)
    path = write_image(tmp_path / f"img{suffix}", array, bit_depth=bits)
    image = read_image(path)
    assert image.array.dtype == dtype
    assert image.bit_depth == bits
    np.testing.assert_array_equal(image.array, array)
    assert image.channels == (1 if len(shape) == 2 else 3)


@pytest.mark.parametrize("shape", [(17, 23), (17, 23, 3)])
def test_png_of_fewer_significant_bits_scaled_as_the_standard_says(tmp_path: Path, shape) -> None:
    import png

    # pypng (as libpng) stores 12-bit samples scaled up to 16 bits, with an sBIT chunk of 12
    array = RNG.integers(0, 1 << 12, size=shape).astype(np.uint16)
    array.flat[0] = 4095
    path = tmp_path / "twelve.png"
    with path.open("wb") as fh:
        png.Writer(shape[1], shape[0], greyscale=len(shape) == 2, bitdepth=12).write(
            fh, array.reshape(shape[0], -1).tolist()
        )
    image = read_image(path)
    assert image.bit_depth == 12
    np.testing.assert_array_equal(image.array, array)


def test_tiff_pages_and_photometric_interpretations(tmp_path: Path) -> None:
    import tifffile
    from PIL import Image

    gray = RNG.integers(0, 256, (12, 20)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "pages.tif", np.stack([gray, gray]))  # two pages, not gray + alpha
    with pytest.raises(ImageReadError, match="pages.tif: multi-page TIFF"):
        read_image(tmp_path / "pages.tif")
    tifffile.imwrite(tmp_path / "white.tif", gray, photometric="miniswhite")  # 0 is white
    white = read_image(tmp_path / "white.tif")
    np.testing.assert_array_equal(white.array, 255 - gray)
    rgb = np.dstack([gray, 255 - gray, gray // 2])
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.tif")
    got = read_image(tmp_path / "palette.tif")  # colours, not the palette's indices
    np.testing.assert_array_equal(got.array, np.asarray(palette.convert("RGB")))
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    got = read_image(tmp_path / "cmyk.tif")  # RGB, not C, M, Y as RGB and K as alpha
    assert got.alpha is None and got.meta["format"] == "TIFF"
    np.testing.assert_array_equal(got.array, np.asarray(Image.open(tmp_path / "cmyk.tif").convert("RGB")))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_show_the_image(tmp_path: Path, orientation: int) -> None:
    import tifffile
    from PIL import Image, ImageOps

    rgb = RNG.integers(0, 256, (6, 10, 3)).astype(np.uint8)  # a phone's photo: stored sideways, tagged
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "photo.png", exif=exif)
    tifffile.imwrite(tmp_path / "photo.tif", rgb, extratags=[(0x0112, 3, 1, orientation, True)])
    for name in ("photo.png", "photo.tif"):
        with Image.open(tmp_path / name) as im:
            upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        np.testing.assert_array_equal(read_image(tmp_path / name).array, upright)


def test_tensor_conversion_uses_the_n_bit_peak(tmp_path: Path) -> None:
    array = np.array([[0, 4095], [2048, 1]], dtype=np.uint16)
    path = write_image(tmp_path / "a.png", array, bit_depth=12)
    image = read_image(path)
    tensor = image_to_tensor(image, torch.float64)
    assert tensor.shape == (1, 2, 2)
    assert tensor.max().item() == 1.0
    assert tensor[0, 1, 0].item() == pytest.approx(2048 / 4095)
    np.testing.assert_array_equal(tensor_to_array(tensor, 12), array)


def test_png_sbit_scaled_values_are_shifted(tmp_path: Path) -> None:
    # a 12-bit PNG written the PNG standard's way (sBIT 12, values scaled to the 16-bit range, as libpng's
    # png_set_shift writes them) reads as its 12-bit values; before, 65520 stayed with a 4095 peak (16.0)
    import struct
    import zlib

    import png

    array = np.array([[0, 4095], [2048, 1]], dtype=np.uint16)
    path = tmp_path / "shifted.png"
    with path.open("wb") as fh:
        png.Writer(2, 2, greyscale=True, bitdepth=16).write(fh, (array << 4).tolist())
    data, chunk = path.read_bytes(), b"sBIT" + bytes([12])
    sbit = struct.pack(">I", 1) + chunk + struct.pack(">I", zlib.crc32(chunk))
    at = data.index(b"IDAT") - 4
    path.write_bytes(data[:at] + sbit + data[at:])
    image = read_image(path)
    assert image.bit_depth == 12
    np.testing.assert_array_equal(image.array, array)


def test_dicom_round_trip_keeps_tags_and_divides_spacing(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    src = Path(get_testdata_file("CT_small.dcm"))
    image = read_image(src)
    assert image.dicom is not None and image.signed_offset == 1 << 15
    assert image.array.dtype == np.uint16
    up = np.repeat(np.repeat(image.array, 2, axis=0), 2, axis=1)
    how = Derivation(2, "pixel repetition", "nearest")
    out = write_image(tmp_path / "ct_x2.dcm", up, bit_depth=image.bit_depth, reference=image, derivation=how)
    ds = pydicom.dcmread(out)
    ref = pydicom.dcmread(src)
    assert (ds.Rows, ds.Columns) == (2 * ref.Rows, 2 * ref.Columns)
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([float(v) / 2 for v in ref.PixelSpacing])
    assert ds.SOPInstanceUID != ref.SOPInstanceUID
    assert ds.PatientName == ref.PatientName and ds.StudyInstanceUID == ref.StudyInstanceUID
    np.testing.assert_array_equal(ds.pixel_array[::2, ::2], ref.pixel_array)
    again = read_image(out)
    np.testing.assert_array_equal(again.array, up)


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8), bit_depth=8)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="a.png"):
        write_image(path, np.full((4, 4), 255, np.uint8), bit_depth=8)
    assert path.read_bytes() == before
    write_image(path, np.full((4, 4), 255, np.uint8), bit_depth=8, overwrite=True)
    assert read_image(path).array.min() == 255


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    mask = os.umask(0o022)
    try:
        path = write_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8), bit_depth=8)
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint16"):
        write_image(tmp_path / "bad.png", np.zeros((4, 4), np.uint8), bit_depth=16)
    with pytest.raises(ValueError, match="DICOM"):
        write_image(tmp_path / "bad.dcm", np.zeros((4, 4), np.uint8), bit_depth=8)
    assert list(tmp_path.iterdir()) == []


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_png(tmp_path: Path) -> Path:
    full = write_image(tmp_path / "full.png", RNG.integers(0, 255, (64, 64, 3)).astype(np.uint8), bit_depth=8)
    bad = tmp_path / "truncated.png"
    bad.write_bytes(full.read_bytes()[:300])
    return bad


def _no_pixels_dicom(tmp_path: Path) -> Path:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", "not found"),
        (lambda d: _write(d / "empty.png", b""), "empty"),
        (lambda d: _write(d / "notes.png", b"hello, not an image"), "not a recognised"),
        (_truncated_png, "truncated"),
        (_no_pixels_dicom, "no pixel data"),
    ],
)
def test_bad_input_gives_one_clear_error_naming_the_file(tmp_path: Path, make, message) -> None:
    path = make(tmp_path)
    with pytest.raises(ImageReadError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_pixel_limit_is_checked_from_the_header(tmp_path: Path) -> None:
    from medical_data import make_png_bomb

    bomb = make_png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageReadError, match=r"12000x12000 pixels \(144.0 megapixels\) exceed the limit"):
        read_image(bomb)
    small = write_image(tmp_path / "small.tif", np.zeros((100, 120), np.uint16), bit_depth=16)
    with pytest.raises(ImageReadError, match="small.tif"):
        read_image(small, max_pixels=10_000)
    assert read_image(small, max_pixels=12_000).array.shape == (100, 120)
    # a JPEG declaring 60000x60000 (3.6 gigapixels: past twice Pillow's own bomb limit) gets the same line
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "huge.jpg")
    data = bytearray((tmp_path / "huge.jpg").read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2  # the frame header's height and width
    (tmp_path / "huge.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"huge.jpg: 60000x60000 pixels \(3600.0 megapixels\) exceed"):
        read_image(tmp_path / "huge.jpg")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_truncated_files_are_errors_not_partial_images(tmp_path: Path, suffix) -> None:
    rgb16 = RNG.integers(0, 65536, (64, 80, 3)).astype(np.uint16)
    full = write_image(tmp_path / f"full{suffix}", rgb16, bit_depth=16)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    with pytest.raises(ImageReadError, match="cut"):
        read_image(cut)


@pytest.mark.parametrize(
    ("channels", "dtype", "bits"), [(3, np.uint8, 8), (1, np.uint8, 8), (3, np.uint16, 16)]
)
def test_alpha_is_read_and_written(tmp_path: Path, channels, dtype, bits) -> None:
    shape = (9, 11) if channels == 1 else (9, 11, 3)
    array = RNG.integers(0, 1 << bits, shape).astype(dtype)
    alpha = RNG.integers(0, 1 << bits, (9, 11)).astype(dtype)
    for suffix in (".png", ".tif"):
        path = write_image(tmp_path / f"a{channels}{bits}{suffix}", array, bit_depth=bits, alpha=alpha)
        back = read_image(path)
        np.testing.assert_array_equal(back.array, array)
        np.testing.assert_array_equal(back.alpha, alpha)


def test_write_errors_name_the_folder_not_a_temporary_file(tmp_path: Path) -> None:
    import errno

    from mdrn.io.images import os_error

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(OSError, match="afile") as info:
        write_image(blocker / "out.png", np.zeros((4, 4), np.uint8), bit_depth=8)
    assert ".part" not in str(info.value)
    err = os_error(OSError(errno.ENOSPC, "No space left on device", "/x/.a.123.png.part"), tmp_path / "a.png")
    assert str(err) == f"{tmp_path / 'a.png'}: no space left on device" and err.errno == errno.ENOSPC


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_tensor_to_array_gives_the_protocols_grey_levels(bits: int) -> None:
    # one float64 pass, the same whole numbers as quantize (the metrics' rule) times the peak
    from mdrn.protocol.metrics import quantize

    peak = (1 << bits) - 1
    g = torch.Generator().manual_seed(bits)
    x = torch.rand(3, 64, 80, generator=g) * 1.2 - 0.1
    halves = (torch.arange(0, 64 * 80, dtype=torch.float64) % peak + 0.5) / peak  # exact half levels
    x[0] = halves.reshape(64, 80).float()
    expected = torch.round(quantize(x.double(), bits) * peak).numpy().astype(np.uint16).transpose(1, 2, 0)
    np.testing.assert_array_equal(tensor_to_array(x, bits).astype(np.uint16), expected)


def test_a_tiff_missing_tiles_is_refused_not_filled_with_zeros(tmp_path: Path) -> None:
    """ImageLength doubled by damage: tifffile read the 9 stored tiles of 18 and zeros for the others."""
    import tifffile

    tifffile.imwrite(tmp_path / "t.tif", np.full((48, 40), 1000, np.uint16), tile=(16, 16))
    with tifffile.TiffFile(tmp_path / "t.tif", mode="r+") as tif:
        tif.pages[0].tags["ImageLength"].overwrite(96)
    with pytest.raises(ImageReadError, match=r"t.tif: truncated or damaged TIFF: 9 of its 18 tiles stored"):
        read_image(tmp_path / "t.tif")


def test_tiff_outputs_past_4_gib_are_bigtiff(tmp_path: Path, monkeypatch) -> None:
    # tifffile picks BigTIFF from the data's size, which bands do not tell: a 9 GB RGB output failed at 4 GiB
    import tifffile

    from mdrn.io import writers

    monkeypatch.setattr(writers, "BIGTIFF_BYTES", 9 * 11 * 3 * 2 - 1)  # a small image stands for a huge one
    array = RNG.integers(0, 1 << 16, (9, 11, 3)).astype(np.uint16)
    big = write_image(tmp_path / "big.tif", array, bit_depth=16)
    small = write_image(tmp_path / "small.tif", array[..., 0], bit_depth=16)
    with tifffile.TiffFile(big) as a, tifffile.TiffFile(small) as b:
        assert a.is_bigtiff and not b.is_bigtiff
    np.testing.assert_array_equal(read_image(big).array, array)


def test_a_png_transparent_colour_is_read_as_alpha(tmp_path: Path) -> None:
    # gray and RGB PNGs mark transparency by one key colour (tRNS): it was dropped, the output opaque
    from PIL import Image

    gray = RNG.integers(0, 256, (6, 7)).astype(np.uint8)
    gray[2, 3] = 77
    rgb = np.dstack([gray, gray, gray])
    Image.fromarray(gray).save(tmp_path / "gray.png", transparency=77)
    Image.fromarray(rgb).save(tmp_path / "rgb.png", transparency=(77, 77, 77))
    for name, pixels in (("gray.png", gray), ("rgb.png", rgb)):
        image = read_image(tmp_path / name)
        np.testing.assert_array_equal(image.array, pixels)
        np.testing.assert_array_equal(image.alpha, np.where(gray == 77, 0, 255).astype(np.uint8))


def test_a_png_colour_profile_that_inflates_past_64_mib_is_not_kept(tmp_path: Path) -> None:
    # an iCCP chunk of 100 kB inflating to 100 MB was inflated whole into memory (ICC profiles are kB-MB)
    import struct
    import zlib

    from PIL import ImageCms

    path = write_image(tmp_path / "a.png", np.zeros((4, 5, 3), np.uint16), bit_depth=16)  # read by pypng
    data = path.read_bytes()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    bomb = b"x\0\0" + zlib.compress(srgb + b"\0" * (1 << 26), 9)  # an RGB profile's header, 64 MiB more
    chunk = struct.pack(">I", len(bomb)) + b"iCCP" + bomb + struct.pack(">I", zlib.crc32(b"iCCP" + bomb))
    path.write_bytes(data[:33] + chunk + data[33:])  # after the signature and IHDR
    image = read_image(path)
    assert "icc_profile" not in image.meta and image.array.shape == (4, 5, 3)


def test_a_16_bit_colour_png_is_read_without_leaving_its_file_open(tmp_path):
    """pypng's own file object was left to the garbage collector (a ResourceWarning per 16-bit RGB PNG)."""
    import gc
    import warnings

    path = tmp_path / "rgb16.png"
    write_image(path, np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000, bit_depth=16)
    gc.collect()  # what earlier tests left is not this test's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(path)
        gc.collect()
    assert image.bit_depth == 16 and image.array.shape == (4, 5, 3)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning) and path.name in str(w.message)]


def test_a_12_bit_image_saved_as_tiff_reads_back_as_12_bit(tmp_path: Path) -> None:
    """Tag MaxSampleValue (281) keeps the bit depth (it read back as 16-bit: peak 65535, not 4095)."""
    import tifffile

    gray = np.array([[0, 4095], [2048, 1]], dtype=np.uint16)
    rgb = np.stack([gray, gray // 2, gray // 3], axis=-1)
    for name, array in (("gray.tif", gray), ("rgb.tif", rgb)):
        image = read_image(write_image(tmp_path / name, array, bit_depth=12))
        assert image.bit_depth == 12, name
        np.testing.assert_array_equal(image.array, array)
    with tifffile.TiffFile(tmp_path / "gray.tif") as tif:  # what other readers see: the baseline tag
        assert tif.pages[0].tags[281].value == 4095
    assert read_image(write_image(tmp_path / "sixteen.tif", gray * 16, bit_depth=16)).bit_depth == 16
    # another writer's tag that the values break is not believed
    tifffile.imwrite(tmp_path / "odd.tif", gray * 16, extratags=[(281, "H", 1, 4095, True)])
    assert read_image(tmp_path / "odd.tif").bit_depth == 16


def test_a_tiff_of_more_samples_than_rgba_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    """A claim of 1000 samples per pixel made tifffile ask for 1000x the memory (93 GiB for 10000^2)."""
    import tifffile

    tifffile.imwrite(
        tmp_path / "five.tif", np.zeros((8, 8, 5), np.uint8), photometric="minisblack", planarconfig="contig"
    )

    def decoded(*args, **kwargs):
        raise AssertionError("decoded before the samples were checked")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", decoded)
    with pytest.raises(ImageReadError, match=r"five.tif: TIFF of 5 samples per pixel is not supported"):
        read_image(tmp_path / "five.tif")
