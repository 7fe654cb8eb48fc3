"""What every ``duralog`` command shares: the context, clear one-line errors."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import msgspec

from duralog.errors import DuralogError, HistoryFileError, ResultTimeout, StoreDamaged
from duralog.store import envelope
from duralog.store.redaction import redact, secrets_of

# The engine, the store and the formats load when a command runs (not for ``--help``).
if TYPE_CHECKING:
    from duralog.engine.handle import WorkflowHandle
    from duralog.replay.history import History
    from duralog.store.base import EventStore, WorkflowRecord

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: What ``-o`` accepts on every command that prints: aligned columns under a header
#: row, one JSON document, or one JSON object per line.
OUTPUTS = ("table", "json", "jsonl")


class Problem(click.ClickException):
    """A clear one-line error with an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(scrub(message))
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        # Messages may quote bytes from a hostile file: keep them on one printable line.
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.format_message())
        click.echo(f"error: {message}", err=True)


def scrub(text: str) -> str:
    """``text`` without any password written in the command's arguments (``--db``,
    ``DURALOG_DB``, ``--from``/``--to``).

    Every message is meant to name a log by its redacted address already; this is
    the last line of defence for one that would not (a driver's message, say).
    Passwords shorter than 3 characters are left to the messages themselves:
    replacing every "a" would garble everything.
    """
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def _secrets() -> list[str]:
    found: set[str] = set()
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        for value in ctx.params.values():
            if isinstance(value, str) and ("://" in value or "=" in value):
                found.update(s for s in secrets_of(value) if len(s) >= 3)
        ctx = ctx.parent
    return sorted(found, key=len, reverse=True)


class ScrubbedLog(logging.Filter):
    """Applies ``scrub`` to every log record a command's handler prints (the worker)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            text = record.getMessage()
            for secret in self._secrets:
                text = text.replace(secret, "***")
            record.msg, record.args = text, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = None  # formatted below, then scrubbed
                formatted = logging.Formatter().formatException(record.exc_info)
                for secret in self._secrets:
                    formatted = formatted.replace(secret, "***")
                record.exc_info, record.exc_text = None, formatted
        return True


def log_to_stderr() -> None:
    """Print duralog's warnings and errors on stderr as Python does by default, but
    through ``ScrubbedLog`` (a long-running command: the worker)."""
    root = logging.getLogger()
    if root.handlers:  # the app configured logging: its handlers print
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.addFilter(ScrubbedLog(_secrets()))
    root.addHandler(handler)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``; a file it creates is readable by its owner only
    (0600, whatever the umask). An existing file keeps its mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def friendly(fn: F) -> F:
    """Turn duralog errors into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (HistoryFileError, StoreDamaged) as exc:  # unusable input: a file, the log
            raise Problem(str(exc), 2) from None
        except ResultTimeout as exc:  # its message advises the Python API: say the CLI's way
            raise Problem(timeout_message(exc.workflow_id, exc.timeout, exc.status), 2) from None
        except DuralogError as exc:
            raise Problem(str(exc)) from None
        except UnicodeError as exc:  # undecodable bytes on the command line
            raise Problem(f"an argument is not valid text: {exc}", 2) from None

    return wrapper  # type: ignore[return-value]


