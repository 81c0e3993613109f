"""The paper's network learning on one GPU in minutes (issue 26), then Set5 scored in fp32.

Trains MDRN B=80 F=64 (x2/x3/x4, the bicubic path) with the recipe of ``conf/experiment/gpu_learn.yaml``
(written before any GPU run: 8,000 steps of batch 32, 48x48 LR patches, lr 2e-4 cosine, bf16-mixed with the
GPU training preset; the last step is the model) on ``.gpu_data/`` (``make gpu-data``: T91's 40 images of
at least 192 px, 75 BSD200 images, Set5; checked against its manifest first), through ``python -m
mdrn.train`` in a subprocess, and scores Set5 x2/x3/x4 with the protocol in fp32 (bicubic beside).
Goal: Set5 x2 >= 37.6 dB (VDSR: 37.53).
Where the time budget allows (``--fp32 auto``: once the bf16 run is done, only if 1.5x its time is left),
the same recipe in fp32 (``32-true``; cuDNN may use TF32, PyTorch's default) beside it, capped to the
budget (its summary says if the cap cut it short of equal steps).

    python scripts/gpu_learn.py                 # on a CUDA machine: ~7 min (make gpu-checks PART=learn)
    python scripts/gpu_learn.py --smoke         # any machine: B=2 F=8, 4 steps, both precisions (tests)

Writes ``gpu_learn_<gpu>-<date>.json`` and ``.md`` (``--smoke``: ``gpu_learn_smoke_<device>-<date>``) into
``--out`` (default ``$OUT`` where set, the device machine's returned folder, else experiments/results/train/).
Exit status: 0 when every run that started finished (met or not, the goal is in the summary), 1 when one
failed (the summary says where), 2 when it could not start (no CUDA device, data missing).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_data  # noqa: E402  (scripts/gpu_data.py)

EXPERIMENT = "gpu_learn"
#: the goal: Set5 x2 PSNR (dB), above VDSR's published 37.53
GOAL_X2 = 37.6
VDSR_X2 = 37.53
#: the fp32 run starts (``--fp32 auto``) only if this many times the bf16 run's wall time is left
FP32_ROOM = 1.5
#: seconds kept after a run's fit for its test and the summary (a capped fp32 run stops this early)
TAIL_S = 40.0
#: tiny settings of --smoke (any machine, seconds): the same script, config and code paths
SMOKE = [
    "model.net.n_resblocks=2",
    "model.net.n_feats=8",
    "trainer.max_steps=4",
    "trainer.max_time=null",
    "trainer.accelerator=cpu",
    "trainer.benchmark=false",
    "data.batch_size=2",
    "data.patch_size=12",
    "data.num_workers=0",
    "data.pin_memory=false",
    "+callbacks.train_speed.warmup=1",
    "threads=1",
]
PRECISIONS = {"bf16-mixed": "bf16-mixed (the GPU preset)", "32-true": "fp32 (32-true)"}


def _max_time(seconds: float) -> str:
    """Lightning's ``max_time`` (DD:HH:MM:SS) for ``seconds``."""
    s = max(1, int(seconds))
    return f"00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _loss_curve(run_dir: Path) -> list[list[float]]:
    """[[step, train/loss]] from the run's CSV log (every ``log_every_n_steps``)."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("train/loss"):
                out.append([int(row["step"]), float(row["train/loss"])])
    return out


def _set5(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{'x2': {psnr, ssim, bicubic_psnr, gain_db}, ...} from a run's results.json."""
    out: dict[str, dict[str, float]] = {}
    for key, value in (results.get("test") or {}).items():
        parts = key.split("/")
        if len(parts) == 3 and parts[1].startswith("Set5_x"):
            out.setdefault(parts[1].split("_")[1], {})[parts[2]] = float(value)
    for scale, v in out.items():
        bic = (results.get("bicubic") or {}).get(f"test/Set5_{scale}/psnr")
        if bic is not None:
            v["bicubic_psnr"], v["gain_db"] = float(bic), v["psnr"] - float(bic)
    return dict(sorted(out.items()))


def _log_lines(run_dir: Path, *needles: str) -> list[str]:
    """Lines of the run's train.log holding any of ``needles`` (the preset, a CUDA-graph fallback)."""
    path = run_dir / "train.log"
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    return [line.strip() for line in lines if any(n in line for n in needles)]


