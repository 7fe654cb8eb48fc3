"""An ETL pipeline: three durable steps, each one's result the next one's input.

    python examples/pipeline.py

``duralog.Pipeline`` registers a workflow made of its stages. Each stage is a
step call in the log, so a crash resumes after the last completed stage, and
starting the same id again returns the recorded result without running anything.
"""

from __future__ import annotations

import collections
import dataclasses
import tempfile
from pathlib import Path

import duralog
from duralog.testing import step_names

RAN: collections.Counter[str] = collections.Counter()


@dataclasses.dataclass
class Batch:
    day: str
    rows: list[dict[str, int]]


@duralog.step
def extract(day: str) -> Batch:
    RAN["extract"] += 1
    return Batch(day, [{"cents": 1999}, {"cents": 500}, {"cents": -20}])  # a query, really


@duralog.step
def transform(batch: Batch) -> Batch:
    RAN["transform"] += 1
    return Batch(batch.day, [row for row in batch.rows if row["cents"] > 0])


@duralog.step(retry=duralog.RetryPolicy(max_attempts=5), timeout=30)
def load(batch: Batch) -> str:
    RAN["load"] += 1
    return f"loaded {len(batch.rows)} rows for {batch.day}"  # a warehouse write, really


nightly = duralog.Pipeline("nightly-etl").then(extract).then(transform).then(load)


def main() -> None:
    db = str(Path(tempfile.mkdtemp(prefix="duralog-pipeline-")) / "etl.db")
    print(f"  {nightly!r}")
    with duralog.Engine(db) as engine:
        handle = engine.start(nightly, "2026-11-25", id="etl-2026-11-25")
        print(f"  result: {handle.result(timeout=30)}")
        events = len(handle.history())
        print(f"  the log: {events} events, steps {', '.join(step_names(handle))}")
        again = engine.start(nightly, "2026-11-25", id="etl-2026-11-25")
        print(f"  started again with the same id: {again.result(timeout=30)}")
    print("  stage runs: " + ", ".join(f"{name} {n}" for name, n in RAN.items()))


if __name__ == "__main__":
    main()
