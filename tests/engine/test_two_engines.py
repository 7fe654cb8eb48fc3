"""Two engines in one process, each with its own payload codec: each seals what it
writes with its own key and reads its own log, and neither can read the other's.

Before, the codec was installed for the whole process: the engine created last
decided which key every engine wrote with.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import msgspec
import pytest

import duralog
from duralog.store import envelope
from duralog.store import events as ev

KEY_A, KEY_B = os.urandom(32), os.urandom(32)
FAST = {"durability": "normal", "poll_interval": 0.05}


def codec_a() -> duralog.AesGcmCodec:
    return duralog.AesGcmCodec({"a": KEY_A}, "a")


def codec_b() -> duralog.AesGcmCodec:
    return duralog.AesGcmCodec({"b": KEY_B}, "b")


@duralog.step(name="two_engines_refuse", retry=duralog.RetryPolicy(max_attempts=1))
def refuse(secret: str) -> str:
    raise ValueError(f"refused {secret}")


@duralog.step(name="two_engines_note")
def note(secret: str) -> str:
    return f"noted {secret}"


@duralog.workflow(name="two_engines_flow")
async def flow(secret: str) -> str:
    try:
        await refuse(secret)
    except duralog.StepFailed as exc:
        refused = exc.error.message  # the code sees the error as it was raised
    more = await duralog.wait_signal("more")
    duralog.publish("seen", f"published {secret}")
    return f"{await note(secret)} | {refused} | {more}"


def key_ids(history: list[ev.LogEntry]) -> set[str | None]:
    """The key ids of every payload and error text in ``history``."""
    found: set[str | None] = set()
    for entry in history:
        for name in ("args", "result", "value", "payload"):
            raw = getattr(entry.event, name, None)
            if isinstance(raw, msgspec.Raw) and envelope.is_sealed_payload(raw):
                found.add(envelope.key_id(bytes(raw)))
        error = getattr(entry.event, "error", None)
        if error is not None and envelope.is_sealed(error.message):
            found.add(envelope.key_id(error.message))
    return found


def test_each_engine_seals_with_its_own_key_and_reads_its_own_log(tmp_path: Path) -> None:
    db_a, db_b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    with (
        duralog.Engine(db_a, payload_codec=codec_a(), **FAST) as a,  # type: ignore[arg-type]
        duralog.Engine(db_b, payload_codec=codec_b(), **FAST) as b,  # type: ignore[arg-type]
    ):
        # Created after ``a``: with one codec per process, ``a`` would now seal with b's key.
        assert a.payload_codec is not b.payload_codec
        ha = a.start(flow, "alpha-secret", id="w")
        hb = b.start(flow, "beta-secret", id="w")
        ha.signal("more", "alpha-signal")
        hb.signal("more", "beta-signal")
        assert ha.result(timeout=20) == ("noted alpha-secret | refused alpha-secret | alpha-signal")
        assert hb.result(timeout=20) == "noted beta-secret | refused beta-secret | beta-signal"
        assert ha.get_event("seen") == "published alpha-secret"
        assert hb.get_event("seen") == "published beta-secret"
        history_a, history_b = ha.history(), hb.history()
    assert key_ids(history_a) == {"a"}
    assert key_ids(history_b) == {"b"}
    for db, secret in ((db_a, "alpha"), (db_b, "beta")):
        with sqlite3.connect(db) as conn:
            assert secret not in repr(conn.execute("SELECT * FROM events").fetchall())


def test_neither_engine_reads_the_others_payloads(tmp_path: Path) -> None:
    db_a, db_b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    with (
        duralog.Engine(db_a, payload_codec=codec_a(), **FAST) as a,  # type: ignore[arg-type]
        duralog.Engine(db_b, payload_codec=codec_b(), **FAST) as b,  # type: ignore[arg-type]
    ):
        a.start(flow, "alpha-secret", id="w").signal("more", "x")
        b.start(flow, "beta-secret", id="w").signal("more", "y")
        assert a.get("w").result(timeout=20).startswith("noted alpha-secret")
        assert b.get("w").result(timeout=20).startswith("noted beta-secret")
        # Both still open: each log read through the other engine's codec.
        for engine, other in ((a, db_b), (b, db_a)):
            with (
                duralog.Engine(other, payload_codec=engine.payload_codec, worker=False) as wrong,
                pytest.raises(duralog.PayloadError, match="no key with id"),
            ):
                wrong.get("w").result(timeout=1)
        # And without any codec: the error names the key the log needs.
        with (
            duralog.Engine(db_a, worker=False) as plain,
            pytest.raises(duralog.PayloadError, match="with key 'a'"),
        ):
            plain.get("w").result(timeout=1)
        # The engines themselves still read their own logs.
        assert a.get("w").get_event("seen") == "published alpha-secret"
        assert b.get("w").get_event("seen") == "published beta-secret"


def test_an_engine_without_a_codec_beside_one_with_a_codec_writes_in_clear(
    tmp_path: Path,
) -> None:
    db_a, db_plain = str(tmp_path / "a.db"), str(tmp_path / "plain.db")
    with (
        duralog.Engine(db_a, payload_codec=codec_a(), **FAST) as a,  # type: ignore[arg-type]
        duralog.Engine(db_plain, **FAST) as plain,  # type: ignore[arg-type]
    ):
        assert plain.payload_codec is None
        a.start(flow, "alpha-secret", id="w").signal("more", "x")
        handle = plain.start(flow, "open", id="w")
        handle.signal("more", "y")
        assert handle.result(timeout=20) == "noted open | refused open | y"
        assert a.get("w").result(timeout=20).startswith("noted alpha-secret")
        assert key_ids(handle.history()) == set()
