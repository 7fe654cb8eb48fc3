"""Published state (publish / get_event) and pause / resume."""

from __future__ import annotations

import time
from typing import Any

import pytest

import duralog
from duralog.replay.checker import replay_history

ran: list[int] = []


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


@duralog.workflow
async def waits_for_go() -> str:
    return str(await duralog.wait_signal("go"))


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


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


def test_a_paused_workflow_starts_nothing_until_resumed(engine: duralog.Engine) -> None:
    ran.clear()
    handle = engine.start(ticks, 20)
    wait_for(lambda: len(ran) >= 2)
    handle.pause("maintenance")
    wait_for(lambda: handle.status() is duralog.WorkflowStatus.PAUSED)
    frozen = len(ran)
    time.sleep(0.3)  # several timer periods: nothing may move while paused
    assert len(ran) <= frozen + 1  # at most the attempt that was already starting
    assert handle.status() is duralog.WorkflowStatus.PAUSED
    handle.resume()
    assert handle.result(timeout=20) == 20
    assert sorted(ran) == list(range(20))
    kinds = [e.kind for e in handle.history()]
    assert "PauseRequested" in kinds and "ResumeRequested" in kinds
    instance, _ = replay_history(ticks, handle.history())
    assert instance.finished


def test_pause_and_resume_from_the_command_line(db: str) -> None:
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "duralog", "--db", db, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    ran.clear()
    with duralog.Engine(db, poll_interval=0.05) as engine:
        handle = engine.start(ticks, 10, id="t-1")
        wait_for(lambda: len(ran) >= 1)
        assert cli("pause", "t-1").returncode == 0
        wait_for(lambda: handle.status() is duralog.WorkflowStatus.PAUSED)
        assert cli("resume", "t-1").returncode == 0
        assert handle.result(timeout=20) == 10
    assert cli("pause", "t-1").returncode == 1  # it has finished: a clear error
