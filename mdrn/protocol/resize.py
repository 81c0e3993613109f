"""MATLAB-compatible bicubic resize (``imresize(..., 'bicubic')``), mod-crop and the LR degradation.

``imresize`` reproduces MATLAB's algorithm on the last two dims of a tensor ``(..., H, W)``:

* Keys cubic kernel with a = -0.5 (support [-2, 2]);
* output pixel ``x`` (1-based) samples the input at ``u = x / s + 0.5 (1 - 1 / s)``;
* when downscaling (s < 1) with antialiasing, the kernel is stretched to ``s * cubic(s t)``, width 4 / s;
* the weights of each output pixel are normalised to sum 1; out-of-range taps are mirrored
  (symmetric padding: ``... 2 1 | 1 2 ... n | n n-1 ...``); taps whose weight is zero for every output
  pixel are dropped;
* dimensions are resized in MATLAB's order (ascending scale, rows first for equal scales);
* the output size is ``ceil(in * scale)``; the output is neither rounded nor clamped.

The weights are computed once in float64 (as MATLAB does) per ``(in, out, scale, antialiasing)`` and
cached per device/dtype; they are applied tap by tap (each output row gathers its few input rows;
columns are rows of the transpose), so the cost is linear in the image size. Inputs must be floating
tensors (float16/bfloat16/float32/float64); integer tensors raise ``TypeError`` -- convert them
explicitly, e.g. ``x.float() / 255``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["BICUBIC_RADIUS", "cubic", "degrade", "imresize", "modcrop", "resize_weights"]

#: Input pixels of context that bicubic *upscaling* reads on each side of a pixel (the cubic kernel is
#: nonzero for |distance| < 2): a crop with this much context upscales exactly like the whole image.
BICUBIC_RADIUS = 2

_KERNEL_WIDTH = 4.0


def cubic(t: np.ndarray) -> np.ndarray:
    """Return Keys' cubic convolution kernel (a = -0.5), MATLAB's bicubic kernel, at ``t``."""
    a = np.abs(t)
    a2 = a * a
    a3 = a2 * a
    inner = (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1)
    outer = (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1) & (a <= 2))
    return inner + outer


@functools.lru_cache(maxsize=256)
def resize_weights(
    in_length: int, out_length: int, scale: float, antialiasing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return MATLAB's ``contributions``: 0-based input indices and float64 weights, both (out, taps)."""
    if scale < 1 and antialiasing:
        width = _KERNEL_WIDTH / scale

        def kernel(t: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * t)

    else:
        width = _KERNEL_WIDTH
        kernel = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # symmetric padding: aux = [1..n, n..1], index = aux(mod(index - 1, 2n) + 1)
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    idx = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)
    return idx[:, keep], weights[:, keep]


