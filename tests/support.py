"""Helpers the tests share. ``tests/`` is on ``sys.path`` (pyproject's pytest
``pythonpath``): ``from support import wait_for``.

How tests wait (they must give the same verdict on a slow, busy machine):

* for a state: ``wait_for(condition)``, polling with a generous deadline (a failure
  costs that long, a pass nothing), ``wait_in_log`` for an event in a log, or the
  event itself (``Event.wait``, a line a
  process prints);
* to prove something did *not* happen: a later event that shows the system moved
  past the point where it would have happened (a probe workflow finishing, a
  process exiting), never a pause;
* a helper process (``popen``) is told to act only after it said it is ready
  (``read_line``), and is killed with its process group when the test ends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import IO, Any, TypeVar

import click

T = TypeVar("T")

#: How long a test waits for something it expects before it fails. Generous: a
#: machine three times slower than a developer's laptop, with other work running,
#: must pass; waiting only ever costs this much when the test fails anyway.
PATIENCE = 60.0


def load_app(path: Path, name: str | None = None) -> ModuleType:
    """Import the app module at ``path`` once (tests run with
    ``--import-mode=importlib``: their folders are not on ``sys.path``), so that
    its workflows are registered in this process as in the workers that run it.

    While it loads, its folder is on ``sys.path``, as it is for ``--app`` run from
    that folder: it imports the modules beside it (``shop_steps``) by their names.
    """
    name = name or path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(folder)
    return module


def wait_for(condition: Callable[[], T], timeout: float = PATIENCE, what: str = "") -> T:
    """Poll ``condition`` until it returns something true, and return that; fail the
    test at the deadline, saying what it waited for (``what``, or the condition)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"waited {timeout:g} s for {what or _describe(condition)}; last saw {value!r}"
            )
        time.sleep(0.01)


def wait_in_log(db: str, kind: str, count: int = 1, workflow_id: str | None = None) -> None:
    """Wait until the log of ``workflow_id`` (default: the workflow of the step that
    calls this) in the SQLite file ``db`` holds ``count`` events of ``kind``: a step
    that must not end before a sibling's event is recorded, say."""
    import duralog
    from duralog.store.sqlite import SQLiteStore

    workflow_id = workflow_id or duralog.step_info().workflow_id

    def found() -> bool:
        store = SQLiteStore(db)
        try:
            return sum(e.kind == kind for e in store.read_events(workflow_id)) >= count
        finally:
            store.close()

    wait_for(found, what=f"{count} {kind} in the log of {workflow_id!r}")


def _describe(condition: Callable[[], object]) -> str:
    code = getattr(condition, "__code__", None)
    if code is None:
        return repr(condition)
    return f"the condition at {Path(code.co_filename).name}:{code.co_firstlineno}"


# -- workflows in memory ----------------------------------------------------------

#: The start time of a run in memory: a fixed moment, so runs are reproducible.
T0 = 1_700_000_000.0


