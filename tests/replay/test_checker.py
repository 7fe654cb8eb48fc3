"""``check``: replay a recorded history against code, and report where it stands.

The histories are made by ``run_in_memory``: the code's own decisions, with no
engine and no store.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import run_in_memory

import duralog
from duralog.replay.checker import check, find_workflow, replay_history, state_at
from duralog.replay.definitions import Registry, Workflow
from duralog.replay.history import History
from duralog.replay.state import Input, fold_all


@duralog.step(name="chk_price")
def price(item: str) -> int:
    return 100 * len(item)


@duralog.step(name="chk_pack")
def pack(items: list[str]) -> str:
    return "+".join(items)


async def basket(items: list[str]) -> str:
    prices = await asyncio.gather(*(price(item) for item in items))
    await duralog.sleep(60)
    return f"{await pack(items)} = {sum(prices)}"


BASKET = Workflow(basket, name="chk_basket")


def history_of(workflow: Workflow[Any, Any], *args: Any, **options: Any) -> History:
    log = run_in_memory(workflow, *args, workflow_id="basket-1", **options)
    return History("basket-1", workflow.name, log)


@given(
    items=st.lists(st.sampled_from(["tea", "jam", "bread"]), max_size=4),
    order=st.lists(st.integers(0, 5), max_size=6),
)
def test_a_history_agrees_with_its_own_code_whatever_the_completion_order(
    items: list[str], order: list[int]
) -> None:
    picks = iter(order)
    history = history_of(BASKET, items, pick=lambda n: next(picks, 0))
    report = check(history, [BASKET])
    assert report.ok, report.error
    assert report.finished and report.waiting_at is None
    assert report.replayed_to == report.events == len(history.events)


def test_until_stops_part_way_and_says_where_the_code_waits() -> None:
    history = history_of(BASKET, ["tea"])
    timer = next(e.seq for e in history.events if e.kind == "TimerStarted")
    report = check(history, [BASKET], until=timer)
    assert report.ok and not report.finished
    assert report.replayed_to == timer and report.events == len(history.events)
    assert report.waiting_at is not None and "test_checker.py" in report.waiting_at


def test_a_divergence_is_a_report_not_an_exception() -> None:
    history = history_of(BASKET, ["tea", "jam"])

    async def packs_first(items: list[str]) -> str:
        return await pack(items)  # CHANGED: no prices any more

    report = check(history, {"chk_basket": Workflow(packs_first, name="chk_basket")})
    assert not report.ok and not report.finished
    assert (report.seq, report.recorded, report.attempted) == (
        2,
        "StepScheduled chk_price",
        "StepScheduled chk_pack",
    )
    assert report.replayed_to == 1  # the last seq the code agreed with
    assert report.location is not None and "test_checker.py" in report.location
    assert report.error is not None and "basket-1" in report.error


def test_the_workflow_is_found_in_a_registry_a_mapping_or_a_list() -> None:
    registry = Registry()
    registry.add(BASKET)
    for workflows in (registry, {"chk_basket": BASKET}, [BASKET]):
        assert find_workflow(workflows, "chk_basket") is BASKET
    for workflows in (Registry(), {}, []):
        with pytest.raises(duralog.RegistrationError):
            find_workflow(workflows, "chk_basket")


def test_on_input_sees_every_input_once_in_log_order() -> None:
    history = history_of(BASKET, ["tea", "jam"])
    seen: list[Input] = []
    assert check(history, [BASKET], on_input=seen.append).ok
    state = fold_all("basket-1", history.events)
    assert [(i.seq, i.kind) for i in seen] == [(i.seq, i.kind) for i in state.inputs]
    assert [i.seq for i in seen] == sorted(i.seq for i in seen)
    assert {i.kind for i in seen} == {"StepCompleted", "TimerFired"}


@given(st.integers(1, 12))
def test_state_at_is_the_fold_of_the_first_events(seq: int) -> None:
    history = history_of(BASKET, ["tea"])
    seq = min(seq, len(history.events))
    assert state_at(history, seq) == fold_all("basket-1", history.events[:seq])
    assert state_at(history) == fold_all("basket-1", history.events)


def test_replay_history_returns_the_instance_and_the_folded_state() -> None:
    history = history_of(BASKET, ["bread"])
    instance, state = replay_history(BASKET, history.events, "basket-1")
    assert instance.finished and state.status == "COMPLETED"
    assert state.last_seq == len(history.events)
