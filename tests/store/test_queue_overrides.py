"""Queue limits set at runtime: merged field by field, stored as JSON that keeps "not
set" apart from "no limit", applied over the declared limits."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from duralog.store.base import QueueLimits, QueueOverrides

_limit = st.one_of(st.none(), st.integers(1, 1000))
_field = st.one_of(st.just(msgspec.UNSET), _limit)
overrides = st.builds(
    QueueOverrides,
    concurrency=_field,
    worker_concurrency=_field,
    rate_limit=_field,
    rate_period=st.one_of(st.just(msgspec.UNSET), st.floats(0.001, 3600)),
)
declared = st.builds(
    QueueLimits,
    st.just("q"),
    concurrency=_limit,
    worker_concurrency=_limit,
    rate_limit=_limit,
    rate_period=st.floats(0.001, 3600),
    partitioned=st.booleans(),
)


@given(declared, st.lists(overrides, max_size=5))
def test_the_last_value_set_for_each_limit_wins(
    limits: QueueLimits, sets: list[QueueOverrides]
) -> None:
    stored = QueueOverrides()
    for one in sets:
        stored = stored.merged(one)
    applied = limits.overridden(stored)
    for field in ("concurrency", "worker_concurrency", "rate_limit", "rate_period"):
        given_values = [getattr(o, field) for o in sets if getattr(o, field) is not msgspec.UNSET]
        expected = given_values[-1] if given_values else getattr(limits, field)
        assert getattr(applied, field) == expected
    assert (applied.name, applied.partitioned) == (limits.name, limits.partitioned)


@given(overrides)
def test_stored_json_keeps_unset_apart_from_no_limit(one: QueueOverrides) -> None:
    text = msgspec.json.encode(one)
    assert msgspec.json.decode(text, type=QueueOverrides) == one
    assert set(msgspec.json.decode(text)) == set(one.set_fields())


def test_nothing_stored_changes_nothing() -> None:
    limits = QueueLimits("q", concurrency=3)
    assert limits.overridden(None) is limits
    assert limits.overridden(QueueOverrides()) == limits
