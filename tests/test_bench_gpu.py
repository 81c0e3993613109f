"""The bench's GPU section (issue 26) on a CPU: the ceiling, the steps per pixel budget, the compiled preset's
variant, the goals (met / not met / not measured), the README's GPU part and the GPU-named result files.

What needs CUDA (CUDA graphs, the kernel profile) is skipped on a CPU with its reason; `make gpu-checks`
runs it on a GPU."""

from __future__ import annotations

import copy

import pytest
import torch

import mdrn.perf
from mdrn.bench import Sizes, run_bench, write_results
from mdrn.bench.goals import CEILING_FRACTION, PEAK_FRACTION, gpu_ceiling, gpu_peak
from mdrn.bench.gpu_steps import COMPILED, EAGER, PRESET, kernel_kind
from mdrn.bench.report import gpu_projection_markdown, projection_markdown, readme_markdown


@pytest.fixture(scope="module")
def gpu_result():
    """The quick gpu section on a CPU with the compiled variant on (a counting backend: no C++ compiler)."""
    from torch._dynamo.testing import CompileCounter

    sizes = Sizes.quick()
    sizes.gpu_compile = True
    sizes.gpu_forward = False  # its compiled rows use inductor (a C++ compiler on a CPU); test_bench runs it
    counter = CompileCounter()
    backend, threads = mdrn.perf.TRAIN_COMPILE_BACKEND, torch.get_num_threads()
    mdrn.perf.TRAIN_COMPILE_BACKEND = counter
    torch.set_num_threads(1)
    torch._dynamo.reset()
    try:
        result = run_bench(sizes, quick=True, only=["gpu"], log=lambda s: None)
    finally:
        mdrn.perf.TRAIN_COMPILE_BACKEND = backend
        torch.set_num_threads(threads)
        torch._dynamo.reset()
    return result, counter


def test_ceiling_and_budgets_on_cpu(gpu_result):
    result, counter = gpu_result
    g = result["facts"]["gpu"]
    c = g["ceiling"]
    shapes = {(e["batch"], e["patch"]) for e in c["per_shape"]}
    assert shapes == {(2, 16), (4, 16), (2, 24), (4, 24)}  # the budgets and the extra shape
    assert c["flops_per_s"] == max(e["eager"] for e in c["per_shape"]) and not c["graphs"]
    assert all(e["graph"] is None and "no CUDA device" in e["graph_error"] for e in c["per_shape"])
    assert [(b["batch"], b["patch"]) for b in g["budgets"]] == [(2, 16), (4, 16), (2, 24)]
    for b in g["budgets"]:
        assert {"eager fp32 NCHW", EAGER, COMPILED} <= set(b["variants"])
        assert b["best"] in b["variants"]
        for v in b["variants"].values():
            assert v["fraction_of_ceiling"] == pytest.approx(v["flops_per_s"] / c["flops_per_s"])
            assert v["seconds_median"] >= v["seconds"] > 0 and v["fraction_of_peak"] is None
    # the compiled body (dynamic shapes) served every budget with one compilation
    assert counter.frame_count == 1 and "compiled" in g["compile_seconds"]
    assert set(g["train"]) == set(g["budgets"][0]["variants"])  # the paper's budget feeds the projection
    skipped = {s["name"].split(": ", 1)[1] for s in result["skipped"]}
    assert any("one CUDA graph" in k for k in skipped)
    reasons = {s["reason"] for s in result["skipped"]}
    assert reasons == {"CUDA graphs need a CUDA device"}
    names = [r["name"] for r in result["rows"]]
    assert any(n.endswith(f": {COMPILED}") for n in names) and not any(PRESET in n for n in names)


def _as_cuda(result, peak=989e12, ceiling=None, fractions=None):
    """The quick result dressed as a CUDA run (fractions of the ceiling/peak set per budget)."""
    run = copy.deepcopy(result)
    run["machine"]["device"] = "cuda:0"
    run["machine"]["gpu"] = "NVIDIA H100 80GB HBM3"
    g = run["facts"]["gpu"]
    g["device_name"], g["bf16_peak"] = "NVIDIA H100 80GB HBM3", peak
    g["budgets"][0].update(batch=16, patch=48, lr_pixels=16 * 48 * 48)
    g["budgets"][-1].update(batch=64, patch=96, lr_pixels=64 * 96 * 96)
    for b, (fc, fp) in zip(g["budgets"], fractions or [(0.5, 0.1)] * 3, strict=True):
        for v in b["variants"].values():
            v["fraction_of_ceiling"], v["fraction_of_peak"] = fc, fp
    return run


