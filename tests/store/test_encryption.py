"""Encryption at rest: payloads are ciphertext, the log stays inspectable, tampering shows."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import duralog
from duralog.store.integrity import link

K1, K2 = os.urandom(32), os.urandom(32)
SECRET = "4111-1111-1111-1111"


@duralog.step
def charge(card: str) -> str:
    return f"charged {card}"


@duralog.workflow(name="secret_checkout")
async def checkout(card: str) -> str:
    note = await duralog.wait_signal("note")
    return f"{await charge(card)} ({note})"


def run(db: str, key_id: str, keys: dict[str, bytes], workflow_id: str) -> str:
    with duralog.Engine(
        db, durability="normal", payload_codec=duralog.AesGcmCodec(keys, key_id)
    ) as engine:
        handle = engine.start(checkout, SECRET, id=workflow_id)
        handle.signal("note", f"signal {SECRET}")
        return handle.result(timeout=10)


def test_payloads_are_ciphertext_and_the_log_stays_readable(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    assert run(db, "k1", {"k1": K1}, "w1") == f"charged {SECRET} (signal {SECRET})"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, body FROM events WHERE workflow_id = 'w1'").fetchall()
    assert SECRET not in "".join(body for _, body in rows)
    kinds = [kind for kind, _ in rows]
    assert "SignalReceived" in kinds and "StepCompleted" in kinds
    bodies = {kind: body for kind, body in rows}
    assert '"name":"charge"' in bodies["StepScheduled"]  # names stay in clear
    assert '"dlenc:' in bodies["StepCompleted"]


def test_key_rotation_keeps_old_payloads_readable(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    run(db, "k1", {"k1": K1}, "old")
    assert run(db, "k2", {"k1": K1, "k2": K2}, "new").startswith("charged")
    with duralog.Engine(
        db, worker=False, payload_codec=duralog.AesGcmCodec({"k1": K1, "k2": K2}, "k2")
    ) as engine:
        assert engine.get("old").result(timeout=1).startswith("charged")
    with (
        duralog.Engine(
            db, worker=False, payload_codec=duralog.AesGcmCodec({"k2": K2}, "k2")
        ) as engine,
        pytest.raises(duralog.PayloadError, match="no key with id 'k1'"),
    ):
        engine.get("old").result(timeout=1)


def test_tampering_is_detected(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    run(db, "k1", {"k1": K1}, "w")
    with sqlite3.connect(db) as conn:
        (body,) = conn.execute(
            "SELECT body FROM events WHERE workflow_id = 'w' AND kind = 'WorkflowCompleted'"
        ).fetchone()
        start = body.index("dlenc:") + len("dlenc:")
        blob = bytearray(base64.b64decode(body[start : body.index('"', start)]))
        blob[-1] ^= 1  # one bit of the tag
        tampered = (
            body[:start] + base64.b64encode(bytes(blob)).decode() + body[body.index('"', start) :]
        )
        conn.execute(
            "UPDATE events SET body = ? WHERE workflow_id = 'w' AND kind = 'WorkflowCompleted'",
            (tampered,),
        )
        # An adversary who also recomputes the log's checksum chain gets past that check;
        # the ciphertext's own tag still gives the tampering away.
        (seq, at, previous) = conn.execute(
            "SELECT e.seq, e.at, p.checksum FROM events e JOIN events p ON p.workflow_id = "
            "e.workflow_id AND p.seq = e.seq - 1 WHERE e.workflow_id = 'w' AND e.kind = "
            "'WorkflowCompleted'"
        ).fetchone()
        conn.execute(
            "UPDATE events SET checksum = ? WHERE workflow_id = 'w' AND seq = ?",
            (link(previous, seq, "WorkflowCompleted", at, tampered), seq),
        )
    with (
        duralog.Engine(
            db, worker=False, payload_codec=duralog.AesGcmCodec({"k1": K1}, "k1")
        ) as engine,
        pytest.raises(duralog.PayloadError, match="failed authentication"),
    ):
        engine.get("w").result(timeout=1)


def test_without_a_key_the_error_says_what_to_do(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    run(db, "k1", {"k1": K1}, "w")
    with (
        duralog.Engine(db, worker=False) as engine,
        pytest.raises(duralog.PayloadError, match="DURALOG_KEYS"),
    ):
        engine.get("w").result(timeout=1)


def test_the_cli_reads_keys_from_the_environment(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    run(db, "k1", {"k1": K1}, "w")
    env = {**os.environ, "DURALOG_KEYS": f"k1:{base64.b64encode(K1).decode()}"}
    shown = subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, "inspect", "w"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "duralog", "--db", db, "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "DURALOG_KEYS": "k1:not base64!"},
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_bad_keys_are_configuration_errors() -> None:
    with pytest.raises(duralog.ConfigurationError, match="16, 24 or 32 bytes"):
        duralog.AesGcmCodec({"k": b"short"}, "k")
    with pytest.raises(duralog.ConfigurationError):
        duralog.AesGcmCodec({"k": K1}, "")
