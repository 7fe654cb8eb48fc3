"""Queue limits hold across worker processes: two workers, one queue, one log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from support import PATIENCE, load_app, peak, popen, read_line, wait_for

import duralog

HERE = Path(__file__).parent


app = load_app(HERE / "app_queues.py")


def test_global_and_per_worker_limits_hold_across_processes(tmp_path: Path) -> None:
    db, ledger = str(tmp_path / "log.db"), tmp_path / "ledger"
    env = {**os.environ, "QUEUES_LEDGER": str(ledger), "PYTHONPATH": str(HERE)}
    cli = [sys.executable, "-m", "duralog", "--db", db, "--app", "app_queues"]
    subprocess.run(  # the CLI puts one on the queue; the rest come once workers listen
        [*cli, "start", "queue_processes_flow", "--input", "[0]", "--queue", "shared"],
        env=env,
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=PATIENCE,
    )
    workers = [
        popen(
            [sys.executable, str(HERE / "app_queues.py"), db],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in workers:
        assert read_line(process.stdout) == "ready"
    with duralog.Engine(db, worker=False, queues=[app.shared]) as client:
        for i in range(1, 14):
            client.start(app.flow, i, queue=app.shared)
    wait_for(
        lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 14,
        what="the queue to drain",
    )
    for process in workers:
        process.send_signal(signal.SIGTERM)
    for process in workers:
        process.communicate(timeout=PATIENCE)
    rows = [line.split() for line in ledger.read_text().splitlines()]
    assert len(rows) == len({row[3] for row in rows}) == 14  # every step ran, once
    intervals = [(float(row[1]), float(row[2])) for row in rows]
    assert peak(intervals) <= 3  # concurrency=3 across both processes
    for pid in {row[0] for row in rows}:
        mine = [(float(r[1]), float(r[2])) for r in rows if r[0] == pid]
        assert peak(mine) <= 2  # worker_concurrency=2
    assert len({row[0] for row in rows}) == 2  # both workers took work
