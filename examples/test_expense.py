"""Testing a workflow that waits for days, in milliseconds, with duralog.testing.

    python -m pytest examples/test_expense.py

The `workflow_env` fixture (registered for pytest when duralog is installed) is
an engine on a temporary log whose clock only moves when the test says so, or,
with `env.result(handle)`, jumps to the next timer whenever every workflow waits.
"""

from __future__ import annotations

import datetime as dt

import duralog
from duralog.testing import WorkflowEnvironment, step_names


@duralog.step
def notify(who: str, text: str) -> str:
    return f"{who}: {text}"


@duralog.workflow
async def expense_approval(expense_id: str) -> str:
    await notify("manager", f"please approve {expense_id}")
    try:
        verdict = await duralog.wait_signal("verdict", timeout=dt.timedelta(days=2))
    except TimeoutError:
        await duralog.sleep(dt.timedelta(days=1))  # a grace day before escalating
        return await notify("finance", f"{expense_id} was never approved")
    return await notify("employee", f"{expense_id} {verdict}")


def test_an_unanswered_expense_escalates_after_three_days(
    workflow_env: WorkflowEnvironment,
) -> None:
    start = workflow_env.now()
    handle = workflow_env.engine.start(expense_approval, "exp-7")
    assert workflow_env.result(handle) == "finance: exp-7 was never approved"
    assert workflow_env.now() - start >= dt.timedelta(days=3)
    assert step_names(handle) == ["notify", "notify"]


def test_an_approved_expense_does_not_wait(workflow_env: WorkflowEnvironment) -> None:
    handle = workflow_env.engine.start(expense_approval, "exp-8")
    workflow_env.advance(hours=5)  # the manager answers the same day
    handle.signal("verdict", "approved")
    assert workflow_env.result(handle) == "employee: exp-8 approved"