class Context:
    """What every command gets: the database path, the loaded app, and the payload codec
    (from ``DURALOG_KEYS``) that every store, engine and reader it opens uses."""

    def __init__(
        self,
        db: str,
        apps: tuple[str, ...] = (),
        payload_codec: envelope.PayloadCodec | None = None,
    ) -> None:
        self.db = db
        self.payload_codec = payload_codec
        #: The log's address as messages show it: never with a password.
        self.where = redact(db)
        #: The ``--app`` modules, imported in this order by ``load_app``.
        self.apps = apps
        self._loaded = False

    def load_app(self, required: bool = True) -> None:
        """Import every ``--app`` module, which register the workflows and queues."""
        if self._loaded:
            return
        if not self.apps:
            if required:
                raise Problem(
                    "this command runs workflow code: pass --app MODULE (the module that "
                    "defines your workflows, e.g. --app myapp.workflows) or set DURALOG_APP",
                    2,
                )
            return
        sys.path.insert(0, os.getcwd())
        for app in self.apps:
            try:
                importlib.import_module(app)
            except ImportError as exc:
                raise Problem(f"cannot import --app {app!r}: {exc}", 2) from None
            except Exception as exc:  # the user's module raised on import
                raise Problem(
                    f"importing --app {app!r} raised {type(exc).__name__}: {exc}", 2
                ) from None
        self._loaded = True

    def store(self) -> EventStore:
        """Open the log (it must exist, unless the command creates workflows)."""
        from duralog.store.open import is_postgres, open_store

        if not is_postgres(self.db) and not path_exists(self.db, "--db"):
            raise Problem(f"no duralog database at {self.where} (use --db PATH or DURALOG_DB)")
        return open_store(self.db, payload_codec=self.payload_codec, create=False)

    def refuse_clear_text(self, workflow_id: str, what: str) -> None:
        """Refuse to send ``what`` (a payload, a reason) in clear to a workflow whose log
        is encrypted, when this command has no key: it would be stored unencrypted."""
        if self.payload_codec is not None:
            return
        store = self.store()
        try:
            first = store.read_events(workflow_id, 0, 1)
        finally:
            store.close()
        started = first[0].event if first else None
        for raw in (getattr(started, "args", b""), getattr(started, "kwargs", b"")):
            if envelope.is_sealed_payload(bytes(raw)):
                found = envelope.key_id(bytes(raw))
                raise Problem(
                    f"workflow {workflow_id!r} keeps its data encrypted"
                    + (f" (key {found!r})" if found else "")
                    + f"; {what} sent without the key would be stored in clear: set "
                    "DURALOG_KEYS (id:base64key,...) to the log's keys",
                    2,
                )

    @contextlib.contextmanager
    def handle(self, workflow_id: str) -> Iterator[WorkflowHandle[Any]]:
        """The handle of an existing workflow, through an engine that runs no worker."""
        from duralog.engine.engine import Engine

        # The store first: a clear error when there is no log (the engine closes it).
        with Engine(self.store(), worker=False, payload_codec=self.payload_codec) as engine:
            yield engine.get(workflow_id)

    def record(self, store: EventStore, workflow_id: str) -> WorkflowRecord:
        """The index row of ``workflow_id`` in ``store``; a ``Problem`` naming the log
        when it holds no such workflow."""
        record = store.get_workflow(workflow_id)
        if record is None:
            raise Problem(f"no workflow with id {workflow_id!r} in {self.where}")
        return record

    def history(self, workflow_id: str) -> History:
        """One workflow's history from the log, as the log holds it (encrypted values
        stay encrypted: what ``export`` writes and ``replay`` reads)."""
        from duralog.replay.history import History

        store = self.store()
        try:
            record = self.record(store, workflow_id)
            return History(workflow_id, record.name, store.read_events(workflow_id))
        finally:
            store.close()

    def readable_history(self, workflow_id: str) -> History:
        """One workflow's history as read commands print it: decrypted with the keys in
        ``DURALOG_KEYS``, and ``<encrypted: key ID>`` where no key is configured."""
        from duralog.store.codec import reveal_entries

        history = self.history(workflow_id)
        events = reveal_entries(history.events, self.payload_codec)
        return msgspec.structs.replace(history, events=events)


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


def timeout_message(workflow_id: str, timeout: float, status: str) -> str:
    """What a command that waited in vain says (it exits 2: it cannot tell yet)."""
    return (
        f"workflow {workflow_id!r} did not finish within {timeout:g}s (status {status}); "
        f"it goes on: wait again with `duralog result {shlex.quote(workflow_id)}`, and "
        "check that a worker serves it"
    )


def output_option(fn: F) -> F:
    """``-o table|json|jsonl`` and ``--json`` (the same as ``-o json``): the command gets
    ``output``, one of ``OUTPUTS``; ``--json`` with another ``-o`` is refused."""
    return _with_output(fn, "json")


