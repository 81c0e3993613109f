"""Bench section ``clinical`` (opt-in): the clinician path against its own network, and where the rest goes.

For a 512x512 16-bit CT slice and a series of such slices, at each scale, with the shipped model (or
``Sizes.clinical_model``: a name or a weights file, so the same command measures another model):

- the network's forward on the whole slice in one call (fast path, glibc keeping freed memory: the
  network's own speed), interleaved with the conv limit of its own width (one 3x3 convolution of
  ``n_feats`` channels on the same image, :class:`mdrn.bench.limits.ConvLimit`), and the time the counted
  multiply-adds take at that limit;
- ``mdrn-upscale`` on the series, a fresh process as a user runs it (wall time, peak RSS; the time per
  slice after the first from a run on one slice), and the app's enlarge call
  (:func:`mdrn.app.process_files`) in this warm process;
- a profile of the same path in this process: the functions the engine calls (read, normalise, the
  network, quantise, write) timed where :mod:`mdrn.clinical.enlarge` calls them, exclusive of each other,
  with their page faults and kernel time, and the pixels the network ran on against the image's.

Every measurement records the load average (``/proc/loadavg``) beside it: the machine is shared.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mdrn.bench.core import Context, make_row, median
from mdrn.bench.limits import ConvLimit
from mdrn.perf import count_flops, malloc_reuse

#: The profile's stages: (name, module, attribute) of the functions timed where the engine calls them.
STAGES = (
    ("read", "mdrn.clinical.inputs", "Stack.slice"),
    ("normalise", "mdrn.clinical.enlarge", "image_to_tensor"),
    ("network", "mdrn.clinical.enlarge", "upscale"),
    ("quantise", "mdrn.clinical.enlarge", "tensor_to_array"),
    ("write", "mdrn.clinical.enlarge", "write_bands"),
)


def load() -> float:
    """The 1-minute load average (``/proc/loadavg``), recorded with every timing."""
    return float(os.getloadavg()[0])


def ct_dataset(side: int) -> tuple[Any, str]:
    """A 16-bit CT slice of ``side`` x ``side`` pixels as a pydicom dataset, and what it is.

    pydicom-data's real 512x512 CT (``693_UNCR.dcm``, 14 of 16 bits stored) where installed (the
    ``medical`` extra) and ``side`` is 512; else pydicom's own 128x128 ``CT_small.dcm`` enlarged to ``side``
    (bicubic) plus noise.
    """
    import pydicom
    from pydicom.data import get_testdata_file

    if side == 512:
        with contextlib.suppress(Exception):
            path = get_testdata_file("693_UNCR.dcm")
            if path:
                return pydicom.dcmread(path), "a real 512x512 CT slice (pydicom-data 693_UNCR.dcm, 14 bits)"
    from mdrn.protocol.resize import imresize

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    src = torch.from_numpy(ds.pixel_array.astype(np.float64))[None]
    big = imresize(src, size=(side, side))[0].numpy()
    big += np.random.default_rng(0).normal(0, 8, big.shape)
    ds.PixelData = np.clip(big, 0, 4095).astype(ds.pixel_array.dtype).tobytes()
    ds.Rows = ds.Columns = side
    return ds, f"pydicom's CT_small.dcm enlarged to {side}x{side} (bicubic, plus noise)"


def write_series(folder: Path, n: int, side: int) -> str:
    """Write a DICOM series of ``n`` slices of ``side`` x ``side`` (values shifted per slice); say what."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    ds, what = ct_dataset(side)
    base = ds.pixel_array.copy()
    series = generate_uid()
    x, y, z = (float(v) for v in getattr(ds, "ImagePositionPatient", (0, 0, 0)))
    for k in range(n):
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [x, y, z + 2.0 * k]
        ds.SliceLocation = z + 2.0 * k
        ds.PixelData = (base + 3 * k).astype(base.dtype).tobytes()
        ds.save_as(folder / f"IM{k:04d}", enforce_file_format=True)
    return what


