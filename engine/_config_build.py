"""Check a parsed workflow document key by key and build its ``DAG``.

The schema (every key optional unless marked)::

    name          string, required: the registered workflow name
    description   string
    max_parallel  whole number >= 1: tasks running at once (default: no bound)
    inputs        table: default input values (the start input overrides them)
    defaults      table: retry and timeout applied to every step that sets none
    steps         table, required: step name -> table:
        type        string, required: a name in the StepRegistry
        depends_on  a step name or a list of them
        params      table: fixed keyword arguments of the step
        retry       table: max_attempts, initial_interval, backoff, max_interval,
                    jitter, non_retryable (a list of exception names)
        timeout     number > 0: seconds per attempt

Unknown keys are errors (a typo never silently drops a setting).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from duralog.errors import ConfigurationError, PayloadError, RegistrationError
from duralog.replay.definitions import RetryPolicy, Step
from duralog.store import codec

from ._composite import signature
from ._config_read import Lines, Path, Problem
from .breaker import attach, circuit_of
from .dag import DAG, DAGCycleError, Task, _find_cycle, _plan_task
from .resources import injections_of

_TOP = ("name", "description", "max_parallel", "inputs", "defaults", "steps")
_STEP = ("type", "depends_on", "params", "retry", "timeout")
_DEFAULTS = ("retry", "timeout")
_RETRY: dict[str, tuple[str, float | None]] = {  # key -> (kind, minimum)
    "max_attempts": ("int", 1),
    "initial_interval": ("number", 0),
    "backoff": ("number", 1),
    "max_interval": ("number", 0),
    "jitter": ("bool", None),
    "non_retryable": ("strings", None),
}


class StepTypes(Protocol):
    """What the builder needs of a ``StepRegistry``."""

    def __contains__(self, name: object) -> bool: ...

    def get(self, name: str) -> Step[Any, Any]: ...

    def names(self) -> list[str]: ...


class Builder:
    """Checks a parsed document, key by key, and builds its DAG; ``Problem`` at the first error."""

    def __init__(self, lines: Lines, steps: StepTypes, source: str = "<config>") -> None:
        self.site = f"document {source}"
        self.lines = lines
        self.steps = steps

    def fail(self, path: Path, reason: str) -> Problem:
        return Problem(self.lines.line_of(path), key_of(path) if path else None, reason)

    def build(self, data: Any) -> DAG:
        if self.lines.duplicates:
            path, line = self.lines.duplicates[0]
            raise Problem(line, key_of(path), "this key appears twice")
        top = self.table((), data, _TOP)
        name = self.get(top, ("name",), "string", required=True)
        if not name.strip():
            raise self.fail(("name",), "the workflow name must not be blank")
        self.get(top, ("description",), "string")
        max_parallel = self.get(top, ("max_parallel",), "int")
        if max_parallel is not None and max_parallel < 1:
            raise self.fail(("max_parallel",), f"must be at least 1, got {max_parallel}")
        inputs = self.get(top, ("inputs",), "table") or {}
        defaults = self.table(("defaults",), top.get("defaults", {}), _DEFAULTS)
        default_retry = self.retry(("defaults", "retry"), defaults.get("retry"), {})
        default_timeout = self.timeout(("defaults", "timeout"), defaults.get("timeout"))
        spec = self.get(top, ("steps",), "table", required=True)
        if not spec:
            raise self.fail(("steps",), "a workflow needs at least one step")
        tasks = [
            self.task(label, body, spec, default_retry, default_timeout)
            for label, body in spec.items()
        ]
        cycle = _find_cycle(tuple(tasks))
        if cycle:
            deps = next(t.depends_on for t in tasks if t.name == cycle[0])
            at = ("steps", cycle[0], "depends_on", deps.index(cycle[1]))
            raise self.fail(at, str(DAGCycleError(name, cycle)))
        accepted = {p for i, t in enumerate(tasks) for p in _plan_task(name, i, t).inputs}
        for key, value in inputs.items():
            if key not in accepted:
                raise self.fail(
                    ("inputs", key),
                    f"no step takes an input named {key!r} "
                    f"(inputs: {', '.join(sorted(accepted)) or 'none'})",
                )
            self.recordable(("inputs", key), value)
        try:
            return DAG(name, tasks, max_parallel=max_parallel, defaults=inputs, _site=self.site)
        except RegistrationError as exc:
            raise self.fail(
                ("name",),
                f"{exc}. Another definition already uses the name {name!r}: give this "
                "document a name of its own",
            ) from None

    def task(
        self,
        label: str,
        body: Any,
        spec: Mapping[str, Any],
        default_retry: dict[str, Any],
        default_timeout: float | None,
    ) -> Task:
        at: Path = ("steps", label)
        body = self.table(at, body, _STEP)
        kind = self.get(body, (*at, "type"), "string", required=True)
        if kind not in self.steps:
            known = ", ".join(self.steps.names()) or "none registered"
            raise self.fail((*at, "type"), f"unknown step type {kind!r} (known: {known})")
        step = self.steps.get(kind)
        deps = body.get("depends_on", [])
        deps = [deps] if isinstance(deps, str) else deps
        if not isinstance(deps, list):
            raise self.fail((*at, "depends_on"), f"must be a step name or a list, not {deps!r:.60}")
        for i, dep in enumerate(deps):
            if not isinstance(dep, str):
                raise self.fail((*at, "depends_on", i), f"must be a step name, not {dep!r:.60}")
            if dep not in spec:
                raise self.fail(
                    (*at, "depends_on", i),
                    f"{dep!r} is not a step of this workflow (steps: {', '.join(spec)})",
                )
            if dep == label:
                raise self.fail((*at, "depends_on", i), "a step cannot depend on itself")
            if dep in deps[:i]:
                raise self.fail((*at, "depends_on", i), f"{dep!r} is listed twice")
        params = self.get(body, (*at, "params"), "table") or {}
        self.check_params(at, step, params, deps)
        retry = self.retry((*at, "retry"), body.get("retry"), default_retry)
        timeout = self.timeout((*at, "timeout"), body.get("timeout"))
        if timeout is None and not step.inline:  # the default skips inline steps
            timeout = default_timeout
        if retry or timeout is not None:  # the same function, under the same name
            policy = self.policy((*at, "retry"), step.retry, retry)
            # The same kind of step (an InjectedStep keeps its guard) and its breaker.
            try:  # the step refuses what it cannot honour (a timeout on an inline step)
                copy = type(step)(
                    step.fn,
                    name=step.name,
                    retry=policy,
                    timeout=timeout if timeout is not None else step.timeout,
                    inline=step.inline,
                )
            except ConfigurationError as exc:
                raise self.fail((*at, "timeout"), str(exc)) from None
            attach(copy, circuit_of(step))
            step = copy
        try:
            task = Task(step, name=label, depends_on=deps, params=params)
            _plan_task("config", 0, task)
        except ConfigurationError as exc:
            raise self.fail(at, str(exc).split(": ", 1)[-1]) from None
        return task

    def check_params(
        self, at: Path, step: Step[Any, Any], params: Mapping[str, Any], deps: list[str]
    ) -> None:
        found = signature(step.name, step.fn).parameters.values()
        names = [p.name for p in found if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        open_kwargs = any(p.kind is p.VAR_KEYWORD for p in found)
        injected = {i.param for i in injections_of(step.fn)}
        for key, value in params.items():
            if key in injected:
                raise self.fail(
                    (*at, "params", key),
                    f"{key!r} is injected from the engine's resources (duralog.inject); a "
                    "document cannot set it (it would be recorded in the log)",
                )
            if key in deps:
                raise self.fail(
                    (*at, "params", key),
                    f"{key!r} is also in depends_on (its result fills that parameter)",
                )
            self.recordable((*at, "params", key), value)
            if key not in names and not open_kwargs:
                raise self.fail(
                    (*at, "params", key),
                    f"step type {step.name!r} has no parameter {key!r} "
                    f"(its parameters: {', '.join(names) or 'none'})",
                )

    def recordable(self, at: Path, value: Any) -> None:
        try:
            codec.encode(value)
        except PayloadError as exc:
            raise self.fail(at, f"cannot be recorded: {exc}") from None

    def retry(self, at: Path, value: Any, base: dict[str, Any]) -> dict[str, Any]:
        """The retry fields ``value`` sets, over ``base`` (those of ``defaults.retry``)."""
        if value is None:
            return base
        fields = self.table(at, value, tuple(_RETRY))
        for key, (kind, minimum) in _RETRY.items():
            found = self.get(fields, (*at, key), kind)
            if found is not None and minimum is not None and found < minimum:
                raise self.fail((*at, key), f"must be at least {minimum:g}, not {found!r}")
        if "non_retryable" in fields:
            fields = {**fields, "non_retryable": tuple(fields["non_retryable"])}
        return {**base, **fields}

    def policy(self, at: Path, base: RetryPolicy, fields: dict[str, Any]) -> RetryPolicy:
        """``base`` with ``fields`` replaced (the fields were checked one by one already)."""
        try:
            return RetryPolicy(**{**_fields_of(base), **fields})
        except ConfigurationError as exc:
            raise self.fail(at, str(exc)) from None

    def timeout(self, at: Path, value: Any) -> float | None:
        if value is None:
            return None
        if not _CHECKS["number"](value) or value <= 0:
            raise self.fail(at, f"must be a positive number of seconds, not {value!r:.60}")
        return float(value)

    def table(self, at: Path, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            what = "the document" if not at else "this"
            raise self.fail(at, f"{what} must be a table (an object), not {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(at, f"keys must be strings, not {key!r}")
            if key not in allowed:
                raise self.fail((*at, key), f"unknown key; expected one of: {', '.join(allowed)}")
        return value

    def get(self, table: Mapping[str, Any], at: Path, kind: str, required: bool = False) -> Any:
        key = at[-1]
        assert isinstance(key, str)
        if key not in table:
            if required:
                raise self.fail(at, f"missing (a {_NAMES[kind]} is required here)")
            return None
        value = table[key]
        if not _CHECKS[kind](value):
            raise self.fail(at, f"must be a {_NAMES[kind]}, not {_kind(value)} {value!r:.60}")
        if kind == "table":
            for inner in value:
                if not isinstance(inner, str):
                    raise self.fail(at, f"keys must be strings, not {inner!r}")
        return value


def _fields_of(policy: RetryPolicy) -> dict[str, Any]:
    return {f: getattr(policy, f) for f in policy.__struct_fields__}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    try:
        return _is_number(value) and math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": _finite,
    "bool": lambda v: isinstance(v, bool),
    "table": lambda v: isinstance(v, dict),
    "strings": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
}
_NAMES = {
    "string": "string",
    "int": "whole number",
    "number": "finite number",
    "bool": "boolean (true or false)",
    "table": "table (an object)",
    "strings": "list of strings",
}


def _kind(value: Any) -> str:
    names = {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if _is_number(value):
        return "a number"
    return names.get(type(value), f"a {type(value).__name__}")


def key_of(path: Path) -> str:
    """A path as the user reads it: ``steps.report.depends_on[1]``, ``steps."a.b"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
            out += f".{text}" if out else text
    return out
