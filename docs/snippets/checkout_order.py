"""Context for the fragments of docs/debugging.md: the workflow of examples/checkout.py,
with the two calls the fragments change replaced by the fragment."""

from __future__ import annotations

from checkout import charge, email, reserve, ship  # noqa: F401

import duralog


@duralog.workflow
async def checkout(order_id: str, items: list[str], cents: int) -> str:
    # fragment
    await duralog.sleep(0.5)
    parcel = await ship(order_id, slots)  # noqa: F821 - assigned by the fragment
    await email(order_id, receipt, parcel)  # noqa: F821
    return f"order {order_id}: charged {receipt.cents} cents, {parcel}"  # noqa: F821
