"""What ``import duralog`` and ``duralog --help`` cost, against what the core cannot do without.

Each measure is the median wall time of ``--runs`` fresh interpreters, minus the
median of a bare one (``python -c pass``):

- the floor: ``import asyncio, sqlite3, msgspec``;
- ``import duralog``;
- ``import duralog`` and declare a workflow and a step: what an application's module
  of workflows pays before it makes an engine (duralog loads its names on first use,
  so the bare import alone would flatter it);
- ``import duralog`` and open an engine on an existing log (no worker): the runtime
  and the store, which that program pays next (a new log also pays for sqlite-utils,
  which creates it);
- ``duralog --help`` (``python -m duralog --help``).

The target is ``import duralog`` and ``duralog --help`` at most 1.4x the floor.
``python -X importtime -c "import duralog"`` shows where the rest goes.

    python benchmarks/bench_import.py --runs 21
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

DECLARE = """
import duralog

@duralog.step
def add(a: int, b: int) -> int:
    return a + b

@duralog.workflow
async def total(a: int, b: int) -> int:
    return await add(a, b)
"""

CASES = {
    "bare interpreter": ["-c", "pass"],
    "floor: import asyncio, sqlite3, msgspec": ["-c", "import asyncio, sqlite3, msgspec"],
    "import duralog": ["-c", "import duralog"],
    "import duralog, declare a workflow and a step": ["-c", DECLARE],
    "import duralog, open an engine": [
        "-c",
        "import duralog, sys; duralog.Engine(sys.argv[1], worker=False).close()",
        "{log}",  # created by the warm-up run
    ],
    "duralog --help": ["-m", "duralog", "--help"],
}


def _once(args: list[str], log: str) -> float:
    start = time.perf_counter()
    argv = [arg.replace("{log}", log) for arg in args]
    subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(runs: int) -> dict[str, float]:
    """The median seconds of each case, the runs interleaved (so a busy moment of the
    machine falls on every case alike)."""
    times: dict[str, list[float]] = {name: [] for name in CASES}
    with tempfile.TemporaryDirectory() as folder:
        log = os.path.join(folder, "log.db")
        for args in CASES.values():  # warm the file cache
            _once(args, log)
        for _ in range(runs):
            for name, args in CASES.items():
                times[name].append(_once(args, log))
    return {name: statistics.median(found) for name, found in times.items()}


def main() -> None:
    """Print each case's cost over a bare interpreter, and the ratios to the floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="interpreters per case")
    runs = parser.parse_args().runs
    medians = measure(runs)
    bare = medians.pop("bare interpreter")
    floor = medians["floor: import asyncio, sqlite3, msgspec"] - bare
    print(f"bare interpreter: {bare * 1000:.1f} ms (median of {runs}; subtracted below)")
    for name, seconds in medians.items():
        cost = seconds - bare
        print(f"{name:46} {cost * 1000:7.1f} ms  {cost / floor:5.2f}x floor")


if __name__ == "__main__":
    main()
