"""Published state (publish / get_event) and pause / resume."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from support import PATIENCE, wait_for

import duralog
from duralog.replay.checker import replay_history

ran: list[int] = []
gated_ran: list[int] = []
gate = threading.Event()


@duralog.step
def work(i: int) -> int:
    ran.append(i)
    return i


@duralog.workflow
async def progress(n: int) -> int:
    duralog.publish("progress", {"done": 0, "of": n})
    total = 0
    for i in range(n):
        total += await work(i)
        duralog.publish("progress", {"done": i + 1, "of": n})
    await duralog.wait_signal("finish")
    return total


@duralog.workflow
async def ticks(n: int) -> int:
    for i in range(n):
        await work(i)
        await duralog.sleep(0.05)
    return n


@duralog.step
def gated_work(i: int) -> int:
    gated_ran.append(i)
    if i == 2:  # the third step waits until the test opens the gate
        assert gate.wait(PATIENCE), "the test never opened the gate"
    return i


@duralog.workflow
async def gated_ticks(n: int) -> int:
    for i in range(n):
        await gated_work(i)
        await duralog.sleep(0.05)
    return n


@pytest.fixture
def closed_gate() -> None:
    gated_ran.clear()
    gate.clear()


@duralog.workflow
async def waits_for_go() -> str:
    return str(await duralog.wait_signal("go"))


def test_get_event_waits_for_the_latest_published_value(engine: duralog.Engine) -> None:
    handle = engine.start(progress, 3)
    wait_for(lambda: handle.get_event("progress", timeout=5) == {"done": 3, "of": 3})
    handle.signal("finish")
    assert handle.result(timeout=10) == 3
    instance, _ = replay_history(progress, handle.history())
    assert instance.finished


def test_get_event_times_out_and_reports_a_workflow_that_never_publishes(
    engine: duralog.Engine,
) -> None:
    handle = engine.start(waits_for_go)  # runs until signalled: the wait must time out
    with pytest.raises(TimeoutError):
        handle.get_event("never", timeout=0.05)
    handle.signal("go", "now")
    handle.result(timeout=10)
    with pytest.raises(duralog.DuralogError, match="without publishing 'never'"):
        handle.get_event("never", timeout=1)


def test_a_paused_workflow_starts_nothing_until_resumed(
    engine: duralog.Engine, closed_gate: None
) -> None:
    handle = engine.start(gated_ticks, 6)
    wait_for(lambda: 2 in gated_ran)  # its third step runs, held at the gate
    handle.pause("maintenance")
    wait_for(lambda: handle.status() is duralog.WorkflowStatus.PAUSED)
    gate.set()  # the step that was running ends; the workflow then waits on a timer
    wait_for(lambda: handle.history()[-1].kind == "TimerStarted")
    still = handle.history()
    fire_at = still[-1].event.fire_at  # type: ignore[union-attr]
    # Witness: workflows started now, on the same worker, whose timers fire after the
    # paused one's was due: by then it would have fired and started the next step.
    wait_for(lambda: max(timers_fired(engine.start(ticks, 1))) > fire_at)
    assert handle.history() == still
    assert gated_ran == [0, 1, 2]
    assert handle.status() is duralog.WorkflowStatus.PAUSED
    handle.resume()
    assert handle.result(timeout=PATIENCE) == 6
    assert gated_ran == list(range(6))
    kinds = [e.kind for e in handle.history()]
    assert "PauseRequested" in kinds and "ResumeRequested" in kinds
    instance, _ = replay_history(gated_ticks, handle.history())
    assert instance.finished


def timers_fired(handle: duralog.WorkflowHandle) -> list[float]:
    """When the timers of the workflow of ``handle`` fired, once it has ended."""
    handle.result(timeout=PATIENCE)
    return [e.at for e in handle.history() if e.kind == "TimerFired"]


def test_pause_and_resume_from_the_command_line(db: str, closed_gate: None) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "duralog", "--db", db, *args],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )

    with duralog.Engine(db, poll_interval=0.05) as engine:
        handle = engine.start(gated_ticks, 4, id="t-1")
        wait_for(lambda: 2 in gated_ran)  # it cannot finish before the gate opens
        paused = cli("pause", "t-1")
        assert paused.returncode == 0, paused.stderr
        wait_for(lambda: handle.status() is duralog.WorkflowStatus.PAUSED)
        gate.set()
        resumed = cli("resume", "t-1")
        assert resumed.returncode == 0, resumed.stderr
        assert handle.result(timeout=PATIENCE) == 4
    finished = cli("pause", "t-1")
    assert finished.returncode == 1 and "already COMPLETED" in finished.stderr
