"""Bench section ``limits``: the machine's limits (matmul, the MDRN convolution, memory copy)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from mdrn.bench.core import (
    Context,
    Row,
    alternate,
    make_row,
    median,
    rate_row,
    seed,
)
from mdrn.perf import (
    inference_context,
)


def _conv_gflops(ctx: Context, shape: tuple[int, int, int, int]) -> Row:
    """64->64 3x3 convolution at ``shape``: fast path (NHWC) against NCHW, GFLOP/s."""
    n, c, h, w = shape
    conv = nn.Conv2d(c, c, 3, padding=1).to(ctx.device)
    fast = copy.deepcopy(conv)
    if ctx.path.channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    x = torch.rand(shape, generator=seed(), device="cpu").to(ctx.device)
    xf = x.contiguous(memory_format=torch.channels_last) if ctx.path.channels_last else x
    flops = 2 * c * c * 9 * n * h * w

    def ours() -> None:
        with inference_context(path=ctx.path):
            fast(xf)

    def base() -> None:
        with torch.no_grad():
            conv(x)

    t = alternate(
        {"ours": ours, "base": base}, repeats=max(ctx.sizes.repeats, 5), warmup=2, device=ctx.device
    )
    g_o, g_b = flops / median(t["ours"]) / 1e9, flops / median(t["base"]) / 1e9
    return make_row(
        f"conv 64->64 3x3 fp32, {n}x{c}x{h}x{w}" if c == 64 else f"conv {c}->{c} 3x3, {n}x{c}x{h}x{w}",
        g_o,
        g_b,
        "GFLOP/s",
        ours_label="NHWC (channels_last)" if ctx.path.channels_last else "fast path",
        baseline_label="NCHW",
        repeats=max(ctx.sizes.repeats, 5),
    )


def bench_limits(ctx: Context) -> None:
    """Machine limits: large fp32 matmul, the MDRN convolution at training and tile shapes, memory copy."""
    s = ctx.sizes
    n = s.matmul_n
    g = seed()
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    an, bn = a.numpy(), b.numpy()
    a, b = a.to(ctx.device), b.to(ctx.device)
    t = alternate(
        {"ours": lambda: a @ b, "base": lambda: an @ bn},
        repeats=max(s.repeats, 5),
        warmup=1,
        device=ctx.device,
    )
    flops = 2 * n**3
    ctx.add(
        rate_row(
            f"matmul fp32 {n}x{n}",
            flops,
            t,
            "GFLOP/s",
            per=1e9,
            ours_label=f"torch ({ctx.device.type})",
            baseline_label="numpy (OpenBLAS)",
            repeats=max(s.repeats, 5),
        )
    )

    feats = s.train_feats
    train_shape = (s.train_batch, feats, s.train_patch, s.train_patch)
    fwd_feats = int(s.fwd_model["n_feats"])
    tile_shape = (1, fwd_feats, s.fwd_tile, s.fwd_tile)
    for key, shape in (("conv_limit_train", train_shape), ("conv_limit_tile", tile_shape)):
        row = _conv_gflops(ctx, shape)
        ctx.facts[key] = {"gflops": max(row.ours, row.baseline or 0.0), "shape": list(shape)}
        row.notes = "the conv limit used for the fractions below = the faster of the two"
        ctx.add(row)
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu" and threads > 1:
        conv = nn.Conv2d(feats, feats, 3, padding=1).to(memory_format=torch.channels_last)
        x = torch.rand(train_shape, generator=g).contiguous(memory_format=torch.channels_last)

        def with_threads(n: int) -> Callable[[], None]:
            def call() -> None:
                torch.set_num_threads(n)
                try:
                    with torch.inference_mode():
                        conv(x)
                finally:
                    torch.set_num_threads(threads)

            return call

        t = alternate(
            {"all": with_threads(threads), "one": with_threads(1)}, repeats=max(s.repeats, 5), warmup=2
        )
        flops = 2 * feats * feats * 9 * math.prod(train_shape) // feats
        ctx.add(
            rate_row(
                f"conv {feats}->{feats} 3x3 NHWC, {'x'.join(map(str, train_shape))}: threads",
                flops,
                t,
                "GFLOP/s",
                keys=("all", "one"),
                per=1e9,
                ours_label=f"{threads} threads (one per available core)",
                baseline_label="1 thread",
                repeats=max(s.repeats, 5),
                notes="on a machine shared with other jobs, multi-threaded ops wait for descheduled threads",
            )
        )

    mb = s.memcpy_mb
    src = torch.rand(mb * 2**20 // 4, generator=g)
    dst = torch.empty_like(src)
    srcn, dstn = src.numpy(), np.empty_like(src.numpy())
    t = alternate(
        {"ours": lambda: dst.copy_(src), "base": lambda: np.copyto(dstn, srcn)},
        repeats=max(s.repeats, 5),
        warmup=1,
    )
    nbytes = src.numel() * 4
    ctx.add(
        rate_row(
            f"memory copy {mb} MB",
            nbytes,
            t,
            "GB/s",
            per=1e9,
            ours_label="torch copy_ (multi-threaded)",
            baseline_label="numpy copyto (one thread)",
            repeats=max(s.repeats, 5),
            notes="bytes copied per second (each byte is read once and written once)",
        )
    )


class ConvLimit:
    """The conv limit measured inside a model row's window: 64->64 3x3 convolutions interleaved with it.

    A limit measured once, minutes before or after a row, can be pushed below the row by load (seen: a
    forward at 225% of its limit); here the limit's calls take turns with the row's variants in the same
    :func:`~mdrn.bench.core.alternate` loop, and both sides report their best (fastest) call of that
    window. ``calls()`` are the variants to add: the forward in NHWC and in NCHW (the limit is the faster
    of the two, as in section ``limits``) and, with ``training``, the forward + backward of the same
    convolution (input and weight gradients) in the training layout.

    Those repeat one convolution on one input, whose weights and input stay in cache. With ``chain`` a
    further reference (not the limit): as many distinct convolutions, each fed the previous one's output,
    in the inference layout; what a network made only of such convolutions reaches on this machine. Its
    weights come from memory on every call, and oneDNN reorders each into its blocked layout each time
    (measured with ``python scripts/onednn_breakdown.py``).
    """

    def __init__(
        self,
        ctx: Context,
        shape: tuple[int, int, int, int],
        *,
        training: bool,
        flops_per_slot: float = 0.0,
        chain: bool = False,
    ) -> None:
        n, c, h, w = shape
        self.shape, self.training = shape, training
        self.flops = 2 * c * c * 9 * n * h * w
        #: convolutions per slot: about an eighth of the row's call (at most 64), so that a slot is not
        #: so short that its best call catches a quiet moment the row's longer calls cannot
        self.inner = int(min(64, max(1, flops_per_slot / (8 * self.flops))))
        conv = nn.Conv2d(c, c, 3, padding=1).to(ctx.device)
        x = torch.rand(shape, generator=seed(), device="cpu").to(ctx.device)
        self._convs = {
            "nhwc": (
                copy.deepcopy(conv).to(memory_format=torch.channels_last),
                x.contiguous(memory_format=torch.channels_last),
            ),
            "nchw": (conv, x),
        }
        layout = "nhwc" if ctx.path.train_channels_last else "nchw"
        self.train_layout = layout
        self._train = (
            copy.deepcopy(self._convs[layout][0]),
            self._convs[layout][1].clone().requires_grad_(True),
        )
        self._device = ctx.device
        self._chain: list[nn.Module] = []
        if chain:
            layout = "nhwc" if ctx.path.channels_last else "nchw"
            fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self._chain = [
                    nn.Conv2d(c, c, 3, padding=1).to(ctx.device, memory_format=fmt) for _ in range(self.inner)
                ]
            self._chain_x = self._convs[layout][1]

    def calls(self) -> dict[str, Callable[[], None]]:
        """Variants for ``alternate``: ``limit:nhwc``, ``limit:nchw``, ``limit:train``, ``chain`` if asked."""

        def forward(conv: nn.Module, x: torch.Tensor) -> Callable[[], None]:
            def call() -> None:
                with torch.inference_mode():
                    for _ in range(self.inner):
                        conv(x)

            return call

        def train() -> None:
            conv, x = self._train
            for _ in range(self.inner):
                conv.zero_grad(set_to_none=True)
                x.grad = None
                conv(x).sum().backward()

        def chain() -> None:
            with torch.inference_mode():
                y = self._chain_x
                for conv in self._chain:
                    y = conv(y)

        out = {f"limit:{k}": forward(*v) for k, v in self._convs.items()}
        if self.training:
            out["limit:train"] = train
        if self._chain:
            out["chain"] = chain
        return out

    def gflops(self, times: dict[str, list[float]]) -> dict[str, float]:
        """GFLOP/s of the window, best call and median: ``forward`` (the faster layout), ``train``, ``chain``.

        ``<key>`` is the best call, ``<key>_median`` the median call (of the layout whose best call is the
        faster, for ``forward``).
        """
        mine = ("limit:", "chain")
        per_call = self.inner * self.flops / 1e9
        best = {k: per_call / min(v) for k, v in times.items() if k.startswith(mine)}
        med = {k: per_call / median(v) for k, v in times.items() if k.startswith(mine)}
        layout = max(("limit:nhwc", "limit:nchw"), key=lambda k: best[k])
        out = {"forward": best[layout], "forward_median": med[layout]}
        if "limit:train" in best:
            # forward + input gradient + weight gradient: three convolutions' FLOPs per call
            out["train"], out["train_median"] = 3 * best["limit:train"], 3 * med["limit:train"]
        if "chain" in best:
            out["chain"] = best["chain"]
        return out


def fraction_facts(flops: float, times: dict[str, list[float]], limit: ConvLimit) -> dict[str, Any]:
    """GFLOP/s of ours and the baseline (median and best call) and their fractions of the row's own limit.

    The row's own limit, measured in the same window: for a training row the convolution's forward +
    backward (``limit_kind`` "forward + backward"), for a forward row its forward ("forward").
    ``fraction_*`` = best call / the limit's best call; ``fraction_*_median`` = median call / the limit's
    median call. A fraction above 1 cannot be a result (the network is convolutions plus other work):
    ``fraction_error`` marks it as a measurement error. References outside that rule: a training row's
    ``fraction_*_forward_limit`` (against the forward-only limit, a different operation) and a forward
    row's ``chain_fraction_*`` (a chain of distinct convolutions: the network runs more and other
    convolutions than the chain).
    """
    lim = limit.gflops(times)
    own = "train" if limit.training else "forward"
    facts: dict[str, Any] = {
        "flops": flops,
        "limit_kind": "forward + backward" if limit.training else "forward",
        "conv_limit": lim[own],
        "conv_limit_median": lim[f"{own}_median"],
        "conv_limit_shape": list(limit.shape),
    }
    if limit.training:
        facts["conv_forward_limit"] = lim["forward"]
    for key, label in (("ours", "ours"), ("base", "baseline")):
        facts[f"gflops_{label}"] = med = flops / median(times[key]) / 1e9
        facts[f"gflops_{label}_best"] = best = flops / min(times[key]) / 1e9
        facts[f"fraction_{label}"] = best / lim[own]
        facts[f"fraction_{label}_median"] = med / lim[f"{own}_median"]
        if limit.training:
            facts[f"fraction_{label}_forward_limit"] = best / lim["forward"]
        if "chain" in lim:
            facts[f"chain_fraction_{label}"] = best / lim["chain"]
    if "chain" in lim:
        facts["conv_chain"] = lim["chain"]
    facts["fraction_error"] = any(
        facts[f"fraction_{label}{kind}"] > 1.0 for label in ("ours", "baseline") for kind in ("", "_median")
    )
    return facts


def fraction_note(facts: dict[str, Any], base: str = "eager") -> str:
    """The notes text of a row's fractions (and the measurement error, if any)."""
    kind = facts["limit_kind"]
    note = (
        f"ours {facts['gflops_ours']:.1f} GFLOP/s, {base} {facts['gflops_baseline']:.1f} GFLOP/s (counted, "
        f"median); of the convolution's {kind} limit measured in the same window "
        f"({facts['conv_limit']:.1f} GFLOP/s best, {facts['conv_limit_median']:.1f} median): best calls "
        f"{facts['fraction_ours']:.0%} / {facts['fraction_baseline']:.0%}, medians "
        f"{facts['fraction_ours_median']:.0%} / {facts['fraction_baseline_median']:.0%}"
    )
    if "conv_forward_limit" in facts:
        note += (
            f"; for reference, best calls {facts['fraction_ours_forward_limit']:.0%} / "
            f"{facts['fraction_baseline_forward_limit']:.0%} of its forward alone "
            f"({facts['conv_forward_limit']:.1f} GFLOP/s)"
        )
    if "conv_chain" in facts:
        note += (
            f"; {facts['chain_fraction_ours']:.0%} / {facts['chain_fraction_baseline']:.0%} of a chain of "
            f"distinct convolutions, each fed the previous output ({facts['conv_chain']:.1f} GFLOP/s, "
            f"{facts['conv_chain'] / facts['conv_limit']:.0%} of the limit)"
        )
    if facts["fraction_error"]:
        note += "; MEASUREMENT ERROR: a fraction above 100% (the limit was measured too low), not a result"
    return note
