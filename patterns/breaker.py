"""Circuit breakers: fail step attempts fast while the dependency they call is down.

A ``CircuitBreaker`` is a definition: a name, a failure threshold and a reset
timeout. Its state lives in the log's database (the ``breakers`` table), so every
worker on that database sees one circuit, and a restart forgets nothing::

    closed    --failure_threshold failures in a row-->  open
    open      --reset_timeout passed, one attempt wins-->  half_open (that attempt is the trial)
    half_open --the trial succeeds-->  closed
    half_open --the trial fails-->  open (for another reset_timeout)

Every change is a compare-and-set on the record's version (``put_breaker``); a
worker that loses a race reads the record again and decides again, so exactly
one attempt, on one worker, becomes the half-open trial. A trial whose worker
goes silent for ``reset_timeout`` is taken over by the next attempt.

While the circuit is open, or a trial is in flight, an attempt of a guarded step
does not call the step at all: it fails at once with ``CircuitOpen``. That is a
normal failed attempt: the step's ``RetryPolicy`` decides whether to try again,
never before the circuit may let a call through (plus a little jitter, so the
waiting steps do not all come back at the same instant).

The worker applies breakers around each attempt (the store calls run on a step
thread, never on the worker's loop); workflow code never sees them, and nothing
of theirs is recorded in the log but the attempts' errors. Breaker time is the
engine's clock, like retry delays (``duralog.testing`` moves it by hand).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import random
import time
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import msgspec

from duralog.engine import hooks
from duralog.engine.api import StepInfo
from duralog.engine.hooks import AttemptHost, Proceed
from duralog.errors import CircuitOpen, ConfigurationError, positive_seconds, whole_number
from duralog.replay.definitions import REGISTRY, DeclarationKind, Registry, Step
from duralog.store.base import BreakerRecord, EventStore

if TYPE_CHECKING:
    from duralog.engine.clock import Clock
    from duralog.engine.engine import Engine

log = logging.getLogger("duralog.engine")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

#: Compare-and-set rounds before a worker gives up changing a breaker (each lost
#: round means another worker changed it: the state moves on either way).
MAX_RACES = 50
#: Real seconds a worker trusts an open circuit it read without reading it again
#: (only ``reset()`` closes an open circuit early; it is seen within this delay).
OPEN_CACHE_SECONDS = 1.0


def circuit_open(
    breaker: CircuitBreaker, record: BreakerRecord, info: StepInfo, now: float
) -> CircuitOpen:
    """The ``CircuitOpen`` an attempt fails fast with, ``record`` being the circuit's state."""
    retry_at = breaker.retry_at(record)
    if record.state == HALF_OPEN:
        why = (
            f"is half-open: a trial call has been in flight since "
            f"{_when(record.updated_at)}; if it succeeds the circuit closes"
        )
    else:
        why = f"is open ({record.failures} failures in a row, opened at {_when(record.opened_at)})"
    return CircuitOpen(
        f"circuit breaker {breaker.name!r} {why}: step {info.step!r} (seq {info.seq}, "
        f"attempt {info.attempt}) of workflow {info.workflow_id!r} failed fast without "
        f"calling its dependency. The breaker lets a call through again at "
        f"{_when(retry_at)} (in {max(0.0, retry_at - now):.1f}s); the step's "
        "RetryPolicy decides whether it tries again then",
        breaker=breaker.name,
        state=record.state,
        failures=record.failures,
        retry_at=retry_at,
        retry_after=max(0.0, retry_at - now) + random.random() * breaker.jitter,
        step=info.step,
        workflow_id=info.workflow_id,
        seq=info.seq,
        attempt=info.attempt,
    )


