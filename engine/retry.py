"""Where a retry is decided: after a failed attempt, when the next one may start.

A pure function of the step's policy, the attempt that failed, its error, a random
draw and the time, so that it is tested on its own (``tests/engine/test_retry.py``)
and the step runner only records what it decides.
"""

from __future__ import annotations

from duralog.errors import CircuitOpen
from duralog.replay.definitions import RetryPolicy
from duralog.replay.failures import details_of


def next_attempt_at(
    policy: RetryPolicy, attempt: int, error: BaseException, random_draw: float, now: float
) -> float | None:
    """When attempt ``attempt + 1`` may start, after attempt ``attempt`` (1-based) raised
    ``error`` at ``now``; None when the step fails for good (no attempt left, or a
    non-retryable error).

    The wait is the policy's backoff (``RetryPolicy.delay`` with ``random_draw``, uniform
    in [0, 1), as its jitter), and no shorter than a circuit breaker that failed the
    attempt fast asks (``CircuitOpen.retry_after``).
    """
    if attempt >= policy.max_attempts:
        return None
    if not policy.retryable(type(error), details_of(error).type):
        return None
    delay = policy.delay(attempt, random_draw)
    if isinstance(error, CircuitOpen):  # no sooner than the circuit lets a call through
        delay = max(delay, error.retry_after)
    return now + delay
