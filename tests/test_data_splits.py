"""No data config validates (selects checkpoints) or trains on a test image."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mdrn.data import SRDataModule, prepare_sample, sample_files
from mdrn.data.datamodule import shared_sets

CONF = ROOT / "conf"
DATA_CONFIGS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
#: the values a user must give (``???``), each a folder of its own
REQUIRED = {
    "div2k_medical": ["data.medical_dir=/imgs/medical"],
    "folder": ["data.train_dir=/imgs/train", "data.val_dir=/imgs/val", "data.test_dir=/imgs/test"],
}


def _data(option: str, *overrides: str) -> dict:
    """The resolved ``data`` config of ``data=<option>``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data={option}", "paths.data_dir=/data", *overrides])
    return OmegaConf.to_container(cfg.data, resolve=True)  # type: ignore[return-value]


@pytest.mark.parametrize("option", DATA_CONFIGS)
def test_no_test_image_in_validation_or_training(option: str) -> None:
    data = _data(option, *REQUIRED.get(option, []))
    assert data["val"] and data["test"], "every data config names its validation and test sets"
    assert shared_sets(data["val"], data["test"], data["data_dir"]) == []
    assert shared_sets(data["train"], data["test"], data["data_dir"]) == []


def test_shared_folders_are_found(tmp_path: Path) -> None:
    # what the check catches: one folder for validation and test, a subfolder, DIV2K valid with a limit
    data = _data("folder", "data.train_dir=/imgs/train", "data.val_dir=/imgs/val", "data.test_dir=/imgs/val/")
    assert shared_sets(data["val"], data["test"], data["data_dir"]) == [("val", "test")]
    sub = [{"name": "sub", "kind": "folder", "path": "/imgs/val/ct"}]
    assert shared_sets(sub, data["test"], "/data") == [("sub", "test")]
    div2k = [{"name": "d", "kind": "div2k", "split": "valid", "limit": 10}]
    assert shared_sets(div2k, [{"name": "D", "kind": "div2k", "split": "valid"}], "/data") == [("d", "D")]
    assert shared_sets(div2k, [{"name": "D", "kind": "div2k", "split": "train"}], "/data") == []
    nested = [{"name": "b", "kind": "sample", "split": "test_16bit"}]
    assert shared_sets([{"name": "a", "kind": "sample", "split": "test"}], nested, "/data") == [("a", "b")]
    with pytest.warns(UserWarning, match="val 'val' / test 'test'.*chosen on test images"):
        SRDataModule(val=data["val"], test=data["test"], data_dir=str(tmp_path))


def test_sample_splits_hold_different_images(tmp_path: Path) -> None:
    # the sample data on disk: no validation or training image (by file content) is a test image
    data = _data("sample")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the datamodule finds nothing to warn about
        SRDataModule(train=data["train"], val=data["val"], test=data["test"], data_dir=str(tmp_path))

    def contents(sources: list[dict]) -> dict[bytes, str]:
        return {f.read_bytes(): f.name for s in sources for f in sample_files(tmp_path, s["split"])}

    test = contents(data["test"])
    for stage in ("train", "val"):
        found = contents(data[stage])
        assert found and not set(found) & set(test), (stage, sorted(found[k] for k in set(found) & set(test)))


def test_sample_data_says_what_it_holds(tmp_path: Path) -> None:
    # the README written beside the sample images names each image under its split
    root = prepare_sample(tmp_path)
    readme = (root / "README.md").read_text()
    sections = {s: readme[readme.index(f"- `{s}/`") :].split("\n- `")[0] for s in ("train", "val", "test")}
    for split, text in sections.items():
        names = [f.stem for f in sample_files(tmp_path, split)]
        assert names and all(n in text for n in names), (split, [n for n in names if n not in text])


def test_folder_source_include_and_exclude_by_stem(tmp_path) -> None:
    """``include`` / ``exclude`` pick images of a folder by stem; an unknown stem is an error, not ignored."""
    import numpy as np
    import pytest
    from PIL import Image

    from mdrn.data.datamodule import resolve_source

    for stem in ("a", "b", "c"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{stem}.png")
    src = {"name": "f", "kind": "folder", "path": str(tmp_path)}
    assert [f.stem for f in resolve_source({**src, "exclude": ["b"]}, tmp_path, (2,))[0]] == ["a", "c"]
    assert [f.stem for f in resolve_source({**src, "include": ["c", "a"]}, tmp_path, (2,))[0]] == ["a", "c"]
    with pytest.raises(ValueError, match=r"exclude names images it does not have: \['302003'\]"):
        resolve_source({**src, "exclude": ["302003"]}, tmp_path, (2,))
