"""What inbox items become in the log (engine/inbox.py: pure, no I/O)."""

from __future__ import annotations

from duralog.engine.inbox import translate
from duralog.store import events as ev
from duralog.store.base import InboxItem, WorkflowStatus


def item(i: int, kind: str, name: str | None = None, payload: bytes | None = b"null") -> InboxItem:
    return InboxItem(i, "wf", kind, name, payload, 0.0)


def test_signals_cancels_and_pauses_in_order() -> None:
    moved = translate(
        "wf",
        [
            item(1, "signal", "go", b'{"n":1}'),
            item(2, "pause", "maintenance"),
            item(3, "pause", "again"),  # already paused: consumed, nothing appended
            item(4, "resume"),
            item(5, "cancel", "stop"),
        ],
        {},
        paused=False,
    )
    assert [type(e).__name__ for e in moved.events] == [
        "SignalReceived",
        "PauseRequested",
        "ResumeRequested",
        "CancelRequested",
    ]
    assert moved.consumed == [1, 2, 3, 4, 5]
    assert (moved.paused, moved.status, moved.cancel_reasons) == (
        False,
        WorkflowStatus.RUNNING,
        ["stop"],
    )


def test_child_notices_only_for_the_open_child_with_that_id() -> None:
    moved = translate(
        "P",
        [
            item(1, "child_completed", "2:P/2", b'"old run"'),  # a child of an earlier run
            item(2, "child_completed", "2:P/2.2", b'"this run"'),
            item(3, "child_failed", "5:P/5", b'{"type":"X","message":"m"}'),  # not open
            item(4, "child_completed", "3", b"1"),  # written before notices carried ids
        ],
        {2: "P/2.2", 3: "P/3"},
        paused=False,
    )
    completed = [e for e in moved.events if isinstance(e, ev.ChildCompleted)]
    assert len(moved.events) == len(completed) == 2
    assert [(e.child_seq, bytes(e.result)) for e in completed] == [(2, b'"this run"'), (3, b"1")]
    assert moved.consumed == [1, 2, 3, 4]  # stale ones are consumed, never re-read


def test_a_payload_that_is_not_json_is_dropped() -> None:
    moved = translate("wf", [item(1, "signal", "x", b"{not json")], {}, paused=True)
    assert moved.events == [] and moved.consumed == [1] and moved.paused is True
