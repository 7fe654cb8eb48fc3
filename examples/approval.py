"""An expense approval: a signal with a deadline, published state, and cancellation.

    python examples/approval.py

The workflow asks a manager to approve an expense and waits for an `approval`
signal for at most two (scaled-down) days; meanwhile it publishes its progress
for a UI to read. Approved expenses are paid, rejected ones are filed, silence
escalates. The signals here come from the same process; from a shell it would be

    duralog --db approvals.db signal exp-1 approval --payload '{"approved": true, "by": "ana"}'
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import duralog

DAY = 0.5  # seconds in this demo


@duralog.step
def request_approval(expense_id: str, cents: int) -> None:
    print(f"  [{expense_id}] asked a manager to approve {cents / 100:.2f}")


@duralog.step
def pay(expense_id: str, approver: str) -> str:
    return f"{expense_id} paid (approved by {approver})"


@duralog.step
def file_rejection(expense_id: str, approver: str) -> str:
    return f"{expense_id} rejected by {approver}"


@duralog.step
def escalate(expense_id: str) -> str:
    return f"{expense_id} escalated: nobody answered in 2 days"


@duralog.workflow
async def expense(expense_id: str, cents: int) -> str:
    await request_approval(expense_id, cents)
    duralog.publish("status", "waiting for approval")
    try:
        decision: dict[str, Any] = await duralog.wait_signal(
            "approval", timeout=dt.timedelta(seconds=2 * DAY)
        )
    except TimeoutError:
        duralog.publish("status", "escalated")
        return await escalate(expense_id)
    duralog.publish("status", "decided")
    if decision["approved"]:
        return await pay(expense_id, decision["by"])
    return await file_rejection(expense_id, decision["by"])


def main() -> None:
    db = str(Path(tempfile.mkdtemp(prefix="duralog-approval-")) / "approvals.db")
    with duralog.Engine(db) as engine:
        approved = engine.start(expense, "exp-1", 12_50, id="exp-1")
        rejected = engine.start(expense, "exp-2", 990_00, id="exp-2")
        ignored = engine.start(expense, "exp-3", 40_00, id="exp-3")
        print(f"  exp-1 status: {approved.get_event('status', timeout=5)}")

        approved.signal("approval", {"approved": True, "by": "ana"})
        rejected.signal("approval", {"approved": False, "by": "bo"})
        for handle in (approved, rejected, ignored):
            print(f"  {handle.result(timeout=10)}")
        print(f"  exp-3 status: {ignored.get_event('status')}")

        cancelled = engine.start(expense, "exp-4", 5_00, id="exp-4")
        cancelled.get_event("status", timeout=5)
        cancelled.cancel("the employee withdrew it")
        try:
            cancelled.result(timeout=10)
        except duralog.WorkflowFailed as exc:
            print(f"  exp-4 {cancelled.status().value.lower()}: {exc.cause.message}")


if __name__ == "__main__":
    main()
