"""The payload codec and event bodies: what goes into the log comes back out unchanged."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from duralog.errors import ErrorDetails, PayloadError
from duralog.store import codec
from duralog.store import events as ev

# -- payloads ------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)

json_values = st.recursive(
    st.none() | st.booleans() | INT64 | FINITE | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same JSON type all the way down (``True != 1``, ``1.0 != 1``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@given(json_values)
def test_payload_round_trip(value: Any) -> None:
    payload = codec.encode(value)
    assert isinstance(payload, msgspec.Raw)
    assert same(codec.decode(payload), value)
    # A payload is plain JSON, readable by any tool.
    assert same(msgspec.json.decode(bytes(payload)), value)


@given(st.lists(json_values, max_size=4), st.dictionaries(st.text(), json_values, max_size=4))
def test_call_round_trip(args: list[Any], kwargs: dict[str, Any]) -> None:
    encoded_args, encoded_kwargs = codec.encode_call(args, kwargs)
    assert same(codec.decode(encoded_args), args)
    if kwargs:
        assert same(codec.decode(encoded_kwargs), kwargs)
    else:
        assert encoded_kwargs == ev.NULL


def test_none_is_the_null_payload() -> None:
    assert codec.encode(None) == ev.NULL
    assert codec.decode(ev.NULL) is None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_encode_as_null(value: float) -> None:
    assert bytes(codec.encode(value)) == b"null"


def test_tuples_and_sets_decode_typed() -> None:
    assert codec.decode(codec.encode((1, "a")), tuple[int, str]) == (1, "a")
    assert codec.decode(codec.encode({3, 1, 2}), set[int]) == {1, 2, 3}
    assert codec.decode(codec.encode(b"\x00\xff"), bytes) == b"\x00\xff"


# -- typed decoding ------------------------------------------------------------


@dataclasses.dataclass
class Line:
    sku: str
    quantity: int


@dataclasses.dataclass
class Receipt:
    order: str
    total: float
    lines: list[Line]
    note: str | None = None


class Shipment(msgspec.Struct, frozen=True):
    carrier: str
    tracking: uuid.UUID
    shipped_at: dt.datetime
    weights: tuple[float, ...] = ()


lines = st.builds(Line, st.text(), INT64)
receipts = st.builds(Receipt, st.text(), FINITE, st.lists(lines, max_size=3), st.none() | st.text())
datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)
) | st.datetimes(
    timezones=st.just(dt.UTC)
    | st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
    # Keep the UTC instant inside years 1..9999 whatever the offset.
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30),
)
shipments = st.builds(
    Shipment, st.text(), st.uuids(), datetimes, st.lists(FINITE, max_size=3).map(tuple)
)


@given(receipts)
def test_dataclass_round_trip(receipt: Receipt) -> None:
    decoded = codec.decode(codec.encode(receipt), Receipt)
    assert type(decoded) is Receipt
    assert all(type(line) is Line for line in decoded.lines)
    assert decoded == receipt


@given(shipments)
def test_struct_round_trip(shipment: Shipment) -> None:
    decoded = codec.decode(codec.encode(shipment), Shipment)
    assert type(decoded) is Shipment
    assert decoded == shipment
    assert decoded.shipped_at.utcoffset() == shipment.shipped_at.utcoffset()


@given(datetimes, st.uuids())
def test_datetime_and_uuid_round_trip(when: dt.datetime, ident: uuid.UUID) -> None:
    decoded = codec.decode(codec.encode(when), dt.datetime)
    assert decoded == when and decoded.utcoffset() == when.utcoffset()
    assert codec.decode(codec.encode(ident), uuid.UUID) == ident
    assert codec.decode(codec.encode([when, ident]), tuple[dt.datetime, uuid.UUID]) == (
        when,
        ident,
    )


def test_dates_durations_typed() -> None:
    for value, tp in [
        (dt.date(2024, 2, 29), dt.date),
        (dt.time(12, 30, 1, 5), dt.time),
        (dt.timedelta(days=3, seconds=7, microseconds=9), dt.timedelta),
    ]:
        assert codec.decode(codec.encode(value), tp) == value


def test_untyped_decoding_gives_plain_json() -> None:
    receipt = Receipt("o-1", 9.5, [Line("sku", 2)])
    assert codec.decode(codec.encode(receipt)) == {
        "order": "o-1",
        "total": 9.5,
        "lines": [{"sku": "sku", "quantity": 2}],
        "note": None,
    }


def test_convert_already_decoded_values() -> None:
    plain = codec.decode(codec.encode(Receipt("o-1", 9.5, [Line("sku", 2)])))
    assert codec.convert(plain, Receipt) == Receipt("o-1", 9.5, [Line("sku", 2)])
    assert codec.convert(plain, Any) is plain
    with pytest.raises(PayloadError, match="Receipt"):
        codec.convert({"order": 1}, Receipt)


def test_decode_mismatch_names_the_type() -> None:
    with pytest.raises(PayloadError, match="Receipt"):
        codec.decode(codec.encode({"order": "o-1"}), Receipt)
    with pytest.raises(PayloadError, match="UUID"):
        codec.decode(codec.encode("not-a-uuid"), uuid.UUID)
    with pytest.raises(PayloadError):
        codec.decode(b"{not json")


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "name"),
    [(object(), "object"), (Opaque(), "Opaque"), (lambda: 1, "function")],
    ids=["object", "class", "lambda"],
)
def test_encoding_an_unsupported_type_names_it(value: object, name: str) -> None:
    with pytest.raises(PayloadError, match=rf"type {name}\b"):
        codec.encode(value)


def test_encoding_an_unsupported_nested_type_names_it() -> None:
    with pytest.raises(PayloadError, match="Opaque"):
        codec.encode({"a": [1, Opaque()]})


# -- event bodies ----------------------------------------------------------------

raw = json_values.map(codec.encode)
names = st.text(min_size=1, max_size=20)
seqs = st.integers(min_value=1, max_value=2**53)
attempts = st.integers(min_value=1, max_value=1000)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
errors = st.builds(ErrorDetails, st.text(), st.text(), st.text())
optional = st.none() | st.text()

EVENT_STRATEGIES: dict[type[ev.BaseEvent], st.SearchStrategy[ev.BaseEvent]] = {
    ev.WorkflowStarted: st.builds(
        ev.WorkflowStarted,
        name=names,
        args=raw,
        kwargs=raw,
        parent_id=optional,
        code_version=optional,
        start_time=times,
    ),
    ev.StepScheduled: st.builds(ev.StepScheduled, name=names, args=raw, kwargs=raw),
    ev.StepStarted: st.builds(ev.StepStarted, step_seq=seqs, attempt=attempts),
    ev.StepRetrying: st.builds(
        ev.StepRetrying, step_seq=seqs, attempt=attempts, error=errors, next_attempt_at=times
    ),
    ev.StepCompleted: st.builds(ev.StepCompleted, step_seq=seqs, result=raw),
    ev.StepFailed: st.builds(ev.StepFailed, step_seq=seqs, attempt=attempts, error=errors),
    ev.TimerStarted: st.builds(ev.TimerStarted, fire_at=times),
    ev.TimerFired: st.builds(ev.TimerFired, timer_seq=seqs),
    ev.SignalReceived: st.builds(ev.SignalReceived, name=names, payload=raw),
    ev.MarkerRecorded: st.builds(
        ev.MarkerRecorded,
        marker=st.sampled_from(["now", "random", "uuid", "side_effect", "patch"]),
        value=raw,
    ),
    ev.ChildStarted: st.builds(ev.ChildStarted, child_id=names, name=names, args=raw, kwargs=raw),
    ev.ChildCompleted: st.builds(ev.ChildCompleted, child_seq=seqs, result=raw),
    ev.ChildFailed: st.builds(ev.ChildFailed, child_seq=seqs, error=errors),
    ev.CancelRequested: st.builds(ev.CancelRequested, reason=st.text()),
    ev.WorkflowCompleted: st.builds(ev.WorkflowCompleted, result=raw),
    ev.WorkflowFailed: st.builds(ev.WorkflowFailed, error=errors),
    ev.WorkflowCancelled: st.builds(ev.WorkflowCancelled, reason=st.text()),
    ev.ContinuedAsNew: st.builds(ev.ContinuedAsNew, args=raw, kwargs=raw),
    ev.StatePublished: st.builds(ev.StatePublished, key=names, value=raw),
    ev.PauseRequested: st.builds(ev.PauseRequested, reason=st.text()),
    ev.ResumeRequested: st.builds(ev.ResumeRequested),
    ev.WorkflowTerminated: st.builds(ev.WorkflowTerminated, error=errors),
    ev.StreamWritten: st.builds(ev.StreamWritten, key=names, value=raw),
    ev.StreamClosed: st.builds(ev.StreamClosed, key=names),
    ev.StepStreamed: st.builds(
        ev.StepStreamed, step_seq=seqs, attempt=attempts, key=names, value=raw, closed=st.booleans()
    ),
}


def test_every_event_class_has_a_strategy() -> None:
    assert set(EVENT_STRATEGIES) == set(ev.Event.__args__)
    assert {cls.__name__ for cls in EVENT_STRATEGIES} == ev.EVENT_KINDS


@pytest.mark.parametrize("cls", list(EVENT_STRATEGIES), ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_event_body_round_trip(cls: type[ev.BaseEvent], data: st.DataObject) -> None:
    event = data.draw(EVENT_STRATEGIES[cls])
    body = ev.encode_event(event, None)  # type: ignore[arg-type]
    decoded = ev.decode_event(body)
    assert type(decoded) is cls
    assert decoded == event
    assert ev.decode_event(body.decode()) == event  # the store keeps TEXT
    as_json = msgspec.json.decode(body)
    assert as_json["kind"] == cls.__name__
    assert ev.encode_event(decoded, None) == body
    entry = ev.LogEntry(1, 1.5, decoded)
    assert entry.kind == cls.__name__


@pytest.mark.parametrize("cls", list(EVENT_STRATEGIES), ids=lambda cls: cls.__name__)
def test_event_defaults_are_omitted_and_restored(cls: type[ev.BaseEvent]) -> None:
    required = {f.name: _sample(f.type) for f in msgspec.structs.fields(cls) if f.required}
    event = cls(**required)
    body = ev.encode_event(event, None)  # type: ignore[arg-type]
    assert set(msgspec.json.decode(body)) == {"kind", *required}
    assert ev.decode_event(body) == event


def _sample(tp: Any) -> Any:
    samples: dict[Any, Any] = {
        "str": "x",
        "int": 1,
        "float": 1.0,
        "msgspec.Raw": codec.encode([1]),
        "ErrorDetails": ErrorDetails("E", "m"),
    }
    key = tp if isinstance(tp, str) else getattr(tp, "__name__", tp)
    if key == "Raw":
        key = "msgspec.Raw"
    return samples[key]


def test_payload_embeds_verbatim_in_the_body() -> None:
    payload = codec.encode({"amount": 12.5, "currency": "EUR"})
    body = ev.encode_event(ev.StepCompleted(step_seq=2, result=payload), None)
    assert (
        body == b'{"kind":"StepCompleted","step_seq":2,"result":{"amount":12.5,"currency":"EUR"}}'
    )
