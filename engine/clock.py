"""The engine's notion of "now" for workflow time, and how it waits for a moment.

Everything that decides *when* something happens to a workflow (event times,
durable timers, retry delays, workflow deadlines, ``duralog.now()``) asks the
engine's clock. ``SystemClock`` is the wall clock. ``VirtualClock`` is moved by
hand (``duralog.testing``), so a workflow that sleeps for three days is tested
in milliseconds. Leases and heartbeats always use the wall clock: they are about
processes, not workflows.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class Alarm(Protocol):
    """A scheduled callback that can be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Workflow time for an engine."""

    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    def call_at(
        self, loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], Any]
    ) -> Alarm:
        """Run ``callback`` on ``loop`` once the clock reaches ``when``."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()

    def call_at(
        self, loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], Any]
    ) -> Alarm:
        return loop.call_later(max(0.0, when - time.time()), callback)


async def sleep_until(clock: Clock, when: float) -> None:
    """Wait on the current loop until ``clock`` reaches ``when``."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    alarm = clock.call_at(loop, when, wake)
    try:
        await woken
    finally:
        alarm.cancel()


class _VirtualAlarm:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock that only moves when told to (``advance``), for tests.

    Callbacks due by the new time are handed to their loops in time order, with
    the clock set to each one's moment as it fires.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._alarms: list[
            tuple[float, int, asyncio.AbstractEventLoop, Callable[[], Any], _VirtualAlarm]
        ] = []

    def now(self) -> float:
        return self._now

    def call_at(
        self, loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], Any]
    ) -> Alarm:
        alarm = _VirtualAlarm()
        with self._lock:
            heapq.heappush(self._alarms, (when, next(self._order), loop, callback, alarm))
        if when <= self._now:
            self._fire_due()
        return alarm

    def next_alarm(self) -> float | None:
        """When the next pending callback is due, if any."""
        with self._lock:
            while self._alarms and self._alarms[0][4].cancelled:
                heapq.heappop(self._alarms)
            return self._alarms[0][0] if self._alarms else None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing what falls due on the way."""
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self.advance_to(self._now + seconds)

    def advance_to(self, moment: float) -> None:
        """Move time forward to ``moment`` (never back)."""
        self._fire_due(until=max(moment, self._now))

    def _fire_due(self, until: float | None = None) -> None:
        limit = self._now if until is None else until
        while True:
            with self._lock:
                if not self._alarms or self._alarms[0][0] > limit:
                    break
                when, _, loop, callback, alarm = heapq.heappop(self._alarms)
                self._now = max(self._now, when)
            if not alarm.cancelled:
                with contextlib.suppress(RuntimeError):  # that loop is closed
                    loop.call_soon_threadsafe(_unless_cancelled, alarm, callback)
        self._now = max(self._now, limit)


def _unless_cancelled(alarm: _VirtualAlarm, callback: Callable[[], Any]) -> None:
    if not alarm.cancelled:
        callback()
