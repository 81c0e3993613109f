"""Bicubic: the parameter-free baseline, MATLAB-exact upscaling (:func:`mdrn.protocol.resize.imresize`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mdrn.models.blocks import SRNet
from mdrn.protocol.resize import imresize

__all__ = ["Bicubic"]


class Bicubic(SRNet):
    """MATLAB bicubic ``imresize`` by ``scale`` (gray or RGB); serves whichever ``scales`` it is given."""

    def __init__(self, scales: Sequence[int] = (2, 3, 4), n_colors: int = 3) -> None:
        super().__init__(
            scales=scales, n_colors=n_colors, spec_args=dict(scales=tuple(scales), n_colors=n_colors)
        )
        self.accepted_colors = (1, 3)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Return ``imresize(x, scale)`` (not rounded, not clamped)."""
        self.check_input(x, scale)
        return imresize(x, scale)
