"""Context for the fragments of docs/patterns.md: the types and steps they use."""

from __future__ import annotations

import asyncio  # noqa: F401
import dataclasses

import duralog


@dataclasses.dataclass
class Batch:
    rows: list[str]


@dataclasses.dataclass
class Order:
    id: str
    total: float
    images: list[str]


@dataclasses.dataclass
class Trip:
    traveller: str
    destination: str


@duralog.step
def manual_review(order: Order) -> None: ...


@duralog.step
def check_stock(order: Order) -> bool: ...


@duralog.step
def score_fraud(order: Order) -> float: ...


@duralog.step
def make_thumbnail(image: str) -> str: ...


@duralog.step
def ship(order: Order, thumbnails: list[str]) -> str: ...


@duralog.step
def render_report(users: list[str], orders: list[str], currency: str = "EUR") -> str: ...


@duralog.step
def book_flight(trip: Trip) -> str: ...


@duralog.step
def cancel_flight(booking: str) -> None: ...


@duralog.step
def book_hotel(trip: Trip) -> str: ...


@duralog.step
def cancel_hotel(booking: str) -> None: ...


@duralog.step
def charge(trip: Trip) -> None: ...


engine = duralog.Engine("shop.db")

# fragment
