"""A parent workflow that ships an order as parcels, one child workflow per warehouse.

    python examples/children.py

Each child is a durable workflow of its own (id ``<parent id>/<seq>``), runs
concurrently with its siblings, and reports its result, or its failure, to the
parent, which catches it and reroutes the parcel.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import duralog


@duralog.step(retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.1))
def pick(warehouse: str, items: list[str]) -> list[str]:
    if warehouse == "flooded":
        raise RuntimeError("the warehouse is closed")
    return [f"{item}@{warehouse}" for item in items]


@duralog.step
def label(warehouse: str, picked: list[str]) -> str:
    return f"parcel from {warehouse}: {', '.join(picked)}"


@duralog.workflow
async def ship_parcel(warehouse: str, items: list[str]) -> str:
    picked = await pick(warehouse, items)
    return await label(warehouse, picked)


@duralog.workflow
async def ship_order(order_id: str, split: dict[str, list[str]]) -> list[str]:
    async def ship(warehouse: str, items: list[str]) -> str:
        try:
            return await ship_parcel(warehouse, items)  # a child workflow
        except duralog.WorkflowFailed as exc:
            rerouted = await ship_parcel("central", items)
            return f"{rerouted} (rerouted: {exc.cause.message.rsplit(': ', 1)[-1]})"

    return list(await asyncio.gather(*(ship(w, items) for w, items in split.items())))


def main() -> None:
    db = str(Path(tempfile.mkdtemp(prefix="duralog-children-")) / "orders.db")
    split = {"north": ["kettle"], "flooded": ["teapot", "cups"], "south": ["tray"]}
    with duralog.Engine(db) as engine:
        for line in engine.run(ship_order, "o-7", split, id="o-7", timeout=30):
            print(f"  {line}")
        for record in engine.list(name="ship_parcel"):
            print(f"  child {record.id:<8} {record.status.value}")


if __name__ == "__main__":
    main()
