"""Score a shipped model beside bicubic and write its model card (``mdrn/pretrained/<name>.md``).

    python -m mdrn.reproduce train mdrn_small                 # the recorded training run (about 90 min)
    python experiments/scripts/model_card.py mdrn_small --install

``--install`` copies the recorded run's weights (``experiments/results/models/<name>.safetensors``) into
the package (``mdrn/pretrained/<name>.safetensors``); without it the two files must already be the same.
Then every score CSV that is missing is made by a recorded ``python -m mdrn.evaluate`` run (the shipped
model by its name, and bicubic) in ``experiments/results/<name>/``: Set5 (``$MDRN_SHARED/datasets`` or
``../shared/datasets``; evaluation only), the medical test images of Table 2 (``data/medical``, written
by ``experiments/scripts/medical_images.py``) and the sample data's held-out test sets
(``data/sample/test``). The card is rendered from these files, the training run's record and the weights
file only; nothing is typed in by hand. Delete a CSV to score again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mdrn.data.sources import prepare_sample
from mdrn.models import model_spec
from mdrn.reproduce.record import public_command, record, run_info
from mdrn.reproduce.results import (
    RESULTS,
    ROOT,
    load_published,
    markdown_table,
    mean_scores,
    read_csv,
    shipped_run,
)
from mdrn.weights import DEFAULT_MODEL, PRETRAINED_DIR, SHIPPED_MODELS, load_model

SHARED = Path(os.environ.get("MDRN_SHARED", ROOT.parent / "shared"))
MEDICAL = ROOT / "data" / "medical"
SAMPLE_TEST = ROOT / "data" / "sample" / "test"
#: score groups: (file stem, root folder, sets in it, how the card names each set)
GROUPS = (
    ("set5", SHARED / "datasets", ("Set5",), {"Set5": "Set5"}),
    (
        "medical",
        MEDICAL,
        ("Medical_8bit", "Medical_10to16bit"),
        {"Medical_8bit": "Table 2 medical, 8 bit", "Medical_10to16bit": "Table 2 medical, 10-16 bit"},
    ),
    (
        "sample",
        SAMPLE_TEST,
        ("8bit", "16bit"),
        {"8bit": "sample_8bit (test)", "16bit": "sample_16bit (test)"},
    ),
)


def scores_dir(name: str) -> Path:
    """Where a shipped model's score CSVs and the SHA-256 of the file they scored are recorded."""
    return RESULTS / shipped_run(name)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recorded_files(name: str, out: Path) -> dict[str, list[Path]]:
    """The score CSVs the card is rendered from: ``{model: [<out>/<run>_<group>.csv, ...]}`` (``<run>`` the
    recorded run of the shipped model ``name``; ``bicubic_<group>.csv`` for bicubic)."""
    prefix = {name: shipped_run(name), "bicubic": "bicubic"}
    return {
        model: [out / f"{prefix[model]}_{stem}.csv" for stem, *_ in GROUPS] for model in (name, "bicubic")
    }


def score_files(name: str, out: Path) -> dict[str, list[Path]]:
    """Make the missing score CSVs (recorded evaluate runs); return ``{model: [csv, ...]}``.

    The model's CSVs are made again when the shipped file is not the one they scored
    (``<out>/<name>.sha256``).
    """
    files = recorded_files(name, out)
    run = shipped_run(name)
    digest, scored = sha256(PRETRAINED_DIR / f"{name}.safetensors"), out / f"{run}.sha256"
    if not scored.is_file() or scored.read_text().strip() != digest:
        for stale in out.glob(f"{run}_*.csv"):
            stale.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for i, (_stem, root, sets, _) in enumerate(GROUPS):
        if not all((root / s).is_dir() for s in sets):
            hint = "experiments/scripts/medical_images.py --out data/medical" if root == MEDICAL else root
            raise SystemExit(f"{root}: the sets {list(sets)} are missing (see {hint})")
        for model, args in ((name, [f"weights={name}"]), ("bicubic", ["model=bicubic"])):
            csv = files[model][i]
            if csv.is_file():
                continue
            cmd = [sys.executable, "-m", "mdrn.evaluate", *args, f"eval.root={root}",
                   f"eval.sets=[{','.join(sets)}]", "eval.scales=[2,3,4]", f"eval.output={csv}"]  # fmt: skip
            if record(csv, cmd) != 0:
                raise SystemExit(f"evaluation failed: {' '.join(cmd)} (log: {csv}.log)")
    scored.write_text(digest + "\n")
    return files


def _steps(metrics: Path) -> int | None:
    """The number of training steps in a Lightning CSV log (its last step with a training loss, + 1)."""
    rows = read_csv(metrics) if metrics.is_file() else []
    steps = [int(r["step"]) for r in rows if r.get("step") and r.get("train/loss")]
    return max(steps) + 1 if steps else None


def _parts(run: dict) -> list[dict]:
    """The earlier parts of a run stopped and resumed from its checkpoint (``resumed_from``: one or more)."""
    first = run.get("resumed_from") or []
    return [first] if isinstance(first, dict) else list(first)


