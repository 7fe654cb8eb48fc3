"""Metrics read from the log: ``duralog stats``, as a table, as JSON, for Prometheus.

    python examples/metrics.py

Runs twenty orders against a flaky warehouse: every third order's first
reservation times out and is retried, and orders 7 and 17 are out of stock (they
fail for good after three attempts). Nothing was counted while they ran: the
numbers below are read back from the log, so any process can ask, at any time,
even after a crash.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

import duralog


@duralog.step(retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.01))
def reserve_stock(n: int) -> str:
    if n % 10 == 7:
        raise LookupError(f"item {n} is out of stock")
    if n % 3 == 0 and duralog.step_info().attempt == 1:
        raise TimeoutError("the warehouse did not answer in time")
    return f"shelf-{n}"


@duralog.step
def ship(n: int, shelf: str) -> str:
    return f"parcel-{n}"


@duralog.workflow
async def order(n: int) -> str:
    return await ship(n, await reserve_stock(n))


def duralog_cli(db: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def main() -> None:
    db = str(Path(tempfile.mkdtemp(prefix="duralog-metrics-")) / "shop.db")
    with duralog.Engine(db, durability="normal") as engine:
        handles = [engine.start(order, n, id=f"order-{n}") for n in range(20)]
        for handle in handles:
            with contextlib.suppress(duralog.WorkflowFailed):  # two of them, by design
                handle.result(timeout=30)
        stats = engine.stats()  # the same numbers, from Python

    (orders,) = stats.workflows
    reserve = next(s for s in stats.steps if s.name == "reserve_stock")
    print(f"orders: {orders.completed} completed, {orders.failed} failed")
    print(f"retries of reserve_stock: {reserve.retries}; errors: {reserve.errors}\n")

    print("$ duralog stats")
    print(duralog_cli(db, "stats"))
    print("$ duralog stats --prometheus | grep -v _bucket | grep reserve_stock")
    for line in duralog_cli(db, "stats", "--prometheus").splitlines():
        if "reserve_stock" in line and "_bucket" not in line:
            print(line)


if __name__ == "__main__":
    main()
