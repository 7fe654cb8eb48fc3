"""With a payload codec, nothing derived from user data is stored in clear:
not the payloads, and not what they leak into (error messages and tracebacks,
cancel and pause reasons, a child's failure on its way to the parent, published
values, schedule arguments, snapshots). The workflow code still sees it all.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import msgspec
import pytest
from support import load_app, wait_for

import duralog
from duralog.engine.inbox import notice_to_parent
from duralog.errors import ErrorDetails
from duralog.replay.state import fold_all
from duralog.store import envelope
from duralog.store import events as ev

app = load_app(Path(__file__).parents[1] / "cli" / "app_vault.py", "app_vault")
SECRET = app.SECRET
KEY = os.urandom(32)


def vault() -> duralog.AesGcmCodec:
    return duralog.AesGcmCodec({"k1": KEY}, "k1")


def fill(db: str) -> None:
    """Run every channel once; the parent is rebuilt from its log half-way."""
    options = {"durability": "normal", "poll_interval": 0.05, "snapshot_every": 1}
    with duralog.Engine(db, payload_codec=vault(), **options) as engine:  # type: ignore[arg-type]
        parent = engine.start(app.parent, SECRET, id="parent")
        waiting = engine.start(app.waiter, SECRET, id="waiter")
        wait_for(lambda: any(e.kind == "ChildFailed" for e in parent.history()))
        wait_for(lambda: waiting.status() is duralog.WorkflowStatus.RUNNING)
        waiting.pause(f"pause {SECRET}")
        wait_for(lambda: waiting.status() is duralog.WorkflowStatus.PAUSED)
        waiting.resume()
        waiting.cancel(f"cancel {SECRET}")
        wait_for(lambda: waiting.status() is duralog.WorkflowStatus.CANCELLED)
        engine.schedule("vault_schedule", "0 3 29 2 *", app.waiter, f"scheduled {SECRET}")
    # A fresh engine rebuilds the parent from the sealed log (and its snapshots).
    with duralog.Engine(db, payload_codec=vault(), **options) as engine:  # type: ignore[arg-type]
        parent = engine.get("parent")
        parent.signal("note", f"signal {SECRET}")
        with pytest.raises(duralog.WorkflowFailed) as failed:
            parent.result(timeout=20)
        assert failed.value.cause.message == (
            f"gave up: declined {SECRET} | child saw {SECRET} | signal {SECRET}"
        )
        assert engine.get("parent").get_event("status") == f"published {SECRET}"
    with duralog.Engine(db, payload_codec=vault(), worker=False) as engine:
        queued = engine.start(app.waiter, SECRET, id="queued", queue=app.vault_queue)
        queued.cancel(f"cancel queued {SECRET}")  # a queued workflow ends at once
        assert queued.status() is duralog.WorkflowStatus.CANCELLED
        pending = engine.start(app.waiter, SECRET, id="pending")
        pending.pause(f"pause pending {SECRET}")  # no worker: they stay in the inbox
        pending.cancel(f"cancel pending {SECRET}")


def test_no_secret_in_any_table_or_file(tmp_path: Path) -> None:
    db = str(tmp_path / "vault.db")
    fill(db)
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                assert SECRET not in repr(row), f"{SECRET!r} in table {table}: {row!r}"
        kinds = {r[0] for r in conn.execute("SELECT kind FROM events")}
        snapshots = conn.execute("SELECT count(*) FROM snapshots").fetchone()[0]
    # Every channel was exercised (and a snapshot written), so the check above means it.
    assert {"StepRetrying", "StepFailed", "ChildFailed", "WorkflowFailed"} <= kinds
    assert {"CancelRequested", "PauseRequested", "WorkflowCancelled", "StatePublished"} <= kinds
    assert snapshots > 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 2
    for path in tmp_path.iterdir():  # free pages and the WAL included
        assert SECRET.encode() not in path.read_bytes(), path.name


def test_error_texts_and_reasons_are_envelopes_with_the_key_id(tmp_path: Path) -> None:
    db = str(tmp_path / "vault.db")
    fill(db)
    with duralog.Engine(db, worker=False) as engine:
        events = [e.event for e in engine.get("parent").history()]
        events += [e.event for e in engine.get("waiter").history()]
    failed = next(e for e in events if isinstance(e, ev.StepFailed))
    assert failed.error.type == "ValueError"  # the type stays readable (stats count it)
    assert envelope.key_id(failed.error.message) == "k1"
    assert envelope.key_id(failed.error.traceback) == "k1"
    cancel = next(e for e in events if isinstance(e, ev.CancelRequested))
    assert envelope.is_sealed(cancel.reason)
    assert envelope.unseal(cancel.reason, vault()) == f"cancel {SECRET}"


def test_a_childs_failure_is_sealed_in_its_parents_inbox() -> None:
    state = fold_all(
        "child", [ev.started_entry(0.0, name="c", args=ev.NULL, parent_id="p", parent_seq=3)]
    )
    error = ErrorDetails("LookupError", f"child saw {SECRET}", f"Traceback ... {SECRET}")
    (notice,) = notice_to_parent(state, "child", ev.WorkflowFailed(error=error), vault())
    assert notice.payload is not None and SECRET.encode() not in notice.payload
    sent = msgspec.json.decode(notice.payload, type=ErrorDetails)
    assert envelope.unseal_error(sent, vault()) == error


def test_a_timeout_reason_stays_readable(tmp_path: Path) -> None:
    # The engine and replay recognise it; it is duralog's text, not the user's.
    sealed = ev.seal_event(ev.CancelRequested(reason=ev.TIMEOUT_REASON), vault())
    assert sealed == ev.CancelRequested(reason=ev.TIMEOUT_REASON)
    why = ev.CancelRequested(reason="why")
    assert ev.seal_event(why, vault()) != why


def test_old_logs_with_plain_errors_still_read(tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:  # no codec
        parent = engine.start(app.parent, "plain", id="parent")
        wait_for(lambda: any(e.kind == "ChildFailed" for e in parent.history()))
    # A codec is given later: old plain texts replay as they are, new ones are sealed.
    with duralog.Engine(db, payload_codec=vault(), poll_interval=0.05) as engine:
        parent = engine.get("parent")
        parent.signal("note", "later")
        with pytest.raises(duralog.WorkflowFailed) as failed:
            parent.result(timeout=20)
        assert failed.value.cause.message == "gave up: declined plain | child saw plain | later"
        last = parent.history()[-1].event
    assert isinstance(last, ev.WorkflowFailed) and envelope.is_sealed(last.error.message)


def test_without_the_key_the_engine_says_which_key(tmp_path: Path) -> None:
    db = str(tmp_path / "vault.db")
    fill(db)
    with (
        duralog.Engine(db, worker=False) as engine,
        pytest.raises(duralog.PayloadError, match=r"with key 'k1'.*DURALOG_KEYS") as raised,
    ):
        engine.get("parent").result(timeout=1)
    assert SECRET not in str(raised.value)
