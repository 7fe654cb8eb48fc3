"""``duralog.logger``: the workflow on every record, silence on replay, no payloads unasked."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import duralog
from duralog.engine.clock import VirtualClock
from duralog.observe.logger import FIELDS, WorkflowLogger, logger
from duralog.replay.checker import check
from duralog.replay.history import History

Wait = Callable[..., Any]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    target = logging.getLogger("duralog.workflow")
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    yield handler
    target.removeHandler(handler)
    target.setLevel(level)


@duralog.step
def lg_charge(order_id: str, cents: int) -> dict[str, Any]:
    logger.info("charging %s", order_id)
    return {"order": order_id, "cents": cents, "card": "4242"}


@duralog.workflow(name="lg_checkout")
async def lg_checkout(order_id: str, cents: int, pause: float = 0.3) -> str:
    logger.info("checkout of %s begins", order_id)
    receipt = await lg_charge(order_id, cents)
    logger.with_payloads().info("charged")
    await duralog.sleep(pause)
    logger.warning("slept; shipping %s", order_id, extra={"seq": "mine"})
    return str(receipt["cents"])


def test_records_carry_the_workflow_and_no_payload(
    engine: duralog.Engine, records: Records
) -> None:
    assert engine.run(lg_checkout, "o-1", 1999, id="lg-1", timeout=10) == "1999"
    first, charging, charged, slept = records.records
    assert first.getMessage() == "checkout of o-1 begins"
    assert (first.workflow_id, first.workflow_name, first.step, first.seq, first.attempt) == (  # type: ignore[attr-defined]
        "lg-1",
        "lg_checkout",
        None,
        1,
        None,
    )
    assert not hasattr(first, "payload")
    assert (charging.step, charging.seq, charging.attempt, charging.workflow_name) == (  # type: ignore[attr-defined]
        "lg_charge",
        2,
        1,
        "lg_checkout",
    )
    assert (charged.step, charged.seq) == ("lg_charge", 4)  # type: ignore[attr-defined]
    assert charged.payload == {"order": "o-1", "cents": 1999, "card": "4242"}  # type: ignore[attr-defined]
    assert slept.seq == "mine" and slept.levelno == logging.WARNING  # type: ignore[attr-defined]
    assert all(r.pathname == __file__ for r in records.records)  # the caller's line, not ours
    assert all("4242" not in r.getMessage() for r in records.records)


def test_silent_while_a_recovery_replays(db: str, records: Records, wait_for: Wait) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as first:
        handle = first.start(lg_checkout, "o-2", 5, 3600.0, id="lg-2")  # an hour's sleep
        wait_for(lambda: any(e.kind == "TimerStarted" for e in handle.history()))
    before = records.messages()
    assert before == ["checkout of o-2 begins", "charging o-2", "charged"]
    later = VirtualClock(time.time() + 3660)  # the second worker starts after the sleep
    with duralog.Engine(db, durability="normal", poll_interval=0.05, clock=later) as second:
        assert second.get("lg-2").result(timeout=10) == "5"  # replayed, then carried on
    assert records.messages() == [*before, "slept; shipping o-2"]


def test_silent_in_a_pure_replay(engine: duralog.Engine, records: Records) -> None:
    handle = engine.start(lg_checkout, "o-3", 1, id="lg-3")
    handle.result(timeout=10)
    logged = len(records.records)
    history = handle.history()
    report = check(History("lg-3", "lg_checkout", history[:4]), {"lg_checkout": lg_checkout})
    assert report.ok and not report.finished  # past the recorded decisions: still silent
    assert check(History("lg-3", "lg_checkout", history), {"lg_checkout": lg_checkout}).ok
    assert len(records.records) == logged


def test_outside_any_workflow_the_fields_are_none(records: Records) -> None:
    logger.error("plain")
    (record,) = records.records
    assert all(getattr(record, field) is None for field in FIELDS)
    mine = WorkflowLogger("duralog.workflow.custom", payloads=True)
    mine.debug("with payloads asked for, outside a workflow")
    assert records.records[-1].payload is None  # type: ignore[attr-defined]
    assert records.records[-1].name == "duralog.workflow.custom"


def test_a_disabled_level_costs_nothing(records: Records) -> None:
    logging.getLogger("duralog.workflow").setLevel(logging.WARNING)
    logger.info("not shown")
    assert records.records == []
