#!/usr/bin/env python3
"""Profile W1 (one workflow of N sequential no-op sync steps) across every thread.

usage:
  python benchmarks/profile_w1.py [--durability full|normal] [--n 20000] [--async-step]
                                  [--yappi | --cprofile] [--top 40]

Without --yappi it just runs W1 (for an outside sampler, all threads, low overhead):
  py-spy record -r 1000 -o w1.svg -- python benchmarks/profile_w1.py --n 20000
  py-spy record -r 1000 -f raw -o w1.txt -- python benchmarks/profile_w1.py --n 20000
With --cprofile it runs cProfile inside the worker's event-loop thread only (where the
engine's Python work happens; the committer and step threads are not included) and prints
the top functions by own time and by cumulative time.
With --yappi (pip install yappi) it profiles CPU time in every thread (worker loop,
committer, step pool) and prints the top functions by own time and by total time, per
thread and overall. yappi's own overhead inflates pure-Python functions; use the
shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import duralog


@duralog.step(name="profile_w1.noop")
def noop(i: int) -> int:
    return i


@duralog.step(name="profile_w1.noop_async")
async def noop_async(i: int) -> int:
    return i


@duralog.workflow(name="profile_w1.sequential")
async def sequential(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


@duralog.workflow(name="profile_w1.sequential_async")
async def sequential_async(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop_async(i)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--durability", choices=["full", "normal"], default="normal")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--async-step", action="store_true", help="an async def no-op step")
    ap.add_argument("--yappi", action="store_true")
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()

    path = os.path.join(tempfile.mkdtemp(prefix="duralog-prof-"), "w1.db")
    with duralog.Engine(path, durability=a.durability) as engine:  # type: ignore[arg-type]
        workflow = sequential_async if a.async_step else sequential
        engine.run(workflow, 10, timeout=60)
        profiler = None
        if a.cprofile:
            import cProfile
            import threading

            profiler = cProfile.Profile()
            enabled = threading.Event()
            worker = engine._worker
            assert worker is not None
            worker.call(lambda: (profiler.enable(), enabled.set()))
            enabled.wait()
        if a.yappi:
            import yappi

            yappi.set_clock_type("cpu")
            yappi.start(builtins=True, profile_threads=True)
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = engine.run(workflow, a.n, timeout=3600)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if a.yappi:
            yappi.stop()
        if profiler is not None:
            disabled = threading.Event()
            worker.call(lambda: (profiler.disable(), disabled.set()))
            disabled.wait()
    assert result == sum(range(a.n)), result
    print(
        f"W1 n={a.n} durability={a.durability}: {wall / a.n * 1e6:.0f} us/step wall,"
        f" {cpu / a.n * 1e6:.0f} us/step CPU (all threads)",
        file=sys.stderr,
    )
    if a.yappi:
        report(a.top)
    if profiler is not None:
        import pstats

        for key in ("tottime", "cumulative"):
            print(f"\n== worker loop thread, by {key}")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats(key).print_stats(a.top)


def report(top: int) -> None:
    import yappi

    stats = yappi.get_func_stats()
    total = sum(s.tsub for s in stats) or 1.0
    print(f"\n== own CPU time, all threads (total {total:.3f} s)")
    for s in sorted(stats, key=lambda s: s.tsub, reverse=True)[:top]:
        print(f"{100 * s.tsub / total:6.2f}%  {s.ncall:>8}  {_where(s)}")
    print("\n== inclusive CPU time, all threads")
    for s in sorted(stats, key=lambda s: s.ttot, reverse=True)[:top]:
        print(f"{100 * s.ttot / total:6.2f}%  {s.ncall:>8}  {_where(s)}")
    print("\n== CPU time per thread")
    for t in yappi.get_thread_stats():
        print(f"{100 * t.ttot / total:6.2f}%  {t.name} (id {t.id})")


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _where(s: object) -> str:
    module = getattr(s, "module", "")
    short = module.split("/site-packages/")[-1].replace(_ROOT, "")
    return f"{getattr(s, 'name', '?')}  {short}:{getattr(s, 'lineno', '')}"


if __name__ == "__main__":
    main()