class CircuitBreaker:
    """A circuit breaker shared by every worker on a log, for steps that call one
    flaky dependency.

    Args:
        name: the breaker's identity in the log's database: breakers with one name
            are one circuit, whatever process declares them.
        failure_threshold: failed attempts in a row that open the circuit.
        reset_timeout: seconds (or a timedelta) the circuit stays open before one
            trial attempt is let through; also how long a trial may stay silent
            before another attempt takes it over.
        failure_types: the exceptions that count as the dependency failing
            (default: any ``Exception``; a step timeout counts). Others fail the
            attempt without touching the circuit.

    Example:
        ```python
        payments_api = duralog.CircuitBreaker("payments-api", failure_threshold=5, reset_timeout=30)

        @duralog.step(circuit=payments_api, retry=duralog.RetryPolicy(max_attempts=10))
        def charge(order_id: str, cents: int) -> str: ...
        ```
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float | dt.timedelta = 30.0,
        failure_types: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a circuit breaker needs a non-empty name, not {name!r}")
        whole_number(failure_threshold, f"circuit breaker {name!r}: failure_threshold", minimum=1)
        timeout = positive_seconds(reset_timeout, f"circuit breaker {name!r}: reset_timeout")
        if not isinstance(failure_types, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in failure_types
        ):
            raise ConfigurationError(
                f"circuit breaker {name!r}: failure_types must be a tuple of exception "
                f"types, not {failure_types!r}"
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = timeout
        self.failure_types = failure_types

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker({self.name!r}, failure_threshold={self.failure_threshold}, "
            f"reset_timeout={self.reset_timeout:g})"
        )

    @property
    def jitter(self) -> float:
        """Up to how many seconds a failed-fast step waits past ``retry_at``."""
        return min(self.reset_timeout * 0.2, 5.0)

    def counts(self, exc: BaseException) -> bool:
        """Whether ``exc`` from an attempt counts as the dependency failing."""
        return isinstance(exc, self.failure_types) and not isinstance(exc, CircuitOpen)

    def retry_at(self, record: BreakerRecord) -> float:
        """When a circuit in ``record``'s state lets a call through again."""
        if record.state == OPEN:
            return (record.opened_at or record.updated_at) + self.reset_timeout
        if record.state == HALF_OPEN:
            return record.updated_at + self.reset_timeout
        return record.updated_at

    # -- reading and resetting from the outside ------------------------------

    def state(self, engine: Engine | EventStore) -> BreakerRecord:
        """The breaker's shared state in ``engine``'s log (closed if it never changed)."""
        store = _store_of(engine)
        return store.get_breaker(self.name) or _closed(self.name)

    def reset(self, engine: Engine | EventStore) -> BreakerRecord:
        """Close the circuit now (an operator's override), from any process; workers
        let calls through again within a second."""
        store = _store_of(engine)
        clock = getattr(engine, "clock", None)
        now = clock.now() if clock is not None else dt.datetime.now(dt.UTC).timestamp()
        record, _ = change(store, self.name, lambda r: _closing(r, now))
        return record

    def guard(self, step: Step[Any, Any], registry: Registry | None = None) -> Step[Any, Any]:
        """Guard an existing step with this breaker, for the engines using ``registry``
        (default: the default registry); ``@duralog.step(circuit=...)`` does it for
        you. Returns the step."""
        attach(step, self, registry)
        return step


#: The breaker guarding each step, in a registry.
CIRCUITS: DeclarationKind[Step[Any, Any], CircuitBreaker] = DeclarationKind("circuits")


def attach(
    step: Step[Any, Any], breaker: CircuitBreaker | None, registry: Registry | None = None
) -> None:
    """Make ``breaker`` guard every attempt of ``step`` run by the engines using
    ``registry`` (default: the default registry); None: no breaker."""
    circuits = (REGISTRY if registry is None else registry).declared(CIRCUITS)
    if breaker is None:
        circuits.pop(step, None)
        return
    if not isinstance(breaker, CircuitBreaker):
        raise ConfigurationError(
            f"circuit= takes a duralog.CircuitBreaker, not {breaker!r} (step {step.name!r})"
        )
    circuits[step] = breaker


def circuit_of(step: Step[Any, Any], registry: Registry | None = None) -> CircuitBreaker | None:
    """The breaker guarding ``step`` in ``registry`` (default: the default one), if any."""
    return (REGISTRY if registry is None else registry).declared(CIRCUITS).get(step)


class BreakerGuard:
    """Admits each attempt of a guarded step, or fails it fast, and records its outcome
    (an attempt guard). The store calls run on the worker's guard threads."""

    order: ClassVar[int] = 10  # inside the resources: a missing one is not an outage

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    async def run(
        self,
        host: AttemptHost,
        info: StepInfo,
        context: contextvars.Context,
        kwargs: dict[str, Any],
        proceed: Proceed,
    ) -> Any:
        """Pass the breaker, call, record the outcome."""
        breakers = host.extension(Breakers, lambda: Breakers(host.store, host.clock))
        ticket = await host.run_aside(context, breakers.admit, self.breaker, info)
        try:
            value = await proceed(kwargs)
        except asyncio.CancelledError:
            raise  # not the dependency's doing: a silent trial is taken over later
        except Exception as exc:
            await host.run_aside(context, breakers.failed, ticket, exc)
            raise
        await host.run_aside(context, breakers.succeeded, ticket)
        return value


def _circuit_guard(step: Step[Any, Any], registry: Registry) -> BreakerGuard | None:
    breaker = circuit_of(step, registry)
    return None if breaker is None else BreakerGuard(breaker)


hooks.add_guard_finder(_circuit_guard)


class Ticket(NamedTuple):
    """An admitted attempt: which breaker, and whether it is the half-open trial."""

    breaker: CircuitBreaker
    trial: bool


