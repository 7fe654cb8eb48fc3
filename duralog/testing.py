"""A test kit for workflows: an engine with a virtual clock, history helpers, golden replays.

    from duralog.testing import WorkflowEnvironment

    def test_escalates_after_two_days() -> None:
        with WorkflowEnvironment() as env:
            handle = env.engine.start(expense, "exp-1", 500)
            assert env.result(handle) == "exp-1 escalated"    # two days pass in milliseconds

Time in the environment only moves when asked: ``env.advance(days=3)`` moves it
by hand, and ``env.result(handle)`` jumps it to the next timer whenever every
workflow of the engine is idle (waiting on a timer), until the result is in.
Everything else is the real engine on a real SQLite log (a temporary file).

With pytest, the ``workflow_env`` fixture gives one environment per test (the
plugin is registered for pytest on install). Golden histories are checked with
``replay_histories(folder, workflows)``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from duralog._engine import Engine
from duralog.engine.clock import VirtualClock
from duralog.engine.handle import WorkflowHandle
from duralog.errors import ResultTimeout
from duralog.replay.checker import ReplayReport, Workflows, check
from duralog.replay.history import load_history
from duralog.store.envelope import PayloadCodec
from duralog.store.events import StepScheduled

R = TypeVar("R")

__all__ = [
    "WorkflowEnvironment",
    "history_kinds",
    "replay_histories",
    "step_names",
    "workflow_env",
]


class WorkflowEnvironment:
    """An engine on a temporary log whose clock moves only when told.

    Args:
        start: the virtual time to begin at (default: now).
        **engine_options: passed to ``Engine`` (``registry=``, ``payload_codec=``,
            ``snapshot_every=``...): each environment's engine has its own.
    """

    def __init__(self, start: dt.datetime | None = None, **engine_options: Any) -> None:
        self.clock = VirtualClock(start.timestamp() if start is not None else None)
        self._folder = Path(tempfile.mkdtemp(prefix="duralog-test-"))
        options: dict[str, Any] = {"durability": "normal", "poll_interval": 0.05}
        options.update(engine_options)
        self.engine = Engine(str(self._folder / "test.db"), clock=self.clock, **options)

    def __enter__(self) -> WorkflowEnvironment:
        self.engine.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the engine and delete the temporary log."""
        self.engine.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def now(self) -> dt.datetime:
        """The virtual time."""
        return dt.datetime.fromtimestamp(self.clock.now(), dt.UTC)

    def advance(
        self, seconds: float = 0, *, minutes: float = 0, hours: float = 0, days: float = 0
    ) -> None:
        """Move the virtual clock forward; timers that fall due on the way fire."""
        self.clock.advance(seconds + 60 * minutes + 3600 * hours + 86400 * days)

    def result(self, handle: WorkflowHandle[R], timeout: float = 10.0) -> R:
        """Wait for ``handle``'s result, skipping virtual time whenever the engine idles.

        ``timeout`` is in real seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return handle.result(timeout=0.02)
            except ResultTimeout:
                pass
            if time.monotonic() > deadline:
                raise ResultTimeout(handle.id, timeout, handle.status().value)
            due = self.clock.next_alarm()
            if due is not None and self._idle():
                self.clock.advance_to(due)

    def _idle(self) -> bool:
        return self.engine.idle()


def history_kinds(handle: WorkflowHandle[Any]) -> list[str]:
    """The kinds of a workflow's events, in order (``["WorkflowStarted", ...]``)."""
    return [entry.kind for entry in handle.history()]


def step_names(handle: WorkflowHandle[Any]) -> list[str]:
    """The steps the workflow called, in the order it called them."""
    return [e.event.name for e in handle.history() if isinstance(e.event, StepScheduled)]


def replay_histories(
    folder: str | Path, workflows: Workflows, *, payload_codec: PayloadCodec | None = None
) -> list[ReplayReport]:
    """Replay every ``*.json`` history file in ``folder``; fail on any divergence.

    Raises ``AssertionError`` listing every diverging history (with seq, recorded
    and attempted decisions and the code location), or if there is no file at all.
    Histories exported from an engine with a payload codec need that codec
    (``payload_codec=``) to be read.
    """
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise AssertionError(f"no *.json history files in {folder}")
    reports = [
        check(load_history(path.read_bytes()), workflows, payload_codec=payload_codec)
        for path in files
    ]
    failures = [
        f"{path.name}: {report.error}"
        for path, report in zip(files, reports, strict=True)
        if not report.ok
    ]
    if failures:
        raise AssertionError("histories diverge:\n" + "\n".join(failures))
    return reports


try:  # the pytest fixture, when pytest is there
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pass
else:

    @pytest.fixture
    def workflow_env() -> Iterator[WorkflowEnvironment]:
        """A ``WorkflowEnvironment`` for one test, closed afterwards."""
        with WorkflowEnvironment() as env:
            yield env
