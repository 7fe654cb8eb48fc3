"""Several worker processes (stand-ins for machines) on one PostgreSQL log.

Some are killed with SIGKILL or frozen with SIGSTOP while they run steps: every
workflow completes; no step is recorded as completed twice; no history has a gap or
a duplicate seq; the frozen worker, thawed after others took its work over, gets
none of its writes in (the fencing check inside the append transaction). And a
queue's limits hold across worker processes (the crash suite's queue app, on
PostgreSQL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import load_app, peak, popen, read_line, wait_for

import duralog

APP = Path(__file__).with_name("app_pg_workers.py")
QUEUE_APP = Path(__file__).parents[1] / "crash" / "app_queues.py"
STEPS, WORKFLOWS = 20, 24


load_app(APP, "app_pg_workers")
queue_app = load_app(QUEUE_APP, "app_queues")


class Ledger:
    """The lines steps wrote: ``<pid> <workflow id>:<step seq>``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[tuple[int, str]]:
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            pid, _, key = line.partition(" ")
            if key:  # a line being written by a killed process may be cut short
                found.append((int(pid), key))
        return found

    def last_pid(self, besides: set[int]) -> int | None:
        return next((pid for pid, _ in reversed(self.lines()) if pid not in besides), None)


Spawn = Callable[..., subprocess.Popen[str]]
#: More than a pipe holds (64 KiB), as a thawed worker may log.
FLOOD = 256 * 1024


