"""SRResNet (Ledig et al. 2017): 16 residual blocks with batch norm and PReLU, pixel-shuffle upsampling."""

from __future__ import annotations

import torch
from torch import nn

from mdrn.models.blocks import ResidualBody, SRNet, Upsampler, conv

__all__ = ["SRResNet"]


class SRResNet(SRNet):
    """SRResNet: conv 9x9 + PReLU, B residual blocks (conv-BN-PReLU-conv-BN) + conv-BN with a global skip,
    x2 / x3 sub-pixel stages each followed by PReLU, conv 9x9 out. [0, 1] in and out, no mean shift."""

    def __init__(self, n_resblocks: int = 16, n_feats: int = 64, scale: int = 4, n_colors: int = 3) -> None:
        args = dict(n_resblocks=n_resblocks, n_feats=n_feats, scale=int(scale), n_colors=n_colors)
        super().__init__(scales=(scale,), n_colors=n_colors, spec_args=args)
        self.scale = int(scale)
        self.head = nn.Sequential(conv(n_colors, n_feats, 9), nn.PReLU())
        self.body = ResidualBody(n_resblocks, n_feats, bn=True, act=nn.PReLU)
        self.upsample = Upsampler(self.scale, n_feats, act=nn.PReLU)
        self.tail = conv(n_feats, n_colors, 9)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Super-resolve ``x`` (N, C, H, W) in [0, 1] by ``scale``; output not clamped."""
        self.check_input(x, scale)
        return self.tail(self.upsample(self.body(self.head(x))))
