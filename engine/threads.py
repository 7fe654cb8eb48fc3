"""The threads that run sync steps: a lean pool that answers straight to the event loop.

``loop.run_in_executor`` wraps every call in two futures and a chain of
callbacks; for a step that takes microseconds that bookkeeping costs more than
the step. Here a call is one queue item, and its outcome one
``call_soon_threadsafe`` onto the loop. Threads start on demand, up to
``max_threads``, and stay until the pool is closed.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class StepThreads:
    """Runs blocking calls on worker threads; results come back as asyncio futures."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_threads: int) -> None:
        self._loop = loop
        self._max = max_threads
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call
        self._queued = 0  # calls waiting for a thread
        self._lock = threading.Lock()
        #: Outcomes not handed to the loop yet, and whether a hand-off is on its way:
        #: calls that end together wake the loop once, not once each.
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._waking = False

    def run(
        self, context: contextvars.Context, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        """Call ``fn(*args, **kwargs)`` in ``context`` on a pool thread (from the loop thread)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        with self._lock:
            self._queued += 1
            if self._queued > self._idle and len(self._threads) < self._max:
                thread = threading.Thread(
                    target=self._serve, name=f"duralog-step-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                self._idle += 1
                thread.start()
        self._queue.put((future, context, fn, args, kwargs))
        return future

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            self._call(*item)
            # An idle thread holds nothing of the call it made (its context, the
            # step's info and control stay alive no longer than the attempt).
            del item
            with self._lock:
                self._idle += 1

    def _call(
        self,
        future: asyncio.Future[Any],
        context: contextvars.Context,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        try:
            result = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # handed to the awaiting step, whatever it is
            self._answer(future, None, exc)
        else:
            self._answer(future, result, None)

    def _answer(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        with self._lock:
            self._done.append((future, result, error))
            if self._waking:
                return  # the loop has yet to take the outcomes: it takes this one too
            self._waking = True
        try:
            self._loop.call_soon_threadsafe(self._settle_done)
        except RuntimeError:  # a closed loop: the engine stopped
            with self._lock:
                self._waking = False

    def _settle_done(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            self._waking = False
        for future, result, error in done:
            _settle(future, result, error)

    def close(self) -> None:
        """Let the threads finish their current call and exit (they are daemons)."""
        for _ in self._threads:
            self._queue.put(_STOP)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled by a timeout or a shutdown
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
