"""``fold`` and snapshots: a snapshot at any seq plus the tail is the whole history."""

from __future__ import annotations

import typing

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from duralog.errors import ErrorDetails
from duralog.replay.state import (
    STEP_COMPLETED,
    STEP_FAILED,
    STEP_RETRYING,
    STEP_RUNNING,
    WorkflowState,
    dump_state,
    fold,
    fold_all,
    load_state,
    new_state,
)
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.events import LogEntry

WID = "order-42"
T0 = 1_700_000_000.0

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
payloads = json_values.map(codec.encode)
errors = st.builds(ErrorDetails, st.text(max_size=10), st.text(max_size=10), st.text(max_size=10))
step_names = st.sampled_from(["reserve", "charge", "ship", "notify"])


@st.composite
def histories(draw: st.DrawFn, max_events: int = 40) -> list[LogEntry]:
    """A valid history: WorkflowStarted, a mix of decisions and inputs, maybe a terminal event."""
    at = draw(st.floats(min_value=0, max_value=T0))
    entries = [
        LogEntry(
            1,
            at,
            ev.WorkflowStarted(
                name="checkout",
                args=draw(payloads),
                kwargs=draw(st.just(ev.NULL) | payloads),
                parent_id=draw(st.none() | st.just("parent-1")),
                start_time=at,
            ),
        )
    ]
    steps: dict[int, str] = {}  # seq -> "scheduled" | "running" | "done"
    attempts: dict[int, int] = {}
    timers: dict[int, bool] = {}  # seq -> fired
    children: dict[int, bool] = {}  # seq -> finished

    for _ in range(draw(st.integers(min_value=0, max_value=max_events))):
        seq = len(entries) + 1
        at += draw(st.sampled_from([0.0, 0.001, 1.0]) | st.floats(0, 3600))
        open_steps = [s for s, v in steps.items() if v != "done"]
        running = [s for s, v in steps.items() if v == "running"]
        unfired = [t for t, fired in timers.items() if not fired]
        live_children = [c for c, done in children.items() if not done]
        choices = [
            op
            for op, ok in [
                ("schedule", True),
                ("start", bool(open_steps)),
                ("retry", bool(running)),
                ("complete", bool(open_steps)),
                ("fail", bool(open_steps)),
                ("timer", True),
                ("fire", bool(unfired)),
                ("marker", True),
                ("signal", True),
                ("cancel", True),
                ("child", True),
                ("child_done", bool(live_children)),
            ]
            if ok
        ]
        op = draw(st.sampled_from(choices))
        event: ev.Event
        if op == "schedule":
            event = ev.StepScheduled(name=draw(step_names), args=draw(payloads))
            steps[seq], attempts[seq] = "scheduled", 0
        elif op == "start":
            s = draw(st.sampled_from(open_steps))
            attempts[s] += 1
            steps[s] = "running"
            event = ev.StepStarted(step_seq=s, attempt=attempts[s])
        elif op == "retry":
            s = draw(st.sampled_from(running))
            steps[s] = "scheduled"
            event = ev.StepRetrying(
                step_seq=s,
                attempt=attempts[s],
                error=draw(errors),
                next_attempt_at=at + draw(st.floats(0, 60)),
            )
        elif op == "complete":
            s = draw(st.sampled_from(open_steps))
            steps[s] = "done"
            event = ev.StepCompleted(step_seq=s, result=draw(payloads))
        elif op == "fail":
            s = draw(st.sampled_from(open_steps))
            steps[s] = "done"
            event = ev.StepFailed(step_seq=s, attempt=max(attempts[s], 1), error=draw(errors))
        elif op == "timer":
            event = ev.TimerStarted(fire_at=at + draw(st.floats(0, 86400)))
            timers[seq] = False
        elif op == "fire":
            t = draw(st.sampled_from(unfired))
            timers[t] = True
            event = ev.TimerFired(timer_seq=t)
        elif op == "marker":
            event = ev.MarkerRecorded(
                marker=draw(st.sampled_from(["now", "random", "uuid", "side_effect", "patch"])),
                value=draw(payloads),
            )
        elif op == "signal":
            event = ev.SignalReceived(
                name=draw(st.sampled_from(["approve", "cancel-order"])), payload=draw(payloads)
            )
        elif op == "cancel":
            event = ev.CancelRequested(reason=draw(st.text(max_size=5)))
        elif op == "child":
            event = ev.ChildStarted(child_id=f"{WID}/{seq}", name="sub", args=draw(payloads))
            children[seq] = False
        else:
            c = draw(st.sampled_from(live_children))
            children[c] = True
            event = draw(
                st.builds(ev.ChildCompleted, child_seq=st.just(c), result=payloads)
                | st.builds(ev.ChildFailed, child_seq=st.just(c), error=errors)
            )
        entries.append(LogEntry(seq, at, event))

    terminal = draw(
        st.none()
        | st.builds(ev.WorkflowCompleted, result=payloads)
        | st.builds(ev.WorkflowFailed, error=errors)
        | st.builds(ev.WorkflowCancelled, reason=st.text(max_size=5))
        | st.builds(ev.ContinuedAsNew, args=payloads)
    )
    if terminal is not None:
        entries.append(LogEntry(len(entries) + 1, at + 1, terminal))
    return entries


