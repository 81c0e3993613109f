"""CARN-M (Ahn et al., ECCV 2018, "Fast, Accurate, and Lightweight Super-Resolution with Cascading
Residual Network"): the mobile variant, one network for x2, x3 and x4.

Written here from the paper; the layer order follows the authors' code (github nmhkahn/CARN-pytorch,
``carn/model/carn_m.py``) so that their weight file ``carn_m.pth`` loads (keys converted by
:mod:`mdrn.models.peers`). Layout: mean shift -> 3x3 entry conv -> three cascading blocks, each followed
by a 1x1 fusion conv over the concatenation of everything before it (global cascading) -> per-scale
sub-pixel upsampler (grouped 3x3 conv + ReLU + pixel shuffle per x2/x3 stage) -> 3x3 exit conv -> mean
shift back. A cascading block applies one *shared* efficient residual unit three times (recursive
weights: grouped 3x3, ReLU, grouped 3x3, ReLU, 1x1, then ReLU(x + body(x))), each use followed by its
own 1x1 fusion conv over the block's concatenated outputs (local cascading).

Input convention of the authors: RGB in [0, 1] minus the DIV2K mean (0.4488, 0.4371, 0.4040), no
0..255 scaling; the output is not clamped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mdrn.models.blocks import DIV2K_RGB_MEAN, MeanShift, SRNet, conv, scale_factors
from mdrn.models.mdrn import branch_key

__all__ = ["CARNM"]


def _fusion(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv + ReLU: the cascading fusion of the concatenated features."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True))


class EfficientResidual(nn.Module):
    """CARN-M's efficient residual unit: ``ReLU(x + conv1x1(ReLU(gconv3x3(ReLU(gconv3x3(x))))))``."""

    def __init__(self, n_feats: int, group: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_feats, n_feats, 3, padding=1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_feats, n_feats, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``ReLU(x + body(x))``."""
        return F.relu(self.body(x) + x)


class CascadingBlock(nn.Module):
    """One shared residual unit used ``len(fuse)`` times, each output fused with all before it (1x1)."""

    def __init__(self, n_feats: int, group: int, depth: int = 3) -> None:
        super().__init__()
        self.unit = EfficientResidual(n_feats, group)
        self.fuse = nn.ModuleList(_fusion(n_feats * (i + 2), n_feats) for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Local cascading: ``c_i = [c_{i-1}, unit(o_{i-1})]``, ``o_i = fuse_i(c_i)``; returns the last o."""
        cat, out = x, x
        for fuse in self.fuse:
            cat = torch.cat([cat, self.unit(out)], dim=1)
            out = fuse(cat)
        return out


class CARNM(SRNet):
    """CARN-M: cascading residual network, mobile variant (grouped convs, recursive units), multi-scale."""

    def __init__(
        self, n_feats: int = 64, group: int = 4, n_blocks: int = 3, scales: Sequence[int] = (2, 3, 4)
    ) -> None:
        args = dict(n_feats=n_feats, group=group, n_blocks=n_blocks, scales=tuple(scales))
        super().__init__(scales=scales, n_colors=3, spec_args=args)
        if n_feats < 1 or group < 1 or n_feats % group:
            raise ValueError(f"n_feats ({n_feats}) must be a positive multiple of group ({group})")
        self.n_feats = int(n_feats)
        self.sub_mean = MeanShift(DIV2K_RGB_MEAN, sign=-1, rgb_range=1.0)
        self.add_mean = MeanShift(DIV2K_RGB_MEAN, sign=1, rgb_range=1.0)
        self.head = conv(3, n_feats, 3)
        self.blocks = nn.ModuleList(CascadingBlock(n_feats, group) for _ in range(n_blocks))
        self.fuse = nn.ModuleList(_fusion(n_feats * (i + 2), n_feats) for i in range(n_blocks))
        self.upsample = nn.ModuleDict(
            {branch_key(s): self._upsampler(s, n_feats, group) for s in self.scales}
        )
        self.tail = conv(n_feats, 3, 3)

    @staticmethod
    def _upsampler(scale: int, n_feats: int, group: int) -> nn.Sequential:
        """Per x2/x3 stage: grouped conv(F -> r^2 F), ReLU, pixel shuffle(r)."""
        layers: list[nn.Module] = []
        for r in scale_factors(scale):
            layers += [
                nn.Conv2d(n_feats, r * r * n_feats, 3, padding=1, groups=group),
                nn.ReLU(inplace=True),
                nn.PixelShuffle(r),
            ]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Super-resolve RGB ``x`` (N, 3, H, W) in [0, 1] by ``scale``; output not clamped."""
        self.check_input(x, scale)
        cat = out = self.head(self.sub_mean(x))
        for block, fuse in zip(self.blocks, self.fuse, strict=True):
            cat = torch.cat([cat, block(out)], dim=1)
            out = fuse(cat)
        return self.add_mean(self.tail(self.upsample[branch_key(scale)](out)))
