"""No password of a PostgreSQL URL ever shows: not in any command's output or error,
not in the worker's banner or log lines, not in an exception message or a repr.

The test server trusts every connection, so a URL may carry any password; each
test puts one in (in the user part, as a parameter, percent-encoded) and runs
every command with it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import load_app

import duralog
from duralog._cli_common import ScrubbedLog
from duralog.cli import main
from duralog.store.open import open_store, redact

CLI_FOLDER = Path(__file__).parents[1] / "cli"
PASSWORD = "Pw-s3cr3t-9"
ENCODED = "Pw%40s3cr3t%2F9"  # "Pw@s3cr3t/9": an @ and a / in it
LEAKS = (PASSWORD, ENCODED, "Pw@s3cr3t/9", "s3cr3t")


def with_password(url: str, form: str) -> str:
    """``url`` with a password: in the user part, as a parameter, or percent-encoded."""
    scheme, _, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0] if at else "postgres"
    if form == "parameter":
        return f"{scheme}://{user}@{hostpart}&password={PASSWORD}"
    secret = ENCODED if form == "encoded" else PASSWORD
    return f"{scheme}://{user}:{secret}@{hostpart}"


def assert_clean(text: str, what: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{what} shows the password: {text}"


@pytest.fixture(params=["userinfo", "parameter", "encoded"])
def secret_url(request: pytest.FixtureRequest, postgres_url: str) -> str:
    return with_password(postgres_url, request.param)


@pytest.fixture
def filled(secret_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The log at ``secret_url`` with one completed ``cli_order`` and one schedule."""
    monkeypatch.chdir(CLI_FOLDER)
    app_workflows = load_app(CLI_FOLDER / "app_workflows.py")

    with duralog.Engine(secret_url, durability="normal", poll_interval=0.05) as engine:
        assert repr(engine) and PASSWORD not in repr(engine)
        assert_clean(repr(engine) + repr(engine.store), "a repr")
        assert_clean(repr(getattr(engine.store, "address", "")), "the address's repr")
        engine.start(app_workflows.order, "o-1", 5, id="order-1").result(timeout=20)
        engine.schedule("nightly", "0 3 29 2 *", app_workflows.sleeper, "o-9")
    return secret_url


COMMANDS: list[list[str]] = [
    ["list"],
    ["list", "--json"],
    ["list", "--queue", "q", "--since", "1d", "--limit", "1", "-o", "jsonl"],
    ["list", "--limit", "-1"],
    ["--db", "sqlite-other.db", "list"],
    ["count", "--status", "completed"],
    ["queues"],
    ["result", "order-1"],
    ["result", "missing", "--timeout", "0"],
    ["get-event", "order-1", "missing"],
    ["delete", "missing"],
    ["show", "order-1", "-o", "json"],
    ["nope"],
    ["show", "order-1"],
    ["show", "missing"],
    ["history", "order-1", "--json"],
    ["history", "missing"],
    ["inspect", "order-1"],
    ["inspect", "missing"],
    ["export", "missing", "-o", "-"],
    ["export", "order-1", "-o", "-"],
    ["replay", "order-1"],
    ["replay", "missing"],
    ["replay", "--all"],
    ["start", "cli_order", "--input", '["o-2", 7]', "--id", "order-2"],
    ["signal", "missing", "note"],
    ["cancel", "missing", "--reason", "why"],
    ["pause", "missing"],
    ["resume", "missing"],
    ["schedules"],
    ["schedules", "--json"],
    ["schedules", "pause", "missing"],
    ["schedules", "resume", "missing"],
    ["schedules", "delete", "missing"],
    ["schedules", "pause", "nightly"],
    ["prune", "--completed-before", "2000-01-01"],
    ["tail", "--no-follow", "--since", "1d"],
    ["stats"],
    ["stats", "--prometheus"],
    ["stats", "--json"],
    ["result", "order-2", "--timeout", "0.1"],
    ["delete", "order-2"],
]


