#!/usr/bin/env python3
"""Latencies: how late durable timers fire, how soon a cancel or a close takes effect.

usage:
  python benchmarks/bench_latency.py [--repeat 20] [--crashes 5] [--url URL] [--no-postgres]

The tests check these by the order of events (a timer never fires before its
deadline, a cancelled step ends by its cancellation); how long they take depends on
the machine, so it is measured here:

  timer           TimerFired.at - fire_at of a 0.2 s durable sleep, engine running
  timer, crashed  the same for a 2 s sleep whose worker was killed (SIGKILL) during
                  it; a fresh process resumes before the deadline and fires the
                  timer from the deadline in the log
  cancel          handle.cancel() until result() raises, an async step awaiting
  pg close        PostgresStore.close() with its LISTEN thread running
  pg wake         client.start() until WorkflowCompleted, on a worker that polls
                  once an hour: LISTEN/NOTIFY brings it the work

Prints the median, the 90th percentile and the worst of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duralog

DEFAULT_URL = os.environ.get("DURALOG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@duralog.step(name="bench_latency.noop")
def noop() -> None:
    return None


@duralog.workflow(name="bench_latency.sleeper")
async def sleeper(seconds: float) -> None:
    await noop()
    await duralog.sleep(seconds)


@duralog.step(name="bench_latency.forever")
async def forever() -> None:
    await asyncio.sleep(3600)


@duralog.workflow(name="bench_latency.stuck")
async def stuck() -> None:
    await forever()


def lateness(history: list[duralog.LogEntry]) -> float:
    started = next(e for e in history if e.kind == "TimerStarted")
    fired = next(e for e in history if e.kind == "TimerFired")
    return fired.at - started.event.fire_at  # type: ignore[union-attr]


def timers(folder: Path, repeat: int) -> list[float]:
    with duralog.Engine(str(folder / "timer.db"), durability="normal") as engine:
        handles = [engine.start(sleeper, 0.2) for _ in range(repeat)]
        for handle in handles:  # all sleeping at once, on one worker
            handle.result(timeout=60)
        return [lateness(h.history()) for h in handles]


def crashed_timers(folder: Path, repeat: int) -> list[float]:
    found = []
    for i in range(repeat):
        db = str(folder / f"crash-{i}.db")
        serve = [sys.executable, __file__, "--serve", db]
        first = subprocess.Popen(serve)
        while True:
            time.sleep(0.01)
            if Path(db).exists() and _has_timer(db):
                break
        first.send_signal(signal.SIGKILL)
        first.wait()
        subprocess.run(serve, check=True, timeout=120)  # resumes, waits for the end
        with duralog.Engine(db, worker=False) as engine:
            found.append(lateness(engine.get("sleeper").history()))
    return found


def _has_timer(db: str) -> bool:
    try:
        with duralog.Engine(db, worker=False) as engine:
            return any(e.kind == "TimerStarted" for e in engine.get("sleeper").history())
    except duralog.DuralogError:
        return False


def serve(db: str) -> None:
    with duralog.Engine(db) as engine:
        engine.start(sleeper, 2.0, id="sleeper").result(timeout=120)


def cancels(folder: Path, repeat: int) -> list[float]:
    found = []
    with duralog.Engine(str(folder / "cancel.db"), durability="normal") as engine:
        for _ in range(repeat):
            handle = engine.start(stuck)
            while "StepStarted" not in [e.kind for e in handle.history()]:
                time.sleep(0.005)
            started = time.perf_counter()
            handle.cancel()
            try:
                handle.result(timeout=60)
            except duralog.WorkflowFailed:
                found.append(time.perf_counter() - started)
    return found


def postgres(url: str, repeat: int) -> dict[str, list[float]]:
    from duralog.store.postgres import PostgresStore

    closes, wakes = [], []
    for _ in range(repeat):
        schema_url = f"{url}{'&' if '?' in url else '?'}schema=bench_{uuid.uuid4().hex[:10]}"
        store = PostgresStore(schema_url)
        store.listen(lambda kind, workflow_id: None)
        started = time.perf_counter()
        store.close()
        closes.append(time.perf_counter() - started)
        with (
            duralog.Engine(schema_url, durability="normal", poll_interval=3600) as worker,
            duralog.Engine(schema_url, worker=False) as client,
        ):
            assert worker.store is not client.store
            started = time.perf_counter()
            client.start(sleeper, 0.0).result(timeout=60)
            wakes.append(time.perf_counter() - started)
        _drop(url, schema_url.rpartition("schema=")[2])
    return {"pg close": closes, "pg wake": wakes}


def _drop(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--crashes", type=int, default=5, help="runs of the crashed timer")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve:
        serve(opts.serve)
        return
    folder = Path(tempfile.mkdtemp(prefix="duralog-latency-"))
    results = {
        "timer": timers(folder, opts.repeat),
        "timer, crashed": crashed_timers(folder, opts.crashes),
        "cancel": cancels(folder, opts.repeat),
    }
    if not opts.no_postgres:
        results.update(postgres(opts.url, opts.repeat))
    print(f"{'':<16}{'median':>10}{'p90':>10}{'worst':>10}   (ms, {os.cpu_count()} cores)")
    for label, values in results.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        row = [statistics.median(ordered), p90, ordered[-1]]
        print(f"{label:<16}" + "".join(f"{1000 * v:>10.1f}" for v in row))


if __name__ == "__main__":
    main()
