"""Envelopes (sealed texts and payloads), what read commands show of them, and
messages that name a value's type and place, never the value."""

from __future__ import annotations

import dataclasses
import enum
import os
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import duralog
from duralog.errors import ErrorDetails, PayloadError
from duralog.replay.state import WorkflowState, dump_state, load_state
from duralog.store import codec, envelope
from duralog.store import events as ev

K1, K2 = os.urandom(32), os.urandom(16)
SECRET = "SECRET-4111"


def aes(*ids: str) -> duralog.AesGcmCodec:
    keys = {"k1": K1, "k2": K2}
    return duralog.AesGcmCodec({i: keys[i] for i in ids}, ids[0])


@given(st.text())
def test_sealed_text_round_trips(text: str) -> None:
    sealed = envelope.seal(text, aes("k1"))
    assert envelope.unseal(sealed, aes("k1")) == text
    if text:
        assert envelope.is_sealed(sealed) and envelope.key_id(sealed) == "k1"
        assert envelope.seal(sealed, aes("k2", "k1")) == sealed  # never sealed twice


@given(st.text())
def test_without_a_codec_texts_stay_as_they_are(text: str) -> None:
    assert envelope.seal(text, None) == text


def test_unseal_without_the_key_names_it() -> None:
    sealed = envelope.seal(SECRET, aes("k1"))
    with pytest.raises(PayloadError, match=r"with key 'k1'.*DURALOG_KEYS"):
        envelope.unseal(sealed, None)
    with pytest.raises(PayloadError, match="no key with id 'k1'"):
        envelope.unseal(sealed, aes("k2"))


def test_markers_name_the_key_without_decrypting() -> None:
    sealed = envelope.seal(SECRET, aes("k2"))
    assert envelope.marker(sealed) == "<encrypted: key k2>"
    payload = codec.encode(SECRET, aes("k1"))
    assert envelope.marker(bytes(payload)) == "<encrypted: key k1>"
    assert envelope.key_id("dlenc:not base64!") is None  # a text that only looks like one
    assert not envelope.is_sealed("dlenc:not base64!")


ALL_EVENTS = [
    ev.WorkflowStarted(name="w", args=msgspec.Raw(b'["a"]')),
    ev.StepScheduled(name="s", args=msgspec.Raw(b'["a"]'), kwargs=msgspec.Raw(b'{"k":"a"}')),
    ev.StepRetrying(
        step_seq=2, attempt=1, error=ErrorDetails("E", "m a", "tb a"), next_attempt_at=1
    ),
    ev.StepFailed(step_seq=2, attempt=1, error=ErrorDetails("E", "m a", "tb a")),
    ev.StepCompleted(step_seq=2, result=msgspec.Raw(b'"a"')),
    ev.SignalReceived(name="n", payload=msgspec.Raw(b'"a"')),
    ev.MarkerRecorded(marker="now", value=msgspec.Raw(b"1.5")),
    ev.StatePublished(key="k", value=msgspec.Raw(b'"a"')),
    ev.StreamWritten(key="k", value=msgspec.Raw(b'"a"')),
    ev.StepStreamed(step_seq=2, attempt=1, key="k", value=msgspec.Raw(b'"a"')),
    ev.ChildFailed(child_seq=3, error=ErrorDetails("E", "m a")),
    ev.CancelRequested(reason="a reason"),
    ev.PauseRequested(reason="a reason"),
    ev.WorkflowFailed(error=ErrorDetails("E", "m a", "tb a")),
    ev.WorkflowCancelled(reason="a reason"),
    ev.ContinuedAsNew(args=msgspec.Raw(b'["a"]')),
]


