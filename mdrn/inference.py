"""Inference helpers: geometric self-ensemble and tiled, seamless, memory-bounded upscaling.

Tiling: the LR image is cut into ``tile x tile`` cores; each core is run together with ``overlap`` LR
pixels of context on every side (clipped at the image border), and only the core's part of the output
is written into a preallocated output. A convolutional network whose receptive-field radius (in LR
pixels) is at most ``overlap`` therefore gives exactly the untiled result (up to float rounding), and
peak memory depends on the tile size, not on the image size. Deep networks have a theoretical radius
far larger than their effective one (MDRN: 2 * n_resblocks + 15, i.e. 175 for B=80); ``overlap`` then
trades exactness for speed. Measured for MDRN B=80 (random init, x4, 96x96 image, 32-pixel tiles; see
``scripts/bench_tiling.py --seams``): max |tiled - untiled| = 5e-2 / 6.4e-4 / 1.8e-6 / 0 for an
overlap of 8 / 16 / 32 / 64, hence the default of 32.

Channels: a 3-channel (RGB) network given a gray image sees the gray plane replicated to RGB and its
output is the mean of the three output channels; a 1-channel (gray) network given an RGB image is run
on each colour plane separately. Any other mismatch raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_OVERLAP", "MIN_SIDE", "forward_x8", "receptive_radius", "upscale"]

#: Default context (LR pixels) around every tile core.
DEFAULT_OVERLAP = 32
#: Smallest image side accepted by ``upscale``.
MIN_SIDE = 2
#: Smallest tile tried after repeated out-of-memory errors.
_MIN_TILE = 16


def _transform(x: Tensor, k: int) -> Tensor:
    """Apply the k-th of the 8 dihedral transforms (k % 4 quarter turns, then a flip if k >= 4)."""
    y = torch.rot90(x, k % 4, dims=(-2, -1)) if k % 4 else x
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def _inverse_transform(y: Tensor, k: int) -> Tensor:
    """Undo ``_transform(., k)``."""
    if k >= 4:
        y = torch.flip(y, dims=(-1,))
    return torch.rot90(y, -(k % 4), dims=(-2, -1)) if k % 4 else y


def forward_x8(net: Callable[[Tensor, int], Tensor], x: Tensor, scale: int) -> Tensor:
    """Geometric self-ensemble: mean of the outputs for the 8 flips/rotations of ``x`` (N, C, H, W)."""
    acc: Tensor | None = None
    for k in range(8):
        y = _inverse_transform(net(_transform(x, k), scale), k)
        acc = y if acc is None else acc.add_(y)
    assert acc is not None
    return acc.div_(8)


def _conv_reach(module: nn.Module) -> int:
    """Sum of the convolutions' reach along a module; only the widest branch of an ``nn.ModuleDict``."""
    if isinstance(module, nn.Conv2d):
        (kh, kw), (dh, dw) = module.kernel_size, module.dilation
        return max((kh - 1) // 2 * dh, (kw - 1) // 2 * dw)
    reaches = [_conv_reach(m) for m in module.children()]
    if isinstance(module, nn.ModuleDict):
        return max(reaches, default=0)
    return sum(reaches)


def receptive_radius(net: nn.Module) -> int:
    """Upper bound of a network's receptive-field radius in input pixels (a safe ``overlap``).

    Sums the reach of the convolutions (per-scale branches in ``nn.ModuleDict``: the widest one), each
    counted as if it ran at the input resolution (over-estimating those after an upsampler), plus 2
    pixels for a bicubic resampling. MDRN: 2 * n_resblocks + 15.
    """
    return 2 + _conv_reach(net)


def _adapt_channels(net: nn.Module, x: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """Map the image's channels to what the network accepts; return the input and the way back."""
    n_img = x.shape[1]
    n_net = getattr(net, "n_colors", None)
    accepted = tuple(getattr(net, "accepted_colors", ()) or ((n_net,) if n_net else ()))
    if not accepted or n_img in accepted:
        return x, lambda y: y
    if n_img == 1 and 3 in accepted:
        return x.expand(-1, 3, -1, -1), lambda y: y.mean(dim=1, keepdim=True)
    if n_img == 3 and 1 in accepted:
        n = x.shape[0]
        return x.reshape(n * 3, 1, *x.shape[-2:]), lambda y: y.reshape(n, 3, *y.shape[-2:])
    raise ValueError(f"the network takes {n_net}-channel images, this image has {n_img} channels")


def _run(net: nn.Module, x: Tensor, scale: int, ensemble: bool) -> Tensor:
    """One forward pass (optionally self-ensembled) with channel adaptation."""
    xin, back = _adapt_channels(net, x)
    y = forward_x8(net, xin, scale) if ensemble else net(xin, scale)
    return back(y)


def _is_oom(err: BaseException) -> bool:
    """True for a (CUDA or generic) torch out-of-memory error."""
    oom_types = tuple(
        t
        for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
        if t
    )
    return isinstance(err, oom_types)


def _check_input(net: nn.Module, x: Tensor, scale: int) -> Tensor:
    """Validate shape, size and scale; return x as (N, C, H, W)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError("upscale expects a float tensor (C, H, W) or (N, C, H, W) in [0, 1]")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"upscale expects (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 (gray) or 3 (RGB) channels, got {x.shape[1]}")
    h, w = x.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"image of {w}x{h} pixels is too small to upscale (at least {MIN_SIDE}x{MIN_SIDE})")
    scales = getattr(net, "scales", None)
    if scales is not None and scale not in scales:
        raise ValueError(f"the model has no x{scale} branch; it serves scales {tuple(scales)}")
    return x


def _tile_bounds(size: int, tile: int) -> list[tuple[int, int]]:
    """Core intervals along one axis: the fewest cores of at most ``tile`` pixels, of equal sizes."""
    n = -(-size // tile)
    step = -(-size // n)
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def _upscale_tiled(
    net: nn.Module,
    x: Tensor,
    scale: int,
    tile: int,
    overlap: int,
    ensemble: bool,
    device: torch.device,
    out: Tensor,
) -> None:
    """Fill ``out`` tile by tile (cores of ``tile`` LR pixels, ``overlap`` pixels of context)."""
    h, w = x.shape[-2:]
    for y0, y1 in _tile_bounds(h, tile):
        a0, a1 = max(y0 - overlap, 0), min(y1 + overlap, h)
        for x0, x1 in _tile_bounds(w, tile):
            b0, b1 = max(x0 - overlap, 0), min(x1 + overlap, w)
            patch = x[..., a0:a1, b0:b1].to(device, non_blocking=True)
            y = _run(net, patch, scale, ensemble)
            core = y[..., (y0 - a0) * scale : (y1 - a0) * scale, (x0 - b0) * scale : (x1 - b0) * scale]
            out[..., y0 * scale : y1 * scale, x0 * scale : x1 * scale] = core.to(out.device, out.dtype)
            del patch, y, core


def upscale(
    net: nn.Module,
    x: Tensor,
    scale: int,
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    ensemble: bool = False,
    device: str | torch.device | None = None,
    out: Tensor | np.ndarray | None = None,
) -> Tensor:
    """Upscale ``x`` ((C, H, W) or (N, C, H, W), float in [0, 1]) by ``scale``, tiled if ``tile`` is set.

    ``tile`` is the tile core size in LR pixels (``None``: whole image at once), ``overlap`` the LR
    context around each core, ``ensemble`` the x8 self-ensemble, ``device`` where the network runs
    (default: the device of ``x``; the network is moved there). ``out`` optionally receives the result:
    a preallocated tensor or numpy array (e.g. a ``np.memmap``) of shape (N, C, H*scale, W*scale).
    On a GPU out-of-memory error the tile is halved and the image redone. The result (not clamped)
    has the batch dimensions of ``x`` and lives on ``x``'s device (or is ``out`` as a tensor view).
    """
    squeeze = x.dim() == 3
    x4 = _check_input(net, x, scale)
    if tile is not None and tile < 1:
        raise ValueError(f"tile must be a positive number of LR pixels, got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    dev = torch.device(device) if device is not None else x4.device
    n, c, h, w = x4.shape
    shape = (n, c, h * scale, w * scale)
    if out is None:
        dest = torch.empty(shape, dtype=x4.dtype, device=x4.device)
    else:
        dest = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
        if tuple(dest.shape) != shape:
            raise ValueError(f"out has shape {tuple(dest.shape)}, expected {shape}")

    was_training = net.training
    net.to(dev).eval()
    try:
        with torch.inference_mode():
            cur = tile
            while True:
                try:
                    if cur is None or (cur >= h and cur >= w):
                        y = _run(net, x4.to(dev), scale, ensemble)
                        dest.copy_(y.to(dest.device, dest.dtype))
                        del y
                    else:
                        _upscale_tiled(net, x4, scale, cur, overlap, ensemble, dev, dest)
                    break
                except Exception as err:  # noqa: BLE001 - only OOM is retried, others re-raised
                    if not _is_oom(err):
                        raise
                    nxt = max(h, w) // 2 if cur is None else cur // 2
                    if nxt < _MIN_TILE:
                        raise
                    cur = nxt
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
    finally:
        net.train(was_training)
    return dest[0] if squeeze else dest
