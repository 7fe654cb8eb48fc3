"""Dependency injection: resources reach steps by name or type and never enter the log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import duralog
from duralog.patterns.resources import ResourceMissing, inject, resource
from duralog.replay.checker import check
from duralog.replay.history import History, entries_json
from duralog.store.events import StepFailed

Wait = Callable[..., Any]
SECRET = "sk_live_do-not-log-me-4242"


class Payments:
    """A client holding a credential."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.charged: list[tuple[str, int]] = []

    def charge(self, order_id: str, cents: int) -> str:
        self.charged.append((order_id, cents))
        return f"ch_{order_id}_{cents}"


class Mailer:
    def __init__(self) -> None:
        self.sent: list[str] = []


@duralog.step
def di_charge(order_id: str, cents: int, payments: Payments = inject()) -> str:
    return payments.charge(order_id, cents)


@duralog.step(retry=duralog.RetryPolicy(max_attempts=2, initial_interval=0.01))
async def di_mail(order_id: str, *, mailer: Mailer = inject(Mailer)) -> None:
    mailer.sent.append(order_id)


@duralog.step
def di_named(order_id: str, db: dict[str, str] = inject("orders-db")) -> str:
    return db[order_id]


@duralog.step
def di_lookup(order_id: str) -> str:
    payments = resource("payments", Payments)
    by_type = resource(Mailer)
    return f"{type(payments).__name__}+{type(by_type).__name__}:{order_id}"


@duralog.workflow(name="di_checkout")
async def di_checkout(order_id: str, cents: int) -> str:
    receipt = await di_charge(order_id, cents)
    await di_mail(order_id)
    return receipt


def test_resources_by_parameter_name_type_and_name(db: str) -> None:
    payments, mailer = Payments(SECRET), Mailer()
    resources = {"payments": payments, "mail": mailer}
    with duralog.Engine(db, durability="normal", resources=resources) as engine:
        assert engine.run(di_checkout, "o-1", 1999, timeout=10) == "ch_o-1_1999"
        engine.provide("orders-db", {"o-1": "shipped"})

        @duralog.workflow(name="di_more")
        async def di_more(order_id: str) -> list[str]:
            return [await di_named(order_id), await di_lookup(order_id)]

        assert engine.run(di_more, "o-1", timeout=10) == ["shipped", "Payments+Mailer:o-1"]
    assert payments.charged == [("o-1", 1999)] and mailer.sent == ["o-1"]


def test_resources_never_enter_the_log(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    with duralog.Engine(db, durability="normal", resources={"payments": Payments(SECRET)}) as e:
        handle = e.start(di_checkout, "o-2", 500, id="o-2")
        with pytest.raises(duralog.WorkflowFailed):  # no mailer: the step fails, by design
            handle.result(timeout=10)
        history = handle.history()
    assert SECRET not in entries_json(history).decode()
    for file in tmp_path.iterdir():  # the database, its WAL, anything SQLite left
        assert SECRET.encode() not in file.read_bytes(), file
    # Replay needs no resource: no step runs.
    assert check(History("o-2", "di_checkout", history), {"di_checkout": di_checkout}).ok


def test_a_missing_resource_fails_the_attempt_with_what_to_do(db: str) -> None:
    with duralog.Engine(db, durability="normal", resources={"payments": Payments(SECRET)}) as e:
        handle = e.start(di_checkout, "o-3", 1, id="o-3")
        with pytest.raises(duralog.WorkflowFailed):
            handle.result(timeout=10)
        failed = [x.event for x in handle.history() if isinstance(x.event, StepFailed)]
    message = failed[-1].error.message
    assert failed[-1].error.type.endswith("ResourceMissing")
    for part in (
        "step 'di_mail' (seq 5, attempt 2) of workflow 'o-3'",
        "a resource of type Mailer for its parameter 'mailer'",
        "it provides: payments",
        "engine.provide('mailer', ...)",
    ):
        assert part in message


@duralog.step(retry=duralog.RetryPolicy(max_attempts=20, initial_interval=0.02, jitter=False))
def di_needs_late(x: int, late: str = inject()) -> str:
    return f"{late}:{x}"


@duralog.workflow(name="di_late")
async def di_late(x: int) -> str:
    return await di_needs_late(x)


def test_provide_while_running_reaches_the_next_attempt(db: str, wait_for: Wait) -> None:
    with duralog.Engine(db, durability="normal") as engine:
        handle = engine.start(di_late, 7)
        wait_for(lambda: any(e.kind == "StepRetrying" for e in handle.history()))
        engine.provide("late", "there")
        assert handle.result(timeout=10) == "there:7"


def test_workflow_code_may_not_pass_an_injected_parameter(db: str) -> None:
    @duralog.workflow(name="di_leaky")
    async def di_leaky(order_id: str) -> str:
        return await di_charge(order_id, 1, Payments(SECRET))

    with duralog.Engine(db, durability="normal", resources={"payments": Payments("x")}) as e:
        handle = e.start(di_leaky, "o-4")
        with pytest.raises(duralog.WorkflowFailed) as failed:
            handle.result(timeout=10)
        history = entries_json(handle.history()).decode()
    assert "passed 'payments' to step 'di_charge'" in str(failed.value)
    assert "injected from the engine's resources" in str(failed.value)
    assert SECRET not in history and "StepScheduled" not in history


def test_outside_a_workflow_the_step_is_a_plain_function() -> None:
    fake = Payments("test")
    assert asyncio.run(di_charge("o-5", 3, payments=fake)) == "ch_o-5_3"
    assert di_charge.fn("o-6", 4, fake) == "ch_o-6_4"
    with pytest.raises(ResourceMissing, match="only filled in when the step runs on an engine"):
        asyncio.run(di_charge("o-7", 5))


def test_resource_outside_a_step_says_where_it_works() -> None:
    with pytest.raises(duralog.DuralogError, match="inside a step run by an engine"):
        resource("payments")

    @duralog.workflow(name="di_resource_in_workflow")
    async def di_resource_in_workflow() -> None:
        resource("payments")

    with duralog.Engine(":memory:") as engine:
        handle = engine.start(di_resource_in_workflow)
        with pytest.raises(duralog.WorkflowFailed, match="is for steps"):
            handle.result(timeout=10)


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def di_two_mailers(to: str, mailer: Mailer = inject()) -> None: ...


@duralog.workflow(name="di_ambiguous")
async def di_ambiguous() -> None:
    await di_two_mailers("x")


def test_an_ambiguous_type_asks_for_a_name(db: str) -> None:
    resources = {"eu": Mailer(), "us": Mailer()}
    with (
        duralog.Engine(db, resources=resources) as engine,
        pytest.raises(duralog.WorkflowFailed) as failed,
    ):
        engine.run(di_ambiguous, timeout=10)
    assert "has several: eu, us" in str(failed.value)
    assert "duralog.inject('eu')" in str(failed.value)


def test_resource_names_and_kinds_are_checked(db: str) -> None:
    with pytest.raises(duralog.ConfigurationError, match="non-empty string"):
        duralog.Engine(db, resources={"": 1})
    with pytest.raises(duralog.ConfigurationError, match="a name or a type"):
        inject(3)  # type: ignore[arg-type]
    with duralog.Engine(db, worker=False) as engine, pytest.raises(duralog.ConfigurationError):
        engine.provide("", 1)
