"""``Decisions``: the decisions a run's code makes, matched in order against the log.

Every decision the code makes (call a step, start a timer or a child, record a
marker, finish) is matched against the recorded decisions not matched yet. A
mismatch is a ``NondeterminismError``; past the recorded ones a decision is new: it
gets the next seq and is kept for the caller to append. When every input has been
delivered, a recorded decision the code did not make is a divergence too.

Also here: the ``BaseException`` signals that unwind workflow code (``except
Exception:`` in user code cannot swallow them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from duralog.errors import NondeterminismError
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.envelope import PayloadCodec

from .locations import caller_location
from .state import WorkflowState


class Diverged(BaseException):
    """Unwinds workflow code after a divergence; ``except Exception`` cannot stop it."""


class Ended(BaseException):
    """Unwinds workflow code still running after its run was ended without it (a cleanup
    cut short by its grace period): whatever it tries to do is not recorded."""


class Halted(BaseException):
    """Unwinds workflow code that would make a new decision in a read-only replay (a
    query, a check): past the end of its history nothing is made, so nothing of the
    code's runs (a ``side_effect``'s function, say) outside its worker."""


class ContinueAsNew(BaseException):
    """Raised by ``duralog.continue_as_new``: ends this run; a new one starts with ``args``."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("continue as new")
        self.args_ = args
        self.kwargs_ = kwargs


class Decisions:
    """The decisions of one run: matched against the recorded ones, then new.

    Args:
        workflow_id: the run's id, for divergence reports.
        defined_at: ``file:line`` of the workflow's definition (where a terminal
            decision, or one made by duralog's own code, is reported).
    """

    def __init__(
        self,
        workflow_id: str,
        defined_at: Callable[[], str],
        payload_codec: PayloadCodec | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self._defined_at = defined_at
        self._payload_codec = payload_codec  # opens recorded patch markers
        #: The first divergence found; once set, every further decision unwinds.
        self.divergence: NondeterminismError | None = None
        #: True once the run's terminal decision is made.
        self.finished = False
        #: Read-only: the code stops (``Halted``) where it would make a new decision,
        #: and ``halted_at`` says where.
        self.read_only = False
        self.halted_at: str | None = None
        self._state: WorkflowState | None = None
        #: How many decisions the code has made (matched or new) in this run.
        self.made = 0
        self._next_seq = 0
        self._new: list[tuple[int, ev.Event]] = []

    @property
    def state(self) -> WorkflowState:
        """The folded log the decisions are matched against (set by ``begin``)."""
        assert self._state is not None, "no activation has begun"
        return self._state

    @property
    def started(self) -> bool:
        """Whether an activation has begun (``begin`` was called once)."""
        return self._state is not None

    def begin(self, state: WorkflowState, next_seq: int) -> list[tuple[int, ev.Event]]:
        """Start an activation against ``state``; new decisions get seqs from ``next_seq``.

        Returns the list the activation's new decisions are appended to.
        """
        self._state, self._next_seq, self._new = state, next_seq, []
        return self._new

    @property
    def is_replaying(self) -> bool:
        """True while recorded decisions remain to be matched."""
        return self._state is not None and self.made < len(self._state.decisions)

    def decide(self, kind: str, name: str, make: Callable[[], ev.Event]) -> tuple[int, bool]:
        """Match or make one decision; returns (seq, is_new).

        Raises ``Diverged`` (having set ``divergence``) when the recorded decision is
        another one, and ``Ended`` when the run has finished already.
        """
        if self.divergence is not None:
            # Tasks of one loop turn (gather, a DAG, map) keep deciding after the
            # first mismatch: the report must name that first one.
            raise Diverged
        if self.finished:
            raise Ended
        state = self._state
        assert state is not None, "no activation has begun"
        index = self.made
        if index < len(state.decisions):
            self.made += 1
            recorded = state.decisions[index]
            if recorded.kind != kind or recorded.name != name:
                self.divergence = NondeterminismError(
                    self.workflow_id,
                    recorded.seq,
                    recorded.describe(),
                    f"{kind} {name}".rstrip(),
                    (kind not in ev.TERMINAL_KINDS and caller_location()) or self._defined_at(),
                )
                raise Diverged
            return recorded.seq, False
        if self.read_only and kind not in ev.TERMINAL_KINDS:  # (those run no user code)
            if self.halted_at is None:
                self.halted_at = caller_location() or self._defined_at()
            raise Halted
        # make() may raise (an argument that cannot be encoded, a failing
        # side_effect): nothing is consumed unless the decision really exists.
        event = make()
        seq = self._next_seq
        self._next_seq += 1
        self.made += 1
        self._new.append((seq, event))
        return seq, True

    @property
    def next_seq(self) -> int:
        """The seq the next new decision gets."""
        return self._next_seq

    def report_unmatched(self, waiting_at: Callable[[], str | None]) -> None:
        """Make the first recorded decision not matched yet (if any) the divergence,
        reported where the code waits: the code no longer makes it (every input is
        delivered, or one refers to a call the code did not make)."""
        state = self._state
        assert state is not None, "no activation has begun"
        if self.divergence is None and self.made < len(state.decisions):
            missing = state.decisions[self.made]
            self.divergence = NondeterminismError(
                self.workflow_id, missing.seq, missing.describe(), None, waiting_at()
            )

    def consume_patch_marker(self, patch_id: str) -> bool:
        """Match the next recorded decision if it is the patch marker of ``patch_id``."""
        state = self._state
        assert state is not None, "no activation has begun"
        if self.made >= len(state.decisions):
            return False
        recorded = state.decisions[self.made]
        found = (
            recorded.kind == "MarkerRecorded"
            and recorded.name == "patch"
            and codec.decode(state.markers[recorded.seq].value, payload_codec=self._payload_codec)
            == patch_id
        )
        if found:
            self.made += 1
        return found