def train_run(
    precision: str, work: Path, data: Path, overrides: list[str], timeout: float, max_time: float | None
) -> dict[str, Any]:
    """One ``python -m mdrn.train experiment=gpu_learn`` run in a subprocess; what it measured and scored."""
    run_dir = work / precision
    cap = [f"trainer.max_time={_max_time(max_time)}"] if max_time is not None else []
    cmd = [sys.executable, "-m", "mdrn.train", f"experiment={EXPERIMENT}", f"hydra.run.dir={run_dir}",
           f"paths.data_dir={work / 'data'}", f"trainer.precision={precision}", "print_config=false",
           *cap, *overrides]  # fmt: skip
    env = {**os.environ, "MDRN_GPU_DATA": str(data), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    print(f"\n=== {PRECISIONS[precision]}: {' '.join(cmd[2:])}", flush=True)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"precision": precision, "command": " ".join(cmd[1:])}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout)
        status = "done" if proc.returncode == 0 else f"failed: mdrn.train exited with {proc.returncode}"
    except subprocess.TimeoutExpired:
        status = f"failed: killed after {timeout:.0f} s (the script's time budget)"
    out["status"] = status
    out["seconds_wall"] = time.perf_counter() - t0
    results_path = run_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    speed_path = run_dir / "train_speed.json"
    out["speed"] = json.loads(speed_path.read_text()) if speed_path.is_file() else None
    out["steps"] = results.get("global_step")
    out["checkpoint"] = (results.get("checkpoint") or {}).get("line")
    out["set5"] = _set5(results)
    out["loss_curve"] = _loss_curve(run_dir)
    out["log"] = _log_lines(run_dir, "training preset", "skipped CUDA graphs", "Error", "error:")[:12]
    return out


def _device() -> dict[str, Any]:
    """The machine: GPU name and tag, torch, CUDA and cuDNN versions (CPU where there is no GPU)."""
    import torch

    from mdrn.bench.core import gpu_tag

    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        info.update(
            device=name, tag=gpu_tag(name), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version()
        )
        info["tf32_convolutions"] = torch.backends.cudnn.allow_tf32
    else:
        info.update(device="cpu", tag="cpu")
    return info


