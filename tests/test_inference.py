"""Tiled inference (seamless, exact against untiled), the x8 self-ensemble and channel handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdrn.models import EDSR, MDRN, VDSR, Bicubic
from mdrn.models.inference import (
    DEFAULT_MEMORY,
    forward_x8,
    plan_two_stage,
    receptive_radius,
    supports_two_stage,
    upscale,
)


@pytest.fixture(scope="module")
def tiny() -> MDRN:
    torch.manual_seed(0)
    net = MDRN(n_resblocks=2, n_feats=16, scales=(2, 3, 4)).eval()
    # random but not tiny weights: make every layer matter so that a seam would show
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.5)
    return net


class OneStage(torch.nn.Module):
    """The wrapped network without ``features``/``reconstruct``: ``upscale`` tiles it in one stage."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.scales, self.n_colors = net, net.scales, net.n_colors

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.net(x, scale)


#: a budget small enough that the tiny net's 45x61 image runs as several body tiles and sub-tiles
SMALL_MEMORY = 800_000


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("path", ["one_stage", "two_stage_tile", "two_stage_memory"])
def test_tiled_equals_untiled(tiny: MDRN, scale: int, path: str) -> None:
    torch.manual_seed(1)
    x = torch.rand(1, 3, 45, 61)
    full = upscale(tiny, x, scale)
    assert full.shape == (1, 3, 45 * scale, 61 * scale)
    overlap = receptive_radius(tiny)
    assert overlap == 2 * 2 + 15
    net = OneStage(tiny) if path == "one_stage" else tiny
    assert supports_two_stage(net) == (path != "one_stage")
    memory = SMALL_MEMORY if path == "two_stage_memory" else None
    if memory:
        rows, cols, px = plan_two_stage(tiny, (1, 3, 45, 61), scale, overlap, memory)
        assert len(rows) * len(cols) > 1 and px < 45 * 61 // 2  # several body tiles and sub-tiles
    for tile in (16, 23):
        tiled = upscale(net, x, scale, tile=tile, overlap=overlap, memory=memory)
        assert (tiled - full).abs().max().item() <= 1e-4, (tile, overlap)


@pytest.mark.parametrize("net", [MDRN(n_resblocks=1, n_feats=8, scales=(2, 3, 4)), EDSR(2, 8, scale=3)])
def test_features_reconstruct_split_forward(net: torch.nn.Module) -> None:
    torch.manual_seed(7)
    x = torch.rand(2, 3, 13, 17)
    for scale in net.scales:
        with torch.inference_mode():
            feats = net.features(x, scale)
            assert feats.shape == (2, net.n_feats, 13, 17)
            assert torch.equal(net(x, scale), net.reconstruct(feats, scale))
            # reconstruct_radius LR pixels of feature context reproduce an inner window exactly; none do not
            rr = net.reconstruct_radius(scale)
            assert rr == {2: 2, 3: 2, 4: 3}[scale]
            full = net.reconstruct(feats, scale)[..., 5 * scale : 8 * scale, 6 * scale : 10 * scale]
            part = net.reconstruct(feats[..., 5 - rr : 8 + rr, 6 - rr : 10 + rr], scale)
            inner = part[..., rr * scale : (rr + 3) * scale, rr * scale : (rr + 4) * scale]
            assert (inner - full).abs().max().item() <= 1e-5
            bare = net.reconstruct(feats[..., 5:8, 6:10], scale)
            assert (bare - full).abs().max().item() > 1e-3


def test_two_stage_plan_bounds_memory() -> None:
    """The budget sets the tiles: a 1024^2 x4 image with 64 features is one body tile (no recomputed
    context); a huge image is cut into tiles that each fit the budget, whatever the image size."""
    net = MDRN(n_resblocks=1, n_feats=64, scales=(4,))  # the plan depends on n_feats and scale only
    rr = net.reconstruct_radius(4)
    rows, cols, px = plan_two_stage(net, (1, 3, 1024, 1024), 4, 32, DEFAULT_MEMORY)
    assert rows == [(0, 1024)] and cols == [(0, 1024)]
    for h, w in [(20000, 20000), (3000, 90000)]:
        rows, cols, px = plan_two_stage(net, (1, 3, h, w), 4, 32, DEFAULT_MEMORY)
        tile_h = max(min(b + 32 + rr, h) - max(a - 32 - rr, 0) for a, b in rows)
        tile_w = max(min(b + 32 + rr, w) - max(a - 32 - rr, 0) for a, b in cols)
        assert tile_h * tile_w * 64 * 4 * 5 <= DEFAULT_MEMORY  # body activations (5 maps)
        assert px * 64 * 4 * 2.5 * 16 <= DEFAULT_MEMORY  # one reconstruct sub-tile
        assert rows[-1][1] == h and cols[-1][1] == w and len(rows) * len(cols) > 1
    with pytest.raises(ValueError, match="too small"):
        plan_two_stage(net, (1, 3, 100, 100), 4, 32, 10_000)


