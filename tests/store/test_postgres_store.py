"""What only the PostgreSQL store has: URLs and schemas, migrations under a lock,
LISTEN/NOTIFY wake-ups, lost connections, and errors that name the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from support import wait_for

from duralog.errors import ConfigurationError, StoreError
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import Append, NewWorkflow, Notice, QueueLimits, WorkflowStatus
from duralog.store.events import LogEntry
from duralog.store.open import open_store
from duralog.store.schema import MIGRATION_NAMES, SCHEMA_VERSION

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")

from duralog.store.postgres import PostgresStore  # noqa: E402
from duralog.store.postgres_schema import lock_key, parse_address  # noqa: E402

T0 = 1_700_000_000.0
Heard = list[tuple[str, str | None]]


def new_workflow(
    workflow_id: str, owner: str | None = None, queue: str | None = None
) -> NewWorkflow:
    started = LogEntry(1, T0, ev.WorkflowStarted(name="flow", args=codec.encode([])))
    return NewWorkflow(
        workflow_id,
        "flow",
        started,
        owner=owner,
        lease_seconds=30 if owner else None,
        queue=queue,
    )


def admin(store: PostgresStore) -> psycopg.Connection[tuple[object, ...]]:
    """A connection beside the store's, in its schema."""
    conn = psycopg.connect(store.address.conninfo, autocommit=True)
    conn.execute(f'SET search_path TO "{store.schema}"')
    return conn


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(postgres_url, durability="normal")
    yield s
    s.close()


# -- addresses -----------------------------------------------------------------


def test_the_schema_comes_from_the_url_or_the_argument() -> None:
    url = "postgresql://app:s3cret@db.internal:6543/prod?schema=logs&sslmode=disable"
    address = parse_address(url)
    assert address.schema == "logs"
    assert "schema" not in address.conninfo and "sslmode=disable" in address.conninfo
    assert address.display == "postgresql://app@db.internal:6543/prod?schema=logs"
    assert parse_address(url, schema="other").schema == "other"
    assert parse_address("postgresql:///test").schema is None


@pytest.mark.parametrize("schema", ["has space", "1digit", "x" * 64, "semi;colon", ""])
def test_a_bad_schema_name_is_a_configuration_error(schema: str) -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        parse_address("postgresql://u@h/db", schema=schema)


