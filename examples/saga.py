"""Booking a trip as a saga: when a booking fails, the ones made are undone, newest first.

    python examples/saga.py

Each booking records its compensation; when renting the car fails, the hotel and
then the flight are cancelled, as durable steps in the log. The hotel's API fails
once while cancelling: its step's RetryPolicy retries it. In the second trip the
flight can no longer be cancelled at all: the hotel is still cancelled, and the
workflow fails with ``CompensationFailed`` naming what was left undone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duralog

FLAKY = {"hotel": 1}  # the hotel API fails this many times before it works


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def book(trip: str, what: str) -> str:
    if what == "car":
        raise RuntimeError("no cars left")
    print(f"    booked {what} for {trip}")
    return f"{trip}-{what}"


@duralog.step(retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.05))
def cancel(booking: str) -> None:
    kind = booking.rsplit("-", 1)[-1]
    if booking.startswith("doomed") and kind == "flight":
        raise ConnectionError("the airline's API is gone")
    if FLAKY.get(kind, 0) > 0:
        FLAKY[kind] -= 1
        raise ConnectionError(f"{kind} API timed out")
    print(f"    cancelled {booking}")


@duralog.workflow
async def book_trip(trip: str) -> str:
    async with duralog.Saga() as saga:
        for what in ("flight", "hotel", "car"):
            booking = await book(trip, what)
            saga.add_compensation(cancel, booking)
    return f"{trip}: booked"


def main() -> None:
    db = str(Path(tempfile.mkdtemp(prefix="duralog-saga-")) / "trips.db")
    with duralog.Engine(db) as engine:
        for trip in ("lisbon", "doomed"):
            print(f"  trip {trip}:")
            handle = engine.start(book_trip, trip, id=trip)
            try:
                handle.result(timeout=30)
            except duralog.WorkflowFailed as exc:
                print(f"    {handle.status().value}: {exc.cause.type.rsplit('.', 1)[-1]}")
                print(f"    {exc.cause.message}")
            retries = [e for e in handle.history() if e.kind == "StepRetrying"]
            print(f"    retried compensation attempts: {len(retries)}")


if __name__ == "__main__":
    main()