class StageTimer:
    """Wall time, page faults and kernel time of named functions, exclusive of the timed calls inside them."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, float]] = {}
        self._stack: list[list[float]] = []

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed as ``name`` (a generator it returns is timed while it is consumed, too)."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.span(name):
                out = fn(*args, **kwargs)
            if isinstance(out, Iterator) and hasattr(out, "send"):
                return self._timed_generator(name, out)
            return out

        return timed

    def _timed_generator(self, name: str, gen: Iterator[Any]) -> Iterator[Any]:
        while True:
            with self.span(name):
                try:
                    item = next(gen)
                except StopIteration:
                    return
            yield item

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        """Time the block as ``name``; time spent in spans inside it is not counted twice."""
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        keys = ("seconds", "fault_bytes", "kernel_seconds", "cpu_seconds")
        self._stack.append([0.0] * len(keys))  # the same, spent in spans inside this one
        try:
            yield
        finally:
            inner = self._stack.pop()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            spent = (
                time.perf_counter() - t0,
                (r1.ru_minflt - r0.ru_minflt) * resource.getpagesize(),
                r1.ru_stime - r0.ru_stime,
                cpu_seconds(r1) - cpu_seconds(r0),
            )
            tot = self.totals.setdefault(name, dict.fromkeys(keys, 0.0))
            for i, key in enumerate(keys):
                tot[key] += spent[i] - inner[i]
            if self._stack:
                outer = self._stack[-1]
                for i in range(len(keys)):
                    outer[i] += spent[i]


@contextlib.contextmanager
def timed_stages(timer: StageTimer) -> Iterator[list[str]]:
    """Wrap the engine's functions (``STAGES``) with ``timer`` while the block runs; yield those found."""
    import importlib

    undo, found = [], []
    for name, module, attr in STAGES:
        owner: Any = importlib.import_module(module)
        *path, last = attr.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        fn = getattr(owner, last, None) if owner is not None else None
        if fn is None:
            continue
        setattr(owner, last, timer.wrap(name, fn))
        undo.append((owner, last, fn))
        found.append(name)
    try:
        yield found
    finally:
        for owner, last, fn in reversed(undo):
            setattr(owner, last, fn)


@contextlib.contextmanager
def counted_pixels(net: nn.Module) -> Iterator[dict[str, int]]:
    """Count the LR pixels each stage of ``net`` runs on (``features``, ``reconstruct``, ``forward``)."""
    counts = {"features": 0, "reconstruct": 0, "forward": 0}
    undo = []
    for name in counts:
        fn = getattr(net, name, None)
        if not callable(fn):
            continue

        def counting(x: torch.Tensor, *args: Any, _fn: Any = fn, _name: str = name, **kw: Any) -> Any:
            counts[_name] += x.shape[0] * x.shape[-2] * x.shape[-1]
            return _fn(x, *args, **kw)

        net.__dict__[name] = counting
        undo.append(name)
    try:
        yield counts
    finally:
        for name in undo:
            del net.__dict__[name]


def cpu_seconds(usage: Any) -> float:
    """User + kernel CPU seconds of a ``getrusage``/``wait4`` result."""
    return float(usage.ru_utime + usage.ru_stime)


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Each variant ``repeats`` times in turn (A B, B A, ...) after ``warmup`` untimed rounds: wall and CPU
    seconds of every call, and the load average before and after."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    names = list(variants)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    load0 = load()
    for r in range(repeats):
        for k in names if r % 2 == 0 else names[::-1]:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            variants[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(cpu_seconds(resource.getrusage(resource.RUSAGE_SELF)) - cpu_seconds(r0))
    return {"wall": wall, "cpu": cpu, "load": [load0, load()]}


def run_cli(args: list[str]) -> dict[str, float]:
    """Run ``python -m mdrn.upscale ARGS`` in a fresh process: wall and CPU seconds, peak RSS, load."""
    paths = (str(_root()), os.environ.get("PYTHONPATH"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with tempfile.TemporaryFile() as err:
        before = load()
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "mdrn.upscale", *args], stdout=subprocess.DEVNULL,
                                stderr=err, env=env)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"mdrn-upscale {' '.join(args)} failed: {err.read().decode()[-2000:]}")
    return {
        "seconds": wall,
        "cpu_seconds": cpu_seconds(usage),
        "peak_rss": usage.ru_maxrss * 1024,
        "load_before": before,
        "load_after": load(),
    }


def _root() -> Path:
    """The source checkout the running ``mdrn`` is imported from."""
    import mdrn

    return Path(mdrn.__file__).resolve().parents[1]


