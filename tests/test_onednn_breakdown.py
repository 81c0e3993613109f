"""scripts/onednn_breakdown.py: oneDNN's verbose lines summed per primitive, and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "onednn_breakdown.py"


def _load():
    spec = importlib.util.spec_from_file_location("onednn_breakdown", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _line(kind: str, problem: str, ms: float) -> str:
    return f"onednn_verbose,v1,primitive,exec,cpu,{kind},jit:uni,undef,src:f32 dst:f32,attr,,{problem},{ms}\n"


def test_table_sums_each_primitive_per_pass(capsys):
    mod = _load()
    lines = [_line("convolution", "mb1_ic64oc64", 1.0), _line("reorder", "64x64x3x3", 0.25)] * 2
    lines += [_line("convolution", "mb1_ic64oc64", 3.0)]
    total = mod._table("demo", lines, wall=0.01, passes=2, quiet_wall=0.004)
    assert total == pytest.approx((1.0 + 0.25 + 1.0 + 0.25 + 3.0) / 2)
    out = capsys.readouterr().out
    assert "demo: oneDNN 2.8 ms per pass; wall without verbose 4.0 ms (best), so 1.2 ms outside" in out
    # convolution: 3 calls in 2 passes -> 1 per pass (floor), 2.5 of 2.75 ms per pass, 1.667 ms per call
    assert "| convolution | mb1_ic64oc64 | 1 | 2.50 | 90.9% | 1.667 |" in out
    assert "| reorder | 64x64x3x3 | 1 | 0.25 | 9.1% | 0.250 |" in out


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_tiny_run_prints_the_network_and_the_limit():
    cmd = [sys.executable, str(SCRIPT), "--blocks", "1", "--tile", "24", "--passes", "1", "--scales", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "forward x2: oneDNN" in out and "conv limit: one 64->64 convolution on one input, 3 calls" in out
    network, limit = out.split("conv limit:")
    assert "| convolution | mb1_ic64oc64_ih24oh24kh5" in network  # the pre-processing blocks' 5x5
    assert "| convolution | mb1_ic64oc64_ih24oh24kh3" in limit
