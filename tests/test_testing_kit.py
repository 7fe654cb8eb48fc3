"""duralog.testing: virtual time, history helpers, golden replays."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from support import PATIENCE, load_app, wait_for

import duralog
from duralog.testing import (
    WorkflowEnvironment,
    history_kinds,
    replay_histories,
    step_names,
)

HISTORIES = Path(__file__).parent / "histories"


@duralog.step
def remind(who: str) -> str:
    return f"reminded {who}"


@duralog.workflow
async def three_days(who: str) -> str:
    await duralog.sleep(dt.timedelta(days=3))
    return await remind(who)


@duralog.workflow
async def approve_or_escalate(who: str) -> str:
    try:
        decision = await duralog.wait_signal("approval", timeout=dt.timedelta(days=2))
    except TimeoutError:
        return await remind(f"{who}'s manager")
    return f"approved by {decision}"


@duralog.workflow
async def hourly(n: int) -> int:
    for i in range(n):
        await duralog.sleep(3600)
        duralog.publish("ticks", i + 1)
    return n


attempts: list[int] = []


@duralog.step(
    retry=duralog.RetryPolicy(
        max_attempts=3, initial_interval=3600, max_interval=7200, jitter=False
    )
)
def flaky() -> str:
    attempts.append(duralog.step_info().attempt)
    if len(attempts) < 3:
        raise ConnectionError("down")
    return "up"


@duralog.workflow
async def patient() -> str:
    return await flaky()


def test_days_pass_in_milliseconds(workflow_env: WorkflowEnvironment) -> None:
    start = workflow_env.now()
    handle = workflow_env.engine.start(three_days, "ana")
    assert workflow_env.result(handle) == "reminded ana"  # within its 10 real seconds
    assert workflow_env.now() - start >= dt.timedelta(days=3)
    history = {e.kind: e for e in handle.history()}
    assert history["TimerFired"].at - history["TimerStarted"].at >= 3 * 86400
    assert history_kinds(handle)[-1] == "WorkflowCompleted"
    assert step_names(handle) == ["remind"]


def test_a_signal_timeout_of_two_days(workflow_env: WorkflowEnvironment) -> None:
    handle = workflow_env.engine.start(approve_or_escalate, "bo")
    assert workflow_env.result(handle) == "reminded bo's manager"
    handle = workflow_env.engine.start(approve_or_escalate, "cy")
    handle.signal("approval", "dee")
    assert workflow_env.result(handle) == "approved by dee"


def test_advance_by_hand(workflow_env: WorkflowEnvironment) -> None:
    handle = workflow_env.engine.start(hourly, 2)
    wait_for(lambda: "TimerStarted" in history_kinds(handle))  # it waits for its hour
    with pytest.raises(TimeoutError):
        handle.get_event("ticks", timeout=0)  # no time has passed: nothing published
    workflow_env.advance(minutes=61)
    assert handle.get_event("ticks", timeout=PATIENCE) == 1
    workflow_env.advance(hours=1)
    assert handle.result(timeout=PATIENCE) == 2


def test_retry_backoff_is_skipped_too(workflow_env: WorkflowEnvironment) -> None:
    attempts.clear()
    handle = workflow_env.engine.start(patient)
    assert workflow_env.result(handle) == "up"  # within its 10 real seconds, not three hours
    assert attempts == [1, 2, 3]
    retries = [e for e in handle.history() if e.kind == "StepRetrying"]
    waits = [e.event.next_attempt_at - e.at for e in retries]  # type: ignore[union-attr]
    assert waits == [3600, 7200]  # the hours passed on the virtual clock


def test_workflow_timeouts_run_on_virtual_time(workflow_env: WorkflowEnvironment) -> None:
    handle = workflow_env.engine.start(three_days, "eve", timeout=dt.timedelta(days=1))
    with pytest.raises(duralog.WorkflowFailed) as info:
        workflow_env.result(handle)
    assert info.value.cause.type == "duralog.errors.WorkflowTimeout"


def test_an_environment_can_start_at_a_chosen_time() -> None:
    moment = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    with WorkflowEnvironment(start=moment) as env:
        handle = env.engine.start(three_days, "fay")
        env.result(handle)
        assert handle.history()[0].at == moment.timestamp()


def _golden() -> ModuleType:
    # The golden workflows, loaded as tests/histories/test_golden.py loads them.
    return load_app(HISTORIES / "workflows.py", "golden_workflows")


def test_replay_histories_passes_and_fails(tmp_path: Path) -> None:
    golden = _golden()
    reports = replay_histories(HISTORIES, golden.make_registry())
    assert len(reports) == len(golden.GOLDEN) == 6 and all(r.ok for r in reports)

    async def does_nothing(order: str, cents: int) -> None:
        return None

    shutil.copy(HISTORIES / "sequential.json", tmp_path / "sequential.json")
    with pytest.raises(AssertionError, match="histories diverge"):
        replay_histories(tmp_path, golden.make_registry(golden_sequential=does_nothing))
    with pytest.raises(AssertionError, match=r"no \*\.json"):
        replay_histories(tmp_path / "nowhere", golden.make_registry())


def test_two_environments_each_with_its_own_payload_codec() -> None:
    import os

    from duralog.store import envelope

    key_a, key_b = os.urandom(32), os.urandom(32)
    with (
        WorkflowEnvironment(payload_codec=duralog.AesGcmCodec({"a": key_a}, "a")) as env_a,
        WorkflowEnvironment(payload_codec=duralog.AesGcmCodec({"b": key_b}, "b")) as env_b,
    ):
        first = env_a.engine.start(three_days, "ann")
        second = env_b.engine.start(three_days, "bob")
        assert env_a.result(first) == "reminded ann"
        assert env_b.result(second) == "reminded bob"
        started_a, started_b = first.history()[0].event, second.history()[0].event
    assert envelope.key_id(bytes(started_a.args)) == "a"  # type: ignore[union-attr]
    assert envelope.key_id(bytes(started_b.args)) == "b"  # type: ignore[union-attr]
