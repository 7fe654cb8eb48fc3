"""Dependency injection: clients and connections handed to steps by the engine.

Resources are registered on the engine (``Engine(..., resources={"db": pool})`` or
``engine.provide("db", pool)``) and reach a step in one of two ways:

- a parameter whose default is ``duralog.inject()``::

      @duralog.step
      def charge(order_id: str, cents: int, payments: Payments = duralog.inject()) -> str:
          return payments.charge(order_id, cents, key=duralog.step_info().idempotency_key)

  The workflow calls ``await charge(order_id, cents)``; the worker fills
  ``payments`` in before each attempt (by the parameter's name, else by its
  annotated type; ``inject("name")`` or ``inject(Type)`` says which).
- ``duralog.resource("db")`` (or ``duralog.resource(Pool)``) inside a step.

Either way the resource never passes through workflow code, so it is never
encoded, recorded in the log or shown by ``duralog history``: credentials stay out
of the history. A resource missing at run time fails the attempt with an error
that names the step, the resource and how to provide it.
"""

from __future__ import annotations

import contextvars
import inspect
import typing
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar, ParamSpec, TypeVar, overload

from duralog.engine import hooks
from duralog.engine.api import StepInfo, current_step, step_resources
from duralog.engine.hooks import AttemptHost, Proceed
from duralog.errors import ConfigurationError, DuralogError, ResourceMissing
from duralog.replay.definitions import Registry, Step
from duralog.replay.instance import current_instance

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

ResourceKey = str | type[Any] | None


class _Injected:
    """The default value that marks a step parameter as injected (``duralog.inject``)."""

    __slots__ = ("key",)

    def __init__(self, key: ResourceKey) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"duralog.inject({_describe(self.key)})" if self.key else "duralog.inject()"

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        # The step ran without an engine (a plain call in a test): say how to pass it.
        raise ResourceMissing(
            f"{self!r} is only filled in when the step runs on an engine (Engine(..., "
            "resources={...})); called directly, pass the value yourself: "
            "await my_step(..., client=fake) or my_step.fn(..., client=fake)",
            step=None,
            resource=_describe(self.key),
        )


def inject(key: ResourceKey = None) -> Any:
    """Mark a step parameter as injected from the engine's resources.

    Use it as the parameter's default. The worker passes the resource registered
    under ``key`` (a name), or the one resource that is an instance of ``key`` (a
    type); with no ``key``, the one named like the parameter, else the one of its
    annotated type. Workflow code leaves the parameter out of the call, so the
    resource is never recorded in the log.

    Example:
        ```python
        @duralog.step
        def save(order: Order, db: Pool = duralog.inject()) -> None:
            db.execute("INSERT ...", order.id)
        ```
    """
    if key is not None and not isinstance(key, str | type):
        raise ConfigurationError(f"duralog.inject() takes a name or a type, not {key!r}")
    return _Injected(key)


class Injection(typing.NamedTuple):
    """One injected parameter of a step."""

    param: str
    key: ResourceKey
    annotation: Any
    position: int | None  # its index among the positional parameters, if it has one


