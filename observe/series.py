"""The numbers of ``duralog stats`` over time, in buckets, for charts (``/stats``).

Pure functions: ``points`` takes what one workflow's log says happened when (a run
ended, a step completed, failed for good or was retried, an attempt took so long),
counted exactly as ``collect`` counts it; ``series`` puts points in buckets of one
width over a window. So the buckets of a window add up to the totals ``collect``
gives for it: runs ended by outcome, steps completed and failed, retries, attempts
timed; each bucket also has the p50, p95 and p99 of the attempt durations in it.

A window has at most ``MOST_BUCKETS`` buckets of a round width (``bucket_width``).
A point at or after the window's end (appended while it was read) counts in the last
bucket, so nothing counted by ``collect`` is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import msgspec

from duralog.store import events as ev
from duralog.store.events import LogEntry

from .metrics import OUTCOMES, quantile

#: The widths a bucket may have, in seconds: the smallest that gives at most
#: ``MOST_BUCKETS`` buckets is taken (past the last, a whole number of weeks).
WIDTHS: tuple[float, ...] = (
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    86400.0,
    7 * 86400.0,
)
#: The most buckets a window is cut in.
MOST_BUCKETS = 60

#: What a point counts: a run ended (by outcome), a step completed or failed for good,
#: a retry, an attempt (with its duration).
WHATS = ("completed", "failed", "cancelled", "continued", "step", "step_failed", "retry", "attempt")


class Point(NamedTuple):
    """One thing that happened at ``at``: ``what`` (one of ``WHATS``); ``seconds``: an
    attempt's duration (0 for the others)."""

    at: float
    what: str
    seconds: float = 0.0


class Bucket(msgspec.Struct, kw_only=True):
    """What happened from ``start`` for one bucket width (``Series.width``).

    ``completed``, ``failed``, ``cancelled``, ``continued``: workflow runs that ended
    so; ``steps``: steps that completed; ``steps_failed``: steps failed for good;
    ``retries``: attempts failed and retried; ``attempts``: attempts that ended, whose
    durations ``p50``, ``p95`` and ``p99`` summarize (None: no attempt ended).
    """

    start: float
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    continued: int = 0
    steps: int = 0
    steps_failed: int = 0
    retries: int = 0
    attempts: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class Series(msgspec.Struct, kw_only=True):
    """Buckets of ``width`` seconds from ``start`` to ``end``, oldest first."""

    start: float
    end: float
    width: float
    buckets: list[Bucket]


def bucket_width(span: float) -> float:
    """The smallest of ``WIDTHS`` that cuts ``span`` seconds in at most
    ``MOST_BUCKETS`` buckets (a whole number of weeks past the last)."""
    for width in WIDTHS:
        if span <= width * MOST_BUCKETS:
            return width
    week = WIDTHS[-1]
    return week * math.ceil(span / (week * MOST_BUCKETS))


def points(entries: Sequence[LogEntry], since: float | None = None) -> Iterator[Point]:
    """What one workflow's log counts at or after ``since`` (None: all of it), as
    ``collect`` counts it: an attempt is timed from its ``StepStarted`` to its outcome,
    when that outcome is in the window."""
    attempt_started: dict[int, float] = {}
    for entry in entries:
        event, at = entry.event, entry.at
        inside = since is None or at >= since
        kind = type(event).__name__
        if kind in OUTCOMES:
            if inside:
                yield Point(at, OUTCOMES[kind])
        elif isinstance(event, ev.StepStarted):
            attempt_started[event.step_seq] = at
        elif isinstance(event, ev.StepCompleted | ev.StepRetrying | ev.StepFailed):
            began = attempt_started.pop(event.step_seq, None)
            if not inside:
                continue
            if began is not None:
                yield Point(at, "attempt", max(at - began, 0.0))
            if isinstance(event, ev.StepCompleted):
                yield Point(at, "step")
            elif isinstance(event, ev.StepFailed):
                yield Point(at, "step_failed")
            else:
                yield Point(at, "retry")


def series(
    found: Iterable[Point], start: float | None, end: float, width: float | None = None
) -> Series:
    """``found`` in buckets of ``width`` (default: ``bucket_width`` of the window) from
    ``start`` (None: the earliest point, else ``end``) to ``end``. Points before
    ``start`` are left out; points at or after ``end`` count in the last bucket."""
    kept = list(found)
    if start is None:
        start = min((p.at for p in kept), default=end)
    span = max(end - start, 0.0)
    width = width if width is not None and width > 0 else bucket_width(span)
    count = max(1, math.ceil(span / width))
    buckets = [Bucket(start=start + i * width) for i in range(count)]
    durations: list[list[float]] = [[] for _ in range(count)]
    for point in kept:
        if point.at < start:
            continue
        i = min(int((point.at - start) // width), count - 1)
        bucket = buckets[i]
        if point.what == "attempt":
            bucket.attempts += 1
            durations[i].append(point.seconds)
        elif point.what == "step":
            bucket.steps += 1
        elif point.what == "step_failed":
            bucket.steps_failed += 1
        elif point.what == "retry":
            bucket.retries += 1
        else:  # a run ended
            setattr(bucket, point.what, getattr(bucket, point.what) + 1)
    for bucket, values in zip(buckets, durations, strict=True):
        if values:
            values.sort()
            bucket.p50 = quantile(values, 0.50)
            bucket.p95 = quantile(values, 0.95)
            bucket.p99 = quantile(values, 0.99)
    return Series(start=start, end=end, width=width, buckets=buckets)
