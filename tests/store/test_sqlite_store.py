"""What only the SQLite store has: files, their schema and migrations, foreign files.

Everything both stores do is in the conformance suite (``test_conformance_*.py``).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import msgspec
import pytest
from sqlite_utils import Database, Migrations
from support import race_close

from duralog.errors import ConfigurationError, CorruptEventError, StoreError
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, NewWorkflow, WorkflowStatus
from duralog.store.events import LogEntry
from duralog.store.schema import MIGRATION_NAMES, SCHEMA_VERSION
from duralog.store.sqlite import SQLiteStore

T0 = 1_700_000_000.0


def started(at: float = T0, name: str = "checkout") -> LogEntry:
    return LogEntry(1, at, ev.WorkflowStarted(name=name, args=codec.encode(["order-1"])))


def new_workflow(
    workflow_id: str, *, owner: str | None = None, lease_seconds: float | None = None
) -> NewWorkflow:
    return NewWorkflow(workflow_id, "checkout", started(), owner=owner, lease_seconds=lease_seconds)


def scheduled(seq: int, at: float = T0, name: str = "charge") -> LogEntry:
    return LogEntry(seq, at + seq, ev.StepScheduled(name=name, args=codec.encode([seq])))


def sql_count(path: Path, sql: str, *params: object) -> int:
    with sqlite3.connect(path) as conn:
        (n,) = conn.execute(sql, params).fetchone()
    conn.close()
    return int(n)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


# -- schema, opening -----------------------------------------------------------


def test_reopening_a_file_keeps_data_and_migrates_once(path: Path) -> None:
    store = SQLiteStore(path)
    store.create_workflows([new_workflow("a")])
    store.close()
    for _ in range(2):
        store = SQLiteStore(path)
        assert store.read_events("a") == [started()]
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert SCHEMA_VERSION >= 1
    assert sql_count(
        path, "SELECT count(*) FROM _sqlite_migrations WHERE migration_set = 'duralog'"
    ) == len(MIGRATION_NAMES)


def test_migration_rerun_with_user_version_reset_is_harmless(path: Path) -> None:
    store = SQLiteStore(path)
    store.create_workflows([new_workflow("a")])
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 0")
    conn.close()
    store = SQLiteStore(path)
    assert store.read_events("a") == [started()]
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


# The schema as the release before store/schema.py's description wrote it, migration by
# migration: files made then must keep opening, and new files must get the same tables.
RELEASED_MIGRATIONS = {
    "m001_initial": """
        CREATE TABLE IF NOT EXISTS events (
            workflow_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
            at REAL NOT NULL, body TEXT NOT NULL, PRIMARY KEY (workflow_id, seq)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS workflows (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, parent_id TEXT,
            owner TEXT, lease_until REAL, fence INTEGER NOT NULL DEFAULT 0, wake_at REAL,
            last_seq INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
            reason TEXT
        );
        CREATE INDEX IF NOT EXISTS workflows_status ON workflows (status, owner);
        CREATE INDEX IF NOT EXISTS workflows_name ON workflows (name, created_at);
        CREATE INDEX IF NOT EXISTS workflows_created ON workflows (created_at);
        CREATE TABLE IF NOT EXISTS snapshots (
            workflow_id TEXT NOT NULL, seq INTEGER NOT NULL, state BLOB NOT NULL,
            checksum TEXT NOT NULL, PRIMARY KEY (workflow_id, seq)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, workflow_id TEXT NOT NULL,
            kind TEXT NOT NULL, name TEXT, payload TEXT, at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS inbox_workflow ON inbox (workflow_id, id);
        CREATE TABLE IF NOT EXISTS workers (
            id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
            started_at REAL NOT NULL, heartbeat_at REAL NOT NULL
        )
    """,
    "m002_queues_schedules_breakers": """
        ALTER TABLE workflows ADD COLUMN queue TEXT;
        ALTER TABLE workflows ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE workflows ADD COLUMN dequeued_at REAL;
        CREATE INDEX IF NOT EXISTS workflows_queue
            ON workflows (queue, status, priority, created_at);
        CREATE TABLE IF NOT EXISTS schedules (
            id TEXT PRIMARY KEY, cron TEXT NOT NULL, workflow TEXT NOT NULL,
            args TEXT NOT NULL, queue TEXT, catch_up TEXT NOT NULL, timezone TEXT NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0, last_tick REAL NOT NULL,
            created_at REAL NOT NULL, updated_at REAL NOT NULL
        );
        CREATE TABLE IF NOT EXISTS breakers (
            name TEXT PRIMARY KEY, state TEXT NOT NULL, failures INTEGER NOT NULL,
            opened_at REAL, version INTEGER NOT NULL, updated_at REAL NOT NULL
        )
    """,
}


def released_file(path: Path, upto: int) -> None:
    """A log file as the previous release left it after migration ``upto``."""
    released = Migrations("duralog")
    for name, script in list(RELEASED_MIGRATIONS.items())[:upto]:

        def apply(db: object, script: str = script) -> None:
            for statement in script.split(";"):
                db.execute(statement)  # type: ignore[attr-defined]

        released(name=name)(apply)
    conn = sqlite3.connect(path, isolation_level=None)
    released.apply(Database(conn))
    conn.execute(f"PRAGMA user_version = {upto}")
    conn.close()


def shape(path: Path) -> dict[str, object]:
    """Every table's columns and indexes, as SQLite reports them."""
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '%sqlite%'"
            )
        ]
        found: dict[str, object] = {}
        for table in tables:
            indexes = conn.execute(f"PRAGMA index_list({table})").fetchall()
            found[table] = (
                conn.execute(f"PRAGMA table_xinfo({table})").fetchall(),
                sorted(
                    (i[1], i[2], conn.execute(f"PRAGMA index_info({i[1]})").fetchall())
                    for i in indexes
                ),
                "WITHOUT ROWID"
                in conn.execute(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
                ).fetchone()[0],
            )
    conn.close()
    return found


