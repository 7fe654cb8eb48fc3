"""What the worker does around a step attempt besides calling the step.

Most steps need nothing: the worker finds no guard for them (one dict lookup per
attempt) and calls them straight away. A step with injected parameters gets its
resources resolved; a step guarded by a circuit breaker is admitted first (or
failed fast) and its outcome is recorded after. The breaker's store calls run on
threads of their own (``Worker.breaker_threads``), never on the worker's loop nor
behind long sync steps.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any

from duralog.replay.definitions import Step

from .api import StepInfo
from .breaker import CircuitBreaker, circuit_of
from .resources import Injection, injections_of, resolve

if TYPE_CHECKING:
    from .execution import Execution
    from .worker import Worker


class Guard:
    """The extras of one step's attempts: injected resources, a circuit breaker."""

    def __init__(self, breaker: CircuitBreaker | None, injections: tuple[Injection, ...]) -> None:
        self.breaker = breaker
        self.injections = injections

    @staticmethod
    def of(step: Step[Any, Any]) -> Guard | None:
        """The guard ``step`` needs, or None for a plain step."""
        breaker = circuit_of(step)
        injections: tuple[Injection, ...] = getattr(step, "injections", None) or injections_of(
            step.fn
        )
        if breaker is None and not injections:
            return None
        return Guard(breaker, injections)

    async def run(
        self,
        worker: Worker,
        execution: Execution,
        step: Step[Any, Any],
        info: StepInfo,
        context: contextvars.Context,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> Any:
        """One attempt: resolve resources, pass the breaker, call, record the outcome."""
        if self.injections:
            kwargs = {**kwargs, **resolve(worker.resources, self.injections, info)}
        breaker = self.breaker
        if breaker is None:
            return await worker.attempt(execution, step, info, context, args, kwargs)
        breakers = worker.breakers
        ticket = await worker.breaker_threads.run(context, breakers.admit, breaker, info)
        try:
            value = await worker.attempt(execution, step, info, context, args, kwargs)
        except asyncio.CancelledError:
            raise  # not the dependency's doing: a silent trial is taken over later
        except Exception as exc:
            await worker.breaker_threads.run(context, breakers.failed, ticket, exc)
            raise
        await worker.breaker_threads.run(context, breakers.succeeded, ticket)
        return value
