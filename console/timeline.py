"""A history laid out as a timeline: one lane per step (a bar per attempt, the gaps
between them the retry delays), and lanes for timers, children, signals, published
events and the end. Pure: events in, shapes with coordinates out; the template
draws them as SVG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from duralog import _format
from duralog.store import events as ev
from duralog.store.events import LogEntry

#: The drawing's size: the width of the time axis, a lane's height, the label column.
WIDTH = 900
LANE = 20
LABELS = 180


class Shape(NamedTuple):
    """A bar (``width`` > 0) or a point (``width`` 0) on ``lane``.

    ``kind`` is its CSS class (``attempt``, ``retried``, ``failed``, ``timer``,
    ``child``, ``signal``, ``published``, ``end``...); ``title`` the line shown on
    hover; ``seqs`` the events it stands for (a click shows them decoded).
    """

    lane: int
    x: float
    width: float
    kind: str
    title: str
    seqs: str
    seq: int


class Timeline(NamedTuple):
    """The lanes' labels (top to bottom), the shapes, and the time span drawn."""

    lanes: list[str]
    shapes: list[Shape]
    start: float
    end: float

    @property
    def height(self) -> int:
        """The drawing's height in pixels."""
        return LANE * (len(self.lanes) + 1)


def layout(entries: Sequence[LogEntry], now: float) -> Timeline:
    """Lay ``entries`` (one workflow's history, decoded) out; an attempt or timer still
    open ends at ``now``."""
    if not entries:
        return Timeline([], [], now, now)
    start = entries[0].at
    last = entries[-1]
    ended = isinstance(last.event, ev.TERMINAL)
    end = max(last.at if ended else max(now, last.at), start + 1e-3)
    scale = WIDTH / (end - start)

    def x(at: float) -> float:
        return round((at - start) * scale, 2)

    lanes: list[str] = []
    lane_of: dict[str, int] = {}

    def lane(label: str) -> int:
        if label not in lane_of:
            lane_of[label] = len(lanes)
            lanes.append(label)
        return lane_of[label]

    shapes: list[Shape] = []
    steps: dict[int, str] = {}
    opened: dict[tuple[str, int], LogEntry] = {}  # ("step", seq) / ("timer", seq) / ...
    for entry in entries:
        e = entry.event
        match e:
            case ev.StepScheduled(name=name):
                steps[entry.seq] = name
                lane(f"{entry.seq} {name}")
            case ev.StepStarted(step_seq=s):
                opened[("step", s)] = entry
            case (
                ev.StepRetrying(step_seq=s)
                | ev.StepCompleted(step_seq=s)
                | ev.StepFailed(step_seq=s)
            ):
                began = opened.pop(("step", s), entry)
                kind = {"StepRetrying": "retried", "StepCompleted": "attempt"}.get(
                    entry.kind, "failed"
                )
                row = lane(f"{s} {steps.get(s, '?')}")
                shapes.append(_bar(row, x, began, entry, kind, steps, timed=True))
            case ev.TimerStarted():
                opened[("timer", entry.seq)] = entry
            case ev.TimerFired(timer_seq=t):
                began = opened.pop(("timer", t), entry)
                shapes.append(_bar(lane("timers"), x, began, entry, "timer", steps))
            case ev.ChildStarted(child_id=child_id):
                opened[("child", entry.seq)] = entry
                lane(f"child {child_id}")
            case ev.ChildCompleted(child_seq=c) | ev.ChildFailed(child_seq=c):
                began = opened.pop(("child", c), entry)
                child = getattr(began.event, "child_id", str(c))
                kind = "child" if entry.kind == "ChildCompleted" else "failed"
                shapes.append(_bar(lane(f"child {child}"), x, began, entry, kind, steps))
            case ev.SignalReceived():
                shapes.append(_point(lane("signals"), x, entry, "signal", steps))
            case ev.StatePublished():
                shapes.append(_point(lane("published"), x, entry, "published", steps))
            case ev.CancelRequested() | ev.PauseRequested() | ev.ResumeRequested():
                shapes.append(_point(lane("requests"), x, entry, "request", steps))
            case _ if isinstance(e, ev.TERMINAL):
                kind = "end" if entry.kind == "WorkflowCompleted" else "end-failed"
                shapes.append(_point(lane("end"), x, entry, kind, steps))
            case _:
                pass
    for (what, seq), began in opened.items():  # still running: drawn up to now
        label = (
            f"{seq} {steps.get(seq, '?')}"
            if what == "step"
            else ("timers" if what == "timer" else f"child {getattr(began.event, 'child_id', '')}")
        )
        title = f"#{began.seq} {began.kind}: {_format.describe(began, steps)} (open)"
        width = max(round(x(end) - x(began.at), 2), 1.0)
        shapes.append(
            Shape(lane(label), x(began.at), width, "open", title, _details(began), began.seq)
        )
    return Timeline(lanes, shapes, start, end)


def _details(*entries: LogEntry) -> str:
    return " ".join(str(e.seq) for e in entries)


def _bar(
    lane: int,
    x: Callable[[float], float],
    began: LogEntry,
    entry: LogEntry,
    kind: str,
    steps: dict[int, str],
    timed: bool = False,
) -> Shape:
    left, right = x(began.at), x(entry.at)
    title = f"#{began.seq}-#{entry.seq} {entry.kind}: {_format.describe(entry, steps)}"
    if timed:
        title += f" ({(entry.at - began.at) * 1000:.1f} ms)"
    width = max(round(right - left, 2), 1.0)
    return Shape(lane, left, width, kind, title, _details(began, entry), entry.seq)


def _point(
    lane: int, x: Callable[[float], float], entry: LogEntry, kind: str, steps: dict[int, str]
) -> Shape:
    title = f"#{entry.seq} {entry.kind}: {_format.describe(entry, steps)}"
    return Shape(lane, x(entry.at), 0.0, kind, title, _details(entry), entry.seq)