@pytest.mark.parametrize("upto", [1, 2])
def test_a_file_of_the_previous_release_opens_and_migrates(tmp_path: Path, upto: int) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    released_file(old, upto)
    with sqlite3.connect(old) as conn:
        conn.execute(
            "INSERT INTO workflows (id, name, status, last_seq, created_at, updated_at)"
            " VALUES ('a', 'checkout', 'PENDING', 1, 1.0, 1.0)"
        )
        conn.execute(
            "INSERT INTO events VALUES ('a', 1, 'WorkflowStarted', 1.0, ?)",
            (msgspec.json.encode(started().event).decode(),),
        )
    conn.close()
    store = SQLiteStore(old)
    assert [e.seq for e in store.read_events("a")] == [1]
    assert [c.workflow_id for c in store.claim("w1", T0, 30, [WorkflowStatus.PENDING])] == ["a"]
    store.close()
    SQLiteStore(new).close()
    assert shape(old) == shape(new)  # the description renders the released schema


def test_two_stores_open_one_new_file(path: Path) -> None:
    one, two = SQLiteStore(path), SQLiteStore(path)
    one.create_workflows([new_workflow("a")])
    assert two.read_events("a") == [started()]
    one.close()
    two.close()


def test_memory_stores_are_private() -> None:
    one, two = SQLiteStore(":memory:"), SQLiteStore(":memory:")
    one.create_workflows([new_workflow("a")])
    assert two.get_workflow("a") is None
    one.close()
    two.close()


@pytest.mark.parametrize(
    "content",
    [b"hello, this is not a database " * 40, b"hi", b"SQLite format 3\x00" + b"\xff" * 200],
    ids=["text", "tiny", "bad-header"],
)
def test_opening_a_non_database_file_raises_store_error(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    with pytest.raises(StoreError, match=str(path)) as info:
        SQLiteStore(path)
    assert type(info.value) is StoreError
    assert path.read_bytes() == content


def test_opening_a_directory_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path)


def test_missing_folder_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        SQLiteStore(tmp_path / "no" / "such" / "log.db")