def _backends(model: str, device: torch.device) -> dict[str, tuple[nn.Module, str]]:
    """The engine's networks to compare: ``default`` (what the command line runs), and where this version
    of mdrn has them, ``torch``, ``onnxruntime`` and ``bf16`` (AMX CPUs)."""
    from mdrn.clinical.enlarge import load_network

    try:
        from mdrn.clinical.runtime import onnxruntime_available, precision_problem, prepare_network
    except ImportError:  # before the runtime module: the command line prepared the device's fast path
        from mdrn.perf import prepare_for_inference

        return {"default": (prepare_for_inference(load_network(model), device), "PyTorch, fast path")}
    out = {"default": prepare_network(load_network(model), device, job_pixels=10**12)}
    if "ONNX" in out["default"][1]:
        out["torch"] = prepare_network(load_network(model), device, backend="torch")
    elif onnxruntime_available():
        out["onnxruntime"] = prepare_network(load_network(model), device, backend="onnxruntime")
    if precision_problem("bf16", device) is None:
        out["bf16"] = prepare_network(load_network(model), device, backend="torch", precision="bf16")
    return out


def bench_clinical(ctx: Context) -> None:
    """Rows and profile of the clinician path for a CT slice and a series, at each of ``clinical_scales``."""
    from mdrn.clinical.enlarge import load_network, model_name

    s = ctx.sizes
    if ctx.device.type != "cpu":
        ctx.skip("clinician path", "CPU only (the GPU path is measured by section gpu)")
        return
    model = s.clinical_model
    side, n = s.clinical_side, s.clinical_slices
    with tempfile.TemporaryDirectory(prefix="mdrn-bench-clinical-") as tmp:
        root = Path(tmp)
        what = write_series(root / "series", n, side)
        write_series(root / "one", 1, side)
        plain = load_network(model)
        threads = torch.get_num_threads()
        nets = _backends(model, ctx.device)
        torch.set_num_threads(threads)  # preparing sets one thread per core; the run's setting stays
        label = f"{model_name(model)} ({type(plain).__name__}, {_describe_weights(plain, model)})"
        facts: dict[str, Any] = {
            "model": label, "input": what, "side": side, "slices": n, "scales": {},
            "backends": {k: v[1] for k, v in nets.items()}, "threads": torch.get_num_threads(),
        }  # fmt: skip
        for scale in s.clinical_scales:
            ctx.log(f"  x{scale} ...")
            facts["scales"][str(scale)] = _bench_scale(ctx, plain, nets, scale, root, label)
        ctx.facts["clinical"] = facts


def _describe_weights(net: nn.Module, model: str) -> str:
    """'B=16 F=32, 808,739 parameters, sha256 e874481dd7c7' for a network and its weights file."""
    import hashlib

    from mdrn.weights import SHIPPED_MODELS, shipped_path

    params = sum(p.numel() for p in net.parameters())
    spec = getattr(net, "spec_args", None) or {}
    arch = f"B={spec['n_resblocks']} F={spec['n_feats']}, " if "n_resblocks" in spec else ""
    path = shipped_path(model) if model in SHIPPED_MODELS else Path(model)
    digest = f", sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}" if path.is_file() else ""
    return f"{arch}{params:,} parameters{digest}"


