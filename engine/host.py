"""What an execution runs on: ``ExecutionHost``, the worker as one workflow sees it; and
this process among others: its worker id, whether another local pid still runs, and
the real sources of the values workflows record (time, randomness)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Coroutine
from typing import Any, Protocol

from duralog.store.base import EventStore
from duralog.store.envelope import PayloadCodec
from duralog.store.events import LogEntry

from .attempts import StepAttempts
from .clock import Clock
from .committer import AppendCommitter, StartCommitter
from .hooks import Listeners
from .lease import Lease, Moment
from .options import WorkerOptions
from .watchdog import LoopWatchdog


class RunningWorkflow(Protocol):
    """What the host needs of one of its executions when it calls back."""

    @property
    def workflow_id(self) -> str: ...
    @property
    def fence(self) -> int: ...
    @property
    def lease(self) -> Lease: ...

    def close(self) -> None:
        """Stop everything it scheduled."""


class ExecutionHost(Protocol):
    """The worker, as an ``Execution`` sees it: a clock and a loop, a way to commit
    (appends, and creates for child workflows), a store to read, its step attempts,
    and the few callbacks below. ``Worker`` provides it."""

    @property
    def options(self) -> WorkerOptions: ...
    @property
    def worker_id(self) -> str: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def store(self) -> EventStore:
        """For reads: the log tail of a child, the inbox (writes go through committers)."""
        ...

    @property
    def appends(self) -> AppendCommitter: ...
    @property
    def starts(self) -> StartCommitter: ...
    @property
    def listeners(self) -> Listeners: ...
    @property
    def attempts(self) -> StepAttempts: ...
    @property
    def watchdog(self) -> LoopWatchdog | None:
        """Watches workflow code for blocking the loop (None: ``blocked_threshold=None``)."""
        ...

    @property
    def payload_codec(self) -> PayloadCodec | None:
        """The engine's payload codec: what the workflow records is sealed with it."""
        ...

    def random(self) -> float:
        """A random draw in [0, 1) (retry jitter)."""
        ...

    def spawn(
        self, execution: RunningWorkflow, coro: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """Run a coroutine of ``execution``; an error drops the execution, never the host."""
        ...

    def failed(self, execution: RunningWorkflow, exc: BaseException) -> None:
        """A coroutine of ``execution`` raised ``exc`` (what ``spawn`` does with it)."""

    def poke(self, workflow_id: str) -> None:
        """Something arrived in a workflow's inbox."""

    def adopt_new(
        self,
        workflow_id: str,
        fence: int,
        started: LogEntry,
        granted: Moment,
        reserved: bool = False,
    ) -> None:
        """Run a workflow just created under this host's lease (a child)."""

    def restart(self, execution: RunningWorkflow, started: LogEntry) -> None:
        """``execution`` continued as new: run its next run in its place."""

    def renew(self) -> None:
        """Extend the host's leases now (and drop the workflows whose lease it lost)."""

    def finished(self, execution: RunningWorkflow) -> None:
        """``execution`` reached a terminal or suspended state."""


class RealSources:
    """New non-deterministic values for live runs: the engine's clock and the OS's randomness."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock.now()

    def random(self) -> float:
        # What random.SystemRandom().random() computes (53 random bits from the OS),
        # without loading ``random`` into every process that runs a worker.
        return (int.from_bytes(os.urandom(7)) >> 3) * _EPSILON

    def uuid4(self) -> uuid.UUID:
        return uuid.uuid4()


_EPSILON = 2.0**-53


def default_worker_id() -> str:
    """``host:pid:random``: unique per process, readable in ``duralog list``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
