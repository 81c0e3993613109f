"""Every shipped model's card is what ``experiments/scripts/model_card.py`` renders from the recorded results.

The card's figures (scores, parameters, size, SHA-256, training run) are re-rendered here from the recorded
score CSVs, the training run's record and the shipped weights, and compared with the file character by
character; the CSVs must have scored the shipped file (``<name>.sha256`` beside them).
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest
from conftest import ROOT

from mdrn.weights import PRETRAINED_DIR, SHIPPED_MODELS


def _model_card() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "model_card", ROOT / "experiments" / "scripts" / "model_card.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_card_is_the_render_of_the_recorded_results(name: str) -> None:
    mc = _model_card()
    out = mc.scores_dir(name)  # the recorded run's folder (mdrn_small_v1: the run once shipped as mdrn_small)
    files = mc.recorded_files(name, out)
    missing = [str(f) for fs in files.values() for f in fs if not f.is_file()]
    assert not missing, f"{name}: the card's score CSVs are not recorded: {missing}"
    scored = (out / f"{mc.shipped_run(name)}.sha256").read_text().strip()
    assert scored == mc.sha256(PRETRAINED_DIR / f"{name}.safetensors"), (
        f"{name}: the recorded scores are of another file than the shipped weights"
    )
    card = (PRETRAINED_DIR / f"{name}.md").read_text()
    rendered = mc.render(name, files)
    if rendered != card:
        import difflib

        diff = "".join(
            difflib.unified_diff(card.splitlines(True), rendered.splitlines(True), "file", "render")
        )
        pytest.fail(
            f"{name}: mdrn/pretrained/{name}.md is not the render of the recorded results "
            f"(python experiments/scripts/model_card.py {name}):\n{diff[:4000]}"
        )
