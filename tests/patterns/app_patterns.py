"""The patterns as an app: ``python app_patterns.py DB WORKFLOW ID [JSON ARGS]``, or ``--app``.

Every step appends ``<label> <idempotency key>`` to the ledger named by
``CRASH_LEDGER``. ``CRASH_AT=<label>`` makes the step with that label SIGKILL its
own process the first time it runs (a marker file remembers it), after waiting
until the log holds ``CRASH_AFTER`` step completions (so that a sibling running
in parallel has finished, durably). ``MODE=serve`` only runs a worker until the workflow ends.

Imported as ``--app app_patterns`` (from this folder) it registers the same
workflows, so ``duralog replay --all`` checks the histories the tests leave.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import duralog
from duralog.store.sqlite import SQLiteStore


def completions(db: str, workflow_id: str) -> int:
    """How many step completions of the workflow are in the log (a fresh connection)."""
    store = SQLiteStore(db)
    try:
        return sum(e.kind == "StepCompleted" for e in store.read_events(workflow_id))
    finally:
        store.close()


def note(label: str) -> None:
    ledger = os.environ.get("CRASH_LEDGER")
    if ledger is None:
        return
    with open(ledger, "a") as f:
        f.write(f"{label} {duralog.step_info().idempotency_key}\n")
        f.flush()
        os.fsync(f.fileno())
    marker = Path(f"{ledger}.crashed-{label}")
    if os.environ.get("CRASH_AT") == label and not marker.exists():
        wanted = int(os.environ.get("CRASH_AFTER", "0"))
        deadline = time.monotonic() + 60
        db, workflow_id = os.environ["CRASH_DB"], duralog.step_info().workflow_id
        while completions(db, workflow_id) < wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"{wanted} completions never came")
            time.sleep(0.01)
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)


@duralog.step
def work(label: str, value: Any = None) -> list[Any]:
    note(label)
    return [label, value]


# -- Pipeline ---------------------------------------------------------------


@duralog.step
def extract(day: str) -> list[int]:
    note("extract")
    return [int(part) for part in day.split("-")]


@duralog.step
def transform(rows: list[int]) -> list[int]:
    note("transform")
    return [row * 2 for row in rows]


@duralog.step
def load(rows: list[int]) -> int:
    note("load")
    return sum(rows)


etl = duralog.Pipeline("pt-etl").then(extract).then(transform).then(load)


# -- DAG ----------------------------------------------------------------------


@duralog.step
def root(label: str = "root") -> int:
    note(label)
    return 1


@duralog.step
def left(root: int, label: str = "left") -> int:
    note(label)
    return root + 10


@duralog.step
def right(root: int, label: str = "right") -> int:
    note(label)
    return root + 100


@duralog.step
def join(left: int, right: int, label: str = "join") -> int:
    note(label)
    return left + right


diamond = duralog.DAG(
    "pt-diamond",
    [
        duralog.Task(root),
        duralog.Task(left, depends_on="root"),
        duralog.Task(right, depends_on="root"),
        duralog.Task(join, depends_on=["left", "right"]),
    ],
    max_parallel=2,
)


# -- map ----------------------------------------------------------------------


@duralog.step
def square(label: str) -> int:
    note(label)
    return int(label.removeprefix("item")) ** 2


@duralog.workflow(name="pt-fanout")
async def fanout(count: int) -> list[int]:
    return await duralog.map(square, [f"item{i}" for i in range(count)], max_parallel=2)


# -- Saga ---------------------------------------------------------------------


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def book(label: str) -> str:
    note(label)
    if label == "book-car":
        raise RuntimeError("no cars left")
    return label.removeprefix("book-")


@duralog.step(retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
def cancel(label: str) -> None:
    note(label)


@duralog.workflow(name="pt-trip")
async def trip(legs: list[str]) -> str:
    try:
        async with duralog.Saga() as saga:
            for leg in legs:
                await book(f"book-{leg}")
                saga.add_compensation(cancel, f"cancel-{leg}")
    except duralog.StepFailed as exc:
        return f"rolled back after {exc.error.message}"
    return "booked"


# -- a workflow from a document -------------------------------------------------

STEP_TYPES = duralog.StepRegistry([work])
configured = duralog.load_workflow(Path(__file__).with_name("configured.toml"), STEP_TYPES)


if __name__ == "__main__":
    db, name, workflow_id, *args = sys.argv[1:]
    os.environ["CRASH_DB"] = db
    with duralog.Engine(db, poll_interval=0.05) as engine:
        if os.environ.get("MODE", "start") == "start":
            handle = engine.start(name, *[json.loads(a) for a in args], id=workflow_id)
        else:
            handle = engine.get(workflow_id)
        print(json.dumps(handle.result(timeout=60)), flush=True)
