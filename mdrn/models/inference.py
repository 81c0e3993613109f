"""Inference helpers: geometric self-ensemble and tiled, seamless, memory-bounded upscaling.

Tiling: the LR image is cut into ``tile x tile`` cores; each core is run together with ``overlap`` LR
pixels of context on every side (clipped at the image border), and only the core's part of the output
is written into a preallocated output. A convolutional network whose receptive-field radius (in LR
pixels) is at most ``overlap`` therefore gives exactly the untiled result (up to float rounding), and
peak memory depends on the tile size, not on the image size. Deep networks have a theoretical radius
far larger than their effective one (MDRN: 2 * n_resblocks + 15, i.e. 175 for B=80). The default
``overlap`` is that bound (``default_overlap(net)``), so a tiled result is the untiled one up to float
rounding whatever the weights; a smaller ``overlap`` trades exactness for speed. Measured for MDRN B=80
(random init, x2, 96x96 image, 32-pixel tiles, ``memory=None``): max |tiled - untiled| = 3.3e-2 /
3.4e-4 / 2.0e-6 for an overlap of 8 / 16 / 32; trained weights reach further than random ones.

Two stages: a network with ``features(x, scale)`` (the LR-resolution feature map: everything before the
upsampler), ``reconstruct(features, scale)`` (upsampler and tail) and ``reconstruct_radius(scale)`` (MDRN,
EDSR) is tiled in two stages, because its memory is dominated by the upsampler (x4: 256-channel maps at
twice the LR resolution, ~9 KB per LR pixel against ~1.3 KB for the 64-channel body). The body runs on
large tiles sized by the ``memory`` budget (a 1024x1024 image is one tile at the default budget: no
context recomputed); each body tile keeps the features of its core plus ``reconstruct_radius`` pixels,
and ``reconstruct`` runs over sub-tiles of that feature map with only that small context, writing into
the preallocated output. Nothing but the output grows with the image: at any time one body tile's
activations, or one body tile's feature map plus one reconstruct sub-tile, are alive, so the peak is
about ``memory`` + the output + the framework and weights (~0.25 GB on CPU); with ``out`` a
``np.memmap`` not even the output is held in memory. A budget below what one tile with its context
needs raises ``ValueError``.

Speed on CPU: an ``upscale`` call runs under one :func:`mdrn.perf.malloc_reuse` block (glibc keeps freed
memory, so the body's activation maps, 256 MB each for a 1024x1024 tile, and every later tile's maps are
reused instead of mmap-ed and page-faulted afresh every layer and every tile), and reconstruct sub-tiles are
capped so that their largest map stays under 32 MB (``_SUBTILE_MAP_BYTES``). Measured (``python -m
mdrn.bench --only tiling_full``, MDRN B=80 F=64 x4 of a 1024x1024 image, 2-core Xeon, recorded in
experiments/results/bench/ as vm-2026-11-30-6): 78.3 s against 132.1 s for EDSR-PyTorch's 4-quadrant split
(which recomputes 1.12x the pixels), 116.2 s without malloc_reuse (49.6 GB of page faults, 54 s of kernel
time), 127.0 s with body tiles capped under 32 MB maps (1.45x recomputed); peak RSS 1.79 GB (1.48 GiB above
the framework and weights: within the 1.5 GiB budget plus the 192 MB output). With one block per network
call instead (vm-2026-11-30-2, the same VM running 1.5x faster): 53.0 s against 85.9 s, peak 1.29 GiB above
setup; the tile forward alone (``python scripts/bench_malloc_reuse.py``): one block across calls 9% faster
than one per call at x4, 4% at x2.
Every LR pixel goes through the body exactly once (1.00 LR pixel per image pixel).

Channels: a 3-channel (RGB) network given a gray image sees the gray plane replicated to RGB and its
output is the mean of the three output channels; a 1-channel (gray) network given an RGB image is run
on each colour plane separately. Any other mismatch raises ``ValueError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from mdrn.models.window import IntensityWindow, WindowRule, rule_of
from mdrn.perf import malloc_reuse
from mdrn.protocol.resize import BICUBIC_RADIUS

__all__ = [
    "DEFAULT_MEMORY",
    "DEFAULT_OVERLAP",
    "MIN_SIDE",
    "default_overlap",
    "forward_x8",
    "low_frequency_image",
    "plan_two_stage",
    "receptive_radius",
    "supports_two_stage",
    "upscale",
    "window_for",
]

#: Default context (LR pixels) around every tile core: ``None`` = the network's ``default_overlap``.
DEFAULT_OVERLAP: int | None = None
#: Smallest image side accepted by ``upscale``.
MIN_SIDE = 2
#: Smallest tile tried after repeated out-of-memory errors.
_MIN_TILE = 16
#: Activation budget (bytes) of the two-stage path: body tiles and reconstruct sub-tiles are sized to it.
DEFAULT_MEMORY = 3 << 29  # 1.5 GiB
#: Live float32 maps of ``n_feats`` channels per LR pixel while the body runs (measured on CPU: 5).
_BODY_MAPS = 5
#: Live float32 maps of ``n_feats`` channels per output pixel while ``reconstruct`` runs (x4 measured: 2.25).
_RECONSTRUCT_MAPS = 2.5
#: Largest map of a reconstruct sub-tile (``n_feats`` channels at the output resolution, or ``r^2 n_feats``
#: before a pixel shuffle): 32 MB, glibc's largest heap block by default. Larger sub-tiles only save the
#: few pixels of context ``reconstruct_radius`` adds, and their maps were mmap-ed and page-faulted anew.
_SUBTILE_MAP_BYTES = 32 << 20


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
    return BICUBIC_RADIUS + _conv_reach(net)


def default_overlap(net: nn.Module) -> int:
    """The tile context ``upscale`` uses by default: ``receptive_radius(net)``, so tiling is seamless."""
    return receptive_radius(net)


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
    if isinstance(scale, bool) or not hasattr(scale, "__index__"):
        raise ValueError(f"scale must be an integer, got {scale!r}")
    scales = getattr(net, "scales", None)
    if scales is not None and scale not in scales:
        raise ValueError(f"the model has no x{scale} branch; it serves scales {tuple(scales)}")
    return x


def _split(size: int, n: int) -> list[tuple[int, int]]:
    """``size`` pixels cut into (at most) ``n`` core intervals of equal sizes."""
    step = -(-size // n)
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def _tile_bounds(size: int, tile: int) -> list[tuple[int, int]]:
    """Core intervals along one axis: the fewest cores of at most ``tile`` pixels, of equal sizes."""
    return _split(size, -(-size // tile))


def _square_grid(h: int, w: int, tile: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Row and column cores of at most ``tile`` pixels."""
    return _tile_bounds(h, tile), _tile_bounds(w, tile)


