"""The charts of ``/stats``: a ``Series`` (``observe/series.py``) laid out as bars and
lines with coordinates, which the template draws as SVG (no script, no library).

Pure: buckets in, shapes out. Each chart has a fixed size, a y axis from 0 to a
round maximum, a few time labels under it, and a legend; every bar and point has a
``title`` (shown on hover) with its bucket's time and value.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import NamedTuple

from duralog.observe.series import Bucket, Series

#: A chart's plot area in pixels, and the room left of it for the y labels.
WIDTH = 720
HEIGHT = 140
LEFT = 56
BOTTOM = 18
#: The y of the x axis.
BOTTOM_Y = HEIGHT + 4


class Bar(NamedTuple):
    """One rectangle (its CSS class ``kind``) and its hover text."""

    x: float
    y: float
    width: float
    height: float
    kind: str
    title: str


class Line(NamedTuple):
    """One series drawn as a line: SVG ``points`` for each run of buckets that have a
    value, and a dot (x, y, title) per value."""

    kind: str
    name: str
    runs: list[str]
    dots: list[tuple[float, float, str]]


class Chart(NamedTuple):
    """One chart: ``id`` (the element's), its title, y ticks (y, label), x ticks (x,
    label), legend (kind, name), and its bars or lines."""

    id: str
    title: str
    yticks: list[tuple[float, str]]
    xticks: list[tuple[float, str]]
    legend: list[tuple[str, str]]
    bars: list[Bar]
    lines: list[Line]

    @property
    def width(self) -> int:
        """The drawing's width in pixels."""
        return LEFT + WIDTH + 8

    @property
    def height(self) -> int:
        """The drawing's height in pixels."""
        return HEIGHT + BOTTOM + 8


#: (field of ``Bucket``, CSS class, name) of each chart's series.
THROUGHPUT = (
    ("completed", "completed", "completed"),
    ("failed", "failed", "failed"),
    ("cancelled", "cancelled", "cancelled"),
    ("continued", "continued", "continued as new"),
)
STEPS = (("steps", "steps", "steps completed"),)
LATENCY = (("p50", "p50", "p50"), ("p95", "p95", "p95"), ("p99", "p99", "p99"))
FAILURES = (
    ("steps_failed", "failed", "steps failed for good"),
    ("retries", "retries", "retries"),
    ("failed", "wf-failed", "workflows failed"),
)


def charts(made: Series) -> list[Chart]:
    """The charts of ``/stats``: workflows ended by outcome (stacked), steps
    completed, step attempt latency (p50, p95, p99) and failures and retries."""
    return [
        _bars("throughput", "workflows ended per bucket", made, THROUGHPUT, stacked=True),
        _bars("steps", "steps completed per bucket", made, STEPS, stacked=True),
        _lines("latency", "step attempt latency", made, LATENCY),
        _bars("failures", "failures and retries per bucket", made, FAILURES, stacked=False),
    ]


def _x(made: Series, i: int) -> float:
    return LEFT + WIDTH * i / len(made.buckets)


def _when(at: float, width: float) -> str:
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    if width >= 86400:
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%m-%d %H:%M" if width >= 60 else "%H:%M:%S")


def _span(bucket: Bucket, width: float) -> str:
    return f"{_when(bucket.start, width)} (+{seconds(width)})"


def seconds(value: float) -> str:
    """A duration as people read it: 250 ms, 1.5 s, 5 min, 3 h, 7 d."""
    if value >= 86400:
        return f"{value / 86400:g} d"
    if value >= 3600:
        return f"{value / 3600:g} h"
    if value >= 60:
        return f"{value / 60:g} min"
    if value >= 1:
        return f"{value:.3g} s"
    return f"{value * 1000:.3g} ms"


def _round_up(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten at least ``value`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def _axes(
    made: Series, top: float, durations: bool
) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    ticks = []
    for k in range(5):
        value = top * k / 4
        label = seconds(value) if durations else f"{value:g}"
        ticks.append((BOTTOM_Y - HEIGHT * k / 4, "0" if value == 0 else label))
    count = len(made.buckets)
    every = max(1, math.ceil(count / 6))
    xticks = [
        (_x(made, i), _when(made.buckets[i].start, made.width)) for i in range(0, count, every)
    ]
    return ticks, xticks


def _bars(
    chart_id: str,
    title: str,
    made: Series,
    fields: Sequence[tuple[str, str, str]],
    *,
    stacked: bool,
) -> Chart:
    values = [[float(getattr(b, f) or 0) for f, _, _ in fields] for b in made.buckets]
    highest = max((sum(v) if stacked else max(v, default=0.0) for v in values), default=0.0)
    top = _round_up(highest) if highest > 0 else 1.0
    slot = WIDTH / len(made.buckets)
    bars = []
    for i, (bucket, row) in enumerate(zip(made.buckets, values, strict=True)):
        base: float = BOTTOM_Y
        thin = max(slot * 0.8 / (1 if stacked else len(fields)), 0.5)
        for j, ((_, kind, name), value) in enumerate(zip(fields, row, strict=True)):
            if not value:
                continue
            height = HEIGHT * value / top
            x = _x(made, i) + slot * 0.1 + (0 if stacked else j * thin)
            top_y = base - height
            label = f"{_span(bucket, made.width)}: {value:g} {name}"
            bars.append(Bar(x, top_y, thin, height, kind, label))
            if stacked:
                base = top_y
    yticks, xticks = _axes(made, top, durations=False)
    legend = [(kind, name) for _, kind, name in fields]
    return Chart(chart_id, title, yticks, xticks, legend, bars, [])


def _lines(
    chart_id: str, title: str, made: Series, fields: Sequence[tuple[str, str, str]]
) -> Chart:
    highest = max((getattr(b, f) or 0.0 for b in made.buckets for f, _, _ in fields), default=0.0)
    top = _round_up(highest) if highest > 0 else 1.0
    slot = WIDTH / len(made.buckets)
    lines = []
    for field, kind, name in fields:
        runs: list[str] = []
        dots: list[tuple[float, float, str]] = []
        run: list[str] = []
        for i, bucket in enumerate(made.buckets):
            value = getattr(bucket, field)
            if value is None:
                if run:
                    runs.append(" ".join(run))
                run = []
                continue
            x, y = _x(made, i) + slot / 2, BOTTOM_Y - HEIGHT * value / top
            run.append(f"{x:.1f},{y:.1f}")
            label = f"{_span(bucket, made.width)}: {name} {seconds(value)}"
            dots.append((x, y, f"{label} ({bucket.attempts} attempts)"))
        if run:
            runs.append(" ".join(run))
        lines.append(Line(kind, name, runs, dots))
    yticks, xticks = _axes(made, top, durations=True)
    legend = [(kind, name) for _, kind, name in fields]
    return Chart(chart_id, title, yticks, xticks, legend, [], lines)