def test_every_command_keeps_the_password_out(filled: str) -> None:
    runner = CliRunner()
    env: dict[str, str | None] = {"DURALOG_DB": None, "DURALOG_APP": None, "DURALOG_KEYS": None}
    failures = 0
    for command in COMMANDS:
        args = ["--db", filled, "--app", "app_workflows", *command]
        result = runner.invoke(main, args, env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            command,
            result.exception,
        )
        assert_clean(result.output, " ".join(command))
        failures += result.exit_code != 0
    assert failures >= 10  # the "missing" ones failed, and said so without the password
    via_env = runner.invoke(main, ["show", "missing"], env={**env, "DURALOG_DB": filled})
    assert via_env.exit_code == 1 and "no workflow with id 'missing'" in via_env.output
    assert_clean(via_env.output, "DURALOG_DB")


def test_migrate_store_keeps_the_password_out(filled: str, tmp_path: Path) -> None:
    runner = CliRunner()
    copy = str(tmp_path / "copy.db")
    for args in (
        ["--from", filled, "--to", copy],  # copies
        ["--from", filled, "--to", copy],  # refused: the ids are there already
        ["--from", filled, "--to", filled],  # the same log
        ["--from", copy, "--to", filled],  # refused: the ids are there already
    ):
        result = runner.invoke(main, ["migrate-store", *args], env={"DURALOG_DB": None})
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert_clean(result.output, f"migrate-store {args}")


def test_the_worker_banner_and_log_lines(filled: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURALOG_")}
    worker = subprocess.Popen(
        [sys.executable, "-m", "duralog", "--db", filled, "--app", "app_workflows", "worker"],
        cwd=CLI_FOLDER,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert worker.stderr is not None
        banner = worker.stderr.readline()  # blocks until the worker is serving
        assert "serving postgresql://" in banner, banner
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert_clean(banner + out + err, "the worker")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",  # nothing listens there
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:notaport/test",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1/test?sslmode=bogus",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1/test?schema=1bad",
        "postgresql://postgres:Pw@s3cr3t@127.0.0.1/test",  # an unencoded @
        f"postgresql://postgres@127.0.0.1/test?pass%77ord={PASSWORD}&bogus_option=1",
    ],
)
def test_bad_urls_and_unreachable_servers(url: str) -> None:
    with pytest.raises(duralog.DuralogError) as raised:
        open_store(url).close()
    assert_clean(str(raised.value), "the error")
    result = CliRunner().invoke(main, ["--db", url, "list"], env={"DURALOG_DB": None})
    assert result.exit_code != 0 and result.output.startswith("error: ")
    assert_clean(result.output, "the CLI error")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p?ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@ss@h/db?x=a@b", "postgresql://u:***@h/db?x=a@b"),
        ("postgresql://u%40x:p%2Fw@h/db", "postgresql://u%40x:***@h/db"),
        ("postgresql://u@h/db?sslmode=require&password=p&schema=s", None),
        ("postgresql://u@h/db?pass%77ord=p", "postgresql://u@h/db?pass%77ord=***"),
        ("postgresql://u@h/db?PASSWORD=p", "postgresql://u@h/db?PASSWORD=***"),
        ("host=h password='p q' user=u", "host=h password=*** user=u"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("shop.db", "shop.db"),
    ],
)
def test_redact(url: str, shown: Any) -> None:
    if shown is None:
        shown = "postgresql://u@h/db?sslmode=require&password=***&schema=s"
    assert redact(url) == shown


def test_the_workers_log_handler_scrubs_what_slips_through() -> None:
    # Messages name logs by their redacted address; this is the net under them.
    url = f"postgresql://u:{PASSWORD}@h/db"
    record = logging.LogRecord(
        "duralog.worker", logging.ERROR, __file__, 1, "lost %s", (url,), None
    )
    try:
        raise duralog.StoreError(f"the driver said: {url}")
    except duralog.StoreError:
        record.exc_info = sys.exc_info()
    assert ScrubbedLog([PASSWORD]).filter(record)
    text = logging.Formatter().format(record)
    assert_clean(text, "a log line")
    assert "lost postgresql://u:***@h/db" in text and "the driver said" in text
