"""Context for the README's fragment on changing a running workflow's code."""

from __future__ import annotations

import duralog


@duralog.step
def charge(order: str) -> str: ...


@duralog.step
def reserve(order: str) -> list[str]: ...


@duralog.workflow
async def place_order(order: str) -> str:
    # fragment
    return f"{receipt} for {slots}"  # noqa: F821 - both are assigned by the fragment
