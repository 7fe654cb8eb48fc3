"""Dependency injection: clients reach steps from the engine, never through the log.

    python examples/resources.py

The payments client holds an API key. It is registered on the engine
(``Engine(resources=...)``, ``engine.provide``) and handed to the step that needs
it, by parameter (``duralog.inject()``) or by lookup (``duralog.resource``). The
workflow never touches it, so it is never encoded, recorded or replayed: the
script searches the history and the database files for the key and finds nothing.
In a unit test the step is a plain function and takes a fake client directly.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import duralog


class PaymentsClient:
    """A client with a credential, as a real SDK would have."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def charge(self, order_id: str, cents: int) -> str:
        return f"ch_{order_id}_{cents}"  # an HTTPS call with self.api_key, for real


class Outbox:
    """Where e-mails go (an SMTP connection, for real)."""

    def __init__(self) -> None:
        self.sent: list[str] = []


@duralog.step(retry=duralog.RetryPolicy(max_attempts=5))
def charge(order_id: str, cents: int, payments: PaymentsClient = duralog.inject()) -> str:
    """``payments`` comes from the engine's resources (by this parameter's name)."""
    return payments.charge(order_id, cents)


@duralog.step
def send_receipt(order_id: str, charge_id: str) -> None:
    outbox = duralog.resource("outbox", Outbox)  # a lookup, typed, inside the step
    outbox.sent.append(f"receipt for {order_id}: {charge_id}")


@duralog.workflow
async def checkout(order_id: str, cents: int) -> str:
    charge_id = await charge(order_id, cents)  # no client here: it is injected
    await send_receipt(order_id, charge_id)
    return charge_id


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="duralog-resources-"))
    api_key = os.environ.get("PAYMENTS_API_KEY", "sk_live_51HxEXAMPLEdoNotLogMe")
    outbox = Outbox()
    with duralog.Engine(
        str(folder / "shop.db"), resources={"payments": PaymentsClient(api_key)}
    ) as engine:
        engine.provide("outbox", outbox)  # resources can be added at any time
        handle = engine.start(checkout, "o-1", 4999, id="order-o-1")
        print(f"result: {handle.result(timeout=30)}")
        history = handle.history()
    print(f"outbox: {outbox.sent}")

    steps = [e.event for e in history if e.kind == "StepScheduled"]
    for scheduled in steps:
        print(f"recorded call: {scheduled.name}{bytes(scheduled.args).decode()}")  # type: ignore[union-attr]
    files = sorted(folder.iterdir())
    found = [f.name for f in files if api_key.encode() in f.read_bytes()]
    searched = sum(f.stat().st_size for f in files)
    print(
        f"the API key in the log: {'YES: ' + ', '.join(found) if found else 'no'} "
        f"(searched {len(history)} events, {searched:,} bytes in {len(files)} files)"
    )

    # In a unit test the step is a plain function: pass a fake client.
    class FakePayments(PaymentsClient):
        def charge(self, order_id: str, cents: int) -> str:
            return "ch_fake"

    print(f"unit test with a fake: {asyncio.run(charge('o-2', 1, payments=FakePayments('x')))}")


if __name__ == "__main__":
    main()
