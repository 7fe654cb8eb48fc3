"""Fixtures for the observability tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import support

Wait = Callable[..., Any]


@pytest.fixture
def wait_for() -> Wait:
    """``wait_for(condition)``: poll until true, fail at the deadline (``support.wait_for``)."""
    return support.wait_for
