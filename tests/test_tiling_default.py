"""Tiling is seamless by default: the default overlap is the model's receptive radius (shipped model, B=80).

Also: the command line and the app use that default, and the out-of-memory fallback says what it did.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from mdrn.models import MDRN, Bicubic
from mdrn.models.inference import default_overlap, receptive_radius, upscale
from mdrn.upscale import UpscaleOptions, _parser
from mdrn.weights import DEFAULT_MODEL, load_model

#: max |tiled - untiled| allowed on the 0..1 scale (float rounding of different tile shapes: ~1e-7)
SEAMLESS = 1e-4


def _image(size: tuple[int, int]) -> torch.Tensor:
    """A photograph crop (skimage's coffee), (1, 3, H, W) in [0, 1]."""
    crop = skimage.data.coffee()[60 : 60 + size[0], 180 : 180 + size[1]]
    return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_default_overlap_is_the_receptive_radius() -> None:
    torch.manual_seed(0)
    net = MDRN(n_resblocks=12, n_feats=8, scales=(2,))  # radius 39: more than a fixed overlap of 32
    assert default_overlap(net) == receptive_radius(net) > 32
    x = _image((36, 96))
    for memory in (None, 1 << 20):  # tile-sized body tiles, and a 1 MiB budget
        default = upscale(net, x, 2, tile=24, memory=memory)
        assert torch.equal(default, upscale(net, x, 2, tile=24, overlap=receptive_radius(net), memory=memory))
    # the command line and the app (UpscaleOptions) leave the overlap to upscale's default
    assert UpscaleOptions(scale=2).overlap is None
    assert _parser().parse_args(["in.png", "--scale", "2", "--weights", "w", "-o", "out"]).overlap is None


def test_shipped_model_tiles_seamlessly() -> None:
    net = load_model(DEFAULT_MODEL)
    # a strip: each 32-pixel tile reads 32 + 2 x 47 columns of context, far less than the 192 columns
    x = _image((32, 192))
    assert default_overlap(net) < (192 - 32) / 2
    for scale in net.scales:  # two-stage path (features, then reconstruct) with tile-sized body tiles
        diff = (upscale(net, x, scale, tile=32, memory=None) - upscale(net, x, scale)).abs().max().item()
        assert diff <= SEAMLESS, (scale, diff)
    x = x[..., :16, :128]  # one-stage path (self-ensemble)
    diff = (upscale(net, x, 2, tile=16, ensemble=True) - upscale(net, x, 2, ensemble=True)).abs().max().item()
    assert diff <= SEAMLESS, diff


@pytest.mark.slow
def test_b80_mdsr_layout_tiles_seamlessly() -> None:
    # the paper's B=80 layout (official MDSR: no low-frequency path), seed-0 weights (no trained ones here)
    torch.manual_seed(0)
    net = MDRN()
    assert default_overlap(net) == 175
    x = _image((40, 80))
    full = upscale(net, x, 2)
    diff = (upscale(net, x, 2, tile=40, memory=None) - full).abs().max().item()
    assert diff <= SEAMLESS


def test_out_of_memory_fallback_says_what_it_did() -> None:
    def oom_above(limit: int):
        def hook(module: torch.nn.Module, args: tuple) -> None:
            if args[0].shape[-2] * args[0].shape[-1] > limit:
                raise torch.OutOfMemoryError("simulated: CUDA out of memory")

        return hook

    bicubic = Bicubic(scales=(2,))  # one-stage path: the tile is halved
    bicubic.register_forward_pre_hook(oom_above(40 * 40))
    x = _image((64, 64))
    with pytest.warns(UserWarning, match="out of memory on cpu; retrying with tiles of 32 px"):
        out = upscale(bicubic, x, 2)
    bicubic._forward_pre_hooks.clear()
    assert (out - upscale(bicubic, x, 2)).abs().max().item() <= SEAMLESS
    torch.manual_seed(0)
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,))  # two-stage path: the memory budget is halved
    net.head.register_forward_pre_hook(oom_above(200 * 200))
    with pytest.warns(UserWarning, match="retrying with a memory budget of 768 MiB"):
        upscale(net, _image((256, 256)), 2, tile=64)