def _bench_scale(
    ctx: Context, plain: nn.Module, nets: dict[str, tuple[nn.Module, str]], scale: int, root: Path, label: str
) -> dict[str, Any]:
    """One scale: the forward, the engine per backend and the limit interleaved; the in-process profile;
    the command line on the series and on one slice; the app's call on the series."""
    from mdrn.clinical.enlarge import UpscaleOptions, enlarge_bands
    from mdrn.clinical.inputs import open_inputs
    from mdrn.io.images import image_to_tensor
    from mdrn.perf import prepare_for_inference

    s = ctx.sizes
    side, n, model = s.clinical_side, s.clinical_slices, s.clinical_model
    stack = open_inputs(root / "series")[0]
    image = stack.slice(0)
    x = image_to_tensor(image)[None]
    colors = int(getattr(plain, "n_colors", 1))
    xin = x.expand(-1, colors, -1, -1) if x.shape[1] == 1 and colors == 3 else x
    flops = count_flops(plain, tuple(xin.shape), scale).forward
    feats = int(getattr(plain, "n_feats", 32))
    limit = ConvLimit(ctx, (1, feats, side, side), training=False, flops_per_slot=flops)
    fast = prepare_for_inference(copy.deepcopy(plain), ctx.device)
    opts = UpscaleOptions(scale=scale, device=str(ctx.device))

    def forward() -> None:
        with torch.inference_mode(), malloc_reuse(True):
            fast(xin, scale)

    def engine(net: nn.Module) -> Callable[[], None]:
        def call() -> None:
            for _ in enlarge_bands(net, image, opts):
                pass

        return call

    variants = {"forward": forward, **{f"engine:{k}": engine(v[0]) for k, v in nets.items()}, **limit.calls()}
    m = interleaved(variants, s.clinical_repeats)
    lim = limit.gflops(m["wall"])["forward"]
    lim_cpu = max(limit.inner * limit.flops / min(m["cpu"][k]) / 1e9 for k in ("limit:nhwc", "limit:nchw"))
    out: dict[str, Any] = {
        "flops": flops,
        "forward_seconds": median(m["wall"]["forward"]),
        "forward_best": min(m["wall"]["forward"]),
        "forward_cpu": median(m["cpu"]["forward"]),
        "conv_limit_gflops": lim,
        "conv_limit_cpu_gflops": lim_cpu,
        "limit_seconds": flops / lim / 1e9,
        "load_forward": m["load"],
        "engine": {
            k: {
                "wall": median(m["wall"][f"engine:{k}"]),
                "cpu": median(m["cpu"][f"engine:{k}"]),
                "runs_on": v[1],
            }
            for k, v in nets.items()
        },
    }
    net = nets["default"][0]
    out["profile"] = _profile(ctx, net, stack, scale, root)
    cli = ["--scale", str(scale), "--weights", model, "-q", "--overwrite"]
    out["cli_series"] = run_cli([str(root / "series"), "-o", str(root / f"cli{scale}"), *cli])
    out["cli_one"] = run_cli([str(root / "one"), "-o", str(root / f"cli1_{scale}"), *cli])
    out["app_series"] = _app_call(root, scale, model)
    for key in ("seconds", "cpu_seconds"):
        per = (out["cli_series"][key] - out["cli_one"][key]) / max(1, n - 1)
        if per <= 0:  # timing noise (a loaded machine, few slices) above the slices' work: the series' mean,
            per = out["cli_series"][key] / n  # start-up included (an upper bound), said in the row's notes
            out["cli_per_slice_bound"] = True
        out["cli_per_slice" + ("_cpu" if key == "cpu_seconds" else "")] = per
        out["cli_startup" + ("_cpu" if key == "cpu_seconds" else "")] = out["cli_one"][key] - per
    _rows(ctx, out, scale, label)
    stack.close()
    return out


def _profile(ctx: Context, net: nn.Module, stack: Any, scale: int, root: Path) -> dict[str, Any]:
    """The engine on the series in this process, its functions timed where it calls them."""
    from mdrn.clinical.enlarge import UpscaleOptions, describe_method, enlarge_stack
    from mdrn.io.dicom import Derivation

    opts = UpscaleOptions(scale=scale, device=str(ctx.device), overwrite=True)
    how = Derivation(scale, describe_method(ctx.sizes.clinical_model, net), "bench")
    enlarge_stack(net, stack, root / f"warm{scale}", opts, how)  # warm: the first slice allocates anew
    timer = StageTimer()
    load0 = load()
    with timed_stages(timer) as found, counted_pixels(net) as pixels:
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        with timer.span("other"):
            enlarge_stack(net, stack, root / f"prof{scale}", opts, how)
        total = time.perf_counter() - t0
        total_cpu = cpu_seconds(resource.getrusage(resource.RUSAGE_SELF)) - cpu_seconds(r0)
    n = stack.n_slices
    image_px = n * stack.slice(0).height * stack.slice(0).width
    return {
        "stages_found": found,
        "per_slice": {k: {m: v / n for m, v in d.items()} for k, d in timer.totals.items()},
        "seconds_per_slice": total / n,
        "cpu_per_slice": total_cpu / n,
        "pixels": {k: v / image_px for k, v in pixels.items()},
        "load": [load0, load()],
    }


def _app_call(root: Path, scale: int, model: str) -> dict[str, float]:
    """The app's enlarge call on the series (warm: the model loaded by a first call on one slice)."""
    from mdrn.app import process_files

    one = sorted((root / "one").iterdir())
    process_files(one, scale, model, root / f"appwarm{scale}")
    files = sorted((root / "series").iterdir())
    load0 = load()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    results, errors = process_files(files, scale, model, root / f"app{scale}")
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(resource.getrusage(resource.RUSAGE_SELF)) - cpu_seconds(r0)
    if errors:
        raise RuntimeError(f"the app's enlarge call failed: {errors[0]}")
    n = len(files)
    out = {"seconds": wall, "per_slice": wall / n, "cpu_per_slice": cpu / n, "load_before": load0,
           "load_after": load()}  # fmt: skip
    try:
        out["views"] = _view_times(results[0])
    finally:
        for r in results:
            r.close()
    return out


