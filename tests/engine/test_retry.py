"""The retry decision (``engine/retry.py``): a pure function, checked with hypothesis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from duralog.engine.retry import next_attempt_at
from duralog.errors import CircuitOpen
from duralog.replay.definitions import RetryPolicy

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 20),
    initial_interval=st.floats(0, 100),
    backoff=st.floats(1, 10),
    max_interval=st.floats(0, 3600),
    jitter=st.booleans(),
)
draws = st.floats(0, 1, exclude_max=True)
times = st.floats(0, 4e9)


def circuit_open(retry_after: float) -> CircuitOpen:
    return CircuitOpen(
        "open",
        breaker="api",
        state="open",
        failures=3,
        retry_at=0.0,
        retry_after=retry_after,
        step="charge",
        workflow_id="w",
        seq=2,
        attempt=1,
    )


@given(policies, st.integers(1, 25), draws, times)
def test_a_retry_is_never_before_now_nor_past_the_max_interval(
    policy: RetryPolicy, attempt: int, draw: float, now: float
) -> None:
    at = next_attempt_at(policy, attempt, ValueError("boom"), draw, now)
    if attempt >= policy.max_attempts:
        assert at is None
    else:
        assert at is not None
        assert now <= at <= now + policy.max_interval


@given(policies, st.integers(1, 25), draws, times)
def test_the_attempts_stop_at_max_attempts(
    policy: RetryPolicy, attempt: int, draw: float, now: float
) -> None:
    at = next_attempt_at(policy, attempt, RuntimeError("down"), draw, now)
    assert (at is None) == (attempt >= policy.max_attempts)


@given(policies, st.integers(1, 25), draws, times, st.sampled_from(["type", "name"]))
def test_a_non_retryable_error_stops_at_once(
    policy: RetryPolicy, attempt: int, draw: float, now: float, how: str
) -> None:
    listed = {"type": LookupError, "name": "KeyError"}[how]
    strict = RetryPolicy(
        max_attempts=policy.max_attempts,
        initial_interval=policy.initial_interval,
        non_retryable=(listed,),
    )
    assert next_attempt_at(strict, attempt, KeyError("gone"), draw, now) is None
    # (by type, a subclass of the listed type stops too); an unrelated error does not
    if attempt < strict.max_attempts:
        assert next_attempt_at(strict, attempt, ValueError(), draw, now) is not None


@given(policies, st.integers(1, 25), draws, times, st.floats(0, 1e5))
def test_an_open_circuit_delays_the_retry_until_it_may_let_a_call_through(
    policy: RetryPolicy, attempt: int, draw: float, now: float, retry_after: float
) -> None:
    at = next_attempt_at(policy, attempt, circuit_open(retry_after), draw, now)
    if attempt >= policy.max_attempts:
        assert at is None
    else:
        assert at is not None
        assert now + retry_after <= at <= now + max(retry_after, policy.max_interval)


@given(st.integers(1, 5), draws, times)
def test_the_same_inputs_give_the_same_time(attempt: int, draw: float, now: float) -> None:
    policy = RetryPolicy(max_attempts=10)
    error = OSError("reset")
    assert next_attempt_at(policy, attempt, error, draw, now) == next_attempt_at(
        policy, attempt, error, draw, now
    )