def lines_output_option(fn: F) -> F:
    """``output_option`` for a command that prints one JSON object per item as it goes
    (``replay``, ``verify``, ``tail``): its ``--json`` stays what it always was, the
    same as ``-o jsonl``."""
    return _with_output(fn, "jsonl")


def _with_output(fn: F, alias: str) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, output: str | None, as_json: bool, **kwargs: Any) -> Any:
        if as_json and output not in (None, alias):
            raise Problem(f"--json is -o {alias}: it cannot go with -o {output}", 2)
        return fn(*args, output=output or (alias if as_json else "table"), **kwargs)

    decorated: Any = click.option(
        "--json", "as_json", is_flag=True, help=f"The same as -o {alias}."
    )(wrapper)
    decorated = click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUTS, case_sensitive=False),
        metavar="FORMAT",
        help="table (default), json (one document) or jsonl (one JSON object a line).",
    )(decorated)
    return decorated  # type: ignore[no-any-return]


def _one_line(exc: click.UsageError) -> Problem:
    """A click usage error as one ``error:`` line (exit 2) pointing at the help."""
    where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
    return Problem(exc.format_message().rstrip(".") + where, 2)


_KEEPS_USAGE: tuple[type[Exception], ...] = tuple(
    e for e in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if e is not None
)


def _refuse_repeats(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    """Refuse an option given twice that keeps one value: click would keep the last
    one and drop the others without a word."""
    try:
        _, _, order = command.make_parser(ctx).parse_args(args=list(args))
    except click.UsageError:
        return  # the real parse reports it
    counts = Counter(
        param
        for param in order
        if isinstance(param, click.Option) and not (param.multiple or param.count or param.is_flag)
    )
    for param, times in counts.items():
        if times > 1:
            raise Problem(
                f"{'/'.join(param.opts)} is given {times} times; it takes one value: give it once",
                2,
            )


class Command(click.Command):
    """A duralog command: a repeated single-value option is refused, and a usage error
    is one ``error:`` line (exit 2), as every other error is."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _refuse_repeats(self, ctx, args)
        return super().parse_args(ctx, args)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except _KEEPS_USAGE:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None


class Group(Command, click.Group):
    """A duralog command group: ``Command``'s rules for itself and an unknown command."""

    command_class = Command
    group_class = type

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise _one_line(exc) from None


def echo_items(
    output: str,
    items: Sequence[T],
    headers: Sequence[str],
    cells: Callable[[T], Sequence[object]],
    data: Callable[[T], Any] = lambda item: item,
) -> None:
    """Print ``items`` as ``output`` asks: a table of ``cells`` under ``headers``, a JSON
    array or JSON lines of ``data`` (the item itself by default)."""
    from duralog import _format

    if output == "json":
        click.echo(_format.json_text([data(item) for item in items]))
    elif output == "jsonl":
        for item in items:
            click.echo(_format.json_text(data(item)))
    else:
        click.echo(_format.table(headers, [cells(item) for item in items]))


class JsonOut:
    """JSON texts printed as ``output`` asks: each on a line of its own as it comes
    (``jsonl``), or all in one array when the command ends (``json``, ``close``)."""

    def __init__(self, output: str) -> None:
        self.output = output
        self._held: list[str] = []

    def add(self, text: str) -> None:
        """Print ``text`` (one JSON value) now, or hold it for the array."""
        if self.output == "json":
            self._held.append(text)
        else:
            click.echo(text)

    def close(self) -> None:
        """Print the array (``json``)."""
        if self.output == "json":
            click.echo("[" + ",".join(self._held) + "]")


def echo_one(output: str, data: Any, lines: Callable[[], Iterable[str]]) -> None:
    """Print one object: ``lines`` for people, or ``data`` as one line of JSON (``json``
    and ``jsonl`` alike)."""
    from duralog import _format

    if output == "table":
        for line in lines():
            click.echo(line)
    else:
        click.echo(_format.json_text(data))
