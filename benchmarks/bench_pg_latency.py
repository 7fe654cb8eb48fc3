#!/usr/bin/env python3
"""Step latency on PostgreSQL with many workflows in flight, with and without added
network latency (a delaying TCP proxy, or ``tc netem`` on loopback).

usage:
  python benchmarks/bench_pg_latency.py [--url postgresql://postgres@127.0.0.1:5432/test]
                                        [--workflows 200] [--k 10] [--delay-ms 0,5]
                                        [--repeat 3] [--modes loop,off] [--durability normal]
                                        [--netem]

One engine (one worker) on a fresh schema starts ``--workflows`` workflows of ``--k``
no-op sync steps each, all at once (``start_many``: one commit), and waits for them.
Each step notes when it began; a step's latency is the time from the start of the
previous step of its workflow to its own start: committing the previous result,
replaying, scheduling and dispatching the next step. Reported: p50, p99 and max over
all those gaps, and the wall time of the run.

Modes: ``off`` is the engine as shipped (a remote store's calls leave the worker's
loop); ``loop`` sets ``store.remote = False`` on the store, which makes the worker
write on its loop as it does for SQLite (the behaviour before the change).

``--delay-ms D`` (D > 0) delays every byte between the engine and the server by D ms
each way (a round trip takes 2 D more): by default through a TCP proxy in a process
of its own (``--proxy``: each chunk read is written D ms later, in order); with
``--netem`` (as root, where the kernel has ``sch_netem``) by ``tc qdisc add dev lo
root netem delay Dms`` while the workflows run, removed in a ``finally`` (it delays
ALL loopback traffic of the machine while it is on: keep runs short). Runs alternate
between modes (loop, off, loop, ...); the table shows the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import duralog
from duralog.store.postgres import PostgresStore

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
_began: dict[str, list[float]] = defaultdict(list)
_lock = threading.Lock()


@duralog.step
def lat_noop(workflow_id: str, i: int) -> int:
    now = time.perf_counter()
    with _lock:
        _began[workflow_id].append(now)
    return i


@duralog.workflow(name="bench_pg_latency")
async def bench_pg_latency(workflow_id: str, k: int) -> int:
    for i in range(k):
        await lat_noop(workflow_id, i)
    return k


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def netem(delay_ms: float) -> None:
    command = ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", f"{delay_ms}ms"]
    subprocess.run(command, check=True)


def netem_off() -> None:
    subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False, capture_output=True)


def proxy(delay_ms: float, target_port: int) -> None:
    """The delaying TCP proxy (``--proxy``): prints its port, serves until killed."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    writer.close()
                    return
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + delay_ms / 1000, data))
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(ConnectionError):
            await task

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def serve() -> None:
        server = await asyncio.start_server(client, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(serve())


@contextlib.contextmanager
def proxied(url: str, delay_ms: float) -> Iterator[str]:
    """``url`` through a proxy that delays its traffic by ``delay_ms`` each way."""
    if delay_ms <= 0:
        yield url
        return
    parts = urlsplit(url)
    process = subprocess.Popen(
        [sys.executable, __file__, "--proxy", str(delay_ms), str(parts.port or 5432)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        yield urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))
    finally:
        process.kill()
        process.wait()


def run_once(
    url: str, mode: str, n: int, k: int, delay_ms: float, durability: str, use_netem: bool
) -> dict[str, Any]:
    schema = f"bench_lat_{uuid.uuid4().hex[:10]}"
    try:
        with proxied(url, 0 if use_netem else delay_ms) as address:
            store = PostgresStore(address, schema=schema, durability=durability)  # type: ignore[arg-type]
            if mode == "loop":
                store.remote = False  # the worker's store calls on its loop (before)
            with duralog.Engine(store, durability=durability) as engine:  # type: ignore[arg-type]
                engine.start(bench_pg_latency, "warm", 2).result(timeout=60)  # connections up
                _began.clear()
                if use_netem and delay_ms > 0:
                    netem(delay_ms)
                try:
                    t0 = time.perf_counter()
                    ids = [f"w{i}" for i in range(n)]
                    calls = [(wid, k) for wid in ids]  # one commit: all in flight at once
                    handles = engine.start_many(bench_pg_latency, calls, ids=ids)
                    for handle in handles:
                        handle.result(timeout=600)
                    wall = time.perf_counter() - t0
                finally:
                    if use_netem and delay_ms > 0:
                        netem_off()
    finally:
        drop_schema(url, schema)
    gaps = sorted(
        (b - a) * 1000
        for times in _began.values()
        for a, b in zip(sorted(times), sorted(times)[1:], strict=False)
    )
    return {
        "p50_ms": statistics.median(gaps),
        "p99_ms": gaps[int(0.99 * (len(gaps) - 1))],
        "max_ms": gaps[-1],
        "wall_s": wall,
        "steps_per_s": n * k / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proxy", nargs=2, metavar=("DELAY_MS", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--delay-ms", default="0,5")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="loop,off")
    parser.add_argument("--durability", choices=["normal", "full"], default="normal")
    parser.add_argument("--netem", action="store_true")
    a = parser.parse_args()
    if a.proxy:
        proxy(float(a.proxy[0]), int(a.proxy[1]))
        return
    delays = [float(d) for d in a.delay_ms.split(",")]
    modes = a.modes.split(",")
    if a.netem:
        netem_off()  # nothing left behind by an interrupted run
    results: dict[tuple[float, str], list[dict[str, Any]]] = defaultdict(list)
    try:
        for delay in delays:
            for r in range(a.repeat):
                for mode in modes:  # interleaved: loop, off, loop, off, ...
                    run = run_once(a.url, mode, a.workflows, a.k, delay, a.durability, a.netem)
                    results[(delay, mode)].append(run)
                    print(
                        f"  [delay {delay:g} ms, {mode}, run {r + 1}/{a.repeat}]"
                        f" p99 {run['p99_ms']:.1f} ms, {run['steps_per_s']:.0f} steps/s",
                        file=sys.stderr,
                    )
    finally:
        if a.netem:
            netem_off()
    print(
        f"\n{a.workflows} workflows x {a.k} steps in flight, durability={a.durability},"
        f" delay by {'netem' if a.netem else 'proxy'}, median of {a.repeat}"
    )
    print(
        f"{'delay':>6} {'mode':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'steps/s':>8}"
        f" {'wall s':>7}"
    )
    for (delay, mode), runs in results.items():
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"{delay:>4g}ms {mode:>5} {med['p50_ms']:>8.1f} {med['p99_ms']:>8.1f}"
            f" {med['max_ms']:>8.1f} {med['steps_per_s']:>8.0f} {med['wall_s']:>7.2f}"
        )


if __name__ == "__main__":
    main()
