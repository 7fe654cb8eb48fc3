"""Fixtures for the console tests: a populated log, a console over it, a client."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import load_app, wait_for

import duralog
from duralog._cli_common import Context
from duralog.console.app import create_app
from duralog.console.service import Console

HERE = Path(__file__).parent
#: An id and a payload that would run as a script if a page did not escape them.
HOSTILE = "<script>alert('x')</script>"


@pytest.fixture(scope="session")
def app() -> ModuleType:
    """``app_console``, imported under the name ``--app app_console`` finds it by."""
    return load_app(HERE / "app_console.py")


@pytest.fixture(autouse=True)
def in_console_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--app`` imports from the working directory, as a user's shell would."""
    monkeypatch.chdir(HERE)


def populate_log(db: str, app: ModuleType) -> None:
    """``retry-1`` (COMPLETED after two retries), ``echo-1`` .. ``echo-3``
    (COMPLETED), ``parent-1`` (COMPLETED, with a child and a timer), ``wait-1``
    (RUNNING, waiting for signal ``go``) and a workflow whose id and input are
    hostile HTML (COMPLETED)."""
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.run(app.retrying, "r", id="retry-1") == "done r"
        for i in range(1, 4):
            assert engine.run(app.echo, f"e{i}", id=f"echo-{i}") == f"e{i}"
        assert engine.run(app.parent, 7, id="parent-1") == 7
        assert engine.run(app.echo, HOSTILE, id=HOSTILE) == HOSTILE
        waiting = engine.start(app.waiter, "w", id="wait-1")
        wait_for(lambda: len(waiting.history()) >= 4)


@pytest.fixture(scope="session")
def populate() -> Callable[[str, ModuleType], None]:
    """``populate_log``, for a test that serves a log of its own."""
    return populate_log


@pytest.fixture(scope="session")
def shop_db(tmp_path_factory: pytest.TempPathFactory, app: ModuleType) -> str:
    """The log of ``populate``. Read-only for the tests."""
    db = str(tmp_path_factory.mktemp("console") / "console.db")
    populate_log(db, app)
    return db


@contextlib.contextmanager
def client_for(
    db: str, apps: tuple[str, ...] = ("app_console",), **options: Any
) -> Iterator[TestClient]:
    """A client of a console over ``db`` (as ``duralog --db DB --app ... ui``)."""
    console = Console(Context(db, apps), **options)
    try:
        with TestClient(create_app(console), base_url="http://127.0.0.1:8265") as client:
            yield client
    finally:
        console.close()


@pytest.fixture
def make_client() -> Callable[..., contextlib.AbstractContextManager[TestClient]]:
    """``client_for``: ``with make_client(db, read_only=True) as client: ...``."""
    return client_for


@pytest.fixture
def client(shop_db: str) -> Iterator[TestClient]:
    """A console over ``shop_db``, with ``--app app_console``."""
    with client_for(shop_db) as client:
        yield client


@pytest.fixture
def fresh(tmp_path: Path, app: ModuleType) -> Iterator[tuple[str, TestClient]]:
    """A console over a log of its own, which the test may change."""
    db = str(tmp_path / "fresh.db")
    populate_log(db, app)
    with client_for(db) as client:
        yield db, client