def _view_times(result: Any) -> dict[str, float] | None:
    """Seconds the app takes to show a slice (render and PNG files, as the page gets them): a slice not
    shown before, then a zoom, a centre and a window change of it (from its kept arrays); None before
    the viewer kept them."""
    import io

    from PIL import Image

    from mdrn.app import render

    if not hasattr(result, "view"):
        return None

    def shown(index: int, zoom: str, cx: float, center: float | None) -> float:
        t0 = time.perf_counter()
        for picture in render(result, index, center, 400 if center else None, zoom, cx, 50):
            Image.fromarray(picture).save(io.BytesIO(), format="png", compress_level=1)
        return time.perf_counter() - t0

    first = shown(1, "1x", 50, None)
    changes = [shown(1, "2x", 50, None), shown(1, "2x", 30, None), shown(1, "1x", 50, 40.0)]
    return {"first": first, "change": median(changes), "changes": changes, "load": load()}


def _rows(ctx: Context, out: dict[str, Any], scale: int, label: str) -> None:
    """The section's rows for one scale."""
    s = ctx.sizes
    side, n = s.clinical_side, s.clinical_slices
    head = f"clinician path x{scale}, {side}x{side} 16-bit CT slice, {label}"
    fwd, fwd_cpu, per = out["forward_seconds"], out["forward_cpu"], out["cli_per_slice"]
    cli = out["cli_series"]
    threads = torch.get_num_threads()
    ctx.add(
        make_row(
            f"{head}: mdrn-upscale per slice",
            per,
            fwd,
            "s",
            better="lower",
            ours_label=f"mdrn-upscale on a {n}-slice series, a fresh process (s per slice after the first)",
            baseline_label="the network's forward on the whole slice, one call (fast path)",
            repeats=1,
            notes=(
                f"CPU seconds per slice {out['cli_per_slice_cpu']:.2f} vs {fwd_cpu:.2f} "
                f"({out['cli_per_slice_cpu'] / fwd_cpu:.2f}x; CPU time is what the load average does not "
                f"inflate); series wall {cli['seconds']:.1f} s (load {cli['load_before']:.1f}-"
                f"{cli['load_after']:.1f}), peak RSS {cli['peak_rss'] / 2**20:.0f} MB; start-up and first "
                f"slice {out['cli_startup']:.1f} s; a 300-slice series at this rate "
                f"{(out['cli_startup'] + 300 * per) / 60:.1f} min, on {threads} idle cores (CPU seconds / "
                f"{threads}) {(out['cli_startup_cpu'] + 300 * out['cli_per_slice_cpu']) / threads / 60:.1f} "
                f"min; forward median of {s.clinical_repeats} (load {out['load_forward'][0]:.1f}-"
                f"{out['load_forward'][1]:.1f})"
                + (
                    "; per slice = the series' mean with start-up (the one-slice run's time was within the "
                    "noise of the difference)"
                    if out.get("cli_per_slice_bound")
                    else ""
                )
            ),
            extra={"cli_series": cli, "cli_one": out["cli_one"], "startup": out["cli_startup"]},
        )
    )
    app = out["app_series"]
    ctx.add(
        make_row(
            f"{head}: the app's enlarge call per slice",
            app["per_slice"],
            fwd,
            "s",
            better="lower",
            ours_label=f"mdrn.app.process_files on the {n}-slice series (warm process)",
            baseline_label="the network's forward on the whole slice, one call (fast path)",
            repeats=1,
            notes=(
                f"CPU seconds per slice {app['cpu_per_slice']:.2f} vs {fwd_cpu:.2f} "
                f"({app['cpu_per_slice'] / fwd_cpu:.2f}x); load {app['load_before']:.1f}-"
                f"{app['load_after']:.1f}"
            ),
            extra=app,
        )
    )
    gf = out["flops"] / out["forward_best"] / 1e9
    ctx.add(
        make_row(
            f"{head}: forward rate against the conv limit of its width",
            gf,
            out["conv_limit_gflops"],
            "GFLOP/s",
            ours_label="the forward's counted FLOPs / its best call",
            baseline_label="3x3 convolution of the network's width on the same image, best call",
            repeats=s.clinical_repeats,
            notes=(
                f"{out['flops'] / 1e9:.0f} GFLOP counted per slice: {out['limit_seconds']:.2f} s at the "
                f"limit, forward median {fwd:.2f} s; interleaved; per CPU second "
                f"{out['flops'] / fwd_cpu / 1e9:.1f} vs {out['conv_limit_cpu_gflops']:.1f} GFLOP/s "
                f"({out['flops'] / fwd_cpu / 1e9 / out['conv_limit_cpu_gflops']:.0%})"
            ),
            extra={"flops": out["flops"]},
        )
    )
    views = app.get("views")
    if views:
        ctx.add(
            make_row(
                f"{head}: the app's view change",
                views["change"],
                views["first"],
                "s",
                better="lower",
                ours_label="zoom, centre or window changed (the slice's kept arrays)",
                baseline_label="a slice shown the first time (read, bicubic, draw)",
                repeats=len(views["changes"]),
                notes=f"render and PNG files as the page gets them; load {views['load']:.1f}",
                extra=views,
            )
        )
    engines = out["engine"]
    base = engines.get("torch") or engines["default"]
    for key, e in engines.items():
        if e is base:
            continue
        ctx.add(
            make_row(
                f"{head}: the engine's network stage, {e['runs_on']}",
                e["wall"],
                base["wall"],
                "s",
                better="lower",
                ours_label=f"{e['runs_on']} ({key})",
                baseline_label=base["runs_on"],
                repeats=s.clinical_repeats,
                notes=(
                    f"mdrn.clinical.enlarge.enlarge_bands on the slice (normalise, tiles, quantise); CPU "
                    f"seconds {e['cpu']:.2f} vs {base['cpu']:.2f} ({e['cpu'] / base['cpu']:.2f}x); "
                    "interleaved"
                ),
                extra={"ours": e, "baseline": base},
            )
        )


