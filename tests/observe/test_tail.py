"""``duralog tail`` and ``follow``: the log followed live from another process."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import PATIENCE, popen

import duralog
from duralog.cli import main
from duralog.cli_observe import parse_since
from duralog.observe.follow import COMMIT_LAG, _Tail, follow
from duralog.observe.subscribe import CommittedEvent
from duralog.store.sqlite import SQLiteStore

Wait = Callable[..., Any]
ROOT = Path(__file__).parent.parent.parent


@duralog.step(retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01))
def tail_step(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x + 1


@duralog.workflow(name="tail_flow")
async def tail_flow(x: int) -> int:
    return await tail_step(await tail_step(x))


@duralog.workflow(name="tail_loop")
async def tail_loop(n: int) -> int:
    await tail_step(n)
    if n:
        duralog.continue_as_new(n - 1)
    return n


@pytest.fixture
def store(db: str) -> Iterator[SQLiteStore]:
    duralog.Engine(db, worker=False).close()  # create the log
    s = SQLiteStore(db)
    yield s
    s.close()


class Follower:
    """``follow`` on a thread, collecting what it yields."""

    def __init__(self, store: SQLiteStore, **options: Any) -> None:
        self.events: list[CommittedEvent] = []
        self.stop = threading.Event()
        # follow() takes its starting point when called: here, not on the thread.
        events = follow(store, poll_interval=0.02, stop=self.stop, **options)
        self._thread = threading.Thread(target=self._run, args=(events,), daemon=True)
        self._thread.start()

    def _run(self, events: Iterator[CommittedEvent]) -> None:
        for event in events:
            self.events.append(event)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=10)


def test_follow_yields_what_is_appended_after_it_starts(
    db: str, store: SQLiteStore, wait_for: Wait
) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        old = engine.start(tail_flow, 1, id="old")
        old.result(timeout=10)
        follower = Follower(store)  # from now on: "old" is already there, not news
        new = engine.start(tail_flow, 10, id="new")
        assert new.result(timeout=10) == 12
        wait_for(lambda: any(e.kind == "WorkflowCompleted" for e in follower.events))
        follower.close()
        history = new.history()
    assert {e.workflow_id for e in follower.events} == {"new"}
    assert [(e.seq, e.kind) for e in follower.events] == [(h.seq, h.kind) for h in history]
    assert [e.step for e in follower.events if e.kind == "StepCompleted"] == ["tail_step"] * 2
    assert all(e.workflow_name == "tail_flow" and e.committed_at is None for e in follower.events)


def test_follow_since_filters_and_continue_as_new(
    db: str, store: SQLiteStore, wait_for: Wait
) -> None:
    start = time.time() - 1
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        with pytest.raises(duralog.WorkflowFailed):
            engine.start(tail_flow, -1, id="bad").result(timeout=10)
        engine.start(tail_loop, 2, id="loop").result(timeout=10)
        failures = Follower(store, since=start, kinds={"StepFailed", "StepRetrying"})
        loop = Follower(store, since=start, workflow_id="loop", kinds={"WorkflowStarted"})
        wait_for(lambda: len(failures.events) == 2 and len(loop.events) >= 3)
        failures.close()
        loop.close()
    assert [(e.workflow_id, e.kind, e.step) for e in failures.events] == [
        ("bad", "StepRetrying", "tail_step"),
        ("bad", "StepFailed", "tail_step"),
    ]
    # Following one workflow includes its earlier runs (archived as loop~run1, loop~run2).
    assert [(e.workflow_id, e.seq) for e in loop.events] == [
        ("loop~run1", 1),
        ("loop~run2", 1),
        ("loop", 1),
    ]


@duralog.workflow(name="tail_rounds")
async def tail_rounds(n: int) -> int:
    await duralog.wait_signal("next")
    if n:
        duralog.continue_as_new(n - 1)
    return n


def _run_of(store: SQLiteStore, workflow_id: str) -> int:
    first = store.read_events(workflow_id, 0, 1)
    return first[0].event.run if first else 0  # type: ignore[union-attr]


@pytest.mark.parametrize("only", [None, "rounds"])
def test_follow_through_continue_as_new(
    db: str, store: SQLiteStore, wait_for: Wait, only: str | None
) -> None:
    """A run's last events move to <id>~runN in the commit that ends it: none is lost,
    none is seen twice, each workflow's events stay in order."""
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        handle = engine.start(tail_rounds, 3, id="rounds")
        tail = _Tail(store, since=time.time() - 60, lag=COMMIT_LAG, workflow_id=only)

        def signal(then_run: int) -> None:
            handle.signal("next")
            wait_for(lambda: _run_of(store, "rounds") == then_run)

        def seen() -> list[tuple[str, int, str]]:
            return [(e.workflow_id, e.seq, e.kind) for e in tail.poll()]

        first = seen()
        signal(2)
        second = seen()
        signal(3)
        signal(4)  # two runs end between two polls
        third = seen()
        handle.signal("next")
        assert handle.result(timeout=10) == 0
        last = seen()
    end = [("SignalReceived", 2), ("ContinuedAsNew", 3)]
    assert first == [("rounds", 1, "WorkflowStarted")]
    assert second == [("rounds~run1", s, k) for k, s in end] + [("rounds", 1, "WorkflowStarted")]
    assert third == (
        [("rounds~run2", s, k) for k, s in end]
        + [("rounds~run3", 1, "WorkflowStarted")]
        + [("rounds~run3", s, k) for k, s in end]
        + [("rounds", 1, "WorkflowStarted")]
    )
    assert last == [("rounds", 2, "SignalReceived"), ("rounds", 3, "WorkflowCompleted")]
    assert tail.poll() == []


