"""EDSR (Lim et al. 2017): single-scale enhanced deep residual network, EDSR-PyTorch layout."""

from __future__ import annotations

from torch import nn

from mdrn.models.blocks import Upsampler
from mdrn.models.mdrn import MeanShiftResNet

__all__ = ["EDSR", "edsr", "edsr_baseline"]


class EDSR(MeanShiftResNet):
    """EDSR: mean shift, head conv, B residual blocks + conv (global skip), upsampler, tail conv.

    ``bicubic_skip=True``: output = MATLAB bicubic(x) + the network's high-frequency image (tail at zero).
    """

    def __init__(
        self,
        n_resblocks: int = 16,
        n_feats: int = 64,
        res_scale: float = 1.0,
        scale: int = 2,
        n_colors: int = 3,
        bicubic_skip: bool = False,
    ) -> None:
        args = dict(n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale, scale=int(scale),
                    n_colors=n_colors, bicubic_skip=bool(bicubic_skip))  # fmt: skip
        super().__init__(n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale, scales=(scale,),
                         n_colors=n_colors, bicubic_skip=bicubic_skip, spec_args=args)  # fmt: skip
        self.scale = int(scale)
        self.upsample = Upsampler(self.scale, n_feats)
        self.no_pre_process = nn.Identity()

    def branches(self, scale: int) -> tuple[nn.Module, nn.Module]:
        """Return (identity, the upsampler): EDSR has no pre-processing."""
        return self.no_pre_process, self.upsample


def edsr_baseline(scale: int, n_colors: int = 3) -> EDSR:
    """Return the EDSR baseline (16 blocks x 64 filters, no residual scaling) for ``scale``."""
    return EDSR(n_resblocks=16, n_feats=64, res_scale=1.0, scale=scale, n_colors=n_colors)


def edsr(scale: int, n_colors: int = 3) -> EDSR:
    """Return the final EDSR (32 blocks x 256 filters, residual scaling 0.1) for ``scale``."""
    return EDSR(n_resblocks=32, n_feats=256, res_scale=0.1, scale=scale, n_colors=n_colors)