def sealed_copy(event: ev.Event, payload_codec: Any) -> ev.Event:
    """``event`` as an engine with ``payload_codec`` writes it: payloads and texts sealed."""
    changes = {
        name: msgspec.Raw(envelope.wrap(bytes(getattr(event, name)), payload_codec))
        for name in codec.PAYLOAD_FIELDS
        if isinstance(getattr(event, name, None), msgspec.Raw)
        and bytes(getattr(event, name)) != b"null"
    }
    return ev.seal_event(msgspec.structs.replace(event, **changes), payload_codec)


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_reveal_decrypts_with_the_key_and_marks_without(event: ev.Event) -> None:
    sealed = sealed_copy(event, aes("k1"))
    assert sealed != event
    body = ev.encode_event(sealed, None)
    assert b'"a"' not in body and b" a" not in body  # nothing of it in clear
    assert codec.reveal(sealed, aes("k1")) == event
    shown = ev.encode_event(codec.reveal(sealed, None), None)
    assert b"<encrypted: key k1>" in shown and b"dlenc:" not in shown
    assert b'"a"' not in shown and b" a" not in shown
    wrong = ev.encode_event(codec.reveal(sealed, duralog.AesGcmCodec({"k1": K2}, "k1")), None)
    assert b"<encrypted: key k1, cannot decrypt>" in wrong


def test_require_readable_names_the_missing_key_and_the_altered_seq() -> None:
    entries = [ev.LogEntry(i + 1, 0.0, sealed_copy(e, aes("k2"))) for i, e in enumerate(ALL_EVENTS)]
    codec.require_readable("w", entries, aes("k2"))  # every value decrypts
    with pytest.raises(PayloadError, match="encrypted with key 'k2', which is not configured"):
        codec.require_readable("w", entries, None)
    with pytest.raises(PayloadError, match="encrypted with key 'k2', which is not configured"):
        codec.require_readable("w", entries, aes("k1"))
    altered = ev.CancelRequested(reason="dlenc:" + "A" * 40)  # base64, no key id
    with pytest.raises(PayloadError, match="event 99 of workflow 'w' cannot be decrypted"):
        codec.require_readable("w", [ev.LogEntry(99, 0.0, altered)], aes("k2"))


def test_snapshots_seal_what_the_events_seal() -> None:
    state = WorkflowState(workflow_id="w", name="w", cancel_reasons=[SECRET, ev.TIMEOUT_REASON])
    state.error = ErrorDetails("E", SECRET, SECRET)
    state.child_errors[3] = ErrorDetails("E", SECRET)
    data, checksum = dump_state(state, aes("k1"))
    assert SECRET.encode() not in data
    loaded = load_state(data, checksum)
    assert loaded is not None and loaded.cancel_reasons[1] == ev.TIMEOUT_REASON
    assert envelope.unseal_error(loaded.error or ErrorDetails("", ""), aes("k1")) == state.error
    assert state.error.message == SECRET  # the live state itself is left as it is


# -- messages never quote a value ---------------------------------------------


class Tier(enum.Enum):
    GOLD = "gold"


@dataclasses.dataclass
class Order:
    cents: int
    tier: Tier


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [
        (SECRET, int, "argument 2 (cents): expected int, got str"),
        (SECRET, Tier, "argument 2 (cents): expected Tier, got str (Invalid enum value)"),
        ({"cents": SECRET, "tier": "gold"}, Order, "- at `$.cents`"),
        ({"cents": 1, "tier": SECRET}, Order, "Invalid enum value - at `$.tier`"),
        ([1, SECRET], list[int], "expected list[int], got list"),
        (f"{SECRET}' - at `$`", Tier, "(Invalid enum value)"),
    ],
)
def test_conversion_errors_give_type_and_path_only(value: Any, tp: Any, expected: str) -> None:
    with pytest.raises(PayloadError) as raised:
        codec.convert(value, tp, "argument 2 (cents)")
    assert expected in str(raised.value)
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None  # nor in a chained exception's message


@pytest.mark.parametrize(
    ("payload", "tp"),
    [
        (f'"{SECRET}"', Tier),
        (f'{{"cents": 1, "tier": "{SECRET}"}}', Order),
        (f'["{SECRET}"]', list[int]),
    ],
)
def test_decode_errors_give_type_and_path_only(payload: str, tp: Any) -> None:
    with pytest.raises(PayloadError) as raised:
        codec.decode(payload.encode(), tp)
    assert SECRET not in str(raised.value) and raised.value.__cause__ is None


def test_unknown_fields_are_not_named() -> None:
    class Strict(msgspec.Struct, forbid_unknown_fields=True):
        a: int

    with pytest.raises(PayloadError) as raised:
        codec.decode(f'{{"a": 1, "{SECRET}": 2}}'.encode(), Strict)
    assert SECRET not in str(raised.value)
    assert "unknown field" in str(raised.value)
