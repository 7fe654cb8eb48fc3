"""The workflow of the update crash test, served with ``--app app_updates`` (cwd = this
folder). ``cu_charge`` appends ``charge <item>`` to the ledger ``CRASH_LEDGER`` names;
with ``CU_GATE`` set it then waits until that file exists (the test kills the worker
there)."""

from __future__ import annotations

import os
import time

import duralog


@duralog.step(name="cu_charge")
def charge(item: str) -> str:
    with open(os.environ["CRASH_LEDGER"], "a") as f:
        f.write(f"charge {item}\n")
    gate = os.environ.get("CU_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    return f"charged {item}"


@duralog.workflow(name="cu_cart")
async def cart() -> list[str]:
    receipts: list[str] = []

    async def buy(item: str) -> str:
        receipt = await charge(item)
        receipts.append(receipt)
        return receipt

    duralog.on_update("buy", buy)
    duralog.on_query("receipts", lambda: receipts)
    await duralog.wait_signal("close")
    return receipts
