"""How a worker judges, on its own, whether it still holds a workflow's lease.

The store decides who holds a workflow: once a lease has expired there, another
worker may take the workflow over. A worker frozen past its lease (SIGSTOP, a
long GC pause, a suspended VM) cannot know that it happened until it asks. So it
counts for itself: a lease granted or renewed by a call that *began* at moment t
lasts, as far as this worker may assume, until ``t + seconds - margin``, by a clock
that never jumps (``steady``) and by the wall clock as well (a virtual machine
paused by its host may not advance the first). Past that moment the worker asks
the store (a renewal) before it starts anything for the workflow.
"""

from __future__ import annotations

import time
from typing import NamedTuple

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def steady() -> float:
    """Seconds on a clock that never jumps and, where the OS allows (Linux), keeps
    counting while the machine sleeps."""
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()


class Moment(NamedTuple):
    """A moment on both clocks a lease is judged by."""

    steady: float
    wall: float

    @classmethod
    def now(cls) -> Moment:
        """This moment."""
        return cls(steady(), time.time())


class Lease:
    """This worker's hold on one workflow, as the worker can judge it without asking.

    ``margin``: the part of each lease the worker never counts on (by default a
    fifth), which absorbs the time between a check and the start of what it allows.
    """

    __slots__ = ("_steady_until", "_wall_until", "lost", "margin", "seconds")

    def __init__(self, seconds: float, granted: Moment, margin: float | None = None) -> None:
        self.seconds = seconds
        self.margin = seconds / 5 if margin is None else margin
        self.lost = False
        self._steady_until = self._wall_until = 0.0
        self.renewed(granted)

    def __repr__(self) -> str:
        return f"<Lease {'lost' if self.lost else 'held' if self.holds() else 'unsure'}>"

    def renewed(self, at: Moment) -> None:
        """The store granted or extended the lease by a call that began ``at``."""
        span = self.seconds - self.margin
        self._steady_until = max(self._steady_until, at.steady + span)
        self._wall_until = max(self._wall_until, at.wall + span)

    def holds(self) -> bool:
        """Whether the worker may still act for the workflow without asking the store."""
        return not self.lost and steady() < self._steady_until and time.time() < self._wall_until

    def lose(self) -> None:
        """The store says another worker may hold the workflow now."""
        self.lost = True
