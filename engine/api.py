"""What workflow and step code calls: ``duralog.sleep``, ``now``, ``random``... and ``step_info``.

Inside a workflow each function goes through the running instance, so the value
is recorded (or read back on replay). Outside any workflow they fall back to the
real thing (a real sleep, the real clock), which keeps workflow functions
callable from plain unit tests.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import uuid as _uuid
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import msgspec

from duralog.errors import ConfigurationError, DuralogError
from duralog.replay.context import WorkflowInfo
from duralog.replay.instance import ContinueAsNew, current_instance
from duralog.store import codec

from .heartbeats import AttemptControl
from .lease import Lease

T = TypeVar("T")


def seconds(duration: float | dt.timedelta) -> float:
    """A duration in seconds, given as a number of seconds or a timedelta."""
    if isinstance(duration, dt.timedelta):
        return duration.total_seconds()
    return float(duration)


async def sleep(duration: float | dt.timedelta) -> None:
    """Sleep durably: the wake-up time is in the log, so a crash does not reset it.

    Example:
        ``await duralog.sleep(dt.timedelta(days=3))``
    """
    await asyncio.sleep(seconds(duration))


def now() -> dt.datetime:
    """The current time as an aware UTC datetime, recorded so replay sees the same value."""
    instance = current_instance()
    if instance is None:
        return dt.datetime.now(dt.UTC)
    value = instance.record_marker("now", instance.sources.now, float)
    return dt.datetime.fromtimestamp(value, dt.UTC)


def random() -> float:
    """A random float in [0, 1), recorded so replay sees the same value."""
    instance = current_instance()
    if instance is None:
        import random as _random  # (not loaded by every process that imports duralog)

        return _random.random()
    return float(instance.record_marker("random", instance.sources.random, float))


def uuid4() -> _uuid.UUID:
    """A random UUID, recorded so replay sees the same value."""
    instance = current_instance()
    if instance is None:
        return _uuid.uuid4()
    value: _uuid.UUID = instance.record_marker("uuid", instance.sources.uuid4, _uuid.UUID)
    return value


def side_effect(fn: Callable[[], T], result_type: Any = Any) -> T:
    """Run ``fn`` once and record its result; replay returns the recorded value.

    For small non-deterministic reads (a config flag, a hostname). ``fn`` runs
    inside the workflow, so it must be quick; anything slow or failing belongs in
    a step. ``result_type`` decodes the recorded value (default: as JSON).
    """
    instance = current_instance()
    if instance is None:
        return fn()
    value: T = instance.record_marker("side_effect", fn, result_type)
    return value


def publish(key: str, value: Any) -> None:
    """Publish ``value`` under ``key`` for the outside to read (``handle.get_event``).

    The cheap alternative to queries: progress, a status for a UI, a URL the
    client needs. The latest value per key wins; it is in the log, so it survives
    crashes and replays like any decision.
    """
    instance = current_instance()
    if instance is None:
        raise DuralogError("duralog.publish() can only be called inside a workflow")
    instance.publish(key, value)


def write_stream(key: str, value: Any) -> None:
    """Append ``value`` to the stream ``key`` of this workflow run, for readers outside
    (``handle.read_stream(key)``): partial output, tokens, progress lines.

    From workflow code the value is a decision in the log: replay never writes it
    again, and readers get it exactly once. From a step (sync or async) it is written
    as the step runs, without waiting for the store, and committed before the step's
    own outcome; an attempt that fails or crashes keeps what it wrote (its retry
    writes its values again): a step's values reach readers at least once.
    ``value`` is JSON-encodable, sealed by the engine's payload codec like any payload.

    Example:
        ```python
        @duralog.step
        def answer(prompt: str) -> str:
            text = ""
            for token in llm.stream(prompt):
                duralog.write_stream("tokens", token)
                text += token
            return text
        ```
    """
    instance = current_instance()
    if instance is not None:
        instance.write_stream(key, value)
        return
    info = _step_info.get()
    if info is None or info.control is None:
        raise DuralogError(
            "duralog.write_stream() can only be called inside a workflow or a step run by an engine"
        )
    info.control.stream().write(key, value)


def close_stream(key: str) -> None:
    """Close the stream ``key`` of this workflow run: its readers stop after its last
    value, and it takes no more values. Closing it again does nothing. A stream left
    open ends when the run ends (completes, fails, is cancelled or terminated, or
    continues as new). From a step, the close takes effect when the attempt returns:
    the close of an attempt that fails is dropped, and its retry may write on."""
    instance = current_instance()
    if instance is not None:
        instance.close_stream(key)
        return
    info = _step_info.get()
    if info is None or info.control is None:
        raise DuralogError(
            "duralog.close_stream() can only be called inside a workflow or a step run by an engine"
        )
    info.control.stream().close(key)


def on_query(name: str, handler: Callable[..., Any]) -> None:
    """Answer query ``name`` with ``handler``: what ``handle.query(name, *args)`` and
    ``duralog query ID NAME`` return, read from the workflow's current state.

    Call it inside the workflow, usually first. ``handler`` (a plain function; an
    ``async def`` works too) receives the query's JSON arguments, typed by its
    annotations, and returns a JSON-encodable value. A query is answered by
    replaying the workflow's log in the asking process, even while no worker runs
    it: it must only read. Calling a step, sleeping, waiting, publishing or
    starting a child from a handler fails the query. Registering again under a
    name replaces the handler.

    Example:
        ```python
        @duralog.workflow
        async def importer(rows: int) -> int:
            done = 0
            duralog.on_query("progress", lambda: {"done": done, "of": rows})
            for start in range(0, rows, 100):
                done += await import_batch(start, 100)
            return done
        ```
    """
    instance = current_instance()
    if instance is None:
        raise DuralogError("duralog.on_query() can only be called inside a workflow")
    instance.queries.register(name, handler)


def on_update(
    name: str, handler: Callable[..., Any], *, validator: Callable[..., Any] | None = None
) -> None:
    """Carry out update ``name`` with ``handler``: a request from outside that changes
    the workflow and gets an answer (``handle.update(name, payload)``, ``duralog
    update ID NAME --payload JSON``).

    Call it inside the workflow, usually first. ``handler`` (sync or ``async def``)
    gets the payload (typed by its annotation; no argument when the payload is None
    and it takes none) and runs as a task of the workflow: it may call steps, sleep
    and wait, and what it returns is the answer. An error it raises is the sender's
    ``UpdateFailed``; the workflow goes on. The handler runs concurrently with the
    workflow's body: state both change across an ``await`` needs care, as in any
    asyncio code (``total += await add(x)`` in both reads ``total`` before the step
    and writes it after, so one of the two additions can be lost). Change it after
    the await (``added = await add(x); total += added``), or guard it with an
    ``asyncio.Lock``. Replay repeats whatever interleaving the log recorded.

    ``validator`` (a plain function, same argument) raises to reject the update. It
    runs in the sender's process before anything is sent, so a rejected update
    leaves no trace in the history; it runs again when the update is delivered,
    and if the workflow's state changed meanwhile so that it rejects then, the
    rejection is recorded as the answer. Like a query, a validator only reads.

    Example:
        ```python
        @duralog.workflow
        async def cart(owner: str) -> list[str]:
            items: list[str] = []

            def check(item: str) -> None:
                if len(items) >= 10:
                    raise ValueError("the cart is full")

            async def add(item: str) -> int:
                items.append(await reserve(item))
                return len(items)

            duralog.on_update("add_item", add, validator=check)
            await duralog.wait_signal("checkout")
            return items
        ```
    """
    instance = current_instance()
    if instance is None:
        raise DuralogError("duralog.on_update() can only be called inside a workflow")
    instance.queries.refuse(f"register update {name!r}")
    instance.updates.register(name, handler, validator)


def patched(patch_id: str) -> bool:
    """True when this run should take the new code path named ``patch_id``.

    Wrap a change to a workflow's decisions so running workflows keep replaying:

        if duralog.patched("charge-before-reserve"):
            await charge(order); await reserve(order)    # new runs
        else:
            await reserve(order); await charge(order)    # runs recorded before the change

    New runs record a ``patch`` marker and take the new path; histories recorded
    before the change have no marker there and replay the old path. Outside a
    workflow it returns True.
    """
    instance = current_instance()
    if instance is None:
        return True
    return instance.patched(patch_id)


async def wait_signal(
    name: str, timeout: float | dt.timedelta | None = None, result_type: Any = Any
) -> Any:
    """Wait for the next signal called ``name`` and return its payload.

    Signals sent before the workflow waits are buffered; each is consumed once, in
    the order received. With ``timeout`` (a durable timer) it raises
    ``TimeoutError`` when nothing arrives in time, naming the signal and the wait.
    ``result_type`` decodes the payload (a dataclass, a Struct...); by default it is
    plain JSON.

    Example:
        ``approved = await duralog.wait_signal("approval", timeout=dt.timedelta(days=2))``
    """
    instance = current_instance()
    if instance is None:
        raise DuralogError("duralog.wait_signal() can only be awaited inside a workflow")
    if timeout is None:
        raw = await instance.wait_signal(name)
    else:
        waited = seconds(timeout)
        try:
            raw = await asyncio.wait_for(instance.wait_signal(name), waited)
        except TimeoutError:
            raise TimeoutError(f"no signal {name!r} arrived within {waited:g} s") from None
    return codec.decode(raw, result_type, payload_codec=instance.payload_codec)


def continue_as_new(*args: Any, **kwargs: Any) -> NoReturn:
    """End this run and start the workflow afresh, same id, with new arguments.

    The finished run's history is archived as ``<id>~run<N>`` and the new run
    starts with an empty log, so a workflow that loops forever (a poller, an
    entity) keeps a bounded history. Signals waiting in the inbox carry over.

    Example:
        ```python
        @duralog.workflow
        async def poller(cursor: int) -> None:
            for _ in range(100):
                cursor = await poll(cursor)
                await duralog.sleep(60)
            duralog.continue_as_new(cursor)
        ```
    """
    if current_instance() is None:
        raise DuralogError("duralog.continue_as_new() can only be called inside a workflow")
    raise ContinueAsNew(args, kwargs)


def deprecate_patch(patch_id: str) -> None:
    """Mark the end of a ``patched`` change: every running workflow now takes its new path.

    Replace ``if duralog.patched(id): new() else: old()`` by
    ``duralog.deprecate_patch(id); new()`` once no workflow that took the old path
    is running. Histories that recorded the patch marker keep replaying.
    """
    instance = current_instance()
    if instance is not None:
        instance.deprecate_patch(patch_id)


def workflow_info() -> WorkflowInfo:
    """The running workflow's id, name, start time and whether it is replaying."""
    instance = current_instance()
    if instance is None:
        raise DuralogError("duralog.workflow_info() can only be called inside a workflow")
    return instance.info()


