"""``Pipeline``: a registered workflow made of stages, each one's result the next one's input."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, overload

from duralog.errors import ConfigurationError
from duralog.replay.definitions import REGISTRY, Registry, Step, Workflow

from ._composite import caller_module, check_name, durable, name_function, signature

I = TypeVar("I")  # noqa: E741 - the pipeline's input type, beside O, its output type
O = TypeVar("O")  # noqa: E741
N = TypeVar("N")


class Pipeline(Workflow[[I], O]):
    """A linear chain of durable stages, run as a registered workflow.

    Each stage is a ``@duralog.step`` (or a ``@duralog.workflow``, run as a child
    workflow) that takes one argument: the pipeline's input for the first stage,
    the previous stage's result for the others. Every stage is a step call in the
    log, so a crash resumes after the last completed stage, and the pipeline
    replays like any workflow. It registers under ``name`` when it is created:
    define it at module level, so that a fresh worker process and
    ``duralog --app MODULE replay`` find it.

    ``then`` adds a stage and returns the same pipeline (a builder): the stages
    are the pipeline's code, so change them only as you would change a workflow
    (check with ``duralog replay --all`` first).

    Example:
        ```python
        etl = duralog.Pipeline("nightly-etl").then(extract).then(transform).then(load)

        with duralog.Engine("etl.db") as engine:
            print(engine.run(etl, "2026-11-25"))     # load(transform(extract("2026-11-25")))
        ```

    A first stage that takes no argument makes a pipeline started without input
    (``engine.start(etl)``). Inside another workflow, ``await etl(value)`` runs it
    as a child workflow; outside any workflow it simply calls the stages in order.
    It registers as a workflow in ``registry`` (default: the default registry).
    """

    def __init__(self: Pipeline[Any, Any], name: str, *, registry: Registry | None = None) -> None:
        check_name("Pipeline", name)
        self._stages: list[Step[Any, Any] | Workflow[Any, Any]] = []
        self._takes_input = True

        async def run(input: Any = None) -> Any:
            return await self._run(input)

        name_function(run, "Pipeline", name, caller_module())
        super().__init__(run, name=name)
        (REGISTRY if registry is None else registry).add(self)

    def __repr__(self) -> str:
        chain = " -> ".join(stage.name for stage in self._stages) or "no stages"
        return f"<duralog pipeline {self.name!r}: {chain}>"

    @property
    def result_type(self) -> Any:
        """The last stage's return type: a pipeline's result decodes as that stage's."""
        return self._stages[-1].result_type if self._stages else Any

    @property
    def stages(self) -> tuple[Step[Any, Any] | Workflow[Any, Any], ...]:
        """The stages, in the order they run."""
        return tuple(self._stages)

    @overload
    def then(self, stage: Callable[[O], Awaitable[N]]) -> Pipeline[I, N]: ...
    @overload
    def then(self, stage: Callable[[], Awaitable[N]]) -> Pipeline[I, N]: ...
    def then(self, stage: Callable[..., Awaitable[N]]) -> Pipeline[I, N]:
        """Append ``stage``, which receives the previous stage's result; returns the pipeline.

        Raises ``ConfigurationError`` if ``stage`` is not a step or a workflow, or
        cannot be called with exactly one argument (the first stage may take none).
        """
        owner = f"pipeline {self.name!r}"
        found = durable(owner, stage)
        params = signature(owner, found.fn)
        first = not self._stages
        if _accepts(params, 1):
            takes_input = True
        elif first and _accepts(params, 0):
            takes_input = False
        else:
            wanted = "one argument (the pipeline input) or none" if first else "one argument"
            raise ConfigurationError(
                f"{owner}: stage {found.name!r} must take {wanted}, the previous stage's "
                f"result; its signature is {found.name}{params}"
            )
        if first:
            self._takes_input = takes_input
        self._stages.append(found)
        return cast("Pipeline[I, N]", self)

    async def _run(self, value: Any) -> Any:
        if not self._stages:
            raise ConfigurationError(
                f"pipeline {self.name!r} has no stages; add them with .then(step)"
            )
        first, *rest = self._stages
        if self._takes_input:
            value = await first(value)
        elif value is not None:
            raise ConfigurationError(
                f"pipeline {self.name!r} takes no input (its first stage {first.name!r} has no "
                f"parameter), but it was started with a value of type {type(value).__qualname__}"
            )
        else:
            value = await first()
        for stage in rest:
            value = await stage(value)
        return value


def _accepts(params: inspect.Signature, count: int) -> bool:
    try:
        params.bind(*([None] * count))
    except TypeError:
        return False
    return True
