"""train(cfg): fast_dev_run of every model config on the sample data (tiny networks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from mdrn.models import MDRN
from mdrn.train import train
from mdrn.weights import save_model

TINY = {
    "mdrn_multiscale": ["model.net.n_resblocks=1", "model.net.n_feats=8"],
    "mdrn_x2": ["model.net.n_resblocks=1", "model.net.n_feats=8"],
    "mdrn_x3": ["model.net.n_resblocks=1", "model.net.n_feats=8"],
    "mdrn_x4": ["model.net.n_resblocks=1", "model.net.n_feats=8"],
    "mdrn_x4_from_x2": ["model.net.n_resblocks=1", "model.net.n_feats=8"],
    "edsr_baseline": ["model.net.n_resblocks=1", "model.net.n_feats=8"],
    "edsr": ["model.net.n_resblocks=1", "model.net.n_feats=8"],
    "srresnet": ["model.net.n_resblocks=1", "model.net.n_feats=8"],
    "srcnn": ["model.net.n1=8", "model.net.n2=4"],
    "vdsr": ["model.net.depth=3", "model.net.n_feats=8"],
    "bicubic": [],
}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding the embedded sample data (written once)."""
    from mdrn.data import prepare_sample

    root = tmp_path_factory.mktemp("sample_data")
    prepare_sample(root)
    return root


def _cfg(tmp_path: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.work_dir = str(ROOT)
        del cfg["hydra"]
    return cfg


def test_all_model_configs_listed() -> None:
    assert sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")) == sorted(TINY)


@pytest.mark.parametrize("model", sorted(TINY))
def test_fast_dev_run(model: str, tmp_path: Path, sample_dir: Path) -> None:
    extra = []
    if model == "mdrn_x4_from_x2":
        x2 = save_model(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), tmp_path / "x2.safetensors")
        extra.append(f"model.init_from={x2}")
    cfg = _cfg(tmp_path, [f"model={model}", "data=sample", "trainer=cpu", "+trainer.fast_dev_run=true",
                          "data.batch_size=2", "data.patch_size=16", "print_config=false", "logger=csv",
                          f"paths.data_dir={sample_dir}", "data.val.0.limit=1", "data.test.0.limit=1",
                          *TINY[model], *extra])  # fmt: skip
    results = train(cfg)
    assert any(k.endswith("/psnr") for k in results["test"])
    if model == "mdrn_x4_from_x2":
        assert "copied" in (tmp_path / "run" / "init_report.txt").read_text()


