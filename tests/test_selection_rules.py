"""One selection rule, stated before a run: every recipe states it, and a recorded run followed it.

Every ``conf/experiment`` recipe states ``selection: best`` (the checkpoint with the highest ``val/psnr`` on
at least ``MIN_VAL_IMAGES`` validation images) or ``selection: last``, consistently with its callbacks; a
recorded run (``experiments/results/models/<preset>.safetensors.run.json``) used that rule. A recorded run
made before the rule may differ only where its record says why, in a ``selection`` note bound to the
recipe text it was recorded with (``python -m mdrn.reproduce note OUT --selection PRESET -- TEXT``): a
recipe changed after its run is no longer covered. The presets come from ``conf/experiment`` (a new or
replaced recipe is checked as soon as it lands).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT, SHARED
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mdrn.data import prepare_sample
from mdrn.data.datamodule import resolve_source
from mdrn.data.sources import DataNotFoundError
from mdrn.reproduce.record import notes, recipe_sha256, run_info
from mdrn.reproduce.results import RESULTS
from mdrn.training.selection import MIN_VAL_IMAGES, check_rule, select_checkpoint

PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def _compose(overrides: list[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MDRN_SHARED", str(SHARED))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    prepare_sample(root)
    return root


def _count(src: dict, data_dir: Path) -> int:
    """Images of a source: on this machine, else from its ``include`` list or ``limit`` (DIV2K)."""
    try:
        return len(resolve_source(src, data_dir, (2,))[0])
    except DataNotFoundError:
        if src.get("include") is not None:
            return len(src["include"])
        if src.get("limit"):
            return int(src["limit"])
        pytest.fail(f"cannot count the images of validation source {src} (not here, no include or limit)")


def rule_problems(preset: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What keeps a preset from today's rule (empty: it follows it); inconsistent configs fail at once."""
    cfg = _compose([f"experiment={preset}"], monkeypatch)
    rule = cfg.get("selection")
    val = OmegaConf.to_container(cfg.data.val, resolve=True) if cfg.data.get("val") else []
    problems = []
    if rule is None:
        problems.append("its recipe states no selection rule (selection: best or selection: last)")
    else:
        check_rule(rule, cfg.get("callbacks"), len(val))  # a recipe at odds with its callbacks: no excuse
    if rule == "best":
        n = sum(_count(src, data_dir) for src in val)
        if n < MIN_VAL_IMAGES:
            problems.append(f"selection: best on {n} validation images (< {MIN_VAL_IMAGES})")
    recorded = (run_info(RESULTS / "models" / f"{preset}.safetensors") or {}).get("checkpoint")
    if recorded and rule is not None and recorded["kind"] != rule:
        problems.append(f"its recorded run used {recorded['kind']!r}, the recipe states {rule!r}")
    return problems


@pytest.mark.parametrize("preset", PRESETS)
def test_every_recipe_states_its_rule_and_its_run_followed_it(
    preset: str, sample_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = rule_problems(preset, sample_root, monkeypatch)
    if not problems:
        return
    weights = RESULTS / "models" / f"{preset}.safetensors"
    covered = [n for n in notes(weights, "selection") if n.get("recipe_sha256") == recipe_sha256(preset)]
    assert covered and all(n.get("text") for n in covered), (
        f"{preset}: {'; '.join(problems)}. A new recipe must follow the rule; a run recorded before it "
        f"needs a note in its record saying why (python -m mdrn.reproduce note {weights} --selection "
        f"{preset} -- TEXT), bound to the unchanged recipe"
    )


def test_a_best_rule_on_two_images_is_caught(sample_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: srcnn_cpu_x2's recipe validates on sample_val_8bit (2 images)."""
    assert any("on 2 validation images" in p for p in rule_problems("srcnn_cpu_x2", sample_root, monkeypatch))


def test_check_rule_refuses_callbacks_that_do_otherwise() -> None:
    best = {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": "val/psnr", "mode": "max"}
    last = {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": None}
    assert check_rule("best", {"best_checkpoint": best, "last_checkpoint": last}, 1) == "best"
    assert check_rule("last", {"last_checkpoint": last}, 1) == "last"
    assert check_rule(None, {"best_checkpoint": best}, 0) == "last"
    for rule, callbacks, n_val, words in (
        ("last", {"best_checkpoint": best}, 1, "callbacks.best_checkpoint=null"),
        ("best", {"last_checkpoint": last}, 1, "no checkpoint callback monitors"),
        ("best", {"best_checkpoint": best}, 0, "needs validation sets"),
        ("best", {"best_checkpoint": {**best, "mode": "min"}}, 1, "mode min"),
        ("best", {"best_checkpoint": {**best, "monitor": "val/loss"}}, 1, "monitor val/loss"),
        ("newest", {}, 1, "not a selection rule"),
    ):
        with pytest.raises(ValueError, match=words.replace("(", r"\(")):
            check_rule(rule, callbacks, n_val)


# ------------------------------------------------------------------ the default keeps the highest val/psnr
class _Scripted(L.LightningModule):
    """Logs a given val/psnr per validation (one per epoch); learns nothing."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.scores = scores

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        return (self.w - batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        self.log("val/psnr", self.scores[self.current_epoch], on_epoch=True)

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_default_config_keeps_the_checkpoint_with_the_highest_val_psnr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default callbacks (conf/callbacks/default.yaml), in a real fit: the best epoch, not the last
    and not the worst, is the one selected and tested."""
    cfg = _compose([f"paths.output_dir={tmp_path}"], monkeypatch)
    callback = instantiate(cfg.callbacks.best_checkpoint)
    scores = [30.0, 33.0, 29.0, 31.0]  # the best (33.0) is neither the first, the last nor the worst
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(2, 1)), batch_size=1)
    trainer = L.Trainer(max_epochs=len(scores), callbacks=[callback], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(_Scripted(scores), train_dataloaders=data, val_dataloaders=data)
    sel = select_checkpoint(trainer, [("v", 2)], cfg.get("selection"))
    assert sel.kind == "best" and sel.score == pytest.approx(33.0)
    assert sel.step == 2 * (scores.index(33.0) + 1)  # two batches per epoch


def test_train_refuses_a_run_whose_callbacks_contradict_its_stated_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """srcnn_cpu_x4 states best; told last while its best-checkpoint callback stays, it does not start."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from mdrn.train import train

    monkeypatch.setenv("MDRN_SHARED", str(SHARED))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=srcnn_cpu_x4", "selection=last"],
                      return_hydra_config=True)  # fmt: skip
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.work_dir = str(ROOT)
        del cfg["hydra"]
    monkeypatch.chdir(ROOT)
    with pytest.raises(
        SystemExit, match=r"selection: last, but callbacks.best_checkpoint keeps a best checkpoint"
    ):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()
