"""Context for the fragments of docs/observability.md: a payments client, a pool, an
engine."""

from __future__ import annotations

import dataclasses

import duralog


@dataclasses.dataclass
class Order:
    id: str
    cents: int


class PaymentsClient:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def charge(self, order_id: str, cents: int) -> str:
        return f"ch_{order_id}_{cents}"


class Pool:
    def execute(self, sql: str, *args: object) -> None: ...


api_key = "sk-test"
payments = PaymentsClient(api_key)
pool = Pool()
engine = duralog.Engine("shop.db")

# fragment
