"""SRCNN (Dong et al. 2014, 9-1-5): three convolutions on the Y channel of the bicubic-upscaled image."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mdrn.models.blocks import YChannelNet, conv

__all__ = ["SRCNN"]


class SRCNN(YChannelNet):
    """SRCNN 9-1-5 (64/32 filters, ReLU, 'same' padding) on Y of the MATLAB-bicubic upscaled input."""

    def __init__(
        self, n1: int = 64, n2: int = 32, scales: Sequence[int] = (2, 3, 4), n_colors: int = 3
    ) -> None:
        args = dict(n1=n1, n2=n2, scales=tuple(scales), n_colors=n_colors)
        net = nn.Sequential(conv(1, n1, 9), nn.ReLU(inplace=True), conv(n1, n2, 1), nn.ReLU(inplace=True),
                            conv(n2, 1, 5))  # fmt: skip
        super().__init__(net, residual=False, scales=scales, n_colors=n_colors, spec_args=args)