def run_in_memory(
    workflow: Any,
    *args: Any,
    workflow_id: str = "in-memory",
    pick: Callable[[int], int] = lambda n: 0,
    start: float = T0,
) -> list[Any]:
    """Run ``workflow`` (a ``Workflow``) with no engine, no store and no thread, and
    return its log (``LogEntry``s): what replay alone makes of the code.

    The log is a list; the instance is fed its fold after every append, as the engine
    feeds it. Each step runs once, in this thread (an async one on its own loop), and
    completes or fails (no retry); ``pick(n)`` chooses which of ``n`` pending steps
    runs next (default the oldest). A timer fires at its time when no step is
    pending. It returns when the run ends, or when it waits on nothing left to come
    (a signal, say). Event times advance one second per step.
    """
    import asyncio

    from duralog.replay.failures import details_of
    from duralog.replay.instance import WorkflowInstance
    from duralog.replay.state import fold_all
    from duralog.store import codec
    from duralog.store import events as ev

    encoded_args, encoded_kwargs = codec.encode_call(args, {})
    log = [ev.started_entry(start, name=workflow.name, args=encoded_args, kwargs=encoded_kwargs)]
    now = start
    instance = WorkflowInstance(workflow, workflow_id)

    def append(event: ev.Event) -> None:
        log.append(ev.LogEntry(len(log) + 1, now, event))

    while True:
        for seq, event in instance.feed(fold_all(workflow_id, log), len(log) + 1):
            assert seq == len(log) + 1, "a decision out of seq order"
            append(event)
        if instance.finished:
            return log
        state = fold_all(workflow_id, log)
        pending = state.pending_steps()
        timers = state.pending_timers()
        if pending:
            view = pending[pick(len(pending)) % len(pending)]
            step = instance.step_of(view.seq)
            assert step is not None, f"no step waits on seq {view.seq}"
            now += 1.0
            append(ev.StepStarted(step_seq=view.seq, attempt=1))
            call_args, call_kwargs = step.decode_args(view.args, view.kwargs)
            try:
                result = step.fn(*call_args, **call_kwargs)
                if step.is_async:
                    result = asyncio.run(result)
            except Exception as exc:
                append(ev.StepFailed(step_seq=view.seq, attempt=1, error=details_of(exc, False)))
            else:
                append(ev.StepCompleted(step_seq=view.seq, result=codec.encode(result)))
        elif timers:
            timer = min(timers, key=lambda t: (t.fire_at, t.seq))
            now = max(now, timer.fire_at)
            append(ev.TimerFired(timer_seq=timer.seq))
        else:
            return log


# -- helper processes -----------------------------------------------------------

_spawned: list[subprocess.Popen[Any]] = []


def popen(args: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(args, **options)`` in a process group of its own, which
    ``kill_spawned`` (run after every test by tests/conftest.py) kills: no helper
    process outlives its test, however the test ends."""
    process: subprocess.Popen[Any] = subprocess.Popen(args, start_new_session=True, **options)
    _spawned.append(process)
    return process


def kill_spawned() -> list[str]:
    """SIGKILL every process group ``popen`` started, reap them, close their pipes;
    return the command lines of those that were still running."""
    running = []
    while _spawned:
        process = _spawned.pop()
        if process.poll() is None:
            running.append(" ".join(str(a) for a in process.args))  # type: ignore[union-attr]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its children too
        with contextlib.suppress(ProcessLookupError):
            process.kill()  # (if it left its group)
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    return running


def read_line(stream: IO[str] | None, timeout: float = PATIENCE) -> str:
    """The next line a helper process writes to ``stream`` (a pipe), stripped; fail
    the test if none comes before the deadline, or if the process closed it."""
    assert stream is not None, "the process was started without stdout=PIPE"
    lines: list[str] = []

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):  # closed when the process was killed
            lines.append(stream.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()  # (it ends when the line comes or the process is killed)
    reader.join(timeout)
    assert lines, f"no line from the process within {timeout:g} s"
    assert lines[0], "the process closed its output before the line came (did it exit?)"
    return lines[0].strip()


def peak(intervals: Sequence[tuple[float, float]]) -> int:
    """The most of ``(start, end)`` intervals open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def race_close(
    call: Callable[[], object], close: Callable[[], None], threads: int = 3
) -> list[BaseException]:
    """Run ``call`` over and over in ``threads`` threads, run ``close()`` while they
    do, and return the exception that stopped each of them (a thread that never
    stops fails the test)."""
    started = threading.Event()
    stopped: list[BaseException] = []

    def repeat() -> None:
        while True:
            try:
                call()
            except BaseException as exc:
                stopped.append(exc)
                return
            started.set()

    workers = [threading.Thread(target=repeat, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    assert started.wait(timeout=20), "no call succeeded before close()"
    close()
    for worker in workers:
        worker.join(timeout=20)
        assert not worker.is_alive(), "a call went on after close()"
    return stopped


def commands_of(group: click.Group) -> dict[str, click.Command]:
    """Every command of ``group`` by name (``duralog``'s own load when first asked for)."""
    ctx = click.Context(group)
    found = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}
