"""``WorkflowHandle``: a started workflow, seen from outside (any thread, any process)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from duralog.errors import (
    ConfigurationError,
    DuralogError,
    ErrorDetails,
    PayloadError,
    ResultTimeout,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowSuspended,
    positive_seconds,
    whole_number,
)
from duralog.replay.definitions import Workflow
from duralog.replay.state import WorkflowState, fold_all
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import EventStore, WorkflowRecord, WorkflowStatus
from duralog.store.envelope import PayloadCodec, seal, unseal_error
from duralog.store.events import LogEntry

from .clock import Clock
from .hooks import Listeners
from .inbox import notice_to_parent

R = TypeVar("R")
T = TypeVar("T")

MAX_ID_LENGTH = 255


#: How long ``WorkflowHandle.query`` waits for an answer by default, in seconds.
QUERY_TIMEOUT = 30.0


class HandleHost(Protocol):
    """What a handle uses of its ``Engine``."""

    @property
    def store(self) -> EventStore: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def max_payload_bytes(self) -> int | None: ...
    @property
    def listeners(self) -> Listeners: ...
    @property
    def payload_codec(self) -> PayloadCodec | None:
        """The engine's payload codec: what a handle sends is sealed, and what it reads
        opened, with it."""
        ...

    def done_event(self, workflow_id: str) -> threading.Event:
        """Set when this process sees the workflow end."""
        ...

    def workflow_finished(self, workflow_id: str) -> None:
        """The workflow ended outside a worker (a queued one was cancelled)."""

    def poke(self, workflow_id: str) -> None:
        """Something was sent to the workflow's inbox."""

    def terminated(self, workflow_id: str) -> None:
        """The workflow was terminated: stop it if it runs here, and wake its waiters."""

    def fork_workflow(self, workflow_id: str, from_seq: int | None, new_id: str | None) -> str:
        """Fork ``workflow_id`` from ``from_seq`` (None: restart it); the new id."""
        ...