@pytest.fixture
def workers(postgres_url: str, tmp_path: Path) -> Iterator[Spawn]:
    """Starts worker processes on the test's log; every one is gone after the test.

    Each worker's stderr (its log) goes to a file, ``worker-<pid>.log``: a pipe that
    nobody reads until the worker exits would hold only 64 KiB, and a worker that
    logs more blocks in write() and never exits (a worker thawed after its session
    was ended logs a traceback per workflow of its failed batch: 3.4 KiB each).
    """
    started: list[subprocess.Popen[str]] = []
    env = {
        **os.environ,
        "PG_WORKERS_LEDGER": str(tmp_path / "ledger"),
        "PG_WORKERS_BUDGET": str(tmp_path / "budget"),
        "QUEUES_LEDGER": str(tmp_path / "queue-ledger"),
    }

    def start(app: Path = APP, **extra: str) -> subprocess.Popen[str]:
        # Its warnings go to a file: a pipe nobody reads would stop a worker that
        # writes many (a thawed one's refused appends, say) once it is full.
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("w") as stderr:
            process = popen(
                [sys.executable, str(app), postgres_url],
                env={**env, **extra},
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        log.rename(tmp_path / f"worker-{process.pid}.log")  # the worker writes on to it
        started.append(process)
        assert read_line(process.stdout) == "ready"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.communicate(timeout=30)


def stacks(processes: dict[int, subprocess.Popen[str]], gone: set[int], logs: Path) -> str:
    """The stacks of every live worker's threads (they dump them on SIGUSR1, into their
    logs) and the end of each log: what a stuck run needs to be understood."""
    live = {pid: p for pid, p in processes.items() if pid not in gone and p.poll() is None}
    for process in live.values():
        process.send_signal(signal.SIGUSR1)
    for pid in live:
        log = logs / f"worker-{pid}.log"
        with contextlib.suppress(AssertionError):
            wait_for(lambda log=log: "most recent call first" in log.read_text(), timeout=10)
    return "\n".join(
        f"--- worker {pid} (gone: {pid in gone}):\n{log.read_text()[-8000:]}"
        for pid in processes
        if (log := logs / f"worker-{pid}.log").exists()
    )


def stop(process: subprocess.Popen[str], log: Path) -> int:
    """Wait for a worker that was sent SIGTERM; fail with the end of its log if it hangs."""
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # the app dumps its threads' stacks
        time.sleep(1)
        pytest.fail(f"worker {process.pid} did not stop:\n{log.read_text()[-6000:]}")


def test_killed_and_frozen_workers_leave_every_history_whole(
    postgres_url: str, tmp_path: Path, workers: Spawn
) -> None:
    ledger = Ledger(tmp_path / "ledger")
    # Steps run only while the ledger holds fewer lines than the budget: a test thread
    # slowed by a busy machine cannot find the work all done before its last hit.
    budget = tmp_path / "budget"
    budget.write_text("0")
    processes = {p.pid: p for p in (workers() for _ in range(4))}  # they migrate the log at once
    gone: set[int] = set()

    def hit(sig: signal.Signals, after_lines: int) -> int:
        """Send ``sig`` to the worker that wrote the latest step, once ``after_lines``
        more steps ran: a worker caught in the middle of its work (the next steps
        wait for more budget)."""
        target = len(ledger.lines()) + after_lines
        budget.write_text(str(target))
        try:
            wait_for(lambda: len(ledger.lines()) >= target, what=f"{after_lines} more steps")
        except AssertionError as exc:  # stuck: say where every live worker is
            pytest.fail(f"{exc}\n{stacks(processes, gone, tmp_path)}")
        wait_for(lambda: ledger.last_pid(gone) is not None, what="a step by a live worker")
        pid = ledger.last_pid(gone)
        assert pid is not None
        processes[pid].send_signal(sig)
        gone.add(pid)
        return pid

    with duralog.Engine(postgres_url, worker=False) as client:
        handles = [
            client.start("pg_workers_flow", STEPS, id=f"flow-{i:02}") for i in range(WORKFLOWS)
        ]
        hit(signal.SIGKILL, after_lines=30)
        # Frozen, it loses its leases after 2 s (and, if it froze inside a transaction,
        # the rows it locked when the server ends its session: 10 s).
        frozen = hit(signal.SIGSTOP, after_lines=30)
        hit(signal.SIGKILL, after_lines=30)
        late = workers()  # another machine joins
        budget.unlink()  # the rest of the work, at full speed
        processes[late.pid] = late
        for handle in handles:
            try:
                assert handle.result(timeout=120) == sum(range(STEPS))
            except duralog.ResultTimeout:  # say who held it
                pytest.fail(f"{handle.record()} (frozen: {frozen}, gone: {gone})")
        # Thawed, the frozen worker believes it still owns its workflows: whatever it
        # tries to write is refused. A clean stop flushes all it had, so once it has
        # exited it has tried everything it ever will.
        processes[frozen].send_signal(signal.SIGCONT)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            stop(process, tmp_path / f"worker-{process.pid}.log")
        for handle in handles:
            history = handle.history()
            assert [e.seq for e in history] == list(range(1, len(history) + 1)), handle.id
            assert history[-1].kind == "WorkflowCompleted"
            completed = Counter(
                e.event.step_seq  # type: ignore[union-attr]
                for e in history
                if e.kind == "StepCompleted"
            )
            assert len(completed) == STEPS and set(completed.values()) == {1}, handle.id
            record = handle.record()
            assert (record.status, record.owner) == (duralog.WorkflowStatus.COMPLETED, None)
    ran = Counter(key for _, key in ledger.lines())
    assert len(ran) == WORKFLOWS * STEPS  # every step ran, at least once
    assert len({pid for pid, _ in ledger.lines()}) >= 3  # the work moved between workers
    for pid in processes.keys() - gone:
        assert processes[pid].returncode == 0


def test_queue_limits_hold_across_worker_processes(
    postgres_url: str, tmp_path: Path, workers: Spawn
) -> None:
    ledger = tmp_path / "queue-ledger"
    pair = [workers(QUEUE_APP) for _ in range(2)]
    with duralog.Engine(postgres_url, worker=False, queues=[queue_app.shared]) as client:
        handles = [client.start(queue_app.flow, i, queue=queue_app.shared) for i in range(14)]
        for handle in handles:
            handle.result(timeout=60)
    for process in pair:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    rows = [line.split() for line in ledger.read_text().splitlines()]
    assert len({row[3] for row in rows}) == 14  # every workflow's step ran
    assert peak([(float(r[1]), float(r[2])) for r in rows]) <= 3  # concurrency=3
    for pid in {row[0] for row in rows}:
        mine = [(float(r[1]), float(r[2])) for r in rows if r[0] == pid]
        assert peak(mine) <= 2  # worker_concurrency=2


def test_a_worker_that_logs_more_than_a_pipe_holds_still_stops(
    tmp_path: Path, workers: Spawn
) -> None:
    # Regression: the fixture gave each worker a stderr pipe and read it only after
    # the worker exited. A worker thawed after the server ended its session (frozen
    # inside a transaction) logs a traceback for each workflow of the batch that
    # failed; past 64 KiB (about 19 workflows) it blocked in write(), never exited on
    # SIGTERM, and the test failed waiting for it, once in many runs.
    process = workers(PG_WORKERS_LOG_FLOOD=str(FLOOD))
    process.send_signal(signal.SIGTERM)
    assert stop(process, tmp_path / f"worker-{process.pid}.log") == 0
    assert len((tmp_path / f"worker-{process.pid}.log").read_bytes()) >= FLOOD  # all of it
