"""``DAG``: tasks with dependencies, run durably with bounded parallelism, as a workflow.

Scheduling runs on the workflow's deterministic loop: whenever a task finishes,
every task whose dependencies are all done is started, in definition order, up
to ``max_parallel`` at a time. Each start is a step call in the log, so replay
makes the same calls in the same order whatever order the steps finished in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from duralog.errors import (
    ConfigurationError,
    DAGCycleError,
    MissingDependencyError,
    PayloadError,
)
from duralog.replay.definitions import REGISTRY, Registry, Step, Workflow
from duralog.store import codec

from ._composite import (
    caller_module,
    check_max_parallel,
    check_name,
    durable,
    name_function,
    signature,
)
from .resources import injections_of


@dataclasses.dataclass(frozen=True, init=False)
class Task:
    """One node of a ``DAG``: a step (or a child workflow), its dependencies and fixed arguments.

    Args:
        step: a ``@duralog.step`` (or a ``@duralog.workflow``, run as a child workflow).
        name: the task's name in the DAG (default: the function's ``__name__``).
        depends_on: the names of the tasks that must finish first (one name or several).
            A dependency's result is passed to the step as the keyword argument of the
            same name when the step has such a parameter; otherwise the dependency only
            orders the two tasks.
        params: fixed keyword arguments for the step.

    The step's other parameters are filled, by name, from the mapping the DAG is
    started with (``engine.start(dag, {"day": "2026-11-25"})``), or keep their defaults.
    """

    step: Step[Any, Any] | Workflow[Any, Any]
    name: str
    depends_on: tuple[str, ...]
    params: Mapping[str, Any]

    def __init__(
        self,
        step: Step[Any, Any] | Workflow[Any, Any],
        *,
        name: str | None = None,
        depends_on: str | Iterable[str] = (),
        params: Mapping[str, Any] | None = None,
    ) -> None:
        found = durable("duralog.Task", step)
        label = name if name is not None else getattr(found.fn, "__name__", found.name)
        if not isinstance(label, str) or not label:
            raise ConfigurationError(f"a DAG task name must be a non-empty string, got {name!r}")
        deps = (depends_on,) if isinstance(depends_on, str) else tuple(depends_on)
        if not all(isinstance(d, str) for d in deps):
            raise ConfigurationError(f"task {label!r}: depends_on must name tasks, got {deps!r}")
        if params is not None and not isinstance(params, Mapping):
            raise ConfigurationError(f"task {label!r}: params must be a mapping, got {params!r}")
        object.__setattr__(self, "step", found)
        object.__setattr__(self, "name", label)
        object.__setattr__(self, "depends_on", deps)
        object.__setattr__(self, "params", dict(params or {}))


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How one task is called: which dependencies and inputs become which arguments."""

    task: Task
    index: int
    passed: tuple[str, ...]  # dependencies whose result is passed (by name)
    inputs: tuple[str, ...]  # parameters filled from the DAG's input, when present there
    required: tuple[str, ...]  # of those, the ones without a default


