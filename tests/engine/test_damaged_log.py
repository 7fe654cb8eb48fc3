"""The engine never appends past a gap or onto a broken chain.

A workflow whose log is damaged behind the engine's back (rows edited with plain
SQL while it runs, or while no worker runs) is set aside: SUSPENDED, with a reason
that names the seq and says to run ``duralog verify``, its lease released, nothing
more appended and none of its steps run again; the other workflows carry on.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from support import wait_for

import duralog
from duralog.store.sqlite import SQLiteStore

ran: Counter[str] = Counter()


@duralog.step(name="damaged.before")
def before(order: str) -> str:
    ran[f"before {order}"] += 1
    return f"reserved {order}"


@duralog.step(name="damaged.after")
def after(order: str) -> str:
    ran[f"after {order}"] += 1
    return f"shipped {order}"


@duralog.workflow(name="damaged.quick")
async def quick(order: str) -> str:
    return await after(await before(order))


@duralog.workflow(name="damaged.waiter")
async def waiter(order: str) -> str:
    await before(order)
    go = await duralog.wait_signal("go")
    return f"{await after(order)} {go}"


def run_sql(db: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(statement, params).fetchall()
    conn.close()
    return rows


def last_seq_in_log(db: str, workflow_id: str) -> int:
    ((seq,),) = run_sql(db, "SELECT max(seq) FROM events WHERE workflow_id = ?", workflow_id)
    assert isinstance(seq, int)
    return seq


def waiting(handle: duralog.WorkflowHandle[str]) -> Callable[[], bool]:
    """True once the workflow has run its first step and waits for its signal."""
    return lambda: any(e.kind == "StepCompleted" for e in handle.history())


def assert_set_aside(engine: duralog.Engine, workflow_id: str, seq: int) -> None:
    handle = engine.get(workflow_id)
    wait_for(lambda: handle.status() is duralog.WorkflowStatus.SUSPENDED)
    record = handle.record()
    assert record.reason is not None
    assert record.reason.startswith(f"its log is damaged at seq {seq}:"), record.reason
    assert f"duralog verify {workflow_id}" in record.reason
    assert record.owner is None and record.lease_until is None  # its lease was released
    with pytest.raises(duralog.WorkflowSuspended, match="its log is damaged"):
        handle.result(timeout=5)


DAMAGE = {
    # The index says the log goes one event further than it does.
    "index-ahead": ("UPDATE workflows SET last_seq = last_seq + 1 WHERE id = ?", 1),
    # The last event is gone; the index still counts it.
    "last-event-deleted": (
        "DELETE FROM events WHERE workflow_id = ?1 AND seq ="
        " (SELECT max(seq) FROM events WHERE workflow_id = ?1)",
        0,
    ),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_log_damaged_under_a_running_worker_is_set_aside(db: str, damage: str) -> None:
    statement, shift = DAMAGE[damage]
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        victim = engine.start(waiter, "v", id=f"victim-{damage}")
        other = engine.start(waiter, "o", id=f"other-{damage}")
        wait_for(waiting(victim))
        wait_for(waiting(other))
        end = last_seq_in_log(db, victim.id)
        run_sql(db, statement, victim.id)
        victim.signal("go", 1)  # its next append would continue the damaged log
        # It would go at seq end + 1; the event the store misses is end + shift.
        assert_set_aside(engine, victim.id, end + shift)
        other.signal("go", 2)  # the other workflows carry on, in the same worker
        assert other.result(timeout=20) == "shipped o 2"
        assert engine.run(quick, f"late-{damage}", timeout=20) == f"shipped reserved late-{damage}"
    assert last_seq_in_log(db, victim.id) == end - (1 - shift)  # nothing past the gap
    assert ran["after v"] == 0


def test_a_broken_chain_found_when_a_worker_takes_the_workflow_up(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        victim = engine.start(waiter, "r", id="rebuilt")
        wait_for(waiting(victim))
    # While no worker runs: the recorded result of its first step is altered.
    run_sql(
        db,
        "UPDATE events SET body = replace(body, 'reserved r', 'reserved x')"
        " WHERE workflow_id = 'rebuilt' AND kind = 'StepCompleted'",
    )
    ((seq,),) = run_sql(
        db, "SELECT seq FROM events WHERE workflow_id = 'rebuilt' AND kind = 'StepCompleted'"
    )
    store = SQLiteStore(db)
    store.send("rebuilt", "signal", "go", b"1", 0.0)  # it could go on, were its log intact
    store.close()
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert_set_aside(engine, "rebuilt", int(str(seq)))
        assert engine.run(quick, "n", timeout=20) == "shipped reserved n"
    assert ran["before r"] == 1 and ran["after r"] == 0  # none of its code ran again


def test_an_index_ahead_of_the_log_found_when_a_worker_takes_the_workflow_up(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        victim = engine.start(waiter, "i", id="ahead")
        wait_for(waiting(victim))
        end = last_seq_in_log(db, victim.id)
    run_sql(db, "UPDATE workflows SET last_seq = last_seq + 3 WHERE id = 'ahead'")
    store = SQLiteStore(db)
    store.send("ahead", "signal", "go", b"1", 0.0)
    store.close()
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert_set_aside(engine, "ahead", end + 1)
    assert last_seq_in_log(db, "ahead") == end and ran["after i"] == 0


def test_a_database_file_deleted_under_a_running_engine(tmp_path: Path) -> None:
    db = str(tmp_path / "gone.db")
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        handle = engine.start(waiter, "g", id="gone")
        wait_for(waiting(handle))
        Path(db).unlink()
        with pytest.raises(duralog.StoreError, match=r"gone\.db was deleted"):
            wait_for(lambda: engine.start(waiter, "h") is None, timeout=10)


def test_a_log_damaged_under_a_running_worker_on_postgres(postgres_url: str) -> None:
    import psycopg

    from duralog.store.postgres import PostgresStore

    with duralog.Engine(postgres_url, durability="normal", poll_interval=0.05) as engine:
        assert isinstance(engine.store, PostgresStore)
        victim = engine.start(waiter, "pv", id="pg-victim")
        other = engine.start(waiter, "po", id="pg-other")
        wait_for(waiting(victim))
        wait_for(waiting(other))
        end = len(victim.history())
        with psycopg.connect(engine.store.address.conninfo, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{engine.store.schema}"')
            conn.execute("UPDATE workflows SET last_seq = last_seq + 1 WHERE id = 'pg-victim'")
        victim.signal("go", 1)
        assert_set_aside(engine, victim.id, end + 1)
        other.signal("go", 2)
        assert other.result(timeout=20) == "shipped po 2"
        assert len(victim.history()) == end and ran["after pv"] == 0


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE workflows SET status = 'WEIRD' WHERE id = 'odd'",
        "UPDATE events SET at = 'yesterday' WHERE workflow_id = 'odd' AND seq = 2",
    ],
    ids=["unknown-status", "time-as-text"],
)
def test_a_damaged_row_does_not_stop_a_worker(db: str, damage: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        odd = engine.start(waiter, "odd", id="odd")
        wait_for(waiting(odd))
    run_sql(db, damage)
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.run(quick, "fine", timeout=20) == "shipped reserved fine"
    assert ran["after odd"] == 0