def goal(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The goal (Set5 x2 >= 37.6 dB) judged on the bf16 run: met, not met, or not measured."""
    x2 = runs.get("bf16-mixed", {}).get("set5", {}).get("x2", {}).get("psnr")
    if x2 is None:
        return {"status": "not measured", "bar_db": GOAL_X2}
    return {"status": "met" if x2 >= GOAL_X2 else "not met", "bar_db": GOAL_X2, "set5_x2_db": x2}


def _run_row(name: str, r: dict[str, Any], batch: int) -> str:
    """One run's line of the summary table."""
    sp = r.get("speed") or {}
    scores = " / ".join(
        f"{v['psnr']:.3f}" + (f" ({v['gain_db']:+.2f})" if "gain_db" in v else "")
        for v in r.get("set5", {}).values()
    )
    rate = sp.get("steps_per_s")
    cells = [
        PRECISIONS.get(name, name),
        r["status"],
        f"{r.get('steps') or '-'} of {sp.get('max_steps', '-')}",
        str(sp.get("stopped_by", "-")),
        f"{sp['first_steps']} in {sp['first_seconds']:.0f} s" if sp else "-",
        f"{rate:.1f}" if rate else "-",
        f"{rate * batch:,.0f}" if rate else "-",
        f"{r.get('seconds_wall', 0):.0f} s",
        scores or "-",
    ]
    return "| " + " | ".join(cells) + " |"


def summary_markdown(s: dict[str, Any]) -> str:
    """The summary in Markdown: machine, recipe, each run's speed and Set5 scores, goal, loss curve."""
    d = s["device"]
    lines = [
        f"# The paper's network learning on one GPU: {d['device']}, {s['started_utc'][:16]}"
        + (" (--smoke: tiny settings, says nothing about learning)" if s["smoke"] else ""),
        "",
        f"Command: `{s['command']}` (issue 26). Machine: {d['device']}, torch {d['torch']}"
        + (f", CUDA {d['cuda']}, cuDNN {d['cudnn']}" if d.get("cuda") else "")
        + f". Data: {s['data']['rule']} ({s['data']['counts']}); the sample data's scikit-image training "
        "images. General100 is not available offline and is not used.",
        "",
        f"Recipe (`conf/experiment/{EXPERIMENT}.yaml`, fixed before any GPU run): {s['recipe']}. Selection: "
        "the last step (no validation set). Scores: Set5 with the protocol (Y, shave = scale), network in "
        "fp32.",
        "",
        f"**Goal: Set5 x2 >= {GOAL_X2} dB (VDSR {VDSR_X2}): {s['goal']['status']}**"
        + (f" ({s['goal']['set5_x2_db']:.3f} dB)" if "set5_x2_db" in s["goal"] else "")
        + ".",
        "",
        "| run | status | steps | stopped by | first steps (compile, graphs) | steps/s after | patches/s "
        "| wall | Set5 x2 / x3 / x4 PSNR (gain over bicubic) |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    batch = s["recipe_values"].get("batch_size") or 0
    for name, r in s["runs"].items():
        lines.append(_run_row(name, r, batch))
    for name, r in s["runs"].items():
        curve = r.get("loss_curve") or []
        if len(curve) >= 2:
            every = max(1, len(curve) // 8)
            pts = ", ".join(f"{st}: {loss:.4f}" for st, loss in curve[::every])
            lines += ["", f"Training L1 loss ({PRECISIONS.get(name, name)}; step: loss): {pts}."]
        for line in r.get("log", []):
            if "skipped CUDA graphs" in line:
                lines += ["", f"Warning from the run: {line}"]
    lines += ["", "Notes: " + "; ".join(s["notes"]) + "." if s["notes"] else ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MDRN_GPU_DATA", gpu_data.DEST)))
    ap.add_argument("--out", type=Path, default=None, help="summary folder ($OUT, else results/train)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="seconds for everything (default 450)")
    ap.add_argument("--fp32", choices=("auto", "yes", "no"), default="auto", help="the fp32 run beside")
    ap.add_argument("--smoke", action="store_true", help="tiny settings on any device (tests)")
    ap.add_argument("overrides", nargs="*", help="extra mdrn.train overrides (changes the recipe: say so)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc)
    device = _device()
    if device["tag"] == "cpu" and not args.smoke:
        print("gpu_learn: no CUDA device: this trains the paper's network on a GPU (--smoke: on a CPU)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        manifest = gpu_data.verify(args.data)
    except gpu_data.DataError as err:
        print(f"gpu_learn: {err}", file=sys.stderr)
        return 2
    out_dir = args.out or Path(os.environ.get("OUT") or ROOT / "experiments" / "results" / "train")
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = [*(SMOKE if args.smoke else []), *args.overrides]
    from omegaconf import OmegaConf

    recipe = OmegaConf.load(ROOT / "conf" / "experiment" / f"{EXPERIMENT}.yaml")
    net, tr, dc = recipe.model.net, recipe.trainer, recipe.data
    values = {
        "blocks": net.n_resblocks,
        "feats": net.n_feats,
        "scales": list(net.scales),
        "steps": tr.max_steps,
        "batch_size": dc.batch_size,
        "patch_size": dc.patch_size,
        "lr": recipe.model.lr,
        "lr_schedule": recipe.model.lr_schedule,
        "max_time": tr.max_time,
    }
    if args.smoke:
        values.update(blocks=2, feats=8, steps=4, batch_size=2, patch_size=12, max_time=None)
    runs: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mdrn-gpu-learn-") as tmp:
        work = Path(tmp)
        left = args.budget_s - (time.perf_counter() - start)
        runs["bf16-mixed"] = train_run("bf16-mixed", work, args.data, overrides, left, None)
        left = args.budget_s - (time.perf_counter() - start)
        need = FP32_ROOM * runs["bf16-mixed"]["seconds_wall"]
        if args.fp32 == "no":
            notes.append("fp32 run not asked for (--fp32 no)")
        elif args.fp32 == "auto" and left < need:
            bf16 = runs["bf16-mixed"]["seconds_wall"]
            notes.append(
                f"fp32 run not run: {left:.0f} s of the {args.budget_s:.0f} s budget left, {need:.0f} s "
                f"wanted ({FP32_ROOM}x the bf16 run's {bf16:.0f} s)"
            )
        elif left <= TAIL_S + 10:
            notes.append(f"fp32 run not run: {left:.0f} s left of the budget")
        else:
            cap = None if args.smoke else left - TAIL_S
            runs["32-true"] = train_run("32-true", work, args.data, overrides, left, cap)
            sp = runs["32-true"].get("speed") or {}
            if sp.get("stopped_by") not in (None, "max_steps"):
                notes.append(f"the fp32 run was cut at step {sp.get('steps')} by the time cap ({cap:.0f} s): "
                             "not equal steps; compare the loss curves at equal steps")  # fmt: skip
    if args.overrides:
        notes.append(f"recipe changed on the command line: {' '.join(args.overrides)}")
    summary = {
        "issue": 26,
        "smoke": args.smoke,
        "started_utc": started.isoformat(timespec="seconds"),
        "command": "python scripts/gpu_learn.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": device,
        "data": {"rule": manifest["rule"], "counts": manifest["counts"]},
        "recipe": f"MDRN B={values['blocks']} F={values['feats']} x{'/x'.join(map(str, values['scales']))}, "
        f"{values['steps']:,} steps of batch {values['batch_size']} x {values['patch_size']}^2 LR patches, "
        f"Adam lr {values['lr']:g} {values['lr_schedule']}, max_time {values['max_time']}",
        "recipe_values": values,
        "runs": runs,
        "goal": goal(runs),
        "notes": notes,
        "seconds": time.perf_counter() - start,
    }
    from mdrn.bench.report import free_stem

    stem = free_stem(out_dir, f"gpu_learn_{'smoke_' if args.smoke else ''}{device['tag']}-{started:%Y-%m-%d}")
    (out_dir / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / f"{stem}.md").write_text(summary_markdown(summary))
    print("\n" + summary_markdown(summary))
    print(f"wrote {out_dir / stem}.json and .md in {summary['seconds']:.0f} s")
    return 0 if all(r["status"] == "done" for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
