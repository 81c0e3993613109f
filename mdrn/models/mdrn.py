"""MDRN: the multi-scale deep residual network of Ren et al. (2019), an MDSR-style network.

Layout (EDSR-PyTorch ``MDSR``): mean shift -> head conv 3x3 -> per-scale pre-processing (two residual
blocks with 5x5 kernels) -> shared body of B residual blocks + conv with a global skip -> per-scale
upsampler -> shared tail conv -> mean shift back. ``MDRN(scales=(s,))`` is the single-scale MDRN.

The I/O is [0, 1]; internally the features are computed on the official 0..255 scale (``rgb_range``
255 in :class:`~mdrn.models.blocks.MeanShift`), so converted official weights load unchanged and give
exactly the official output / 255. With ``n_colors=1`` (gray medical images, not faked RGB) the mean
shift uses one gray mean, the BT.601 luma of the DIV2K RGB mean (0.4368; ``DIV2K_GRAY_MEAN``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mdrn.models.blocks import (
    DIV2K_GRAY_MEAN,
    DIV2K_RGB_MEAN,
    MeanShift,
    ResBlock,
    ResidualBody,
    SRNet,
    Upsampler,
    conv,
)

__all__ = ["MDRN", "branch_key"]


def branch_key(scale: int) -> str:
    """Return the ``nn.ModuleDict`` key of a scale's branch (``"x2"``)."""
    return f"x{int(scale)}"


class MeanShiftResNet(SRNet):
    """Shared frame of MDRN and EDSR: mean shift, head, residual body, upsampler(s), tail, mean shift back."""

    def __init__(
        self,
        *,
        n_resblocks: int,
        n_feats: int,
        res_scale: float,
        scales: Sequence[int],
        n_colors: int,
        spec_args: dict,
    ) -> None:
        super().__init__(scales=scales, n_colors=n_colors, spec_args=spec_args)
        if n_feats < 1:
            raise ValueError(f"n_feats must be >= 1, got {n_feats}")
        mean = DIV2K_RGB_MEAN if n_colors == 3 else DIV2K_GRAY_MEAN
        self.sub_mean = MeanShift(mean, sign=-1)
        self.add_mean = MeanShift(mean, sign=1)
        self.head = conv(n_colors, n_feats, 3)
        self.body = ResidualBody(n_resblocks, n_feats, res_scale=res_scale)
        self.tail = conv(n_feats, n_colors, 3)
        #: channels of the LR feature map ``features`` returns
        self.n_feats = int(n_feats)

    def branches(self, scale: int) -> tuple[nn.Module, nn.Module]:
        """Return the (pre-processing, upsampler) modules used at ``scale``."""
        raise NotImplementedError

    def features(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """LR-resolution features (N, n_feats, H, W): mean shift, head, pre-processing, body + skip."""
        self.check_input(x, scale)
        pre, _ = self.branches(scale)
        return self.body(pre(self.head(self.sub_mean(x))))

    def reconstruct(self, features: torch.Tensor, scale: int) -> torch.Tensor:
        """Output (N, C, sH, sW) from ``features(x, scale)``: upsampler, tail, mean shift back."""
        _, up = self.branches(scale)
        return self.add_mean(self.tail(up(features)))

    def reconstruct_radius(self, scale: int) -> int:
        """LR pixels of feature context around a pixel that ``reconstruct`` reads (a safe bound).

        Each convolution's reach ``r`` at resolution factor ``f`` (after the pixel shuffles before it)
        moves at most ``ceil(r / f)`` LR pixels; the sum over the upsampler and the tail.
        """
        _, up = self.branches(scale)
        radius, factor = 0, 1
        for m in [*up.modules(), self.tail]:
            if isinstance(m, nn.PixelShuffle):
                factor *= m.upscale_factor
            elif isinstance(m, nn.Conv2d):
                reach = max((k - 1) // 2 * d for k, d in zip(m.kernel_size, m.dilation, strict=True))
                radius += -(-reach // factor)
        return radius

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Super-resolve ``x`` (N, C, H, W) in [0, 1] by ``scale``; output (N, C, sH, sW), not clamped."""
        return self.reconstruct(self.features(x, scale), scale)


class MDRN(MeanShiftResNet):
    """Multi-scale deep residual network (Ren et al. 2019; EDSR-PyTorch's MDSR layout and weights)."""

    def __init__(
        self,
        n_resblocks: int = 80,
        n_feats: int = 64,
        scales: Sequence[int] = (2, 3, 4),
        res_scale: float = 1.0,
        n_colors: int = 3,
    ) -> None:
        args = dict(n_resblocks=n_resblocks, n_feats=n_feats, scales=tuple(scales), res_scale=res_scale,
                    n_colors=n_colors)  # fmt: skip
        super().__init__(n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale, scales=scales,
                         n_colors=n_colors, spec_args=args)  # fmt: skip
        self.pre_process = nn.ModuleDict(
            {branch_key(s): nn.Sequential(ResBlock(n_feats, 5), ResBlock(n_feats, 5)) for s in self.scales}
        )
        self.upsample = nn.ModuleDict({branch_key(s): Upsampler(s, n_feats) for s in self.scales})

    def branches(self, scale: int) -> tuple[nn.Module, nn.Module]:
        """Return the (pre-processing, upsampler) of ``scale``'s branch."""
        key = branch_key(scale)
        return self.pre_process[key], self.upsample[key]
