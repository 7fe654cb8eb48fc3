"""``app_workflows`` after a careless change: ``cli_order`` charges before it reserves.

Loaded only in a subprocess (``--app app_changed``): in the test process the name
``cli_order`` already belongs to ``app_workflows``.
"""

from __future__ import annotations

from shop_steps import shop

import duralog

reserve, charge, ship = shop("cli")


@duralog.workflow(name="cli_order")
async def order(order_id: str, cents: int) -> list[str]:
    charged = await charge(order_id, cents)  # CHANGED: was second
    reserved = await reserve(order_id)
    await duralog.sleep(0.01)  # sleep(0) records no timer: asyncio.sleep(0) only yields
    return [reserved, charged, await ship(order_id)]
