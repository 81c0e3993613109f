"""The bench's goals with the right denominators: a training step against the convolution's forward +
backward limit of its window, a forward against its forward limit, medians beside best calls, scoring
with equal threads on both sides (the threaded figure its own row), and a GPU goal that can be missed."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ROOT

from mdrn.bench import run_bench
from mdrn.bench.goals import EQUAL_THREADS, GOALS, THREADED, gpu, row_fraction, scoring, training

BENCH = ROOT / "experiments" / "results" / "bench"


def _recorded(name: str) -> dict:
    return {**json.loads((BENCH / name).read_text()), "_source": name}


def _judge(title_start: str):
    return next(j for t, j in GOALS if t.startswith(title_start))


def test_training_rows_are_judged_against_their_own_forward_backward_limit() -> None:
    """vm-2026-11-30-12: its B=16 step was 83% of the forward-only limit but 100.1% of its own forward +
    backward limit (a measurement error, not a result); B=80 88%, not the 80% of the forward limit."""
    run = _recorded("vm-2026-11-30-12.json")
    status, text = training(run)
    assert status == "not met"
    assert "B=16 100% (median 94%)† (error)" in text and "B=80 88% (median 88%)†" in text, text
    assert _judge("fractions")(run)[0] == "not met"
    b80 = next(r for r in run["rows"] if r["name"].startswith("MDRN B=80 F=64 train step"))
    assert row_fraction(b80, training=True)["best"] == pytest.approx(
        b80["extra"]["fraction_ours_train_limit"]
    )
    # a run recorded before the training limit was measured is not judged on the forward-only fraction
    old = _recorded("vm-2026-11-24.json")
    status, text = training(old)
    assert status == "not measured" and "only against the forward-only limit" in text


def test_forward_rows_keep_their_forward_limit_with_the_median_beside() -> None:
    status, text = _judge("inference")(_recorded("vm-2026-11-30-12.json"))
    assert status == "not met" and text.startswith("x2 81% (median 76%)†, x3 77% (median 75%)†"), text


def test_new_rows_carry_their_own_limit_and_medians() -> None:
    """A quick run: a training row's fraction is of the forward + backward limit, with its median."""
    result = run_bench(quick=True, only=["training", "forward"], log=lambda s: None)
    rows = [r for r in result["rows"] if "fraction_ours" in r["extra"]]
    assert {r["extra"]["limit_kind"] for r in rows} == {"forward", "forward + backward"}
    for r in rows:
        e, is_train = r["extra"], " train step " in r["name"]
        assert e["limit_kind"] == ("forward + backward" if is_train else "forward")
        assert e["fraction_ours"] == pytest.approx(e["gflops_ours_best"] / e["conv_limit"], rel=1e-12)
        assert e["fraction_ours_median"] == pytest.approx(
            e["gflops_ours"] / e["conv_limit_median"], rel=1e-12
        )
        assert e["conv_limit"] >= e["conv_limit_median"] * (1 - 1e-12)
        assert ("conv_forward_limit" in e) == is_train
        assert "medians" in r["notes"] and e["limit_kind"] in r["notes"]
        f = row_fraction(r, is_train)
        assert f is not None and f["best"] == e["fraction_ours"] and f["mark"] == ""


def test_scoring_is_judged_with_equal_threads() -> None:
    base = {"machine": {"device": "cpu"}, "facts": {}}
    diffs = {"max_abs_diff_psnr": 0.0, "max_abs_diff_ssim": 0.0}
    old = {"name": "PSNR+SSIM (Y, shave 4), Set5 bicubic x4", "ratio": 5.95, "extra": diffs}
    status, text = scoring({**base, "rows": [old]})
    assert status == "not measured" and "not with equal threads (recorded: 5.95x" in text
    equal = {**old, "name": f"{old['name']}, {EQUAL_THREADS}", "ratio": 4.2}
    threaded = {**old, "name": f"{old['name']}: 2 {THREADED}", "ratio": 1.6}
    status, text = scoring({**base, "rows": [equal, threaded]})
    assert status == "not met" and text.startswith("4.20x") and "threaded: 1.60x" in text
    assert scoring({**base, "rows": [{**equal, "ratio": 5.5}]})[0] == "met"
    assert scoring(_recorded("vm-2026-11-30-12.json"))[0] == "not measured"


def test_scoring_rows_time_one_thread_against_one_thread() -> None:
    result = run_bench(quick=True, only=["metrics"], log=lambda s: None)
    rows = {r["name"]: r for r in result["rows"] if r["name"].startswith("PSNR+SSIM")}
    equal = next(r for n, r in rows.items() if n.endswith(EQUAL_THREADS))
    assert (
        equal["ours_label"].endswith("(numba kernel, 1 thread)") and "one thread" in equal["baseline_label"]
    )
    assert equal["extra"]["threads"] == 1 and equal["extra"]["max_abs_diff_psnr"] <= 1e-6
    threaded = [r for n, r in rows.items() if THREADED in n]
    assert len(threaded) == (1 if torch.get_num_threads() > 1 else 0)
    assert scoring(result)[0] in ("met", "not met")


def test_the_gpu_goal_can_be_missed() -> None:
    """The recorded H200 steps reached 9.5-12.5% of the bf16 peak; the projection plans 32%: not met."""
    for name in ("h200-2026-11-30.json", "h200-2026-11-30-2.json", "h200-2026-11-30-3.json"):
        status, text = gpu(_recorded(name))
        assert status == "not met" and "= 32% of that peak" in text, (name, text)
    run = _recorded("h200-2026-11-30-3.json")
    g = run["facts"]["gpu"]
    fast = {**g["train"]["bf16-mixed NHWC compiled, CUDA graphs"], "seconds": 0.004, "fraction_of_peak": 0.33}
    met = {**run, "facts": {**run["facts"], "gpu": {**g, "train": {**g["train"], "fast": fast}}}}
    assert gpu(met)[0] == "met"
    assert gpu(_recorded("vm-2026-11-30-12.json"))[0] == "not measured"
