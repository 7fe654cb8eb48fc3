"""Every whole-number argument goes through one check, ``duralog.errors.whole_number``:
a bool, a float, a string or a number below the bound is a ``ConfigurationError``
that names the argument, wherever it is given."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import duralog
from duralog.engine.queues import check_priority
from duralog.errors import ConfigurationError, whole_number


def test_the_check() -> None:
    assert whole_number(3, "n") == 3
    assert whole_number(0, "n", minimum=0) == 0
    assert whole_number(-(2**70), "n") == -(2**70)
    assert whole_number(None, "n", optional=True) is None
    with pytest.raises(ConfigurationError, match=r"^n must be a whole number, got True$"):
        whole_number(True, "n")
    with pytest.raises(
        ConfigurationError, match=r"^n must be a whole number of at least 1 or None, got 0$"
    ):
        whole_number(0, "n", minimum=1, optional=True)
    with pytest.raises(ConfigurationError, match="got None"):
        whole_number(None, "n")


@pytest.mark.parametrize("bad", [True, 1.5, "3", 0])
def test_every_call_site_refuses_what_is_not_a_whole_number(bad: object, tmp_path: Path) -> None:
    db = str(tmp_path / "w.db")

    def subscribe() -> object:
        with duralog.Engine(db, worker=False) as engine:
            return engine.subscribe(max_pending=bad)  # type: ignore[arg-type]

    sites: dict[str, Callable[[], object]] = {
        "RetryPolicy.max_attempts": lambda: duralog.RetryPolicy(max_attempts=bad),  # type: ignore[arg-type]
        "failure_threshold": lambda: duralog.CircuitBreaker("wn", failure_threshold=bad),  # type: ignore[arg-type]
        "concurrency": lambda: duralog.Queue("wn", concurrency=bad),  # type: ignore[arg-type]
        "max_parallel": lambda: duralog.DAG("wn", [], max_parallel=bad),  # type: ignore[arg-type]
        "max_workflows": lambda: duralog.Engine(db, worker=False, max_workflows=bad),  # type: ignore[arg-type]
        "snapshot_every": lambda: duralog.Engine(db, worker=False, snapshot_every=bad),  # type: ignore[arg-type]
        "max_pending": subscribe,
    }
    for name, make in sites.items():
        with pytest.raises(ConfigurationError, match=rf"{name} must be a whole number"):
            make()
    if bad != 0:  # a priority may be 0 or negative
        with pytest.raises(ConfigurationError, match=r"priority .* must be a whole number"):
            check_priority(bad)