class Breakers:
    """A worker's side of circuit breakers: admit an attempt, then record its outcome.

    Every method blocks on the store, so the worker calls them on a step thread.
    None of them raises a store error: a breaker that cannot be read lets the call
    through (the worker's own commits will report the database), and an outcome
    that cannot be recorded is logged.
    """

    def __init__(self, store: EventStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._open: dict[str, tuple[BreakerRecord, float]] = {}  # name -> (open, read at)

    def admit(self, breaker: CircuitBreaker, info: StepInfo) -> Ticket:
        """Let the attempt ``info`` through, or raise ``CircuitOpen``."""
        now = self._clock.now()
        seen = self._open.get(breaker.name)
        if (
            seen is not None
            and now < breaker.retry_at(seen[0])
            and time.monotonic() - seen[1] < OPEN_CACHE_SECONDS
        ):
            # Failing fast by the thousand must not mean reading the database as often.
            raise circuit_open(breaker, seen[0], info, now)
        trial = False

        def decide(current: BreakerRecord) -> BreakerRecord | None:
            nonlocal trial
            trial = False
            if current.state == CLOSED or now < breaker.retry_at(current):
                return None
            trial = True  # reset_timeout passed (or the last trial went silent)
            return _next(current, now, state=HALF_OPEN)

        try:
            record, wrote = change(self._store, breaker.name, decide)
        except Exception as exc:
            log.warning(
                "circuit breaker %r could not be read (%s); letting step %r of %s through",
                breaker.name,
                exc,
                info.step,
                info.workflow_id,
            )
            return Ticket(breaker, trial=False)
        if record.state == CLOSED:
            self._open.pop(breaker.name, None)
            return Ticket(breaker, trial=False)
        if wrote and trial:
            log.info(
                "circuit breaker %r is half-open: step %r (seq %d) of %s is the trial call",
                breaker.name,
                info.step,
                info.seq,
                info.workflow_id,
            )
            return Ticket(breaker, trial=True)
        if record.state == OPEN:
            self._open[breaker.name] = (record, time.monotonic())
        raise circuit_open(breaker, record, info, now)

    def succeeded(self, ticket: Ticket) -> None:
        """The admitted attempt returned: a half-open circuit closes, and a closed one
        forgets its failures."""
        now = self._clock.now()

        def decide(current: BreakerRecord) -> BreakerRecord | None:
            if current.state == HALF_OPEN or (current.state == CLOSED and current.failures):
                return _closing(current, now)
            return None  # still open: this attempt was let in before it opened

        record, wrote = self._change(ticket.breaker, decide)
        if wrote and record.state == CLOSED and ticket.trial:
            log.info("circuit breaker %r closed: the trial call succeeded", ticket.breaker.name)

    def failed(self, ticket: Ticket, exc: BaseException) -> None:
        """The admitted attempt raised ``exc``: count it if it is the dependency's fault."""
        breaker = ticket.breaker
        if not breaker.counts(exc):
            if ticket.trial:  # the dependency answered (the error is the caller's): close
                self.succeeded(ticket)
            return
        now = self._clock.now()

        def decide(current: BreakerRecord) -> BreakerRecord | None:
            if current.state == CLOSED:
                failures = current.failures + 1
                if failures >= breaker.failure_threshold:
                    return _next(current, now, state=OPEN, failures=failures, opened_at=now)
                return _next(current, now, failures=failures)
            if current.state == HALF_OPEN and ticket.trial:
                return _next(current, now, state=OPEN, failures=current.failures + 1, opened_at=now)
            return None

        record, wrote = self._change(breaker, decide)
        if wrote and record.state == OPEN:
            self._open[breaker.name] = (record, time.monotonic())
            log.warning(
                "circuit breaker %r %s (%s: %s); steps it guards fail fast until %s",
                breaker.name,
                "stays open: the trial call failed"
                if ticket.trial
                else f"opened after {record.failures} failures in a row",
                type(exc).__name__,
                exc,
                _when(breaker.retry_at(record)),
            )

    def _change(
        self, breaker: CircuitBreaker, decide: Callable[[BreakerRecord], BreakerRecord | None]
    ) -> tuple[BreakerRecord, bool]:
        try:
            return change(self._store, breaker.name, decide)
        except Exception as exc:
            log.warning("circuit breaker %r could not be updated: %s", breaker.name, exc)
            return _closed(breaker.name), False


def change(
    store: EventStore, name: str, decide: Callable[[BreakerRecord], BreakerRecord | None]
) -> tuple[BreakerRecord, bool]:
    """Read the breaker, let ``decide`` say what it becomes (None: nothing), and
    compare-and-set it, again on a lost race. Returns the record and whether this
    call wrote it."""
    current = _closed(name)
    for _ in range(MAX_RACES):
        current = store.get_breaker(name) or _closed(name)
        new = decide(current)
        if new is None:
            return current, False
        if store.put_breaker(new):
            return new, True
    log.warning(
        "circuit breaker %r changed under this worker %d times in a row; leaving it as is",
        name,
        MAX_RACES,
    )
    return current, False


def _closed(name: str) -> BreakerRecord:
    return BreakerRecord(name, CLOSED, 0, None, 0, 0.0)


def _next(current: BreakerRecord, now: float, **changes: Any) -> BreakerRecord:
    return msgspec.structs.replace(current, version=current.version + 1, updated_at=now, **changes)


def _closing(current: BreakerRecord, now: float) -> BreakerRecord | None:
    if current.state == CLOSED and not current.failures:
        return None
    return _next(current, now, state=CLOSED, failures=0, opened_at=None)


def _store_of(engine: Engine | EventStore) -> EventStore:
    store: EventStore | None = getattr(engine, "store", None)
    return store if store is not None else typing.cast("EventStore", engine)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
