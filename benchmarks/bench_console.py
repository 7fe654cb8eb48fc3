#!/usr/bin/env python3
"""The web console's server time: the list page over many workflows, and one long
workflow's page and timeline (target: each under 300 ms).

usage:
  python benchmarks/bench_console.py [--workflows 100000] [--events 2000] [--repeat 5]

Builds a SQLite log (durability=normal) with --workflows workflows (started in
batches, as `engine.start_many` does, by a process with no worker: they stay
PENDING, which changes nothing for the list) and one workflow of about --events
events (sequential steps, three events each, run by the engine). Then the median of
--repeat requests of each, timed in the server: from the request handed to the ASGI
application to the last byte of its answer (no network, no HTTP client):

  list           GET /                       (counts by status + the newest 50, with
                                              their steps and retries)
  list filtered  GET /?status=PENDING&name=…
  list long-1    GET /?name=bench_console.long (a row whose steps and retries are
                                              counted from its --events events)
  list page 100  GET /?after=…               (keyset paging, 100 pages in)
  api list       GET /api/workflows?limit=100
  workflow page  GET /workflows/ID           (header, timeline, events, state)
  timeline       console.timeline.layout()   (the timeline alone, no HTML)
  history json   GET /api/workflows/ID/history
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duralog
from duralog._cli_common import Context
from duralog.console import timeline
from duralog.console.app import create_app
from duralog.console.service import Console


@duralog.step(name="bench_console.noop", inline=True)
def noop(i: int) -> int:
    return i


@duralog.workflow(name="bench_console.long")
async def long(steps: int) -> int:
    for i in range(steps):
        await noop(i)
    return steps


@duralog.workflow(name="bench_console.short")
async def short(i: int) -> int:
    return await noop(i)


def build(db: str, workflows: int, events: int) -> None:
    started = time.perf_counter()
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        engine.run(long, max(1, (events - 2) // 3), id="long-1")
    with duralog.Engine(db, durability="normal", worker=False) as engine:
        batch = 5000
        for first in range(0, workflows, batch):
            count = min(batch, workflows - first)
            ids = [f"wf-{i:07d}" for i in range(first, first + count)]
            engine.start_many(short, [(i,) for i in range(count)], ids=ids)
    print(f"built {workflows:,} workflows and long-1 in {time.perf_counter() - started:.1f} s")


async def serve(app: Any, url: str) -> int:
    """Hand ``GET url`` to ``app`` as a server would; the size of its answer."""
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8265")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8265),
    }
    status, size = 0, 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            size += len(message.get("body", b""))

    await app(scope, receive, send)
    assert status == 200, (url, status)
    return size


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm: templates compiled, pages of the file in the cache
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "console.db")
        build(db, args.workflows, args.events)
        console = Console(Context(db))
        try:
            served = create_app(console)
            deep = f"wf-{max(0, args.workflows - 100 * 50):07d}"
            events = console.history("long-1")
            print(f"long-1 has {len(events):,} events")

            def get(url: str) -> Callable[[], object]:
                return lambda: asyncio.run(serve(served, url))

            rows = [
                ("list", get("/")),
                ("list filtered", get("/?status=PENDING&name=bench_console.short")),
                ("list long-1", get("/?name=bench_console.long")),
                ("list page 100", get(f"/?after={deep}")),
                ("api list", get("/api/workflows?limit=100")),
                ("workflow page", get("/workflows/long-1")),
                ("timeline", lambda: timeline.layout(events, time.time())),
                ("history json", get("/api/workflows/long-1/history")),
            ]
            print(f"{'request':<16} {'median ms':>10}  (target < 300 ms)")
            for name, call in rows:
                took = timed(call, args.repeat)
                flag = "" if took < 300 else "  OVER"
                print(f"{name:<16} {took:>10.1f}{flag}")
        finally:
            console.close()


if __name__ == "__main__":
    main()
