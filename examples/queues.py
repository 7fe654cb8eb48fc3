"""Queues and schedules: bounded concurrency, a rate limit, priorities, a cron schedule.

    python examples/queues.py

Eight thumbnail jobs go on a queue that runs at most two at once and takes at most
four per second off the queue; the urgent ones (lower priority number) run first. A
schedule meanwhile starts a report every two seconds; each tick's workflow id is
derived from the tick's time, so a tick can never run twice.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import time
from pathlib import Path

import duralog

thumbnails = duralog.Queue("thumbnails", concurrency=2, rate_limit=4, period=1.0)
_lock = threading.Lock()
_running = 0
T0 = time.monotonic()


@duralog.step
def render(image: str) -> str:
    global _running
    with _lock:
        _running += 1
        print(f"  {time.monotonic() - T0:4.1f}s  render {image:<10} ({_running} running)")
    time.sleep(0.3)
    with _lock:
        _running -= 1
    return f"{image}.thumb.png"


@duralog.workflow
async def thumbnail(image: str) -> str:
    return await render(image)


@duralog.step
def build_report(tick: dt.datetime) -> str:
    return f"report for {tick:%H:%M:%S}"


@duralog.workflow
async def report(tick: dt.datetime) -> str:
    return await build_report(tick)


def main() -> None:
    db = Path(tempfile.mkdtemp()) / "queues.db"
    jobs = [("cat", 5), ("dog", 5), ("invoice", 0), ("owl", 5), ("receipt", 0), ("fox", 9)]
    with duralog.Engine(db, worker=False) as client:  # enqueue first, as a web app would
        ids = [client.start(thumbnail, img, queue=thumbnails, priority=p).id for img, p in jobs]
    print("queue 'thumbnails': concurrency=2, rate_limit=4 per second, lower priority first")
    with duralog.Engine(db, durability="normal", poll_interval=0.1) as engine:
        handles = [engine.get(workflow_id) for workflow_id in ids]
        for handle in handles:
            handle.result(timeout=30)
        print("every job done; at most two ever ran at once\n")

        engine.schedule("report", "* * * * * */2", report)  # a sixth field: seconds
        print("schedule 'report' every 2 seconds:")
        deadline = time.monotonic() + 30
        while len(engine.list(name="report", status="COMPLETED")) < 3:
            assert time.monotonic() < deadline, "the schedule did not fire"
            time.sleep(0.1)
        for record in sorted(engine.list(name="report", status="COMPLETED"), key=lambda r: r.id):
            print(f"  {record.id}: {engine.get(record.id).result()!r}")
        engine.unschedule("report")


if __name__ == "__main__":
    main()