def _window_line(spec: dict) -> str:
    """The Architecture bullet of a network trained with an input window ('' without one)."""
    window = spec.get("input_window")
    if not window:
        return ""
    width = float(window["min_width"])
    stretch = 1.0 / width
    narrowest = f"1/{stretch:.0f}" if abs(stretch - round(stretch)) < 1e-9 else f"{width:g}"
    return f"""
- Input window ({window["mode"]}, {window["low"]}..{window["high"]} percentiles, narrowest width
  {narrowest} of the range, so at most a {stretch:g}x stretch): each image, or each whole series,
  multi-frame image or volume, is mapped by its own window before the network and the output mapped back
  exactly (`mdrn.models.window`), in training (one window per whole low-resolution image) as in use: a
  16-bit CT filling 3% of its range is seen at full contrast. Tiles and bands share their image's window."""


def _upsampler_line(args: dict) -> str:
    """The Architecture bullet of the balanced sub-pixel upsampler ('' for the plain one)."""
    if args.get("upsampler") != "balanced":
        return ""
    return """
- Balanced sub-pixel upsamplers (`mdrn.models.blocks.Upsampler(balanced=True)`): started as nearest
  neighbour (ICNR) and kept, after every optimizer step, answering a flat input alike in all s x s phases,
  so they paint far less of a grid into flat tissue than plain ones, though not none: the lattice left is
  measured by `scripts/check_artefacts.py` (recorded in `experiments/results/checks/check_artefacts.txt`)."""


def _selection_line(run: dict, d: Any) -> str:
    """How the shipped weights were chosen: the run's checkpoint entry (the rule its recipe states)."""
    val = ", ".join(v.name for v in d.val)
    sel = run.get("checkpoint") or {}
    if sel.get("kind") == "best":
        return (
            f"Selection, fixed in the recipe before training: the checkpoint with the best {sel['monitor']}\n"
            f"  (mean over the validation sets {val}; never a test set), validated every "
            f"{d.batches_per_epoch} steps:\n  step {sel['step']} ({sel['score']:.3f} dB)."
        )
    return (
        f"Validation (logged, not used to pick weights: the shipped weights are the last step's):\n  {val} "
        "(the sample data's validation split)."
    )


def _use_line(name: str) -> str:
    """Where the tools use a shipped model: by default, or when chosen by name."""
    if name == DEFAULT_MODEL:
        return "It is what `mdrn-upscale` and `mdrn-app` use when no model is chosen, and"
    return f"Choose it with `mdrn-upscale --weights {name}`, in the app's model list, or `weights={name}`;"