def test_following_one_workflow_shows_its_earlier_runs_in_the_window(
    db: str, store: SQLiteStore
) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        engine.start(tail_loop, 2, id="loop").result(timeout=10)
    events = list(follow(store, since=time.time() - 60, workflow_id="loop", stop=_stopped()))
    assert [e.workflow_id for e in events if e.kind == "WorkflowStarted"] == [
        "loop~run1",
        "loop~run2",
        "loop",
    ]
    assert events[-1].kind == "WorkflowCompleted"


def _stopped() -> threading.Event:
    stop = threading.Event()
    stop.set()  # one look at the log
    return stop


def test_parse_since() -> None:
    now = 1_000_000.0
    assert parse_since("90s", now) == now - 90
    assert parse_since("10m", now) == now - 600
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1d", now) == now - 86400
    assert parse_since("2026-11-25", now) == dt.datetime(2026, 11, 25, tzinfo=dt.UTC).timestamp()
    assert parse_since("2026-11-25T10:00+01:00", now) == (
        dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC).timestamp()
    )


def _invoke(*args: str) -> Any:
    env: dict[str, str | None] = {"DURALOG_DB": None, "DURALOG_APP": None}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)


def test_tail_no_follow_prints_what_is_there(db: str) -> None:
    with duralog.Engine(db, durability="normal") as engine:
        engine.run(tail_flow, 1, id="t-1", timeout=10)
        with pytest.raises(duralog.WorkflowFailed):
            engine.run(tail_flow, -5, id="t-2", timeout=10)
    done = _invoke("--db", db, "tail", "--since", "1h", "--no-follow")
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    check = SQLiteStore(db)
    assert len(lines) == len(check.read_events("t-1")) + len(check.read_events("t-2"))
    check.close()
    assert any("t-1 (tail_flow)  #4    StepCompleted     tail_step -> 2" in line for line in lines)

    done = _invoke(
        "--db", db, "tail", "--since", "1h", "--no-follow", "--json", "--kind", "StepFailed"
    )
    assert done.exit_code == 0, done.output
    (failed,) = [json.loads(line) for line in done.output.splitlines()]
    assert failed["workflow_id"] == "t-2" and failed["workflow_name"] == "tail_flow"
    assert failed["kind"] == "StepFailed" and failed["step"] == "tail_step"
    assert failed["error"]["message"] == "negative: -5"

    done = _invoke("--db", db, "tail", "--since", "1h", "--no-follow", "--workflow", "t-1")
    assert {line.split()[3] for line in done.output.splitlines()} == {"t-1"}


def test_tail_refuses_bad_input(db: str, tmp_path: Path) -> None:
    duralog.Engine(db, worker=False).close()
    done = _invoke("--db", db, "tail", "--since", "yesterday-ish")
    assert done.exit_code == 2 and "--since" in done.output and "Traceback" not in done.output
    done = _invoke("--db", str(tmp_path / "none.db"), "tail")
    assert done.exit_code == 1 and "no duralog database" in done.output


def test_tail_follows_another_process_live(db: str) -> None:
    """`duralog tail --json` in its own process prints this process's commits as they land."""
    duralog.Engine(db, worker=False).close()
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    tail = popen(
        [
            sys.executable,
            "-m",
            "duralog",
            "--db",
            db,
            "tail",
            "--json",
            "--interval",
            "0.05",
            "--since",
            since,
            "--count",
            "7",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DURALOG_DB": ""},
    )
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        engine.run(tail_flow, 3, id="live-1", timeout=PATIENCE)
    out, _ = tail.communicate(timeout=PATIENCE)
    assert tail.returncode == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["workflow_id"], e["seq"], e["kind"]) for e in events] == [
        ("live-1", 1, "WorkflowStarted"),
        ("live-1", 2, "StepScheduled"),
        ("live-1", 3, "StepStarted"),
        ("live-1", 4, "StepCompleted"),
        ("live-1", 5, "StepScheduled"),
        ("live-1", 6, "StepStarted"),
        ("live-1", 7, "StepCompleted"),
    ]


def test_engine_follow_reads_what_another_engine_commits(db: str, wait_for: Wait) -> None:
    with duralog.Engine(db, worker=False) as reader:
        stop = threading.Event()
        seen: list[CommittedEvent] = []
        events = reader.follow(kinds={"WorkflowCompleted"}, poll_interval=0.02, stop=stop)
        thread = threading.Thread(target=lambda: seen.extend(events), daemon=True)
        thread.start()
        with duralog.Engine(db, durability="normal", poll_interval=0.05) as writer:
            writer.run(tail_flow, 1, id="followed", timeout=10)
        wait_for(lambda: seen)
        stop.set()
        thread.join(timeout=10)
    assert [(e.workflow_id, e.kind) for e in seen] == [("followed", "WorkflowCompleted")]