class DAG(Workflow[..., dict[str, Any]]):
    """Tasks with dependencies, run durably with maximum parallelism, as a registered workflow.

    Independent tasks run at once, at most ``max_parallel`` at a time (None: no
    bound); a task starts as soon as every task it depends on has finished, and
    receives their results as keyword arguments named after them. Each task is a
    step call in the log: a crash resumes without re-running finished tasks, and
    the DAG replays deterministically. The result is ``{name: result}`` for the
    tasks nothing depends on (the sinks).

    Cycles, unknown dependencies, duplicate names and parameters a step does not
    take are ``ConfigurationError``s here, at definition time (``DAGCycleError``
    and ``MissingDependencyError`` name the cycle and the missing task).

    When a task fails, no further task starts, the running ones finish, and the
    first failure is raised (a ``StepFailed``, with a note naming the task).

    The DAG registers under ``name`` when it is created; define it at module level
    so that a fresh worker process and ``duralog replay`` find it.

    Example:
        ```python
        report = duralog.DAG(
            "daily-report",
            [
                duralog.Task(fetch_users),
                duralog.Task(fetch_orders),
                duralog.Task(render, depends_on=["fetch_users", "fetch_orders"]),
            ],
            max_parallel=2,
        )
        engine.run(report, {"day": "2026-11-25"})    # {"render": ...}
        ```

    Args:
        name: the workflow name.
        tasks: the tasks, in the order ties are started.
        max_parallel: how many tasks may run at once (None: no bound).
        defaults: input values used when the start input does not give them.
        registry: where the DAG registers as a workflow (default: the default registry).
    """

    def __init__(
        self,
        name: str,
        tasks: Iterable[Task],
        *,
        max_parallel: int | None = None,
        defaults: Mapping[str, Any] | None = None,
        registry: Registry | None = None,
        _site: str | None = None,
    ) -> None:
        check_name("DAG", name)
        self.max_parallel = check_max_parallel(f"DAG {name!r}", max_parallel)
        self.tasks: tuple[Task, ...] = tuple(tasks)
        self.defaults: dict[str, Any] = dict(defaults or {})
        self._plans = _plan(name, self.tasks)
        accepted = {p for plan in self._plans.values() for p in plan.inputs}
        for key in self.defaults:
            if key not in accepted:
                raise ConfigurationError(
                    f"DAG {name!r}: defaults has {key!r}, which no task takes as an input "
                    f"(inputs: {', '.join(sorted(accepted)) or 'none'})"
                )
        self._check_encodable(name)
        self._dependants: dict[str, list[str]] = {t.name: [] for t in self.tasks}
        for task in self.tasks:
            for dep in task.depends_on:
                self._dependants[dep].append(task.name)
        #: The tasks nothing depends on, whose results the DAG returns.
        self.sinks = tuple(t.name for t in self.tasks if not self._dependants[t.name])

        async def run(inputs: dict[str, Any] | None = None) -> dict[str, Any]:
            return await self._run(inputs)

        name_function(run, "DAG", name, caller_module(), _site)
        super().__init__(run, name=name)
        (REGISTRY if registry is None else registry).add(self)

    def __repr__(self) -> str:
        return f"<duralog DAG {self.name!r}: {len(self.tasks)} tasks>"

    def _check_encodable(self, name: str) -> None:
        for what, value in [("defaults", self.defaults)] + [
            (f"the params of task {t.name!r}", t.params) for t in self.tasks
        ]:
            try:
                codec.encode(value)
            except PayloadError as exc:
                raise ConfigurationError(
                    f"DAG {name!r}: {what} cannot be recorded: {exc}"
                ) from None

    def _arguments(self, given: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Each task's input arguments; ``ConfigurationError`` for a missing or unknown input."""
        values = {**self.defaults, **given}
        accepted = {p for plan in self._plans.values() for p in plan.inputs}
        unknown = sorted(set(given) - accepted)
        if unknown:
            raise ConfigurationError(
                f"DAG {self.name!r} was started with input {', '.join(map(repr, unknown))}, "
                f"which no task takes (inputs: {', '.join(sorted(accepted)) or 'none'})"
            )
        out: dict[str, dict[str, Any]] = {}
        for plan in self._plans.values():
            missing = [p for p in plan.required if p not in values]
            if missing:
                raise ConfigurationError(
                    f"DAG {self.name!r}: task {plan.task.name!r} needs input "
                    f"{', '.join(map(repr, missing))}; start the DAG with "
                    f"{{{', '.join(f'{m!r}: ...' for m in missing)}}}"
                )
            out[plan.task.name] = {p: values[p] for p in plan.inputs if p in values}
        return out

    async def _run(self, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, Mapping):
            raise ConfigurationError(
                f"DAG {self.name!r} takes a mapping of input names to values, got {inputs!r}"
            )
        arguments = self._arguments(inputs)
        results: dict[str, Any] = {}
        failures: list[tuple[str, Exception]] = []
        blocked = {name: len(plan.task.depends_on) for name, plan in self._plans.items()}
        ready = [plan.index for plan in self._plans.values() if not plan.task.depends_on]
        running: dict[asyncio.Future[Any], str] = {}
        finished: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()  # in the order they end
        limit = self.max_parallel or len(self.tasks)
        try:
            while ready or running:
                while ready and not failures and len(running) < limit:
                    plan = self._plans[self.tasks[heapq.heappop(ready)].name]
                    call = asyncio.ensure_future(
                        self._call(plan, results, arguments[plan.task.name])
                    )
                    call.add_done_callback(finished.put_nowait)
                    running[call] = plan.task.name
                if not running:
                    break  # a failure stopped the rest
                future = await finished.get()
                name = running.pop(future)
                error = future.exception()
                if error is None:
                    results[name] = future.result()
                    for dependant in self._dependants[name]:
                        blocked[dependant] -= 1
                        if not blocked[dependant]:
                            heapq.heappush(ready, self._plans[dependant].index)
                elif isinstance(error, Exception):
                    failures.append((name, error))
                else:  # a divergence or another control-flow signal: unwind at once
                    raise error
        finally:
            for future in running:
                future.remove_done_callback(finished.put_nowait)
                future.cancel()
        if failures:
            started = set(results) | {name for name, _ in failures}
            raise self._failure(failures, [t.name for t in self.tasks if t.name not in started])
        return {name: results[name] for name in self.sinks}

    @staticmethod
    async def _call(plan: _Plan, results: Mapping[str, Any], inputs: dict[str, Any]) -> Any:
        task = plan.task
        kwargs = {**inputs, **task.params, **{dep: results[dep] for dep in plan.passed}}
        return await task.step(**kwargs)

    def _failure(self, failures: list[tuple[str, Exception]], waiting: list[str]) -> Exception:
        name, error = failures[0]
        others = ", ".join(repr(n) for n, _ in failures[1:])
        note = f"in DAG {self.name!r}, task {name!r} failed"
        if others:
            note += f"; tasks {others} failed too"
        if waiting:
            note += f"; not started: {', '.join(waiting)}"
        error.add_note(note)
        return error


def _plan(dag: str, tasks: tuple[Task, ...]) -> dict[str, _Plan]:
    """Check the tasks and work out how each is called; raises ``ConfigurationError``."""
    if not tasks:
        raise ConfigurationError(f"DAG {dag!r} has no tasks")
    by_name: dict[str, Task] = {}
    for task in tasks:
        if not isinstance(task, Task):
            raise ConfigurationError(f"DAG {dag!r}: {task!r} is not a duralog.Task")
        if task.name in by_name:
            raise ConfigurationError(
                f"DAG {dag!r} has two tasks named {task.name!r}; give one of them name=..."
            )
        by_name[task.name] = task
    for task in tasks:
        seen: set[str] = set()
        for dep in task.depends_on:
            if dep not in by_name:
                raise MissingDependencyError(dag, task.name, dep, by_name)
            if dep in seen:
                raise ConfigurationError(
                    f"DAG {dag!r}: task {task.name!r} lists {dep!r} twice in depends_on"
                )
            seen.add(dep)
    cycle = _find_cycle(tasks)
    if cycle:
        raise DAGCycleError(dag, cycle)
    return {task.name: _plan_task(dag, index, task) for index, task in enumerate(tasks)}


def _plan_task(dag: str, index: int, task: Task) -> _Plan:
    owner = f"DAG {dag!r}, task {task.name!r}"
    params = signature(owner, task.step.fn).parameters.values()
    # Injected parameters (duralog.inject) come from the engine, never from the DAG.
    injected = {i.param for i in injections_of(task.step.fn)}
    named = {
        p.name: p
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in injected
    }
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    for p in params:
        if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
            raise ConfigurationError(
                f"{owner}: step {task.step.name!r} has the positional-only parameter "
                f"{p.name!r}; DAG tasks are called with keyword arguments"
            )
    for key in task.params:
        if key in injected:
            raise ConfigurationError(
                f"{owner}: {key!r} is injected from the engine's resources (duralog.inject); "
                "it cannot be a param (it would be recorded in the log)"
            )
        if key in task.depends_on:
            raise ConfigurationError(
                f"{owner}: {key!r} is both a dependency and a param; rename one of them"
            )
        if key not in named and not open_kwargs:
            raise ConfigurationError(
                f"{owner}: step {task.step.name!r} has no parameter {key!r} for params "
                f"(its parameters: {', '.join(named) or 'none'})"
            )
    passed = tuple(d for d in task.depends_on if d in named or open_kwargs)
    inputs = tuple(p for p in named if p not in passed and p not in task.params)
    required = tuple(p for p in inputs if named[p].default is inspect.Parameter.empty)
    return _Plan(task, index, passed, inputs, required)


def _find_cycle(tasks: tuple[Task, ...]) -> tuple[str, ...]:
    """The first dependency cycle, in definition order, as ``(a, b, ..., a)``; or ``()``.

    ``a -> b`` reads "a depends on b". Iterative, so a long chain cannot overflow the stack.
    """
    deps = {task.name: task.depends_on for task in tasks}
    done: set[str] = set()
    for root in deps:
        if root in done:
            continue
        path = [root]
        on_path = {root}
        stack = [iter(deps[root])]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
            elif dep in on_path:
                return (*path[path.index(dep) :], dep)
            elif dep not in done:
                path.append(dep)
                on_path.add(dep)
                stack.append(iter(deps[dep]))
    return ()
