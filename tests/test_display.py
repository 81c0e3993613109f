"""Window/level display of 12-16 bit images and MONOCHROME1 inversion; the stored data never changes."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from mdrn.clinical.display import Window, auto_window, display_array, display_image
from mdrn.io.images import read_image


def test_dicom_window_is_used_and_data_untouched() -> None:
    img = read_image(get_testdata_file("MR_small.dcm"))  # WindowCenter 600, WindowWidth 1600, signed
    before = img.array.copy()
    shown = display_image(img)
    np.testing.assert_array_equal(img.array, before)
    assert shown.dtype == np.uint8 and shown.shape == img.array.shape
    assert auto_window(img.array, bit_depth=img.bit_depth, dicom=img.dicom) == Window(600.0, 1600.0)
    raw = img.array.astype(np.float64) - img.signed_offset  # stored values (signed)
    lo, hi = 600 - 0.5 - 1599 / 2, 600 - 0.5 + 1599 / 2
    assert np.all(shown[raw <= lo] == 0) and np.all(shown[raw > hi] == 255)
    inside = (raw > lo + 2) & (raw < hi - 2)
    assert inside.any()
    expected = np.rint(((raw - 599.5) / 1599 + 0.5) * 255)
    np.testing.assert_array_equal(shown[inside], expected[inside])


def test_percentile_window_for_16_bit_without_tags() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(1000, 3000, (64, 64), dtype=np.uint16)  # a 12-bit-like range in 16 bits
    before = arr.copy()
    shown = display_array(arr, bit_depth=16)
    np.testing.assert_array_equal(arr, before)
    # stretched to the screen range (raw values / 257 would give 4..11 only)
    assert shown.min() == 0 and shown.max() == 255
    assert abs(np.percentile(shown, 50) - 127) < 8


def test_8_bit_unchanged_and_monochrome1_inverted() -> None:
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(display_array(arr, bit_depth=8), arr)
    inv = display_array(arr, bit_depth=8, photometric="MONOCHROME1")
    np.testing.assert_array_equal(inv, 255 - arr)
    np.testing.assert_array_equal(arr, np.arange(256, dtype=np.uint8).reshape(16, 16))


def test_monochrome1_radiograph() -> None:
    path = get_testdata_file("RG3_UNCR.dcm")
    if path is None:
        pytest.skip("pydicom-data (RG3_UNCR.dcm, a MONOCHROME1 radiograph) is not installed")
    img = read_image(path)
    assert img.photometric == "MONOCHROME1"
    before = img.array.copy()
    shown = display_image(img)
    np.testing.assert_array_equal(img.array, before)
    plain = display_array(img.array, bit_depth=img.bit_depth, dicom=img.dicom)  # not inverted
    np.testing.assert_array_equal(shown, 255 - plain)
