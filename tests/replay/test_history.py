"""History files: a log as a self-describing JSON document, read back strictly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import run_in_memory

import duralog
from duralog.replay.checker import check
from duralog.replay.definitions import Workflow
from duralog.replay.history import (
    FORMAT,
    VERSION,
    History,
    dump_history,
    entries_json,
    entry_json,
    load_history,
)
from duralog.store import events as ev


@duralog.step(name="hist_greet")
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


async def greetings(names: list[str], loud: bool = False) -> list[str]:
    said = [await greet(n, punctuation="!!" if loud else "!") for n in names]
    if duralog.random() < 2:  # a marker, always
        await duralog.sleep(1)
    return said


GREETINGS = Workflow(greetings, name="hist_greetings")
names = st.lists(st.text(max_size=6), max_size=3)


def history_of(who: list[str]) -> History:
    return History(
        "greet-1", "hist_greetings", run_in_memory(GREETINGS, who, workflow_id="greet-1")
    )


@given(names)
def test_a_dumped_history_loads_back_equal_and_still_replays(who: list[str]) -> None:
    history = history_of(who)
    loaded = load_history(dump_history(history))
    assert loaded == history
    assert check(loaded, [GREETINGS]).ok


def test_the_file_is_self_describing_json() -> None:
    history = history_of(["ana"])
    document = json.loads(dump_history(history))
    assert document["format"] == FORMAT and document["version"] == VERSION
    assert document["event_format"] == ev.FORMAT_VERSION
    assert (document["workflow_id"], document["workflow_name"]) == ("greet-1", "hist_greetings")
    events = document["events"]
    assert [e["seq"] for e in events] == list(range(1, len(history.events) + 1))
    assert [e["kind"] for e in events] == [e.kind for e in history.events]
    assert events[1]["name"] == "hist_greet" and events[1]["args"] == ["ana"]


def test_the_events_are_what_history_json_prints() -> None:
    history = history_of(["ana", "bo"])
    document = json.loads(dump_history(history))
    assert json.loads(entries_json(history.events)) == document["events"]
    first = json.loads(entry_json(history.events[0]))
    assert first["seq"] == 1 and first["kind"] == "WorkflowStarted"


def edit(history: History, change: Any) -> bytes:
    document = json.loads(dump_history(history))
    change(document)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), "format is 'other'"),
        (lambda d: d.update(version=VERSION + 1), "upgrade duralog"),
        (lambda d: d.update(event_format=ev.FORMAT_VERSION + 1), "upgrade duralog"),
        (lambda d: d.update(events=[]), "holds no events"),
        (lambda d: d.update(workflow_name="other"), "does not match"),
        (lambda d: d["events"].pop(0), "first event must be WorkflowStarted"),
        (lambda d: d["events"].pop(2), "valid history"),
        (lambda d: d["events"][1].update(kind="Nonsense"), "event #2 is malformed"),
        (lambda d: d["events"][0].update(args={"a": 1}), "args as a JSON array"),
        (lambda d: d.pop("workflow_id"), "not a duralog history file"),
    ],
)
def test_a_damaged_file_is_rejected_whole_with_the_reason(change: Any, message: str) -> None:
    with pytest.raises(duralog.HistoryFileError, match=message):
        load_history(edit(history_of(["ana", "bo"]), change))


@pytest.mark.parametrize("data", [b"", b"[]", b"not json", b"[" * 100_000])
def test_what_is_not_a_history_file_says_so(data: bytes) -> None:
    with pytest.raises(duralog.HistoryFileError, match="not a duralog history file"):
        load_history(data)


def test_unknown_top_level_fields_are_allowed_for_later_versions() -> None:
    history = history_of(["ana"])
    data = edit(history, lambda d: d.update(exported_by="a later duralog"))
    assert load_history(data) == history
