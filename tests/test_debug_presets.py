"""The debug presets (lightning-hydra-template style) do what their one-line description says."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from mdrn.data import ScaleBatchSampler
from mdrn.train import train

TINY = ["model.net.n_resblocks=1", "model.net.n_feats=8", "model.save_images=0", "data=sample",
        "data.batch_size=2", "data.patch_size=12", "threads=1",
        "data.val=[{name:v12,kind:sample,split:val_12bit,limit:1}]",
        "data.test=[{name:s8,kind:sample,split:test_8bit,limit:2}]"]  # fmt: skip


def _run(tmp_path: Path, data: Path, preset: str, *extra: str) -> tuple[dict, object]:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        overrides = [f"debug={preset}", f"paths.data_dir={data}", *TINY, *extra]
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        del cfg["hydra"]
    return train(cfg), cfg


def test_every_preset_is_documented_in_one_line() -> None:
    for f in sorted((ROOT / "conf" / "debug").glob("*.yaml")):
        lines = f.read_text().splitlines()
        assert lines[0] == "# @package _global_" and lines[1].startswith("# ") and len(lines[1]) > 20, f.name


def test_limit_runs_a_few_batches(tmp_path: Path, sample_data: Path) -> None:
    results, _ = _run(tmp_path, sample_data, "limit")
    assert results["global_step"] == 10  # 2 epochs x 5 batches
    assert set(results["test"]) >= {"test/s8_x2/psnr", "test/s8_x4/ssim"}


def test_overfit_repeats_three_batches(tmp_path: Path, sample_data: Path) -> None:
    sampler = ScaleBatchSampler(
        n_images=5, batch_size=2, batches_per_epoch=7, scales=(2, 3, 4), repeat_batches=3
    )
    batches = list(sampler)
    assert batches[:3] == batches[3:6] and batches[6] == batches[0] and len({str(b) for b in batches}) == 3
    results, cfg = _run(tmp_path, sample_data, "overfit", "data.batches_per_epoch=4", "trainer.max_epochs=2")
    assert cfg.data.repeat_batches == 3 and results["global_step"] == 8


def test_profiler_writes_its_report(tmp_path: Path, sample_data: Path) -> None:
    _run(tmp_path, sample_data, "profiler", "trainer.max_steps=3")
    report = (tmp_path / "run" / "fit-profile.txt").read_text()
    assert "run_training_batch" in report


def test_fdr_is_one_batch(tmp_path: Path, sample_data: Path) -> None:
    results, _ = _run(tmp_path, sample_data, "fdr")
    assert results["test"]
