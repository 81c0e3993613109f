"""scripts/check_protocol.py and scripts/check_official.py exit 1 when a check fails (forced here), else 0."""

from __future__ import annotations

import pytest
from conftest import script, shared_path


def test_check_protocol_exit_status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    shared = shared_path()
    mod = script("check_protocol")
    first = mod.records(shared / "reference" / "protocol")[:1]
    monkeypatch.setattr(mod, "records", lambda protocol: first)  # one record, Set5 x2: a quick run
    monkeypatch.setattr(mod, "SET5_BICUBIC", {2: 33.682})
    assert mod.main([str(shared)]) == 0
    assert "OUT OF TOLERANCE" not in capsys.readouterr().out
    # a Set5 figure off by 0.1 dB, then a record off by one in more values than allowed: exit 1
    monkeypatch.setattr(mod, "SET5_BICUBIC", {2: 33.582})
    assert mod.main([str(shared)]) == 1
    out = capsys.readouterr().out
    assert "OUT OF TOLERANCE: Set5 bicubic x2" in out and "1 check(s) OUT OF TOLERANCE" in out
    monkeypatch.setattr(mod, "SET5_BICUBIC", {2: 33.682})
    monkeypatch.setattr(mod, "MAX_OFF_BY_ONE", -1.0)
    assert mod.main([str(shared)]) == 1
    assert "off by one" in capsys.readouterr().out


def test_check_official_exit_status(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    shared = shared_path()
    mod = script("check_official")
    args = ["--shared", str(shared), "--skip-set5"]
    counts = {"mdsr": (7_953_987, 7_953_987)}
    monkeypatch.setattr(mod, "param_counts", lambda ref_dir: counts)
    monkeypatch.setattr(mod, "output_differences", lambda ref_dir: {("mdsr_baseline", 2): 9e-5})
    assert mod.main(args) == 0
    assert "MISMATCH" not in capsys.readouterr().out
    counts["mdsr"] = (7_953_986, 7_953_987)  # one parameter missing
    assert mod.main(args) == 1
    assert "MISMATCH: mdsr: 7,953,986 trainable parameters" in capsys.readouterr().out
    counts["mdsr"] = (7_953_987, 7_953_987)
    monkeypatch.setattr(mod, "output_differences", lambda ref_dir: {("mdsr_baseline", 2): 3e-4})
    assert mod.main(args) == 1
    assert "MISMATCH: mdsr_baseline x2" in capsys.readouterr().out


def test_check_bf16_prints_the_cost_per_set(tmp_path, monkeypatch, capsys) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from mdrn.models import MDRN
    from mdrn.weights import save_model

    mod = script("check_bf16")
    torch.manual_seed(0)
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,), bicubic_skip=True)
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    weights = save_model(net, tmp_path / "tiny.safetensors")
    rng = np.random.default_rng(0)
    files = {}
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        ramp = np.add.outer(np.arange(24), np.arange(32)) * (2 if bits == 8 else 500)
        path = tmp_path / f"g{bits}.png"
        Image.fromarray((ramp + rng.integers(0, 20, ramp.shape)).astype(dtype)).save(path)
        files[f"tiny {bits} bit"] = [path]
    monkeypatch.setattr(mod, "medical_sets", lambda root: files)
    assert mod.main(["--model", str(weights), "--scales", "2", "--force"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "x2" and cells[3] == "1"
        assert abs(float(cells[6].split(" / ")[0])) < 0.5  # bf16 costs little PSNR against fp32
        assert int(cells[7]) >= 0 and cells[8].endswith("%")
