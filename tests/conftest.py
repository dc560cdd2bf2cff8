"""Shared fixtures: the offline copy of MNIST/FashionMNIST beside the repo, isolated caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PTMDD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only offline data folder; the test is skipped, saying why, when it is absent."""
    if not (SHARED_DATA / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"offline FashionMNIST not found at {SHARED_DATA} (set PTMDD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_roots(tmp_path_factory, monkeypatch):
    """Keep caches, pools and runs of the tests out of the user's folders."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("PTMDD_CACHE", str(base / "cache"))
    monkeypatch.setenv("PTMDD_POOLS", str(base / "pools-default"))
    monkeypatch.setenv("PTMDD_RUNS", str(base / "runs-default"))
