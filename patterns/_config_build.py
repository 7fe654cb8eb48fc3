"""Build the ``DAG`` a parsed workflow document describes.

The document's shape is its schema's (``_config_schema``). The rules a schema
cannot state are here, each an ``InvalidDocument`` at the key it is about: step
types the registry lacks, dependencies on unknown steps (or on the step itself,
or twice), cycles, params the step has no parameter for (or that are injected,
or cannot be recorded), inputs no step takes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from duralog.errors import ConfigurationError, DAGCycleError, PayloadError, RegistrationError
from duralog.replay.definitions import Step
from duralog.store import codec

from ._composite import signature
from ._config_read import InvalidDocument, Path
from ._config_schema import Defaults, Document, StepSpec, conform, overrides
from .breaker import attach, circuit_of
from .dag import DAG, Task, _find_cycle, _plan_task
from .resources import injections_of


def build(data: Any, steps: Mapping[str, Step[Any, Any]], source: str) -> DAG:
    """The DAG the document ``data`` describes, registered; ``InvalidDocument`` at the
    first error."""
    doc = conform(data, Document)
    specs = {label: conform(body, StepSpec, ("steps", label)) for label, body in doc.steps.items()}
    tasks = [_task(label, spec, specs, doc.defaults, steps) for label, spec in specs.items()]
    cycle = _find_cycle(tuple(tasks))
    if cycle:
        deps = next(t.depends_on for t in tasks if t.name == cycle[0])
        at = ("steps", cycle[0], "depends_on", deps.index(cycle[1]))
        raise InvalidDocument(str(DAGCycleError(doc.name, cycle)), at)
    accepted = {p for i, t in enumerate(tasks) for p in _plan_task(doc.name, i, t).inputs}
    for key, value in doc.inputs.items():
        if key not in accepted:
            known = ", ".join(sorted(accepted)) or "none"
            reason = f"no step takes an input named {key!r} (inputs: {known})"
            raise InvalidDocument(reason, ("inputs", key))
        _recordable(("inputs", key), value)
    try:
        return DAG(
            doc.name,
            tasks,
            max_parallel=doc.max_parallel,
            defaults=doc.inputs,
            _site=f"document {source}",
        )
    except RegistrationError as exc:
        raise InvalidDocument(
            f"{exc}. Another definition already uses the name {doc.name!r}: give this "
            "document a name of its own",
            ("name",),
        ) from None


def _task(
    label: str,
    spec: StepSpec,
    specs: Mapping[str, StepSpec],
    defaults: Defaults,
    steps: Mapping[str, Step[Any, Any]],
) -> Task:
    at: Path = ("steps", label)
    step = steps.get(spec.type)
    if step is None:
        known = ", ".join(sorted(steps)) or "none registered"
        raise InvalidDocument(f"unknown step type {spec.type!r} (known: {known})", (*at, "type"))
    deps = [spec.depends_on] if isinstance(spec.depends_on, str) else spec.depends_on
    for i, dep in enumerate(deps):
        where = (*at, "depends_on", i)
        if dep not in specs:
            known = ", ".join(specs)
            raise InvalidDocument(f"{dep!r} is not a step of this workflow (steps: {known})", where)
        if dep == label:
            raise InvalidDocument("a step cannot depend on itself", where)
        if dep in deps[:i]:
            raise InvalidDocument(f"{dep!r} is listed twice", where)
    _check_params(at, step, spec.params, deps)
    retry = {**overrides(defaults.retry), **overrides(spec.retry)}
    timeout = spec.timeout
    if timeout is None and not step.inline:  # the default skips inline steps
        timeout = defaults.timeout
    if retry or timeout is not None:  # the same function, under the same name
        with _blame((*at, "retry")):
            policy = msgspec.structs.replace(step.retry, **retry)
        # The same kind of step (an InjectedStep keeps its guard) and its breaker;
        # the step refuses what it cannot honour (a timeout on an inline step).
        with _blame((*at, "timeout")):
            copy = type(step)(
                step.fn,
                name=step.name,
                retry=policy,
                timeout=timeout if timeout is not None else step.timeout,
                inline=step.inline,
            )
        attach(copy, circuit_of(step))
        step = copy
    try:
        task = Task(step, name=label, depends_on=deps, params=spec.params)
        _plan_task("config", 0, task)
    except ConfigurationError as exc:
        raise InvalidDocument(str(exc).split(": ", 1)[-1], at) from None
    return task


def _check_params(
    at: Path, step: Step[Any, Any], params: Mapping[str, Any], deps: list[str]
) -> None:
    found = signature(step.name, step.fn).parameters.values()
    names = [p.name for p in found if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in found)
    injected = {i.param for i in injections_of(step.fn)}
    for key, value in params.items():
        where = (*at, "params", key)
        if key in injected:
            raise InvalidDocument(
                f"{key!r} is injected from the engine's resources (duralog.inject); a "
                "document cannot set it (it would be recorded in the log)",
                where,
            )
        if key in deps:
            raise InvalidDocument(
                f"{key!r} is also in depends_on (its result fills that parameter)", where
            )
        _recordable(where, value)
        if key not in names and not open_kwargs:
            raise InvalidDocument(
                f"step type {step.name!r} has no parameter {key!r} "
                f"(its parameters: {', '.join(names) or 'none'})",
                where,
            )


def _recordable(at: Path, value: Any) -> None:
    try:
        codec.encode(value)
    except PayloadError as exc:
        raise InvalidDocument(f"cannot be recorded: {exc}", at) from None


@contextlib.contextmanager
def _blame(at: Path) -> Iterator[None]:
    """A ``ConfigurationError`` raised inside is an ``InvalidDocument`` at ``at``."""
    try:
        yield
    except ConfigurationError as exc:
        raise InvalidDocument(str(exc), at) from None
