"""The shop's steps, written once for the test apps that share them.

``app_workflows`` (``cli_*``), ``app_changed`` (the same app after a careless
change) and the golden histories' ``workflows.py`` (``golden_*``) each register
them under names of their own: ``reserve, charge, ship = shop("cli")``. The names
are what their logs record, so they stay as they were.
"""

from __future__ import annotations

from typing import NamedTuple

import duralog
from duralog.replay.definitions import Step


def reserve(order: str) -> str:
    return f"reserved {order}"


def charge(order: str, cents: int) -> str:
    return f"charged {order} {cents}"


def ship(order: str) -> str:
    return f"shipped {order}"


class Shop(NamedTuple):
    """The three steps of an order, as one app registers them."""

    reserve: Step[[str], str]
    charge: Step[[str, int], str]
    ship: Step[[str], str]


def shop(prefix: str) -> Shop:
    """The shop's steps named ``<prefix>_reserve``, ``<prefix>_charge``, ``<prefix>_ship``."""
    return Shop(
        duralog.step(name=f"{prefix}_reserve")(reserve),
        duralog.step(name=f"{prefix}_charge")(charge),
        duralog.step(name=f"{prefix}_ship")(ship),
    )
