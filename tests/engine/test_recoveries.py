"""The rules of the recovery count (``engine/recoveries.py``) and of
``max_recovery_attempts``; the crash loop itself is in ``tests/crash/test_dead_letters.py``."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import duralog
from duralog.engine import recoveries
from duralog.errors import ErrorDetails
from duralog.replay.definitions import Registry
from duralog.replay.state import fold_all
from duralog.store import events as ev
from duralog.store.events import LogEntry

ARGS = msgspec.Raw(b"[]")


def log(*events: ev.Event) -> list[LogEntry]:
    started = ev.started_entry(0.0, name="flow", args=ARGS)
    return [started, *(LogEntry(seq, float(seq), e) for seq, e in enumerate(events, 2))]


def test_only_steps_that_ran_count_not_waits() -> None:
    waiting = fold_all(
        "w",
        log(
            ev.StepScheduled(name="a", args=ARGS),
            ev.StepStarted(step_seq=2, attempt=1),
            ev.StepRetrying(
                step_seq=2, attempt=1, error=ErrorDetails("E", "x"), next_attempt_at=9.0
            ),
            ev.TimerStarted(fire_at=99.0),
        ),
    )
    assert recoveries.running_steps(waiting) == []  # a backoff and a timer: waiting
    running = fold_all(
        "w",
        log(
            ev.StepScheduled(name="a", args=ARGS),
            ev.StepCompleted(step_seq=2, result=ARGS),
            ev.StepScheduled(name="b", args=ARGS),
            ev.StepScheduled(name="c", args=ARGS),
            ev.StepStarted(step_seq=5, attempt=1),
        ),
    )
    assert recoveries.running_steps(running) == ["b", "c"]


def test_progress_is_an_outcome_after_the_mark_or_a_new_run() -> None:
    entries = log(
        ev.StepScheduled(name="a", args=ARGS),
        ev.StepStarted(step_seq=2, attempt=1),
        ev.StepCompleted(step_seq=2, result=ARGS),
        ev.StepScheduled(name="b", args=ARGS),
        ev.StepStarted(step_seq=5, attempt=1),
    )
    assert recoveries.progressed(entries, 3, 6)  # the completion at seq 4
    assert not recoveries.progressed(entries, 4, 6)  # only decisions and starts since
    assert recoveries.progressed(entries[:2], 5, 2)  # the log restarted: continue-as-new


@given(st.integers(0, 1000), st.booleans(), st.booleans())
def test_the_count_grows_by_one_per_running_recovery_and_restarts_on_progress(
    previous: int, moved_on: bool, running: bool
) -> None:
    count = recoveries.next_count(previous, moved_on, running)
    assert count == (0 if moved_on else previous) + running
    assert not recoveries.over_limit(count, None)
    assert recoveries.over_limit(count, count - 1) and not recoveries.over_limit(count, count)


def test_the_reason_names_the_limit_the_step_and_the_way_back() -> None:
    error, reason = recoveries.set_aside("order-7", 11, 10, ["render", "render"])
    assert error.type == "RecoveryLimit"
    assert reason == (
        "set aside after 11 recoveries in a row without progress "
        "(max_recovery_attempts=10); its step render ran each time"
    )
    assert "duralog fork order-7 --from-seq N" in error.message


def test_max_recovery_attempts_is_a_whole_number_or_none() -> None:
    registry = Registry()

    @duralog.workflow(registry=registry, max_recovery_attempts=None)
    async def endless() -> None:
        return None

    @duralog.workflow(registry=registry)
    async def default() -> None:
        return None

    assert endless.max_recovery_attempts is None and default.max_recovery_attempts == 10
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(duralog.ConfigurationError, match="max_recovery_attempts"):
            duralog.workflow(registry=registry, max_recovery_attempts=bad)(default.fn)  # type: ignore[arg-type]