@functools.lru_cache(maxsize=256)
def _weights_on(
    in_length: int,
    out_length: int,
    scale: float,
    antialiasing: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the cached contributions as tensors on ``device`` (indices int64, weights ``dtype``)."""
    idx, w = resize_weights(in_length, out_length, scale, antialiasing)
    return (
        torch.from_numpy(idx).to(device=device),
        torch.from_numpy(w).to(device=device, dtype=dtype),
    )


def _traced_weights(
    in_length: int | torch.SymInt,
    out_length: int | torch.SymInt,
    scale: float,
    antialiasing: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`resize_weights` as torch operations, for sizes only known when the graph runs (export).

    The same float64 arithmetic in the same order as the numpy version (the cubic's terms, the row sums
    added tap after tap), so the weights are the same numbers. No tap is dropped: a tap whose weight is
    zero for every output pixel adds exact zeros, so the sums do not change.
    """
    if scale < 1 and antialiasing:
        width = _KERNEL_WIDTH / scale
        stretch = scale
    else:
        width, stretch = _KERNEL_WIDTH, 1.0
    f64 = torch.float64
    x = torch.arange(1, out_length + 1, device=device, dtype=f64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + torch.arange(taps, device=device, dtype=f64)[None, :]  # 1-based
    t = u[:, None] - indices
    a = torch.abs(t * stretch) if stretch != 1.0 else torch.abs(t)
    a2 = a * a
    a3 = a2 * a
    inner = (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1).to(f64)
    outer = (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1) & (a <= 2)).to(f64)
    weights = inner + outer
    if stretch != 1.0:
        weights = stretch * weights
    total = weights[:, 0] * 0.0  # numpy's sum of a short row: 0 + w0 + w1 + ...
    for k in range(taps):
        total = total + weights[:, k]
    weights = weights / total[:, None]
    # symmetric padding: aux = [1..n, n..1], index = aux(mod(index - 1, 2n) + 1)
    # (the modulo of whole numbers in float64, exact; ONNX has no remainder by a size known at run time)
    period = 2 * in_length
    m = indices - 1 - period * torch.floor((indices - 1) / period)
    idx = torch.where(m < in_length, m, period - 1 - m).to(torch.int64)
    return idx, weights.to(dtype)


def _resize_rows(x: torch.Tensor, out_length: int, scale: float, antialiasing: bool) -> torch.Tensor:
    """Resize ``x`` along dim -2, accumulating one tap (a gathered row per output row) at a time."""
    if any(isinstance(n, torch.SymInt) for n in (x.shape[-2], out_length)):  # traced with dynamic sizes
        idx, w = _traced_weights(x.shape[-2], out_length, float(scale), bool(antialiasing), x.device, x.dtype)
    else:
        idx, w = _weights_on(x.shape[-2], out_length, float(scale), bool(antialiasing), x.device, x.dtype)
    out = x.index_select(-2, idx[:, 0]) * w[:, 0, None]
    for k in range(1, idx.shape[1]):
        out.addcmul_(x.index_select(-2, idx[:, k]), w[:, k, None])
    return out


def _resize_dim(x: torch.Tensor, dim: int, out_length: int, scale: float, antialiasing: bool) -> torch.Tensor:
    """Resize ``x`` along ``dim`` (-2 for rows, -1 for columns, done as rows of the transpose)."""
    if dim == -2:
        return _resize_rows(x, out_length, scale, antialiasing)
    xt = x.transpose(-1, -2).contiguous()
    return _resize_rows(xt, out_length, scale, antialiasing).transpose(-1, -2).contiguous()


def _pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """Return ``value`` as a (rows, columns) pair of positive floats."""
    if isinstance(value, (int, float)):
        pair = (float(value), float(value))
    else:
        pair = tuple(float(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"imresize: {name} must be a number or a pair (H, W), got {value!r}")
    if not all(v > 0 and math.isfinite(v) for v in pair):
        raise ValueError(f"imresize: {name} must be positive, got {value!r}")
    return pair  # type: ignore[return-value]


def imresize(
    x: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    *,
    size: Sequence[int] | None = None,
    antialiasing: bool = True,
) -> torch.Tensor:
    """Resize the last two dims of a float tensor ``(..., H, W)`` with MATLAB's bicubic ``imresize``.

    Give ``scale`` (a number or an (H, W) pair; output size ``ceil(in * scale)``) or ``size`` (H, W;
    then the scale is ``out / in`` per dim). Giving both uses ``size`` for the output and ``scale`` for
    the kernel, as MATLAB does internally. Not rounded, not clamped.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"imresize expects a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"imresize expects a floating tensor, got dtype {x.dtype}; convert explicitly "
            "(e.g. x.float() / 255 for uint8)"
        )
    if x.ndim < 2:
        raise ValueError(f"imresize expects a tensor (..., H, W), got shape {tuple(x.shape)}")
    in_h, in_w = x.shape[-2], x.shape[-1]
    if in_h < 1 or in_w < 1:
        raise ValueError(f"imresize: empty image of size {in_h}x{in_w}")
    if scale is None and size is None:
        raise ValueError("imresize needs a scale or a size")
    if size is not None:
        if len(size) != 2 or not all(int(s) == s and s > 0 for s in size):
            raise ValueError(f"imresize: size must be two positive integers (H, W), got {size!r}")
        out_h, out_w = int(size[0]), int(size[1])
    if scale is None:
        s_h, s_w = out_h / in_h, out_w / in_w
    else:
        s_h, s_w = _pair(scale, "scale")
        if size is None:
            out_h, out_w = math.ceil(in_h * s_h), math.ceil(in_w * s_w)
    # MATLAB: order = sort(scale) -> the dimension with the smaller scale first (rows on ties)
    steps = [(-2, out_h, s_h), (-1, out_w, s_w)]
    if s_w < s_h:
        steps.reverse()
    out = x
    for dim, length, s in steps:
        out = _resize_dim(out, dim, length, s, antialiasing)
    return out


def modcrop(x: torch.Tensor | np.ndarray, scale: int) -> torch.Tensor | np.ndarray:
    """Crop bottom/right to multiples of ``scale``: tensors ``(..., H, W)``, numpy arrays ``(H, W[, C])``."""
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"modcrop: scale must be a positive integer, got {scale}")
    if isinstance(x, torch.Tensor):
        if x.ndim < 2:
            raise ValueError(f"modcrop expects a tensor (..., H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2], x.shape[-1]
        hc, wc = h - h % scale, w - w % scale
        if hc == 0 or wc == 0:
            raise ValueError(f"modcrop: image {h}x{w} is smaller than the scale {scale}")
        return x[..., :hc, :wc]
    if isinstance(x, np.ndarray):
        if x.ndim not in (2, 3):
            raise ValueError(f"modcrop expects an array (H, W) or (H, W, C), got shape {x.shape}")
        h, w = x.shape[0], x.shape[1]
        hc, wc = h - h % scale, w - w % scale
        if hc == 0 or wc == 0:
            raise ValueError(f"modcrop: image {h}x{w} is smaller than the scale {scale}")
        return x[:hc, :wc]
    raise TypeError(f"modcrop expects a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def degrade(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Return the LR of ``hr`` (..., H, W): MATLAB bicubic 1/scale of the mod-cropped HR, not rounded."""
    scale = int(scale)
    hr = modcrop(hr, scale)
    h, w = hr.shape[-2], hr.shape[-1]
    return imresize(hr, 1.0 / scale, size=(h // scale, w // scale))
