"""Bench section ``profile`` (opt-in): where the time of a training step and of a forward pass goes.

Each variant runs in its own process (the allocator's state is process-wide): a few timed steps, then
``torch.profiler`` over more steps. Recorded per variant: the step time, the counted GFLOP/s, the page
faults and kernel time per step (``getrusage``), the self CPU time per category of operator (3x3 and
5x5 convolutions forward and backward, the other convolutions, ReLU, adds, pixel shuffles, the
optimizer, copies) and the top operators.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from mdrn.bench.core import Context, build_mdrn, describe, median, seed
from mdrn.perf import count_flops, fast_path, inference_context, prepare_for_inference, prepare_for_training

_CONV_FWD = ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::_convolution_nogroup")
_CONV_BWD = ("aten::convolution_backward", "aten::mkldnn_convolution_backward")
_CATEGORIES = (
    ("ReLU", ("relu", "clamp_min", "threshold_backward")),
    ("adds", ("aten::add", "aten::add_", "aten::sub", "aten::sum")),
    ("pixel shuffle", ("pixel_shuffle", "pixel_unshuffle")),
    ("optimizer", ("adam", "foreach", "aten::lerp", "aten::sqrt", "aten::addcdiv", "aten::addcmul")),
    ("copies, layout", ("copy_", "clone", "contiguous", "aten::to", "empty_strided")),
    ("loss", ("l1_loss", "sgn", "abs", "aten::mean", "aten::div", "aten::mul")),
)


def _conv_kind(shapes: list[list[int]], weight_at: int) -> str:
    """'3x3 64->64', '5x5' or 'other' from an op's recorded input shapes."""
    w = shapes[weight_at] if len(shapes) > weight_at else []
    if len(w) != 4:
        return "other"
    if w[2:] == [5, 5]:
        return "5x5"
    return "3x3 F->F" if w[2:] == [3, 3] and w[0] == w[1] else "other (head, upsampler, tail)"


def _category(name: str, shapes: list[list[int]]) -> str:
    """The category of one profiled operator."""
    if name in _CONV_FWD:
        return f"conv forward {_conv_kind(shapes, 1)}"
    if name in _CONV_BWD:
        return f"conv backward {_conv_kind(shapes, 2)}"
    low = name.lower()
    for cat, needles in _CATEGORIES:
        if any(n in low if not n.startswith("aten::") else low == n for n in needles):
            return cat
    return "other"


