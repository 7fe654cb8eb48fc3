"""A report built from three sources: a DAG whose independent tasks run at once.

    python examples/dag.py

``users`` and ``orders`` depend on nothing, so they start together; ``prices``
waits for a free slot (``max_parallel=2``); ``report`` starts when all three are
done and receives their results as the arguments of the same names. Each task is
a durable step: the timeline below is measured by the steps themselves.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import duralog

T0 = time.monotonic()
TIMES: dict[str, tuple[float, float]] = {}


def work(name: str, seconds: float) -> None:
    start = time.monotonic()
    time.sleep(seconds)  # a slow query, really
    TIMES[name] = (start - T0, time.monotonic() - T0)


@duralog.step
def users(region: str) -> list[str]:
    work("users", 0.3)
    return ["ana", "bo", "chen"]


@duralog.step
def orders(region: str) -> list[int]:
    work("orders", 0.3)
    return [1999, 500]


@duralog.step
def prices(currency: str = "EUR") -> dict[str, float]:
    work("prices", 0.2)
    return {"EUR": 1.0}


@duralog.step
def report(users: list[str], orders: list[int], prices: dict[str, float], region: str) -> str:
    work("report", 0.05)
    return f"{region}: {len(users)} users, {sum(orders) / 100:.2f} EUR in {len(orders)} orders"


daily_report = duralog.DAG(
    "daily-report",
    [
        duralog.Task(users),
        duralog.Task(orders),
        duralog.Task(prices),
        duralog.Task(report, depends_on=["users", "orders", "prices"]),
    ],
    max_parallel=2,
)


def main() -> None:
    global T0
    db = str(Path(tempfile.mkdtemp(prefix="duralog-dag-")) / "reports.db")
    with duralog.Engine(db) as engine:
        T0 = time.monotonic()
        result = engine.run(daily_report, {"region": "eu"}, timeout=30)
        print(f"  result: {result}")
    for name, (start, end) in sorted(TIMES.items(), key=lambda item: item[1]):
        bar = " " * int(start * 40) + "#" * max(1, int((end - start) * 40))
        print(f"  {name:<7} {start:5.2f}s - {end:5.2f}s  {bar}")
    overlap = min(TIMES["users"][1], TIMES["orders"][1]) - max(
        TIMES["users"][0], TIMES["orders"][0]
    )
    print(f"  users and orders ran at once for {overlap:.2f}s; prices waited for a free slot")


if __name__ == "__main__":
    main()