class StepInfo(msgspec.Struct, frozen=True):
    """What a running step knows about itself (``duralog.step_info()``): its workflow's
    id (and name), its own name, seq and attempt number, and the run it belongs to.

    ``idempotency_key`` is the same for every attempt and every re-run after a crash,
    and different for every step of every run: pass it to the services the step calls
    so that their side effects happen once.

    ``lease_lost`` turns true when this worker can no longer be sure it holds the
    workflow (it was frozen past its lease, or another worker took the workflow
    over): a long-running sync step should check it in its loop and stop, since its
    result can no longer be recorded and another worker may run the step again.

    ``cancelled`` turns true when the attempt should stop for another reason: its
    workflow was cancelled (or ended, or its worker stopped), or the attempt was given
    up (past its ``timeout`` or ``heartbeat_timeout``). ``duralog.heartbeat()`` raises
    ``StepCancelled`` in either case, so a loop that heartbeats stops by itself.
    ``heartbeat_details`` are the details the previous attempt last gave to
    ``duralog.heartbeat()``: where to resume.

    Attributes:
        workflow_id: the id of the workflow that called the step.
        step: the step's name.
        seq: the step's place in its workflow's history (the seq of its
            ``StepScheduled``).
        attempt: this attempt's number, from 1; a re-run after a crash keeps the number
            of the attempt it repeats.
        workflow_name: the name of the workflow that called the step.
        run_id: the run the step belongs to (a new one after ``continue_as_new``).
        lease: the worker's lease on the workflow, which ``lease_lost`` reads (None
            when none is known: ``lease_lost`` is then False).
        control: what the attempt shares with its worker (its heartbeats, whether it
            should stop), which ``cancelled``, ``heartbeat_details`` and
            ``duralog.heartbeat()`` use (None outside an engine's attempt).
    """

    workflow_id: str
    step: str
    seq: int
    attempt: int
    workflow_name: str = ""
    run_id: str = ""
    lease: Lease | None = None
    control: AttemptControl | None = None

    @property
    def idempotency_key(self) -> str:
        """``"<workflow id>:<run id>:<step seq>"``: stable across attempts and recoveries
        of this step, never repeated by another step, run (``continue_as_new``, a fork,
        a restart) or a later workflow reusing the id. Runs started before duralog
        recorded run ids keep their ``"<workflow id>:<step seq>"``."""
        if not self.run_id:
            return f"{self.workflow_id}:{self.seq}"
        return f"{self.workflow_id}:{self.run_id}:{self.seq}"

    @property
    def lease_lost(self) -> bool:
        """True once this worker may no longer hold the step's workflow (see above)."""
        return self.lease is not None and not self.lease.holds()

    @property
    def cancelled(self) -> bool:
        """True once this attempt should stop: its workflow was cancelled (or no longer
        runs on this worker), or the attempt was given up at its timeout (see above)."""
        return self.control is not None and self.control.stopped is not None

    @property
    def heartbeat_details(self) -> Any:
        """The details the last attempt before this one gave to ``duralog.heartbeat()``
        (on this worker or, stored, on one that died), decoded as plain JSON (a dict for
        a dataclass or Struct: ``msgspec.convert`` it back); None when there are none."""
        return None if self.control is None else self.control.decoded_previous()


