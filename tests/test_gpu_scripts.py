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


def test_the_default_gpu_data_and_the_repository_fit_one_device_call(tmp_path: Path) -> None:
    """`make gpu-data` must leave room under the 64 MiB a device call carries (2 MiB kept for the wheels and
    the manifest): fails when the repository grows past it, before a GPU session finds out."""
    shared = shared_path("datasets", "BSD200").parents[1]
    sizes = gpu_data.carried_bytes(ROOT, tmp_path / "none")
    if sizes is None:
        pytest.skip("not a git checkout: what a device call carries cannot be listed")
    data = sum(p.stat().st_size for files in gpu_data.selection(shared).values() for p in files)
    room = gpu_data.CARRY_LIMIT - 2 * 2**20 - sizes["total"] - data
    assert room >= 0, (
        f"repository {sizes['total'] / 2**20:.1f} MiB + default .gpu_data {data / 2**20:.1f} MiB leave "
        f"{room / 2**20:.1f} MiB of the 64 (2 kept for wheels): lower gpu_data.BSD200_DEFAULT in a recipe "
        "change made before any GPU run, or carry less"
    )


def test_gpu_data_selection_manifest_and_checks(small_data: Path, tmp_path: Path) -> None:
    shared = shared_path("datasets", "BSD200").parents[1]
    chosen = gpu_data.selection(shared, 199, min_side=1)
    assert len(chosen["BSD200"]) == 199 and gpu_data.SET5_TWIN not in {p.stem for p in chosen["BSD200"]}
    assert len(chosen["T91"]) == 91 and len(chosen["Set5"]) == 5
    # by default only the T91 images the recipe can cut its largest HR patch from (48 x 4 = 192 px)
    assert gpu_data.recipe_min_side() == 192
    usable = gpu_data.selection(shared)["T91"]
    assert 0 < len(usable) < 91 and all(gpu_data._min_side(p) >= 192 for p in usable)
    with pytest.raises(gpu_data.DataError, match="holds 199 images besides 302003"):
        gpu_data.selection(shared, 200)
    manifest = gpu_data.verify(small_data)
    assert manifest["counts"] == {"T91": 3, "BSD200": 2, "Set5": 5}
    assert len(manifest["files"]) == 10 and "BSD200: the first 2 by name without 302003" in manifest["rule"]
    assert "at least 192 px on the shorter side" in manifest["rule"]
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