class WorkflowHandle(Generic[R]):
    """A started workflow: wait for its result, read its status and history."""

    def __init__(
        self, engine: HandleHost, workflow_id: str, definition: Workflow[Any, R] | None
    ) -> None:
        self._engine = engine
        self._definition = definition
        self.id = workflow_id

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id!r}>"

    def record(self) -> WorkflowRecord:
        """The workflow's index row (status, owner, last seq...)."""
        record = self._engine.store.get_workflow(self.id)
        if record is None:
            raise WorkflowNotFound(self.id)
        return record

    def status(self) -> WorkflowStatus:
        """The current status."""
        return self.record().status

    def history(self) -> list[LogEntry]:
        """Every event of the workflow, in seq order."""
        self.record()
        return self._engine.store.read_events(self.id)

    def state(self, at: int | None = None) -> WorkflowState:
        """The state derived from the first ``at`` events (all by default): time travel."""
        self.record()
        return fold_all(self.id, self._engine.store.read_events(self.id, until_seq=at))

    def signal(self, name: str, payload: Any = None) -> None:
        """Send signal ``name`` with a JSON-encodable ``payload`` (from any process).

        It waits in the workflow's inbox until the workflow's owner moves it into
        the log; ``duralog.wait_signal(name)`` in the workflow then receives it.
        """
        from duralog.replay.updates import SIGNAL_PREFIX as UPDATE_SIGNALS

        if isinstance(name, str) and name.startswith(UPDATE_SIGNALS):
            raise ConfigurationError(
                f"signal names starting with {UPDATE_SIGNALS!r} carry updates; send an "
                "update with handle.update(name, payload) instead"
            )
        self._send("signal", name, payload)

    def cancel(self, reason: str = "") -> None:
        """Ask the workflow to cancel: ``CancelledError`` is raised at its current await.

        The workflow may catch it to run cleanup steps; if it lets it propagate the
        workflow ends ``CANCELLED``. A workflow still waiting on its queue, or for its
        delayed start, ends ``CANCELLED`` at once, without running any of its code.
        """
        require_utf8(reason, "the reason")
        # Sealed from here on, in the inbox and in the log.
        reason = seal(reason, self._engine.payload_codec)
        record = self.record()
        at = self._engine.clock.now()
        waiting = record.status is WorkflowStatus.PENDING and (
            record.queue is not None or record.start_at is not None  # queued, or delayed
        )
        if waiting and self._engine.store.cancel_queued(self.id, at, reason):
            observers = self._engine.listeners
            if observers.active:
                entry = LogEntry(record.last_seq + 1, at, ev.WorkflowCancelled(reason=reason))
                observers.appended(self.id, record.name, entry)
            self._engine.workflow_finished(self.id)
            return
        self._send("cancel", reason, None, record)

    def terminate(self, reason: str = "") -> bool:
        """End the workflow at once, without running any more of its code.

        No cleanup runs: no ``except CancelledError`` handler, no cleanup step. The
        workflow ends ``FAILED`` with a cause of type ``Terminated`` (its message the
        ``reason``), and its history says so with a ``WorkflowTerminated`` event that
        replay knows the code did not make. Its open children are terminated too, and
        a worker still running it cannot create another (the store refuses a child
        whose parent's fence moved); a parent waiting on it sees it fail. Works
        whatever its status (``PENDING``, ``PAUSED``, ``SUSPENDED``...) and whether or
        not a worker runs it.

        A step attempt running at that moment is never recorded: an async step is
        cancelled as soon as its worker hears of it (at once in this process and on
        PostgreSQL; otherwise at the worker's next write or lease renewal, within a
        third of ``lease_seconds``), and a sync step sees ``step_info().lease_lost``.

        Returns False if the workflow had already ended (children it left open after
        an earlier ``terminate`` are terminated all the same).
        """
        return self._terminate(reason, tell_parent=True)

    def _terminate(self, reason: str, tell_parent: bool) -> bool:
        require_utf8(reason, "the reason")
        record = self.record()
        engine = self._engine
        if not record.status.is_terminal:
            state = fold_all(self.id, engine.store.read_events(self.id, until_seq=1))
            at = engine.clock.now()
            terminal = ev.WorkflowTerminated(error=ErrorDetails("Terminated", reason))
            notices = (
                notice_to_parent(state, self.id, terminal, engine.payload_codec)
                if tell_parent
                else ()
            )
            seq = engine.store.terminate(self.id, at, terminal.error, notices)
            if seq is not None:
                if engine.listeners.active:
                    engine.listeners.appended(self.id, record.name, LogEntry(seq, at, terminal))
                engine.terminated(self.id)
                for notice in notices:
                    engine.poke(notice.workflow_id)
        else:
            seq = None
        state = self.state()
        if state.terminated:  # ended by this call or an earlier one: so are its children
            for child_id in state.open_children().values():
                child: WorkflowHandle[Any] = WorkflowHandle(engine, child_id, None)
                # (not found: its parent was ended before it was created)
                with contextlib.suppress(WorkflowNotFound):  # (its parent has ended: no notice)
                    child._terminate("the parent workflow was terminated", tell_parent=False)
        return seq is not None

    def pause(self, reason: str = "") -> None:
        """Pause the workflow: it starts no new step and fires no timer until resumed.

        Steps already running finish; the status shows ``PAUSED``.
        """
        require_utf8(reason, "the reason")
        self._send("pause", seal(reason, self._engine.payload_codec), None)

    def resume(self) -> None:
        """Resume a paused workflow."""
        self._send("resume", "", None)

    def fork(self, from_seq: int, id: str | None = None) -> WorkflowHandle[R]:
        """Fix forward: a new workflow whose log starts as a copy of this one's events
        before seq ``from_seq``, and that runs on with the code deployed now.

        The steps recorded before ``from_seq`` do not run again: the fork gets their
        results. The copy is replayed against the current code first; if the code no
        longer makes the recorded decisions, ``ForkDiverged`` is raised with the
        divergence, and nothing is written. A seq that cuts a step in two (after its
        ``StepScheduled``, up to its end) is a ``ConfigurationError`` naming the seqs to
        choose from. This workflow is left as it is, even if it still runs. ``id``
        names the fork (default ``<id>-fork-<random>``); its history records where it
        came from (``WorkflowStarted.forked_from``).

        Example:
            ``fixed = engine.get("order-7").fork(from_seq=9); fixed.result(timeout=60)``
        """
        return WorkflowHandle(
            self._engine, self._engine.fork_workflow(self.id, from_seq, id), self._definition
        )

    def restart(self, id: str | None = None) -> WorkflowHandle[R]:
        """Run this workflow again from the start, with the same input, as a new workflow
        (a fork that copies nothing but its start; default id ``<id>-restart-<random>``)."""
        return WorkflowHandle(
            self._engine, self._engine.fork_workflow(self.id, None, id), self._definition
        )

    def get_event(self, key: str, timeout: float | None = None) -> Any:
        """The value the workflow last published under ``key``, waiting until there is one.

        Raises ``ResultTimeout`` if nothing is published within ``timeout`` seconds,
        and ``DuralogError`` if the workflow ends without publishing it.
        """

        def probe() -> msgspec.Raw | None:
            record = self.record()
            value = self._engine.store.published(self.id, key)
            if value is None and record.status.is_terminal:
                raise DuralogError(
                    f"workflow {self.id!r} ended ({record.status.value}) without publishing {key!r}"
                )
            return None if value is None else msgspec.Raw(value)

        found = self._poll(probe, timeout, time.sleep, max_pause=0.25)
        return codec.decode(found, payload_codec=self._engine.payload_codec)

    def read_stream(
        self,
        key: str,
        timeout: float | None = None,
        *,
        start: int = 0,
        result_type: Any = Any,
    ) -> Iterator[Any]:
        """The values the workflow writes to stream ``key`` (``duralog.write_stream``), in
        order, as they are written: iteration ends when the stream is closed or the run
        ends. It reads the run that is current when it is called (a stream belongs to
        one run: ``continue_as_new`` ends it). Works from any process, live or long
        after; each read starts at the stream's first value (``start`` skips that
        many). Values are decoded as ``result_type`` (plain JSON by default) with the
        engine's payload codec.

        Raises ``StreamTimeout`` (a ``TimeoutError``) when no new value comes within
        ``timeout`` seconds; it says how many values came, the ``start`` to read on from.

        Example:
            ``for token in handle.read_stream("tokens", timeout=60): print(token, end="")``
        """
        from duralog.replay.streams import check_key

        from .streams import read

        check_key(key, f"reading workflow {self.id!r}")
        waited = positive_seconds(timeout, "the stream timeout", optional=True)
        first = whole_number(start, "start", minimum=0)
        self.record()  # WorkflowNotFound now, not at the first value
        engine = self._engine
        return read(engine.store, engine.payload_codec, self.id, key, waited, result_type, first)

    def read_stream_async(
        self,
        key: str,
        timeout: float | None = None,
        *,
        start: int = 0,
        result_type: Any = Any,
    ) -> AsyncIterator[Any]:
        """``read_stream`` for asyncio code (a web handler streaming to its client): the
        same values, with ``async for``; the log is read on a thread, and the waits
        between reads are awaited.

        Example:
            ``async for token in handle.read_stream_async("tokens", timeout=60): ...``
        """
        from duralog.replay.streams import check_key

        from .streams import read_async

        check_key(key, f"reading workflow {self.id!r}")
        waited = positive_seconds(timeout, "the stream timeout", optional=True)
        first = whole_number(start, "start", minimum=0)
        self.record()  # WorkflowNotFound now, not at the first value
        engine = self._engine
        return read_async(
            engine.store, engine.payload_codec, self.id, key, waited, result_type, first
        )

    def query(
        self,
        name: str,
        *args: Any,
        result_type: Any = Any,
        timeout: float | None = QUERY_TIMEOUT,
    ) -> Any:
        """Ask the workflow's query ``name`` (``duralog.on_query``) with ``args``.

        Answered in this process from the workflow's current state, running or
        ended, even while no worker holds it: its log is replayed here against the
        registered code (which this process must have imported), then the handler is
        called. Nothing is written and no step runs; each call replays the log anew.
        ``args`` and the result travel as JSON; ``result_type`` decodes the result.

        Raises ``QueryFailed`` (no such query, its handler raised or tried to act),
        ``QueryTimeout`` when no answer came within ``timeout`` seconds (30 by
        default; None: no limit), ``NondeterminismError`` (the code diverged from the
        history), ``RegistrationError`` (the workflow's code is not registered here).

        Example:
            ``print(handle.query("progress"))  # {'done': 300, 'of': 1000}``
        """
        from .queries import ask

        engine = self._engine
        return ask(
            engine.store,
            engine.payload_codec,
            self.id,
            self._definition,
            name,
            args,
            result_type,
            timeout,
        )

    def update(
        self,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        result_type: Any = Any,
        update_id: str | None = None,
    ) -> Any:
        """Send update ``name`` (``duralog.on_update``) with ``payload`` and wait for the
        workflow's answer: what its handler returned, decoded as ``result_type``.

        The update's validator runs first, in this process, on the workflow's current
        state (its log replayed here against the registered code): a rejected update
        is never sent. An accepted one is recorded in the log, so a crash before the
        answer replays it and the answer comes once. Raises ``UpdateFailed`` (rejected,
        its handler raised, the workflow ended first), ``UpdateTimeout`` after
        ``timeout`` seconds (it is still carried out), ``RegistrationError`` when the
        workflow's code is not registered here.

        ``update_id`` makes the call safe to retry (after an ``UpdateTimeout``, or a
        crash of the caller): an update with the same id on this workflow is accepted
        once, and a later call with that id waits for the first one's answer and
        returns it, without validating, sending or running the handler again, even
        once the workflow has ended or continued as new. Without it, each call is a
        new update (a fresh random id).

        Example:
            ``count = handle.update("add_item", {"sku": "sku-42", "qty": 2}, timeout=30)``
        """
        from duralog.replay.updates import signal_name

        from . import updates

        engine = self._engine
        store, sealer = engine.store, engine.payload_codec
        request, run, send = updates.check(
            store, sealer, self.id, self._definition, name, payload, update_id
        )
        if send:
            self._send("signal", signal_name(name), request)
        return updates.wait(store, sealer, self.id, name, request, timeout, result_type, run)

    def _send(
        self, kind: str, name: str, payload: Any, record: WorkflowRecord | None = None
    ) -> None:
        require_utf8(name, f"the {kind} name" if kind == "signal" else "the reason")
        record = record or self.record()
        if record.status.is_terminal:
            raise DuralogError(
                f"workflow {self.id!r} is already {record.status.value}; the {kind} was not sent"
            )
        try:
            data = None
            if kind == "signal":
                encoded = codec.encode(payload, self._engine.payload_codec)
                codec.check_size(encoded, self._engine.max_payload_bytes, f"signal {name!r}")
                data = bytes(encoded)
        except PayloadError as exc:
            raise PayloadError(f"cannot send signal {name!r} to {self.id!r}: {exc}") from None
        self._engine.store.send(self.id, kind, name, data, time.time())
        self._engine.poke(self.id)

    def result(self, timeout: float | None = None) -> R:
        """Wait for the workflow to end and return its result.

        Raises ``WorkflowFailed`` (with ``cause``) if it failed, ``WorkflowSuspended``
        if its code diverged, ``ResultTimeout`` if ``timeout`` seconds pass first.
        """
        done = self._engine.done_event(self.id)

        def probe() -> WorkflowRecord | None:
            nonlocal done
            done = self._engine.done_event(self.id)  # registered before the status is read
            record = self.record()
            ended = record.status.is_terminal or record.status is WorkflowStatus.SUSPENDED
            return record if ended else None

        # Woken at once when this process finishes it; polling covers other processes.
        return self._outcome(self._poll(probe, timeout, lambda s: done.wait(s), max_pause=0.5))

    def _poll(
        self,
        probe: Callable[[], T | None],
        timeout: float | None,
        sleep: Callable[[float], object],
        max_pause: float,
    ) -> T:
        """Call ``probe`` until it returns something, backing off; ``ResultTimeout`` after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            found = probe()
            if found is not None:
                return found
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ResultTimeout(self.id, timeout or 0.0, self.status().value)
            sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 2, max_pause)

    def _outcome(self, record: WorkflowRecord) -> R:
        if record.status is WorkflowStatus.SUSPENDED:
            raise WorkflowSuspended(self.id, record.reason or "its code diverged")
        found = self._engine.store.read_events(self.id, after_seq=record.last_seq - 1)
        event = found[-1].event if found else None
        if isinstance(event, ev.WorkflowCompleted):
            result_type = self._definition.result_type if self._definition else Any
            value: R = codec.decode(
                event.result, result_type, payload_codec=self._engine.payload_codec
            )
            return value
        if isinstance(event, ev.WorkflowFailed | ev.WorkflowTerminated):
            raise WorkflowFailed(self.id, unseal_error(event.error, self._engine.payload_codec))
        raise WorkflowFailed(self.id, ErrorDetails("Cancelled", "the workflow was cancelled"))


def check_id(workflow_id: str) -> str:
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ConfigurationError(f"a workflow id must be a non-empty string, got {workflow_id!r}")
    if len(workflow_id) > MAX_ID_LENGTH or "\x00" in workflow_id:
        raise ConfigurationError(
            f"a workflow id must be at most {MAX_ID_LENGTH} characters without NUL bytes"
        )
    require_utf8(workflow_id, "a workflow id")
    if "~" in workflow_id:
        raise ConfigurationError(
            f"workflow id {workflow_id!r}: '~' is reserved for the archived runs of "
            "continue-as-new (<id>~run<N>); choose an id without it"
        )
    return workflow_id


def require_utf8(text: str, what: str) -> None:
    """Refuse text the log cannot store (lone surrogates, e.g. from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # the text may be a secret (a reason): never quoted
        raise ConfigurationError(
            f"{what} must be valid Unicode text; it holds a lone surrogate at character "
            f"{exc.start + 1} (of {len(text)})"
        ) from None