_step_info: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar(
    "duralog_step_info", default=None
)


#: The resources of the engine running the current step (set per attempt).
step_resources: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "duralog_resources", default=None
)


def current_step() -> StepInfo | None:
    """The attempt running in this context, if a step runs here (else None)."""
    return _step_info.get()


def step_info() -> StepInfo:
    """Inside a step run by an engine: its workflow id, seq, attempt and idempotency key."""
    info = _step_info.get()
    if info is None:
        raise DuralogError("duralog.step_info() can only be called inside a step run by an engine")
    return info


def heartbeat(details: Any = None) -> None:
    """Report that this step is alive and, with ``details``, how far it got.

    Call it often from a long step (sync or async): it costs a lock and a clock read,
    and never waits for the store. ``details`` (any JSON-encodable value: an offset, a
    cursor) is what the step's next attempt reads from ``step_info().heartbeat_details``
    if this one fails, times out, or dies with its worker, so it can resume there;
    ``None`` keeps the details given before.

    The worker stores the newest details at most every ``Engine(heartbeat_interval=)``
    seconds (5 by default), in the store's ``heartbeats`` table, not in the log;
    sealed by the payload codec like every payload. A crash loses what changed since
    the last write. With ``@duralog.step(heartbeat_timeout=N)``, an attempt that goes
    ``N`` seconds without a heartbeat is given up as hung and retried.

    Raises ``StepCancelled`` (an ``asyncio.CancelledError``: ``except Exception``
    does not catch it) when the attempt should stop: its workflow was cancelled, this
    worker lost the workflow's lease, or the attempt was given up. Let it propagate.
    Raises ``DuralogError`` outside a step run by an engine, ``PayloadError`` for
    details that cannot be encoded.

    Example:
        ```python
        @duralog.step(heartbeat_timeout=60)
        def import_rows(rows: list[str]) -> int:
            start: int = duralog.step_info().heartbeat_details or 0
            for offset in range(start, len(rows)):
                save(rows[offset])
                duralog.heartbeat(offset + 1)
            return len(rows)
        ```
    """
    info = _step_info.get()
    if info is None or info.control is None:
        raise DuralogError(
            "duralog.heartbeat() can only be called inside a step run by an engine; call "
            "it from the step's own code (or from code it calls, in its thread or task)"
        )
    info.control.beat(details)


def check_resources(resources: Mapping[str, Any] | None) -> dict[str, Any]:
    """The engine's resources as a dict it owns, names checked."""
    found = dict(resources or {})
    for name in found:
        check_name(name)
    return found


def check_name(name: object) -> str:
    """A resource name: a non-empty string."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a resource name must be a non-empty string, not {name!r}")
    return name