# -- corrupt records -----------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage",
        "{",
        '{"kind": "NoSuchEvent"}',
        '{"kind": "StepCompleted", "step_seq": "two"}',
        '{"kind": "StepStarted"}',
        "[]",
        b"\xff\xfe\x00",
        42,
    ],
    ids=[
        "text",
        "truncated",
        "unknown-kind",
        "wrong-type",
        "missing-field",
        "array",
        "blob",
        "number",
    ],
)
def test_corrupt_event_body_raises_corrupt_event_error(path: Path, garbage: object) -> None:
    store = SQLiteStore(path)
    store.create_workflows([new_workflow("order-7", owner="w1", lease_seconds=30)])
    store.append([Append("order-7", 1, [scheduled(s) for s in (2, 3, 4)])])
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE events SET body = ? WHERE workflow_id = ? AND seq = 3", (garbage, "order-7")
        )
    conn.close()
    with pytest.raises(CorruptEventError) as info:
        store.read_events("order-7")
    err = info.value
    assert isinstance(err, StoreError)
    assert (err.workflow_id, err.seq) == ("order-7", 3)
    assert "order-7" in str(err) and "3" in str(err)
    assert isinstance(err.__cause__, msgspec.MsgspecError | TypeError)
    # Reading around the corrupt event still works.
    assert [e.seq for e in store.read_events("order-7", until_seq=2)] == [1, 2]
    assert [e.seq for e in store.read_events("order-7", after_seq=3)] == [4]
    store.close()


def test_calls_racing_close_end_with_a_store_error_not_a_crash(tmp_path: Path) -> None:
    # Regression: close() closed connections other threads were reading with, and
    # the process died of a segmentation fault.
    for trial in range(20):
        store = SQLiteStore(tmp_path / f"{trial}.db", durability="normal")
        store.create_workflows([new_workflow("wf")])

        def read(store: SQLiteStore = store) -> None:
            store.list_workflows()
            store.read_events("wf")

        stopped = race_close(read, store.close)
        assert [type(e) for e in stopped] == [StoreError] * 3
        assert all("is closed" in str(e) for e in stopped)


AT_EXIT = """
import atexit, sys, threading
from duralog.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
store.get_workflow("x")  # the main thread's connection

def at_exit():
    # While atexit runs, the main thread no longer counts as alive: another thread
    # opening a connection must not close the main thread's.
    reader = threading.Thread(target=store.get_workflow, args=("x",))
    reader.start()
    reader.join()
    print("main thread read:", store.get_workflow("x"))

atexit.register(at_exit)
"""


def test_the_main_threads_connection_survives_into_atexit(tmp_path: Path) -> None:
    script = tmp_path / "at_exit.py"
    script.write_text(AT_EXIT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "log.db")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "main thread read: None", done.stderr


def test_an_append_never_chains_onto_a_last_event_rewritten_since_it_was_written(
    path: Path,
) -> None:
    from duralog.errors import LogDamaged
    from duralog.store.integrity import link

    store = SQLiteStore(path)
    store.create_workflows([new_workflow("order-7", owner="w1", lease_seconds=30)])
    assert store.append([Append("order-7", 1, [scheduled(2), scheduled(3)])]) == [True]
    with sqlite3.connect(path) as conn:  # rewritten whole, its checksum recomputed
        ((at, body, previous),) = conn.execute(
            "SELECT e.at, e.body, p.checksum FROM events e JOIN events p ON"
            " p.workflow_id = e.workflow_id AND p.seq = 2 WHERE e.seq = 3"
        ).fetchall()
        forged = body.replace("[3]", "[30]")
        conn.execute(
            "UPDATE events SET body = ?, checksum = ? WHERE seq = 3",
            (forged, link(previous, 3, "StepScheduled", at, forged)),
        )
    conn.close()
    (refused,) = store.append([Append("order-7", 1, [scheduled(4)])])
    assert isinstance(refused, LogDamaged) and refused.seq == 3
    assert "changed after this process wrote it" in str(refused)
    assert [e.seq for e in store.read_events("order-7")] == [1, 2, 3]
    store.close()


def test_openers_of_a_new_log_at_once_all_open_it(tmp_path: Path) -> None:
    # Each one puts the new file in WAL mode; SQLite refuses all but one "database is
    # locked" without waiting (a worker and a CLI started together on a new log).
    failures: list[str] = []

    def open_it(path: Path, together: threading.Barrier) -> None:
        together.wait()
        try:
            SQLiteStore(path).close()
        except StoreError as exc:
            failures.append(str(exc))

    for i in range(40):
        together = threading.Barrier(3)
        threads = [
            threading.Thread(target=open_it, args=(tmp_path / f"new-{i}.db", together))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