def _folder_overrides(tmp_path: Path) -> list[str]:
    """``data=folder`` on tiny random train (2 images), val and test (1 each) folders; a tiny MDRN x2."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir(exist_ok=True)
        for i in range(2 if split == "train" else 1):
            pixels = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / split / f"{i}.png")
    dirs = [f"data.{s}_dir={tmp_path / s}" for s in ("train", "val", "test")]
    return ["data=folder", *dirs, "model=mdrn_x2", *TINY["mdrn_x2"], "trainer=cpu", "data.batch_size=2",
            "data.patch_size=8", "data.num_workers=0", "print_config=false", "logger=csv",
            "model.save_images=0", "threads=1", f"paths.data_dir={tmp_path}",
            "~callbacks.rich_progress_bar"]  # fmt: skip


def test_folder_data_config_trains(tmp_path: Path) -> None:
    # data=folder fills its sources' paths from data.train_dir, data.val_dir, data.test_dir: values of the
    # config, no arguments of SRDataModule (which refused them: "unexpected keyword argument 'train_dir'")
    results = train(_cfg(tmp_path, [*_folder_overrides(tmp_path), "trainer.max_steps=2"]))
    assert results["global_step"] == 2
    assert "test/test_x2/psnr" in results["test"]


def test_continuing_a_finished_run_draws_the_uninterrupted_batches(tmp_path: Path) -> None:
    # a run that reached max_steps mid-epoch, continued with a larger max_steps from its last.ckpt, trains
    # on the batches (and learning rates) of one uninterrupted run; before, Lightning counted the cut epoch
    # as done and the sampler jumped to the next epoch's batches (steps 5-7 skipped batches 4-6)
    import torch
    from train_helpers import read_steps

    common = [*_folder_overrides(tmp_path), "data.batches_per_epoch=7", "model.lr_step=3", "model.lr=1e-2",
              "test=false", "+callbacks.steplog._target_=train_helpers.StepLog"]  # fmt: skip

    def run(name: str, steps: int, *extra: str) -> dict:
        out = tmp_path / name
        train(_cfg(out, [*common, f"trainer.max_steps={steps}", f"+callbacks.steplog.folder={out}", *extra]))
        return read_steps(out / "steps_rank0.txt")

    full = run("full", 10)
    assert run("part", 4) == {s: full[s] for s in range(1, 5)}
    last = tmp_path / "part" / "run" / "checkpoints" / "last.ckpt"
    continued = run("continued", 10, f"ckpt_path={last}")
    assert sorted(continued) == list(range(5, 11))
    for step in range(5, 11):
        assert continued[step][0] == full[step][0]
        assert continued[step][1] == pytest.approx(full[step][1], abs=1e-6), step
    final = {n: torch.load(tmp_path / n / "run" / "checkpoints" / "last.ckpt", weights_only=True)
             for n in ("full", "continued")}  # fmt: skip
    assert final["continued"]["lr_schedulers"] == final["full"]["lr_schedulers"]


def test_medical_data_config_instantiates(tmp_path: Path) -> None:
    # data=div2k_medical (the paper's mix): data.medical_dir is the medical source's path, not an argument
    from hydra.utils import instantiate

    from mdrn.train import _datamodule_config

    medical = tmp_path / "medical"
    cfg = _cfg(
        tmp_path, ["data=div2k_medical", f"data.medical_dir={medical}", f"paths.data_dir={tmp_path / 'd'}"]
    )
    dm = instantiate(_datamodule_config(cfg.data), n_colors=3)
    assert [(s["name"], s.get("path"), s["weight"]) for s in dm.train_sources] == [
        ("DIV2K", None, 0.8), ("medical", str(medical), 0.2)]  # fmt: skip


class _RunsCode:
    """Unpickling this makes a folder (what a crafted checkpoint could do with any command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return os.mkdir, (str(self.marker),)


def test_resuming_refuses_a_checkpoint_holding_code_whatever_torch_defaults_to(
    tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ckpt_path= is read with weights_only=True even where TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (set to quiet
    # old code) flips torch's default; before, Lightning passed weights_only=None and the file's pickle ran

    import torch

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, evil)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    cfg = _cfg(tmp_path, ["model=mdrn_x2", "data=sample", "trainer=cpu", "+trainer.fast_dev_run=true",
                          "data.batch_size=2", "data.patch_size=16", "print_config=false", "logger=csv",
                          f"paths.data_dir={sample_dir}", "data.val.0.limit=1", "data.test.0.limit=1",
                          f"ckpt_path={evil}", *TINY["mdrn_x2"]])  # fmt: skip
    with pytest.raises(SystemExit, match=r"evil.ckpt: not a readable checkpoint \(UnpicklingError"):
        train(cfg)  # refused by the check before training (weights_only too), in one line
    assert not marker.exists()


def test_a_resumed_run_keeps_the_best_checkpoint_of_the_steps_before_it(tmp_path: Path, caplog) -> None:
    # ckpt_path= resumes into a new run folder; Lightning then drops the best score it kept ("The dirpath
    # has changed ... won't be reloaded") and the resumed run called its own best "best", though an earlier
    # validation scored higher: the selection rule (the highest val/psnr of the run) must span the resume
    import logging
    import warnings

    import torch

    common = [*_folder_overrides(tmp_path), "data.batches_per_epoch=2", "test=false"]
    train(_cfg(tmp_path / "part", [*common, "trainer.max_steps=2"]))
    ckpt_dir = tmp_path / "part" / "run" / "checkpoints"
    (best,) = ckpt_dir.glob("best-step*.ckpt")
    last = ckpt_dir / "last.ckpt"
    state = torch.load(last, weights_only=True)
    (key,) = [k for k, v in state["callbacks"].items() if k.startswith("ModelCheckpoint") and v["monitor"]]
    assert state["callbacks"][key]["best_model_path"] == str(best)
    # the step before the resume scored higher than anything after it can (PSNR of random images)
    state["callbacks"][key]["best_model_score"] = torch.tensor(99.0, dtype=torch.float64)
    torch.save(state, last)
    with caplog.at_level(logging.INFO, logger="mdrn.train"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = train(_cfg(tmp_path / "resumed", [*common, "trainer.max_steps=4", f"ckpt_path={last}"]))
    assert results["global_step"] == 4
    assert results["checkpoint"]["kind"] == "best"
    assert results["checkpoint"]["score"] == pytest.approx(99.0)
    assert results["best_ckpt"] == str(best) and results["checkpoint"]["step"] == 2
    # the log says so, and not Lightning's "won't be reloaded", which would say the opposite
    assert "the best checkpoint before it (99.0000" in caplog.text and "stays in the running" in caplog.text
    assert not [w for w in caught if "won't be reloaded" in str(w.message)]


def test_ckpt_path_of_another_architecture_or_missing_is_one_clear_error(tmp_path: Path) -> None:
    # before: Lightning's "Error(s) in loading state_dict for SRModule: Missing key(s) ..." traceback after
    # the start line (another architecture), torch's FileNotFoundError traceback (a missing file)
    common = [*_folder_overrides(tmp_path), "trainer.max_steps=1", "test=false"]
    edsr = ["model=edsr_baseline", *TINY["edsr_baseline"]]
    train(_cfg(tmp_path / "edsr", [*common, *edsr]))
    last = tmp_path / "edsr" / "run" / "checkpoints" / "last.ckpt"
    for extra in (["train=true"], ["train=false", "test=true"]):
        with pytest.raises(SystemExit) as err:
            train(_cfg(tmp_path / "mdrn", [*common, *extra, f"ckpt_path={last}"]))
        msg = str(err.value)
        assert "\n" not in msg and str(last) in msg and "EDSR" in msg and "MDRN" in msg, msg
    with pytest.raises(SystemExit) as err:
        train(_cfg(tmp_path / "mdrn", [*common, f"ckpt_path={tmp_path / 'nope.ckpt'}"]))
    assert str(err.value) == f"mdrn: ckpt_path={tmp_path / 'nope.ckpt'}: no such checkpoint file"


def test_a_data_scale_the_model_lacks_is_one_clear_error_before_training(tmp_path: Path) -> None:
    # before: the run started, then its first step raised "ValueError: MDRN has no x3 branch" (a traceback)
    with pytest.raises(SystemExit) as err:
        train(_cfg(tmp_path, [*_folder_overrides(tmp_path), "trainer.max_steps=1", "data.scales=[2,3]"]))
    assert str(err.value) == "mdrn: data.scales [2, 3]: the model (MDRN) has no x3; it serves x2 (model.net)"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_init_from_of_another_architecture_or_missing_is_one_line_naming_the_file(tmp_path: Path) -> None:
    # before: Hydra's "Error in call to target 'mdrn.training.module.SRModule': ValueError('cannot transfer
    # EDSR weights into a MDRN') full_key: model" (three lines, no file named), and a FileNotFoundError for
    # a missing file
    from mdrn.models import EDSR

    edsr = save_model(EDSR(n_resblocks=1, n_feats=8, scale=2), tmp_path / "edsr.safetensors")
    base = [o if o != "model=mdrn_x2" else "model=mdrn_x4_from_x2" for o in _folder_overrides(tmp_path)]
    for src, why in ((edsr, "cannot transfer EDSR weights into a MDRN"), (tmp_path / "no.ckpt", "no such")):
        with pytest.raises(SystemExit) as err:
            train(_cfg(tmp_path, [*base, "trainer.max_steps=1", f"model.init_from={src}"]))
        msg = str(err.value)
        assert msg.startswith(f"mdrn: model.init_from={src}: ") and why in msg and "\n" not in msg, msg


def test_the_debug_preset_writes_no_checkpoint(tmp_path: Path) -> None:
    # conf/debug/default.yaml and the README: "no loggers or checkpoints"; before, Lightning's own default
    # checkpoint callback (callbacks: null) wrote checkpoints/epoch=0-step=2.ckpt, which the run's summary
    # then described as "last.ckpt resumes the run"
    base = [o for o in _folder_overrides(tmp_path) if o != "~callbacks.rich_progress_bar"]
    results = train(_cfg(tmp_path, [*base, "debug=default", "data.batches_per_epoch=2"]))
    assert results["global_step"] == 2
    assert not list((tmp_path / "run").rglob("*.ckpt"))
    assert results["checkpoint"]["kind"] == "last"


def test_a_run_without_testing_needs_no_test_data(tmp_path: Path) -> None:
    # test=false: the test sets are neither read nor required; before, the run stopped asking for them
    # ("mdrn: image folder .../absent does not exist"), e.g. experiment=vdsr_paper test=false without the
    # benchmark sets on disk
    base = [o for o in _folder_overrides(tmp_path) if not o.startswith("data.test_dir=")]
    results = train(_cfg(tmp_path, [*base, f"data.test_dir={tmp_path / 'absent'}", "trainer.max_steps=1",
                                     "test=false"]))  # fmt: skip
    assert results["global_step"] == 1 and "test" not in results


@pytest.mark.parametrize(
    ("overrides", "key"),
    [(["model=mdrn_x4_from_x2"], "model.init_from"), (["data=folder", "model=mdrn_x2"], "data.train_dir")],
)
def test_a_required_value_left_out_is_one_line_naming_it(tmp_path: Path, overrides: list, key: str) -> None:
    # the README's model=mdrn_x4_from_x2 without model.init_from=, data=folder without its folders; before,
    # a traceback ending in omegaconf's "MissingMandatoryValue: Missing mandatory value: model.init_from"
    with pytest.raises(SystemExit) as err:
        train(_cfg(tmp_path, [*overrides, "trainer=cpu", "trainer.max_steps=1", *TINY["mdrn_x2"]]))
    assert str(err.value) == f"mdrn: {key} has no value: add {key}=... to the command"