def _context_px(bounds: list[tuple[int, int]], size: int, context: int) -> tuple[int, int]:
    """(sum, max) over cores of the core's length plus ``context`` pixels each side, clipped to the image."""
    lengths = [min(b + context, size) - max(a - context, 0) for a, b in bounds]
    return sum(lengths), max(lengths)


def _max_len(size: int, n: int, context: int) -> int:
    """Longest tile (core + context, clipped) of ``_split(size, n)``; an upper bound for over 256 cores."""
    step = -(-size // n)
    if n > 256:
        return min(step + 2 * context, size)
    return _context_px(_split(size, n), size, context)[1]


def _grid(h: int, w: int, context: int, max_px: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Row and column cores whose tiles (core + ``context``, clipped) hold at most ``max_px`` pixels each;
    among such grids the one with the fewest pixels in all (the least recomputed context). ``ValueError``
    if not even a tile of one core pixel fits."""
    best: tuple[int, list[tuple[int, int]], list[tuple[int, int]]] | None = None
    last_step = 0
    for ny in range(1, h + 1):
        step = -(-h // ny)
        if step == last_step:
            continue  # same cores as the previous ny
        last_step = step
        width = max_px // _max_len(h, ny, context)
        if _max_len(w, w, context) > width:
            continue
        lo, hi = 1, w  # the fewest columns whose tiles fit in ``width``
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if _max_len(w, mid, context) <= width else (mid + 1, hi)
        rows, cols = _split(h, ny), _split(w, lo)
        total = _context_px(rows, h, context)[0] * _context_px(cols, w, context)[0]
        if best is None or total < best[0]:
            best = (total, rows, cols)
        if lo == 1:
            break  # more rows only add context
    if best is None:
        need = min(h, 1 + 2 * context) * min(w, 1 + 2 * context)
        raise ValueError(
            f"a tile with {context} pixels of context needs {need} pixels; the budget is {max_px}"
        )
    return best[1], best[2]


def supports_two_stage(net: nn.Module) -> bool:
    """True if ``net`` has ``features``, ``reconstruct`` and ``reconstruct_radius`` (MDRN, EDSR)."""
    return all(
        callable(getattr(net, name, None)) for name in ("features", "reconstruct", "reconstruct_radius")
    )


def plan_two_stage(
    net: nn.Module, shape: tuple[int, ...], scale: int, overlap: int, memory: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """Body tile cores (rows, columns) and the LR pixels per reconstruct sub-tile for a ``memory`` budget.

    ``shape`` is the (N, C, H, W) the network sees. The body of a tile needs ``_BODY_MAPS`` maps of
    ``n_feats`` float32 channels per LR pixel (core, ``overlap`` and the reconstruct context included);
    a reconstruct sub-tile ``_RECONSTRUCT_MAPS * scale^2`` maps per LR pixel, within what the body tile's
    feature map leaves of the budget (at least a quarter of it).
    """
    n, _, h, w = shape
    feats = int(getattr(net, "n_feats", 64))
    px_bytes = n * feats * 4
    rr = net.reconstruct_radius(scale)
    try:
        rows, cols = _grid(h, w, overlap + rr, memory // (px_bytes * _BODY_MAPS))
        kept = _context_px(rows, h, rr)[1] * _context_px(cols, w, rr)[1] * px_bytes
        left = max(memory - kept, memory // 4)
        px = int(left // (px_bytes * _RECONSTRUCT_MAPS * scale * scale))
        px = min(px, max(1, _SUBTILE_MAP_BYTES // (px_bytes * scale * scale)))
        _grid(1 + 2 * rr, 1 + 2 * rr, rr, px)  # a one-pixel core with its context fits
    except ValueError as err:
        raise ValueError(f"memory budget of {memory} bytes too small for two-stage tiling: {err}") from None
    return rows, cols, px


def _add_low_frequency(net: nn.Module, y: Tensor, x: Tensor, scale: int, device: torch.device) -> Tensor:
    """``y`` plus the network's low-frequency image of the LR pixels ``x`` (if it has one, e.g. bicubic)."""
    low_frequency = getattr(net, "low_frequency", None)
    if low_frequency is None:
        return y
    low = low_frequency(_adapt_channels(net, x.to(device, non_blocking=True))[0], scale)
    return y if low is None else y + low


def low_frequency_image(net: nn.Module, x: Tensor, scale: int) -> Tensor | None:
    """The network's own low-frequency image of ``x`` (its interpolation path; ``x``'s channels), or None.

    None for a network without the path (no ``low_frequency``, or ``bicubic_skip`` off). For a network
    with it, ``upscale(net, x, scale) - low_frequency_image(net, x, scale)`` is its high-frequency image.
    """
    low_frequency = getattr(net, "low_frequency", None)
    if low_frequency is None:
        return None
    xin, back = _adapt_channels(net, x)
    with torch.no_grad():
        low = low_frequency(xin, scale)
    return None if low is None else back(low)


def _upscale_two_stage(
    net: nn.Module,
    x: Tensor,
    scale: int,
    body: tuple[list[tuple[int, int]], list[tuple[int, int]]],
    sub_grid: Callable[[int, int], tuple[list[tuple[int, int]], list[tuple[int, int]]]],
    overlap: int,
    device: torch.device,
    out: Tensor,
) -> None:
    """Fill ``out``: features of each body tile, then ``reconstruct`` over sub-tiles of its core.

    ``body`` are the body cores (rows, columns); ``sub_grid(height, width)`` cuts a body core of that
    size into reconstruct cores (rows, columns, relative to the body core).
    """
    h, w = x.shape[-2:]
    rr = net.reconstruct_radius(scale)
    for y0, y1 in body[0]:
        f0, f1 = max(y0 - rr, 0), min(y1 + rr, h)  # feature rows kept
        a0, a1 = max(f0 - overlap, 0), min(f1 + overlap, h)  # input rows read
        for x0, x1 in body[1]:
            g0, g1 = max(x0 - rr, 0), min(x1 + rr, w)
            b0, b1 = max(g0 - overlap, 0), min(g1 + overlap, w)
            xin, back = _adapt_channels(net, x[..., a0:a1, b0:b1].to(device, non_blocking=True))
            feats = net.features(xin, scale)[..., f0 - a0 : f1 - a0, g0 - b0 : g1 - b0]
            del xin
            rows, cols = sub_grid(y1 - y0, x1 - x0)
            for r0, r1 in rows:
                # sub-tile core rows y0 + r0 .. y0 + r1 in image coordinates; context clipped to the image
                c0, c1 = max(y0 + r0 - rr, 0), min(y0 + r1 + rr, h)
                for s0, s1 in cols:
                    d0, d1 = max(x0 + s0 - rr, 0), min(x0 + s1 + rr, w)
                    y = net.reconstruct(feats[..., c0 - f0 : c1 - f0, d0 - g0 : d1 - g0], scale)
                    y = back(_add_low_frequency(net, y, x[..., c0:c1, d0:d1], scale, device))
                    oy, ox = (y0 + r0 - c0) * scale, (x0 + s0 - d0) * scale
                    core = y[..., oy : oy + (r1 - r0) * scale, ox : ox + (s1 - s0) * scale]
                    out[..., (y0 + r0) * scale : (y0 + r1) * scale, (x0 + s0) * scale : (x0 + s1) * scale] = (
                        core.to(out.device, out.dtype)
                    )
                    del y, core
            del feats


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


def window_for(net: nn.Module, x: Tensor, window: object = "auto") -> IntensityWindow | None:
    """The intensity window ``upscale`` applies to ``x`` (N, C, H, W), or None for none.

    ``window``: ``"auto"`` (the rule the network was trained with, :func:`mdrn.models.window.rule_of`),
    ``None`` or ``"none"`` (none), a :class:`~mdrn.models.window.WindowRule` (or a mode name / mapping)
    fitted to ``x``, or an :class:`~mdrn.models.window.IntensityWindow` given as it is (the window of the
    whole image or series that ``x`` is a band or slice of).
    """
    if isinstance(window, IntensityWindow):
        return None if window.is_identity() else window
    rule = rule_of(net) if isinstance(window, str) and window == "auto" else WindowRule.parse(window)
    return rule.fit(x) if rule.active else None


def upscale(
    net: nn.Module,
    x: Tensor,
    scale: int,
    *,
    tile: int | None = None,
    overlap: int | None = DEFAULT_OVERLAP,
    ensemble: bool = False,
    device: str | torch.device | None = None,
    out: Tensor | np.ndarray | None = None,
    memory: int | None = DEFAULT_MEMORY,
    reuse_memory: bool = True,
    window: object = "auto",
) -> Tensor:
    """Upscale ``x`` ((C, H, W) or (N, C, H, W), float in [0, 1]) by ``scale``, tiled if ``tile`` is set.

    ``tile`` is the tile core size in LR pixels (``None``: whole image at once), ``overlap`` the LR
    context around each core (``None``: ``default_overlap(net)``, seamless), ``ensemble`` the x8
    self-ensemble, ``device`` where the network runs (default: the device of ``x``; the network is moved
    there). ``out`` optionally receives the result: a preallocated tensor or numpy array (e.g. a
    ``np.memmap``) of shape (N, C, H*scale, W*scale).
    Networks with ``features``/``reconstruct`` (see ``supports_two_stage``), when tiled and without the
    ensemble, run in two stages: body tiles and reconstruct sub-tiles are sized to the ``memory`` budget
    in bytes (``tile`` then only switches tiling on), or with ``memory=None`` are ``tile`` pixels.
    On a GPU out-of-memory error the tile (budget) is halved and the image redone, with a warning naming
    the new tile (budget). The result (not clamped) has the batch dimensions of ``x`` and lives on
    ``x``'s device (or is ``out`` as a tensor view). ``reuse_memory`` runs the whole call under one
    :func:`mdrn.perf.malloc_reuse` block on CPU (faster; the resident size keeps its peak while it runs);
    ``False`` keeps glibc returning large buffers, for callers that bound memory (the clinician tools:
    a 36 MP 16-bit image x2 peaked at 2.54 GB with it, 1.58 GB without).
    ``window`` maps the values the network sees and maps its output back exactly (see :func:`window_for`;
    default: the network's own rule, which is none for networks trained without one); give the window of
    the whole image when ``x`` is a band of it, so bands and tiles share one mapping.
    An ``x`` of another float dtype than the network's weights (float64 from numpy) is run in the weights'
    dtype; the result has ``x``'s dtype.
    """
    squeeze = x.dim() == 3
    x4 = _check_input(net, x, scale)
    win = window_for(net, x4, window)
    if win is not None:
        x4 = win.apply(x4)
    if tile is not None and tile < 1:
        raise ValueError(f"tile must be a positive number of LR pixels, got {tile}")
    if overlap is None:
        overlap = default_overlap(net)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if memory is not None and memory < 1:
        raise ValueError(f"memory must be a positive number of bytes, got {memory}")
    dev = torch.device(device) if device is not None else x4.device
    n, c, h, w = x4.shape
    shape = (n, c, h * scale, w * scale)
    if out is None:
        dest = torch.empty(shape, dtype=x4.dtype, device=x4.device)
    else:
        dest = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
        if tuple(dest.shape) != shape:
            raise ValueError(f"out has shape {tuple(dest.shape)}, expected {shape}")
    weights = next((p for p in net.parameters() if p.is_floating_point()), None)
    if weights is not None and x4.dtype != weights.dtype:  # float64 from numpy: run in the weights' dtype
        x4 = x4.to(weights.dtype)
    two_stage = tile is not None and not ensemble and supports_two_stage(net)

    was_training = net.training
    net.to(dev).eval()
    try:
        # one reuse block for the whole image: every tile's maps, features and reconstruct sub-tiles alike,
        # come from memory the previous tile freed (per network call, each tile page-faulted its maps anew)
        with torch.inference_mode(), malloc_reuse(reuse_memory and dev.type == "cpu"):
            cur, mem = tile, memory
            while True:
                try:
                    if two_stage and mem is not None:
                        seen = _adapt_channels(net, x4[..., :1, :1])[0].shape[:2]
                        rows, cols, px = plan_two_stage(net, (*seen, h, w), scale, overlap, mem)
                        sub = partial(_grid, context=net.reconstruct_radius(scale), max_px=px)
                        grid = (rows, cols)
                        _upscale_two_stage(net, x4, scale, grid, sub, overlap, dev, dest)
                    elif two_stage and cur is not None:
                        body = (_tile_bounds(h, cur), _tile_bounds(w, cur))
                        sub = partial(_square_grid, tile=cur)
                        _upscale_two_stage(net, x4, scale, body, sub, overlap, dev, dest)
                    elif cur is None or (cur >= h and cur >= w):
                        y = _run(net, x4.to(dev), scale, ensemble)
                        dest.copy_(y.to(dest.device, dest.dtype))
                        del y
                    else:
                        _upscale_tiled(net, x4, scale, cur, overlap, ensemble, dev, dest)
                    break
                except Exception as err:  # noqa: BLE001 - only OOM is retried, others re-raised
                    if not _is_oom(err):
                        raise
                    if two_stage and mem is not None:
                        mem //= 2
                        if mem < (1 << 20):
                            raise
                        retry = f"a memory budget of {mem / (1 << 20):.0f} MiB"
                    else:
                        nxt = max(h, w) // 2 if cur is None else cur // 2
                        if nxt < _MIN_TILE:
                            raise
                        cur = nxt
                        retry = f"tiles of {cur} px"
                    warnings.warn(f"upscale: out of memory on {dev}; retrying with {retry}", stacklevel=2)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
            if win is not None:
                win.invert_(dest)
    finally:
        net.train(was_training)
    return dest[0] if squeeze else dest