def test_two_stage_counts_body_pixels_once(tiny: MDRN) -> None:
    """At the default budget a small image's body runs once on every pixel; a small budget recomputes."""
    seen: list[int] = []
    hook = tiny.body.register_forward_pre_hook(lambda m, a: seen.append(a[0][0, 0].numel()))
    try:
        x = torch.rand(1, 3, 45, 61)
        upscale(tiny, x, 4, tile=16, overlap=receptive_radius(tiny))
        assert seen == [45 * 61]
        seen.clear()
        upscale(tiny, x, 4, tile=16, overlap=receptive_radius(tiny), memory=SMALL_MEMORY)
        assert len(seen) > 1 and sum(seen) > 45 * 61
    finally:
        hook.remove()


def test_too_small_overlap_shows_seams(tiny: MDRN) -> None:
    """The equality above is meaningful: without enough context the tiles differ from the untiled run."""
    torch.manual_seed(1)
    x = torch.rand(1, 3, 30, 30)
    full = upscale(tiny, x, 2)
    for net in (OneStage(tiny), tiny):  # tiny: two stages with body tiles of ``tile`` pixels
        assert (upscale(net, x, 2, tile=15, overlap=0, memory=None) - full).abs().max().item() > 1e-3
        assert (upscale(net, x, 2, tile=15, overlap=8, memory=None) - full).abs().max().item() > 1e-4


def test_tiled_ensemble_gray_and_batch(tiny: MDRN) -> None:
    torch.manual_seed(2)
    x = torch.rand(2, 3, 20, 14)
    ov = receptive_radius(tiny)
    full = upscale(tiny, x, 2, ensemble=True)
    assert (upscale(tiny, x, 2, tile=10, overlap=ov, ensemble=True) - full).abs().max().item() <= 1e-4
    gray = MDRN(n_resblocks=2, n_feats=8, scales=(2,), n_colors=1).eval()
    g = torch.rand(1, 29, 31)  # (C, H, W): the result keeps the batch-less shape
    out = upscale(gray, g, 2, tile=10, overlap=receptive_radius(gray), memory=None)
    assert out.shape == (1, 58, 62)
    assert (out - upscale(gray, g, 2)).abs().max().item() <= 1e-4
    # two-stage with channel adaptation: RGB on the gray net, gray on the RGB net, batch of 2
    rgb = torch.rand(2, 3, 29, 31)
    out = upscale(gray, rgb, 2, tile=10, overlap=receptive_radius(gray), memory=None)
    assert (out - upscale(gray, rgb, 2)).abs().max().item() <= 1e-4
    out = upscale(tiny, rgb[:, :1], 3, tile=10, overlap=receptive_radius(tiny), memory=SMALL_MEMORY)
    assert (out - upscale(tiny, rgb[:, :1], 3)).abs().max().item() <= 1e-4


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
    for scale in (2.0, True):  # a float or a bool scale: one clear error (2.0 crashed in torch.empty)
        with pytest.raises(ValueError, match="scale must be an integer"):
            upscale(tiny, torch.rand(1, 3, 8, 8), scale)


def test_an_image_of_another_float_dtype_runs_in_the_weights_dtype(tiny: MDRN) -> None:
    """float64 (numpy's default) and float16 images: the network runs in float32, the result keeps x's dtype
    (float64 failed inside the first convolution: 'Input type (double) and bias type (float)')."""
    from mdrn.models import VDSR

    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(3))
    for net in (tiny, VDSR(depth=3, n_feats=8, scales=(2,))):
        ref = upscale(net, x, 2)
        for dtype in (torch.float64, torch.float16):
            for tile in (None, 4):
                y = upscale(net, x.to(dtype), 2, tile=tile)
                assert y.dtype == dtype
                assert (y.float() - ref).abs().max() < (1e-6 if dtype == torch.float64 else 1e-2)


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


@pytest.mark.parametrize("memory", [None, 2_000_000])
def test_low_frequency_path_tiles_exactly(memory) -> None:
    torch.manual_seed(0)
    net = MDRN(n_resblocks=2, n_feats=16, bicubic_skip=True)
    torch.nn.init.normal_(net.tail.weight, std=0.01)
    x = torch.rand(1, 3, 70, 53)
    for s in net.scales:
        full = net(x, s)
        tiled = upscale(net, x, s, tile=16, overlap=12, memory=memory)
        assert (full - tiled).abs().max() < 1e-5