def test_gpu_goals_met_not_met_not_measured(gpu_result):
    result, _ = gpu_result
    assert gpu_ceiling(result) == ("not measured", "no GPU in this run")
    low = _as_cuda(result, fractions=[(0.40, 0.05), (0.6, 0.1), (0.9, 0.2)])
    status, text = gpu_ceiling(low)
    assert status == "not met" and text.startswith("16x48^2") and "40%" in text
    assert gpu_peak(low)[0] == "not met" and gpu_peak(low)[1].startswith("64x96^2")  # largest budget
    high = _as_cuda(result, fractions=[(CEILING_FRACTION, 0.1), (0.6, 0.1), (0.9, PEAK_FRACTION + 0.01)])
    assert gpu_ceiling(high)[0] == "met" and gpu_peak(high)[0] == "met"
    error = _as_cuda(result, fractions=[(1.3, 0.1), (0.6, 0.1), (0.9, 0.3)])
    assert gpu_ceiling(error)[0] == "not met" and "error" in gpu_ceiling(error)[1]
    unknown = _as_cuda(result, peak=None, fractions=[(0.8, None)] * 3)
    assert gpu_peak(unknown)[0] == "not measured"
    old = _as_cuda(result)
    del old["facts"]["gpu"]["ceiling"]  # GPU runs recorded before issue 26
    assert gpu_ceiling(old)[0] == "not measured"


def test_gpu_readme_part_projection_and_file_names(gpu_result, tmp_path):
    result, _ = gpu_result
    run = _as_cuda(result)
    text = "\n".join(gpu_projection_markdown(run["facts"]["gpu"]))
    assert "Ceiling (the network's 64->64 3x3 bf16 NHWC convolution" in text
    assert "| 16x48^2 (36,864 px) | " in text and "**(fastest)**" in text
    cpu = {**copy.deepcopy(result), "_source": "cpu.json", "quick": False}
    cpu["facts"].update(train_fraction=0.8, paper_step_flops=result["facts"]["paper_step_flops"])
    run["_source"], run["quick"] = "h100-x.json", False
    proj = projection_markdown(cpu, gpu_run=run)
    assert "the rate measured on NVIDIA H100 80GB HBM3" in proj and "the fastest step at 64x96^2 LR" in proj
    readme = readme_markdown(run, [cpu, run])
    assert "make gpu-checks" in readme and "GPU step >= 70% of the measured ceiling" in readme
    md, js = write_results(run, tmp_path, readme=False)
    assert md.name == f"h100-{run['date']}.md" and js.name == f"h100-{run['date']}.json"


def test_kernel_kinds():
    assert kernel_kind("triton_poi_fused_add_relu_threshold_backward_3") == "triton (fused by the compiler)"
    assert kernel_kind("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc") == (
        "convolution / matmul"
    )
    assert kernel_kind("cudnn::engines_precompiled::dgrad2d_grouped_direct_kernel") == "convolution / matmul"
    assert kernel_kind("void at::native::vectorized_elementwise_kernel<4, ...>") == (
        "elementwise / reduction (one op each)"
    )
    assert kernel_kind("void at::native::(anonymous namespace)::multi_tensor_apply_kernel") == "optimizer"
    assert kernel_kind("Memcpy DtoD (Device -> Device)") == "copies, layout"


def test_readme_gpu_section_comes_from_a_cuda_run_only(gpu_result):
    """A later run of section gpu on a CPU (``--only gpu``, for tests) claims nothing in the GPU section:
    its rows and its 'N such steps take x h on one cpu' stay out; the CUDA run's figures stay in."""
    result, _ = gpu_result
    run = {**_as_cuda(result), "_source": "h100-x.json", "quick": False}
    cpu = {**copy.deepcopy(result), "_source": "cpu-later.json", "quick": False}
    readme = readme_markdown(run, [run, cpu])
    gpu_part = readme[readme.index("## GPU: section gpu") :]
    assert "(latest: `h100-x.json`)" in gpu_part and "cpu-later.json" not in gpu_part
    assert " h on one NVIDIA H100 80GB HBM3" in gpu_part and " h on one cpu" not in readme
