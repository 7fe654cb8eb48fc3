"""What a fork copies (``replay/forks.py``): every seq either gives a foldable prefix
or is refused, and it is refused exactly when it cuts a step or a child in two."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duralog.errors import ConfigurationError
from duralog.replay.forks import fork_history
from duralog.replay.state import fold_all
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.events import LogEntry

T0 = 1_700_000_000.0


def history(order: list[int], steps: int, end: bool) -> list[LogEntry]:
    """``steps`` steps scheduled at once (a gather), completed in ``order``."""
    events: list[ev.Event] = [ev.WorkflowStarted(name="job", args=codec.encode([1]), run_id="r1")]
    events += [ev.StepScheduled(name=f"s{i}", args=codec.encode([i])) for i in range(steps)]
    events += [ev.StepCompleted(step_seq=2 + i, result=codec.encode(i)) for i in order]
    if end:
        events.append(ev.WorkflowCompleted(result=codec.encode(None)))
    return [LogEntry(seq, T0 + seq, e) for seq, e in enumerate(events, 1)]


@st.composite
def gathers(draw: st.DrawFn) -> tuple[list[LogEntry], int]:
    steps = draw(st.integers(0, 5))
    order = draw(st.permutations(range(steps)))
    done = draw(st.integers(0, steps))  # how many completed
    entries = history(list(order[:done]), steps, end=done == steps and draw(st.booleans()))
    return entries, draw(st.integers(-1, len(entries) + 2))


@given(gathers())
def test_a_seq_gives_a_foldable_prefix_or_is_refused_for_a_cut_step(
    case: tuple[list[LogEntry], int],
) -> None:
    entries, seq = case
    last = entries[-1]
    end = last.seq if last.kind in ev.TERMINAL_KINDS else last.seq + 1
    completed = {e.event.step_seq: e.seq for e in entries if isinstance(e.event, ev.StepCompleted)}
    cut = any(s < seq <= done for s, done in completed.items())
    if not 2 <= seq <= end or cut:
        with pytest.raises(ConfigurationError, match=f"cannot fork workflow 'src' from seq {seq}"):
            fork_history("src", entries, seq, at=T0 + 1000, run_id="r2")
        return
    first = fork_history("src", entries, seq, at=T0 + 1000, run_id="r2")
    assert [e.seq for e in first] == list(range(1, seq))
    assert first[1:] == entries[1 : seq - 1]
    state = fold_all("fork", first)
    assert (state.run_id, state.started_at) == ("r2", T0 + 1000)
    assert state.forked_from == ev.ForkOrigin(workflow_id="src", run=1, run_id="r1", seq=seq)


def test_a_child_not_yet_ended_cannot_be_copied() -> None:
    entries = [
        LogEntry(1, T0, ev.WorkflowStarted(name="job", args=codec.encode([]))),
        LogEntry(2, T0, ev.ChildStarted(child_id="src/2", name="kid", args=codec.encode([]))),
    ]
    with pytest.raises(ConfigurationError, match="inside child workflow 'src/2', begun at seq 2;"):
        fork_history("src", entries, 3, at=T0, run_id="r2")
    assert len(fork_history("src", entries, 2, at=T0, run_id="r2")) == 1


def test_a_paused_workflow_is_not_forked_while_paused() -> None:
    entries = [
        LogEntry(1, T0, ev.WorkflowStarted(name="job", args=codec.encode([]))),
        LogEntry(2, T0, ev.PauseRequested(reason="outage")),
        LogEntry(3, T0, ev.ResumeRequested()),
    ]
    with pytest.raises(ConfigurationError, match=r"paused there .*seq 2"):
        fork_history("src", entries, 3, at=T0, run_id="r2")
    assert len(fork_history("src", entries, 4, at=T0, run_id="r2")) == 3


def test_a_fork_answers_to_no_parent_and_times_out_from_its_own_start() -> None:
    started = ev.WorkflowStarted(
        name="kid", args=codec.encode([]), parent_id="p", parent_seq=4, timeout=60.0, run=3
    )
    first = fork_history("p/4", [LogEntry(1, T0, started)], 2, at=T0 + 500, run_id="r2")
    event = first[0].event
    assert isinstance(event, ev.WorkflowStarted)
    assert (event.parent_id, event.parent_seq, event.run, event.previous_run) == (
        None,
        None,
        1,
        None,
    )
    assert first[0].at == T0  # the copies' times follow seq 1's, as in the source
    state = fold_all("fork", first)
    assert (state.started_at, state.deadline) == (T0 + 500, T0 + 560)


def test_a_restart_runs_under_todays_format_and_a_fork_keeps_its_copies() -> None:
    entries = history([0], 1, end=True)  # recorded in format 1 (WorkflowStarted's default)

    def format_of(seq: int) -> int:
        started = fork_history("src", entries, seq, at=T0, run_id="r2")[0].event
        assert isinstance(started, ev.WorkflowStarted)
        return started.format

    assert format_of(2) == ev.FORMAT_VERSION  # a restart copies no decision
    assert format_of(4) == 1  # the copied step was scheduled under format 1's rules
