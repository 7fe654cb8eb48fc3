"""Workflows that push a secret through every channel of the log: inputs, step and
workflow errors (messages and tracebacks), retries, a child's failure, signals,
published values, cancel and pause reasons, schedule arguments.

Loaded with ``--app app_vault`` by the CLI tests and with ``support.load_app`` by
the engine tests (the same module either way: it registers once).
"""

from __future__ import annotations

import enum

import duralog

#: Every secret the tests plant starts with this; none may be found at rest.
SECRET = "SECRET-4111-1111"

vault_queue = duralog.Queue("vault_q", concurrency=1)


class Tier(enum.Enum):
    GOLD = "gold"


@duralog.step(name="vault_charge", retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01))
def charge(card: str) -> str:
    card_in_a_local = card  # shows in the traceback's source line only as a name
    raise ValueError(f"declined {card_in_a_local}")


@duralog.workflow(name="vault_child")
async def child(card: str) -> str:
    raise LookupError(f"child saw {card}")


@duralog.workflow(name="vault_parent")
async def parent(card: str) -> str:
    duralog.publish("status", f"published {card}")
    try:
        await charge(card)
    except duralog.StepFailed as exc:
        caught = exc.error.message  # the workflow sees the error as it was raised
    try:
        await child(card)
    except duralog.WorkflowFailed as exc:
        from_child = exc.cause.message
    note = await duralog.wait_signal("note")
    raise RuntimeError(f"gave up: {caught} | {from_child} | {note}")


@duralog.workflow(name="vault_waiter")
async def waiter(card: str) -> str:
    return str(await duralog.wait_signal("never"))


@duralog.workflow(name="vault_typed")
async def typed(order: str, cents: int, tier: Tier) -> str:
    return f"{order} {cents} {tier.value}"
