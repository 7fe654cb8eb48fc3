"""Shared fixtures and the hypothesis profiles (``HYPOTHESIS_PROFILE=dev`` runs longer).

PostgreSQL tests use ``postgres_url``: a fresh schema on the server named by
``DURALOG_TEST_POSTGRES`` (default the local one, trust auth), dropped after the
test. Without a reachable server (or with ``DURALOG_TEST_POSTGRES=""``) they are
skipped, and pytest's summary says why.

Every test is bounded: pytest-timeout fails it after ``timeout`` seconds (pyproject)
with the stacks of its threads, and the helper processes it started are killed when
it ends. Should its teardown hang too, the watchdog below ends the run.
"""

from __future__ import annotations

import atexit
import faulthandler
import functools
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import support
from hypothesis import HealthCheck, settings

import duralog
from duralog.replay.definitions import Registry

settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A path for a fresh SQLite log."""
    return str(tmp_path / "test.db")


@pytest.fixture
def engine(db: str) -> Iterator[duralog.Engine]:
    """An open engine with a running worker on a fresh file (durability=normal for speed)."""
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as e:
        yield e


@pytest.fixture
def registry() -> Registry:
    """A private registry, for tests that register two versions of one workflow."""
    return Registry()


POSTGRES_URL = os.environ.get("DURALOG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can (asked once)."""
    if not POSTGRES_URL:
        return "PostgreSQL tests are off: DURALOG_TEST_POSTGRES is empty"
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc}); pip install 'duralog[postgres]'"
    from duralog.store.postgres_schema import parse_address

    where = parse_address(POSTGRES_URL).display  # without a password
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        return f"no PostgreSQL server reachable at {where} (DURALOG_TEST_POSTGRES): {reason}"
    return None


def drop_postgres_schema(schema: str) -> None:
    """Drop a test's schema and everything in it (never waiting long for its locks)."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL log (its own schema) for one test; skipped, with
    the reason, when no server is reachable."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"dltest_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    drop_postgres_schema(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def address(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A log's address, once a SQLite file and once a PostgreSQL schema (skipped, with
    the reason, without a server): for the tests that hold on both stores."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "log.db")


# -- every test bounded, no helper process left behind ---------------------------


@pytest.fixture(autouse=True)
def no_helper_process_outlives_its_test() -> Iterator[None]:
    """Kill what the test started with ``support.popen`` once it ends (passed, failed
    or timed out); fail a test that left a child process of another kind running."""
    yield
    support.kill_spawned()
    strays = _running_children()
    for pid in strays:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert not strays, (
        f"the test left child processes running ({', '.join(strays.values())}); "
        "start helper processes with support.popen, which kills them at the end"
    )


def _running_children() -> dict[int, str]:
    """This process's child processes that still run (Linux; elsewhere none)."""
    found: dict[int, str] = {}
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            pids = [int(pid) for pid in children.read_text().split()]
        except OSError:
            continue  # a thread that ended meanwhile
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] != "Z":  # an exited one waits to be reaped
                found[pid] = command.decode(errors="replace").strip()
    return found


atexit.register(support.kill_spawned)
# SIGTERM (a CI job's timeout, dev.py stopped) ends the run like Ctrl-C: the current
# test's teardown and the atexit hook above still kill the helper processes.
signal.signal(signal.SIGTERM, signal.default_int_handler)


class _Watchdog:
    """Ends the run if a test outlives its timeout by ``GRACE`` seconds (its teardown
    hung after pytest-timeout failed it): prints every thread's stack, kills the
    helper processes, exits with status 1."""

    GRACE = 60.0

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._lock = threading.Condition()
        self._deadline: float | None = None
        self._test = ""
        threading.Thread(target=self._watch, name="test-watchdog", daemon=True).start()

    def arm(self, test: str, seconds: float) -> None:
        with self._lock:
            self._test, self._deadline = test, time.monotonic() + seconds + self.GRACE
            self._lock.notify()

    def disarm(self) -> None:
        with self._lock:
            self._deadline = None

    def _watch(self) -> None:
        with self._lock:
            while self._deadline is None or time.monotonic() < self._deadline:
                wait = None if self._deadline is None else self._deadline - time.monotonic()
                self._lock.wait(wait)
            test = self._test
        capture = self._config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)  # write to the real stderr
        sys.stderr.write(f"\n{test} is still running {self.GRACE:g} s past its timeout\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        support.kill_spawned()
        os._exit(1)


_watchdog: _Watchdog | None = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    global _watchdog
    marker = item.get_closest_marker("timeout")
    config = item.config
    seconds = float(
        (marker.args[0] if marker else None)
        or config.getoption("timeout", None)
        or config.getini("timeout")
        or 0
    )
    if seconds > 0:
        _watchdog = _watchdog or _Watchdog(item.config)
        _watchdog.arm(item.nodeid, seconds)
    yield
    if _watchdog is not None:
        _watchdog.disarm()
