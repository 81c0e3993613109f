"""mdrn.protocol.resize: MATLAB bicubic against BasicSR's reference data, shapes, batching, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import SHARED, shared_path
from protocol_data import MAX_OFF_BY_ONE, record_name, resize_check

from mdrn.protocol.resize import cubic, degrade, imresize, modcrop, resize_weights


def _record_ids() -> list[str]:
    path = SHARED / "reference" / "protocol" / "reference.json"
    if not path.exists():
        return ["reference-data-missing"]
    return [record_name(r) for r in json.loads(path.read_text())]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", _record_ids())
def test_reproduces_reference_lr_and_sr(name: str, dtype: torch.dtype) -> None:
    protocol = shared_path("reference", "protocol")
    rec = next(r for r in json.loads((protocol / "reference.json").read_text()) if record_name(r) == name)
    result = resize_check(protocol, rec, dtype)
    for kind, (fraction, largest) in result.items():
        assert largest <= 1, f"{name} {kind}: a uint8 value is off by {largest}"
        assert fraction <= MAX_OFF_BY_ONE, f"{name} {kind}: {fraction:.4%} of values off by one"


def test_all_reference_records_present() -> None:
    protocol = shared_path("reference", "protocol")
    recs = json.loads((protocol / "reference.json").read_text())
    assert len(recs) == 18
    assert {r["channels"] for r in recs} == {1, 3}


def test_weights_match_hand_computed_matlab_contributions() -> None:
    # x2 upscale of a length-4 signal: u = 0.75 for the first output, taps at 1-based -1, 0, 1, 2,
    # mirrored to 0-based 1, 0, 0, 1 (symmetric padding); Keys weights at 1.75, 0.75, 0.25, 1.25.
    idx, w = resize_weights(4, 8, 2.0, True)
    assert idx.shape[1] == 4
    np.testing.assert_array_equal(idx[0], [1, 0, 0, 1])
    np.testing.assert_allclose(w[0], [-0.0234375, 0.2265625, 0.8671875, -0.0703125], atol=1e-15)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    # downscale x1/2 with antialiasing: kernel 0.5 cubic(0.5 t), width 8 -> 10 taps, of which the
    # first and last (at |t| = 4.5) are zero for every output and dropped, as MATLAB does
    idx, w = resize_weights(20, 10, 0.5, True)
    u = 5 / 0.5 + 0.5 * (1 - 2)  # output 5 (1-based): u = 9.5
    taps = np.floor(u - 4) + np.arange(10)
    expected = 0.5 * cubic(0.5 * (u - taps))
    assert expected[0] == 0 and expected[-1] == 0 and w.shape == (10, 8)
    np.testing.assert_allclose(w[4], expected[1:-1] / expected.sum(), atol=1e-15)
    np.testing.assert_array_equal(idx[4], (taps[1:-1] - 1).astype(int))
    # without antialiasing the plain kernel (4 taps) is used
    _, w_plain = resize_weights(20, 10, 0.5, False)
    assert w_plain.shape[1] == 4


def test_cubic_kernel_values() -> None:
    t = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5])
    np.testing.assert_allclose(cubic(t), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625])


@pytest.mark.parametrize(
    "shape, scale, expected",
    [
        ((10, 7), 0.3, (3, 3)),  # ceil(3.0), ceil(2.1)
        ((10, 7), 1.5, (15, 11)),  # ceil(10.5)
        ((9, 13), 1 / 3, (3, 5)),
        ((8, 8), 2, (16, 16)),
        ((5, 6), (2, 0.5), (10, 3)),
    ],
)
def test_output_size_is_ceil(shape, scale, expected) -> None:
    assert imresize(torch.rand(*shape), scale).shape == expected


def test_size_argument_and_both() -> None:
    x = torch.rand(2, 1, 12, 18)
    assert imresize(x, size=(5, 7)).shape == (2, 1, 5, 7)
    # both: size for the output, scale for the kernel (what degrade uses)
    torch.testing.assert_close(imresize(x, 1 / 3, size=(4, 6)), imresize(x, 1 / 3))


def test_batched_equals_per_image() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 2, 3, 17, 23, dtype=torch.float64)
    for scale in (0.37, 1 / 3, 1.7, 4):
        batched = imresize(x, scale)
        single = torch.stack([torch.stack([imresize(img, scale) for img in group]) for group in x])
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-14)


@pytest.mark.parametrize("scale", [0.37, 0.5, 0.61, 1.0, 1.7, 2.5, 3])
def test_non_integer_factors_keep_constants_and_range_unclamped(scale: float) -> None:
    x = torch.full((1, 1, 21, 16), 0.3, dtype=torch.float64)
    y = imresize(x, scale)
    assert y.shape[-2:] == (math.ceil(21 * scale), math.ceil(16 * scale))
    torch.testing.assert_close(y, torch.full_like(y, 0.3), rtol=0, atol=1e-12)
    # a step overshoots (Keys kernel has negative lobes): neither rounded nor clamped
    step = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    step[..., 8:] = 1.0
    up = imresize(step, 2.0)
    assert up.min() < 0 and up.max() > 1


def test_float32_close_to_float64_and_dtype_kept() -> None:
    x = torch.rand(1, 3, 30, 40, dtype=torch.float64)
    y64 = imresize(x, 0.5)
    y32 = imresize(x.float(), 0.5)
    assert y32.dtype == torch.float32 and y64.dtype == torch.float64
    torch.testing.assert_close(y32.double(), y64, rtol=0, atol=1e-6)


def test_dimension_order_does_not_change_result() -> None:
    # MATLAB resizes the dimension with the smaller scale first; the result is the same up to rounding
    x = torch.rand(1, 1, 20, 30, dtype=torch.float64)
    both = imresize(x, (0.5, 2.0))
    rows_then_cols = imresize(imresize(x, (0.5, 1.0)), (1.0, 2.0))
    torch.testing.assert_close(both, rows_then_cols, rtol=0, atol=1e-13)


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="floating"):
        imresize(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match="scale or a size"):
        imresize(torch.rand(8, 8))
    with pytest.raises(ValueError, match="positive"):
        imresize(torch.rand(8, 8), -2)
    with pytest.raises(ValueError, match="shape"):
        imresize(torch.rand(8), 2)


def test_modcrop_tensor_and_numpy() -> None:
    t = torch.rand(2, 3, 10, 11)
    assert modcrop(t, 3).shape == (2, 3, 9, 9)
    assert torch.equal(modcrop(t, 3), t[..., :9, :9])
    a = np.zeros((10, 11, 3), dtype=np.uint8)
    assert modcrop(a, 4).shape == (8, 8, 3)
    assert modcrop(np.zeros((10, 11)), 2).shape == (10, 10)
    with pytest.raises(ValueError, match="smaller than the scale"):
        modcrop(torch.rand(1, 1, 3, 8), 4)
    with pytest.raises(TypeError):
        modcrop([[1, 2]], 2)


def test_degrade_is_modcrop_then_imresize() -> None:
    hr = torch.rand(1, 3, 26, 31, dtype=torch.float64)
    lr = degrade(hr, 3)
    assert lr.shape == (1, 3, 8, 10)
    torch.testing.assert_close(lr, imresize(hr[..., :24, :30], 1 / 3), rtol=0, atol=0)


@pytest.mark.parametrize("scale", [2, 3, 4, 1 / 2, 1 / 3, 1 / 4, 40 / 17])
def test_traced_weights_are_the_numpy_weights(scale: float) -> None:
    # the weights an exported graph computes from the image size: the same float64 numbers, the same
    # indices (its all-zero taps are kept: they add exact zeros)
    from mdrn.protocol.resize import _traced_weights

    for n in (1, 2, 3, 17, 64, 511, 1000):
        out = max(1, math.ceil(n * scale))
        for aa in (True, False):
            idx, w = resize_weights(n, out, float(scale), aa)
            ti, tw = _traced_weights(n, out, float(scale), aa, torch.device("cpu"), torch.float64)
            keep = (tw != 0).any(dim=0)
            assert torch.equal(ti[:, keep], torch.from_numpy(idx))
            assert torch.equal(tw[:, keep], torch.from_numpy(w))
