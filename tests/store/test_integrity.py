"""The checksum chain and the checks over it, as pure functions (``store/integrity.py``).

The property: whatever single edit is made to one event of an intact log (its body,
its time, its kind, its checksum, or the event removed), the check points at that
event's seq, and at nothing before it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duralog.errors import CorruptEventError, LogDamaged
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.events import LogEntry
from duralog.store.integrity import GENESIS, EventCheck, entries, link, log_end
from duralog.store.schema import event_row, first_row

T0 = 1_700_000_000.0
Row = list[Any]  # seq, kind, at, body, checksum


def log_of(values: list[int]) -> list[Row]:
    """An intact log: WorkflowStarted, then a StepScheduled per value."""
    found = [
        list(
            first_row(
                "w", LogEntry(1, T0, ev.WorkflowStarted(name="job", args=codec.encode([]))), None
            )
        )
    ]
    for seq, value in enumerate(values, 2):
        entry = LogEntry(seq, T0 + seq / 8, ev.StepScheduled(name="s", args=codec.encode([value])))
        row = event_row("w", entry, None)
        found.append([*row, link(found[-1][5], *row[1:])])
    return [row[1:] for row in found]


def problems(rows: list[Row]) -> list[tuple[int, str]]:
    check = EventCheck("w")
    return [(f.seq, f.code) for row in rows for f in check.take(row)[1]]


EDITS = ("body", "time", "kind", "checksum", "remove", "swap")


@given(
    st.lists(st.integers(0, 10**6), min_size=2, max_size=30),
    st.data(),
    st.sampled_from(EDITS),
)
def test_any_single_edit_is_found_at_its_seq(values: list[int], data: Any, edit: str) -> None:
    rows = log_of(values)
    assert problems(rows) == []
    # The last event cannot be removed unseen by the rows alone (the index says where
    # the log ends: see test_conformance_integrity); any other can.
    last = len(rows) - (2 if edit in ("remove", "swap") else 1)
    k = data.draw(st.integers(1, last))  # a 0-based row index; seq k + 1
    seq = k + 1
    if edit == "body":
        rows[k][3] = rows[k][3].replace(f"[{values[k - 1]}]", f"[{values[k - 1] + 1}]")
    elif edit == "time":
        rows[k][2] += 0.001
    elif edit == "kind":
        rows[k][1] = "StepStarted"
    elif edit == "checksum":
        rows[k][4] = "0" * 32
    elif edit == "remove":
        del rows[k]
    elif edit == "swap":
        rows[k][3], rows[k + 1][3] = rows[k + 1][3], rows[k][3]
        if rows[k][3] == rows[k + 1][3]:
            return  # two equal events: swapping changes nothing
    found = problems(rows)
    assert found, (edit, seq)
    assert min(s for s, _ in found) == seq, (edit, found)
    with pytest.raises(LogDamaged) as info:  # a read stops there too
        entries("w", rows)
    assert info.value.seq == seq


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=30), st.data())
def test_an_intact_log_reads_whole_from_anywhere(values: list[int], data: Any) -> None:
    rows = log_of(values)
    after = data.draw(st.integers(0, len(rows)))
    read = entries("w", rows[max(after - 1, 0) :], after)
    assert [e.seq for e in read] == list(range(after + 1, len(rows) + 1))


def test_reads_raise_the_first_problem() -> None:
    rows = log_of([1, 2, 3])
    rows[2][3] = rows[2][3].replace("[2]", "[9]")
    with pytest.raises(LogDamaged) as info:
        entries("w", rows)
    assert (info.value.workflow_id, info.value.seq) == ("w", 3)
    assert "duralog verify w" in str(info.value)
    assert [e.seq for e in entries("w", rows, verify=False)] == [1, 2, 3, 4]


def test_a_row_that_is_no_event_is_refused_even_unverified() -> None:
    rows = log_of([1, 2])
    rows[1][2] = "yesterday"
    with pytest.raises(LogDamaged, match=r"at seq 2: its time .* is 'yesterday', not a number"):
        entries("w", rows, verify=False)
    rows = log_of([1, 2])
    rows[1][3] = b"\x00\x01"
    with pytest.raises(CorruptEventError, match="event 2 of workflow 'w'"):
        entries("w", rows, verify=False)


def test_where_an_append_continues_the_log() -> None:
    assert log_end(0, []) == (GENESIS, None)
    assert log_end(4, [(4, "abc")]) == ("abc", None)
    previous, damage = log_end(4, [])
    assert previous is None and damage is not None and damage[0] == 4
    previous, damage = log_end(4, [(4, "abc"), (5, "def")])
    assert previous is None and damage is not None and damage[0] == 5
    previous, damage = log_end(4, [(6, "def")])
    assert previous is None and damage is not None and damage[0] == 6
    assert log_end(4, [(4, None)])[0] is None
