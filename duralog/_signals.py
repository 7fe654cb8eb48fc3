"""Waiting in the main thread until SIGINT or SIGTERM asks a long-running command to stop.

A Python signal handler runs in the main thread between two bytecodes, wherever
that thread is, including inside ``threading.Event.wait`` while it holds the
event's internal lock. A handler that calls ``Event.set()`` then waits for that
lock, held by its own thread, forever: the process ignores every later SIGTERM
and has to be killed. (This is how ``duralog worker`` could hang on shutdown,
rarely: only when the signal landed in that window.) The handler here takes no
lock; it only appends to a list, and the waiting thread looks at it between naps.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable

#: How often a waiting thread looks for a received signal (seconds): the stop latency.
NAP = 0.05


class StopSignals:
    """Installs handlers for ``signums`` (default SIGINT and SIGTERM) that only record
    the signal; ``wait`` returns once one came.

    Example:
        stop = StopSignals()
        while not stop.wait(1.0):
            do_periodic_work()
    """

    def __init__(self, signums: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.received: list[int] = []
        for signum in signums:
            signal.signal(signum, self._record)

    def _record(self, signum: int, _frame: object) -> None:
        self.received.append(signum)  # atomic, and no lock: see the module docstring

    def __bool__(self) -> bool:
        return bool(self.received)

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, less if a signal comes; True if one came."""
        deadline = time.monotonic() + timeout
        while not self.received:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(NAP, left))
        return True
