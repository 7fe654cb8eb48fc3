"""Circuit breakers: the state machine on a real log, shared across stores, around steps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import duralog
from duralog.engine.api import StepInfo
from duralog.engine.clock import VirtualClock
from duralog.patterns import breaker as breaker_module
from duralog.patterns.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breakers,
    CircuitBreaker,
    CircuitOpen,
    Ticket,
    change,
)
from duralog.store.base import BreakerRecord
from duralog.store.events import StepFailed, StepRetrying
from duralog.store.sqlite import SQLiteStore
from duralog.testing import WorkflowEnvironment

INFO = StepInfo("order-1", "charge", 3, 1, "checkout")


@pytest.fixture
def store(db: str) -> Iterator[SQLiteStore]:
    s = SQLiteStore(db, durability="normal")
    yield s
    s.close()


def fail(breakers: Breakers, breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breakers.failed(breakers.admit(breaker, INFO), ConnectionError("down"))


def test_it_opens_after_the_threshold_and_then_fails_fast(store: SQLiteStore) -> None:
    clock = VirtualClock(1_000.0)
    breakers = Breakers(store, clock)
    breaker = CircuitBreaker("payments-api", failure_threshold=3, reset_timeout=30)
    fail(breakers, breaker, 2)
    assert breaker.state(store).state == CLOSED and breaker.state(store).failures == 2
    fail(breakers, breaker, 1)
    record = breaker.state(store)
    assert (record.state, record.failures, record.opened_at) == (OPEN, 3, 1_000.0)

    clock.advance(10)
    with pytest.raises(CircuitOpen) as caught:
        breakers.admit(breaker, INFO)
    error = caught.value
    assert (error.breaker, error.step, error.workflow_id, error.seq) == (
        "payments-api",
        "charge",
        "order-1",
        3,
    )
    assert error.retry_at == 1_030.0
    assert 20.0 <= error.retry_after <= 20.0 + breaker.jitter
    message = str(error)
    for part in ("'payments-api' is open", "3 failures in a row", "'charge'", "'order-1'"):
        assert part in message
    assert "in 20.0s" in message and "RetryPolicy" in message


def test_a_success_resets_the_count_of_failures_in_a_row(store: SQLiteStore) -> None:
    breakers = Breakers(store, VirtualClock(0.0))
    breaker = CircuitBreaker("flaky", failure_threshold=2)
    fail(breakers, breaker, 1)
    breakers.succeeded(breakers.admit(breaker, INFO))
    fail(breakers, breaker, 1)
    assert breaker.state(store).state == CLOSED


def test_only_failure_types_count(store: SQLiteStore) -> None:
    breakers = Breakers(store, VirtualClock(0.0))
    breaker = CircuitBreaker("typed", failure_threshold=1, failure_types=(ConnectionError,))
    breakers.failed(breakers.admit(breaker, INFO), ValueError("bad input, not an outage"))
    assert breaker.state(store).state == CLOSED
    breakers.failed(breakers.admit(breaker, INFO), ConnectionError("outage"))
    assert breaker.state(store).state == OPEN


def test_a_trial_ending_in_an_error_that_does_not_count_closes(store: SQLiteStore) -> None:
    # The dependency answered; the error is the caller's. Leaving the circuit
    # half-open would fail every other attempt fast for a whole reset_timeout.
    clock = VirtualClock(0.0)
    breakers = Breakers(store, clock)
    breaker = CircuitBreaker("svc-typed", failure_threshold=1, failure_types=(ConnectionError,))
    breakers.failed(breakers.admit(breaker, INFO), ConnectionError("outage"))
    clock.advance(breaker.reset_timeout)
    trial = breakers.admit(breaker, INFO)
    assert trial.trial
    breakers.failed(trial, ValueError("bad input"))
    assert breaker.state(store).state == CLOSED
    breakers.admit(breaker, INFO)  # through


def test_half_open_trial_success_closes_and_failure_reopens(store: SQLiteStore) -> None:
    clock = VirtualClock(0.0)
    breakers = Breakers(store, clock)
    breaker = CircuitBreaker("svc", failure_threshold=1, reset_timeout=5)
    fail(breakers, breaker, 1)
    clock.advance(5)
    trial = breakers.admit(breaker, INFO)
    assert trial.trial and breaker.state(store).state == HALF_OPEN
    with pytest.raises(CircuitOpen, match="half-open: a trial call has been in flight"):
        breakers.admit(breaker, INFO)
    breakers.failed(trial, TimeoutError("still down"))
    record = breaker.state(store)
    assert (record.state, record.opened_at) == (OPEN, 5.0)

    clock.advance(5)
    trial = breakers.admit(breaker, INFO)
    breakers.succeeded(trial)
    record = breaker.state(store)
    assert (record.state, record.failures, record.opened_at) == (CLOSED, 0, None)
    breakers.admit(breaker, INFO)  # closed: through


def test_a_silent_trial_is_taken_over_after_the_reset_timeout(store: SQLiteStore) -> None:
    clock = VirtualClock(0.0)
    breakers = Breakers(store, clock)
    breaker = CircuitBreaker("svc", failure_threshold=1, reset_timeout=5)
    fail(breakers, breaker, 1)
    clock.advance(5)
    assert breakers.admit(breaker, INFO).trial  # ... and its worker dies
    clock.advance(4.9)
    with pytest.raises(CircuitOpen):
        breakers.admit(breaker, INFO)
    clock.advance(0.1)
    assert breakers.admit(breaker, INFO).trial


def test_exactly_one_trial_across_workers_on_one_file(db: str) -> None:
    """Eight threads on two stores (two workers' connections) race for the trial."""
    clock = VirtualClock(0.0)
    stores = [SQLiteStore(db, durability="normal") for _ in range(2)]
    breaker = CircuitBreaker("shared", failure_threshold=1, reset_timeout=5)
    try:
        fail(Breakers(stores[0], clock), breaker, 1)
        clock.advance(6)
        workers = [Breakers(stores[i % 2], clock) for i in range(8)]
        barrier = threading.Barrier(len(workers))
        outcomes: list[str] = []

        def race(breakers: Breakers) -> None:
            barrier.wait()
            try:
                ticket = breakers.admit(breaker, INFO)
            except CircuitOpen:
                outcomes.append("fast failure")
            else:
                outcomes.append("trial" if ticket.trial else "closed?")

        threads = [threading.Thread(target=race, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outcomes) == ["fast failure"] * 7 + ["trial"]
        assert breaker.state(stores[1]).state == HALF_OPEN
    finally:
        for s in stores:
            s.close()


def test_a_lost_compare_and_set_is_read_again_and_decided_again(db: str) -> None:
    mine, theirs = SQLiteStore(db), SQLiteStore(db)
    try:
        seen: list[int] = []

        def decide(current: BreakerRecord) -> BreakerRecord | None:
            seen.append(current.version)
            if len(seen) == 1:  # another worker writes between our read and our write
                theirs.put_breaker(BreakerRecord("raced", CLOSED, 1, None, 1, 1.0))
            return BreakerRecord(
                "raced", CLOSED, current.failures + 1, None, current.version + 1, 2.0
            )

        record, wrote = change(mine, "raced", decide)
        assert wrote and seen == [0, 1]
        assert (record.failures, record.version) == (2, 2)
        assert mine.get_breaker("raced") == record
    finally:
        mine.close()
        theirs.close()


def test_reset_closes_from_any_process(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock(0.0)
    breakers = Breakers(store, clock)
    breaker = CircuitBreaker("ops", failure_threshold=1, reset_timeout=3600)
    fail(breakers, breaker, 1)
    assert breaker.reset(store).state == CLOSED
    assert breaker.state(store).state == CLOSED
    assert isinstance(Breakers(store, clock).admit(breaker, INFO), Ticket)  # another worker
    with pytest.raises(CircuitOpen):  # this one trusts what it read for up to a second
        breakers.admit(breaker, INFO)
    monkeypatch.setattr(breaker_module, "OPEN_CACHE_SECONDS", 0.0)
    assert isinstance(breakers.admit(breaker, INFO), Ticket)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "non-empty name"),
        ({"name": "x", "failure_threshold": 0}, "failure_threshold"),
        ({"name": "x", "failure_threshold": True}, "failure_threshold"),
        ({"name": "x", "reset_timeout": 0}, "reset_timeout"),
        ({"name": "x", "reset_timeout": float("inf")}, "reset_timeout"),
        ({"name": "x", "failure_types": (int,)}, "failure_types"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(duralog.ConfigurationError, match=message):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_circuit_must_be_a_breaker() -> None:
    with pytest.raises(duralog.ConfigurationError, match="CircuitBreaker"):

        @duralog.step(circuit="payments")  # type: ignore[arg-type]
        def nope() -> None: ...


# -- around real steps ---------------------------------------------------------------

calls: list[str] = []
healthy = threading.Event()
payments = CircuitBreaker("obs-payments", failure_threshold=2, reset_timeout=3600)


@duralog.step(circuit=payments, retry=duralog.RetryPolicy(max_attempts=1))
def obs_charge(order_id: str) -> str:
    calls.append(order_id)
    if not healthy.is_set():
        raise ConnectionError("payments API unreachable")
    return f"charged {order_id}"


@duralog.workflow(name="obs_breaker_order")
async def obs_breaker_order(order_id: str) -> str:
    try:
        return await obs_charge(order_id)
    except duralog.StepFailed as failed:
        return f"not charged: {failed.error.type.rsplit('.', 1)[-1]}"


def _engine(db: str) -> duralog.Engine:
    return duralog.Engine(db, durability="normal", poll_interval=0.05)


def test_an_open_circuit_fails_steps_fast_without_calling_them(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(breaker_module, "OPEN_CACHE_SECONDS", 0.0)  # see the reset at once
    calls.clear()
    healthy.clear()
    with _engine(db) as engine:
        for i in (1, 2):
            assert engine.run(obs_breaker_order, f"o{i}", timeout=10) == (
                "not charged: ConnectionError"
            )
        handle = engine.start(obs_breaker_order, "o3", id="fast-o3")
        assert handle.result(timeout=10) == "not charged: CircuitOpen"
        assert calls == ["o1", "o2"]  # o3 never reached the payments API
        failed = [e.event for e in handle.history() if isinstance(e.event, StepFailed)]
        assert "circuit breaker 'obs-payments' is open" in failed[0].error.message
        assert "'fast-o3'" in failed[0].error.message
        assert payments.state(engine).state == OPEN
        payments.reset(engine)
        healthy.set()
        assert engine.run(obs_breaker_order, "o4", timeout=10) == "charged o4"


def test_two_engines_on_one_file_share_the_circuit_and_a_restart_keeps_it(db: str) -> None:
    calls.clear()
    healthy.clear()
    with _engine(db) as first, _engine(db) as second:
        for i in (1, 2):
            first.run(obs_breaker_order, f"a{i}", timeout=10)
        assert second.run(obs_breaker_order, "b1", timeout=10) == "not charged: CircuitOpen"
    with _engine(db) as restarted:
        assert payments.state(restarted).state == OPEN
        assert restarted.run(obs_breaker_order, "c1", timeout=10) == "not charged: CircuitOpen"
    assert calls == ["a1", "a2"]


flaky_calls: list[float] = []
flaky_breaker = CircuitBreaker("obs-flaky", failure_threshold=1, reset_timeout=30)


@duralog.step(
    circuit=flaky_breaker,
    retry=duralog.RetryPolicy(max_attempts=5, initial_interval=0.1, jitter=False),
)
def obs_flaky() -> str:
    flaky_calls.append(duralog.now().timestamp())
    if len(flaky_calls) == 1:
        raise ConnectionError("blip")
    return "ok"


@duralog.workflow(name="obs_breaker_retry")
async def obs_breaker_retry() -> str:
    return await obs_flaky()


def test_a_retry_waits_for_the_circuit_then_the_trial_closes_it(tmp_path: Path) -> None:
    flaky_calls.clear()
    with WorkflowEnvironment() as env:
        handle = env.engine.start(obs_breaker_retry)
        assert env.result(handle) == "ok"
        retries = [e for e in handle.history() if isinstance(e.event, StepRetrying)]
        assert [r.event.error.type.rsplit(".", 1)[-1] for r in retries] == [  # type: ignore[union-attr]
            "ConnectionError",
            "CircuitOpen",
        ]
        # The policy alone would retry after 0.1 s; the open circuit made it wait.
        fast = retries[1]
        assert fast.event.next_attempt_at - fast.at >= 30 - 0.2  # type: ignore[union-attr]
        assert len(flaky_calls) == 2  # the blip, then the trial
        assert flaky_breaker.state(env.engine).state == CLOSED


RELEASE = threading.Event()


@duralog.step
def hog() -> str:
    assert RELEASE.wait(10), "the test never released the hog"
    return "hog"


FAST_BREAKER = CircuitBreaker("fast-path", failure_threshold=3)


@duralog.step(circuit=FAST_BREAKER)
async def guarded_fast() -> str:
    return "fast"


@duralog.workflow(name="breaker_threads_hog")
async def hog_flow() -> str:
    return await hog()


@duralog.workflow(name="breaker_threads_fast")
async def fast_flow() -> str:
    return await guarded_fast()


def test_a_long_sync_step_does_not_hold_up_another_steps_breaker(db: str) -> None:
    # One step thread, taken by a step that blocks: the guarded async step must
    # still be admitted and recorded (the breaker has threads of its own).
    RELEASE.clear()
    with duralog.Engine(db, durability="normal", max_threads=1) as engine:
        hogging = engine.start(hog_flow)
        try:
            assert engine.start(fast_flow).result(timeout=5) == "fast"
        finally:
            RELEASE.set()
        assert hogging.result(timeout=10) == "hog"
