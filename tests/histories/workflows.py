"""The workflows the golden histories in this folder were recorded from.

They live in a private ``WORKFLOWS`` registry (not the global one), so the tests
can put a changed version of one next to them. Their steps are the CLI test app's
(``tests/cli/shop_steps.py``), registered as ``golden_*``. To re-record the
histories, from the repository root:

    PYTHONPATH=tests python tests/histories/workflows.py

which runs each workflow once on a fresh log and writes ``<id>.json`` here with
``duralog export``. Re-record only on purpose (a new event format): the point of
the files is that today's code must still replay yesterday's histories.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from support import load_app

import duralog
from duralog.replay.definitions import Registry, Workflow

HERE = Path(__file__).parent

reserve, charge, ship = load_app(HERE.parent / "cli" / "shop_steps.py").shop("golden")


@duralog.step(name="golden_price")
async def price(item: str) -> int:
    return len(item) * 100


@duralog.step(
    name="golden_flaky",
    retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False),
)
def flaky(order: str) -> str:
    # Fails its first attempt, whatever the process: the history records one retry.
    if duralog.step_info().attempt == 1:
        raise ConnectionError(f"payment service unreachable for {order}")
    return f"paid {order}"


async def sequential(order: str, cents: int) -> list[str]:
    return [await reserve(order), await charge(order, cents), await ship(order)]


async def gathered(items: list[str]) -> int:
    prices = await asyncio.gather(*(price(item) for item in items))
    return sum(prices)


async def retried(order: str) -> str:
    paid = await flaky(order)
    return f"{paid}, {await ship(order)}"


async def updated(limit: int) -> list[str]:
    items: list[str] = []

    def has_room(item: str) -> None:
        if len(items) >= limit:
            raise ValueError(f"at most {limit} items")

    async def add(item: str) -> int:
        items.append(item)
        await reserve(item)
        return len(items)

    duralog.on_update("add_item", add, validator=has_room)
    duralog.on_query("items", lambda: items)
    await duralog.wait_signal("checkout")
    return items


@duralog.step(name="golden_tokens")
def tokens(text: str) -> int:
    words = text.split()
    for word in words:
        duralog.write_stream("tokens", word)
    return len(words)


async def streamed(text: str) -> int:
    duralog.write_stream("tokens", "<start>")
    count = await tokens(text)
    duralog.close_stream("tokens")
    return count


def make_registry(**changed: Any) -> Registry:
    """The golden workflows, with any of them replaced: ``make_registry(golden_x=fn)``."""
    registry = Registry()
    functions = {
        "golden_sequential": sequential,
        "golden_gather": gathered,
        "golden_retry": retried,
        "golden_update": updated,
        "golden_stream": streamed,
        **changed,
    }
    for name, fn in functions.items():
        registry.add(Workflow(fn, name=name))
    return registry


WORKFLOWS = make_registry()

#: file stem (= workflow id) -> (workflow name, input, expected result)
GOLDEN: dict[str, tuple[str, list[Any], Any]] = {
    "sequential": (
        "golden_sequential",
        ["o-1", 1999],
        ["reserved o-1", "charged o-1 1999", "shipped o-1"],
    ),
    "gather": ("golden_gather", [["tea", "biscuits", "jam"]], 1400),
    "retry": ("golden_retry", ["o-2"], "paid o-2, shipped o-2"),
    "forked": (
        "golden_sequential",
        ["o-1", 1999],
        ["reserved o-1", "charged o-1 1999", "shipped o-1"],
    ),
    "update": ("golden_update", [2], ["o-3", "o-4"]),
    "stream": ("golden_stream", ["streams are durable"], 3),
}
#: file stem -> (the golden history it is a fork of, the seq it was forked from): its
#: reserve step is a copy, the rest ran in the fork.
FORKS: dict[str, tuple[str, int]] = {"forked": ("sequential", 5)}


def drive(workflow_id: str, handle: duralog.WorkflowHandle[Any]) -> None:
    """What a golden run is sent while it runs (``update``: two updates, then the
    signal that ends it)."""
    if workflow_id == "update":
        assert handle.update("add_item", "o-3", timeout=30) == 1
        assert handle.update("add_item", "o-4", timeout=30) == 2
        handle.signal("checkout")


def record(folder: Path) -> None:
    """Run every golden workflow on a fresh log and export its history into ``folder``."""
    with tempfile.TemporaryDirectory() as scratch:
        db = str(Path(scratch) / "golden.db")
        with duralog.Engine(db, registry=WORKFLOWS, poll_interval=0.05) as engine:
            for workflow_id, (name, args, expected) in GOLDEN.items():
                if workflow_id in FORKS:
                    source, seq = FORKS[workflow_id]
                    handle = engine.get(source).fork(from_seq=seq, id=workflow_id)
                else:
                    handle = engine.start(name, *args, id=workflow_id)
                drive(workflow_id, handle)
                result = handle.result(timeout=30)
                assert result == expected, (workflow_id, result)
        for workflow_id in GOLDEN:
            out = folder / f"{workflow_id}.json"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "duralog",
                    "--db",
                    db,
                    "export",
                    workflow_id,
                    "-o",
                    str(out),
                ],
                check=True,
            )


if __name__ == "__main__":
    record(HERE)
