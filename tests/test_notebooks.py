"""The notebooks run end to end as in CI: quickstart (load, enlarge, panel) and results (every artefact)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "experiments" / "results" / "models" / "mdrn_cpu.safetensors"


def _run(name: str, tmp: Path) -> list:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    # the kernel's temporary folder: a notebook leaves nothing behind there (the results notebook's copy
    # of experiments/results/ is 24 MB, made on every run)
    tmp.mkdir()
    client.execute(env={**os.environ, "TMPDIR": str(tmp)})  # CellExecutionError if a cell fails
    assert not any(p.name.startswith("tmp") for p in tmp.iterdir()), sorted(p.name for p in tmp.iterdir())
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.slow
def test_quickstart_notebook(tmp_path: Path):
    if not MODEL.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{MODEL} is missing: it is a recorded result and must be committed")
        pytest.skip(f"{MODEL} not recorded yet (python -m mdrn.reproduce train mdrn_cpu)")
    outputs = _run("quickstart", tmp_path / "tmp")
    text = "".join(o.get("text", "") for o in outputs)
    assert "PSNR" in text and "16 bit" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the two panels


@pytest.mark.slow
def test_results_notebook(tmp_path: Path):
    outputs = _run("results", tmp_path / "tmp")
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "Table 1" in markdown and "published" in markdown
    assert any("image/png" in o.get("data", {}) for o in outputs)
