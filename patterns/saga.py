"""``Saga``: compensations recorded as a workflow goes, run durably in reverse on failure."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, ParamSpec

from duralog.errors import CompensationFailed, ConfigurationError, PayloadError
from duralog.replay.definitions import Step
from duralog.store import codec

P = ParamSpec("P")


class Saga:
    """Record a compensation for each completed step; undo them in reverse on failure.

    Used as ``async with duralog.Saga() as saga:`` in a workflow. When the block
    raises an exception (or the workflow is cancelled inside it), the recorded
    compensations run as durable steps, newest first, each retried by its own
    step's ``RetryPolicy``; then the original exception propagates. A
    compensation that still fails does not stop the others: once all have run,
    ``CompensationFailed`` is raised (its ``cause`` is the original exception and
    ``failures`` the compensations' errors). A block that ends normally discards
    the compensations.

    The list of compensations lives in the workflow's memory and is rebuilt by
    replay like every other workflow variable, so after a crash the same
    compensations, in the same order, are known; compensations that completed
    before the crash are in the log and do not run again.

    Example:
        ```python
        @duralog.workflow
        async def book_trip(trip: Trip) -> str:
            async with duralog.Saga() as saga:
                flight = await book_flight(trip)
                saga.add_compensation(cancel_flight, flight)
                hotel = await book_hotel(trip)
                saga.add_compensation(cancel_hotel, hotel)
                await charge(trip)                   # fails: cancel_hotel, then cancel_flight
            return f"booked {flight} and {hotel}"
        ```

    A step that may have acted even though it failed (a timeout after the remote
    side committed) needs its compensation registered *before* the call, and the
    compensation must then cope with there being nothing to undo.

    Args:
        parallel: run the compensations all at once instead of one by one, newest
            first (for independent undo actions; default False).
    """

    def __init__(self, *, parallel: bool = False) -> None:
        self.parallel = parallel
        self._compensations: list[tuple[Step[Any, Any], tuple[Any, ...], dict[str, Any]]] = []

    def __repr__(self) -> str:
        names = ", ".join(step.name for step, _, _ in self._compensations)
        return f"<duralog Saga [{names}]>"

    def add_compensation(self, step: Step[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Record ``step(*args, **kwargs)`` to run if the saga fails.

        ``step`` must be a ``@duralog.step``; its arguments are checked to be
        recordable now, so a bad one fails here, not in the middle of a rollback.
        """
        if not isinstance(step, Step):
            raise ConfigurationError(
                f"a saga compensation must be a @duralog.step (so that it runs durably and "
                f"is retried), got {step!r}"
            )
        try:
            codec.encode_call(args, kwargs)
        except PayloadError as exc:
            raise PayloadError(
                f"the arguments of compensation {step.name!r} cannot be recorded: {exc}"
            ) from None
        self._compensations.append((step, args, dict(kwargs)))

    @property
    def compensations(self) -> list[str]:
        """The names of the recorded compensations, oldest first."""
        return [step.name for step, _, _ in self._compensations]

    async def compensate(self) -> None:
        """Run the recorded compensations now, newest first, and forget them.

        For a rollback decided by the workflow itself rather than by an exception.
        Raises ``CompensationFailed`` if any of them failed.
        """
        await self._rollback(None)

    async def __aenter__(self) -> Saga:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Only real failures compensate: duralog's own control flow (a divergence
        # unwinding, continue-as-new) derives from BaseException and passes through.
        if exc is None or not isinstance(exc, Exception | asyncio.CancelledError):
            self._compensations.clear()
            return
        await self._rollback(exc)

    async def _rollback(self, cause: BaseException | None) -> None:
        todo = list(reversed(self._compensations))
        self._compensations.clear()
        calls = [asyncio.ensure_future(step(*args, **kwargs)) for step, args, kwargs in todo[:1]]
        if self.parallel:
            calls += [asyncio.ensure_future(step(*a, **k)) for step, a, k in todo[1:]]
        failures: list[Exception] = []
        cancelled = False
        for index, (step, args, kwargs) in enumerate(todo):
            if index == len(calls):  # one by one: the next starts when the previous ended
                calls.append(asyncio.ensure_future(step(*args, **kwargs)))
            error, interrupted = await _settle(calls[index])
            cancelled = cancelled or interrupted
            if error is not None:
                failures.append(error)
        if failures:  # outranks a cancel: someone has to look at what was left undone
            raise CompensationFailed(cause, failures, len(todo)) from cause
        if cancelled:  # a cancel that arrived during the rollback, honoured after it
            raise asyncio.CancelledError


async def _settle(call: asyncio.Future[Any]) -> tuple[Exception | None, bool]:
    """Wait for ``call`` even through cancellation: its error, and whether a cancel came.

    A compensation must not be abandoned half-way because the workflow was
    cancelled while it ran (Temporal runs them in a detached scope for the same
    reason), so a cancel is remembered and re-raised once the rollback is done.
    """
    cancelled = False
    while not call.done():
        try:
            await asyncio.shield(call)
        except asyncio.CancelledError:
            cancelled = cancelled or not call.done()
        except Exception:
            pass  # read from the future below
    if call.cancelled():
        return None, True
    error = call.exception()
    if error is not None and not isinstance(error, Exception):
        raise error  # a control-flow signal (a divergence unwinding): pass it on
    return error, cancelled
