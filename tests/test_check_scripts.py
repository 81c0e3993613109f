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
