"""A circuit breaker in front of a payments API that goes down: run it and watch.

    python examples/circuit_breaker.py

Two engines (two workers) share one log, and so one circuit: the breaker's state
is a row in the log's database, changed by compare-and-set. The fake payments API
is down for 1.5 seconds from its first call. Its first failures open the circuit; while it
is open, charge attempts on *either* worker fail fast with ``CircuitOpen`` and
never reach the API; every ``reset_timeout`` one trial call goes through; once
the API is back, the trial succeeds, the circuit closes, and every order is
charged. A fast failure is an ordinary failed attempt: the step's RetryPolicy
retries it, no earlier than the circuit lets a call through.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import duralog


class PaymentsAPI:
    """A stand-in for a remote API that is down for ``down_for`` s from its first call."""

    def __init__(self, down_for: float) -> None:
        self.down_for = down_for
        self.back_at: float | None = None
        self.calls = 0
        self._lock = threading.Lock()

    def charge(self, order_id: str, cents: int) -> str:
        with self._lock:
            self.calls += 1
            if self.back_at is None:  # (not from import: a slow start must not hide it)
                self.back_at = time.monotonic() + self.down_for
            back_at = self.back_at
        if time.monotonic() < back_at:
            raise ConnectionError("payments API: 503 Service Unavailable")
        return f"ch_{order_id}"


API = PaymentsAPI(down_for=1.5)
payments_api = duralog.CircuitBreaker("payments-api", failure_threshold=3, reset_timeout=0.4)


@duralog.step(
    circuit=payments_api,
    retry=duralog.RetryPolicy(max_attempts=30, initial_interval=0.05, max_interval=0.3),
)
def charge(order_id: str, cents: int) -> str:
    return API.charge(order_id, cents)


@duralog.workflow
async def order(order_id: str, cents: int) -> str:
    charge_id = await charge(order_id, cents)
    return f"{order_id} charged ({charge_id})"


def show_breaker_log() -> None:
    """Print what the breaker logs (duralog's engine logger): opened, trial, closed."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  %(asctime)s.%(msecs)03d  %(message)s", "%H:%M:%S"))
    engine_log = logging.getLogger("duralog.engine")
    engine_log.addHandler(handler)
    engine_log.setLevel(logging.INFO)


def main() -> None:
    show_breaker_log()
    db = str(Path(tempfile.mkdtemp(prefix="duralog-breaker-")) / "shop.db")
    outcomes: dict[str, Counter[str]] = {"worker-a": Counter(), "worker-b": Counter()}

    def watch(worker: str):  # type: ignore[no-untyped-def]
        def seen(event: duralog.CommittedEvent) -> None:
            if event.kind == "StepRetrying":
                error = event.event.error.type.rsplit(".", 1)[-1]  # type: ignore[union-attr]
                outcomes[worker]["failed fast" if error == "CircuitOpen" else "API error"] += 1

        return seen

    print("two workers, one log, one circuit; the payments API is down for 1.5 s\n")
    with (
        duralog.Engine(db, durability="normal", worker_id="worker-a") as a,
        duralog.Engine(db, durability="normal", worker_id="worker-b") as b,
    ):
        a.subscribe(watch("worker-a"))
        b.subscribe(watch("worker-b"))
        handles = [
            engine.start(order, f"o-{i}", 100 * i, id=f"order-{i}")
            for i, engine in enumerate([a, b, a, b, a, b], 1)
        ]
        results = [h.result(timeout=30) for h in handles]
        last = payments_api.state(a).state
    print()
    for line in results:
        print(f"  {line}")
    attempts = sum(sum(c.values()) for c in outcomes.values()) + len(results)
    fast = sum(c["failed fast"] for c in outcomes.values())
    print(f"\nall {len(results)} orders charged; circuit at the end: {last}")
    print(f"charge attempts: {attempts}; calls that reached the API: {API.calls}")
    print(f"attempts failed fast without calling the API: {fast}")
    for worker, counts in outcomes.items():
        print(f"  {worker}: {counts['failed fast']} failed fast, {counts['API error']} API errors")


if __name__ == "__main__":
    main()
