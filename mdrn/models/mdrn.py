"""MDRN: the multi-scale deep residual network of Ren et al. (2019), an MDSR-style network.

Layout (EDSR-PyTorch ``MDSR``): mean shift -> head conv 3x3 -> per-scale pre-processing (two residual
blocks with 5x5 kernels) -> shared body of B residual blocks + conv with a global skip -> per-scale
upsampler -> shared tail conv -> mean shift back. ``MDRN(scales=(s,))`` is the single-scale MDRN.

Low/high-frequency split (the paper's Fig. 9), ``bicubic_skip=True``: the output is the MATLAB-bicubic
interpolation of the input (the low-frequency image, :func:`mdrn.protocol.resize.imresize`) plus what the
residual network produces (the high-frequency image: tail conv / 255, no mean added back). The tail
conv starts at zero, so an untrained network outputs exactly bicubic and training only adds detail.
Off by default, so that the official MDSR/EDSR weights load unchanged; recorded in the model spec.

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
from mdrn.protocol.resize import BICUBIC_RADIUS, imresize

__all__ = ["MDRN", "UPSAMPLERS", "branch_key"]

#: ``subpixel``: EDSR-PyTorch's sub-pixel convolutions (official weights load); ``balanced``: the same
#: layers started as nearest neighbour (ICNR) and kept answering a flat input alike in every phase (no
#: lattice in flat regions; :class:`mdrn.models.blocks.Upsampler`)
UPSAMPLERS = ("subpixel", "balanced")


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
        bicubic_skip: bool,
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
        #: output = bicubic(x) + high-frequency network (the paper's Fig. 9); tail conv starts at zero
        self.bicubic_skip = bool(bicubic_skip)
        if self.bicubic_skip:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def branches(self, scale: int) -> tuple[nn.Module, nn.Module]:
        """Return the (pre-processing, upsampler) modules used at ``scale``."""
        raise NotImplementedError

    def features(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """LR-resolution features (N, n_feats, H, W): mean shift, head, pre-processing, body + skip."""
        self.check_input(x, scale)
        pre, _ = self.branches(scale)
        return self.body(pre(self.head(self.sub_mean(x))))

    def reconstruct(self, features: torch.Tensor, scale: int) -> torch.Tensor:
        """From ``features(x, scale)``: upsampler, tail, mean shift back; with ``bicubic_skip`` the
        high-frequency image (tail / 255, no mean), to which ``low_frequency`` is added."""
        _, up = self.branches(scale)
        y = self.tail(up(features))
        return y / self.add_mean.rgb_range if self.bicubic_skip else self.add_mean(y)

    def low_frequency(self, x: torch.Tensor, scale: int) -> torch.Tensor | None:
        """The interpolated (MATLAB bicubic) image added to ``reconstruct``'s output, or None (no skip)."""
        return imresize(x, scale) if self.bicubic_skip else None

    def reconstruct_radius(self, scale: int) -> int:
        """LR pixels of feature context around a pixel that ``reconstruct`` reads (a safe bound).

        Each convolution's reach ``r`` at resolution factor ``f`` (after the pixel shuffles before it)
        moves at most ``ceil(r / f)`` LR pixels; the sum over the upsampler and the tail.
        With ``bicubic_skip`` it covers the bicubic kernel's reach too (``low_frequency`` of the same
        LR pixels is added).
        """
        _, up = self.branches(scale)
        radius, factor = 0, 1
        for m in [*up.modules(), self.tail]:
            if isinstance(m, nn.PixelShuffle):
                factor *= m.upscale_factor
            elif isinstance(m, nn.Conv2d):
                reach = max((k - 1) // 2 * d for k, d in zip(m.kernel_size, m.dilation, strict=True))
                radius += -(-reach // factor)
        return max(radius, BICUBIC_RADIUS) if self.bicubic_skip else radius

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Super-resolve ``x`` (N, C, H, W) in [0, 1] by ``scale``; output (N, C, sH, sW), not clamped."""
        y = self.reconstruct(self.features(x, scale), scale)
        low = self.low_frequency(x, scale)
        return y if low is None else low + y


class MDRN(MeanShiftResNet):
    """Multi-scale deep residual network (Ren et al. 2019; EDSR-PyTorch's MDSR layout and weights).

    ``bicubic_skip=True`` adds the interpolated image to the output (Fig. 9 of the paper; see the module).
    ``upsampler="balanced"``: sub-pixel upsamplers without a lattice in flat regions (``UPSAMPLERS``).
    """

    def __init__(
        self,
        n_resblocks: int = 80,
        n_feats: int = 64,
        scales: Sequence[int] = (2, 3, 4),
        res_scale: float = 1.0,
        n_colors: int = 3,
        bicubic_skip: bool = False,
        upsampler: str = "subpixel",
    ) -> None:
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"unknown upsampler {upsampler!r}; known: {list(UPSAMPLERS)}")
        args = dict(n_resblocks=n_resblocks, n_feats=n_feats, scales=tuple(scales), res_scale=res_scale,
                    n_colors=n_colors, bicubic_skip=bool(bicubic_skip))  # fmt: skip
        if upsampler != "subpixel":  # recorded only when not the official layout (older specs stay valid)
            args["upsampler"] = upsampler
        super().__init__(n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale, scales=scales,
                         n_colors=n_colors, bicubic_skip=bicubic_skip, spec_args=args)  # fmt: skip
        self.pre_process = nn.ModuleDict(
            {branch_key(s): nn.Sequential(ResBlock(n_feats, 5), ResBlock(n_feats, 5)) for s in self.scales}
        )
        balanced = upsampler == "balanced"
        self.upsample = nn.ModuleDict(
            {branch_key(s): Upsampler(s, n_feats, balanced=balanced) for s in self.scales}
        )

    def branches(self, scale: int) -> tuple[nn.Module, nn.Module]:
        """Return the (pre-processing, upsampler) of ``scale``'s branch."""
        key = branch_key(scale)
        return self.pre_process[key], self.upsample[key]
