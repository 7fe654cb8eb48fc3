"""The workflow primitives survive SIGKILL at chosen points, resumed by a fresh process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import PATIENCE, popen, wait_for

import duralog
from duralog.replay.definitions import Registry, Workflow

APP = str(Path(__file__).with_name("app_primitives.py"))


def spawn(db: str, ledger: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return popen(
        [sys.executable, APP, db, *args],
        env={**os.environ, "CRASH_LEDGER": str(ledger), **env},
        stdout=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> Any:
    out, _ = process.communicate(timeout=PATIENCE)
    assert process.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1])


def killed(process: subprocess.Popen[str]) -> None:
    process.communicate(timeout=PATIENCE)
    assert process.returncode == -signal.SIGKILL


def ledger(path: Path) -> Counter[str]:
    return Counter(path.read_text().splitlines() if path.exists() else [])


def kinds(db: str, workflow_id: str) -> list[str]:
    with duralog.Engine(db, worker=False) as engine:
        try:
            return [e.kind for e in engine.get(workflow_id).history()]
        except duralog.WorkflowNotFound:
            return []  # not started yet


def record(db: str, workflow_id: str) -> duralog.WorkflowRecord:
    with duralog.Engine(db, worker=False) as engine:
        return engine.get(workflow_id).record()


@pytest.mark.parametrize("crash_at", ["parent_step", "child_step", "after_child"])
def test_child_workflows(tmp_path: Path, crash_at: str) -> None:
    db, log = str(tmp_path / "log.db"), tmp_path / "ledger"
    killed(spawn(db, log, "parent", "p", "1", CRASH_AT=crash_at))
    assert finish(spawn(db, log, "parent", "p", "1")) == 4  # (1+1)+1 + (0+1)
    counts = ledger(log)
    assert (
        counts[f"{crash_at} " + next(k.split()[1] for k in counts if k.startswith(crash_at))] == 2
    )
    assert sum(counts.values()) == 4  # three steps, the crashed one twice
    with duralog.Engine(db, worker=False) as engine:
        assert [r.id for r in engine.list(name="child")] == ["p/5"]


@pytest.mark.parametrize("crash_at", ["run_3", "run_2", "run_1"])
def test_continue_as_new(tmp_path: Path, crash_at: str) -> None:
    db, log = str(tmp_path / "log.db"), tmp_path / "ledger"
    killed(spawn(db, log, "looping", "l", "0", "3", CRASH_AT=crash_at))
    assert finish(spawn(db, log, "looping", "l", "0", "3")) == 3
    assert sum(ledger(log).values()) == 4  # three runs, the crashed step twice
    with duralog.Engine(db, worker=False) as engine:
        assert {r.id for r in engine.list()} == {"l", "l~run1", "l~run2"}


def test_cancel_sent_while_no_worker_runs(tmp_path: Path) -> None:
    db, log = str(tmp_path / "log.db"), tmp_path / "ledger"
    first = spawn(db, log, "cancellable", "c", "1")
    wait_for(lambda: Path(db).exists() and "TimerStarted" in kinds(db, "c"))
    first.send_signal(signal.SIGKILL)
    killed(first)
    with duralog.Engine(db, worker=False) as engine:
        engine.get("c").cancel("while the worker was down")
    outcome = finish(spawn(db, log, "cancellable", "c", "1", MODE="serve"))
    assert outcome["message"] == "the workflow was cancelled"
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["before", "cleanup"]


def test_pause_survives_a_crash(tmp_path: Path) -> None:
    db, log = str(tmp_path / "log.db"), tmp_path / "ledger"
    first = spawn(db, log, "pausable", "q", "6")
    wait_for(lambda: Path(db).exists() and kinds(db, "q").count("StepCompleted") >= 2)
    with duralog.Engine(db, worker=False) as engine:
        engine.get("q").pause()
        wait_for(lambda: engine.get("q").status() is duralog.WorkflowStatus.PAUSED)
    owner = record(db, "q").owner
    first.send_signal(signal.SIGKILL)
    killed(first)
    ticks = ledger_of(log, "q")
    second = spawn(db, log, "pausable", "q", "6", MODE="serve")
    wait_for(lambda: record(db, "q").owner not in (None, owner))  # recovered, still paused
    # Witness: a workflow started now, run by the same worker, ends after a timer that
    # fires later than any of the paused one's could: that one stays still meanwhile.
    with duralog.Engine(db, worker=False, registry=starts_pausable()) as engine:
        probe = engine.start("pausable", 1, id="probe")
        wait_for(lambda: probe.status() is duralog.WorkflowStatus.COMPLETED)
        assert ledger_of(log, "q") == ticks
        assert engine.get("q").status() is duralog.WorkflowStatus.PAUSED
        engine.get("q").resume()
    assert finish(second) == 6


def starts_pausable() -> Registry:
    """A registry that names app_primitives.pausable, to start one from here (its code
    runs in the worker process)."""

    async def pausable(n: int) -> int:
        raise NotImplementedError

    registry = Registry()
    registry.add(Workflow(pausable, name="pausable"))
    return registry


def ledger_of(path: Path, workflow_id: str) -> list[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if line.split()[1].startswith(f"{workflow_id}:")]


def test_a_workflow_timeout_that_expires_while_no_worker_runs(tmp_path: Path) -> None:
    db, log = str(tmp_path / "log.db"), tmp_path / "ledger"
    first = spawn(db, log, "bounded", "b", "1", WF_TIMEOUT="1.0")
    wait_for(lambda: Path(db).exists() and "TimerStarted" in kinds(db, "b"))
    first.send_signal(signal.SIGKILL)
    killed(first)
    with duralog.Engine(db, worker=False) as engine:
        started = engine.get("b").history()[0].event
    deadline = started.start_time + started.timeout  # type: ignore[union-attr,operator]
    wait_for(lambda: time.time() > deadline)  # it passes while no worker runs
    outcome = finish(spawn(db, log, "bounded", "b", "1", MODE="serve"))
    assert outcome["failed"] == "duralog.errors.WorkflowTimeout"
