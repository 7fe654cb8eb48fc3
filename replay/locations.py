"""Where workflow code is, for divergence reports: ``file:line`` of the user's code.

A divergence names the line of workflow code that made the new call, and a replay
that stops early names the line where the code waits. duralog's own frames (and
asyncio's) are skipped: the user wants their line, not ours.
"""

from __future__ import annotations

import asyncio
import sys
import typing
from typing import Any


def defined_at(fn: Any, name: str) -> str:
    """``file:line`` where ``fn`` is defined (``name`` when it has no code object)."""
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else name


def waiting_at(task: asyncio.Task[Any]) -> str | None:
    """``file:line`` of the innermost user code ``task`` awaits in, or None when
    it waits only in duralog's or asyncio's code."""
    found, awaited = None, typing.cast(Any, task.get_coro())
    # Follow the chain of awaits down to the innermost frame of user code.
    while awaited is not None and getattr(awaited, "cr_frame", None) is not None:
        if not is_internal(awaited.cr_frame):
            found = awaited.cr_frame
        awaited = getattr(awaited, "cr_await", None)
    return location_of(found) if found is not None else None


_LOOP_MODULE = "duralog.replay.loop"  # its run_until_idle runs the loop's callbacks


def caller_location() -> str | None:
    """The user code that made the call, or None when it was duralog's own code
    (a task a DAG or ``map`` created): the walk stops at the event loop, beyond
    which is only whatever drives the loop (the worker, ``duralog replay``)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_name
        if (name == "run_until_idle" and frame.f_globals.get("__name__") == _LOOP_MODULE) or (
            name == "_run" and frame.f_globals.get("__name__") == "asyncio.events"
        ):
            return None
        if not is_internal(frame):
            return location_of(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return None


def is_internal(frame: Any) -> bool:
    """Whether ``frame`` runs duralog's or asyncio's code."""
    module: str = frame.f_globals.get("__name__", "")
    return module.partition(".")[0] in ("duralog", "asyncio")


def location_of(frame: Any) -> str:
    """``file:line`` of ``frame``."""
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
