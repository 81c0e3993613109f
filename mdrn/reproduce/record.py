"""Recording runs: command, machine, date and duration beside each output; trained presets; checkpoints."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mdrn.reproduce.results import RESULTS, ROOT, write_text


def machine_info() -> dict[str, Any]:
    """Facts about this machine that matter for the recorded numbers (CPU, cores, versions)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _git_commit() -> str | None:
    """The current git commit of the repository (None outside a clone)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


def run_info_path(output: str | os.PathLike[str]) -> Path:
    """The run record beside a recorded output: ``<output>.run.json``."""
    output = Path(output)
    return output.with_name(output.name + ".run.json")


#: file endings of the weights a recorded command may read (their SHA-256 goes into the run record)
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".onnx", ".mat")


def _record_path(path: Path) -> str:
    """``path`` as a run record keeps it: relative to the checkout where it lies in or beside it."""
    rel = os.path.relpath(path.resolve(), ROOT)
    return str(path.resolve()) if rel.startswith(os.pardir + os.sep + os.pardir) else rel


#: where a command names its weights: ``key=NAME`` keys (the last part) and options followed by a NAME
WEIGHT_KEYS = ("weights", "init_from")
WEIGHT_OPTIONS = ("--weights", "--model", "--models")


def weight_inputs(
    command: Sequence[str], output: str | os.PathLike[str] | None = None
) -> list[dict[str, str]]:
    """The weights ``command`` reads, each with its SHA-256: every argument (or ``key=value`` value) that
    is an existing file ending in ``WEIGHT_SUFFIXES``, and every shipped model named where a command takes
    weights (``WEIGHT_KEYS``, ``WEIGHT_OPTIONS``); ``output`` (what the command writes) is left out."""
    from mdrn.io.download import sha256_file
    from mdrn.weights import PRETRAINED_DIR, SHIPPED_MODELS

    skip = Path(output).resolve() if output is not None else None
    words = list(command)
    found: list[dict[str, str]] = []
    option = ""  # the last option seen: the words after a WEIGHT_OPTIONS one name weights (nargs)
    for word in words[1:]:
        if any(c.isspace() for c in word):  # a shell string (bash -c '...'): its own words
            try:
                found += weight_inputs(["sh", *shlex.split(word)], output)
            except ValueError:
                pass
            continue
        if word.startswith("-") and "=" not in word:
            option = word
            continue
        key, value = word.split("=", 1) if "=" in word else ("", word)
        if key.startswith("-"):  # --weights=FILE
            takes_weights, option = key in WEIGHT_OPTIONS, ""
        else:
            takes_weights = key.rsplit(".", 1)[-1] in WEIGHT_KEYS or (not key and option in WEIGHT_OPTIONS)
        path = Path(value)
        if takes_weights and not path.exists() and value in SHIPPED_MODELS:
            path = PRETRAINED_DIR / f"{value}.safetensors"
        elif path.suffix.lower() not in WEIGHT_SUFFIXES:
            continue
        if path.is_file() and path.resolve() != skip:
            found.append({"arg": value, "path": _record_path(path), "sha256": sha256_file(path)})
    return found


def changed_inputs(results: Path = RESULTS) -> list[str]:
    """One line per recorded output under ``results`` whose run read weights that have changed since
    (SHA-256 of the file now differs from the one recorded). Inputs not on this machine are not judged."""
    from mdrn.io.download import sha256_file

    lines = []
    for info_path in sorted(results.rglob("*.run.json")):
        info = json.loads(info_path.read_text())
        for item in info.get("inputs", []):
            path = Path(item["path"])
            path = path if path.is_absolute() else ROOT / path
            if path.is_file() and sha256_file(path) != item["sha256"]:
                output = info_path.with_name(info_path.name.removesuffix(".run.json"))
                lines.append(
                    f"{_record_path(output)}: recorded {info['started_utc'][:10]} from {item['path']} "
                    f"(sha256 {item['sha256'][:12]}), which is now another file (sha256 "
                    f"{sha256_file(path)[:12]}); run it again: {public_command(info['command'])}"
                )
    return lines


def record(output: str | os.PathLike[str], command: Sequence[str], *, log: bool = True) -> int:
    """Run ``command``; write ``<output>.run.json``: command, machine, UTC dates, seconds, commit, exit code,
    and the weights it read with their SHA-256 (``inputs``: see :func:`weight_inputs`).

    With ``log`` the command's output is also written to ``<output>.log``. Returns the exit code.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now(_dt.timezone.utc)
    commit = _git_commit()  # the code that runs (read before: commits made meanwhile are not it)
    inputs = weight_inputs(command, output)  # hashed before the run: what it read, not what it left
    t0 = time.perf_counter()
    log_lines: list[str] = []
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        log_lines.append(line)
    code = proc.wait()
    info = {
        "command": shlex.join(command),
        "output": output.name,
        "machine": machine_info(),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 1),
        "git_commit": commit,
        "returncode": code,
    }
    if inputs:
        info["inputs"] = inputs
    write_text(run_info_path(output), json.dumps(info, indent=2) + "\n")
    if log:
        write_text(output.with_name(output.name + ".log"), "".join(log_lines))
    return code


