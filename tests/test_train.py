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


def test_folder_data_config_trains(tmp_path: Path) -> None:
    # data=folder fills its sources' paths from data.train_dir, data.val_dir, data.test_dir: values of the
    # config, no arguments of SRDataModule (which refused them: "unexpected keyword argument 'train_dir'")
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        for i in range(2 if split == "train" else 1):
            pixels = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / split / f"{i}.png")
    dirs = [f"data.{s}_dir={tmp_path / s}" for s in ("train", "val", "test")]
    cfg = _cfg(tmp_path, ["data=folder", *dirs, "model=mdrn_x2", *TINY["mdrn_x2"], "trainer=cpu",
                          "trainer.max_steps=2", "data.batch_size=2", "data.patch_size=8",
                          "data.num_workers=0", "print_config=false", "logger=csv", "model.save_images=0",
                          "threads=1", f"paths.data_dir={tmp_path}",
                          "~callbacks.rich_progress_bar"])  # fmt: skip
    results = train(cfg)
    assert results["global_step"] == 2
    assert "test/test_x2/psnr" in results["test"]


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
