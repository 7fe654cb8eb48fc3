"""What ``Pipeline`` and ``DAG`` share: a workflow whose code is built, not written.

A built workflow is an ordinary ``Workflow`` (so ``engine.start``, child calls,
``duralog replay`` and a fresh worker all treat it like a decorated function):
its function is a closure over the definition, renamed after where the
definition was made, so that the registry tells two definitions with one name
apart and says where each came from.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

from duralog.errors import ConfigurationError, whole_number
from duralog.replay.definitions import Step, Workflow


def caller_module(depth: int = 2) -> tuple[str, int]:
    """The ``__name__`` of the module that called our caller (where a definition is
    made) and the line of that call."""
    frame = sys._getframe(depth)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "duralog.engine."
    ):
        frame = frame.f_back
    return str(frame.f_globals.get("__name__", "__main__")), frame.f_lineno


def name_function(
    fn: Callable[..., Any], kind: str, name: str, where: tuple[str, int], site: str | None = None
) -> None:
    """Give a built workflow's function the identity the registry and tracebacks show.

    The definition's site (its line, or the document it came from) is part of that
    identity: two definitions under one name, even in one module, are refused by the
    registry instead of the second silently replacing the first; the same definition
    met again (a module imported twice, a document loaded twice) is the same."""
    module, line = where
    fn.__module__ = module
    fn.__name__ = name
    fn.__qualname__ = f"{kind}[{name}] ({site or f'line {line}'})"


def check_name(kind: str, name: object) -> str:
    """A workflow name: a non-empty string."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"a {kind} needs a name (a non-empty string), got {name!r}")
    return name


def check_max_parallel(owner: str, value: object) -> int | None:
    """``max_parallel``: None (no bound) or a positive int."""
    return whole_number(value, f"{owner}: max_parallel", minimum=1, optional=True)


def durable(owner: str, what: object) -> Step[Any, Any] | Workflow[Any, Any]:
    """``what`` if it is a step or a workflow; a clear error otherwise."""
    if isinstance(what, Step | Workflow):
        return what
    label = getattr(what, "__qualname__", None) or repr(what)
    hint = (
        "decorate it with @duralog.step (or @duralog.workflow for a child workflow)"
        if callable(what)
        else "pass a @duralog.step or a @duralog.workflow"
    )
    raise ConfigurationError(f"{owner}: {label} is not a durable step; {hint}")


def signature(owner: str, fn: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature(fn)``, as a ``ConfigurationError`` when it has none."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{owner}: cannot read the signature of {fn!r}: {exc}") from None
