"""Golden histories: files recorded by an older run must replay against today's code, and
a changed workflow must be reported at the exact decision it changed."""

from __future__ import annotations

import asyncio
import gc
import warnings
from pathlib import Path
from typing import Any

import pytest
from support import load_app

import duralog
from duralog.replay.checker import ReplayReport, check, query_history
from duralog.replay.definitions import Registry
from duralog.replay.history import History, load_history
from duralog.store import codec
from duralog.store import events as ev

HERE = Path(__file__).parent


# Tests run with --import-mode=importlib: the folder is not on sys.path.
golden = load_app(HERE / "workflows.py", "golden_workflows")


def read(stem: str) -> History:
    return load_history((HERE / f"{stem}.json").read_bytes())


def first_line(fn: Any) -> str:
    """``file:line`` of the first statement of ``fn`` (the line after its ``def``)."""
    return f"{fn.__code__.co_filename}:{fn.__code__.co_firstlineno + 1}"


def check_collecting_warnings(
    history: History, registry: Registry
) -> tuple[ReplayReport, list[str]]:
    """``check()``, and the warnings it left behind, garbage included."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = check(history, registry)
        gc.collect()
    return report, [str(w.message) for w in caught]


def test_every_golden_file_is_checked() -> None:
    assert sorted(p.stem for p in HERE.glob("*.json")) == sorted(golden.GOLDEN)


@pytest.mark.parametrize("stem", sorted(golden.GOLDEN))
def test_golden_history_replays(stem: str) -> None:
    history = read(stem)
    name, _, _ = golden.GOLDEN[stem]
    assert history.workflow_id == stem and history.workflow_name == name
    report = check(history, golden.WORKFLOWS)
    assert report.ok, report.error
    assert report.finished
    assert report.replayed_to == report.events == len(history.events)


def test_the_files_hold_what_they_are_named_for() -> None:
    kinds = {stem: [e.kind for e in read(stem).events] for stem in golden.GOLDEN}
    assert kinds["sequential"].count("StepScheduled") == 3
    # gather: three steps scheduled before any of them started.
    assert kinds["gather"][1:4] == ["StepScheduled"] * 3
    assert kinds["retry"].count("StepRetrying") == 1
    # update: two updates, each a signal answered by a published value, then the end.
    assert kinds["update"].count("SignalReceived") == 3
    assert kinds["update"].count("StatePublished") == 2
    # stream: the workflow's writes are decisions, its step's are bookkeeping.
    assert kinds["stream"].count("StreamWritten") == 1
    assert kinds["stream"].count("StepStreamed") == 3
    assert kinds["stream"][-2:] == ["StreamClosed", "WorkflowCompleted"]
    assert all(k[-1] == "WorkflowCompleted" for k in kinds.values())
    # forked: a fork of a run of `sequential` from seq 5, its reserve step copied.
    forked = read("forked").events
    started = forked[0].event
    assert isinstance(started, ev.WorkflowStarted) and started.forked_from is not None
    assert (started.forked_from.workflow_id, started.forked_from.seq) == ("sequential", 5)
    assert kinds["forked"] == kinds["sequential"]


async def charge_first(order: str, cents: int) -> list[str]:
    charged = await golden.charge(order, cents)  # CHANGED: charge before reserve
    return [await golden.reserve(order), charged, await golden.ship(order)]


async def ship_first(order: str) -> str:
    shipped = await golden.ship(order)  # CHANGED: ship before paying
    return f"{await golden.flaky(order)}, {shipped}"


async def update_ships(limit: int) -> list[str]:
    items: list[str] = []

    async def add(item: str) -> int:
        items.append(item)
        await golden.ship(item)  # CHANGED: ships instead of reserving
        return len(items)

    duralog.on_update("add_item", add)
    await duralog.wait_signal("checkout")
    return items


async def one_more_item(items: list[str]) -> int:
    prices = await asyncio.gather(*(golden.price(i) for i in [*items, "extra"]))  # CHANGED
    return sum(prices)


async def stream_renamed(text: str) -> int:
    duralog.write_stream("output", "<start>")  # CHANGED: another key
    return await golden.tokens(text)


@pytest.mark.parametrize(
    ("stem", "changed", "seq", "recorded", "attempted"),
    [
        (
            "sequential",
            charge_first,
            2,
            "StepScheduled golden_reserve",
            "StepScheduled golden_charge",
        ),
        ("retry", ship_first, 2, "StepScheduled golden_flaky", "StepScheduled golden_ship"),
        ("update", update_ships, 3, "StepScheduled golden_reserve", "StepScheduled golden_ship"),
        ("stream", stream_renamed, 2, "StreamWritten tokens", "StreamWritten output"),
        # The 4th decision is an extra step; the history's 4th decision is its end.
        ("gather", one_more_item, 11, "WorkflowCompleted", "StepScheduled golden_price"),
    ],
)
def test_changed_workflow_diverges_precisely(
    stem: str, changed: Any, seq: int, recorded: str, attempted: str
) -> None:
    history = read(stem)
    assert history.events[seq - 1].kind == recorded.split()[0]
    registry = golden.make_registry(**{history.workflow_name: changed})
    report, _ = check_collecting_warnings(history, registry)
    assert not report.ok
    assert (report.seq, report.recorded, report.attempted) == (seq, recorded, attempted)
    if stem != "update":  # the update's handler, not the workflow's first line, diverged
        assert report.location == first_line(changed)
    assert report.error is not None and f"at seq {seq}" in report.error
    assert "duralog.patched" in report.error


def test_divergence_inside_gather_leaves_no_unawaited_coroutines() -> None:
    history = read("gather")
    registry = golden.make_registry(golden_gather=one_more_item)
    report, caught = check_collecting_warnings(history, registry)
    assert not report.ok
    assert not [m for m in caught if "never awaited" in m], caught


def test_the_histories_can_be_recorded_again(tmp_path: Path) -> None:
    # What the README's regeneration command does, into a scratch folder.
    golden.record(tmp_path)
    for stem in golden.GOLDEN:
        fresh = load_history((tmp_path / f"{stem}.json").read_bytes())
        assert check(fresh, golden.WORKFLOWS).ok
        kept = read(stem)
        assert [e.kind for e in fresh.events if isinstance(e.event, ev.DECISIONS)] == [
            e.kind for e in kept.events if isinstance(e.event, ev.DECISIONS)
        ]


def test_the_update_history_answers_queries() -> None:
    history = read("update")
    workflow = golden.WORKFLOWS.get("golden_update")
    answer = query_history(workflow, history.events, "items", codec.encode([]), "update")
    assert codec.decode(answer) == ["o-3", "o-4"]
