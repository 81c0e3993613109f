"""The evaluation command on ../shared/datasets/Set5 gives the protocol's bicubic figures."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, shared_path

EXPECTED = {2: 33.682, 3: 30.405, 4: 28.431}


@pytest.mark.slow
def test_evaluate_bicubic_set5(tmp_path: Path) -> None:
    root = shared_path("datasets")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mdrn.evaluate", "model=bicubic", f"eval.root={root}", "eval.sets=[Set5]",
           "eval.scales=[2,3,4]", f"hydra.run.dir={run}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((run / "results.csv").open()))  # in the run folder by default
    assert list(rows[0]) == ["set", "scale", "image", "psnr", "ssim"]
    assert len(rows) == 15
    for s, ref in EXPECTED.items():
        vals = [float(r["psnr"]) for r in rows if int(r["scale"]) == s]
        assert sum(vals) / len(vals) == pytest.approx(ref, abs=0.002)
    assert "Set5" in proc.stdout and "33.68" in proc.stdout
    means = list(csv.DictReader((run / "means.csv").open()))
    assert [(m["set"], m["scale"]) for m in means] == [("Set5", "2"), ("Set5", "3"), ("Set5", "4")]
    assert f"Run folder {run}:" in proc.stdout and "results.csv" in proc.stdout
    assert "evaluating Bicubic" in (run / "evaluate.log").read_text()


def _eval_cfg(tmp_path: Path, *overrides: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


def test_evaluate_output_file(tmp_path: Path) -> None:
    from mdrn.evaluate import evaluate

    out = tmp_path / "elsewhere" / "x4.csv"
    cfg = _eval_cfg(tmp_path, f"eval.root={shared_path('datasets')}", "eval.sets=[Set5]", "eval.scales=[4]",
                    f"eval.output={out}")  # fmt: skip
    evaluate(cfg)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and {r["scale"] for r in rows} == {"4"}
    assert not (tmp_path / "run" / "results.csv").exists() and (tmp_path / "run" / "means.csv").is_file()


def test_evaluate_without_data_names_every_missing_set(tmp_path: Path) -> None:
    from mdrn.evaluate import evaluate

    data = tmp_path / "data"
    with pytest.raises(SystemExit) as ei:
        evaluate(_eval_cfg(tmp_path, f"paths.data_dir={data}"))
    msg = str(ei.value.code)
    assert msg.startswith("mdrn.evaluate: Missing under")
    for name in ("Set5", "Set14", "B100", "Urban100"):
        assert f"{name} (" in msg
    assert f"python -m mdrn.data download benchmarks --root {data.resolve()}" in msg


def test_evaluate_untrained_model_refused(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mdrn.evaluate", "model=mdrn_x2", f"eval.root={tmp_path}",
           "eval.sets=[Set5]", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "weights=PATH" in proc.stderr


def _write_set(root: Path, name: str, images: dict[str, tuple[int, int]]) -> None:
    """A set folder of 8-bit gray images (file name: (height, width)) with smooth content."""
    import numpy as np

    from mdrn.io.images import write_image

    (root / name).mkdir(parents=True)
    for fname, (h, w) in images.items():
        y, x = np.mgrid[0:h, 0:w]
        write_image(
            root / name / fname, (100 + 50 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.uint8), bit_depth=8
        )


def test_evaluate_too_small_image_names_the_file(tmp_path: Path) -> None:
    from mdrn.evaluate import evaluate

    _write_set(tmp_path / "data", "Tiny", {"ok.png": (40, 40), "small.png": (16, 16)})
    cfg = _eval_cfg(tmp_path, "model=bicubic", f"eval.root={tmp_path / 'data'}", "eval.sets=[Tiny]",
                    "eval.scales=[3]")  # fmt: skip
    with pytest.raises(SystemExit) as ei:
        evaluate(cfg)
    msg = str(ei.value.code)
    assert msg.startswith("mdrn.evaluate: ") and "\n" not in msg
    assert str(tmp_path / "data" / "Tiny" / "small.png") in msg and "(x3)" in msg and "too small" in msg


def test_evaluate_set_with_a_numeric_name_has_its_means(tmp_path: Path) -> None:
    from mdrn.evaluate import evaluate

    _write_set(tmp_path / "data", "2023", {"a.png": (40, 40)})
    cfg = _eval_cfg(tmp_path, "model=bicubic", f"eval.root={tmp_path / 'data'}", "eval.sets=[2023]",
                    "eval.scales=[2]")  # fmt: skip
    rows = evaluate(cfg)
    means = list(csv.DictReader((tmp_path / "run" / "means.csv").open()))
    assert [(m["set"], m["scale"], m["images"]) for m in means] == [("2023", "2", "1")]
    assert float(means[0]["PSNR"]) == pytest.approx(rows[0]["psnr"])


def test_evaluate_a_missing_checkpoint_or_two_models_is_one_clear_error(tmp_path: Path) -> None:
    # before: ckpt=nope.ckpt ended in a FileNotFoundError traceback; weights= and ckpt= together scored the
    # weights= model and silently ignored the checkpoint (a leftover weights=mdrn_small: the wrong model)
    from mdrn.evaluate import evaluate
    from mdrn.models import MDRN
    from mdrn.weights import save_model

    _write_set(tmp_path / "sets", "tiny", {"a.png": (24, 24)})
    sets = (f"eval.root={tmp_path / 'sets'}", "eval.sets=[tiny]", "eval.scales=[2]")
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(SystemExit) as ei:
        evaluate(_eval_cfg(tmp_path, f"ckpt={missing}", *sets))
    assert str(ei.value).startswith(f"mdrn.evaluate: {missing}: no such checkpoint file") and "\n" not in str(
        ei.value
    )
    mine = save_model(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), tmp_path / "mine.safetensors")
    with pytest.raises(SystemExit) as ei:
        evaluate(_eval_cfg(tmp_path, f"ckpt={mine}", "weights=mdrn_small", *sets))
    assert str(ei.value) == (
        f"mdrn.evaluate: weights=mdrn_small and ckpt={mine} name two models: give one of them"
    )


def test_evaluate_a_set_missing_from_another_root_gives_no_download_that_misses_it(tmp_path: Path) -> None:
    # eval.root=DIR (not the data folder's benchmark/): `python -m mdrn.data download Set14 --root data`
    # writes data/benchmark/Set14, where this command does not look; before, the message advised exactly
    # that (after "no images of set Set14 under DIR"), and the same command then failed again
    from mdrn.evaluate import evaluate

    _write_set(tmp_path / "sets", "Set5", {"a.png": (24, 24)})
    with pytest.raises(SystemExit) as ei:
        evaluate(_eval_cfg(tmp_path, f"eval.root={tmp_path / 'sets'}", "eval.sets=[Set5,Set14]",
                           f"paths.data_dir={tmp_path / 'data'}"))  # fmt: skip
    msg = str(ei.value.code)
    assert msg.startswith(f"mdrn.evaluate: no images of set Set14 under {tmp_path / 'sets'}"), msg
    assert "download" not in msg.split("\n", 1)[0] and "--root" not in msg, msg
    assert f"or drop eval.root to read {(tmp_path / 'data' / 'benchmark').resolve()}" in msg, msg
