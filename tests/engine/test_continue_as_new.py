"""Continue-as-new: an endless workflow keeps a bounded log; runs are linked."""

from __future__ import annotations

import subprocess
import sys

import duralog
from duralog.replay.checker import replay_history


@duralog.step
def add(total: int, n: int) -> int:
    return total + n


@duralog.workflow
async def counter(total: int, runs_left: int) -> int:
    for n in range(3):
        total = await add(total, n)
    if runs_left > 0:
        duralog.continue_as_new(total, runs_left - 1)
    extra = await duralog.wait_signal("extra")
    return int(total + extra)


def test_runs_continue_under_the_same_id_with_bounded_history(db: str) -> None:
    with duralog.Engine(db, durability="normal") as engine:
        handle = engine.start(counter, 0, 3, id="c-1")
        handle.signal("extra", 100)  # waits in the inbox across the runs
        assert handle.result(timeout=10) == 4 * 3 + 100
        history = handle.history()
        started = history[0].event
        assert started.run == 4 and started.previous_run == "c-1~run3"  # type: ignore[union-attr]
        assert len(history) < 20  # only the last run's events
        archived = engine.get("c-1~run1")
        assert archived.status() is duralog.WorkflowStatus.COMPLETED
        old = archived.history()
        assert old[-1].kind == "ContinuedAsNew"
        for run in ("c-1~run1", "c-1~run2", "c-1~run3"):
            instance, _ = replay_history(counter, engine.get(run).history(), workflow_id="c-1")
            assert instance.finished
        instance, _ = replay_history(counter, history, workflow_id="c-1")
        assert instance.finished

    shown = subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, "show", "c-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "continued from c-1~run3" in shown.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, "show", "c-1~run1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "the next run starts with [3,2]" in shown.stdout


def test_history_links_the_runs(db: str) -> None:
    with duralog.Engine(db, durability="normal") as engine:
        handle = engine.start(counter, 0, 1, id="c-2")
        handle.signal("extra", 1)
        handle.result(timeout=10)
    out = subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, "history", "c-2"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "(run 2, continued from c-2~run1)" in out.splitlines()[0]
