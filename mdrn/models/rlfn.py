"""RLFN and RLFN-S (Kong et al., CVPR Workshops 2022, "Residual Local Feature Network for Efficient
Super-Resolution"): one network per scale; RLFN has 52 feature channels, RLFN-S 48.

Written here from the paper; the layer order follows the authors' code (github bytedance/RLFN,
``model/rlfn.py``, ``model/rlfn_s.py``, ``model/block.py``) so that their weight files
(``model_zoo/rlfn_x2.pth`` ...) load (keys converted by :mod:`mdrn.models.peers`). Layout: 3x3 conv ->
six residual local feature blocks -> 3x3 conv + the first features (global skip) -> one 3x3 conv to
``3 s^2`` channels and a pixel shuffle. A block: three 3x3 convs each followed by LeakyReLU 0.05, plus
the block's input (local residual), a 1x1 conv, then enhanced spatial attention (1x1 reduce to 16
channels; 3x3 stride-2 conv without padding, 7x7 max pool with stride 3, 3x3 conv, bilinear upsampling
back to the block's size; plus a 1x1 conv of the reduced features; 1x1 expand, sigmoid, multiply).

Input convention: the authors' test code feeds RGB on a 0..255 scale (``img_L * 255.``, output / 255),
no mean shift: ``rgb_range`` 255 here (the images stay [0, 1] outside). The attention's strided pooling
needs at least 15x15 input pixels, and its grid starts at the image origin, so a tiled result differs
slightly from the untiled one (the peers table runs whole images).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mdrn.models.blocks import SRNet, conv

__all__ = ["RLFN"]

#: LeakyReLU slope of the authors' blocks
NEG_SLOPE = 0.05
#: smallest input side the attention's stride-2 conv (3x3) and 7x7 max pool (stride 3) accept
MIN_RLFN_SIDE = 15


class SpatialAttention(nn.Module):
    """Enhanced spatial attention (RLFN's variant of ESA, without the unused max-pool branch convs)."""

    def __init__(self, n_feats: int, channels: int = 16) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(n_feats, channels, 1)
        self.skip = nn.Conv2d(channels, channels, 1)
        self.down = nn.Conv2d(channels, channels, 3, stride=2)
        self.mid = nn.Conv2d(channels, channels, 3, padding=1)
        self.expand = nn.Conv2d(channels, n_feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x * sigmoid(expand(up(mid(maxpool(down(r)))) + skip(r)))`` with ``r = reduce(x)``."""
        r = self.reduce(x)
        low = self.mid(F.max_pool2d(self.down(r), kernel_size=7, stride=3))
        low = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.expand(low + self.skip(r)))


class LocalFeatureBlock(nn.Module):
    """Residual local feature block: three 3x3 conv + LeakyReLU, + input, 1x1 conv, spatial attention."""

    def __init__(self, n_feats: int, esa_channels: int = 16) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv(n_feats, n_feats, 3) for _ in range(3))
        self.fuse = nn.Conv2d(n_feats, n_feats, 1)
        self.attention = SpatialAttention(n_feats, esa_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``attention(fuse(x + lrelu(conv3(lrelu(conv2(lrelu(conv1(x))))))))``."""
        out = x
        for c in self.convs:
            out = F.leaky_relu(c(out), NEG_SLOPE)
        return self.attention(self.fuse(out + x))


class RLFN(SRNet):
    """RLFN (``n_feats=52``) / RLFN-S (``n_feats=48``): residual local feature network, one scale."""

    def __init__(
        self, n_feats: int = 52, n_blocks: int = 6, esa_channels: int = 16, scale: int = 4,
        rgb_range: float = 255.0,
    ) -> None:  # fmt: skip
        args = dict(n_feats=n_feats, n_blocks=n_blocks, esa_channels=esa_channels, scale=int(scale),
                    rgb_range=float(rgb_range))  # fmt: skip
        super().__init__(scales=(int(scale),), n_colors=3, spec_args=args)
        if rgb_range <= 0:
            raise ValueError(f"rgb_range must be positive, got {rgb_range}")
        self.scale = int(scale)
        self.n_feats = int(n_feats)
        self.rgb_range = float(rgb_range)
        self.head = conv(3, n_feats, 3)
        self.blocks = nn.Sequential(*(LocalFeatureBlock(n_feats, esa_channels) for _ in range(n_blocks)))
        self.body_tail = conv(n_feats, n_feats, 3)
        self.upsample = nn.Sequential(conv(n_feats, 3 * self.scale**2, 3), nn.PixelShuffle(self.scale))

    def check_input(self, x: torch.Tensor, scale: int) -> None:
        """:meth:`SRNet.check_input`, and at least 15x15 pixels (the attention's strided pooling)."""
        super().check_input(x, scale)
        if min(x.shape[-2:]) < MIN_RLFN_SIDE:
            raise ValueError(
                f"RLFN needs at least {MIN_RLFN_SIDE}x{MIN_RLFN_SIDE} input pixels (its attention's strided "
                f"pooling), got {x.shape[-1]}x{x.shape[-2]}"
            )

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Super-resolve RGB ``x`` (N, 3, H, W) in [0, 1] by ``scale``; output not clamped."""
        self.check_input(x, scale)
        feats = self.head(x * self.rgb_range)
        return self.upsample(self.body_tail(self.blocks(feats)) + feats) / self.rgb_range