def train_preset(
    name: str,
    overrides: Sequence[str] = (),
    results: Path = RESULTS,
    logs: Path = ROOT / "logs" / "experiments",
) -> int:
    """Train ``experiment=<name>`` and record it: weights, training metrics and test table in ``results``.

    Runs ``python -m mdrn.train experiment=<name> hydra.run.dir=<logs>/<name> [overrides]`` (recorded in
    ``results/models/<name>.safetensors.run.json``) and converts the checkpoint the run tested (the model
    selection rule of :mod:`mdrn.training.selection`: best by ``val/psnr`` on the validation sets, which are
    never test sets, else the last) to ``results/models/<name>.safetensors``; the run record gets a
    ``checkpoint`` entry naming it. Copies the CSV logger's ``metrics.csv`` to
    ``results/train/<name>_metrics.csv`` and the printed test table (headed by the checkpoint line) beside it.
    """
    import shutil

    run_dir = logs / name
    weights = results / "models" / f"{name}.safetensors"
    cmd = [sys.executable, "-m", "mdrn.train", f"experiment={name}", f"hydra.run.dir={run_dir}", *overrides]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    code = record(weights, cmd)
    if code != 0:
        return code
    return finish_preset(name, run_dir, results)


def finish_preset(name: str, run_dir: Path, results: Path = RESULTS) -> int:
    """After a recorded run of ``experiment=<name>`` in ``run_dir``: its weights and training files.

    Converts the checkpoint the run tested (its ``checkpoint.json``) to ``results/models/<name>.safetensors``,
    adds a ``checkpoint`` entry to that file's run record, and copies the config, the CSV logger's metrics,
    the init report and the test table to ``results/train/<name>_*``. Also used for a run resumed by hand
    from its checkpoint after an interruption (``ckpt_path=``, recorded with :func:`record`).
    """
    import shutil

    from mdrn.training.selection import read_selection

    weights = results / "models" / f"{name}.safetensors"
    selection = read_selection(run_dir)
    if selection is None:
        print(f"{run_dir}: the run wrote no checkpoint.json (which checkpoint it tested)", file=sys.stderr)
        return 1
    ckpt = Path(selection["path"]) if selection.get("path") else run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        print(f"{ckpt}: the checkpoint the run tested is missing", file=sys.stderr)
        return 1
    from mdrn.weights import load_model, save_model

    save_model(load_model(ckpt), weights, overwrite=True)
    info = run_info(weights) or {}
    info["checkpoint"] = {**selection, "path": ckpt.name}
    write_text(run_info_path(weights), json.dumps(info, indent=2) + "\n")
    train_dir = results / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    for src, dst in ((run_dir / ".hydra" / "config.yaml", f"{name}_config.yaml"),
                     (run_dir / "csv" / "metrics.csv", f"{name}_metrics.csv"),
                     (run_dir / "init_report.txt", f"{name}_init_report.txt"),
                     (run_dir / "test_results.txt", f"{name}_test_results.txt")):  # fmt: skip
        if src.is_file():
            shutil.copyfile(src, train_dir / dst)
    print(f"recorded {weights} ({selection['line']}) and {train_dir}/{name}_*")
    return 0


def run_info(output: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run record of a recorded output, or None if it was not recorded."""
    path = run_info_path(output)
    return json.loads(path.read_text()) if path.is_file() else None


#: the recipes of the trained presets
RECIPES = ROOT / "conf" / "experiment"


def recipe_files(name: str, recipes: Path = RECIPES) -> list[Path]:
    """A preset's recipe file and the recipes it builds on (its ``defaults`` entries that are recipes)."""
    import yaml

    out: list[Path] = []
    todo = [name]
    while todo:
        path = recipes / f"{todo.pop(0)}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such recipe")
        if path in out:
            continue
        out.append(path)
        for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults") or []:
            if isinstance(entry, str) and entry != "_self_" and (recipes / f"{entry}.yaml").is_file():
                todo.append(entry)
    return out


def recipe_sha256(name: str, recipes: Path = RECIPES) -> str:
    """SHA-256 of a preset's recipe text (its file and the recipes it builds on, in order)."""
    import hashlib

    h = hashlib.sha256()
    for path in recipe_files(name, recipes):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def add_note(
    output: str | os.PathLike[str], text: str, *, kind: str = "note", preset: str | None = None
) -> dict:
    """Append a dated note to a recorded run (``<output>.run.json`` ``notes``), written after the run.

    ``kind="selection"`` with ``preset``: why the run does not follow today's selection rule (it predates
    it), bound to the recipe text it was recorded with (``recipe_sha256``): a changed recipe is no longer
    covered by the note. Returns the note.
    """
    info = run_info(output)
    if info is None:
        raise FileNotFoundError(f"{run_info_path(output)}: no run record to annotate")
    note: dict[str, Any] = {
        "kind": kind,
        "added_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "added_at_commit": _git_commit(),
        "text": text,
    }
    if preset is not None:
        note["recipe_sha256"] = recipe_sha256(preset)
    info.setdefault("notes", []).append(note)
    write_text(run_info_path(output), json.dumps(info, indent=2) + "\n")
    return note