def encoded(state: WorkflowState) -> bytes:
    return msgspec.json.encode(state)


@given(histories())
def test_snapshot_at_every_seq_plus_tail_equals_full_fold(entries: list[LogEntry]) -> None:
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    full = encoded(fold_all(WID, entries))
    for n in range(len(entries) + 1):
        data, check = dump_state(fold_all(WID, entries[:n]), None)
        state = load_state(data, check)
        assert state is not None
        for entry in entries[n:]:
            state = fold(state, entry)
        assert encoded(state) == full, f"snapshot at seq {n} then the tail differs"


@given(histories())
def test_dump_load_is_identity(entries: list[LogEntry]) -> None:
    state = fold_all(WID, entries)
    data, check = dump_state(state, None)
    loaded = load_state(data, check)
    assert loaded is not None
    assert encoded(loaded) == data == encoded(state)
    assert [s.seq for s in loaded.pending_steps()] == [s.seq for s in state.pending_steps()]
    assert [t.seq for t in loaded.pending_timers()] == [t.seq for t in state.pending_timers()]
    assert dump_state(loaded, None) == (data, check)


@given(histories())
def test_fold_projects_the_history(entries: list[LogEntry]) -> None:
    state = fold_all(WID, entries)
    assert state.last_seq == len(entries)
    assert state.last_at == entries[-1].at
    kinds = [type(e.event).__name__ for e in entries]
    decisions = [e.seq for e in entries if isinstance(e.event, ev.DECISIONS)]
    assert [d.seq for d in state.decisions] == decisions
    inputs = [
        e.seq
        for e in entries
        if isinstance(
            e.event,
            ev.StepCompleted
            | ev.StepFailed
            | ev.TimerFired
            | ev.SignalReceived
            | ev.CancelRequested
            | ev.ChildCompleted
            | ev.ChildFailed,
        )
    ]
    assert [i.seq for i in state.inputs] == inputs
    assert sorted(state.steps) == [e.seq for e in entries if isinstance(e.event, ev.StepScheduled)]
    assert len(state.signals) == kinds.count("SignalReceived")
    assert state.cancel_requested == ("CancelRequested" in kinds)
    last = entries[-1].event
    expected_status = {
        ev.WorkflowCompleted: "COMPLETED",
        ev.WorkflowFailed: "FAILED",
        ev.WorkflowCancelled: "CANCELLED",
        ev.ContinuedAsNew: "CONTINUED",
    }.get(type(last), "RUNNING")
    assert state.status == expected_status


def test_fold_tracks_a_step_through_its_attempts() -> None:
    err = ErrorDetails("TimeoutError", "slow")
    entries = [
        LogEntry(1, T0, ev.WorkflowStarted(name="checkout", args=codec.encode([]))),
        LogEntry(2, T0 + 1, ev.StepScheduled(name="charge", args=codec.encode([5]))),
        LogEntry(3, T0 + 2, ev.StepStarted(step_seq=2, attempt=1)),
        LogEntry(4, T0 + 3, ev.StepRetrying(step_seq=2, attempt=1, error=err, next_attempt_at=9.0)),
    ]
    state = fold_all(WID, entries)
    step = state.steps[2]
    assert (step.status, step.attempt, step.next_attempt_at, step.error) == (
        STEP_RETRYING,
        1,
        9.0,
        err,
    )
    fold(state, LogEntry(5, T0 + 9, ev.StepStarted(step_seq=2, attempt=2)))
    assert (step.status, step.attempt, step.started_at, step.next_attempt_at) == (
        STEP_RUNNING,
        2,
        T0 + 9,
        None,
    )
    fold(state, LogEntry(6, T0 + 10, ev.StepCompleted(step_seq=2, result=codec.encode("ok"))))
    assert (step.status, bytes(step.result), step.finished_at) == (STEP_COMPLETED, b'"ok"', T0 + 10)
    assert step.error is None  # attempt 1's error is in the history, not the step's state
    assert state.pending_steps() == []
    fold(state, LogEntry(7, T0 + 11, ev.StepScheduled(name="ship", args=codec.encode([]))))
    fold(state, LogEntry(8, T0 + 12, ev.StepFailed(step_seq=7, attempt=1, error=err)))
    assert (state.steps[7].status, state.steps[7].error) == (STEP_FAILED, err)


# -- corrupt snapshots -----------------------------------------------------------