def injections_of(fn: Any) -> tuple[Injection, ...]:
    """The parameters of ``fn`` whose default is ``duralog.inject(...)``."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    marked = [p for p in parameters if isinstance(p.default, _Injected)]
    if not marked:
        return ()
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: resolve by name only
        hints = {}
    positional = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return tuple(
        Injection(
            p.name,
            p.default.key,
            hints.get(p.name, Any),
            positional.index(p.name) if p.name in positional else None,
        )
        for p in marked
    )


class InjectedStep(Step[P, R]):
    """A step with injected parameters: workflow code may not pass them (they would be
    recorded in the log). ``@duralog.step`` makes one when it finds ``inject()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.injections = injections_of(self.fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        instance = current_instance()
        if instance is not None:
            for injection in self.injections:
                position = injection.position
                if injection.param in kwargs or (position is not None and len(args) > position):
                    raise ConfigurationError(
                        f"workflow {instance.workflow_id!r} passed {injection.param!r} to step "
                        f"{self.name!r}, but that parameter is injected from the engine's "
                        "resources (duralog.inject): leave it out of the call, so that the "
                        "client, and any credential in it, never enters the log"
                    )
        return super().__call__(*args, **kwargs)


def resolve(
    resources: Mapping[str, Any], injections: tuple[Injection, ...], info: StepInfo
) -> dict[str, Any]:
    """The values of a step's injected parameters for the attempt ``info``."""
    return {i.param: _lookup(resources, i.key, i.param, i.annotation, info) for i in injections}


def _lookup(
    resources: Mapping[str, Any],
    key: ResourceKey,
    param: str | None,
    annotation: Any,
    info: StepInfo | None,
) -> Any:
    """By name (``key``, else the parameter's name), else by type (``key``, else the
    parameter's annotation)."""
    name = key if isinstance(key, str) else param if key is None else None
    if name is not None and name in resources:
        return resources[name]
    wanted = key if isinstance(key, type) else annotation if key is None else None
    if not isinstance(wanted, type) or wanted is object:
        wanted = None
    if wanted is not None and not isinstance(key, str):
        found = [n for n, value in resources.items() if isinstance(value, wanted)]
        if len(found) == 1:
            return resources[found[0]]
        if len(found) > 1:
            raise ResourceMissing(
                f"{_where(info)} asks for a {wanted.__qualname__} resource"
                + (f" (parameter {param!r})" if param else "")
                + f" and this engine has several: {', '.join(sorted(found))}; "
                f"name the one it needs: duralog.inject({found[0]!r})",
                step=info.step if info else None,
                resource=wanted.__qualname__,
            )
    if name is not None and wanted is not None:
        what = f"the resource {name!r} (or one of type {wanted.__qualname__})"
    elif name is not None:
        what = f"the resource {name!r}"
    else:
        what = f"a resource of type {wanted.__qualname__ if wanted else _describe(key)}"
    if param is not None and param != name:
        what += f" for its parameter {param!r}"
    register = name or param or "name"
    provided = ", ".join(sorted(resources)) or "none"
    raise ResourceMissing(
        f"{_where(info)} needs {what}, which this engine does not provide (it provides: "
        f"{provided}); register it with Engine(..., resources={{{register!r}: ...}}) or "
        f"engine.provide({register!r}, ...)",
        step=info.step if info else None,
        resource=name or (wanted.__qualname__ if wanted else str(key)),
    )


def _where(info: StepInfo | None) -> str:
    if info is None:
        return "this step"
    return (
        f"step {info.step!r} (seq {info.seq}, attempt {info.attempt}) of workflow "
        f"{info.workflow_id!r}"
    )


def _describe(key: ResourceKey) -> str:
    if isinstance(key, type):
        return key.__qualname__
    return repr(key)


@overload
def resource(key: type[T]) -> T: ...
@overload
def resource(key: str, kind: type[T]) -> T: ...
@overload
def resource(key: str) -> Any: ...
def resource(key: str | type[Any], kind: type[Any] | None = None) -> Any:
    """Inside a step: the engine's resource named ``key`` (or the one of type ``key``).

    With ``kind``, the value is checked to be an instance of it (and typed so).

    Example:
        ```python
        @duralog.step
        def save(order: Order) -> None:
            duralog.resource("db", Pool).execute("INSERT ...", order.id)
        ```
    """
    if current_instance() is not None:
        raise DuralogError(
            "duralog.resource() is for steps: workflow code must not use clients or "
            "connections (nothing they do would be recorded or replayed); call a step "
            "that takes the resource instead"
        )
    info = current_step()
    if info is None:
        raise DuralogError(
            "duralog.resource() can only be called inside a step run by an engine; in a "
            "unit test, give the step its client as an argument (duralog.inject())"
        )
    value = _lookup(step_resources.get() or {}, key, None, None, info)
    if kind is not None and not isinstance(value, kind):
        raise ResourceMissing(
            f"{_where(info)} asked for resource {_describe(key)} as a {kind.__qualname__}, "
            f"but it is a {type(value).__qualname__}",
            step=info.step,
            resource=_describe(key),
        )
    return value


class InjectionGuard:
    """Fills in a step's injected parameters before each attempt (an attempt guard)."""

    order: ClassVar[int] = 0  # outermost: a missing resource never reaches a breaker

    def __init__(self, injections: tuple[Injection, ...]) -> None:
        self.injections = injections

    async def run(
        self,
        host: AttemptHost,
        info: StepInfo,
        context: contextvars.Context,
        kwargs: dict[str, Any],
        proceed: Proceed,
    ) -> Any:
        """Resolve the resources (``ResourceMissing`` fails the attempt), then call."""
        return await proceed({**kwargs, **resolve(host.resources, self.injections, info)})


def _injection_guard(step: Step[Any, Any], registry: Registry) -> InjectionGuard | None:
    injections: tuple[Injection, ...] = getattr(step, "injections", None) or injections_of(step.fn)
    return InjectionGuard(injections) if injections else None


def _step_type(fn: Any) -> type[Step[Any, Any]] | None:
    return InjectedStep if callable(fn) and injections_of(fn) else None


hooks.add_guard_finder(_injection_guard)
hooks.add_step_type_finder(_step_type)
