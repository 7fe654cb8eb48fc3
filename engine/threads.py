"""The threads that run sync steps: a lean pool that answers straight to the event loop.

``loop.run_in_executor`` wraps every call in two futures and a chain of
callbacks; for a step that takes microseconds that bookkeeping costs more than
the step. Here a call is one queue item, and its outcome one
``call_soon_threadsafe`` onto the loop. Threads start on demand, up to
``max_threads``, and stay until the pool is closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
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
        #: Calls made and not settled yet (counted on the loop: no lock). A thread
        #: starts while there are more of them than threads.
        self._in_flight = 0
        #: Outcomes not handed to the loop yet, and whether a hand-off is on its way:
        #: calls that end together wake the loop once, not once each. (A deque's
        #: append and popleft are atomic; see ``_answer`` for the flag.)
        self._done: collections.deque[tuple[asyncio.Future[Any], Any, BaseException | None]]
        self._done = collections.deque()
        self._waking = False

    def run(
        self, context: contextvars.Context, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        """Call ``fn(*args, **kwargs)`` in ``context`` on a pool thread (from the loop thread)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._in_flight += 1
        if self._in_flight > len(self._threads) and len(self._threads) < self._max:
            thread = threading.Thread(
                target=self._serve, name=f"duralog-step-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._queue.put((future, context, fn, args, kwargs))
        return future

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self._call(*item)
            # An idle thread holds nothing of the call it made (its context, the
            # step's info and control stay alive no longer than the attempt).
            del item

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
        except StopIteration as exc:  # a future refuses it (it would end a coroutine)
            error = RuntimeError(f"the step raised StopIteration: {exc!r}")
            error.__cause__ = exc
            self._answer(future, None, error)
        except BaseException as exc:  # handed to the awaiting step, whatever it is
            self._answer(future, None, exc)
        else:
            self._answer(future, result, None)

    def _answer(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        # Queue the outcome first, then look at the flag: a thread that finds it set
        # knows the loop has not begun ``_settle_done`` (which clears it before it
        # takes anything), so its outcome is taken too. Two threads that both find it
        # clear both wake the loop: one wake too many, never one too few.
        self._done.append((future, result, error))
        if self._waking:
            return
        self._waking = True
        try:
            self._loop.call_soon_threadsafe(self._settle_done)
        except RuntimeError:  # a closed loop: the engine stopped
            self._waking = False

    def _settle_done(self) -> None:
        self._waking = False
        done = self._done
        while done:
            future, result, error = done.popleft()
            self._in_flight -= 1
            try:
                _settle(future, result, error)
            except Exception as exc:  # one outcome a future refuses keeps no other waiting
                with contextlib.suppress(Exception):
                    future.set_exception(RuntimeError(f"the step's outcome was refused: {exc}"))

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
