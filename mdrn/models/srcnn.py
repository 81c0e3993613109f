"""SRCNN (Dong et al. 2014/2016): three convolutions on the Y channel of the bicubic-upscaled image."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mdrn.models.blocks import YChannelNet, conv

__all__ = ["SRCNN"]

PADDING_MODES = ("zeros", "replicate")


class SRCNN(YChannelNet):
    """SRCNN f1-f2-f3 (default 9-1-5, 64/32 filters, ReLU) on Y of the MATLAB-bicubic upscaled input.

    ``f2=5`` gives the 9-5-5 network of the journal version (Dong et al., TPAMI 2016). The convolutions
    keep the image size: ``padding="replicate"`` repeats the border pixels as the authors' MATLAB test
    code does (``imfilter(..., 'same', 'replicate')``); ``"zeros"`` pads with zeros. Dong et al. train
    one network per scale: give one scale in ``scales`` (several: one network serves them all).
    """

    def __init__(
        self,
        n1: int = 64,
        n2: int = 32,
        scales: Sequence[int] = (2, 3, 4),
        n_colors: int = 3,
        f1: int = 9,
        f2: int = 1,
        f3: int = 5,
        padding: str = "zeros",
    ) -> None:
        if padding not in PADDING_MODES:
            raise ValueError(f"SRCNN padding must be one of {PADDING_MODES}, got {padding!r}")
        if any(int(f) < 1 or int(f) % 2 == 0 for f in (f1, f2, f3)):
            raise ValueError(f"SRCNN kernel sizes must be odd and >= 1, got {f1}-{f2}-{f3}")
        args = dict(
            n1=n1, n2=n2, scales=tuple(scales), n_colors=n_colors, f1=f1, f2=f2, f3=f3, padding=padding
        )
        net = nn.Sequential(conv(1, n1, f1, padding_mode=padding), nn.ReLU(inplace=True),
                            conv(n1, n2, f2, padding_mode=padding), nn.ReLU(inplace=True),
                            conv(n2, 1, f3, padding_mode=padding))  # fmt: skip
        super().__init__(net, residual=False, scales=scales, n_colors=n_colors, spec_args=args)
