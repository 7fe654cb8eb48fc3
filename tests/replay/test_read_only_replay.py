"""Replays outside a worker (a query, an update's check, a fork's check, `duralog
replay`) stop the code where it would make its first new decision: nothing of it
runs there, not even a side_effect's function."""

from __future__ import annotations

import duralog
from duralog.replay.checker import check
from duralog.replay.history import History

calls: list[str] = []


def send_email() -> str:
    calls.append("sent")
    return "message-1"


@duralog.workflow
async def mails_then_waits() -> str:
    stage = "before the email"
    duralog.on_query("stage", lambda: stage)
    sent = duralog.side_effect(send_email)  # not recorded yet: no worker ran it
    stage = f"sent {sent}"
    await duralog.wait_signal("done")
    return stage


def test_a_query_runs_no_side_effect(db: str) -> None:
    calls.clear()
    with duralog.Engine(db, worker=False) as engine:
        handle = engine.start(mails_then_waits, id="m-1")
        assert handle.query("stage") == "before the email"
        assert handle.query("stage") == "before the email"
        history = History("m-1", "mails_then_waits", handle.history())
    report = check(history, [mails_then_waits])
    assert report.ok and not report.finished
    assert report.waiting_at is not None and "test_read_only_replay.py:23" in report.waiting_at
    assert calls == []
