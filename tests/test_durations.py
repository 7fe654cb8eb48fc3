"""Every duration argument (a timeout, a period, a lease) goes through one check,
``duralog.errors.positive_seconds``: a bool, a string, zero or less, infinity or NaN
is a ``ConfigurationError`` that names the argument, wherever it is given; a
``timedelta`` counts as its seconds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

import duralog
from duralog.errors import ConfigurationError, positive_seconds


@duralog.workflow(name="durations.idle")
async def idle() -> None:
    return None


def nap() -> None:
    return None


def test_the_check() -> None:
    assert positive_seconds(2, "t") == 2.0 and isinstance(positive_seconds(2, "t"), float)
    assert positive_seconds(dt.timedelta(minutes=1), "t") == 60.0
    assert positive_seconds(1e-9, "t") == 1e-9
    assert positive_seconds(None, "t", optional=True) is None
    assert positive_seconds(0, "t", or_zero=True) == 0.0
    with pytest.raises(
        ConfigurationError, match=r"^t must be seconds \(a number or a timedelta\), got True$"
    ):
        positive_seconds(True, "t")
    with pytest.raises(ConfigurationError, match=r"^t must be positive seconds .*, got 0$"):
        positive_seconds(0, "t")
    with pytest.raises(ConfigurationError, match=r"at least 0\), got -1$"):
        positive_seconds(-1, "t", or_zero=True)
    with pytest.raises(ConfigurationError, match=r"got datetime.timedelta\(days=-1"):
        positive_seconds(dt.timedelta(seconds=-1), "t")
    with pytest.raises(ConfigurationError, match=r"or None, got '5'"):
        positive_seconds("5", "t", optional=True)
    with pytest.raises(ConfigurationError, match="got None"):
        positive_seconds(None, "t")
    with pytest.raises(ConfigurationError, match="finite"):
        positive_seconds(10**400, "t")  # too large for a float: not finite either


@pytest.mark.parametrize("bad", [True, "1s", 0, -1.5, float("inf"), float("nan")])
def test_every_call_site_refuses_what_is_not_a_duration(bad: object, tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")

    def start_with_timeout() -> None:
        with duralog.Engine(db, worker=False) as engine:
            engine.start(idle, timeout=bad)  # type: ignore[arg-type]

    def follow_the_log() -> None:
        with duralog.Engine(db, worker=False) as engine:
            engine.follow(poll_interval=bad)  # type: ignore[arg-type]

    def engine(**options: object) -> Callable[[], object]:
        return lambda: duralog.Engine(db, worker=False, **options)  # type: ignore[arg-type]

    sites: list[tuple[str, Callable[[], object]]] = [
        ("step timeout", lambda: duralog.step(timeout=bad)(nap)),  # type: ignore[arg-type]
        ("reset_timeout", lambda: duralog.CircuitBreaker("dur", reset_timeout=bad)),  # type: ignore[arg-type]
        ("period", lambda: duralog.Queue("dur", period=bad)),  # type: ignore[arg-type]
        ("a workflow timeout", start_with_timeout),
        ("lease_seconds", engine(lease_seconds=bad)),
        ("poll_interval", engine(poll_interval=bad)),
        ("poll_interval", follow_the_log),
    ]
    if bad != 0:  # a workflow past its timeout may have no time at all for its cleanup
        sites.append(("cleanup_grace", engine(cleanup_grace=bad)))
    for name, make in sites:
        with pytest.raises(ConfigurationError, match=rf"{name} must be (positive )?seconds"):
            make()


def test_a_duration_is_kept_as_float_seconds() -> None:
    breaker = duralog.CircuitBreaker("dur-td", reset_timeout=dt.timedelta(minutes=2))
    assert breaker.reset_timeout == 120.0
    timed = duralog.step(timeout=5)(nap)
    assert timed.timeout == 5.0 and isinstance(timed.timeout, float)
