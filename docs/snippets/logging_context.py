"""Context for docs/observability.md's logging fragment: a charge step."""

from __future__ import annotations

import dataclasses

import duralog


@dataclasses.dataclass
class Receipt:
    id: str


@duralog.step
def charge(order_id: str) -> Receipt:
    return Receipt(f"ch_{order_id}")


# fragment
