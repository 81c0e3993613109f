"""Building blocks shared by every network: base class, residual block, body, upsampler, mean shift.

Every network in :mod:`mdrn.models` derives from :class:`SRNet`, which records the constructor
arguments (for :func:`mdrn.models.model_spec`) and validates ``forward`` inputs (scale, channels,
shape) with one clear ``ValueError`` before any convolution runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mdrn.protocol.color import rgb_to_ycbcr, ycbcr_to_rgb
from mdrn.protocol.resize import imresize

__all__ = [
    "DIV2K_RGB_MEAN",
    "DIV2K_GRAY_MEAN",
    "MeanShift",
    "ResBlock",
    "ResidualBody",
    "SRNet",
    "Upsampler",
    "YChannelNet",
    "balance_subpixel_",
    "conv",
    "icnr_",
    "project_",
    "scale_factors",
]

#: Mean RGB of the DIV2K training images (EDSR-PyTorch ``rgb_mean``), on the [0, 1] scale.
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)
#: Gray mean used for ``n_colors=1``: the BT.601 luma (0.299 R + 0.587 G + 0.114 B) of the DIV2K mean.
DIV2K_GRAY_MEAN: tuple[float] = (
    0.299 * DIV2K_RGB_MEAN[0] + 0.587 * DIV2K_RGB_MEAN[1] + 0.114 * DIV2K_RGB_MEAN[2],
)


def conv(
    in_channels: int, out_channels: int, kernel_size: int, bias: bool = True, padding_mode: str = "zeros"
) -> nn.Conv2d:
    """Return a ``kernel_size`` convolution with 'same' padding (zeros: EDSR-PyTorch ``default_conv``)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias,
                     padding_mode=padding_mode)  # fmt: skip


def scale_factors(scale: int) -> list[int]:
    """Split ``scale = 2^a 3^b`` into pixel-shuffle stages ``[2] * a + [3] * b`` (else ValueError)."""
    if isinstance(scale, bool) or int(scale) != scale or scale < 2:
        raise ValueError(f"scale must be an integer 2^a 3^b >= 2, got {scale!r}")
    rest, stages = int(scale), []
    for factor in (2, 3):
        while rest % factor == 0:
            stages.append(factor)
            rest //= factor
    if rest != 1:
        raise ValueError(f"scale {scale} is not of the form 2^a 3^b (pixel-shuffle stages of 2 and 3)")
    return stages


class SRNet(nn.Module):
    """Base of every network: ``scales``, ``n_colors``, recorded constructor args and input checks."""

    scales: tuple[int, ...]
    n_colors: int
    #: channel counts ``forward`` accepts (Y-channel and bicubic models take gray and RGB alike)
    accepted_colors: tuple[int, ...]

    def __init__(self, *, scales: Sequence[int], n_colors: int, spec_args: dict[str, Any]) -> None:
        super().__init__()
        if n_colors not in (1, 3):
            raise ValueError(f"n_colors must be 1 (gray) or 3 (RGB), got {n_colors!r}")
        scales = tuple(int(s) for s in scales)
        if not scales or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be a non-empty tuple of distinct integers, got {scales!r}")
        if min(scales) < 2:
            raise ValueError(f"scales must be integers >= 2, got {scales!r}")
        self.scales = scales
        self.n_colors = int(n_colors)
        self.accepted_colors = (self.n_colors,)
        self.spec_args = dict(spec_args)

    def check_input(self, x: torch.Tensor, scale: int) -> None:
        """Raise ``ValueError`` for a scale the model lacks, wrong channels, a non-4D or an empty tensor."""
        if scale not in self.scales:
            raise ValueError(
                f"{type(self).__name__} has no x{scale} branch: it serves scales {list(self.scales)}"
            )
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects a float tensor (N, C, H, W), got {shape}")
        if x.shape[1] not in self.accepted_colors:
            raise ValueError(
                f"{type(self).__name__} expects {' or '.join(map(str, self.accepted_colors))} channels "
                f"(n_colors={self.n_colors}), got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects a float tensor in [0, 1], got dtype {x.dtype}")
        if 0 in x.shape[-2:]:
            raise ValueError(f"{type(self).__name__} got an empty image (input shape {tuple(x.shape)})")


