"""Shared fixtures: a clean LIVESHOP_* environment per test, settings on a temporary data dir,
and the real exports in ../shared/data (skipped with a reason where they are absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from include.liveshop.settings import PROJECT_ROOT, Settings, get_settings

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _clean_liveshop_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from the defaults: no LIVESHOP_* variable leaks in from the shell."""
    for name in list(os.environ):
        if name.startswith("LIVESHOP_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on a fresh data dir, also exported so code that reads the environment agrees."""
    monkeypatch.setenv("LIVESHOP_DATA_DIR", str(tmp_path / "data"))
    return get_settings()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "seed").is_dir():
        pytest.skip(
            f"real exports not found at {SHARED_DATA}: they live beside the project in CI "
            "(../shared/data) and are not part of a user's clone"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def seed_events_csv(shared_data: Path) -> Path:
    return shared_data / "seed" / "synthetic_5k_live_shopping_events.csv"
