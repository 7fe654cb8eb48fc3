"""``WorkflowInstance``: workflow code + its folded log -> the next decisions, pure.

Every test drives the instance with no engine and no store: ``run_in_memory`` keeps
the log in a list and feeds the instance its fold, as the engine does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import T0, run_in_memory

import duralog
from duralog.replay.definitions import Workflow
from duralog.replay.instance import ContinueAsNew, ReplaySources, WorkflowInstance
from duralog.replay.state import dump_state, fold, fold_all, load_state
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.events import LogEntry


@duralog.step(name="inst_add")
def add(a: int, b: int) -> int:
    return a + b


@duralog.step(name="inst_double")
async def double(x: int) -> int:
    return 2 * x


@duralog.step(name="inst_refuse", retry=duralog.RetryPolicy(max_attempts=1))
def refuse(x: int) -> int:
    raise ValueError(f"no {x}")


async def sums(n: int) -> list[int]:
    totals = list(await asyncio.gather(*(add(i, i) for i in range(n))))
    await duralog.sleep(5)
    return [*totals, await double(n)]


async def markers() -> list[Any]:
    return [duralog.now().timestamp(), duralog.random(), str(duralog.uuid4())]


async def catches() -> str:
    try:
        await refuse(7)
    except duralog.StepFailed as exc:
        return f"caught {exc.error.type}: {exc.error.message}"
    return "not raised"


async def forgets() -> int:
    add(1, 1)  # never awaited: nothing is recorded or run for it
    return await double(1)


async def waits_for_a_signal() -> Any:
    return await duralog.wait_signal("go")


async def continues(n: int) -> int:
    if n < 3:
        duralog.continue_as_new(n + 1)
    return n


def wf(fn: Any, name: str | None = None) -> Workflow[Any, Any]:
    return Workflow(fn, name=name or f"inst_{fn.__name__}")


def kinds(log: list[LogEntry]) -> list[str]:
    return [e.kind for e in log]


def decisions(log: list[LogEntry]) -> list[tuple[int, ev.Event]]:
    return [(e.seq, e.event) for e in log if isinstance(e.event, ev.DECISIONS)]


def result(log: list[LogEntry]) -> Any:
    last = log[-1].event
    assert isinstance(last, ev.WorkflowCompleted), last
    return codec.decode(last.result)


def test_a_run_in_memory_records_each_decision_and_ends_with_the_result() -> None:
    log = run_in_memory(wf(sums), 2)
    assert result(log) == [0, 2, 4]
    assert kinds(log)[:3] == ["WorkflowStarted", "StepScheduled", "StepScheduled"]
    assert kinds(log).count("TimerStarted") == kinds(log).count("TimerFired") == 1
    timer = next(e for e in log if isinstance(e.event, ev.TimerStarted))
    assert isinstance(timer.event, ev.TimerStarted)
    assert timer.event.fire_at == timer.at + 5  # workflow time is the input's time


@given(n=st.integers(0, 4), order=st.lists(st.integers(0, 10), max_size=8))
def test_replaying_a_log_makes_no_new_decision_whatever_the_completion_order(
    n: int, order: list[int]
) -> None:
    picks = iter(order)
    log = run_in_memory(wf(sums), n, pick=lambda k: next(picks, 0))
    assert result(log) == [2 * i for i in range(n)] + [2 * n]
    instance = WorkflowInstance(wf(sums), "in-memory")
    assert instance.feed(fold_all("in-memory", log), len(log) + 1) == []
    assert instance.finished and not instance.is_replaying


@given(n=st.integers(0, 3), cut=st.integers(1, 40))
def test_feeding_the_log_in_two_parts_decides_as_feeding_it_whole(n: int, cut: int) -> None:
    # A recovered instance gets the log at once; a live one gets it one commit at a
    # time. The decisions must not depend on it.
    log = run_in_memory(wf(sums), n)
    cut = min(cut, len(log))
    instance = WorkflowInstance(wf(sums), "in-memory")
    first = instance.feed(fold_all("in-memory", log[:cut]), cut + 1)
    # From the prefix it makes again the decisions the log holds right after it.
    expected = []
    for entry in log[cut:]:
        if not isinstance(entry.event, ev.DECISIONS):
            break
        expected.append((entry.seq, entry.event))
    assert first == expected
    rest = instance.feed(fold_all("in-memory", log), len(log) + 1)
    assert rest == [] and instance.finished


@given(n=st.integers(0, 3), cut=st.integers(1, 40))
def test_an_instance_rebuilt_from_a_snapshot_and_the_tail_replays_the_whole_run(
    n: int, cut: int
) -> None:
    # Recovery: a snapshot at any seq plus the tail of the log is the whole log.
    log = run_in_memory(wf(sums), n)
    cut = min(cut, len(log))
    snapshot = load_state(*dump_state(fold_all("in-memory", log[:cut]), None))
    assert snapshot is not None
    state = snapshot
    for entry in log[cut:]:
        state = fold(state, entry)
    assert state == fold_all("in-memory", log)
    instance = WorkflowInstance(wf(sums), "in-memory")
    assert instance.feed(state, len(log) + 1) == []
    assert instance.finished


def test_markers_are_recorded_once_and_read_back_on_replay() -> None:
    log = run_in_memory(wf(markers))
    recorded = [e.event for e in log if isinstance(e.event, ev.MarkerRecorded)]
    assert [m.marker for m in recorded] == ["now", "random", "uuid"]
    first = result(log)
    assert first[0] == T0  # ReplaySources: workflow time, never the machine's
    # A replay with other sources gets the recorded values, not new ones.
    instance = WorkflowInstance(wf(markers), "in-memory", sources=_Other())
    assert instance.feed(fold_all("in-memory", log), len(log) + 1) == []
    assert instance.finished


class _Other:
    def now(self) -> float:
        raise AssertionError("a replayed marker must not ask for a new value")

    random = uuid4 = now


def test_replay_sources_are_deterministic() -> None:
    one, two = WorkflowInstance(wf(markers), "a"), WorkflowInstance(wf(markers), "b")
    a, b = ReplaySources(one.loop), ReplaySources(two.loop)
    assert [a.random(), a.uuid4(), a.random()] == [b.random(), b.uuid4(), b.random()]
    assert 0.0 <= a.random() < 1.0


def test_a_failed_step_is_raised_in_the_code_as_step_failed() -> None:
    log = run_in_memory(wf(catches))
    assert result(log) == "caught ValueError: no 7"
    assert "StepFailed" in kinds(log)


def test_a_call_never_awaited_records_and_runs_nothing_and_is_named() -> None:
    log = run_in_memory(wf(forgets))
    assert [e.event.name for e in log if isinstance(e.event, ev.StepScheduled)] == ["inst_double"]
    instance = WorkflowInstance(wf(forgets), "in-memory")
    instance.feed(fold_all("in-memory", log), len(log) + 1)
    assert instance.never_awaited == ["inst_add"]


def test_a_signal_is_delivered_to_the_code_that_waits_for_it() -> None:
    log = run_in_memory(wf(waits_for_a_signal))
    assert kinds(log) == ["WorkflowStarted"]  # waits on nothing that will come by itself
    instance = WorkflowInstance(wf(waits_for_a_signal), "in-memory")
    assert instance.feed(fold_all("in-memory", log), 2) == []
    assert not instance.finished and instance.waiting_at() is not None
    log.append(LogEntry(2, T0 + 1, ev.SignalReceived(name="go", payload=codec.encode("now"))))
    ((seq, end),) = instance.feed(fold_all("in-memory", log), 3)
    assert seq == 3 and isinstance(end, ev.WorkflowCompleted)
    assert codec.decode(end.result) == "now"


def test_signals_nobody_waits_for_are_reported_in_arrival_order() -> None:
    log = run_in_memory(wf(waits_for_a_signal))
    for seq, name in ((2, "later"), (3, "other")):
        log.append(LogEntry(seq, T0, ev.SignalReceived(name=name, payload=codec.encode(seq))))
    instance = WorkflowInstance(wf(waits_for_a_signal), "in-memory")
    instance.feed(fold_all("in-memory", log), len(log) + 1)
    assert [(n, codec.decode(p)) for n, p in instance.unconsumed_signals()] == [
        ("later", 2),
        ("other", 3),
    ]


def test_a_cancel_request_ends_the_run_as_cancelled() -> None:
    log = run_in_memory(wf(waits_for_a_signal))
    log.append(LogEntry(2, T0 + 1, ev.CancelRequested(reason="enough")))
    instance = WorkflowInstance(wf(waits_for_a_signal), "in-memory")
    ((_, end),) = instance.feed(fold_all("in-memory", log), 3)
    assert isinstance(end, ev.WorkflowCancelled)
    assert instance.finished and not instance.cut_short
    assert instance.grace_from() is None


def test_continue_as_new_is_the_runs_last_decision() -> None:
    log = run_in_memory(wf(continues), 1)
    assert kinds(log) == ["WorkflowStarted", "ContinuedAsNew"]
    last = log[-1].event
    assert isinstance(last, ev.ContinuedAsNew) and codec.decode(last.args) == [2]
    assert issubclass(ContinueAsNew, BaseException) and not issubclass(ContinueAsNew, Exception)


def test_live_timers_and_steps_are_known_by_seq_until_resolved() -> None:
    log = run_in_memory(wf(sums), 1)
    timer_seq = next(e.seq for e in log if isinstance(e.event, ev.TimerStarted))
    step_seq = next(e.seq for e in log if isinstance(e.event, ev.StepScheduled))
    upto = next(e.seq for e in log if isinstance(e.event, ev.TimerStarted))
    instance = WorkflowInstance(wf(sums), "in-memory")
    instance.feed(fold_all("in-memory", log[:upto]), upto + 1)
    assert instance.live_timers() == [timer_seq]
    assert instance.step_of(step_seq) is None  # its result was delivered already
    instance.feed(fold_all("in-memory", log), len(log) + 1)
    assert instance.live_timers() == []


def test_a_divergence_is_reported_at_the_first_changed_decision_and_sticks() -> None:
    log = run_in_memory(wf(sums, "inst_sums"), 2)

    async def changed(n: int) -> list[int]:
        return [await double(n)]  # CHANGED: the sums are gone

    instance = WorkflowInstance(wf(changed, "inst_sums"), "run-9")
    with pytest.raises(duralog.NondeterminismError) as info:
        instance.feed(fold_all("run-9", log), len(log) + 1)
    error = info.value
    assert (error.workflow_id, error.seq) == ("run-9", 2)
    assert (error.recorded, error.attempted) == (
        "StepScheduled inst_add",
        "StepScheduled inst_double",
    )
    assert error.location is not None and "test_instance.py" in error.location
    with pytest.raises(duralog.NondeterminismError) as again:
        instance.feed(fold_all("run-9", log), len(log) + 1)
    assert again.value is error


def test_a_recorded_decision_the_code_no_longer_makes_is_a_divergence() -> None:
    log = run_in_memory(wf(markers, "inst_fewer"))

    async def stalls() -> list[Any]:
        return [await duralog.wait_signal("never")]  # CHANGED: no marker any more

    instance = WorkflowInstance(wf(stalls, "inst_fewer"), "in-memory")
    with pytest.raises(duralog.NondeterminismError) as info:
        instance.feed(fold_all("in-memory", log), len(log) + 1)
    assert info.value.recorded == "MarkerRecorded now"
    assert info.value.attempted is None  # every input is delivered; the code waits
    assert info.value.location is not None and "test_instance.py" in info.value.location


def test_ending_earlier_than_recorded_is_a_divergence() -> None:
    log = run_in_memory(wf(markers, "inst_shorter"))

    async def shorter() -> list[Any]:
        return [duralog.now().timestamp()]

    instance = WorkflowInstance(wf(shorter, "inst_shorter"), "in-memory")
    with pytest.raises(duralog.NondeterminismError) as info:
        instance.feed(fold_all("in-memory", log), len(log) + 1)
    assert (info.value.recorded, info.value.attempted) == (
        "MarkerRecorded random",
        "WorkflowCompleted",
    )


def test_workflow_info_says_whether_the_code_is_replaying() -> None:
    seen: list[bool] = []

    async def observed() -> int:
        seen.append(duralog.workflow_info().is_replaying)
        value = await double(3)
        seen.append(duralog.workflow_info().is_replaying)
        return value

    log = run_in_memory(wf(observed))
    assert seen == [False, False]
    seen.clear()
    instance = WorkflowInstance(wf(observed), "in-memory")
    instance.feed(fold_all("in-memory", log), len(log) + 1)
    assert seen == [True, True]  # the terminal decision was still to be matched
    assert instance.info().name == "inst_observed"


def test_a_value_that_cannot_be_recorded_fails_the_run_clearly() -> None:
    async def returns_a_lock() -> Any:
        return asyncio.Lock()

    log = run_in_memory(wf(returns_a_lock))
    last = log[-1].event
    assert isinstance(last, ev.WorkflowFailed)
    assert last.error.type == "duralog.errors.PayloadError"
    assert "cannot be recorded" in last.error.message