class MeanShift(nn.Module):
    """Subtract (or add back) a per-channel mean, with the EDSR-PyTorch ``rgb_range`` factor.

    ``sign=-1``: ``(x - mean) * rgb_range`` maps [0, 1] images to the numbers the official networks see
    (0..255 minus 255 x mean); ``sign=+1``: ``y / rgb_range + mean`` maps back to [0, 1]. Both are
    constants (non-persistent buffers): they follow from ``n_colors`` and are not saved with the weights.
    """

    def __init__(self, mean: Sequence[float], sign: int, rgb_range: float = 255.0) -> None:
        super().__init__()
        if sign not in (-1, 1):
            raise ValueError(f"MeanShift sign must be -1 or +1, got {sign!r}")
        self.sign = sign
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("rgb_range", torch.tensor(float(rgb_range)), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shift ``x`` by the mean (see the class docstring)."""
        if self.sign < 0:
            return (x - self.mean) * self.rgb_range
        return x / self.rgb_range + self.mean


class ResBlock(nn.Module):
    """Residual block ``x + res_scale * body(x)``, body = conv-[BN]-act-conv-[BN] (EDSR: no BN, ReLU)."""

    def __init__(
        self,
        n_feats: int,
        kernel_size: int = 3,
        *,
        res_scale: float = 1.0,
        bn: bool = False,
        act: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(conv(n_feats, n_feats, kernel_size, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(n_feats))
            if i == 0:
                a = act()
                if isinstance(a, nn.ReLU):
                    a.inplace = True  # on the conv's output, which no backward needs
                layers.append(a)
        self.body = nn.Sequential(*layers)
        self.res_scale = float(res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + res_scale * body(x)``, computed in place on ``body(x)``.

        In place: the body's last layer (conv or BN) needs its input, not its output, for the backward;
        measured 8% faster for MDRN B=80 x4 on a 1024x1024 image (``python -m mdrn.bench --only
        tiling_full``: one large map less to allocate and write per block).
        """
        res = self.body(x)
        if self.res_scale != 1.0:
            res = res.mul_(self.res_scale)
        return res.add_(x)


class ResidualBody(nn.Sequential):
    """``n_resblocks`` residual blocks, a conv (and BN if ``bn``), with a global skip from the input.

    Indexed as EDSR-PyTorch's ``body`` (blocks ``0..B-1``, the conv at ``B``), so official keys map 1:1.
    """

    def __init__(
        self,
        n_resblocks: int,
        n_feats: int,
        *,
        res_scale: float = 1.0,
        bn: bool = False,
        act: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        if n_resblocks < 0:
            raise ValueError(f"n_resblocks must be >= 0, got {n_resblocks}")
        layers: list[nn.Module] = [
            ResBlock(n_feats, 3, res_scale=res_scale, bn=bn, act=act) for _ in range(n_resblocks)
        ]
        layers.append(conv(n_feats, n_feats, 3, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(n_feats))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + body(x)``."""
        return x + super().forward(x)


def icnr_(conv: nn.Conv2d, r: int) -> None:
    """ICNR (Aitken et al. 2017): give every sub-pixel phase of a ``conv -> PixelShuffle(r)`` the same
    filter (Kaiming-normal) and bias 0, so the stage starts as a nearest-neighbour upsampling of its input."""
    phases = r * r
    out = conv.weight.shape[0]
    if out % phases:
        raise ValueError(f"a sub-pixel convolution of {out} outputs cannot feed PixelShuffle({r})")
    sub = torch.empty(
        out // phases, *conv.weight.shape[1:], dtype=conv.weight.dtype, device=conv.weight.device
    )
    nn.init.kaiming_normal_(sub, nonlinearity="linear")
    with torch.no_grad():
        conv.weight.copy_(sub.repeat_interleave(phases, dim=0))
        if conv.bias is not None:
            conv.bias.zero_()


def balance_subpixel_(conv: nn.Conv2d, r: int) -> None:
    """Project a ``conv -> PixelShuffle(r)`` so that its ``r x r`` phases answer a flat input alike.

    For each output channel and input channel the phases' filters get the same sum over their taps (the
    difference spread evenly over the taps), and each output channel's phases the same bias: a locally
    constant feature map then gives a constant output, never a pattern of period ``r`` (the lattice a
    sub-pixel upsampler paints into flat tissue). Everything else about the filters stays free.
    """
    phases = r * r
    w = conv.weight
    c_out, c_in, kh, kw = w.shape
    with torch.no_grad():
        v = w.view(c_out // phases, phases, c_in, kh * kw)
        dc = v.sum(dim=-1, keepdim=True)
        v.add_((dc.mean(dim=1, keepdim=True) - dc) / (kh * kw))
        if conv.bias is not None:
            b = conv.bias.view(c_out // phases, phases)
            b.copy_(b.mean(dim=1, keepdim=True).expand_as(b))


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling by ``scale = 2^a 3^b``: per stage conv(F -> r^2 F) + PixelShuffle(r) [+ act].

    x2 and x3 have one stage, x4 two x2 stages, x8 three (EDSR-PyTorch ``Upsampler`` order: the x2
    stages first). Without ``act`` the convs sit at the even indices ``0, 2, 4`` as in the official keys.
    ``balanced=True``: every stage starts as nearest-neighbour upsampling (:func:`icnr_`) and
    :meth:`project_` (called after every optimizer step by the training module) keeps its phases' answer to
    a flat input equal (:func:`balance_subpixel_`); the weights stay a plain sub-pixel convolution, so a
    trained file loads and runs like any other.
    """

    def __init__(
        self, scale: int, n_feats: int, act: Callable[[], nn.Module] | None = None, *, balanced: bool = False
    ) -> None:
        layers: list[nn.Module] = []
        self.stages: list[tuple[int, int]] = []  # (index of the conv, r)
        for r in scale_factors(scale):
            self.stages.append((len(layers), r))
            layers += [conv(n_feats, r * r * n_feats, 3), nn.PixelShuffle(r)]
            if act is not None:
                layers.append(act())
        super().__init__(*layers)
        self.scale = int(scale)
        self.balanced = bool(balanced)
        if self.balanced:
            for i, r in self.stages:
                icnr_(self[i], r)

    def project_(self) -> None:
        """Re-impose the balance of the phases (no-op unless ``balanced``)."""
        if self.balanced:
            for i, r in self.stages:
                balance_subpixel_(self[i], r)


def project_(net: nn.Module) -> None:
    """Apply every constraint a network keeps during training (its modules' ``project_``), in place."""
    for m in net.modules():
        if m is not net and callable(getattr(m, "project_", None)):
            m.project_()


def _no_autocast(x: torch.Tensor) -> torch.autocast:
    """A context that disables autocast on ``x``'s device type (steps that stay in ``x``'s precision)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


class YChannelNet(SRNet):
    """Pre-upsampling network on the Y channel: MATLAB-bicubic upscaling, ``net`` on Y, bicubic chroma.

    RGB input: bicubic up, convert to YCbCr (MATLAB ``rgb2ycbcr``, float), ``y + net(y)`` if
    ``residual`` else ``net(y)``, back to RGB with the bicubic Cb/Cr. Gray input: the gray values play
    the part of Y. Serves any scale given in ``scales``. Under autocast (bf16 inference) only ``net`` runs
    in the lower precision: the interpolation, the colour conversions and the residual add stay in the
    input's precision (CUDA autocast would run the colour conversion's ``einsum`` in bf16).
    """

    def __init__(
        self, net: nn.Module, *, residual: bool, scales: Sequence[int], n_colors: int, spec_args: dict
    ) -> None:
        super().__init__(scales=scales, n_colors=n_colors, spec_args=spec_args)
        self.accepted_colors = (1, 3)
        self.net = net
        self.residual = residual

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """Upscale ``x`` (N, 1|3, H, W) in [0, 1] by ``scale``; output not clamped."""
        self.check_input(x, scale)
        with _no_autocast(x):
            up = imresize(x, scale)
            ycc = rgb_to_ycbcr(up) if x.shape[1] == 3 else up
            y = ycc[:, :1]
        body = self.net(y).to(y.dtype)  # only the body runs under an active autocast (bf16)
        with _no_autocast(x):
            y = y + body if self.residual else body
            if x.shape[1] == 1:
                return y
            return ycbcr_to_rgb(torch.cat([y, ycc[:, 1:]], dim=1))
