"""A checkout workflow that survives a crash: run it and watch.

    python examples/checkout.py            # the log goes to a temporary folder
    python examples/checkout.py shop.db    # the log is kept in shop.db (a new file)

The script runs the workflow in a child process and kills that process with
SIGKILL in the middle of the ``ship`` step (a power cut, as far as the process
can tell). A second child process opens the same log, replays the workflow to
where it stopped, and finishes it. Every step writes a line to a ledger (the
side effects a real shop would have: a charge, a parcel), so the end of the
output shows what ran, and how often.

Completed steps never run again; the step that was running when the process
died runs a second time, with the same idempotency key, so the payment or
shipping service it calls can tell it is a repeat.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duralog

LEDGER = Path(os.environ.get("CHECKOUT_LEDGER", "ledger.txt"))


@dataclasses.dataclass
class Receipt:
    order_id: str
    cents: int
    charge_id: str


def record(step: str) -> None:
    """Append what a step did to the ledger and say so."""
    info = duralog.step_info()
    with LEDGER.open("a") as f:
        f.write(f"{step} {info.idempotency_key}\n")
    print(f"    ran {step:<10} attempt {info.attempt}  key {info.idempotency_key}", flush=True)


@duralog.step
def reserve(order_id: str, items: list[str]) -> list[str]:
    record("reserve")
    return [f"{item}@shelf-{i}" for i, item in enumerate(items, 1)]


@duralog.step(retry=duralog.RetryPolicy(max_attempts=5, initial_interval=0.2))
def charge(order_id: str, cents: int) -> Receipt:
    record("charge")
    return Receipt(order_id, cents, charge_id=f"ch_{duralog.step_info().idempotency_key}")


@duralog.step
def ship(order_id: str, slots: list[str]) -> str:
    record("ship")
    if os.environ.get("CHECKOUT_CRASH") == "ship":
        print("    !! the power goes out while the parcel is being labelled", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return f"parcel-{order_id}"


@duralog.step
def email(order_id: str, receipt: Receipt, parcel: str) -> None:
    record("email")


@duralog.workflow
async def checkout(order_id: str, items: list[str], cents: int) -> str:
    slots = await reserve(order_id, items)
    receipt = await charge(order_id, cents)  # a Receipt, in a live run and on replay
    await duralog.sleep(0.5)  # a durable timer: its deadline is in the log
    parcel = await ship(order_id, slots)
    await email(order_id, receipt, parcel)
    return f"order {order_id}: charged {receipt.cents} cents ({receipt.charge_id}), {parcel}"


def run_child(db: str) -> None:
    """One process's life: open the log, (re)start the order, wait for the result."""
    with duralog.Engine(db) as engine:
        handle = engine.start(checkout, "1001", ["kettle", "teapot"], 4999, id="order-1001")
        print(f"    result: {handle.result(timeout=30)}", flush=True)


def show_log(db: str) -> None:
    """What the crash left in the log, as `duralog show` prints it."""
    print("    the log after the crash (`duralog --db shop.db show order-1001`):")
    shown = subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, "show", "order-1001"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in shown.stdout.splitlines():
        print(f"      {line}")


def main(keep_log: str | None = None) -> int:
    here = Path(tempfile.mkdtemp(prefix="duralog-demo-"))
    if keep_log and Path(keep_log).exists():
        print(f"{keep_log} already exists: name a new file for the demo's log")
        return 2
    db = keep_log or str(here / "shop.db")
    env = {**os.environ, "CHECKOUT_LEDGER": str(here / "ledger.txt")}
    me = [sys.executable, __file__, "--child", db]

    print(f"duralog demo: a checkout workflow in {db}\n")
    print("1. first process: start order-1001 (it will be killed in the middle of `ship`)")
    first = subprocess.run(me, env={**env, "CHECKOUT_CRASH": "ship"}, check=False)
    killed = first.returncode == -signal.SIGKILL
    print(f"    process exited with {first.returncode}" + (" (SIGKILL)" if killed else ""))
    if not killed:
        print("the first process was supposed to die; something is off")
        return 1
    show_log(db)
    print(
        "    `ship` (seq 10) was running when the process died and nothing of it had been\n"
        "    committed: replay will make the same call, with the same seq and key."
    )

    print("\n2. a fresh process opens the same log: it replays, then carries on")
    started = time.monotonic()
    second = subprocess.run(me, env=env, check=False)
    print(f"    recovered and finished in {time.monotonic() - started:.2f}s")
    if second.returncode != 0:
        return second.returncode

    print("\n3. the ledger (every side effect, in order):")
    lines = (here / "ledger.txt").read_text().split()
    runs = list(zip(lines[::2], lines[1::2], strict=True))
    for step, key in runs:
        print(f"    {step:<10} {key}")
    counts = {
        step: sum(1 for s, _ in runs if s == step) for step in dict.fromkeys(s for s, _ in runs)
    }
    print(
        "\n    completed before the crash, ran once: "
        + ", ".join(s for s, n in counts.items() if n == 1 and s != "email")
    )
    print(
        "    in flight at the crash, ran again (same key): "
        + ", ".join(s for s, n in counts.items() if n > 1)
    )
    print(f"\n(the log stays in {db}; inspect it with sqlite-utils or `duralog`)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        run_child(sys.argv[2])
    else:
        sys.exit(main(*sys.argv[1:2]))
