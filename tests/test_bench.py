"""mdrn.bench on tiny sizes (--quick): it runs, writes its files, and every ratio comes from its own figures.

No timed assertion: speed is never asserted; correctness figures the bench records (max differences of the
fast path and of the metrics against their baselines) are.
"""

from __future__ import annotations

import json
import math

import pytest

from mdrn.bench import (
    DEFAULT_SECTIONS,
    SECTIONS,
    Sizes,
    alternate,
    main,
    make_row,
    projection_markdown,
    run_bench,
    table_markdown,
    write_results,
)
from mdrn.bench.goals import EQUAL_THREADS, GOALS, recorded_runs
from mdrn.bench.report import gpu_projection_markdown, readme_markdown
from mdrn.perf import amx_bf16_available

FAST_SECTIONS = [s for s in DEFAULT_SECTIONS if s != "tiling"]


@pytest.fixture(scope="module")
def quick_result():
    return run_bench(quick=True, only=FAST_SECTIONS, log=lambda s: None)


def _check_rows(result):
    assert result["rows"], "no row measured"
    for row in result["rows"]:
        assert {"name", "ours", "baseline", "unit", "ratio"} <= set(row)
        assert isinstance(row["name"], str) and row["unit"]
        assert row["better"] in ("higher", "lower")
        assert math.isfinite(row["ours"]) and row["ours"] > 0
        if row["baseline"] is None:
            assert row["ratio"] is None
        else:
            assert row["baseline"] > 0
            assert row["ratio"] == pytest.approx(row["ours"] / row["baseline"], rel=1e-12)
        assert row["repeats"] >= 1


def test_quick_rows_schema_and_ratios(quick_result):
    _check_rows(quick_result)
    names = [r["name"] for r in quick_result["rows"]]
    assert len(names) == len(set(names))
    # median of >= 5 repeats everywhere in --quick (the full run's B=80 training row uses fewer and says so)
    assert all(r["repeats"] >= 5 for r in quick_result["rows"])
    m = quick_result["machine"]
    assert m["cores_available"] >= 1 and m["torch"] and m["cpu"]
    assert quick_result["total_seconds"] > 0
    assert set(quick_result["section_seconds"]) <= set(SECTIONS)


def test_quick_rows_cover_the_sections(quick_result):
    names = " | ".join(r["name"] for r in quick_result["rows"])
    skipped = " | ".join(s["name"] for s in quick_result["skipped"])
    for needle in (
        "matmul",
        "conv 16->16",
        "memory copy",
        "forward x2",
        "forward x3",
        "forward x4",
        "train step",
        "Adam step",
        "PSNR+SSIM",
    ):
        assert needle in names, f"{needle} missing from {names}"
    assert "data pipeline" in names or "data pipeline" in skipped


def test_quick_correctness_figures(quick_result):
    rows = {r["name"]: r for r in quick_result["rows"]}
    fwd = [r for n, r in rows.items() if " forward x" in n and "bf16" not in n]
    assert len(fwd) == 4 and all(r["extra"]["max_abs_diff"] < 1e-4 for r in fwd)  # 3 scales + in-place
    # bf16 on CPU: measured only with AMX bf16 tiles, else skipped with the reason; never bit-exact
    bf16 = [r for n, r in rows.items() if n.endswith(": bf16 autocast (AMX)")]
    skipped = [s for s in quick_result["skipped"] if s["name"].endswith(": bf16 autocast (AMX)")]
    assert len(bf16) + len(skipped) == 1
    assert bool(bf16) == amx_bf16_available()
    for r in bf16:
        assert 0 < r["extra"]["max_abs_diff"] < 0.1 and "not a default" in r["notes"]
    (met,) = [r for n, r in rows.items() if n.startswith("PSNR+SSIM") and n.endswith(EQUAL_THREADS)]
    assert met["extra"]["max_abs_diff_psnr"] < 1e-6
    assert met["extra"]["max_abs_diff_ssim"] < 1e-6
    for r in fwd[:3]:
        flops = r["extra"]["flops"]
        # GFLOP/s reported = counted FLOPs / the time implied by the reported px/s
        side = int(r["name"].split(", ")[-1].split("x")[0])
        assert r["extra"]["gflops_ours"] == pytest.approx(flops * r["ours"] / side**2 / 1e9, rel=1e-9)


