"""``RunEnding``: how a run ends, and the terminal decision that records it.

The code returns (``WorkflowCompleted``), raises (``WorkflowFailed``), continues
as new (``ContinuedAsNew``) or is cancelled (``WorkflowCancelled``). A run past its
deadline fails with ``WorkflowTimeout`` however its code ended. A cancelled run
whose children still wind down ends when the last of them does; a cleanup that
outlasts its grace period is cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from duralog.errors import PayloadError, WorkflowTimeout
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.envelope import PayloadCodec

from .decisions import ContinueAsNew, Decisions, Diverged, Ended, Halted
from .definitions import Workflow
from .failures import details_of
from .loop import WorkflowLoop
from .waits import Waits


class RunEnding:
    """Decides how one run ends, from its task, its cancel requests and its children.

    Args:
        workflow: the run's definition (named in errors).
        decisions: where the terminal decision is matched or made.
        waits: the children the run still waits on.
        loop: the run's loop (its time is when a cancel request arrived).
        payload_codec: seals the result or new input the run ends with (None: none).
    """

    def __init__(
        self,
        workflow: Workflow[Any, Any],
        decisions: Decisions,
        waits: Waits,
        loop: WorkflowLoop,
        payload_codec: PayloadCodec | None = None,
    ) -> None:
        self.workflow = workflow
        self._payload_codec = payload_codec
        self.decisions = decisions
        self.waits = waits
        self.loop = loop
        #: The task running the workflow's code, once it started.
        self.task: asyncio.Task[Any] | None = None
        #: True when the run was ended without letting its code (or children) finish.
        self.cut_short = False
        #: Past its deadline: the run fails with ``WorkflowTimeout`` however its code ends.
        self.timed_out = False
        self._cancelled_at: float | None = None  # workflow time of the first cancel request
        #: The terminal decision of a run whose code ended while it was cancelled and
        #: children it started were still winding down: made when the last one ends.
        self.pending: Callable[[], None] | None = None

    def after_turn(self) -> None:
        """After a loop turn: make the terminal decision if the run ended."""
        task = self.task
        if task is None or self.decisions.finished or self.decisions.divergence is not None:
            return
        try:
            if self.pending is not None:
                if not self.waits.has_children:  # the last child wound down: it ends now
                    ending, self.pending = self.pending, None
                    ending()
                return
            if not task.done():
                return
            ending = self._ending_of(task)
            if self._format >= 2 and self._cancelled_at is not None and self.waits.has_children:
                # Cancelled, with children still winding down (they were cancelled too):
                # their cleanup runs to its end before the run ends.
                self.pending = ending
                return
            ending()
        except Diverged:
            return

    @property
    def _format(self) -> int:
        return self.decisions.state.format

    def _ending_of(self, task: asyncio.Task[Any]) -> Callable[[], None]:
        """The terminal decision for the way the workflow's code ended."""
        if self.timed_out and (task.cancelled() or self._format >= 2):
            # Past its deadline, a run fails with WorkflowTimeout however its code ended
            # (it may catch the cancellation to clean up first).
            return lambda: self.failed(self._timeout_error(), with_traceback=False)
        if task.cancelled():
            return self._cancelled
        exc = task.exception()
        if exc is None:
            result = task.result()
            return lambda: self._completed(result)
        if isinstance(exc, ContinueAsNew):
            return lambda: self._continued(exc)
        if isinstance(exc, Diverged | Ended | Halted):
            return lambda: None
        return lambda: self.failed(exc)

    def _timeout_error(self, cut_short: bool = False) -> WorkflowTimeout:
        state = self.decisions.state
        limit = (state.deadline or 0.0) - state.started_at
        message = f"workflow {self.decisions.workflow_id!r} exceeded its timeout of {limit:g}s"
        if cut_short:
            message += ", and its cleanup did not finish within its grace period"
        return WorkflowTimeout(message)

    def cancel(self, reason: str) -> None:
        """A cancel request arrived (a user's, the deadline's, or the grace period's end)."""
        task = self.task
        if self._format < 2:  # as format 1 recorded it: every request cancels
            if task is not None and not task.done():
                self.timed_out = reason == ev.TIMEOUT_REASON
                task.cancel()
            return
        if reason == ev.GRACE_REASON:
            self._cut()
            return
        if reason == ev.TIMEOUT_REASON:
            self.timed_out = True
        if self._cancelled_at is not None:
            return  # cancelled already: a cleanup under way is not interrupted again
        self._cancelled_at = self.loop.time()
        if task is not None and not task.done():
            task.cancel()

    def _cut(self) -> None:
        """The cleanup grace period is over: end the run now, without what its code (or
        its children) still had to do."""
        if self.decisions.finished:
            return
        self.cut_short = True
        if self.timed_out:
            ending: Callable[[], None] = lambda: self.failed(  # noqa: E731
                self._timeout_error(cut_short=True), with_traceback=False
            )
        elif self.pending is not None:
            ending = self.pending
        else:
            ending = self._cancelled
        self.pending = None
        try:
            ending()
        except Diverged:
            return
        task = self.task
        if task is not None and not task.done():
            task.cancel()  # unwind it: anything it still tries to do raises Ended
            with contextlib.suppress(BaseException):
                self.loop.run_until_idle()

    def grace_from(self) -> float | None:
        """The workflow time from which a cleanup grace period counts, while one runs:
        the deadline of a run that timed out, or the first cancel request of a run
        whose code ended but whose children still wind down. None otherwise."""
        if not self.timed_out and self.pending is None:
            return None  # (the usual answer, without asking the state)
        if self.decisions.finished or not self.decisions.started or self._format < 2:
            return None
        if self.timed_out:
            return self.decisions.state.deadline
        if self.pending is not None:
            return self._cancelled_at
        return None

    def _end(self, kind: str, make: Callable[[], ev.Event]) -> None:
        self.decisions.decide(kind, "", make)
        self.decisions.finished = True

    def _cancelled(self) -> None:
        self._end("WorkflowCancelled", lambda: ev.WorkflowCancelled())

    def cancelled(self) -> None:
        """End the run with ``WorkflowCancelled`` before its code ran (cancelled on its
        queue); raises ``Diverged`` if the history says otherwise."""
        self._cancelled()

    def _completed(self, value: Any) -> None:
        try:
            result = codec.encode(value, self._payload_codec)
        except PayloadError as exc:
            self.failed(
                PayloadError(
                    f"workflow {self.workflow.name!r} returned a value that cannot be "
                    f"recorded: {exc}; {codec.SUPPORTED_HINT}"
                ),
                with_traceback=False,
            )
            return
        self._end("WorkflowCompleted", lambda: ev.WorkflowCompleted(result=result))

    def _continued(self, request: ContinueAsNew) -> None:
        try:
            args, kwargs = codec.encode_call(request.args_, request.kwargs_, self._payload_codec)
        except PayloadError as exc:
            self.failed(
                PayloadError(
                    f"workflow {self.workflow.name!r} continued as new with input that "
                    f"cannot be recorded: {exc}; {codec.SUPPORTED_HINT}"
                ),
                with_traceback=False,
            )
            return
        self._end("ContinuedAsNew", lambda: ev.ContinuedAsNew(args=args, kwargs=kwargs))

    def failed(self, exc: BaseException, with_traceback: bool = True) -> None:
        """End the run with ``WorkflowFailed``, carrying ``exc``."""
        details = details_of(exc, with_traceback)
        self._end("WorkflowFailed", lambda: ev.WorkflowFailed(error=details))