def clinical_markdown(facts: dict[str, Any]) -> list[str]:
    """Markdown lines: per scale, the profile of the clinician path (where the time of a slice goes)."""
    lines = [
        "",
        f"## Where a slice's time goes: section `clinical` ({facts['model']}; {facts['input']}, "
        f"series of {facts['slices']})",
        "",
    ]
    for scale, d in facts["scales"].items():
        p = d["profile"]
        per = p["per_slice"]
        total, total_cpu = p["seconds_per_slice"], p.get("cpu_per_slice", 0.0) or float("nan")
        fwd_cpu = d.get("forward_cpu", float("nan"))
        lines += [
            f"**x{scale}**: the engine (`mdrn.clinical.enlarge.enlarge_stack`) in a warm process "
            f"{total:.2f} s and {total_cpu:.2f} CPU s per slice (load {p['load'][0]:.1f}-"
            f"{p['load'][1]:.1f}); "
            f"the network's forward on the whole slice {d['forward_seconds']:.2f} s, {fwd_cpu:.2f} CPU s; "
            f"at the conv limit {d['limit_seconds']:.2f} s; mdrn-upscale {d['cli_per_slice']:.2f} s "
            f"({d.get('cli_per_slice_cpu', float('nan')):.2f} CPU s) per slice after a start of "
            f"{d['cli_startup']:.1f} s; the app {d['app_series']['per_slice']:.2f} s "
            f"({d['app_series'].get('cpu_per_slice', float('nan')):.2f} CPU s).",
            "",
            "| stage | wall s per slice | CPU s per slice | share of CPU | page faults MB | kernel s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name in ("read", "normalise", "network", "quantise", "write", "other"):
            if name not in per:
                continue
            v = per[name]
            cpu = v.get("cpu_seconds", float("nan"))
            lines.append(
                f"| {name} | {v['seconds']:.3f} | {cpu:.3f} | {cpu / total_cpu:.1%} | "
                f"{v['fault_bytes'] / 2**20:,.0f} | {v['kernel_seconds']:.2f} |"
            )
        px = ", ".join(f"{k} {v:.2f}x" for k, v in p["pixels"].items() if v)
        net = per.get("network", {}).get("cpu_seconds", float("nan"))
        lines += [
            "",
            f"The network stage against the forward alone, in CPU seconds: {net:.2f} vs {fwd_cpu:.2f} "
            f"({net / fwd_cpu:.2f}x: tiling, page faults, bicubic of the tiles); LR pixels run per image "
            f"pixel: {px}.",
            "",
        ]
        engines = d.get("engine", {})
        if engines:
            lines += [
                "Backends (the engine's network stage on the slice, interleaved, medians): "
                + "; ".join(
                    f"{e['runs_on']} {e['wall']:.2f} s, {e['cpu']:.2f} CPU s" for e in engines.values()
                )
                + ".",
                "",
            ]
    return lines
