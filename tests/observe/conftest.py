"""Fixtures for the observability tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

Wait = Callable[..., Any]


def _wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``condition`` until it is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


@pytest.fixture
def wait_for() -> Wait:
    """``wait_for(condition, timeout=10)``: poll until true, fail at the deadline."""
    return _wait_for
