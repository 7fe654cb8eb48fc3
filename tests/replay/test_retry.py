"""``RetryPolicy``: backoff bounds, jitter, validation, and which errors are retried."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duralog.errors import ConfigurationError
from duralog.replay.definitions import DEFAULT_RETRY, RetryPolicy
from duralog.replay.failures import details_of

INTERVALS = st.floats(min_value=0, max_value=1e6, allow_nan=False)
# Below 2**16 a capped exponent (64) cannot overflow a float; larger backoffs are capped too.
BACKOFFS = st.floats(min_value=1, max_value=1000, allow_nan=False)
ATTEMPTS = st.integers(min_value=-3, max_value=10_000)
RANDS = st.floats(min_value=0, max_value=1, exclude_max=True)


@st.composite
def policies(draw: st.DrawFn, jitter: bool | None = None) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=100)),
        initial_interval=draw(INTERVALS),
        backoff=draw(BACKOFFS),
        max_interval=draw(INTERVALS),
        jitter=draw(st.booleans()) if jitter is None else jitter,
    )


def without_jitter(policy: RetryPolicy) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=policy.max_attempts,
        initial_interval=policy.initial_interval,
        backoff=policy.backoff,
        max_interval=policy.max_interval,
        jitter=False,
    )


@given(policies(), ATTEMPTS, RANDS)
def test_delay_is_within_zero_and_max_interval(
    policy: RetryPolicy, attempt: int, rand: float
) -> None:
    delay = policy.delay(attempt, rand)
    assert math.isfinite(delay)
    assert 0 <= delay <= policy.max_interval


@given(policies(jitter=False), ATTEMPTS, RANDS, RANDS)
def test_delay_without_jitter_is_monotone_and_ignores_rand(
    policy: RetryPolicy, attempt: int, rand: float, other: float
) -> None:
    delay = policy.delay(attempt, rand)
    assert delay == policy.delay(attempt, other)
    assert delay <= policy.delay(attempt + 1, rand)
    assert policy.delay(1, rand) == min(policy.initial_interval, policy.max_interval)


@given(policies(jitter=True), ATTEMPTS, RANDS)
def test_jitter_stays_in_the_upper_half_of_the_base(
    policy: RetryPolicy, attempt: int, rand: float
) -> None:
    base = without_jitter(policy).delay(attempt, rand)
    delay = policy.delay(attempt, rand)
    assert base / 2 <= delay <= base
    assert policy.delay(attempt, 0.0) == base / 2


@given(policies(jitter=True), ATTEMPTS, RANDS, RANDS)
def test_jitter_grows_with_rand(policy: RetryPolicy, attempt: int, a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert policy.delay(attempt, low) <= policy.delay(attempt, high)


def test_default_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_interval=1.0, backoff=2.0, max_interval=60.0, jitter=False)
    assert [policy.delay(n, 0.5) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(10**9, 0.5) == 60.0
    assert RetryPolicy() == DEFAULT_RETRY
    assert (DEFAULT_RETRY.max_attempts, DEFAULT_RETRY.jitter) == (3, True)


def test_zero_interval_retries_at_once() -> None:
    assert RetryPolicy(initial_interval=0, backoff=10).delay(50, 0.9) == 0.0


@pytest.mark.parametrize("backoff", [1e5, 1e300])
def test_huge_backoff_is_capped_not_an_overflow(backoff: float) -> None:
    policy = RetryPolicy(initial_interval=1.0, backoff=backoff, max_interval=60.0, jitter=False)
    assert policy.delay(100, 0.5) == 60.0


# -- validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"initial_interval": -1.0},
        {"initial_interval": -1e-9},
        {"max_interval": -0.5},
        {"backoff": 0.99},
        {"backoff": 0.0},
        {"backoff": -2.0},
    ],
    ids=repr,
)
def test_invalid_policy_is_a_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_interval": math.nan},
        {"max_interval": math.nan},
        {"backoff": math.nan},
        {"backoff": math.inf},
    ],
    ids=repr,
)
def test_non_finite_policy_is_a_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


@given(
    st.integers(min_value=1, max_value=50),
    INTERVALS,
    st.floats(min_value=1, max_value=10),
    INTERVALS,
)
def test_valid_policy_is_accepted(
    attempts: int, initial: float, backoff: float, cap: float
) -> None:
    policy = RetryPolicy(
        max_attempts=attempts, initial_interval=initial, backoff=backoff, max_interval=cap
    )
    assert policy.max_attempts == attempts


# -- retryable ------------------------------------------------------------------------


class CardDeclined(Exception):
    pass


class ExpiredCard(CardDeclined):
    pass


class Outage(Exception):
    pass


def name_of(exc_type: type[BaseException]) -> str:
    """The error name the log records for an exception of this type."""
    return details_of(exc_type()).type


def test_everything_is_retryable_by_default() -> None:
    assert DEFAULT_RETRY.retryable(ValueError, "ValueError")
    assert DEFAULT_RETRY.retryable(None, "anything.at.All")


def test_types_match_subclasses() -> None:
    policy = RetryPolicy(non_retryable=(CardDeclined, KeyError))
    assert not policy.retryable(CardDeclined, name_of(CardDeclined))
    assert not policy.retryable(ExpiredCard, name_of(ExpiredCard))
    assert not policy.retryable(KeyError, "KeyError")
    assert policy.retryable(Outage, name_of(Outage))
    assert policy.retryable(LookupError, "LookupError")  # a base class is not listed
    assert policy.retryable(None, name_of(CardDeclined))  # a type needs the type


def test_names_match_qualified_or_bare() -> None:
    qualified = name_of(CardDeclined)
    assert qualified.endswith(".CardDeclined") and qualified != "CardDeclined"
    for item in (qualified, "CardDeclined"):
        policy = RetryPolicy(non_retryable=(item,))
        assert not policy.retryable(CardDeclined, qualified)
        assert not policy.retryable(None, qualified)
        assert policy.retryable(Outage, name_of(Outage))
    assert not RetryPolicy(non_retryable=("ValueError",)).retryable(ValueError, "ValueError")


def test_names_do_not_match_other_modules_or_substrings() -> None:
    policy = RetryPolicy(non_retryable=("billing.CardDeclined", "Error"))
    assert policy.retryable(None, "shipping.CardDeclined")
    assert policy.retryable(None, "other.billing.CardDeclinedAgain")
    assert policy.retryable(ValueError, "ValueError")


def test_types_and_names_mix() -> None:
    policy = RetryPolicy(non_retryable=(Outage, "billing.CardDeclined"))
    assert not policy.retryable(Outage, name_of(Outage))
    assert not policy.retryable(None, "billing.CardDeclined")
    assert policy.retryable(CardDeclined, name_of(CardDeclined))


identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@given(st.lists(identifiers, min_size=0, max_size=3), identifiers, identifiers)
def test_name_matching_property(module: list[str], cls: str, other: str) -> None:
    qualified = ".".join([*module, cls])
    assert not RetryPolicy(non_retryable=(qualified,)).retryable(None, qualified)
    assert not RetryPolicy(non_retryable=(cls,)).retryable(None, qualified)
    if other != cls:
        assert RetryPolicy(non_retryable=(other,)).retryable(None, qualified)
