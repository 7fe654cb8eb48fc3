"""What a fork copies: the pure half of ``handle.fork`` and ``handle.restart``.

A fork is a new workflow whose log starts as a copy of its source's events before
seq N, then runs with the code deployed now. ``fork_history`` checks N against the
source's history and returns the fork's first events: a new ``WorkflowStarted``
(a new run id, ``forked_from`` naming the source) and the copied events, seq 2 to
N - 1, as they are (payloads stay sealed: the fork must be read with the same
keys). Nothing here reads a store or a clock; the engine writes what it returns.

N is refused (``ConfigurationError``, saying which seqs would do) when:

- it is out of range: 2 <= N <= the source's last seq + 1, and never past its
  terminal event (a fork that copied the end would have nothing left to run);
- it cuts a step or a child in two: after its ``StepScheduled``/``ChildStarted``,
  up to its completion or failure. Fork from the decision to run it again with the
  new code, or after its end to keep its result. (A step that never ended in the
  source runs again in the fork, as after a crash; a child never ended belongs to
  the source, so that is refused too.)
- the source is paused there (after a ``PauseRequested`` not yet resumed).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from duralog.errors import ConfigurationError
from duralog.store import events as ev
from duralog.store.events import LogEntry


def fork_history(
    source_id: str,
    entries: Sequence[LogEntry],
    from_seq: int,
    *,
    at: float,
    run_id: str,
) -> list[LogEntry]:
    """The first events of a fork of ``source_id`` (whose history is ``entries``) from
    ``from_seq``: its ``WorkflowStarted``, started at ``at`` with ``run_id``, then copies of the
    source's events 2 to ``from_seq - 1``. ``ConfigurationError`` for a refused seq
    (see the module docstring)."""
    if not entries or not isinstance(entries[0].event, ev.WorkflowStarted):
        raise ConfigurationError(f"workflow {source_id!r} has no WorkflowStarted to fork from")
    _check_seq(source_id, entries, from_seq)
    source = entries[0].event
    started = msgspec.structs.replace(
        source,
        start_time=at,
        parent_id=None,  # a fork answers to nobody: its source's parent waits for the source
        parent_seq=None,
        run=1,
        previous_run=None,
        run_id=run_id,
        # It runs now, and holds no dedup id: its source may still hold it.
        start_at=None,
        dedup_id=None,
        forked_from=ev.ForkOrigin(
            workflow_id=source_id, run=source.run, run_id=source.run_id, seq=from_seq
        ),
        # A restart copies no decision: it runs under today's rules. A fork keeps the
        # format its copies were made under (format 1 scheduled steps at the call).
        format=ev.FORMAT_VERSION if from_seq == 2 else source.format,
    )
    # Seq 1 keeps its source's time, so the copies' times follow it as they did; the
    # fork's own start (``start_time``, from which its timeout counts) is ``at``.
    return [LogEntry(1, entries[0].at, started), *entries[1 : from_seq - 1]]


def _check_seq(source_id: str, entries: Sequence[LogEntry], from_seq: int) -> None:
    last = entries[-1]
    end = last.seq if last.kind in ev.TERMINAL_KINDS else last.seq + 1
    if isinstance(from_seq, bool) or not isinstance(from_seq, int):
        raise ConfigurationError(f"--from-seq must be a whole number, not {from_seq!r}")
    if not 2 <= from_seq <= end:
        ended = f" (its {last.kind} at seq {last.seq} is never copied)" if end == last.seq else ""
        raise ConfigurationError(
            f"cannot fork workflow {source_id!r} from seq {from_seq}: choose a seq from 2 "
            f"(restart: copy nothing but its start) to {end}{ended}"
        )
    cut = _cut(entries, from_seq)
    if cut is not None:
        what, begun, ended_at = cut
        keep = f", or from seq {ended_at + 1} to keep its result" if ended_at else ""
        raise ConfigurationError(
            f"cannot fork workflow {source_id!r} from seq {from_seq}: that is inside {what}, "
            f"begun at seq {begun}"
            + (f" and ended at seq {ended_at}" if ended_at else "")
            + f"; fork from seq {begun} to run it again with the current code{keep}"
        )
    paused = _paused_at(entries, from_seq)
    if paused is not None:
        raise ConfigurationError(
            f"cannot fork workflow {source_id!r} from seq {from_seq}: it is paused there "
            f"(PauseRequested at seq {paused}); fork from seq {paused} or from after its resume"
        )


def _cut(entries: Sequence[LogEntry], from_seq: int) -> tuple[str, int, int | None] | None:
    """The step or child ``from_seq`` cuts in two, if any: (what, its seq, where it ended;
    None for a child that never ended)."""
    begun: dict[int, str] = {}
    ended: dict[int, int] = {}
    for entry in entries:
        event = entry.event
        if isinstance(event, ev.StepScheduled):
            begun[entry.seq] = f"step {event.name!r}"
        elif isinstance(event, ev.ChildStarted):
            begun[entry.seq] = f"child workflow {event.child_id!r}"
        elif isinstance(event, ev.StepCompleted | ev.StepFailed):
            ended[event.step_seq] = entry.seq
        elif isinstance(event, ev.ChildCompleted | ev.ChildFailed):
            ended[event.child_seq] = entry.seq
    for seq, what in begun.items():
        if seq >= from_seq:
            break
        end = ended.get(seq)
        if end is not None and end >= from_seq:
            return what, seq, end
        if end is None and what.startswith("child"):
            return what, seq, None
    return None


def _paused_at(entries: Sequence[LogEntry], from_seq: int) -> int | None:
    paused = None
    for entry in entries[: from_seq - 1]:
        if isinstance(entry.event, ev.PauseRequested):
            paused = entry.seq
        elif isinstance(entry.event, ev.ResumeRequested):
            paused = None
    return paused