def test_quick_files_and_projection(quick_result, tmp_path):
    md, js = write_results(quick_result, tmp_path)
    data = json.loads(js.read_text())
    assert data["rows"] == quick_result["rows"]
    assert md.name.endswith("-quick.md") and js.stem == md.stem
    text = md.read_text()
    assert all(r["name"] in text for r in quick_result["rows"])
    # a second write the same day does not overwrite the first
    md2, js2 = write_results(quick_result, tmp_path)
    assert md2 != md and md.read_text() == text
    readme = (tmp_path / "README.md").read_text()
    assert readme == readme_markdown({**quick_result, "_source": js2.name}, recorded_runs(tmp_path))
    assert projection_markdown({**quick_result, "_source": js2.name}).split("\n")[5] in readme
    step = sum(v["training"] for v in quick_result["facts"]["paper_step_flops"].values()) / 3
    assert f"F_step = {step / 1e12:.3f} TFLOP" in readme
    assert "H100" in readme and "patches/s" in readme


def test_alternate_order_and_counts():
    calls = []
    times = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert [len(v) for v in times.values()] == [4, 4]
    with pytest.raises(ValueError):
        alternate({"a": lambda: None}, repeats=0, warmup=0)


def test_make_row_ratio_and_direction():
    r = make_row("x", 3.0, 1.5, "s", better="lower", ours_label="o", baseline_label="b", repeats=5)
    assert r.ratio == 2.0
    assert make_row("y", 1.0, None, "u", ours_label="o", baseline_label="b", repeats=1).ratio is None
    with pytest.raises(ValueError):
        make_row("z", 1.0, 1.0, "u", better="faster", ours_label="o", baseline_label="b", repeats=1)


