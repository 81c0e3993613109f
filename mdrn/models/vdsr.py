"""VDSR (Kim et al. 2016): 20 conv 3x3 layers with a global residual, on the Y channel."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mdrn.models.blocks import YChannelNet, conv

__all__ = ["VDSR"]


class VDSR(YChannelNet):
    """VDSR: ``depth`` 3x3 convs (``n_feats`` filters, ReLU between) whose output is added to the bicubic Y.

    One model serves every scale in ``scales`` (the official weights are trained on x2, x3 and x4).
    """

    def __init__(
        self, depth: int = 20, n_feats: int = 64, scales: Sequence[int] = (2, 3, 4), n_colors: int = 3
    ) -> None:
        if depth < 2:
            raise ValueError(f"VDSR depth must be >= 2, got {depth}")
        args = dict(depth=depth, n_feats=n_feats, scales=tuple(scales), n_colors=n_colors)
        layers: list[nn.Module] = [conv(1, n_feats, 3), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [conv(n_feats, n_feats, 3), nn.ReLU(inplace=True)]
        layers.append(conv(n_feats, 1, 3))
        super().__init__(nn.Sequential(*layers), residual=True, scales=scales, n_colors=n_colors,
                         spec_args=args)  # fmt: skip
