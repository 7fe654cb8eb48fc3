"""Shared fixtures and the hypothesis profiles (``HYPOTHESIS_PROFILE=dev`` runs longer)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import duralog
from duralog.replay.definitions import Registry

settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A path for a fresh SQLite log."""
    return str(tmp_path / "test.db")


@pytest.fixture
def engine(db: str) -> Iterator[duralog.Engine]:
    """An open engine with a running worker on a fresh file (durability=normal for speed)."""
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as e:
        yield e


@pytest.fixture
def registry() -> Registry:
    """A private registry, for tests that register two versions of one workflow."""
    return Registry()
