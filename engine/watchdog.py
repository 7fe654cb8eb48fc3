"""Workflow code that blocks the worker's event loop, caught while it blocks.

Workflow code runs on the worker's event loop, between two awaits, in one step of
its task on the workflow's deterministic loop (``WorkflowLoop.turns`` counts those
steps). Code that runs long without awaiting (a CPU loop, ``time.sleep``, a
synchronous network call) holds up every other workflow of the worker: no step
result is recorded, no timer fires, nothing is claimed, until it returns.

``LoopWatchdog`` is a thread that looks at the activation under way every tenth of
``blocked_threshold`` (Temporal's deadlock detector does the same): when one step of
workflow code has run longer than the threshold, it logs a warning with the
workflow id and the stack of the blocking code (``sys._current_frames()``), and
marks the activation. Python cannot interrupt the running code: the warning comes
while it blocks, and what the activation decided is dropped once it returns; the
``Execution`` then suspends the workflow with the place as the reason.

Steps are not watched: sync ones run on threads, and async and inline ones are the
step's own business (a timeout bounds them). Nor is a replay: it is made of many
short steps, each timed on its own.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback

import msgspec

from duralog.replay.loop import WorkflowLoop

log = logging.getLogger("duralog.engine")

_ASYNCIO = os.path.dirname(os.path.abspath(traceback.__file__)) + os.sep + "asyncio" + os.sep
_LOOP_FILE = os.path.abspath(sys.modules[WorkflowLoop.__module__].__file__ or "")
_REPLAY = os.path.dirname(_LOOP_FILE)


class Blocked(msgspec.Struct):
    """What the watchdog saw of one step of workflow code that ran too long."""

    workflow_id: str
    threshold: float
    since: float  # time.monotonic() when the step began (as the watchdog first saw it)
    stack: list[str]  # "  File ..., line N, in fn\n    code\n", outermost first
    place: str  # "file.py:12 in fn: code" of the innermost frame

    def seconds(self) -> float:
        """How long it has been blocking."""
        return time.monotonic() - self.since

    def reason(self) -> str:
        """Why its workflow is suspended (once the blocking code returned)."""
        return (
            f"its code blocked the worker's event loop for {self.seconds():.1f} s without "
            f"awaiting (blocked_threshold {self.threshold:g} s) at {self.place}; move the "
            "blocking call into a step, deploy, and start a worker to resume it"
        )


class _Watched:
    __slots__ = ("blocked", "loop", "thread", "workflow_id")

    def __init__(self, workflow_id: str, loop: WorkflowLoop, thread: int) -> None:
        self.workflow_id = workflow_id
        self.loop = loop
        self.thread = thread
        self.blocked: Blocked | None = None


class LoopWatchdog:
    """Watches the activations of one worker (see the module docstring)."""

    def __init__(self, threshold: float, worker_id: str) -> None:
        self.threshold = threshold
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._current: _Watched | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="duralog-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching (a daemon thread)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching, and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def enter(self, workflow_id: str, loop: WorkflowLoop) -> _Watched:
        """Workflow ``workflow_id``'s code runs on ``loop`` from now (on the worker loop)."""
        watched = _Watched(workflow_id, loop, threading.get_ident())
        self._current = watched
        return watched

    def leave(self, watched: _Watched) -> Blocked | None:
        """Its code returned; what the watchdog saw of it, if it blocked."""
        with self._lock:  # the watchdog marks an activation only while it is current
            self._current = None
            return watched.blocked

    def _watch(self) -> None:
        interval = min(max(self.threshold / 10, 0.01), 0.25)
        seen: tuple[_Watched, int] | None = None
        since = 0.0
        while not self._stop.wait(interval):
            current = self._current
            if current is None:
                seen = None
                continue
            now = time.monotonic()
            key = (current, current.loop.turns)
            if seen is None or key[0] is not seen[0] or key[1] != seen[1]:
                seen, since = key, now
                continue
            if now - since >= self.threshold and current.blocked is None:
                self._report(current, since)

    def _report(self, current: _Watched, since: float) -> None:
        frame = sys._current_frames().get(current.thread)
        stack = workflow_stack(frame)
        place = _place(stack[-1]) if stack else "?"
        lines = [line for _, line in stack]
        blocked = Blocked(current.workflow_id, self.threshold, since, lines, place)
        with self._lock:
            if self._current is not current:
                return  # it returned meanwhile: nothing to drop
            current.blocked = blocked
        log.warning(
            "workflow %r has run for %.1f s without awaiting (blocked_threshold %g s), "
            "blocking worker %s's event loop: no other workflow of this worker moves until "
            "it returns. Move blocking work (time.sleep, CPU-bound loops, synchronous I/O) "
            "into a step. The blocking code:\n%s",
            current.workflow_id,
            blocked.seconds(),
            self.threshold,
            self.worker_id,
            "".join(blocked.stack).rstrip(),
        )


def workflow_stack(frame: object) -> list[tuple[traceback.FrameSummary, str]]:
    """The frames of workflow code in a stack of the worker's thread, outermost first,
    each with its formatted lines: those inside the workflow loop's current step,
    without asyncio's own."""
    if frame is None:
        return []
    summary = traceback.extract_stack(frame)  # type: ignore[arg-type]
    start = 0
    for i, item in enumerate(summary):
        if item.name == "run_until_idle" and os.path.abspath(item.filename) == _LOOP_FILE:
            start = i + 1
    kept = [
        item for item in summary[start:] if not os.path.abspath(item.filename).startswith(_ASYNCIO)
    ]
    while kept and os.path.dirname(os.path.abspath(kept[0].filename)) == _REPLAY:
        kept.pop(0)  # the instance's task that calls the workflow function
    lines = traceback.StackSummary.from_list(kept).format()
    return list(zip(kept, lines, strict=True))


def _place(innermost: tuple[traceback.FrameSummary, str]) -> str:
    item = innermost[0]
    code = f": {item.line}" if item.line else ""
    return f"{os.path.basename(item.filename)}:{item.lineno} in {item.name}{code}"
