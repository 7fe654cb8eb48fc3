"""What every ``duralog`` command shares: the context, clear one-line errors."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from duralog.engine.engine import Engine
from duralog.engine.handle import WorkflowHandle
from duralog.errors import DuralogError, HistoryFileError, StoreDamaged
from duralog.replay.history import History
from duralog.store.base import EventStore
from duralog.store.open import is_postgres, open_store

F = TypeVar("F", bound=Callable[..., Any])


class Problem(click.ClickException):
    """A clear one-line error with an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        # Messages may quote bytes from a hostile file: keep them on one printable line.
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.format_message())
        click.echo(f"error: {message}", err=True)


def friendly(fn: F) -> F:
    """Turn duralog errors into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (HistoryFileError, StoreDamaged) as exc:  # unusable input: a file, the log
            raise Problem(str(exc), 2) from None
        except DuralogError as exc:
            raise Problem(str(exc)) from None
        except UnicodeError as exc:  # undecodable bytes on the command line
            raise Problem(f"an argument is not valid text: {exc}", 2) from None

    return wrapper  # type: ignore[return-value]


class Context:
    """What every command gets: the database path and the loaded app."""

    def __init__(self, db: str, app: str | None) -> None:
        self.db = db
        self.app = app
        self._loaded = False

    def load_app(self, required: bool = True) -> None:
        """Import the ``--app`` module, which registers the workflows."""
        if self._loaded:
            return
        if self.app is None:
            if required:
                raise Problem(
                    "this command runs workflow code: pass --app MODULE (the module that "
                    "defines your workflows, e.g. --app myapp.workflows) or set DURALOG_APP"
                )
            return
        sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(self.app)
        except ImportError as exc:
            raise Problem(f"cannot import --app {self.app!r}: {exc}") from None
        except Exception as exc:  # the user's module raised on import
            raise Problem(
                f"importing --app {self.app!r} raised {type(exc).__name__}: {exc}"
            ) from None
        self._loaded = True

    def store(self) -> EventStore:
        """Open the log (it must exist, unless the command creates workflows)."""
        if not is_postgres(self.db) and not path_exists(self.db, "--db"):
            raise Problem(f"no duralog database at {self.db} (use --db PATH or DURALOG_DB)")
        return open_store(self.db)

    @contextlib.contextmanager
    def handle(self, workflow_id: str) -> Iterator[WorkflowHandle[Any]]:
        """The handle of an existing workflow, through an engine that runs no worker."""
        self.store().close()  # a clear error when the database does not exist
        with Engine(self.db, worker=False) as engine:
            yield engine.get(workflow_id)

    def history(self, workflow_id: str) -> History:
        """One workflow's history from the log."""
        store = self.store()
        try:
            record = store.get_workflow(workflow_id)
            if record is None:
                raise Problem(f"no workflow with id {workflow_id!r} in {self.db}")
            return History(workflow_id, record.name, store.read_events(workflow_id))
        finally:
            store.close()


pass_context = click.make_pass_decorator(Context)


def path_exists(path: str, option: str) -> bool:
    """Whether a file is at ``path``; a path the system refuses (too long, say) is a
    ``Problem`` naming ``option``."""
    try:
        return Path(path).exists()
    except OSError as exc:
        shown = path if len(path) <= 120 else f"{path[:60]}…{path[-60:]}"
        raise Problem(f"{option} {shown}: {exc.strerror}", 2) from None


def parse_json(text: str, option: str) -> Any:
    """A JSON value given on the command line; a ``Problem`` (exit 2) saying what is wrong."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Problem(f"{option} is not valid JSON: {exc}", 2) from None
    except RecursionError:
        raise Problem(f"{option} is nested too deeply to be recorded", 2) from None
