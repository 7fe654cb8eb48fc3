"""The PostgreSQL store's connection pool: bounded, waited for when full, never a
deadlock, and a clear error when no connection comes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import wait_for

from duralog.errors import ConfigurationError, StoreError
from duralog.store import codec
from duralog.store import events as ev
from duralog.store.base import NewWorkflow
from duralog.store.events import LogEntry

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")

from duralog.store.postgres import PostgresStore  # noqa: E402
from duralog.store.postgres_schema import parse_address  # noqa: E402

T0 = 1_700_000_000.0


def new_workflow(workflow_id: str) -> NewWorkflow:
    started = LogEntry(1, T0, ev.WorkflowStarted(name="flow", args=codec.encode([])))
    return NewWorkflow(workflow_id, "flow", started)


def waiting(store: PostgresStore) -> int:
    """How many calls wait for a connection of the store's pool right now."""
    pool = store._db._pool
    assert pool is not None
    return pool.get_stats().get("requests_waiting", 0)


class Holder:
    """Holds one connection of a store's pool on a thread of its own until released."""

    def __init__(self, store: PostgresStore) -> None:
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(store,))
        self._thread.start()
        assert self._held.wait(10)

    def _hold(self, store: PostgresStore) -> None:
        with store._db.connection():
            self._held.set()
            self._release.wait(60)

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


@pytest.fixture
def hold() -> Iterator[Callable[[PostgresStore], Holder]]:
    holders: list[Holder] = []

    def take(store: PostgresStore) -> Holder:
        holders.append(Holder(store))
        return holders[-1]

    yield take
    for holder in holders:
        holder.release()


def test_pool_size_and_timeout_come_from_the_url_or_the_arguments(postgres_url: str) -> None:
    address = parse_address(f"{postgres_url}&pool_size=3&pool_timeout=2.5")
    assert (address.pool_size, address.pool_timeout) == (3, 2.5)
    assert "pool_" not in address.conninfo  # libpq would refuse them
    store = PostgresStore(f"{postgres_url}&pool_size=3", pool_size=2, pool_timeout=4)
    try:
        assert (store._db.pool_size, store._db.pool_timeout) == (2, 4)  # arguments win
    finally:
        store.close()
    default = PostgresStore(postgres_url)
    try:
        assert (default._db.pool_size, default._db.pool_timeout) == (10, 30.0)
    finally:
        default.close()


@pytest.mark.parametrize(
    "query",
    ["pool_size=0", "pool_size=two", "pool_size=1.5", "pool_timeout=-1", "pool_timeout=nan"],
)
def test_a_bad_pool_parameter_is_a_configuration_error(query: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_address(f"postgresql://app:s3cret@db/prod?schema=x&{query}")
    message = str(info.value)
    assert query.split("=")[0] in message and "s3cret" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("argument", "bad"),
    [
        ("pool_size", 0),
        ("pool_size", True),
        ("pool_size", 1.5),
        ("pool_timeout", 0),
        ("pool_timeout", True),
        ("pool_timeout", float("nan")),
    ],
)
def test_bad_pool_arguments_are_a_configuration_error(argument: str, bad: object) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{argument} \(.*\) must be .*, got {bad!r}$"):
        PostgresStore("postgresql://app@db/prod", **{argument: bad})  # type: ignore[arg-type]


def test_eight_threads_share_two_connections_and_all_complete(
    postgres_url: str, hold: Callable[[PostgresStore], Holder]
) -> None:
    store = PostgresStore(f"{postgres_url}&pool_size=2", durability="normal")
    try:
        store.create_workflows([new_workflow("seed")])
        holders = [hold(store), hold(store)]  # the pool is full...

        def call(i: int) -> tuple[int, int]:
            (fence,) = store.create_workflows([new_workflow(f"w-{i}")])
            with store._db.connection() as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
            record = store.get_workflow(f"w-{i}")
            assert record is not None and fence == 0
            return i, int(row[0]) if row else 0

        with ThreadPoolExecutor(8) as threads:
            calls = [threads.submit(call, i) for i in range(8)]
            wait_for(lambda: waiting(store) == 8)  # ...so every call waits, none fails
            for holder in holders:
                holder.release()
            results = [c.result(timeout=60) for c in calls]
        assert [i for i, _ in results] == list(range(8))
        assert len({pid for _, pid in results}) <= 2  # never more than pool_size
        assert len(store.list_workflows()) == 9
    finally:
        store.close()


def test_no_connection_within_the_pool_timeout_is_a_store_error_saying_what_to_do(
    postgres_url: str, hold: Callable[[PostgresStore], Holder]
) -> None:
    store = PostgresStore(f"{postgres_url}&pool_size=1&pool_timeout=0.2")
    try:
        store.create_workflows([new_workflow("a")])
        holder = hold(store)
        with pytest.raises(StoreError) as info:
            store.get_workflow("a")
        message = str(info.value)
        assert "pool_size=1" in message and "0.2 s" in message and store.path in message
        holder.release()
        assert store.get_workflow("a") is not None
    finally:
        store.close()


def test_a_nested_call_uses_the_connection_its_thread_holds(postgres_url: str) -> None:
    # A thread holding the pool's only connection and asking for another would wait
    # for itself: it gets the one it holds.
    store = PostgresStore(f"{postgres_url}&pool_size=1&pool_timeout=5")
    try:
        store.create_workflows([new_workflow("a")])
        with store._db.connection() as conn:
            assert store.get_workflow("a") is not None
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        store.close()


def test_closing_fails_the_calls_waiting_for_a_connection(
    postgres_url: str, hold: Callable[[PostgresStore], Holder]
) -> None:
    store = PostgresStore(f"{postgres_url}&pool_size=1")
    store.create_workflows([new_workflow("a")])
    holder = hold(store)
    with ThreadPoolExecutor(1) as threads:
        call = threads.submit(store.get_workflow, "a")
        wait_for(lambda: waiting(store) == 1)
        store.close()
        with pytest.raises(StoreError, match="closed"):
            call.result(timeout=10)
    holder.release()


def test_a_server_that_refuses_new_connections_is_named_after_the_wait(postgres_url: str) -> None:
    schema = parse_address(postgres_url).schema
    role = f"{schema}_app"
    admin_info = parse_address(postgres_url).conninfo
    with psycopg.connect(admin_info, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
    url = postgres_url.replace("postgres@", f"{role}@", 1) + "&pool_timeout=0.5"
    store = None
    try:
        store = PostgresStore(url, durability="normal")
        store.create_workflows([new_workflow("a")])
        with psycopg.connect(admin_info, autocommit=True) as conn:
            conn.execute(f'ALTER ROLE "{role}" NOLOGIN')
            # Every session of the role, not only the store's known ones: under load the
            # pool may be opening another connection right now, not yet listed by the
            # store, which would then serve the call below.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
        with pytest.raises(StoreError, match="failed while reading"):  # the lost connection
            store.get_workflow("a")
        with pytest.raises(StoreError) as info:  # no new one: the server's reason
            store.get_workflow("a")
        message = str(info.value)
        assert "failed while connecting" in message and "not permitted to log in" in message
    finally:
        if store is not None:
            store.close()
        with psycopg.connect(admin_info, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            conn.execute(f'DROP ROLE "{role}"')
