"""Context for the README's fragment on queues and schedules."""

from __future__ import annotations

from datetime import datetime, timedelta  # noqa: F401

import duralog


@duralog.workflow
async def send_newsletter(user_id: int) -> None: ...


@duralog.workflow
async def sync_region(region: str) -> None: ...


@duralog.workflow
async def export(tenant: str) -> None: ...


user_id = 42
engine = duralog.Engine("shop.db")

# fragment