def _profile_worker(conn: Any, spec: dict[str, Any]) -> None:
    """Worker: build the variant, time ``timed`` steps, profile ``steps`` steps, send the summary."""
    try:
        torch.set_num_threads(int(spec["threads"]))
        device = torch.device(spec["device"])
        path = replace(fast_path(device), **spec.get("path", {}))
        net = build_mdrn(spec["model"]).to(device)
        scale, g = int(spec["scale"]), seed()
        if spec["kind"] == "train":
            b, p = spec["batch"], spec["patch"]
            x = torch.rand(b, 3, p, p, generator=g).to(device)
            y = torch.rand(b, 3, p * scale, p * scale, generator=g).to(device)
            flops = count_flops(net, tuple(x.shape), scale).training
            if spec["fast"]:
                net = prepare_for_training(net, path=path)
            net.train()
            opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=bool(spec["fast"]) or None)

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                nn.functional.l1_loss(net(x, scale), y).backward()
                opt.step()

        else:
            t = spec["tile"]
            x = torch.rand(1, 3, t, t, generator=g).to(device)
            flops = count_flops(net, tuple(x.shape), scale).forward
            net = prepare_for_inference(net, path=path) if spec["fast"] else net.eval()

            def step() -> None:
                with inference_context(path=path) if spec["fast"] else torch.no_grad():
                    net(x, scale)

        step()
        times, faults, kernel = [], [], []
        for _ in range(spec["timed"]):
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            faults.append((r1.ru_minflt - r0.ru_minflt) * resource.getpagesize())
            kernel.append(r1.ru_stime - r0.ru_stime)
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True
        ) as prof:
            for _ in range(spec["steps"]):
                step()
        cats: dict[str, float] = {}
        ops = []
        total = 0.0
        for evt in prof.key_averages(group_by_input_shape=True):
            us = evt.self_cpu_time_total / spec["steps"]
            if us <= 0:
                continue
            total += us
            cat = _category(evt.key, list(evt.input_shapes or []))
            cats[cat] = cats.get(cat, 0.0) + us
            ops.append((us, evt.key, cat, evt.count / spec["steps"]))
        ops.sort(reverse=True)
        conn.send(
            (
                "result",
                {
                    "seconds": median(times),
                    "gflops": flops / median(times) / 1e9,
                    "flops": flops,
                    "fault_bytes_per_step": median(faults),
                    "kernel_seconds_per_step": median(kernel),
                    "profiled_ms_per_step": total / 1e3,
                    "categories": sorted(((c, us / 1e3) for c, us in cats.items()), key=lambda c: -c[1]),
                    "top_ops": [(k, us / 1e3, cat, calls) for us, k, cat, calls in ops[: spec["top"]]],
                },
            )
        )
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _spawn(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one profile variant in a fresh (spawned) process and return its summary."""
    mpc = mp.get_context("spawn")
    parent, child = mpc.Pipe()
    proc = mpc.Process(target=_profile_worker, args=(child, spec), daemon=True)
    proc.start()
    try:
        kind, value = parent.recv()
    except EOFError as exc:
        raise RuntimeError("profile worker exited without answering (see its traceback above)") from exc
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.terminate()
    if kind != "result":
        raise RuntimeError(f"profile worker failed: {value}")
    return value


def bench_profile(ctx: Context) -> None:
    """Profiles of an MDRN training step (eager, the fast path, the fast path in NHWC) and of the forward."""
    s = ctx.sizes
    common = {"threads": torch.get_num_threads(), "device": str(ctx.device), "top": 12}
    train = {**common, "kind": "train", "scale": 2, "batch": s.train_batch,
             "patch": s.train_patch, "timed": s.profile_timed, "steps": s.profile_steps}  # fmt: skip
    fwd = {**common, "kind": "forward", "model": dict(s.fwd_model), "tile": s.fwd_tile,
           "timed": s.repeats, "steps": s.profile_steps * 2}  # fmt: skip
    tb = f"{s.train_batch}x{s.train_patch}x{s.train_patch}"
    variants = {}
    for blocks in s.profile_blocks:
        model = {"n_resblocks": blocks, "n_feats": s.train_feats, "scales": (2, 3, 4)}
        head = f"train step MDRN {describe(model)} x2, batch {tb}"
        spec = {**train, "model": model}
        if s.profile_all:
            variants[f"{head}: eager NCHW, Adam default"] = {**spec, "fast": False}
            variants[f"{head}: fast path, glibc default allocator"] = {
                **spec,
                "fast": True,
                "path": {"reuse_freed_memory": False},
            }
        variants[f"{head}: fast path"] = {**spec, "fast": True}
        if blocks == s.profile_blocks[0] and s.profile_all:
            nhwc = {"train_channels_last": True}
            variants[f"{head}: fast path in NHWC"] = {**spec, "fast": True, "path": nhwc}
    for scale in (2, 4) if s.profile_all else (4,):
        t = s.fwd_tile
        name = f"forward MDRN {describe(s.fwd_model)} x{scale}, {t}x{t} LR tile: fast path"
        variants[name] = {**fwd, "scale": scale, "fast": True}
    profiles = {}
    for name, spec in variants.items():
        ctx.log(f"  {name} ...")
        profiles[name] = _spawn(spec)
        p = profiles[name]
        faults = p["fault_bytes_per_step"] / 2**20
        ctx.log(f"    {p['seconds']:.3f} s/step, {p['gflops']:.1f} GFLOP/s, page faults {faults:.0f} MB/step")
    ctx.facts["profiles"] = profiles


def profiles_markdown(profiles: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines: per profiled variant, its figures and self CPU time per category and top operators."""
    lines = ["", "## Profiles (section `profile`: torch.profiler, self CPU time per step)", ""]
    for name, p in profiles.items():
        total = p["profiled_ms_per_step"]
        lines += [
            f"**{name}**: {p['seconds']:.3f} s per step timed ({p['gflops']:.1f} GFLOP/s counted); page "
            f"faults {p['fault_bytes_per_step'] / 2**20:,.0f} MB and kernel time "
            f"{p['kernel_seconds_per_step']:.2f} s per step; profiled {total:,.0f} ms per step.",
            "",
            "| category | ms per step | share |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {cat} | {ms:,.1f} | {ms / total:.1%} |" for cat, ms in p["categories"]]
        top = "; ".join(f"{k} ({cat}) {ms:,.1f} ms" for k, ms, cat, _ in p["top_ops"][:5])
        lines += ["", f"Top operators: {top}.", ""]
    return lines
