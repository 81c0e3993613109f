"""Under CI=true nothing skips but GPU-only tests: a missing extra or input fails, with its reason."""

from __future__ import annotations

import pytest
from conftest import ROOT

pytest_plugins = ["pytester"]

CASES = """
import pytest

def test_missing_extra():
    pytest.importorskip("a_module_that_is_not_installed")

def test_missing_input():
    pytest.skip("input.png not found")

@pytest.mark.gpu
@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_cuda_only():
    pass

@pytest.mark.xfail(reason="a known limit", strict=True)
def test_known_limit():
    assert False

def test_passes():
    pass
"""
MODULE_SKIP = 'import pytest\n\npytest.importorskip("another_missing_module")\n\ndef test_x():\n    pass\n'


@pytest.mark.parametrize("ci", ["true", None])
def test_ci_skip_policy(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    gpu: needs a CUDA device\n")
    pytester.makepyfile(test_cases=CASES, test_module_skip=MODULE_SKIP)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-rA", "-p", "no:cacheprovider", "--continue-on-collection-errors")
    if ci:
        result.assert_outcomes(passed=1, failed=2, skipped=1, xfailed=1, errors=1)
        result.stdout.fnmatch_lines(["*test_missing_extra*a_module_that_is_not_installed*"])
        result.stdout.fnmatch_lines(["*test_missing_input*input.png not found*"])
        result.stdout.fnmatch_lines(["*test_module_skip.py*another_missing_module*"])
        result.stdout.fnmatch_lines(["SKIPPED*needs a CUDA device*"])  # the only skip: GPU, with its reason
    else:
        result.assert_outcomes(passed=1, skipped=4, xfailed=1)
        result.stdout.fnmatch_lines(["SKIPPED*input.png not found*"])  # outside CI a skip says why
