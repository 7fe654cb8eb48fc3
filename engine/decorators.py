"""``@duralog.step`` and ``@duralog.workflow``, typed for mypy ``--strict`` users."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from duralog.errors import ConfigurationError
from duralog.replay.definitions import (
    DEFAULT_MAX_RECOVERY_ATTEMPTS,
    REGISTRY,
    Registry,
    RetryPolicy,
    Step,
    Workflow,
)

from . import hooks

P = ParamSpec("P")
R = TypeVar("R")


class _StepDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Step[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Step[P, R]: ...


class Circuit(Protocol):
    """What ``circuit=`` takes: a ``duralog.CircuitBreaker`` (the runtime names no pattern)."""

    def guard(self, step: Step[Any, Any], /, registry: Registry | None = None) -> Step[Any, Any]:
        """Guard every attempt of ``step`` (in ``registry``, default the default one);
        returns it."""
        ...


class _WorkflowDecorator(Protocol):
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Workflow[P, R]: ...


@overload
def step(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Step[P, R]: ...
@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    circuit: Circuit | None = None,
    inline: bool = False,
    registry: Registry | None = None,
    heartbeat_timeout: float | None = None,
) -> _StepDecorator: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    circuit: Circuit | None = None,
    inline: bool = False,
    registry: Registry | None = None,
    heartbeat_timeout: float | None = None,
) -> Any:
    """Make a function (sync or async) a durable step.

    Awaited inside a workflow, the call is recorded: its result is in the log and
    a completed step never runs again for that workflow. Sync steps run in a
    thread pool, async ones on the worker's event loop.

    Args:
        name: the name recorded in the log (default: the function's ``__qualname__``).
        retry: the ``RetryPolicy`` (default: 3 attempts, exponential backoff).
        timeout: seconds one attempt may take; a slower attempt fails (and is retried).
        circuit: a ``CircuitBreaker`` around every attempt: while it is open, attempts
            fail fast with ``CircuitOpen`` instead of calling the step.
        inline: run a sync step on the worker's event loop instead of a step thread.
            For steps that return in microseconds (a computation, a lookup in
            memory): it saves the hand-off to a thread and back, about half of
            such a step's cost at ``durability="normal"``. While it runs, nothing
            else on that worker moves, so never use it for I/O or to wait on the
            engine (``handle.result()`` would wait for the loop it blocks); it
            cannot have a ``timeout``.
        registry: where ``circuit`` is recorded (default: the default registry; an
            engine's registry decides which breakers guard the steps it runs).
        heartbeat_timeout: seconds an attempt may go without calling
            ``duralog.heartbeat()`` (counted from its start): past that, the worker takes
            it for hung, gives it up, and records it as failed with ``TimeoutError``
            ("no heartbeat for N s"), retried as ``retry`` says. For long steps that
            report their progress (see ``duralog.heartbeat``).

    Parameters whose default is ``duralog.inject()`` are filled in from the
    engine's resources at each attempt; workflow code leaves them out of the call,
    so they are never recorded.

    Example:
        ```python
        @duralog.step(retry=duralog.RetryPolicy(max_attempts=5), timeout=30)
        def charge(order_id: str, cents: int, payments: Payments = duralog.inject()) -> str: ...
        ```
    """

    def make(f: Callable[..., Any]) -> Step[Any, Any]:
        kind = hooks.step_type(f)
        made: Step[Any, Any] = kind(
            f,
            name=name,
            retry=retry,
            timeout=timeout,
            inline=inline,
            heartbeat_timeout=heartbeat_timeout,
        )
        if circuit is not None:
            if not callable(getattr(circuit, "guard", None)):
                raise ConfigurationError(
                    f"circuit= takes a duralog.CircuitBreaker, not {circuit!r} (step {made.name!r})"
                )
            circuit.guard(made, registry)
        return made

    return make(fn) if fn is not None else make


@overload
def workflow(fn: Callable[P, Awaitable[R]], /) -> Workflow[P, R]: ...
@overload
def workflow(
    *,
    name: str | None = None,
    registry: Registry | None = None,
    max_recovery_attempts: int | None = DEFAULT_MAX_RECOVERY_ATTEMPTS,
) -> _WorkflowDecorator: ...
def workflow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    registry: Registry | None = None,
    max_recovery_attempts: int | None = DEFAULT_MAX_RECOVERY_ATTEMPTS,
) -> Any:
    """Make an ``async def`` a durable workflow, registered under its name.

    It registers in ``registry`` (default: the default registry, which an
    ``Engine`` given no ``registry=`` uses).

    ``max_recovery_attempts`` (default 10; None: no limit) guards against a workflow
    that keeps killing its worker (a segfault in a native library, an OOM kill in
    one of its steps): each time a worker takes it over from a worker that died (or
    stalled past its lease) while one of its steps ran, and nothing progressed since
    the last such takeover, counts one recovery; one more than the limit, and the
    workflow is set aside, ``FAILED`` with a cause of type ``RecoveryLimit``, instead
    of killing the next worker. Fix the code, then ``fork`` or ``restart`` it.

    The function must be deterministic: it awaits steps, ``duralog.sleep``,
    ``asyncio.gather``..., and takes time and randomness from ``duralog.now()``,
    ``duralog.random()`` and ``duralog.uuid4()``.

    Example:
        ```python
        @duralog.workflow
        async def checkout(order_id: str, cents: int) -> str:
            return await charge(order_id, cents)
        ```
    """

    def make(f: Callable[..., Any]) -> Workflow[Any, Any]:
        wf: Workflow[Any, Any] = Workflow(f, name=name, max_recovery_attempts=max_recovery_attempts)
        (REGISTRY if registry is None else registry).add(wf)
        return wf

    return make(fn) if fn is not None else make
