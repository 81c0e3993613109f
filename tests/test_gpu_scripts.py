"""The GPU session's scripts on a CPU: `make gpu-data` (scripts/gpu_data.py), scripts/gpu_learn.py --smoke
end to end (both precisions, Set5 scored), and scripts/gpu_checks.sh refusing a machine without CUDA."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import ROOT, script, shared_path

gpu_data = script("gpu_data")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .gpu_data of 3 T91 and 2 BSD200 images and Set5 (no wheels), from ../shared."""
    shared = shared_path("datasets", "T91").parents[1]
    dest = tmp_path_factory.mktemp("gpu") / ".gpu_data"
    gpu_data.build(dest, shared=shared, bsd200=2, t91=3, wheels=False)
    return dest


def test_gpu_data_selection_manifest_and_checks(small_data: Path, tmp_path: Path) -> None:
    shared = shared_path("datasets", "BSD200").parents[1]
    chosen = gpu_data.selection(shared, 199)
    assert len(chosen["BSD200"]) == 199 and gpu_data.SET5_TWIN not in {p.stem for p in chosen["BSD200"]}
    assert len(chosen["T91"]) == 91 and len(chosen["Set5"]) == 5
    with pytest.raises(gpu_data.DataError, match="holds 199 images besides 302003"):
        gpu_data.selection(shared, 200)
    manifest = gpu_data.verify(small_data)
    assert manifest["counts"] == {"T91": 3, "BSD200": 2, "Set5": 5}
    assert len(manifest["files"]) == 10 and "BSD200: the first 2 by name without 302003" in manifest["rule"]
    # a changed or missing file is named; a folder without its manifest says how to make one
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(small_data), str(copy)], check=True)
    victim = next((copy / "Set5").iterdir())
    victim.write_bytes(victim.read_bytes()[:-1])
    (copy / "T91" / sorted(manifest["files"])[-1].split("/")[-1]).unlink(missing_ok=True)
    with pytest.raises(gpu_data.DataError, match=f"{victim.name}: differs from the manifest"):
        gpu_data.verify(copy)
    with pytest.raises(gpu_data.DataError, match="make gpu-data"):
        gpu_data.verify(tmp_path / "nothing")
    # what a device call carries: the repository and the data, against the 64 MiB
    line = gpu_data.check_carry(ROOT, small_data)
    assert line.startswith("a device call carries") or line.startswith("not a git checkout")
    if line.startswith("a device call"):
        with pytest.raises(gpu_data.DataError, match="too much"):
            gpu_data.check_carry(ROOT, small_data, limit=1)


def test_gpu_learn_refuses_without_cuda_or_data(tmp_path: Path, small_data: Path) -> None:
    learn = script("gpu_learn")
    if not torch.cuda.is_available():
        assert learn.main(["--data", str(small_data), "--out", str(tmp_path)]) == 2  # no CUDA: says so
    assert learn.main(["--smoke", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.glob("gpu_learn_*"))


@pytest.mark.slow
def test_gpu_learn_smoke_end_to_end(tmp_path: Path, small_data: Path) -> None:
    """The GPU script on a CPU, tiny settings: both precisions train, Set5 is scored, the summary holds."""
    learn = script("gpu_learn")
    out = tmp_path / "out"
    assert learn.main(["--smoke", "--fp32", "yes", "--data", str(small_data), "--out", str(out)]) == 0
    js = sorted(out.glob("gpu_learn_smoke_*.json"))
    md = sorted(out.glob("gpu_learn_smoke_*.md"))
    assert len(js) == 1 and len(md) == 1
    s = json.loads(js[0].read_text())
    assert set(s["runs"]) == {"bf16-mixed", "32-true"}
    for run in s["runs"].values():
        assert run["status"] == "done" and run["steps"] == 4
        assert run["speed"]["stopped_by"] == "max_steps" and run["speed"]["steps"] == 4
        assert set(run["set5"]) == {"x2", "x3", "x4"}
        assert all(math.isfinite(v["psnr"]) and "gain_db" in v for v in run["set5"].values())
        assert any("training preset eager" in line for line in run["log"])  # auto on a CPU: eager
    assert s["goal"]["status"] in ("met", "not met") and s["goal"]["bar_db"] == 37.6
    assert s["recipe_values"]["blocks"] == 2 and s["data"]["counts"]["BSD200"] == 2
    text = md[0].read_text()
    assert "Goal: Set5 x2 >= 37.6 dB" in text and "| bf16-mixed (the GPU preset) | done | 4 of 4 |" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_checks_refuses_without_cuda(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path)}
    bad = subprocess.run(["bash", "scripts/gpu_checks.sh", "nothing"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "usage" in bad.stderr
    proc = subprocess.run(["bash", "scripts/gpu_checks.sh", "bench"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 3 and "no CUDA device here" in proc.stderr
    assert not (tmp_path / "bench").exists() and (tmp_path / "bench.log").is_file()