def render(name: str, files: dict[str, list[Path]]) -> str:
    """The model card's Markdown."""
    shipped = PRETRAINED_DIR / f"{name}.safetensors"
    preset = shipped_run(name)
    net = load_model(name)
    spec = model_spec(net)
    args = spec["args"]
    params = sum(p.numel() for p in net.parameters())
    run = run_info(RESULTS / "models" / f"{preset}.safetensors") or {}
    machine = run.get("machine", {})
    cfg = OmegaConf.load(RESULTS / "train" / f"{preset}_config.yaml")
    steps = _steps(RESULTS / "train" / f"{preset}_metrics.csv")
    d, m = cfg.data, cfg.model
    sources = ", ".join(
        f"{s.name} ({s.get('split') or Path(str(s.get('path', ''))).name}, weight {s.get('weight')})"
        for s in d.train
    )
    vdsr = load_published()["vdsr_official"]["Set5"]
    ours, bic = mean_scores(files[name]), mean_scores(files["bicubic"])
    rows = []
    for _stem, _, sets, labels in GROUPS:
        for s in sets:
            for scale in (2, 3, 4):
                (pm, sm, n), (pb, sb, _) = ours[(s, scale)], bic[(s, scale)]
                ref = f"{vdsr[str(scale)]:.2f}" if s == "Set5" else ""
                rows.append([labels[s], f"x{scale}", n, f"{pb:.2f} / {sb:.4f}", f"{pm:.2f} / {sm:.4f}",
                             f"{pm - pb:+.2f}", ref])  # fmt: skip
    score_cmds = "\n".join(
        f"- `{public_command((run_info(p) or {}).get('command', 'not recorded'))}`" for p in files[name]
    )
    commands = [(run_info(p) or {}).get("command", "") for p in files[name]]
    scored_as = sorted({a.split("=", 1)[1] for c in commands for a in c.split() if a.startswith("weights=")})
    renamed = (
        f"\n- Scored while this file was shipped as `{scored_as[0]}` (the same file: its SHA-256 is\n"
        f"  recorded in `experiments/results/{preset}/{preset}.sha256`); `weights={name}` scores it today."
        if scored_as and scored_as != [name]
        else ""
    )
    parts = _parts(run)
    run_cmd = public_command(run.get("command", "?"))
    minutes = (run.get("seconds", 0) + sum(p.get("seconds", 0) for p in parts)) / 60
    resumed = "".join(
        f"""
- Part {i + 1} of {len(parts) + 1}: `{public_command(p.get("command", "?"))}`
  started {p.get("started_utc", "?")} UTC and stopped after step {p.get("step", "?")}
  ({p.get("seconds", 0):.0f} s; {p.get("why", "")})."""
        for i, p in enumerate(parts)
    )
    if parts:
        resumed += """
  The run above resumed it from the last part's checkpoint (same step counter, optimizer and schedule
  state)."""
    arch = (
        f"{spec['arch']}: {args['n_resblocks']} residual blocks, {args['n_feats']} filters, scales "
        f"{'/'.join(f'x{s}' for s in args['scales'])} in one network (shared trunk, two pre-processing "
        f"blocks and an upsampler per scale), {args['n_colors']} colour planes, "
        f"bicubic_skip={args['bicubic_skip']}"
    )
    extra = _upsampler_line(args) + _window_line(spec)
    role = "the shipped default model" if name == DEFAULT_MODEL else "a shipped model"
    return f"""# {name}: {role} of mdrn

{SHIPPED_MODELS[name]}. {_use_line(name)}
`mdrn.weights.load_model("{name}")` finds it inside the package, with no network. **A small model
trained in {minutes:.0f} minutes on a 2-core CPU, not the paper's MDRN (B=80, F=64, DIV2K), and not a
medical device.**

## Architecture

- {arch}.
- The paper's low/high-frequency split (its Fig. 9): the output is the MATLAB-bicubic enlargement
  (`mdrn.protocol.resize.imresize`, the low-frequency image) plus what the residual network adds (the
  high-frequency image). The last convolution started at zero, so training began at bicubic.{extra}
- {params:,} parameters; `{shipped.name}` is {shipped.stat().st_size / 1e6:.2f} MB (float32 safetensors,
  the architecture in its metadata), SHA-256 `{sha256(shipped)}`.
- Gray images (1 plane) go through the RGB planes (replicated in, averaged out); 8- to 16-bit images
  are scaled to [0, 1] by their own bit depth, and outputs are written at that depth.

## Training

- Data: {sources}; never Set5 or any test image. Patches {d.patch_size}x{d.patch_size} LR pixels (HR
  {d.patch_size}·s), batch {d.batch_size}, one random scale per batch (uniform over x2/x3/x4), random
  flips and rotations; gray medical images replicated to RGB. Images smaller than
  {d.patch_size}·4 px are left out.
- {steps} steps; {str(m.loss).upper()} loss, Adam (betas {list(m.betas)}), learning rate {m.lr} with
  {m.lr_schedule} decay to 0 over the run.
- {_selection_line(run, d)}
- Run: `{run_cmd}` (recipe `conf/experiment/{preset}.yaml`), {run.get("started_utc", "?")}
  UTC, {run.get("seconds", 0):.0f} s, {machine.get("cpu")} ({machine.get("cores")} cores, no GPU), torch
  {machine.get("torch")}, commit {str(run.get("git_commit"))[:8]}. Record:
  `experiments/results/models/{preset}.safetensors.run.json` (log, metrics and config in
  `experiments/results/train/{preset}_*`).{resumed}

## Scores

PSNR (dB) / SSIM against MATLAB bicubic, at each image's own bit depth (peak 2^n − 1), on Y for RGB
images, border = scale removed (`mdrn.protocol.metrics.score`). Set5 is used for evaluation only; VDSR's
published Set5 column (Kim et al. 2016) for reference. The medical images are held out: Table 2's images
(`experiments/scripts/medical_images.py`) and the sample data's test split.

{markdown_table(["set", "scale", "images", "bicubic", name, "gain (dB)", "VDSR (published)"], rows)}

Commands (per-image CSVs and run records in `experiments/results/{preset}/`):
{score_cmds}
- bicubic: the same with `model=bicubic`.{renamed}

Rendered by `python experiments/scripts/model_card.py {name}`.

## Limits

- Trained on the images above on a CPU: it sharpens edges and textures that bicubic blurs, but it has
  seen no modality in depth; on smooth medical images its gain is small.
- It invents no structure larger than a few pixels, yet any SR output may show detail that was not in
  the patient: compare with the bicubic image (the app's detail panel shows the difference).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(SHIPPED_MODELS))
    parser.add_argument(
        "--install", action="store_true", help="copy the recorded run's weights into the package"
    )
    args = parser.parse_args()
    recorded = RESULTS / "models" / f"{shipped_run(args.name)}.safetensors"
    shipped = PRETRAINED_DIR / f"{args.name}.safetensors"
    if not recorded.is_file():
        raise SystemExit(
            f"{recorded}: no recorded run; run python -m mdrn.reproduce train {shipped_run(args.name)}"
        )
    if args.install:
        shipped.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(recorded, shipped)
    elif not shipped.is_file() or sha256(shipped) != sha256(recorded):
        raise SystemExit(f"{shipped} is not the recorded run's {recorded}; pass --install to copy it")
    prepare_sample(ROOT / "data")
    files = score_files(args.name, scores_dir(args.name))
    card = shipped.with_suffix(".md")
    card.write_text(render(args.name, files))
    print(f"wrote {card}")


if __name__ == "__main__":
    main()
