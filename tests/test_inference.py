"""Tiled inference (seamless, exact against untiled), the x8 self-ensemble and channel handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdrn.inference import forward_x8, receptive_radius, upscale
from mdrn.models import MDRN, VDSR, Bicubic


@pytest.fixture(scope="module")
def tiny() -> MDRN:
    torch.manual_seed(0)
    net = MDRN(n_resblocks=2, n_feats=16, scales=(2, 3, 4)).eval()
    # random but not tiny weights: make every layer matter so that a seam would show
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.5)
    return net


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiled_equals_untiled(tiny: MDRN, scale: int) -> None:
    torch.manual_seed(1)
    x = torch.rand(1, 3, 45, 61)
    full = upscale(tiny, x, scale)
    assert full.shape == (1, 3, 45 * scale, 61 * scale)
    overlap = receptive_radius(tiny)
    assert overlap == 2 * 2 + 15
    for tile in (16, 23):
        tiled = upscale(tiny, x, scale, tile=tile, overlap=overlap)
        assert (tiled - full).abs().max().item() <= 1e-4, (tile, overlap)


def test_too_small_overlap_shows_seams(tiny: MDRN) -> None:
    """The equality above is meaningful: without enough context the tiles differ from the untiled run."""
    torch.manual_seed(1)
    x = torch.rand(1, 3, 30, 30)
    full = upscale(tiny, x, 2)
    assert (upscale(tiny, x, 2, tile=15, overlap=0) - full).abs().max().item() > 1e-3
    assert (upscale(tiny, x, 2, tile=15, overlap=8) - full).abs().max().item() > 1e-4


def test_tiled_ensemble_gray_and_batch(tiny: MDRN) -> None:
    torch.manual_seed(2)
    x = torch.rand(2, 3, 20, 14)
    ov = receptive_radius(tiny)
    full = upscale(tiny, x, 2, ensemble=True)
    assert (upscale(tiny, x, 2, tile=10, overlap=ov, ensemble=True) - full).abs().max().item() <= 1e-4
    gray = MDRN(n_resblocks=2, n_feats=8, scales=(2,), n_colors=1).eval()
    g = torch.rand(1, 29, 31)  # (C, H, W): the result keeps the batch-less shape
    out = upscale(gray, g, 2, tile=10, overlap=receptive_radius(gray))
    assert out.shape == (1, 58, 62)
    assert (out - upscale(gray, g, 2)).abs().max().item() <= 1e-4


def test_bicubic_and_y_models_tile_exactly() -> None:
    torch.manual_seed(3)
    x = torch.rand(1, 3, 33, 27, dtype=torch.float64)
    bic = Bicubic()
    assert (upscale(bic, x, 4, tile=8, overlap=4) - upscale(bic, x, 4)).abs().max().item() <= 1e-10
    vdsr = VDSR().eval()
    full = upscale(vdsr, x.float(), 2)
    tiled = upscale(vdsr, x.float(), 2, tile=12, overlap=receptive_radius(vdsr))
    assert (tiled - full).abs().max().item() <= 1e-4


def test_forward_x8_inverts_each_transform() -> None:
    """An equivariant 'network' (nearest-neighbour upscaling) is unchanged by the ensemble."""

    def nearest(x: torch.Tensor, scale: int) -> torch.Tensor:
        return F.interpolate(x, scale_factor=scale, mode="nearest")

    torch.manual_seed(4)
    x = torch.rand(1, 3, 7, 11)
    torch.testing.assert_close(forward_x8(nearest, x, 2), nearest(x, 2), atol=1e-6, rtol=0)

    # a non-equivariant one (adds a horizontal ramp): the ensemble is the mean of the 8 de-transformed
    # outputs, computed here independently with numpy
    def ramp(x: torch.Tensor, scale: int) -> torch.Tensor:
        y = nearest(x, scale)
        return y + torch.linspace(0, 1, y.shape[-1])

    xs = x[0, 0].numpy()
    expected = np.zeros((14, 22))
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(xs, k)
            t = t[:, ::-1] if flip else t
            y = ramp(torch.from_numpy(t.copy())[None, None], 2)[0, 0].numpy()
            y = y[:, ::-1] if flip else y
            expected += np.rot90(y, -k)
    got = forward_x8(ramp, x[:, :1], 2)[0, 0].numpy()
    np.testing.assert_allclose(got, expected / 8, atol=1e-6)


def test_channel_adaptation(tiny: MDRN) -> None:
    torch.manual_seed(5)
    g = torch.rand(1, 1, 12, 12)
    out = upscale(tiny, g, 2)
    assert out.shape == (1, 1, 24, 24)
    ref = tiny(g.expand(-1, 3, -1, -1), 2).mean(dim=1, keepdim=True)
    assert (out - ref).abs().max().item() < 1e-6
    gray = MDRN(n_resblocks=1, n_feats=8, scales=(2,), n_colors=1).eval()
    rgb = torch.rand(1, 3, 10, 10)
    out = upscale(gray, rgb, 2)
    with torch.no_grad():
        for c in range(3):
            assert (out[:, c : c + 1] - gray(rgb[:, c : c + 1], 2)).abs().max().item() < 1e-6


def test_bad_inputs(tiny: MDRN) -> None:
    with pytest.raises(ValueError, match="no x8 branch"):
        upscale(tiny, torch.rand(1, 3, 8, 8), 8)
    with pytest.raises(ValueError, match="too small"):
        upscale(tiny, torch.rand(1, 3, 1, 1), 2)
    with pytest.raises(ValueError, match="channels"):
        upscale(tiny, torch.rand(1, 2, 8, 8), 2)
    with pytest.raises(ValueError, match="float"):
        upscale(tiny, torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 2)


def test_out_memmap_and_oom_halving(tmp_path, tiny: MDRN) -> None:
    torch.manual_seed(6)
    x = torch.rand(1, 3, 24, 20)
    ref = upscale(tiny, x, 2)
    mm = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=(1, 3, 48, 40))
    upscale(tiny, x, 2, tile=8, overlap=receptive_radius(tiny), out=mm)
    mm.flush()
    assert np.abs(np.load(tmp_path / "out.npy") - ref.numpy()).max() <= 1e-4

    class Picky(torch.nn.Module):
        """Raises the CUDA out-of-memory error on inputs larger than 30x30 (as a small GPU would)."""

        scales = (2,)
        n_colors = 3

        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[tuple[int, int]] = []

        def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
            self.sizes.append(tuple(x.shape[-2:]))
            if x.shape[-1] * x.shape[-2] > 900:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return F.interpolate(x, scale_factor=scale, mode="nearest")

    picky = Picky()
    big = torch.rand(1, 3, 64, 64)
    out = upscale(picky, big, 2, tile=None, overlap=2)
    assert torch.equal(out, F.interpolate(big, scale_factor=2, mode="nearest"))
    assert max(h * w for h, w in picky.sizes[-4:]) <= 900