def test_a_bad_url_is_a_configuration_error_without_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresStore("postgresql://app:s3cret@h/db?nonsense=1")
    assert "s3cret" not in str(info.value) and "valid PostgreSQL URL" in str(info.value)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://app:s3cret@[::1/db", "s3cret"),  # libpq quotes the whole URL
        ("postgresql://app:s3%cret@127.0.0.1/db", "cret"),  # and the bad token
        ("postgresql://app:p@ss@127.0.0.1:1/db", "ss@"),  # an unencoded @ in the password
    ],
)
def test_no_error_shows_any_part_of_the_password(url: str, secret: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostgresStore(url, connect_timeout=1)
    assert secret not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_role_that_owns_only_its_schema_can_open_it(postgres_url: str) -> None:
    # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
    # exists; a least-privilege role owns its schema and nothing else.
    schema = parse_address(postgres_url, None).schema
    assert schema is not None
    role = f"{schema}_owner"
    owner_url = postgres_url.replace("postgres@", f"{role}@", 1)
    with psycopg.connect(parse_address(postgres_url, None).conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
        conn.execute(f'REVOKE CREATE ON DATABASE test FROM PUBLIC, "{role}"')
    try:
        store = PostgresStore(owner_url)
        store.create_workflows([new_workflow("w-1")])
        assert store.get_workflow("w-1") is not None
        store.close()
    finally:
        with psycopg.connect(parse_address(postgres_url, None).conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            conn.execute(f'DROP ROLE "{role}"')


def test_an_unreachable_server_is_a_configuration_error_naming_it() -> None:
    url = "postgresql://app:s3cret@127.0.0.1:1/nowhere?schema=x"
    with pytest.raises(ConfigurationError) as info:
        open_store(url)
    message = str(info.value)
    assert "postgresql://app@127.0.0.1:1/nowhere" in message and "s3cret" not in message
    assert "server is running" in message


def test_repr_and_path_never_show_the_password(postgres_url: str) -> None:
    store = PostgresStore(postgres_url.replace("://postgres@", "://postgres:pw@"))
    try:
        assert "pw" not in repr(store) and "pw" not in store.path
        assert store.path.endswith(f"?schema={store.schema}")
    finally:
        store.close()


# -- schema and migrations -----------------------------------------------------


def test_concurrent_openers_migrate_once(postgres_url: str) -> None:
    barrier = threading.Barrier(6)
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            stores.append(PostgresStore(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with admin(stores[0]) as conn:
            rows = conn.execute("SELECT version, name FROM duralog_migrations ORDER BY version")
            assert rows.fetchall() == sorted(MIGRATION_NAMES.items())
        assert max(MIGRATION_NAMES) == SCHEMA_VERSION
    finally:
        for store in stores:
            store.close()


def test_a_schema_holding_someone_elses_tables_is_refused(postgres_url: str) -> None:
    schema = parse_address(postgres_url).schema
    with psycopg.connect(parse_address(postgres_url).conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".events (id int)')
    with pytest.raises(StoreError, match="did not create"):
        PostgresStore(postgres_url)


def test_a_log_from_a_newer_duralog_is_refused(store: PostgresStore, postgres_url: str) -> None:
    with admin(store) as conn:
        conn.execute("INSERT INTO duralog_migrations VALUES (99, 'm099_future', 0)")
    with pytest.raises(StoreError, match="newer"):
        PostgresStore(postgres_url)


def test_schemas_keep_logs_apart(store: PostgresStore, postgres_url: str) -> None:
    other = PostgresStore(postgres_url.rsplit("=", 1)[0] + "=" + store.schema + "_b")
    try:
        store.create_workflows([new_workflow("a")])
        assert other.get_workflow("a") is None
        assert other.create_workflows([new_workflow("a")]) == [0]
    finally:
        other.close()
        with admin(store) as conn:
            conn.execute(f'DROP SCHEMA "{store.schema}_b" CASCADE')


@pytest.mark.parametrize(("durability", "setting"), [("full", "on"), ("normal", "off")])
def test_durability_sets_synchronous_commit(
    postgres_url: str, durability: str, setting: str
) -> None:
    store = PostgresStore(postgres_url, durability=durability)  # type: ignore[arg-type]
    try:
        with store._db.connection() as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == (setting,)
    finally:
        store.close()


# -- errors --------------------------------------------------------------------


def test_text_postgres_cannot_hold_is_a_store_error(store: PostgresStore) -> None:
    store.create_workflows([new_workflow("a")])
    with pytest.raises(StoreError, match="NUL") as info:
        store.send("a", "signal", "bad\x00name", None, T0)
    assert store.path in str(info.value)
    assert store.inbox("a") == []


def test_a_lost_connection_is_a_store_error_then_reconnects(store: PostgresStore) -> None:
    store.create_workflows([new_workflow("a")])
    pids = set(store._db.backend_pids)
    with admin(store) as other:  # a server restart: every connection of the pool is gone
        other.execute("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) AS p", (list(pids),))

        def gone() -> bool:  # terminating is asynchronous: wait until they have ended
            query = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s::int[])"
            row = other.execute(query, (list(pids),)).fetchone()
            return row is not None and row[0] == 0

        wait_for(gone, what="the terminated connections to end")
    with pytest.raises(StoreError, match="failed while"):
        store.get_workflow("a")
    # The failed call dropped the other dead connections too: the next call reconnects.
    assert store.get_workflow("a") is not None
    assert store._db.backend_pids and store._db.backend_pids.isdisjoint(pids)


# -- LISTEN/NOTIFY -------------------------------------------------------------


def listening(store: PostgresStore) -> Heard:
    heard: Heard = []
    store.listen(lambda kind, workflow_id: heard.append((kind, workflow_id)))
    return heard


def test_writes_that_leave_work_notify_other_processes(
    store: PostgresStore, postgres_url: str
) -> None:
    other = PostgresStore(postgres_url)  # stands for another process
    try:
        heard = listening(other)
        store.create_workflows([new_workflow("free"), new_workflow("queued", "w1", "emails")])
        store.create_workflows([new_workflow("mine", owner="w1"), new_workflow("child", "w1")])
        store.send("mine", "signal", "go", None, T0)
        done = LogEntry(2, T0 + 1, ev.WorkflowCompleted(result=codec.encode(1)))
        notice = Notice("mine", "child", "child", b"1")
        assert store.append([Append("child", 1, [done], notices=[notice])]) == [True]
        store.release("w1", "mine", 1)
        store.register_worker("w1", "h", 1, T0)
        store.create_workflows([new_workflow("again", owner="w1")])
        store.unregister_worker("w1")
        store.create_workflows([new_workflow("witness")])  # committed after all of them
        expected = [
            ("created", "free"),
            ("created", "queued"),
            ("inbox", "mine"),
            ("inbox", "mine"),
            ("released", "mine"),
            ("released", None),
            ("created", "witness"),
        ]
        # Notices arrive in commit order: once the witness's has, every earlier one has,
        # and none came for the owned workflows (nobody else's work).
        wait_for(lambda: ("created", "witness") in heard)
        assert sorted(heard[:2]) == expected[:2] and heard[2:] == expected[2:]
    finally:
        other.close()


def test_a_store_does_not_hear_its_own_writes(store: PostgresStore, postgres_url: str) -> None:
    heard = listening(store)
    other = PostgresStore(postgres_url)
    try:
        store.create_workflows([new_workflow("mine")])
        store.send("mine", "signal", "x", None, T0)
        other.create_workflows([new_workflow("theirs")])
        wait_for(lambda: heard == [("created", "theirs")])
    finally:
        other.close()


def test_the_listener_survives_a_lost_connection(store: PostgresStore, postgres_url: str) -> None:
    heard = listening(store)
    with admin(store) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE %s AND pid <> pg_backend_pid()",
            (f"LISTEN {store._db.channel}%",),
        )
    wait_for(lambda: ("created", None) in heard)  # back: look for what was missed
    other = PostgresStore(postgres_url)
    try:
        other.create_workflows([new_workflow("after")])
        wait_for(lambda: ("created", "after") in heard)
    finally:
        other.close()


def test_close_stops_the_listener_at_once(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    heard = listening(store)
    other = PostgresStore(postgres_url)
    try:
        store.close()  # (how long it takes: benchmarks/bench_latency.py)
        assert not any(t.name == "duralog-pg-listener" and t.is_alive() for t in _listeners(store))
        other.create_workflows([new_workflow("late")])
        assert heard == []  # and with its listener thread gone, nothing can be heard
    finally:
        other.close()


def _listeners(store: PostgresStore) -> list[threading.Thread]:
    listener = store._db._listener
    thread = listener._thread if listener is not None else None
    return [thread] if thread is not None else []


def test_a_callback_that_raises_does_not_stop_the_listener(
    store: PostgresStore, postgres_url: str
) -> None:
    store.listen(lambda kind, workflow_id: 1 / 0)  # type: ignore[func-returns-value]
    heard = listening(store)
    other = PostgresStore(postgres_url)
    try:
        other.create_workflows([new_workflow("a")])
        other.create_workflows([new_workflow("b")])
        wait_for(lambda: heard == [("created", "a"), ("created", "b")])
    finally:
        other.close()


def test_a_session_frozen_inside_a_transaction_is_ended_by_the_server(
    postgres_url: str,
) -> None:
    default = PostgresStore(postgres_url)
    with default._db.connection() as conn:
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("10s",)
    default.create_workflows([new_workflow("a", owner="w1")])
    default.close()
    # A URL that sets the timeout wins (here short, to see it act).
    options = "options=-c%20idle_in_transaction_session_timeout%3D300"
    url = f"{postgres_url}&{options}"
    frozen, other = PostgresStore(url), PostgresStore(url)
    try:
        with frozen._db.connection() as conn:  # held, as by a process frozen mid-transaction
            conn.execute("BEGIN")
            conn.execute("SELECT * FROM workflows WHERE id = 'a' FOR UPDATE")
            # Its owner is dead, but the row is locked: claims skip it...
            running, dead = [WorkflowStatus.RUNNING], ["w1"]
            assert other.claim("w2", T0, 30, running, dead_owners=dead) == []
            # ...until the server ends the stalled session.
            wait_for(lambda: other.claim("w2", T0, 30, running, dead_owners=dead) != [])
            with pytest.raises(StoreError):  # thawed: its next call (on that connection) fails
                frozen.get_workflow("a")
        assert frozen.get_workflow("a") is not None  # reconnected
    finally:
        frozen.close()
        other.close()


def test_a_connection_dropped_while_idle_is_replaced_before_use(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from duralog.store import postgres_connection

    store.create_workflows([new_workflow("w-idle")])
    pids = set(store._db.backend_pids)
    with admin(store) as conn:  # a server restart, a proxy's idle timeout...
        conn.execute("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) AS p", (list(pids),))
    monkeypatch.setattr(postgres_connection, "IDLE_CHECK_SECONDS", 0.0)
    time.sleep(0.01)  # idle for longer than the (patched) threshold
    record = store.get_workflow("w-idle")  # no StoreError: checked and reconnected
    assert record is not None and set(store._db.backend_pids).isdisjoint(pids)


def test_resuming_at_start_waits_for_another_workers_claim_instead_of_skipping(
    store: PostgresStore,
) -> None:
    # Regression: with the queue's lock held by another worker's claim, the start-up
    # resume returned nothing, and no later poll resumes a SUSPENDED workflow.
    limits = QueueLimits("q", concurrency=5)
    store.create_workflows([new_workflow("stuck", queue="q")])
    (claim,) = store.claim_queued("old", T0, 30, limits)
    suspend = Append("stuck", claim.fence, [], status=WorkflowStatus.SUSPENDED, reason="diverged")
    assert store.append([suspend]) == [True]
    holder = psycopg.connect(store.address.conninfo)
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(store.schema, "queue:q"),))
    release = threading.Timer(0.3, holder.rollback)
    release.start()
    try:
        # A poll's look skips the queue while another worker takes from it...
        assert store.claim_queued("new", T0 + 1, 30, limits, resume_suspended=False) == []
        # ...but the start-up resume waits for that worker's transaction to end.
        resumed = store.claim_queued("new", T0 + 1, 30, limits, resume_suspended=True)
    finally:
        release.join()
        holder.close()
    assert [c.workflow_id for c in resumed] == ["stuck"]
    found = store.get_workflow("stuck")
    assert found is not None and (found.status, found.owner) == (WorkflowStatus.RUNNING, "new")


def test_leases_are_granted_and_judged_by_the_servers_clock(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    year = 365 * 24 * 3600.0
    try:
        store.create_workflows([new_workflow("a", owner="w1"), new_workflow("b")])
        # A worker whose clock runs a year ahead cannot take a live lease over...
        assert store.claim("w2", time.time() + year, 30, [WorkflowStatus.RUNNING]) == []
        # ...and one whose clock is a year behind is granted a lease by the server's.
        (claim,) = store.claim("w3", time.time() - year, 30, [WorkflowStatus.PENDING])
        assert claim.workflow_id == "b"
        with store._db.connection() as conn:
            row = conn.execute("SELECT extract(epoch from clock_timestamp())").fetchone()
        assert row is not None
        server_now = float(row[0])
        for workflow_id in ("a", "b"):
            found = store.get_workflow(workflow_id)
            assert found is not None and found.lease_until is not None
            assert server_now < found.lease_until <= server_now + 30
        assert store.renew_leases("w3", 60) == ["b"]
        found = store.get_workflow("b")
        assert found is not None and found.lease_until is not None
        assert server_now + 30 < found.lease_until
    finally:
        store.close()


# -- prune beside appenders ----------------------------------------------------


def blocked_by(conn: psycopg.Connection[tuple[object, ...]], pid: int) -> list[int]:
    """Server processes waiting for a lock that process ``pid`` holds."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
    ).fetchall()
    return [int(row[0]) for row in rows]


def test_prune_and_an_append_locking_the_same_workflows_never_deadlock(
    store: PostgresStore,
) -> None:
    # An append locks its workflows' rows in id order (p-1, p-2, p-3); prune locked the
    # finished ones oldest first (p-3, then p-1). With the append holding p-1 and
    # waiting, prune took p-3 and waited for p-1, and the append then waited for p-3:
    # a deadlock, which the server broke by failing one of them.
    store.create_workflows([new_workflow(f"p-{i}", owner="w1") for i in (1, 2, 3)])
    for workflow_id, at in (("p-3", T0 + 1), ("p-1", T0 + 2)):  # p-3 finished first
        done = LogEntry(2, at, ev.WorkflowCompleted(result=codec.encode(1)))
        assert store.append([Append(workflow_id, 1, [done], status=WorkflowStatus.COMPLETED)])
    late = [  # a worker's batch: two late writes to finished workflows, one live one
        Append(wid, 1, [LogEntry(seq, T0 + 3, ev.TimerFired(timer_seq=1))])
        for wid, seq in (("p-1", 3), ("p-2", 2), ("p-3", 3))
    ]
    outcomes: dict[str, object] = {}

    def run(name: str, call: Callable[[], object]) -> threading.Thread:
        def target() -> None:
            try:
                outcomes[name] = call()
            except Exception as exc:
                outcomes[name] = exc

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    with admin(store) as other, admin(store) as watch:
        other.execute("BEGIN")
        other.execute("SELECT 1 FROM workflows WHERE id = 'p-2' FOR UPDATE")  # pauses the append
        appending = run("append", lambda: store.append(late))
        wait_for(lambda: len(blocked_by(watch, other.info.backend_pid)) == 1)
        (appender,) = blocked_by(watch, other.info.backend_pid)  # it holds p-1 now
        pruning = run("prune", lambda: store.prune(T0 + 10, dry_run=False))
        wait_for(lambda: "prune" in outcomes or blocked_by(watch, appender))
        other.execute("ROLLBACK")
        appending.join(30)
        pruning.join(30)
    pruned = outcomes["prune"]
    assert not isinstance(pruned, Exception), str(pruned)
    # Prune skipped the workflow the append held; the next prune takes it.
    assert [r.id for r in pruned] == ["p-3"]  # type: ignore[attr-defined]
    assert outcomes["append"] == [False, True, False]  # the late writes refused
    assert [r.id for r in store.prune(T0 + 10, dry_run=False)] == ["p-1"]
    assert [r.id for r in store.list_workflows()] == ["p-2"]
