"""Bench sections ``adam``, ``training`` and ``inplace_train``: one MDRN training step and its parts."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from mdrn.bench.core import (
    PAPER_MODEL,
    Context,
    alternate,
    build_mdrn,
    describe,
    make_row,
    median,
    path_label,
    rate_row,
    seed,
)
from mdrn.bench.forward import out_of_place_variant
from mdrn.bench.limits import ConvLimit, fraction_facts, fraction_note
from mdrn.perf import (
    count_flops,
    prepare_for_training,
)


def _adam(params: Iterator[nn.Parameter], fused: bool) -> torch.optim.Optimizer:
    """Adam as the paper trains (lr 1e-4, betas 0.9/0.999), fused (one kernel) or the default loop."""
    kwargs: dict[str, Any] = {"lr": 1e-4, "betas": (0.9, 0.999)}
    if fused:
        kwargs["fused"] = True
    return torch.optim.Adam(params, **kwargs)


def bench_adam(ctx: Context) -> None:
    """One Adam step over the paper model's parameters: fused kernel against the default per-tensor loop."""
    params = [p.detach().clone().requires_grad_(True) for p in build_mdrn(dict(PAPER_MODEL)).parameters()]
    if ctx.quick:
        params = params[:20]
    g = seed()
    pairs = []
    for fused in (True, False):
        ps = [p.detach().clone().to(ctx.device).requires_grad_(True) for p in params]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g).to(ctx.device)
        pairs.append(_adam(iter(ps), fused))
    n = sum(p.numel() for p in params)
    t = alternate(
        {"f": pairs[0].step, "l": pairs[1].step},
        repeats=max(ctx.sizes.repeats, 5),
        warmup=1,
        device=ctx.device,
    )
    ctx.add(
        rate_row(
            f"Adam step, {n / 1e6:.2f}M parameters",
            1,
            t,
            "steps/s",
            keys=("f", "l"),
            ours_label="Adam(fused=True)",
            baseline_label="Adam() default (per-tensor loop)",
            repeats=max(ctx.sizes.repeats, 5),
        )
    )


def bench_training(ctx: Context) -> None:
    """One training step (forward, L1, backward, Adam) of MDRN at x2: fast path against eager NCHW."""
    s = ctx.sizes
    scale = 2
    g = seed()
    x = torch.rand(s.train_batch, 3, s.train_patch, s.train_patch, generator=g).to(ctx.device)
    y = torch.rand(s.train_batch, 3, s.train_patch * scale, s.train_patch * scale, generator=g).to(ctx.device)
    for i, blocks in enumerate(s.train_blocks):
        args = {"n_resblocks": blocks, "n_feats": s.train_feats, "scales": (2, 3, 4)}
        eager = build_mdrn(args).to(ctx.device).train()
        fast = prepare_for_training(copy.deepcopy(eager), path=ctx.path).train()
        opt_e, opt_f = _adam(eager.parameters(), False), _adam(fast.parameters(), True)
        autocast = ctx.path.autocast_dtype

        def step(net: nn.Module, opt: torch.optim.Optimizer, amp: torch.dtype | None) -> Callable[[], None]:
            def call() -> None:
                opt.zero_grad(set_to_none=True)
                amp_ctx = torch.autocast(ctx.device.type, dtype=amp) if amp else contextlib.nullcontext()
                with amp_ctx:
                    loss = nn.functional.l1_loss(net(x, scale).float(), y)
                loss.backward()
                opt.step()

            return call

        big = i == len(s.train_blocks) - 1 and len(s.train_blocks) > 1
        repeats = s.train_big_repeats if big else s.repeats
        warmup = s.warmup if not big else int(ctx.path.compile)  # a compiled copy compiles at its first call
        flops = count_flops(eager, tuple(x.shape), scale).training
        shape = (s.train_batch, s.train_feats, s.train_patch, s.train_patch)
        limit = ConvLimit(ctx, shape, training=True, flops_per_slot=flops)
        times = alternate(
            {"ours": step(fast, opt_f, autocast), "base": step(eager, opt_e, None), **limit.calls()},
            repeats=repeats,
            warmup=warmup,
            device=ctx.device,
        )
        to, tb = median(times["ours"]), median(times["base"])
        facts = fraction_facts(flops, times, limit)
        notes = fraction_note(facts) + " (FLOPs: forward + backward)"
        if big and not warmup:
            notes += (
                f"; {repeats} repeats per variant, no separate warm-up (the previous row ran the same "
                "layer shapes)"
            )
        ctx.add(
            make_row(
                f"MDRN {describe(args)} train step x2, batch {s.train_batch}, "
                f"{s.train_patch}x{s.train_patch} LR",
                1 / to,
                1 / tb,
                "steps/s",
                ours_label=path_label(ctx.path, training=True),
                baseline_label="eager NCHW fp32, Adam default",
                repeats=repeats,
                notes=notes,
                extra={**facts, "seconds_ours": to, "seconds_baseline": tb},
            )
        )
        if blocks == PAPER_MODEL["n_resblocks"] and s.train_feats == PAPER_MODEL["n_feats"]:
            ctx.facts["train_fraction"] = facts["fraction_ours"]  # of the forward + backward limit
            ctx.facts["train_gflops"] = facts["gflops_ours"]
        del eager, fast, opt_e, opt_f


def bench_inplace_train(ctx: Context) -> None:
    """Training step with the model's in-place blocks against out-of-place ones, both on the fast path.

    Opt-in (``--only inplace_train`` or ``--all``): a measurement for :mod:`mdrn.models`' owner.
    """
    s = ctx.sizes
    scale, batch = 2, max(1, s.train_batch // 4)
    g = seed()
    x = torch.rand(batch, 3, s.train_patch, s.train_patch, generator=g).to(ctx.device)
    y = torch.rand(batch, 3, s.train_patch * scale, s.train_patch * scale, generator=g).to(ctx.device)
    args = {"n_resblocks": s.train_blocks[0], "n_feats": s.train_feats, "scales": (2,)}
    model = prepare_for_training(build_mdrn(args), path=ctx.path).train()
    variant = prepare_for_training(out_of_place_variant(model), path=ctx.path).train()
    opts = {id(n): _adam(n.parameters(), True) for n in (model, variant)}

    def step(net: nn.Module) -> Callable[[], None]:
        def call() -> None:
            opts[id(net)].zero_grad(set_to_none=True)
            nn.functional.l1_loss(net(x, scale), y).backward()
            opts[id(net)].step()

        return call

    times = alternate(
        {"v": step(variant), "m": step(model)}, repeats=s.repeats, warmup=s.warmup, device=ctx.device
    )
    ctx.add(
        rate_row(
            f"MDRN {describe(args)} train step x2, batch {batch}: in-place ReLU + residual add",
            1,
            times,
            "steps/s",
            keys=("m", "v"),
            ours_label="mdrn.models blocks (in place)",
            baseline_label="out-of-place blocks (local variant)",
            repeats=s.repeats,
            notes="both on the fast path",
        )
    )
