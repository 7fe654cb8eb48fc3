"""Reading an encrypted log from the command line: without the key, markers and never
a value; with the key (``DURALOG_KEYS``), the values; ``replay`` without the key
says which key is missing (exit 2) instead of reporting divergences."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result
from support import load_app, wait_for

import duralog
from duralog.cli import main

KEY = os.urandom(32)
KEYS = f"k1:{base64.b64encode(KEY).decode()}"
MARKER = "<encrypted: key k1>"


@pytest.fixture(scope="module")
def vault() -> ModuleType:
    return load_app(Path(__file__).parent / "app_vault.py")


@pytest.fixture(scope="module")
def vault_db(tmp_path_factory: pytest.TempPathFactory, vault: ModuleType) -> str:
    """A log written with key k1: a FAILED ``parent`` (a failed step, a failed child, a
    signal, a published value), a CANCELLED ``waiter`` and a schedule."""
    db = str(tmp_path_factory.mktemp("vault") / "vault.db")
    secret = vault.SECRET
    with duralog.Engine(
        db,
        durability="normal",
        poll_interval=0.05,
        payload_codec=duralog.AesGcmCodec({"k1": KEY}, "k1"),
    ) as engine:
        parent = engine.start(vault.parent, secret, id="parent")
        parent.signal("note", f"signal {secret}")
        with pytest.raises(duralog.WorkflowFailed):
            parent.result(timeout=20)
        waiting = engine.start(vault.waiter, secret, id="waiter")
        wait_for(lambda: waiting.status() is duralog.WorkflowStatus.RUNNING)
        waiting.cancel(f"cancel {secret}")
        wait_for(lambda: waiting.status() is duralog.WorkflowStatus.CANCELLED)
        engine.schedule("vault_schedule", "0 3 29 2 *", vault.waiter, f"scheduled {secret}")
    return db


def run(db: str, *args: str, key: bool = False) -> Result:
    """One command: only DURALOG_KEYS gives it a codec."""
    env = {"DURALOG_DB": None, "DURALOG_APP": None, "DURALOG_KEYS": KEYS if key else None}
    return CliRunner().invoke(main, ["--db", db, "--app", "app_vault", *args], env=env)


READS = [
    ["show", "parent"],
    ["history", "parent"],
    ["history", "parent", "--json"],
    ["inspect", "parent"],
    ["inspect", "parent", "--json"],
    ["show", "waiter"],
    ["history", "waiter", "--json"],
    ["tail", "--no-follow", "--since", "1d"],
    ["tail", "--no-follow", "--since", "1d", "--json"],
    ["schedules", "--json"],
]


@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_without_the_key_reads_show_markers(
    vault_db: str, vault: ModuleType, command: list[str]
) -> None:
    result = run(vault_db, *command)
    assert result.exit_code == 0, result.output
    assert vault.SECRET not in result.output
    assert MARKER in result.output
    assert "dlenc:" not in result.output  # the envelope is not printed either


@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_with_the_key_reads_decrypt(vault_db: str, vault: ModuleType, command: list[str]) -> None:
    result = run(vault_db, *command, key=True)
    assert result.exit_code == 0, result.output
    assert vault.SECRET in result.output
    assert "<encrypted" not in result.output and "dlenc:" not in result.output


def test_show_with_the_key_prints_errors_and_reasons(vault_db: str, vault: ModuleType) -> None:
    shown = run(vault_db, "show", "parent", key=True).output
    assert f"ValueError: declined {vault.SECRET}" in shown
    assert f"RuntimeError: gave up: declined {vault.SECRET}" in shown
    assert f"cancel {vault.SECRET}" in run(vault_db, "history", "waiter", key=True).output
    assert "ValueError: <encrypted: key k1>" in run(vault_db, "show", "parent").output


def test_a_command_with_a_key_leaves_no_codec_behind(
    vault_db: str, vault: ModuleType, tmp_path: Path
) -> None:
    # The command's codec is its own (its context's), not the process's: an engine
    # made afterwards in this process without a codec writes in clear.
    assert vault.SECRET in run(vault_db, "show", "parent", key=True).output
    db = str(tmp_path / "plain.db")
    with duralog.Engine(db, worker=False) as engine:
        engine.start(vault.waiter, "in clear", id="plain")
    with sqlite3.connect(db) as conn:
        assert "in clear" in repr(conn.execute("SELECT body FROM events").fetchall())


def test_export_is_a_copy_of_the_log(vault_db: str, vault: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "parent.json"
    assert run(vault_db, "export", "parent", "-o", str(out)).exit_code == 0
    exported = json.loads(out.read_text())["events"]
    with sqlite3.connect(vault_db) as conn:
        bodies = conn.execute(
            "SELECT seq, body FROM events WHERE workflow_id = 'parent' ORDER BY seq"
        ).fetchall()
    assert len(exported) == len(bodies)
    for event, (seq, body) in zip(exported, bodies, strict=True):
        assert event.pop("seq") == seq and event.pop("at")
        assert event == json.loads(body)  # the envelopes exactly as the log has them
    assert vault.SECRET not in out.read_text()


def test_replay_without_the_key_names_it_and_exits_2(
    vault_db: str, vault: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "parent.json"
    assert run(vault_db, "export", "parent", "-o", str(out)).exit_code == 0
    for args in (["parent"], ["--file", str(out)], ["--all"]):
        result = run(vault_db, "replay", *args)
        assert result.exit_code == 2, result.output
        assert "encrypted with key 'k1', which is not configured" in result.output
        assert "DURALOG_KEYS" in result.output
        assert "DIVERGES" not in result.output and vault.SECRET not in result.output
        agreed = run(vault_db, "replay", *args, key=True)
        assert agreed.exit_code == 0, agreed.output
        assert "agree" in agreed.output


def test_replay_with_another_key_says_it_cannot_decrypt(vault_db: str) -> None:
    other = f"k1:{base64.b64encode(os.urandom(32)).decode()}"  # same id, wrong key
    env = {"DURALOG_DB": None, "DURALOG_APP": None, "DURALOG_KEYS": other}
    result = CliRunner().invoke(
        main, ["--db", vault_db, "--app", "app_vault", "replay", "parent"], env=env
    )
    assert result.exit_code == 2, result.output
    assert "cannot be decrypted" in result.output and "failed authentication" in result.output


def test_writing_without_the_key_to_an_encrypted_workflow_is_refused(
    vault_db: str, vault: ModuleType, tmp_path: Path
) -> None:
    db = str(tmp_path / "copy.db")
    with sqlite3.connect(vault_db) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    with duralog.Engine(
        db, worker=False, payload_codec=duralog.AesGcmCodec({"k1": KEY}, "k1")
    ) as engine:
        engine.start(vault.waiter, "x", id="open")
    for args in (
        ["signal", "open", "note", "--payload", '"card 4111"'],
        ["cancel", "open", "--reason", "card 4111"],
        ["pause", "open", "--reason", "card 4111"],
    ):
        result = run(db, *args)
        assert result.exit_code == 2, result.output
        assert "key 'k1'" in result.output and "DURALOG_KEYS" in result.output
    assert run(db, "cancel", "open").exit_code == 0  # nothing to keep secret: allowed
    with sqlite3.connect(db) as conn:
        # (not its time: a float's digits may spell anything)
        texts = conn.execute("SELECT kind, name, payload FROM inbox").fetchall()
        assert "4111" not in repr(texts)


def test_conversion_errors_name_the_argument_never_its_value(cli_app_db: str) -> None:
    for given, expected in (
        ('["o-1", "SECRET-cents", "gold"]', "argument 2 (cents): expected int, got str"),
        ('["o-1", 5, "SECRET-tier"]', "argument 3 (tier): expected Tier, got str"),
    ):
        result = run(cli_app_db, "start", "vault_typed", "--input", given, "--wait")
        assert result.exit_code == 2  # refused at start: the signature does not take it
        assert expected in result.output, result.output
        assert "SECRET" not in result.output


@pytest.fixture
def cli_app_db(tmp_path: Path, vault: ModuleType) -> str:
    return str(tmp_path / "typed.db")
