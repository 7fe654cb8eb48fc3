"""Workflows for the CLI tests, loaded with ``--app app_workflows`` (cwd = this folder).

Names are explicit and prefixed ``cli_`` so they never clash with workflows other
test modules register in the same process. The steps are ``shop_steps``'s.
"""

from __future__ import annotations

from shop_steps import shop

import duralog

reserve, charge, ship = shop("cli")


@duralog.step(name="cli_explode", retry=duralog.RetryPolicy(max_attempts=1))
def explode(order: str) -> str:
    raise ValueError(f"no stock for {order}")


@duralog.workflow(name="cli_order")
async def order(order_id: str, cents: int) -> list[str]:
    reserved = await reserve(order_id)
    charged = await charge(order_id, cents)
    await duralog.sleep(0.01)  # sleep(0) records no timer: asyncio.sleep(0) only yields
    return [reserved, charged, await ship(order_id)]


@duralog.workflow(name="cli_fail")
async def fail(order_id: str) -> str:
    await reserve(order_id)
    return await explode(order_id)


@duralog.workflow(name="cli_sleeper")
async def sleeper(order_id: str) -> str:
    await reserve(order_id)
    await duralog.sleep(3600)
    return await ship(order_id)