def test_cli_quick_only_limits(tmp_path, capsys):
    assert main(["--quick", "--only", "limits", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| matmul fp32" in out and "total time" in out
    (js,) = tmp_path.glob("*.json")
    result = json.loads(js.read_text())
    _check_rows(result)
    assert table_markdown(result).splitlines()[0].startswith("# mdrn bench")
    # --readme-from regenerates the projection from a recorded run
    assert main(["--readme-from", str(js), "--out", str(tmp_path)]) == 0
    assert "F_step" in (tmp_path / "README.md").read_text()


def test_unknown_section():
    with pytest.raises(ValueError, match="unknown bench sections"):
        run_bench(Sizes.quick(), only=["nope"])


@pytest.mark.slow
def test_quick_tiling_workers():
    result = run_bench(quick=True, only=["tiling"], log=lambda s: None)
    if result["skipped"]:
        pytest.skip(result["skipped"][0]["reason"])
    _check_rows(result)
    time_row, rss_row = result["rows"]
    assert time_row["unit"] == "s" and rss_row["unit"] == "MB"
    assert time_row["better"] == rss_row["better"] == "lower"
    # each worker's peak RSS is at least what it held after setup
    assert rss_row["ours"] * 2**20 >= rss_row["extra"]["setup_rss_ours"]
    assert rss_row["baseline"] * 2**20 >= rss_row["extra"]["setup_rss_baseline"]


@pytest.mark.slow
def test_quick_clinical_section(tmp_path, monkeypatch):
    # the clinician path: the command line in a fresh process, the app's call, the engine per backend, a
    # profile of the engine's stages; every timing with its CPU seconds and the load average
    monkeypatch.setenv("MDRN_CACHE", str(tmp_path))  # ONNX exports of this run (where it compares them)
    result = run_bench(quick=True, only=["clinical"], log=lambda s: None)
    _check_rows(result)
    names = [r["name"] for r in result["rows"]]
    for what in ("mdrn-upscale per slice", "the app's enlarge call per slice", "forward rate against"):
        assert any(what in n for n in names), (what, names)
    cli = next(r for r in result["rows"] if "mdrn-upscale per slice" in r["name"])
    assert cli["extra"]["cli_series"]["cpu_seconds"] > 0 and cli["extra"]["cli_series"]["peak_rss"] > 0
    facts = result["facts"]["clinical"]
    profile = facts["scales"]["2"]["profile"]
    assert {"read", "network", "write"} <= set(profile["stages_found"])
    assert profile["pixels"]["features"] >= 1.0  # every pixel through the body at least once
    text = table_markdown(result)
    assert "Where a slice's time goes" in text and "| network |" in text and "load" in text


@pytest.mark.slow
def test_quick_compile_section():
    result = run_bench(quick=True, only=["compile"], log=lambda s: None)
    _check_rows(result)
    (row,) = result["rows"]
    assert row["extra"]["compile_seconds"] > 0
    assert row["extra"]["max_abs_diff"] < 1e-4


def test_in_place_blocks_same_output_and_gradients_as_out_of_place():
    import torch

    from mdrn.bench.forward import out_of_place_variant
    from mdrn.models import MDRN, SRResNet

    nets = (
        MDRN(n_resblocks=2, n_feats=8, scales=(2,), res_scale=0.5),
        SRResNet(n_resblocks=2, n_feats=8, scale=2),
    )
    for net in nets:
        torch.manual_seed(0)
        var = out_of_place_variant(net)
        gen = (torch.Generator().manual_seed(1) for _ in "ab")
        x, xv = (torch.rand(2, 3, 8, 8, generator=g).requires_grad_() for g in gen)
        a, b = net(x, 2), var(xv, 2)
        assert torch.equal(a, b)
        a.square().mean().backward()
        b.square().mean().backward()
        assert torch.allclose(x.grad, xv.grad, atol=1e-7)
        for (name, p), q in zip(net.named_parameters(), var.parameters()):
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_quick_limits_thread_row():
    from dataclasses import replace

    from mdrn.perf import available_cores

    if available_cores() < 2:
        pytest.skip("one core: no thread comparison")
    result = run_bench(replace(Sizes.quick(), threads=None), only=["limits"], log=lambda s: None)
    _check_rows(result)
    (row,) = [r for r in result["rows"] if r["name"].endswith(": threads")]
    assert row["baseline_label"] == "1 thread"


def test_quick_fractions_come_from_the_same_window(quick_result):
    rows = [r for r in quick_result["rows"] if "fraction_ours" in r["extra"]]
    assert len(rows) == 5  # 3 forward scales + 2 training rows
    for r in rows:
        e = r["extra"]
        assert e["conv_limit_shape"] and e["conv_limit"] > 0
        assert e["fraction_ours"] == pytest.approx(e["gflops_ours_best"] / e["conv_limit"], rel=1e-12)
        assert e["gflops_ours_best"] >= e["gflops_ours"] * (1 - 1e-12)  # best call >= median
        # a fraction of the row's own limit above 1 (best calls or medians) is a measurement error
        own = [e[f"fraction_{who}{kind}"] for who in ("ours", "baseline") for kind in ("", "_median")]
        assert e["fraction_error"] == any(v > 1 for v in own)
        assert ("MEASUREMENT ERROR" in r["notes"]) == e["fraction_error"]
    train = [r for r in rows if "train step" in r["name"]]
    assert all(r["extra"]["limit_kind"] == "forward + backward" and "conv_forward_limit" in r["extra"]
               for r in train)  # fmt: skip
    # the forward rows also carry the chain of distinct convolutions, a reference outside the error rule
    forward = [r for r in rows if " forward x" in r["name"]]
    for r in forward:
        e = r["extra"]
        assert e["conv_chain"] > 0 and "of a chain of distinct convolutions" in r["notes"]
        assert e["chain_fraction_ours"] == pytest.approx(e["gflops_ours_best"] / e["conv_chain"], rel=1e-12)
    assert not any("conv_chain" in r["extra"] for r in train)


def test_chain_reference_runs_distinct_convolutions_in_sequence():
    import torch

    from mdrn.bench.core import Context
    from mdrn.bench.limits import ConvLimit
    from mdrn.perf import fast_path

    ctx = Context(sizes=Sizes.quick(), device=torch.device("cpu"), path=fast_path("cpu"), quick=True)
    conv_flops = 2 * 8 * 8 * 9 * 36  # one 8->8 3x3 convolution on 6x6
    limit = ConvLimit(ctx, (1, 8, 6, 6), training=False, flops_per_slot=8 * 3 * conv_flops, chain=True)
    assert limit.inner == 3
    calls = limit.calls()
    assert set(calls) == {"limit:nhwc", "limit:nchw", "chain"}
    convs = limit._chain
    assert len(convs) == 3 and len({id(c.weight) for c in convs}) == 3
    assert not torch.equal(convs[0].weight, convs[1].weight)  # distinct weights, not one repeated
    seen = []

    def record(m, i, o):
        seen.append((i[0].data_ptr(), o.data_ptr()))

    hooks = [c.register_forward_hook(record) for c in convs]
    calls["chain"]()
    for h in hooks:
        h.remove()
    assert [a for a, _ in seen[1:]] == [b for _, b in seen[:-1]]  # each fed the previous output
    assert "chain" in limit.gflops({k: [1.0] for k in calls})
    assert "chain" not in ConvLimit(ctx, (1, 8, 6, 6), training=False).calls()


def _run(rows, facts=None, device="cpu"):
    machine = {"cpu": "x", "cores_available": 2, "device": device, "host": "h"}
    return {
        "rows": rows,
        "facts": facts or {},
        "machine": machine,
        "sizes": {"full_lr": 1024},
        "quick": False,
    }


def _row(name, ratio=None, **extra):
    return {"name": name, "ratio": ratio, "extra": extra}


def test_goals_met_not_met_not_measured():
    judges = dict(GOALS)
    name = f"PSNR+SSIM (Y, shave 4), Set5, {EQUAL_THREADS}"
    fast = _row(name, 6.0, max_abs_diff_psnr=3e-7, max_abs_diff_ssim=6e-9)
    slow = _row(name, 4.9, max_abs_diff_psnr=3e-7, max_abs_diff_ssim=6e-9)
    scoring = next(j for t, j in judges.items() if t.startswith("scoring"))
    assert scoring(_run([fast]))[0] == "met"
    assert scoring(_run([slow]))[0] == "not met"
    assert scoring(_run([]))[0] == "not measured"
    fwd = next(j for t, j in judges.items() if t.startswith("inference"))
    good = [_row(f"MDRN B=80 F=64 forward x{s}, 64x64 LR tile", 1.1, fraction_ours=0.93, conv_limit_shape=[1])
            for s in (2, 3, 4)]  # fmt: skip
    assert fwd(_run(good))[0] == "met"
    x4 = "MDRN B=80 F=64 forward x4, 64x64 LR tile"
    bad = good[:2] + [_row(x4, 1.1, fraction_ours=1.2, conv_limit_shape=[1], fraction_error=True)]
    status, text = fwd(_run(bad))
    assert status == "not met" and "(error)" in text
    frac = next(j for t, j in judges.items() if t.startswith("fractions"))
    assert frac(_run(good))[0] == "met" and frac(_run(bad))[0] == "not met"
    tiling = next(j for t, j in judges.items() if t.startswith("B=80"))
    gib = 2**30
    full = {"memory_budget": 1.5 * gib, "variants": {
        "tiled": {"seconds": 90.0, "peak_rss": 1.8 * gib, "setup_rss": 0.25 * gib},
        "split": {"seconds": 120.0, "peak_rss": 1.0 * gib, "setup_rss": 0.25 * gib}}}  # fmt: skip
    assert tiling(_run([], {"tiling_full": full}))[0] == "met"
    full["variants"]["tiled"]["peak_rss"] = 4.0 * gib
    assert tiling(_run([], {"tiling_full": full}))[0] == "not met"
    assert tiling(_run([]))[0] == "not measured"


def test_quick_gpu_section_runs_on_cpu():
    result = run_bench(quick=True, only=["gpu"], log=lambda s: None)
    _check_rows(result)
    names = [r["name"] for r in result["rows"]]
    assert any("train step" in n and "bf16-mixed NHWC" in n for n in names)
    assert any("forward x4" in n for n in names)
    assert any(n.startswith("matmul bf16") for n in names)
    assert any(n.startswith("ceiling: conv") and "forward + backward" in n for n in names)
    g = result["facts"]["gpu"]
    assert g["paper_schedule_hours"] > 0 and g["conv_limit_train"]["flops_per_s"] > 0
    assert all(v["fraction_of_conv_limit"] > 0 for v in g["forward"].values())
    text = "\n".join(gpu_projection_markdown(g))
    assert "650,000 such steps take" in text and "measured / planned rate" in text
    # a GPU run's README takes its projection from the latest CPU run that measured the training fraction
    cpu = {
        **result,
        "quick": False,
        "machine": {**result["machine"], "device": "cpu"},
        "facts": {**result["facts"], "train_fraction": 0.8},
        "_source": "cpu.json",
    }
    gpu = {
        **result,
        "quick": False,
        "machine": {**result["machine"], "device": "cuda"},
        "_source": "gpu.json",
    }
    readme = readme_markdown(gpu, [cpu, gpu])
    assert "the projection and the decisions from `cpu.json`" in readme and "## GPU: section gpu" in readme
    assert "| the rate measured on cpu (`gpu.json`, " in readme  # the measured step: a projection row
    from mdrn.bench.gpu import bf16_peak

    assert bf16_peak(__import__("torch").device("cpu")) == ("cpu", None)


@pytest.mark.slow
def test_quick_opt_in_sections_tiling_full_and_profile(tmp_path):
    result = run_bench(quick=True, only=["tiling_full", "profile"], log=lambda s: None)
    _check_rows(result)
    variants = result["facts"]["tiling_full"]["variants"]
    assert set(variants) == {"split", "tiled", "default allocator", "capped tiles", "out-of-place blocks"}
    assert all(v["peak_rss"] >= v["setup_rss"] > 0 and v["fault_bytes"] >= 0 for v in variants.values())
    profiles = result["facts"]["profiles"]
    assert len(profiles) == 2
    for p in profiles.values():
        assert p["seconds"] > 0 and p["categories"] and p["top_ops"]
        assert sum(ms for _, ms in p["categories"]) == pytest.approx(p["profiled_ms_per_step"], rel=1e-6)
    md, _ = write_results(result, tmp_path, readme=False)
    assert "## Profiles" in md.read_text()


def test_help_of_all_names_every_section_it_adds(capsys) -> None:
    # --all runs every section: its help names each one the default run leaves out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    out = out[out.index("options:") :]
    text = out[out.index("--all") : out.index("--out")]
    missing = [s for s in SECTIONS if s not in DEFAULT_SECTIONS and s not in text]
    assert not missing, (missing, text)