def notes(output: str | os.PathLike[str], kind: str | None = None) -> list[dict]:
    """The notes added to a recorded run after it ran (of one ``kind``, or all)."""
    info = run_info(output) or {}
    return [n for n in info.get("notes", []) if kind is None or n.get("kind") == kind]


def trained_model(path: str | os.PathLike[str]) -> Path | None:
    """The recorded model file behind a recorded output: itself (``models/<preset>.safetensors``) or the
    ``weights=...safetensors`` a recorded score CSV's command evaluated; None where there is none."""
    info = run_info(path)
    if info is None:
        return None
    if info.get("checkpoint"):
        return Path(path)
    for arg in shlex.split(info.get("command", "")):
        if arg.startswith("weights=") and arg.endswith(".safetensors"):
            model = Path(arg.split("=", 1)[1])
            model = model if model.is_absolute() else Path(path).parent.parent / "models" / model.name
            return model if run_info(model) is not None else None
    return None


def checkpoint_line(path: str | os.PathLike[str]) -> str | None:
    """Which checkpoint a recorded model file holds, or the model a recorded score CSV evaluated.

    ``models/<preset>.safetensors``: the ``checkpoint`` entry of its run record (``checkpoint: best
    (val/psnr ... on ...) at step N``). A score CSV: that of the ``weights=...`` file its command names.
    None where the run is not recorded or evaluated no trained preset.
    """
    model = trained_model(path)
    ckpt = (run_info(model) or {}).get("checkpoint") if model is not None else None
    return str(ckpt["line"]) if ckpt else None


def selection_facts(model: str | os.PathLike[str], results: Path = RESULTS) -> list[str]:
    """How a recorded preset's checkpoint was chosen: whether its recipe stated the rule before the run
    (its recorded config's ``selection``), then every note added to its record afterwards, dated."""
    from omegaconf import OmegaConf

    model = Path(model)
    config = results / "train" / f"{model.stem}_config.yaml"
    stated = OmegaConf.load(config).get("selection") if config.is_file() else None
    facts = [
        f"rule stated in its recipe before the run: `selection: {stated}`"
        if stated
        else "its recipe had no `selection:` key before the run (recorded before recipes stated one; it "
        "followed its checkpoint callbacks, as its checkpoint line says)"
    ]
    facts += [f"note added {n['added_utc'][:10]}: {n['text']}" for n in notes(model)]
    return facts


def public_command(command: str) -> str:
    """A recorded command as anyone can type it: no machine paths (the interpreter is ``python``, an
    absolute path becomes ``.../<its name>``)."""
    words = shlex.split(command)
    if words and Path(words[0]).is_absolute() and Path(words[0]).name.startswith("python"):
        words[0] = "python"
    out = []
    for word in words:
        key, eq, value = word.rpartition("=") if "=" in word else ("", "", word)
        if value.startswith("/"):
            value = f".../{Path(value).name}"
        out.append(f"{key}{eq}{value}")
    return shlex.join(out)


def run_line(paths: Sequence[Path]) -> str:
    """One Markdown line per recorded output: command, date, duration, machine."""
    lines = []
    for p in paths:
        info = run_info(p)
        if info is None:
            md = p.with_suffix(".md")
            note = f"recorded in `{md.parent.name}/{md.name}`" if md.is_file() else "no run record"
            lines.append(f"- `{p.name}`: {note}")
            continue
        m = info.get("machine", {})
        ckpt = info.get("checkpoint")
        lines.append(
            f"- `{p.name}`: `{public_command(info['command'])}` — {info['started_utc']} UTC, "
            f"{info['seconds']:.0f} s, "
            f"{m.get('cpu')} ({m.get('cores')} cores{', ' + m['gpu'] if m.get('gpu') else ''}), "
            f"torch {m.get('torch')}, commit {str(info.get('git_commit'))[:8]}"
            + (f"; {ckpt['line']}" if ckpt else "")
        )
    return "\n".join(lines)


def preset_summary(results: Path, name: str) -> str:
    """Words for a trained preset from its recorded config: net size, steps, batch, patch, data."""
    path = results / "train" / f"{name}_config.yaml"
    if not path.is_file():
        return f"`{name}` (conf/experiment/{name}.yaml; not recorded yet)"
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    net, data = cfg.model.net, cfg.data
    keys = ("n_resblocks", "n_feats", "n1", "n2", "f1", "f2", "f3", "scales", "scale", "bicubic_skip")
    size = ", ".join(f"{k}={net[k]}" for k in keys if k in net)
    size = size.replace("n_resblocks", "B").replace("n_feats", "F")
    sources = ", ".join(str(src.get("name")) for src in data.train)
    ckpt = checkpoint_line(results / "models" / f"{name}.safetensors")
    return (
        f"`{name}`: {net._target_.rsplit('.', 1)[-1]} ({size}), {cfg.trainer.max_steps} steps of "
        f"{data.batch_size} LR patches {data.patch_size}x{data.patch_size} on {sources}, seed {cfg.seed}"
        + (f"; {ckpt}" if ckpt else "")
    )