@given(histories(max_events=10), st.data())
def test_a_flipped_byte_makes_the_snapshot_a_miss(
    entries: list[LogEntry], data: st.DataObject
) -> None:
    body, check = dump_state(fold_all(WID, entries), None)
    i = data.draw(st.integers(min_value=0, max_value=len(body) - 1), label="byte")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="mask")
    corrupt = bytearray(body)
    corrupt[i] ^= mask
    assert load_state(bytes(corrupt), check) is None


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b"[]", b'{"steps": {"x": 1}}', b'{"last_seq": "one"}', b"\xff\xfe"],
)
def test_undecodable_snapshot_with_a_matching_checksum_is_a_miss(body: bytes) -> None:
    from duralog.replay.state import checksum

    assert load_state(body, checksum(body)) is None


def test_wrong_checksum_is_a_miss() -> None:
    body, check = dump_state(new_state(WID), None)
    assert load_state(body, check) is not None
    assert load_state(body, "0" * len(check)) is None
    assert load_state(body, "") is None


# -- invalid histories -------------------------------------------------------------


def _started() -> LogEntry:
    return LogEntry(1, T0, ev.WorkflowStarted(name="checkout", args=codec.encode([])))


def _with_step_and_timer() -> WorkflowState:
    return fold_all(
        WID,
        [
            _started(),
            LogEntry(2, T0, ev.StepScheduled(name="charge", args=codec.encode([]))),
            LogEntry(3, T0, ev.TimerStarted(fire_at=T0 + 5)),
        ],
    )


@pytest.mark.parametrize("seq", [0, 1, 3, 5, -1])
def test_fold_rejects_a_seq_that_does_not_follow(seq: int) -> None:
    state = fold_all(WID, [_started()])
    marker = ev.MarkerRecorded(marker="now", value=codec.encode(1.0))
    with pytest.raises(ValueError, match=rf"{WID}.*seq {seq} does not follow 1"):
        fold(state, LogEntry(seq, T0, marker))
    assert state.last_seq == 1


def test_fold_rejects_a_first_event_that_is_not_seq_1() -> None:
    with pytest.raises(ValueError, match="does not follow 0"):
        fold(new_state(WID), LogEntry(2, T0, _started().event))


@pytest.mark.parametrize(
    "event",
    [
        ev.StepStarted(step_seq=99, attempt=1),
        ev.StepRetrying(step_seq=99, attempt=1, error=ErrorDetails("E", ""), next_attempt_at=0),
        ev.StepCompleted(step_seq=99, result=ev.NULL),
        ev.StepFailed(step_seq=99, attempt=1, error=ErrorDetails("E", "")),
        ev.StepCompleted(step_seq=3, result=ev.NULL),  # seq 3 is a timer, not a step
        ev.StepCompleted(step_seq=1, result=ev.NULL),  # seq 1 is WorkflowStarted
        ev.TimerFired(timer_seq=99),
        ev.TimerFired(timer_seq=2),  # seq 2 is a step, not a timer
    ],
    ids=lambda e: f"{type(e).__name__}",
)
def test_fold_rejects_a_reference_to_an_unknown_step_or_timer(event: ev.Event) -> None:
    state = _with_step_and_timer()
    with pytest.raises(ValueError, match=rf"{WID}.*{type(event).__name__} at seq 4 refers to seq"):
        fold(state, LogEntry(4, T0, event))


@pytest.mark.parametrize(
    "event",
    [
        ev.ChildCompleted(child_seq=99, result=ev.NULL),
        ev.ChildFailed(child_seq=2, error=ErrorDetails("E", "")),  # seq 2 is a step
    ],
    ids=lambda e: f"{type(e).__name__}",
)
def test_fold_rejects_a_reference_to_an_unknown_child(event: ev.Event) -> None:
    state = _with_step_and_timer()
    with pytest.raises(ValueError, match="refers to seq"):
        fold(state, LogEntry(4, T0, event))


def test_fold_returns_the_same_state_object() -> None:
    state = new_state(WID)
    assert fold(state, _started()) is state
    assert state.status == "RUNNING" and state.name == "checkout"


@given(histories())
def test_fold_all_is_fold_event_by_event(entries: list[LogEntry]) -> None:
    # fold_all runs its own loop (fold inlined): it must build the very same state.
    state = new_state(WID)
    for entry in entries:
        fold(state, entry)
    assert encoded(fold_all(WID, entries)) == encoded(state)


def test_every_event_type_changes_the_state_through_its_own_function() -> None:
    from duralog.replay.state import _APPLY

    assert set(typing.get_args(ev.Event)) <= set(_APPLY)


def test_fold_all_rejects_what_fold_rejects() -> None:
    first = LogEntry(1, T0, ev.WorkflowStarted(name="checkout", args=codec.encode([])))
    gap = [first, LogEntry(3, T0, ev.StepScheduled(name="charge", args=codec.encode([])))]
    with pytest.raises(ValueError, match="event seq 3 does not follow 1"):
        fold_all(WID, gap)
    unknown = [first, LogEntry(2, T0, ev.StepCompleted(step_seq=7, result=ev.NULL))]
    with pytest.raises(ValueError, match="StepCompleted at seq 2 refers to seq 7"):
        fold_all(WID, unknown)
