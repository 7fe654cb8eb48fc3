"""Recovery: generated programs crashed at every event boundary, snapshots, suspension."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from support import PATIENCE, wait_for

import duralog
from duralog.replay.definitions import Registry, Workflow
from duralog.store.base import Append, NewWorkflow
from duralog.store.events import LogEntry, StepCompleted
from duralog.store.sqlite import SQLiteStore

executions: list[str] = []


@duralog.step(retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.001, jitter=False))
def compute(value: int, fail_first: bool) -> int:
    info = duralog.step_info()
    executions.append(info.idempotency_key)
    if fail_first and info.attempt == 1:
        raise RuntimeError("transient")
    return value * 3 + 1


@duralog.workflow(name="program")
async def program(ops: list[list[Any]]) -> list[int]:
    out: list[int] = []
    for op in ops:
        kind = op[0]
        if kind == "step":
            out.append(await compute(op[1], op[2]))
        elif kind == "gather":
            out.extend(await asyncio.gather(*(compute(v, False) for v in op[1])))
        elif kind == "sleep":
            await duralog.sleep(op[1])
        elif kind == "marker":
            duralog.random()
        elif kind == "branch" and out and out[-1] % 2 == 0:
            out.append(await compute(op[1], False))
        elif kind == "signal":
            out.append(await duralog.wait_signal(op[1]))
        elif kind == "publish":
            duralog.publish("progress", op[1])
        elif kind == "patched" and duralog.patched("v2"):
            out.append(-1)
        elif kind == "wait_for":
            out.append(await asyncio.wait_for(compute(op[1], False), timeout=30))
    return out


values = st.integers(min_value=-1000, max_value=1000)
ops = st.one_of(
    st.tuples(st.just("step"), values, st.booleans()),
    st.tuples(st.just("gather"), st.lists(values, min_size=1, max_size=4)),
    st.tuples(st.just("sleep"), st.floats(min_value=0.001, max_value=0.01)),
    st.tuples(st.just("marker")),
    st.tuples(st.just("branch"), values),
    st.tuples(st.just("signal"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("publish"), values),
    st.tuples(st.just("patched")),
    st.tuples(st.just("wait_for"), values),
)
programs = st.lists(ops.map(list), min_size=1, max_size=6)


def decisions(history: list[LogEntry]) -> list[tuple[str, str]]:
    from duralog.store.events import DECISIONS

    return [
        (e.kind, getattr(e.event, "name", "") or getattr(e.event, "marker", ""))
        for e in history
        if isinstance(e.event, DECISIONS)
    ]


def signals_of(program_ops: list[list[Any]]) -> list[tuple[str, int]]:
    """The signals a program waits for, with the payload each is sent with."""
    return [(op[1], i) for i, op in enumerate(program_ops) if op[0] == "signal"]


def run_from(
    prefix: list[LogEntry], workflow_id: str, signals: list[tuple[str, int]]
) -> tuple[Any, list[LogEntry]]:
    """Open a store holding only ``prefix`` (a crash right after it) and let an engine finish.

    Every signal was sent before the start; those not yet in the log wait in the inbox.
    """
    store = SQLiteStore(":memory:")
    store.create_workflows([NewWorkflow(workflow_id, "program", prefix[0])])
    if len(prefix) > 1:
        assert store.append([Append(workflow_id, 0, prefix[1:])]) == [True]
    received = sum(1 for e in prefix if e.kind == "SignalReceived")
    for name, payload in signals[received:]:
        store.send(workflow_id, "signal", name, str(payload).encode(), 0.0)
    with duralog.Engine(store, poll_interval=0.05) as engine:
        handle = engine.get(workflow_id)
        return handle.result(timeout=20), handle.history()


@given(programs)
def test_crash_at_every_event_boundary_gives_the_same_outcome(program_ops: list[list[Any]]) -> None:
    store = SQLiteStore(":memory:")
    signals = signals_of(program_ops)
    with duralog.Engine(store) as engine:
        handle = engine.start(program, program_ops, id="p")
        for name, payload in signals:
            handle.signal(name, payload)
        expected = handle.result(timeout=20)
        history = handle.history()
    expected_decisions = decisions(history)

    for cut in range(1, len(history)):
        prefix = history[:cut]
        completed = {f"p:{e.event.step_seq}" for e in prefix if isinstance(e.event, StepCompleted)}
        executions.clear()
        result, recovered = run_from(prefix, "p", signals)
        assert result == expected, f"crash after seq {cut}"
        assert decisions(recovered) == expected_decisions, f"crash after seq {cut}"
        assert [e.seq for e in recovered] == list(range(1, len(recovered) + 1))
        assert recovered[:cut] == prefix  # nothing committed was altered
        rerun = completed.intersection(executions)
        assert not rerun, f"completed steps ran again after a crash at seq {cut}: {rerun}"
        done = Counter(e.event.step_seq for e in recovered if isinstance(e.event, StepCompleted))
        assert all(n == 1 for n in done.values())


ran_steps: list[str] = []


@duralog.step
def step_a() -> str:
    ran_steps.append("a")
    return "a"


@duralog.step
def step_b() -> str:
    ran_steps.append("b")
    return "b"


@duralog.step
def step_c() -> str:
    ran_steps.append("c")
    return "c"


async def flow_v1(pause: float) -> list[str]:
    first = await step_a()
    await duralog.sleep(pause)
    return [first, await step_b()]


async def flow_v2(pause: float) -> list[str]:
    first = await step_c()  # changed: a different first step
    await duralog.sleep(pause)
    return [first, await step_b()]


async def probe() -> None:
    await duralog.sleep(0.01)


def registry_with(fn: Any) -> Registry:
    registry = Registry()
    registry.add(Workflow(fn, name="flow"))
    registry.add(Workflow(probe, name="probe"))
    return registry


def timers_fired_after(engine: duralog.Engine, moment: float) -> bool:
    """Run a probe workflow on ``engine``: whether its timer fired after ``moment``."""
    handle = engine.start("probe")
    handle.result(timeout=PATIENCE)
    return any(e.kind == "TimerFired" and e.at > moment for e in handle.history())


def leave_sleeping(db: str, pause: float, snapshot_every: int = 500) -> None:
    """Run flow v1 until it sleeps, then stop the engine (its work stays in the log)."""
    with duralog.Engine(
        db, registry=registry_with(flow_v1), snapshot_every=snapshot_every
    ) as engine:
        handle = engine.start("flow", pause, id="f-1")
        wait_for(lambda: any(e.kind == "TimerStarted" for e in handle.history()))


def test_diverged_code_suspends_the_workflow_and_runs_nothing(db: str) -> None:
    leave_sleeping(db, 0.2)
    ran_steps.clear()
    with duralog.Engine(db, registry=registry_with(flow_v2)) as engine:
        handle = engine.get("f-1")
        wait_for(lambda: handle.status() is duralog.WorkflowStatus.SUSPENDED)
        before = len(handle.history())
        try:
            handle.result(timeout=PATIENCE)
        except duralog.WorkflowSuspended as exc:
            assert "StepScheduled step_a" in str(exc) and "StepScheduled step_c" in str(exc)
        else:
            raise AssertionError("a diverged workflow must not complete")
        # Witness: this worker's timers have gone past the one the old code was
        # waiting on, and still nothing happened to the suspended workflow.
        fire_at = next(e.event.fire_at for e in handle.history() if e.kind == "TimerStarted")  # type: ignore[union-attr]
        wait_for(lambda: timers_fired_after(engine, fire_at))
        assert len(handle.history()) == before
        assert ran_steps == []
    # Deploying the old code again resumes it from where it was.
    with duralog.Engine(db, registry=registry_with(flow_v1)) as engine:
        assert engine.get("f-1").result(timeout=10) == ["a", "b"]
    assert ran_steps == ["b"]


def test_snapshots_are_only_a_cache(tmp_path: Path) -> None:
    original = str(tmp_path / "original.db")
    leave_sleeping(original, 0.2, snapshot_every=2)
    assert SQLiteStore(original).load_snapshot("f-1") is not None
    outcomes = []
    for variant in ("kept", "deleted", "corrupt"):
        copy = str(tmp_path / f"{variant}.db")
        shutil.copy(original, copy)
        with sqlite3.connect(copy) as conn:
            if variant == "deleted":
                conn.execute("DELETE FROM snapshots")
            elif variant == "corrupt":
                conn.execute("UPDATE snapshots SET state = X'7b7d'")
        ran_steps.clear()
        with duralog.Engine(copy, registry=registry_with(flow_v1)) as engine:
            handle = engine.get("f-1")
            result = handle.result(timeout=10)
            outcomes.append((result, decisions(handle.history()), list(ran_steps)))
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert outcomes[0][0] == ["a", "b"] and outcomes[0][2] == ["b"]
