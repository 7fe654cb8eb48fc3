"""The ``duralog`` command line (also ``python -m duralog``).

Commands stay thin: parse, call the library, print. Errors are one line on
stderr and a non-zero exit code (2 for unusable input such as a malformed
history file), never a traceback.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

import click

from duralog._cli_common import Context, Group, Problem
from duralog.errors import DuralogError

#: Each command: the module and name it is defined under, and the first paragraph of
#: its help (what ``duralog --help`` lists). A command's module, and with it the
#: engine and the store, is imported when the command runs or shows its own help:
#: ``duralog --help`` loads none of them (``tests/cli/test_help.py`` checks that the
#: summaries here are the commands' own).
_COMMANDS = {
    "cancel": (
        "cli_control",
        "cancel",
        "Ask a workflow to cancel (CancelledError at its current await).",
    ),
    "count": (
        "cli_query",
        "count",
        "Count the workflows that match the filters of `duralog list`.",
    ),
    "delete": (
        "cli_control",
        "delete",
        "Delete one finished workflow: its events, snapshots and inbox, at once.",
    ),
    "export": ("cli_run", "export", "Write a workflow's history as a self-describing JSON file."),
    "fork": (
        "cli_fork",
        "fork",
        "Copy a workflow's events before --from-seq into a new workflow run by the current code.",
    ),
    "get-event": (
        "cli_results",
        "get_event",
        "Print what a workflow last published under KEY (duralog.publish), as JSON.",
    ),
    "history": (
        "cli_run",
        "history",
        "Print a workflow's events: a timeline, or JSON (-o json: one array; -o jsonl: "
        "one event per line), each event an object with seq, at, kind and its fields.",
    ),
    "inspect": ("cli_run", "inspect", "The state derived from the log at any event: time travel."),
    "list": ("cli_query", "list_", "List workflows, newest first (then by id)."),
    "migrate-store": (
        "cli_store",
        "migrate_store",
        "Copy a whole log into another store (e.g. SQLite into PostgreSQL).",
    ),
    "pause": (
        "cli_control",
        "pause",
        "Pause a workflow: no new step starts and no timer fires until `resume`.",
    ),
    "prune": (
        "cli_store",
        "prune",
        "Remove finished workflows (and their events) that ended before a date.",
    ),
    "queues": (
        "cli_queues",
        "queues",
        "Each queue with its limits and how many of its workflows are in each status "
        "(or set its limits at runtime).",
    ),
    "query": (
        "cli_talk",
        "query",
        "Ask query NAME of a workflow (duralog.on_query) and print its answer as JSON.",
    ),
    "read-stream": (
        "cli_results",
        "read_stream",
        "Print the values a workflow wrote to stream KEY (duralog.write_stream), in order.",
    ),
    "replay": (
        "cli_replay",
        "replay",
        "Replay histories against the current code; exit 1 if any diverges.",
    ),
    "result": (
        "cli_results",
        "result",
        "Wait for a workflow to end and print its result (as JSON).",
    ),
    "restart": (
        "cli_fork",
        "restart",
        "Run a workflow again from the start, with the same input, as a new workflow.",
    ),
    "resume": ("cli_control", "resume", "Resume a paused workflow."),
    "schedules": (
        "cli_schedules",
        "schedules",
        "List cron schedules (or pause, resume, delete one).",
    ),
    "show": (
        "cli_run",
        "show",
        "Status, input, result or error, and a readable timeline of one workflow.",
    ),
    "signal": (
        "cli_control",
        "signal",
        "Send signal NAME to a workflow; its owner delivers it, whichever process that is.",
    ),
    "start": (
        "cli_run",
        "start",
        "Start workflow NAME; without --wait a running worker picks it up.",
    ),
    "stats": (
        "cli_observe",
        "stats",
        "Counts, durations, retries and failures per workflow and per step, from the log.",
    ),
    "tail": (
        "cli_observe",
        "tail",
        "Follow the log live: every event any process appends, as it is committed.",
    ),
    "terminate": (
        "cli_control",
        "terminate",
        "End a workflow at once, without running any more of its code (no cleanup).",
    ),
    "ui": (
        "cli_ui",
        "ui",
        "Serve the web console and the JSON API (/api/) over the log.",
    ),
    "update": (
        "cli_talk",
        "update",
        "Send update NAME to a workflow (duralog.on_update) and print its answer as JSON.",
    ),
    "verify": (
        "cli_verify",
        "verify",
        "Check that the log is intact: exit 0 intact, 1 damaged, 2 cannot read it.",
    ),
    "worker": (
        "cli_run",
        "worker",
        "Run a worker until interrupted: recover, then advance workflows.",
    ),
}


class LazyGroup(Group):
    """A group whose commands are imported when one runs or shows its own help (click's
    documented ``LazyGroup``); its ``--help`` lists them from ``lazy``'s summaries."""

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str, str]] = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, name, _ = self.lazy[cmd_name]
            self.add_command(getattr(importlib.import_module(f"duralog.{module}"), name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows: list[tuple[str, str]] = []
        for name in names:
            # A command not loaded yet is listed as click would list one with its summary.
            command = self.commands.get(name) or click.Command(name, help=self.lazy[name][2])
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup, lazy=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--db",
    envvar="DURALOG_DB",
    default="duralog.db",
    show_default=True,
    help="The log: a SQLite path or a postgresql:// URL (env DURALOG_DB).",
)
@click.option(
    "--app",
    "apps",
    envvar="DURALOG_APP",
    multiple=True,
    metavar="MODULE",
    help="Module that registers your workflows (repeatable: each is imported; env "
    "DURALOG_APP, several separated by spaces).",
)
@click.version_option(package_name="duralog")
@click.pass_context
def main(ctx: click.Context, db: str, apps: tuple[str, ...]) -> None:
    """duralog: durable workflows on an embedded log.

    A log written with a payload codec (Engine(payload_codec=AesGcmCodec...)) keeps
    payloads, errors and reasons encrypted: commands decrypt them with the keys in
    DURALOG_KEYS ("k2:<base64>,k1:<base64>") and show <encrypted: key ID> where
    no key is given. Passwords in --db never show in any output.

    Every command that prints takes -o table|json|jsonl; --json is -o json (-o
    jsonl for replay, verify and tail, which print as they go). Exit codes: 0
    done; 1 the thing checked is bad (a divergence, a damaged log, a failed
    workflow, an unknown id); 2 the command cannot do it (bad input, an
    unreadable log, a wait that timed out). Errors are one line on stderr.

    \b
    Shell completion (bash; zsh and fish alike, with zsh_source or fish_source):
      eval "$(_DURALOG_COMPLETE=bash_source duralog)"

    \b
    Example:
      duralog --db shop.db list
      duralog --db shop.db --app shop.workflows replay --all
      DURALOG_KEYS="k1:$KEY" duralog --db shop.db show order-o-1
    """
    payload_codec = None
    if os.environ.get("DURALOG_KEYS"):  # encrypted payloads: read them with these keys
        from duralog.store.crypto import AesGcmCodec

        try:
            payload_codec = AesGcmCodec.from_env()
        except DuralogError as exc:
            raise Problem(str(exc), 2) from None
    ctx.obj = Context(db, apps, payload_codec)
