"""IMDN (Hui et al., ACM MM 2019, "Lightweight Image Super-Resolution with Information Multi-distillation
Network"): one network per scale.

Written here from the paper; the layer order follows the authors' code (github Zheng222/IMDN,
``model/architecture.py`` and ``model/block.py``) so that their weight files ``IMDN_x{2,3,4}.pth`` load
(keys converted by :mod:`mdrn.models.peers`). Layout: 3x3 conv -> six information multi-distillation
blocks -> 1x1 fusion of their six outputs (LeakyReLU 0.05) -> 3x3 conv + the first features (global
skip) -> one 3x3 conv to ``3 s^2`` channels and a pixel shuffle. A block: a 3x3 conv (F -> F) then three
more on the remaining 3F/4 channels, each step splitting off F/4 "distilled" channels (LeakyReLU 0.05
after the first three convs); the four distilled parts are concatenated, reweighted by contrast-aware
channel attention (per channel: standard deviation + mean over the whole image, 1x1 down by 16, ReLU,
1x1 up, sigmoid), fused by a 1x1 conv and added to the block's input.

Input convention of the authors: RGB in [0, 1], no mean shift. The attention uses statistics of the
whole input, so a tiled result differs slightly from the untiled one (the peers table runs whole images).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mdrn.models.blocks import SRNet, conv

__all__ = ["IMDN"]

#: LeakyReLU slope of the authors' blocks
NEG_SLOPE = 0.05


class ContrastChannelAttention(nn.Module):
    """Contrast-aware channel attention: ``x * sigmoid(up(relu(down(std(x) + mean(x)))))``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reweight the channels of ``x`` by their contrast (population std) plus mean over the image."""
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * self.body(std + mean)


class DistillationBlock(nn.Module):
    """Information multi-distillation block (distillation rate 1/4)."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.distilled = n_feats // 4
        self.remaining = n_feats - self.distilled
        self.convs = nn.ModuleList(
            [
                conv(n_feats, n_feats, 3),
                conv(self.remaining, n_feats, 3),
                conv(self.remaining, n_feats, 3),
                conv(self.remaining, self.distilled, 3),
            ]
        )
        self.attention = ContrastChannelAttention(4 * self.distilled)
        self.fuse = nn.Conv2d(4 * self.distilled, n_feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Split off F/4 channels after each of the first three convs; fuse the four parts; add ``x``."""
        parts, rest = [], x
        for c in self.convs[:-1]:
            out = F.leaky_relu(c(rest), NEG_SLOPE)
            kept, rest = torch.split(out, (self.distilled, self.remaining), dim=1)
            parts.append(kept)
        parts.append(self.convs[-1](rest))
        return self.fuse(self.attention(torch.cat(parts, dim=1))) + x


class IMDN(SRNet):
    """IMDN: information multi-distillation network, one scale per network."""

    def __init__(self, n_feats: int = 64, n_blocks: int = 6, scale: int = 4) -> None:
        args = dict(n_feats=n_feats, n_blocks=n_blocks, scale=int(scale))
        super().__init__(scales=(int(scale),), n_colors=3, spec_args=args)
        if n_feats < 16 or n_feats % 4:
            raise ValueError(f"n_feats must be a multiple of 4, at least 16 (attention: 1/16), got {n_feats}")
        self.scale = int(scale)
        self.n_feats = int(n_feats)
        self.head = conv(3, n_feats, 3)
        self.blocks = nn.ModuleList(DistillationBlock(n_feats) for _ in range(n_blocks))
        self.fuse = nn.Conv2d(n_feats * n_blocks, n_feats, 1)
        self.body_tail = conv(n_feats, n_feats, 3)
        self.upsample = nn.Sequential(conv(n_feats, 3 * self.scale**2, 3), nn.PixelShuffle(self.scale))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Super-resolve RGB ``x`` (N, 3, H, W) in [0, 1] by ``scale``; output not clamped."""
        self.check_input(x, scale)
        feats = out = self.head(x)
        outs = []
        for block in self.blocks:
            out = block(out)
            outs.append(out)
        fused = F.leaky_relu(self.fuse(torch.cat(outs, dim=1)), NEG_SLOPE)
        return self.upsample(self.body_tail(fused) + feats)
