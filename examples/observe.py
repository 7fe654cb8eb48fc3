"""Watching workflows move: ``engine.subscribe`` here, ``duralog tail`` from another process.

    python examples/observe.py

The script starts ``duralog tail`` in a separate process on the same log, then
runs three orders (one step fails once and is retried, one order fails for
good). In this process a subscriber prints each event as soon as it is committed;
the tail process reads the same events back from the database. Both see every
transition, in order; neither can slow down or break the worker.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duralog


@duralog.step(retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.05))
def reserve(order_id: str) -> str:
    if order_id == "o-2" and duralog.step_info().attempt == 1:
        raise TimeoutError("warehouse slow to answer")
    if order_id == "o-3":
        raise LookupError("out of stock")
    return f"shelf-{order_id}"


@duralog.step
def ship(order_id: str, slot: str) -> str:
    return f"parcel-{order_id}"


@duralog.workflow
async def fulfil(order_id: str) -> str:
    slot = await reserve(order_id)
    return await ship(order_id, slot)


def live_feed(event: duralog.CommittedEvent) -> None:
    """A subscriber: called on its own thread, once per committed event."""
    step = f" {event.step}" if event.step else ""
    took = f"{(event.committed_at or event.at) - event.at:.4f}s after the event"
    print(f"  [subscriber] {event.workflow_id} #{event.seq} {event.kind}{step}  ({took})")


def main() -> None:
    db = str(Path(tempfile.mkdtemp(prefix="duralog-observe-")) / "shop.db")
    duralog.Engine(db, worker=False).close()  # create the log for the tail process
    since = dt.datetime.now(dt.UTC).isoformat()
    command = ["duralog", "--db", db, "tail", "--since", since, "--interval", "0.1"]
    tail = subprocess.Popen(
        [sys.executable, "-m", *command],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DURALOG_DB": ""},
    )
    tailed: list[str] = []
    reader = threading.Thread(target=lambda: tailed.extend(tail.stdout or []), daemon=True)
    reader.start()

    print("1. this process: a subscriber prints each event as it is committed")
    with duralog.Engine(db) as engine:
        subscription = engine.subscribe(live_feed)
        handles = [engine.start(fulfil, f"o-{i}", id=f"o-{i}") for i in (1, 2, 3)]
        for handle in handles:
            try:
                print(f"  -> {handle.id}: {handle.result(timeout=30)}")
            except duralog.WorkflowFailed as failed:
                print(f"  -> {handle.id}: FAILED ({failed.cause})")
        subscription.close()
        total = sum(len(h.history()) for h in handles)
    print(f"   the subscriber saw {total} events, dropped {subscription.dropped}")

    deadline = time.monotonic() + 30
    while len(tailed) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    tail.terminate()
    tail.wait(timeout=10)
    print(f"\n2. the other process, `duralog --db {Path(db).name} tail`, printed {len(tailed)}:")
    for line in tailed:
        print(f"  {line.rstrip()}")


if __name__ == "__main__":
    main()
