"""``Engine.list``'s filters, turned into the store's ``WorkflowQuery``."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable

from duralog.errors import ConfigurationError
from duralog.store.base import WorkflowQuery, WorkflowRecord, WorkflowStatus

#: A time filter: an aware datetime, or UTC epoch seconds.
Moment = dt.datetime | float | int

#: One value, or any of several.
OneOrMore = str | Iterable[str]


def workflow_query(
    *,
    status: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None = None,
    name: OneOrMore | None = None,
    queue: OneOrMore | None = None,
    parent: OneOrMore | None = None,
    id_prefix: str | None = None,
    started_since: Moment | None = None,
    started_until: Moment | None = None,
    ended_since: Moment | None = None,
    ended_until: Moment | None = None,
    after: WorkflowRecord | None = None,
) -> WorkflowQuery:
    """The ``WorkflowQuery`` of ``Engine.list``'s arguments; ``ConfigurationError`` for
    an unknown status, a naive datetime or a time that is not a number."""
    return WorkflowQuery(
        statuses=tuple(_status(s) for s in _many(status)),
        names=_many(name),
        queues=_many(queue),
        parents=_many(parent),
        id_prefix=id_prefix or None,
        started_since=_epoch(started_since, "started_since"),
        started_until=_epoch(started_until, "started_until"),
        ended_since=_epoch(ended_since, "ended_since"),
        ended_until=_epoch(ended_until, "ended_until"),
        after=None if after is None else (after.created_at, after.id),
    )


def page_size(limit: int | None) -> int | None:
    """``limit`` checked: None (no limit) or a whole number, at least 0."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigurationError(f"limit must be None or a whole number >= 0, got {limit!r:.80}")
    return limit


def _many(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(value)
    raise ConfigurationError(f"expected a string or several, got {value!r:.80}")


def _status(value: object) -> WorkflowStatus:
    try:
        return WorkflowStatus(value.upper() if isinstance(value, str) else value)
    except ValueError:
        known = ", ".join(s.value for s in WorkflowStatus)
        raise ConfigurationError(f"unknown status {value!r}; one of: {known}") from None


def _epoch(value: Moment | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConfigurationError(
                f"{what} must be an aware datetime (with a time zone), got {value!r}"
            )
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(
            f"{what} must be an aware datetime or epoch seconds, got {value!r:.80}"
        )
    return float(value)
