"""Shared fixtures: the reference data in ../shared (skipped with a reason where absent); the CI skip policy.

Under ``CI=true`` nothing skips: a skipped test or module (a missing extra, input or reference file,
``importorskip`` included) is reported as a failure with its reason. The one exception is a test
marked ``gpu`` (CI has no GPU), which keeps skipping with its reason. Outside CI a skip says why.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(os.environ.get("MDRN_SHARED", ROOT.parent / "shared")).resolve()


def shared_path(*parts: str) -> Path:
    """Return a path under ../shared, skipping the calling test with a clear reason if it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if _in_ci():
            pytest.fail(f"reference data {path} is missing in CI (../shared must sit beside the clone)")
        pytest.skip(f"reference data {path} not found: ../shared is only on developer machines and CI")
    return path


def script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared reference-data folder (skip if absent, fail in CI)."""
    return shared_path()


#: the only marker whose tests may skip under CI=true (there is no GPU in CI)
CI_MAY_SKIP = "gpu"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _fail_skip_in_ci(report: Any, what: str) -> None:
    """Turn a skip report into a failure under CI, keeping the skip's reason in the message."""
    if not (_in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"{what} skipped under CI=true ({reason}); in CI only tests marked {CI_MAY_SKIP!r} may skip: "
        "install the extra / provide the input"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under CI, a skipped test fails (unless marked ``gpu``)."""
    outcome = yield
    if item.get_closest_marker(CI_MAY_SKIP) is None:
        _fail_skip_in_ci(outcome.get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Under CI, a module skipped at import (``importorskip`` at module level) fails."""
    outcome = yield
    _fail_skip_in_ci(outcome.get_result(), collector.nodeid)


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding the embedded sample data (written once per session)."""
    from mdrn.data import prepare_sample

    root = tmp_path_factory.mktemp("sample_data")
    prepare_sample(root)
    return root


def require_tool(problem: str | None) -> None:
    """Skip with ``problem`` (a tool CI installs is missing), or fail under CI."""
    if problem is None:
        return
    if _in_ci():
        pytest.fail(f"{problem}: CI installs it (.ci/run)")
    pytest.skip(problem)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Orthanc of the test session on loopback (DICOMweb on, a user ``mdrn``, mdrn's node registered
    as modality ``mdrn``: AE ``MDRN`` on ``orthanc.node_port``); stopped at the end. Missing Orthanc skips,
    and fails in CI."""
    from mdrn.pacs.sandbox import LocalOrthanc, OrthancNotFound, find_orthanc, free_port

    try:
        find_orthanc()
    except OrthancNotFound as err:
        require_tool(str(err))
    port = free_port()
    pacs = LocalOrthanc(
        users={"mdrn": "pacs-test-password"},
        modalities={"mdrn": ("MDRN", "127.0.0.1", port)},
        folder=tmp_path_factory.mktemp("orthanc"),
    )
    pacs.node_port = port  # type: ignore[attr-defined]
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.close()
