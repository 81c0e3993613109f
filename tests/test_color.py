"""mdrn.protocol.color: MATLAB rgb2ycbcr / ycbcr2rgb conventions on the [0, 1] scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdrn.protocol.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb


def test_known_values_matlab() -> None:
    # MATLAB: rgb2ycbcr([0 0 0]) = [16 128 128]/255, white -> [235 128 128]/255, red -> 81.481, 90.203, 240
    rgb = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    x = rgb.T.reshape(1, 3, 1, 3)
    ycc = rgb_to_ycbcr(x)[0, :, 0].T * 255
    expected = torch.tensor([[16, 128, 128], [235, 128, 128], [81.481, 90.203, 240.0]], dtype=torch.float64)
    torch.testing.assert_close(ycc, expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(rgb_to_y(x)[0, 0, 0] * 255, expected[:, 0], rtol=0, atol=1e-9)


def test_y_formula_and_matrix_against_numpy() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    r, g, b = x.numpy()[:, 0], x.numpy()[:, 1], x.numpy()[:, 2]
    y = (16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = (128 - 37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = (128 + 112.0 * r - 93.786 * g - 18.214 * b) / 255
    np.testing.assert_allclose(rgb_to_y(x)[:, 0].numpy(), y, rtol=0, atol=1e-15)
    np.testing.assert_allclose(rgb_to_ycbcr(x).numpy(), np.stack([y, cb, cr], 1), rtol=0, atol=1e-15)


def test_inverse_round_trip_and_not_clamped() -> None:
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, rtol=0, atol=1e-12)
    # Y = 0 is below studio black: gives negative RGB, not clamped
    out = ycbcr_to_rgb(torch.tensor([0.0, 128 / 255, 128 / 255]).view(1, 3, 1, 1))
    assert (out < 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_kept_and_unbatched(dtype: torch.dtype) -> None:
    x = torch.rand(3, 6, 7).to(dtype)
    for fn in (rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb):
        out = fn(x)
        assert out.dtype == dtype and out.device == x.device
    assert rgb_to_y(x).shape == (1, 6, 7)
    tol = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-6
    torch.testing.assert_close(rgb_to_y(x).double(), rgb_to_y(x.double()), rtol=0, atol=tol)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="got 4 channels"):
        rgb_to_y(torch.rand(1, 4, 5, 5))
    with pytest.raises(ValueError, match="got 1 channels"):
        rgb_to_ycbcr(torch.rand(1, 1, 5, 5))
    with pytest.raises(ValueError, match="shape"):
        ycbcr_to_rgb(torch.rand(3, 5))
    with pytest.raises(TypeError, match="floating"):
        rgb_to_y(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
