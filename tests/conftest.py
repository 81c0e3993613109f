"""Shared fixtures: the reference data in ../shared (skipped with a reason where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(os.environ.get("MDRN_SHARED", ROOT.parent / "shared")).resolve()


def shared_path(*parts: str) -> Path:
    """Return a path under ../shared, skipping the calling test with a clear reason if it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"reference data {path} is missing in CI (../shared must sit beside the clone)")
        pytest.skip(f"reference data {path} not found: ../shared is only on developer machines and CI")
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared reference-data folder (skip if absent, fail in CI)."""
    return shared_path()


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding the embedded sample data (written once per session)."""
    from mdrn.data import prepare_sample

    root = tmp_path_factory.mktemp("sample_data")
    prepare_sample(root)
    return root
