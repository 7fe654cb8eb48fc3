"""The deterministic event loop workflow code runs on.

It is an ``asyncio.AbstractEventLoop`` with no I/O and no clock of its own:

* ``time()`` is workflow time: the recorded timestamp of the input being handled;
* ``call_soon`` queues callbacks in FIFO order, and ``run_until_idle`` runs them
  until nothing is ready, so tasks always interleave the same way;
* ``call_at``/``call_later`` become durable timers: the owner (the workflow
  instance) records a ``TimerStarted`` decision and fires the handle when the
  matching ``TimerFired`` input arrives;
* anything that would touch the outside world (sockets, subprocesses, threads,
  executors, signals) raises ``WorkflowSandboxError`` with what to do instead.

So ``asyncio.sleep``, ``asyncio.gather``, ``asyncio.wait_for``, ``asyncio.Event``
and ``asyncio.Lock`` work inside workflows, and replay the same way every time.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import math
from asyncio import format_helpers
from collections.abc import Callable
from typing import Any, Protocol

from duralog.errors import WorkflowSandboxError


class TimerOwner(Protocol):
    """Who turns the loop's timers into durable ones."""

    def timer_started(self, handle: asyncio.TimerHandle) -> None: ...

    def timer_cancelled(self, handle: asyncio.TimerHandle) -> None: ...


class WorkflowLoop(asyncio.AbstractEventLoop):
    """A single-threaded, clockless loop driven by its owner one activation at a time."""

    def __init__(self, owner: TimerOwner) -> None:
        self._owner = owner
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._time = 0.0
        self._closed = False
        self._exception_handler: Any = None
        self.unhandled: list[dict[str, Any]] = []
        #: Callbacks run so far: a watchdog that sees it stand still sees one callback
        #: (a stretch of workflow code between two awaits) that is running long.
        self.turns = 0

    # -- what the owner drives ---------------------------------------------

    def set_time(self, now: float) -> None:
        """Set workflow time for the next activation (never moves backwards)."""
        self._time = max(self._time, now)

    def run_until_idle(self) -> None:
        """Run ready callbacks until none is left; callbacks may queue more."""
        ready = self._ready
        while ready:
            handle = ready.popleft()
            if not handle._cancelled:
                self.turns += 1
                try:  # handle._run(), inlined: every step of every run passes here
                    handle._context.run(handle._callback, *handle._args)  # type: ignore[attr-defined]
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self.call_exception_handler(_callback_failed(handle, exc))

    # -- scheduling --------------------------------------------------------

    def time(self) -> float:
        return self._time

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        raise WorkflowSandboxError(
            "workflow code cannot be reached from other threads; use a step for threaded work"
        )

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self._time + max(delay, 0.0), callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if not math.isfinite(when):
            raise WorkflowSandboxError(
                "a durable timer needs a finite delay; to wait until something happens, "
                "wait for a signal (duralog.wait_signal) without a timeout"
            )
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        self._owner.timer_started(handle)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._owner.timer_cancelled(handle)

    def fire(self, handle: asyncio.TimerHandle) -> None:
        """Queue a timer's callback (its ``TimerFired`` input arrived)."""
        if not handle.cancelled():
            self._ready.append(handle)

    # -- futures and tasks -------------------------------------------------

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Any,
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=self, name=name, context=context)

    # -- state -------------------------------------------------------------

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()

    # Asked by every future and handle made on the loop: a C callable answering False
    # costs no Python call (``def get_debug(self): return False`` would cost one each).
    get_debug = False.__bool__

    def set_debug(self, enabled: bool) -> None:
        return None

    def get_exception_handler(self) -> Any:
        return self._exception_handler

    def set_exception_handler(self, handler: Any) -> None:
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.unhandled.append(context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # An exception nobody retrieved (a forgotten task): keep it, never print
        # from inside a replay; the instance reports it if the workflow fails.
        self.unhandled.append(context)

    def get_task_factory(self) -> None:
        return None

    def set_task_factory(self, factory: Any) -> None:
        raise WorkflowSandboxError("workflow code cannot change the task factory")

    async def shutdown_asyncgens(self) -> None:
        return None

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        return None

    # -- everything that touches the outside world is refused --------------

    def _refuse(self, what: str) -> Any:
        raise WorkflowSandboxError(
            f"workflow code cannot {what}: workflows must be deterministic. "
            "Do it in a step (@duralog.step) and await the step from the workflow"
        )

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> Any:  # type: ignore[override]
        return self._refuse("run functions in an executor")

    def set_default_executor(self, executor: Any) -> None:
        self._refuse("set an executor")

    def run_forever(self) -> None:
        self._refuse("run the event loop")

    def run_until_complete(self, future: Any) -> Any:
        return self._refuse("run the event loop")

    def stop(self) -> None:
        self._refuse("stop the event loop")

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("resolve host names")

    async def getnameinfo(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("resolve host names")

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("open network connections")

    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("start servers")

    async def create_datagram_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("open network connections")

    async def create_unix_connection(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("open network connections")

    async def create_unix_server(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("start servers")

    async def connect_accepted_socket(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def sendfile(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("send files")

    async def start_tls(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def connect_read_pipe(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use pipes")

    async def connect_write_pipe(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use pipes")

    async def subprocess_shell(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("start subprocesses")

    async def subprocess_exec(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("start subprocesses")

    def add_reader(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self._refuse("watch file descriptors")

    def remove_reader(self, *args: Any, **kwargs: Any) -> bool:
        return bool(self._refuse("watch file descriptors"))

    def add_writer(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self._refuse("watch file descriptors")

    def remove_writer(self, *args: Any, **kwargs: Any) -> bool:
        return bool(self._refuse("watch file descriptors"))

    async def sock_recv(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def sock_recv_into(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def sock_recvfrom(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def sock_recvfrom_into(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def sock_sendall(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def sock_sendto(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def sock_connect(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def sock_accept(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    async def sock_sendfile(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("use sockets")

    def add_signal_handler(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self._refuse("install signal handlers")

    def remove_signal_handler(self, sig: int) -> bool:
        return bool(self._refuse("install signal handlers"))


def _callback_failed(handle: Any, exc: BaseException) -> dict[str, Any]:
    """What ``asyncio.Handle._run`` hands the exception handler when a callback raises."""
    source = format_helpers._format_callback_source(handle._callback, handle._args)
    context: dict[str, Any] = {
        "message": f"Exception in callback {source}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    return context
