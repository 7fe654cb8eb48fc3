"""Where the other rooms plug into the runtime, so that the runtime never imports them.

- **Commit listeners** (``duralog.observe`` adds them): told of every event this
  engine commits. ``Listeners`` is the engine's list of them; with none, a commit
  costs one attribute read.
- **Traces** (``duralog.observe.otel`` sets one): asked for the trace context a
  new run records in its ``WorkflowStarted`` (``Listeners.trace``); with none, a
  start costs one attribute read and records nothing.
- **Attempt guards** (``duralog.patterns`` installs them): wrap every attempt of
  the steps they are found for, e.g. a circuit breaker admits the attempt first,
  and injected resources fill in parameters. A guard finder is asked once per
  step and worker, with the engine's registry (where the step's circuit is
  declared); most steps get no guard, and the attempt is called directly.
- **Step types**: ``@duralog.step`` asks the installed finders which ``Step``
  class a function needs (a step with injected parameters refuses them from
  workflow code).

The finders are installed when their package is imported, which ``import
duralog`` does: the runtime itself names none of them.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from duralog.replay.definitions import Registry, Step

if TYPE_CHECKING:  # for annotations only: ``@duralog.step`` imports this module
    from duralog.replay.state import WorkflowState
    from duralog.store.base import EventStore
    from duralog.store.events import LogEntry

    from .api import StepInfo
    from .clock import Clock

T = TypeVar("T")


# -- commit listeners ----------------------------------------------------------


class CommitListener(Protocol):
    """Something told of an engine's commits (``observe.subscribe.Observers``)."""

    @property
    def active(self) -> bool:
        """Whether it wants to hear of commits now (read on every commit)."""
        ...

    def committed(
        self, state: WorkflowState, entries: Sequence[LogEntry], workflow_id: str | None = None
    ) -> None:
        """``entries`` of ``state``'s workflow were committed (``workflow_id``: where they
        went, if not under the workflow's own id: an archived run)."""

    def created(self, workflow_id: str, name: str, started: LogEntry) -> None:
        """A workflow was created with ``started`` as its first event."""

    def appended(self, workflow_id: str, name: str, entry: LogEntry) -> None:
        """One event was appended outside a worker (a queued workflow cancelled)."""

    def close(self) -> None:
        """The engine closed: no commit follows."""


class Traces(Protocol):
    """Gives each new run the trace context it records (``observe.otel.Tracing``)."""

    def begin(self, workflow_id: str, name: str, parent_id: str | None) -> str | None:
        """A run of ``name`` is about to be created as ``workflow_id`` (a child of
        ``parent_id``, if given): the W3C traceparent to record for it, or None."""
        ...


class Listeners:
    """An engine's commit listeners; the runtime tells them of every commit."""

    def __init__(self) -> None:
        self._listeners: tuple[CommitListener, ...] = ()
        self._lock = threading.Lock()
        self._closed = False
        #: Where new runs get their trace context (None: tracing is off).
        self.traces: Traces | None = None

    def trace(self, workflow_id: str, name: str, parent_id: str | None = None) -> str | None:
        """The trace context to record in a new run's ``WorkflowStarted`` (see ``Traces``)."""
        traces = self.traces
        return None if traces is None else traces.begin(workflow_id, name, parent_id)

    def add(self, listener: CommitListener) -> None:
        """Tell ``listener`` of every commit from now on (none, once the engine closed)."""
        with self._lock:
            if not self._closed:
                self._listeners = (*self._listeners, listener)
                return
        listener.close()

    @property
    def active(self) -> bool:
        """Whether any listener wants to hear of commits."""
        for listener in self._listeners:  # noqa: SIM110 (no generator: asked at every commit)
            if listener.active:
                return True
        return False

    def committed(
        self, state: WorkflowState, entries: Sequence[LogEntry], workflow_id: str | None = None
    ) -> None:
        """See ``CommitListener.committed``."""
        for listener in self._listeners:
            if listener.active:
                listener.committed(state, entries, workflow_id)

    def created(self, workflow_id: str, name: str, started: LogEntry) -> None:
        """See ``CommitListener.created``."""
        for listener in self._listeners:
            if listener.active:
                listener.created(workflow_id, name, started)

    def appended(self, workflow_id: str, name: str, entry: LogEntry) -> None:
        """See ``CommitListener.appended``."""
        for listener in self._listeners:
            if listener.active:
                listener.appended(workflow_id, name, entry)

    def close(self) -> None:
        """Close every listener (after the engine's last commit)."""
        with self._lock:
            self._closed = True
        for listener in self._listeners:
            listener.close()


# -- attempt guards ------------------------------------------------------------


class AttemptHost(Protocol):
    """What a guard may use of the worker running an attempt."""

    @property
    def store(self) -> EventStore:
        """The worker's store."""
        ...

    @property
    def clock(self) -> Clock:
        """The engine's clock."""
        ...

    @property
    def resources(self) -> Mapping[str, Any]:
        """The engine's resources for steps, by name."""
        ...

    @property
    def registry(self) -> Registry:
        """The engine's registry (its circuit breakers, among the rest)."""
        ...

    def run_aside(
        self, context: contextvars.Context, fn: Callable[..., T], *args: Any
    ) -> Awaitable[T]:
        """Run a blocking ``fn(*args)`` in ``context`` on the guards' own threads (never
        on the worker's loop, nor behind long sync steps)."""
        ...

    def extension(self, key: object, make: Callable[[], T]) -> T:
        """The worker's own object for ``key``, made by ``make`` the first time."""
        ...


#: Call the attempt (or the next guard) with these keyword arguments.
Proceed = Callable[[dict[str, Any]], Awaitable[Any]]


class AttemptGuard(Protocol):
    """Runs around every attempt of a step (installed by ``duralog.patterns``)."""

    #: Guards of one step run from the lowest order (outermost) to the highest.
    order: ClassVar[int]

    async def run(
        self,
        host: AttemptHost,
        info: StepInfo,
        context: contextvars.Context,
        kwargs: dict[str, Any],
        proceed: Proceed,
    ) -> Any:
        """Do what the guard does, calling ``proceed`` for the attempt itself."""
        ...


GuardFinder = Callable[[Step[Any, Any], Registry], AttemptGuard | None]
StepTypeFinder = Callable[[Callable[..., Any]], type[Step[Any, Any]] | None]

_guard_finders: list[GuardFinder] = []
_step_type_finders: list[StepTypeFinder] = []


def add_guard_finder(finder: GuardFinder) -> None:
    """Ask ``finder`` for the guard of every step a worker runs (once per step), with
    the worker's registry. The finders are code, the same for every engine; what
    they find is in the registry."""
    if finder not in _guard_finders:
        _guard_finders.append(finder)


def guards_of(step: Step[Any, Any], registry: Registry) -> tuple[AttemptGuard, ...]:
    """The guards of ``step`` under ``registry``, outermost first (most steps have none)."""
    found = [guard for finder in _guard_finders if (guard := finder(step, registry)) is not None]
    return tuple(sorted(found, key=lambda guard: guard.order))


def add_step_type_finder(finder: StepTypeFinder) -> None:
    """Ask ``finder`` which ``Step`` class ``@duralog.step`` makes for a function."""
    if finder not in _step_type_finders:
        _step_type_finders.append(finder)


def step_type(fn: Callable[..., Any]) -> type[Step[Any, Any]]:
    """The ``Step`` class for ``fn``: the first a finder names, else ``Step``."""
    for finder in _step_type_finders:
        found = finder(fn)
        if found is not None:
            return found
    return Step
