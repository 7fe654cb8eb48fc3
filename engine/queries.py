"""Answering a query from outside: read the workflow's log, replay it here, ask.

A query needs no worker and leaves no trace: the asking process reads the log in
one statement (a consistent prefix of whole commits, whatever a worker appends
meanwhile), replays the workflow's code against it (``replay.checker.query_history``)
and calls the handler the code registered. Nothing is written.

The replay runs on a daemon thread, so that a handler that never returns cannot
hang the asker: past the timeout the asker gets ``QueryTimeout``, and the thread is
interrupted by an exception raised in it (CPython's ``PyThreadState_SetAsyncExc``,
which stops a loop of Python code at its next bytecode; a call blocked in C code
returns first). Until it stops, the thread holds no lock and writes nothing: it only
reads the log it was handed, and as a daemon it never keeps the process alive.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import sys
import sysconfig
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import msgspec

from duralog.errors import (
    ConfigurationError,
    PayloadError,
    QueryTimeout,
    RegistrationError,
    WorkflowNotFound,
)
from duralog.replay.checker import query_history
from duralog.replay.definitions import Workflow
from duralog.replay.queries import call_read_only
from duralog.store import codec
from duralog.store.base import EventStore
from duralog.store.envelope import PayloadCodec


def ask(
    store: EventStore,
    payload_codec: PayloadCodec | None,
    workflow_id: str,
    definition: Workflow[Any, Any] | None,
    name: str,
    args: tuple[Any, ...],
    result_type: Any = Any,
    timeout: float | None = None,
) -> Any:
    """Query ``name`` of workflow ``workflow_id`` with ``args``; its decoded result.
    ``QueryTimeout`` when the replay and the handler take more than ``timeout``
    seconds (None: no limit)."""
    if timeout is not None and not timeout >= 0:
        raise ConfigurationError(
            f"a query's timeout must be a number of seconds (0 or more), not {timeout!r}"
        )
    record = store.get_workflow(workflow_id)
    if record is None:
        raise WorkflowNotFound(workflow_id)
    if definition is None or definition.name != record.name:
        raise RegistrationError(
            f"cannot query workflow {workflow_id!r}: the code of workflow {record.name!r} is "
            "not registered in this process, and a query replays it; import the module that "
            "defines it (CLI: --app MODULE)"
        )
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a query name must be a non-empty string, not {name!r}")
    try:
        encoded, _ = codec.encode_call(args, {})
    except PayloadError as exc:
        raise PayloadError(
            f"cannot send query {name!r} to workflow {workflow_id!r}: {exc}"
        ) from None
    entries = store.read_events(workflow_id)  # one read: a consistent snapshot
    if not entries:  # deleted since the record was read
        raise WorkflowNotFound(workflow_id)

    def replayed() -> msgspec.Raw:
        return query_history(definition, entries, name, encoded, workflow_id, payload_codec)

    found = replayed() if timeout is None else _within(timeout, workflow_id, name, replayed)
    return codec.decode(found, result_type)


class _Abandoned(BaseException):
    """Raised inside a query's thread once its asker gave up: a ``BaseException``, so
    that neither the handler's ``except Exception`` nor duralog's own catch it."""


def _within(
    timeout: float, workflow_id: str, name: str, answer: Callable[[], msgspec.Raw]
) -> msgspec.Raw:
    """``answer()``, run on a daemon thread; ``QueryTimeout`` when it has not returned
    after ``timeout`` seconds, and the thread told to stop.

    The thread stops at the next line of the workflow's own code it runs outside an
    asyncio task (the query handler's, or what it calls): a trace function raises
    ``_Abandoned`` there, and only there. Interrupted anywhere else (inside Python's or
    duralog's code, which may hold a lock, a logging handler's say) it could leave
    that lock taken for good. A handler blocked in a C call (``time.sleep``, a socket)
    stops when the call returns; until then its thread lives on, as a daemon."""
    outcome: list[tuple[msgspec.Raw | None, BaseException | None]] = []
    settled = threading.Lock()  # held while the outcome is set, or the asker gives up
    stop = [False]
    own = _own_code()

    def line(frame: FrameType, event: str, arg: Any) -> Any:
        if stop[0] and _may_stop(frame):
            raise _Abandoned
        return line

    def call(frame: FrameType, event: str, arg: Any) -> Any:
        if event != "call" or not own.contains(frame.f_code.co_filename):
            return None  # library code runs untraced, and is never interrupted
        if stop[0] and _may_stop(frame):
            raise _Abandoned
        return line

    def run() -> None:
        sys.settrace(call)
        try:
            try:
                result: tuple[msgspec.Raw | None, BaseException | None] = (answer(), None)
            except _Abandoned:
                raise
            except BaseException as exc:  # raised again in the asking thread
                result = (None, exc)
            with settled:
                outcome.append(result)
        except _Abandoned:
            pass  # the asker has gone: nothing to tell
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=run, name=f"duralog query {name}", daemon=True)
    thread.start()
    thread.join(min(timeout, threading.TIMEOUT_MAX))
    with settled:
        if not outcome:
            stop[0] = True
            raise QueryTimeout(workflow_id, name, timeout)
    value, error = outcome[0]
    if error is not None:
        raise error
    assert value is not None
    return value


#: The call that runs a query handler: the stop is raised only below it.
_HANDLER_CALL = call_read_only.__code__

#: Code that can be resumed (coroutines, generators): closed by the collector or run
#: by a task, what it raises may be kept or dropped rather than unwind the thread.
_RESUMABLE = inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


def _may_stop(frame: FrameType) -> bool:
    """Whether raising ``_Abandoned`` in ``frame`` unwinds the query's thread: a plain
    function called, outside any asyncio task, by the handler's call. Python drops a
    trace function that raised, so a raise that something else swallows (a task
    keeping it as its outcome, a coroutine closed by the collector) would leave the
    handler running, untraced, for good."""
    if frame.f_code.co_flags & _RESUMABLE:
        return False
    try:
        if asyncio.current_task() is not None:
            return False
    except RuntimeError:  # no running loop
        pass
    caller = frame.f_back
    while caller is not None:
        if caller.f_code is _HANDLER_CALL:
            return True
        caller = caller.f_back
    return False


@functools.cache
def _own_code() -> _OwnCode:
    """One for the process: where the standard library, the installed packages and
    duralog live does not change, and each file is judged once."""
    return _OwnCode()


class _OwnCode:
    """Which source files are the workflow's own code: not the standard library's, not
    an installed package's, not duralog's (wherever it is installed)."""

    def __init__(self) -> None:
        paths = sysconfig.get_paths()
        roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
        for module_name, module in list(sys.modules.items()):
            if module_name == "duralog" or module_name.startswith("duralog."):
                file = getattr(module, "__file__", None)
                if file:
                    roots.add(os.path.dirname(file))
        self._roots = tuple(os.path.join(os.path.abspath(root), "") for root in roots)
        self._known: dict[str, bool] = {}

    def contains(self, filename: str) -> bool:
        """Whether code from ``filename`` is the workflow's own."""
        known = self._known.get(filename)
        if known is None:
            known = self._known[filename] = not filename.startswith("<") and not (
                os.path.abspath(filename).startswith(self._roots)
            )
        return known
