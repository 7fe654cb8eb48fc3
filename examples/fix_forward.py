"""Fix forward: a workflow fails on a bug at a late step; the fix is deployed; a fork
finishes it without repeating the steps that went well.

    python examples/fix_forward.py

``fulfil`` reserves stock, charges the card, then ships. ``ship`` has a bug (it
cannot read a postcode with a space), so the workflow ends ``FAILED`` after the
customer was charged. Running it again from the start would charge them twice.
Instead, once the fix is deployed (here: ``FIXED`` switched on, as a new release
would), ``handle.fork(from_seq=N)`` copies the events before the ``ship`` step
into a new workflow that runs on with the fixed code: ``reserve`` and ``charge``
are not run again, their recorded results are reused. From the command line it
is ``duralog fork ORDER --from-seq N``.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import duralog

#: The deployed release: False has the bug, True the fix.
FIXED = False
#: How many times each step ran, to show that the fork repeats none of them.
RUNS: Counter[str] = Counter()


@duralog.step
def reserve(order_id: str) -> str:
    RUNS["reserve"] += 1
    return f"slot-{order_id}"


@duralog.step
def charge(order_id: str, cents: int) -> str:
    RUNS["charge"] += 1  # a real charge would pass step_info().idempotency_key along
    return f"ch_{order_id}"


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def ship(order_id: str, postcode: str) -> str:
    RUNS["ship"] += 1
    if not FIXED and " " in postcode:
        raise ValueError(f"cannot parse postcode {postcode!r}")  # the bug
    return f"parcel-{order_id} to {postcode}"


@duralog.workflow
async def fulfil(order_id: str, cents: int, postcode: str) -> str:
    slot = await reserve(order_id)
    receipt = await charge(order_id, cents)
    parcel = await ship(order_id, postcode)
    return f"order {order_id}: {slot}, {receipt}, {parcel}"


def main() -> None:
    global FIXED
    db = str(Path(tempfile.mkdtemp(prefix="duralog-fix-forward-")) / "shop.db")
    with duralog.Engine(db) as engine:
        handle = engine.start(fulfil, "1001", 4999, "SW1A 1AA", id="order-1001")
        try:
            handle.result(timeout=30)
        except duralog.WorkflowFailed as exc:
            print(f"  {handle.id} {handle.status().value}: {exc.cause}")

        # Where to fork: the seq of the failed step's StepScheduled (`duralog show`
        # prints it too). The events before it are copied, the step runs again.
        seq = next(seq for seq, step in handle.state().steps.items() if step.name == "ship")

        FIXED = True  # the fix is deployed
        fixed = handle.fork(from_seq=seq, id="order-1001-fixed")
        print(f"  forked {handle.id} at seq {seq} into {fixed.id} (events 2-{seq - 1} copied)")
        print(f"  result: {fixed.result(timeout=30)}")
        runs = ", ".join(f"{name} {RUNS[name]}" for name in ("reserve", "charge", "ship"))
        print(f"  step runs: {runs}")
        origin = fixed.state().forked_from
        assert origin is not None
        print(f"  {fixed.id} was forked from {origin.workflow_id} at seq {origin.seq}")


if __name__ == "__main__":
    main()
