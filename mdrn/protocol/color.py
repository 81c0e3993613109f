"""BT.601 colour conversions with MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` conventions on the [0, 1] scale.

MATLAB (for double input in [0, 1]) maps RGB to "studio swing" YCbCr::

    Y  = (16  +  65.481 R + 128.553 G +  24.966 B) / 255
    Cb = (128 -  37.797 R -  74.203 G + 112.000 B) / 255
    Cr = (128 + 112.000 R -  93.786 G -  18.214 B) / 255

Nothing is rounded (MATLAB rounds only for integer inputs, which the evaluation protocol does not use).
The inverse uses the exact inverse matrix, as MATLAB does. Tensors have their channels at dim -3
(``(N, 3, H, W)`` or ``(3, H, W)``) and may be of any floating dtype and on any device; the result has
the input's dtype and device.
"""

from __future__ import annotations

import torch

__all__ = ["RGB_TO_YCBCR", "YCBCR_OFFSET", "Y_FACTORS", "rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb"]

#: MATLAB's rgb2ycbcr matrix (rows Y, Cb, Cr) for RGB in [0, 1] giving YCbCr in 0..255 units.
RGB_TO_YCBCR: tuple[tuple[float, float, float], ...] = (
    (65.481, 128.553, 24.966),
    (-37.797, -74.203, 112.0),
    (112.0, -93.786, -18.214),
)
#: MATLAB's rgb2ycbcr offsets (Y, Cb, Cr) in 0..255 units.
YCBCR_OFFSET: tuple[float, float, float] = (16.0, 128.0, 128.0)


def _check(x: torch.Tensor, name: str) -> None:
    """Raise a clear error unless ``x`` is a floating tensor with 3 channels at dim -3."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} expects a floating tensor in [0, 1], got dtype {x.dtype}")
    if x.ndim < 3:
        raise ValueError(f"{name} expects a tensor of shape (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    if x.shape[-3] != 3:
        raise ValueError(
            f"{name} expects 3 channels at dim -3, got {x.shape[-3]} channels (shape {tuple(x.shape)})"
        )


def _transforms() -> dict[bool, tuple[torch.Tensor, torch.Tensor]]:
    """The forward and inverse (matrix, offset) on the [0, 1] scale in float64, computed once at import:
    no ``linalg.inv`` in a traced graph (ONNX has none; VDSR and SRCNN export through ``ycbcr_to_rgb``)."""
    mat = torch.tensor(RGB_TO_YCBCR, dtype=torch.float64) / 255.0
    off = torch.tensor(YCBCR_OFFSET, dtype=torch.float64) / 255.0
    inv = torch.linalg.inv(mat)
    return {False: (mat, off), True: (inv, -(inv @ off))}


_TRANSFORMS = _transforms()


def _matrix(x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the (3, 3) matrix and (3,) offset of the [0, 1]-scale transform, in x's dtype/device."""
    mat, off = _TRANSFORMS[inverse]
    return mat.to(device=x.device, dtype=x.dtype), off.to(device=x.device, dtype=x.dtype)


def _apply(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    """Apply the affine colour transform along dim -3."""
    mat, off = _matrix(x, inverse)
    out = torch.einsum("kc,...chw->...khw", mat, x)
    return out + off[:, None, None]


#: BT.601 luma of RGB on the [0, 1] scale: ``Y = kr R + kg G + kb B + offset`` as (kr, kg, kb, offset)
#: (what :func:`rgb_to_y` computes; the CPU scoring kernel reads the same numbers)
Y_FACTORS: tuple[float, float, float, float] = (
    RGB_TO_YCBCR[0][0] / 255.0,
    RGB_TO_YCBCR[0][1] / 255.0,
    RGB_TO_YCBCR[0][2] / 255.0,
    YCBCR_OFFSET[0] / 255.0,
)


def rgb_to_y(x: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Return BT.601 luma ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255`` of RGB in [0, 1] (dim -3 kept).

    ``out``: a tensor of shape (..., 1, H, W) and x's dtype to write the result into (and return).
    """
    _check(x, "rgb_to_y")
    r, g, b = x.unbind(dim=-3)
    kr, kg, kb, off = Y_FACTORS
    # Python-float factors and one dtype: the vectorized kernels (mixed dtypes measured 2x slower)
    y = torch.mul(r, kr, out=None if out is None else out.select(-3, 0))
    y.add_(g, alpha=kg).add_(b, alpha=kb).add_(off)  # one temporary (or none), no division
    return y.unsqueeze(-3) if out is None else out


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """Convert RGB in [0, 1] to YCbCr on the [0, 1] scale exactly as MATLAB's ``rgb2ycbcr`` (not rounded)."""
    _check(x, "rgb_to_ycbcr")
    return _apply(x, inverse=False)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Convert YCbCr on the [0, 1] scale to RGB as MATLAB's ``ycbcr2rgb`` (exact inverse, not clamped)."""
    _check(x, "ycbcr_to_rgb")
    return _apply(x, inverse=True)
