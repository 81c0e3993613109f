"""Every experiment config composes and runs one step: ``-m 'experiment=glob(*)' debug=fdr`` multirun."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import SHARED, shared_path
from omegaconf import OmegaConf
from train_helpers import ROOT, subprocess_env, train_cmd

# the sample data (no download) replaces each experiment's data sources; everything else is theirs
SAMPLE_DATA = [
    "data.train=[{name:sample,kind:sample,split:train}]",
    "data.val=[{name:s16,kind:sample,split:test_16bit,limit:1}]",
    "data.test=[{name:s16,kind:sample,split:test_16bit,limit:1}]",
    "data.batch_size=2",
    "data.patch_size=12",
    "print_config=false",
    "threads=1",
]


@pytest.mark.slow
def test_every_experiment_fast_dev_run(tmp_path: Path) -> None:
    experiments = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    sweep = tmp_path / "sweep"
    cmd = train_cmd(tmp_path / "run", tmp_path / "data", "experiment=glob(*)", "debug=fdr",
                    f"hydra.sweep.dir={sweep}", *SAMPLE_DATA)  # fmt: skip
    cmd.insert(3, "-m")  # python -m mdrn.train -m ...
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=1200)
    done = {}
    for job in sweep.iterdir():
        overrides = job / ".hydra" / "overrides.yaml"
        if job.is_dir() and overrides.exists():
            exp = next(o for o in OmegaConf.load(overrides) if o.startswith("experiment="))
            done[exp.split("=", 1)[1]] = (job / "test_results.txt").exists()
    failed = sorted(e for e in experiments if not done.get(e))
    assert proc.returncode == 0 and not failed, f"failed: {failed}\n{proc.stderr[-4000:]}"


# ------------------------------------------------------------------ the model-selection rule (presets)
BENCHMARKS = {"Set5", "Set14", "B100", "Urban100"}
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def _data(experiment: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The resolved train/val/test sources of a preset (../shared from MDRN_SHARED, absolute)."""
    from hydra import compose, initialize_config_dir

    monkeypatch.setenv("MDRN_SHARED", str(SHARED))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
    return {
        k: OmegaConf.to_container(cfg.data[k], resolve=True) if cfg.data.get(k) else []
        for k in ("train", "val", "test")
    }


def _overlap(a: dict, b: dict) -> bool:
    """True if sources ``a`` and ``b`` may hold the same images (same set, split or folder)."""
    from mdrn.data.sources import SAMPLE_SPLITS

    kind = a.get("kind", "folder")
    if kind != b.get("kind", "folder"):
        return False
    if kind == "benchmark":
        return a["name"] == b["name"]
    if kind == "div2k":
        return a.get("split", "train") == b.get("split", "train")
    if kind == "sample":
        fa, fb = (SAMPLE_SPLITS[s.get("split", "train")] for s in (a, b))
        return fa == fb or fa.startswith(fb + "/") or fb.startswith(fa + "/")
    pa, pb = (Path(s["path"]).expanduser().resolve() for s in (a, b))
    return pa == pb or pa in pb.parents or pb in pa.parents


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_presets_never_train_or_select_on_a_test_set(
    experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set5/Set14/B100/Urban100 are only tested; validation (checkpoint selection) never uses a test set."""
    data = _data(experiment, monkeypatch)
    for stage in ("train", "val"):
        for src in data[stage]:
            assert src.get("kind") != "benchmark" and src.get("name") not in BENCHMARKS, (
                experiment,
                stage,
                src,
            )
    for val in data["val"]:
        for test in data["test"]:
            assert not _overlap(val, test), f"{experiment}: validation {val} overlaps test {test}"


def test_presets_val_and_train_images_are_not_test_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By pixels: no validation or training image of a preset is one of its test images (local data)."""
    from mdrn.data import prepare_sample
    from mdrn.data.datamodule import resolve_source
    from mdrn.data.sources import pixel_sha256
    from mdrn.io.images import read_image

    shared_path("datasets", "Set5")
    prepare_sample(tmp_path)
    hashes: dict[str, set[str]] = {}

    def pixels(src: dict) -> set[str] | None:
        key = json.dumps(src, sort_keys=True)
        if key not in hashes:
            try:
                files, _ = resolve_source(src, tmp_path, (2,))
            except Exception:  # data not on this machine (DIV2K, BSD200, Set14, ...): checked by spec above
                return None
            hashes[key] = {pixel_sha256(read_image(f).array) for f in files}
        return hashes[key]

    checked = 0
    for experiment in EXPERIMENTS:
        data = _data(experiment, monkeypatch)
        tested = [h for h in map(pixels, data["test"]) if h is not None]
        for stage in ("train", "val"):
            for src in data[stage]:
                mine = pixels(src)
                if mine is None:
                    continue
                for other in tested:
                    checked += 1
                    assert not mine & other, f"{experiment}: a {stage} image of {src['name']} is a test image"
    assert checked >= len(EXPERIMENTS)
