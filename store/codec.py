"""The payload codec: Python values <-> the JSON bytes the log keeps.

Payloads are encoded with msgspec as JSON, so the log stays readable with
``json_extract`` and with any JSON tool. Decoding is typed when a type is known:
a step annotated ``-> Receipt`` (a dataclass, a ``msgspec.Struct``, a
``datetime``...) decodes back into a ``Receipt``, in a live run and on replay
alike. Nothing is ever pickled, so decoding a payload never runs code.

What encodes: None, bool, int, float, str, bytes, list, tuple, dict, set,
datetime/date/time/timedelta, UUID, Decimal, Enum, dataclasses, attrs classes,
NamedTuple, TypedDict and msgspec Structs (nested freely). Non-finite floats
encode as null (JSON has no NaN).

With a payload codec (encryption), payloads are envelopes (``store/envelope.py``).
``reveal`` turns an event into what read commands show: decrypted with the key,
``<encrypted: key k1>`` without it; ``require_readable`` checks that a history can
be decrypted before it is replayed. Error messages here name a value's type and
place (``argument 2 (cents): expected int, got str``), never the value.

The codec is always an argument: the engine's, passed down from it (there is none
for the whole process). ``encode``, ``encode_call`` and ``decode`` default to no
codec (plain JSON; an envelope then fails to decode, saying which key it needs);
what seals error texts and reasons (``envelope.seal``, ``events.seal_event``,
``state.dump_state``) takes it without a default, so no writer forgets it.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import msgspec

from duralog.errors import ErrorDetails, PayloadError

from .envelope import (
    NO_CODEC_HINT,
    PREFIX,
    is_sealed,
    is_sealed_payload,
    key_id,
    knows_key,
    marker,
    unseal,
    unwrap,
    wrap,
)
from .envelope import PayloadCodec as PayloadCodec
from .events import NULL, Event, LogEntry

_encoder = msgspec.json.Encoder()
_any_decoder = msgspec.json.Decoder()
_PREFIX = PREFIX.encode()


def _wrap(plain: bytes, payload_codec: PayloadCodec | None) -> msgspec.Raw:
    return msgspec.Raw(plain if payload_codec is None else wrap(plain, payload_codec))


def _unwrap(
    payload: msgspec.Raw | bytes, payload_codec: PayloadCodec | None
) -> bytes | msgspec.Raw:
    if not is_sealed_payload(payload):
        return payload
    return unwrap(bytes(payload), payload_codec)


SUPPORTED_HINT = (
    "return or pass values msgspec can encode: None, bool, int, float, str, bytes, list, "
    "tuple, dict, set, datetime, UUID, Decimal, Enum, dataclasses, msgspec.Struct"
)


def encode(value: Any, payload_codec: PayloadCodec | None = None) -> msgspec.Raw:
    """Encode ``value`` into a payload, sealed by ``payload_codec`` (the engine's; None:
    plain JSON, as checks of what can be recorded use it); raises ``PayloadError``
    saying which type failed."""
    if value is None:
        return NULL
    try:
        return _wrap(_encoder.encode(value), payload_codec)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(
            f"cannot encode a value of type {type(value).__qualname__}: {without_values(exc)}"
        ) from None
    except RecursionError:
        raise PayloadError(
            f"cannot encode a value of type {type(value).__qualname__}: it is nested too "
            "deeply or contains itself"
        ) from None


def check_size(payload: msgspec.Raw, limit: int | None, what: str) -> None:
    """Raise ``PayloadError`` when ``payload`` is larger than ``limit`` bytes."""
    if limit is not None and len(payload) > limit:
        raise PayloadError(
            f"{what} is {len(payload):,} bytes, over the limit of {limit:,} "
            "(Engine(max_payload_bytes=...)); store large data elsewhere (a file, an object "
            "store) and pass a reference to it"
        )


def encode_call(
    args: Sequence[Any], kwargs: Mapping[str, Any], payload_codec: PayloadCodec | None = None
) -> tuple[msgspec.Raw, msgspec.Raw]:
    """Encode a call's positional and keyword arguments (kwargs is ``NULL`` when empty)."""
    encoded_args = encode(list(args), payload_codec)
    encoded_kwargs = encode(dict(kwargs), payload_codec) if kwargs else NULL
    return encoded_args, encoded_kwargs


@functools.lru_cache(maxsize=512)
def _decoder(tp: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(tp)


def decoder_for(tp: Any) -> Callable[[msgspec.Raw | bytes], Any]:
    """A function decoding payloads into ``tp`` (``Any`` for untyped decoding)."""
    if tp is Any or tp is None:
        return _any_decoder.decode
    try:
        return _decoder(tp).decode
    except TypeError:  # unhashable or unsupported annotation: fall back to untyped
        return _any_decoder.decode


def decode(
    payload: msgspec.Raw | bytes, tp: Any = Any, *, payload_codec: PayloadCodec | None = None
) -> Any:
    """Decode one payload, typed when ``tp`` is given; raises ``PayloadError``."""
    try:
        return decoder_for(tp)(_unwrap(payload, payload_codec))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PayloadError(
            f"cannot decode payload as {_type_name(tp)}: {without_values(exc)}"
        ) from None


def convert(value: Any, tp: Any, where: str = "a value") -> Any:
    """Convert an already decoded JSON value into ``tp`` (used for typed arguments).

    ``where`` names the value in the error (``"argument 2 (cents)"``); the error
    gives its type and the path inside it, never the value itself.
    """
    if tp is Any:
        return value
    try:
        return msgspec.convert(value, tp, strict=False)
    except (msgspec.ValidationError, TypeError) as exc:
        detail = without_values(exc)
        plain = _TOP_LEVEL_MISMATCH.fullmatch(detail) is not None  # says no more than we do
        raise PayloadError(
            f"{where}: expected {_type_name(tp)}, got {type(value).__qualname__}"
            + ("" if plain else f" ({detail})")
        ) from None


def without_values(exc: BaseException) -> str:
    """msgspec's message for ``exc`` without the value it may quote (an invalid enum
    value, an unknown field's name): what was expected and where stay."""
    text = str(exc)
    found = _WITH_PATH.fullmatch(text)
    head, path = (found.group(1), found.group(2)) if found else (text, "")
    for pattern, replacement in _QUOTED_VALUES:
        head = pattern.sub(replacement, head)
    return head + (f" - at {path}" if path else "")


_WITH_PATH = re.compile(r"(.*) - at ((?:`key` in )?`\$[^`]*`)", re.DOTALL)
_TOP_LEVEL_MISMATCH = re.compile(r"Expected `[^`]*`, got `[^`]*`")
# msgspec quotes the offending value in these messages (its other messages name
# types, constraints and paths only); anything else quoted goes too.
_QUOTED_VALUES = (
    (re.compile(r"^Invalid enum value .*", re.DOTALL), "Invalid enum value"),
    (re.compile(r"^Object contains unknown field .*", re.DOTALL), "Object has an unknown field"),
    (re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.DOTALL), "…"),
)


def _type_name(tp: Any) -> str:
    if typing.get_args(tp):  # list[int], int | None
        return str(tp).replace("typing.", "")
    return getattr(tp, "__qualname__", None) or repr(tp)


# -- what read commands show -----------------------------------------------------

#: The fields of events that hold payloads (``msgspec.Raw``).
PAYLOAD_FIELDS = ("args", "kwargs", "result", "value", "payload")


def reveal(event: Event, payload_codec: PayloadCodec | None) -> Event:
    """``event`` as read commands show it: what the codec can decrypt decrypted, and
    a marker (``"<encrypted: key k1>"``) for what it cannot (no codec, an unknown
    key, an altered value). Never raises for an envelope."""
    used = payload_codec
    changes: dict[str, Any] = {}
    for name in PAYLOAD_FIELDS:
        raw = getattr(event, name, None)
        if isinstance(raw, msgspec.Raw) and is_sealed_payload(raw):
            changes[name] = msgspec.Raw(_shown_payload(bytes(raw), used))
    error = getattr(event, "error", None)
    if isinstance(error, ErrorDetails) and (is_sealed(error.message) or is_sealed(error.traceback)):
        changes["error"] = ErrorDetails(
            error.type, _shown_text(error.message, used), _shown_text(error.traceback, used)
        )
    reason = getattr(event, "reason", None)
    if isinstance(reason, str) and is_sealed(reason):
        changes["reason"] = _shown_text(reason, used)
    return msgspec.structs.replace(event, **changes) if changes else event


def reveal_entries(
    entries: Iterable[LogEntry], payload_codec: PayloadCodec | None
) -> list[LogEntry]:
    """``reveal`` applied to every entry."""
    used = payload_codec
    return [LogEntry(e.seq, e.at, reveal(e.event, used)) for e in entries]


def reveal_payload(payload: bytes, payload_codec: PayloadCodec | None) -> bytes:
    """A payload as read commands show it (see ``reveal``)."""
    if not is_sealed_payload(payload):
        return payload
    return _shown_payload(payload, payload_codec)


def require_readable(
    workflow_id: str, entries: Iterable[LogEntry], payload_codec: PayloadCodec | None
) -> None:
    """Raise ``PayloadError`` unless every encrypted value in ``entries`` decrypts: the
    message names the key id that is not configured, or the seq that is altered.

    Replaying a history whose values cannot be read would report divergences that
    are not there; this says what is wrong instead.
    """
    entries = list(entries)
    if _PREFIX not in _encoder.encode([entry.event for entry in entries]):
        return  # nothing sealed (one pass in C: replay checks stay fast)
    used = payload_codec
    for entry in entries:
        for envelope in _envelopes(entry.event):
            found = key_id(envelope)
            if not knows_key(used, found):
                which = f"key {found!r}" if found else "a payload codec"
                raise PayloadError(
                    f"the history of workflow {workflow_id!r} is encrypted with {which}, "
                    f"which is not configured: {NO_CODEC_HINT}"
                )
            try:
                if isinstance(envelope, str):
                    unseal(envelope, used)
                else:
                    unwrap(envelope, used)
            except PayloadError as exc:
                raise PayloadError(
                    f"event {entry.seq} of workflow {workflow_id!r} cannot be decrypted: {exc}"
                ) from None


def _envelopes(event: Event) -> Iterator[str | bytes]:
    for name in PAYLOAD_FIELDS:
        raw = getattr(event, name, None)
        if isinstance(raw, msgspec.Raw) and is_sealed_payload(raw):
            yield bytes(raw)
    error = getattr(event, "error", None)
    texts = [error.message, error.traceback] if isinstance(error, ErrorDetails) else []
    reason = getattr(event, "reason", None)
    for text in [*texts, reason] if isinstance(reason, str) else texts:
        if is_sealed(text):
            yield text


def _shown_payload(payload: bytes, used: PayloadCodec | None) -> bytes:
    found = key_id(payload)
    if not knows_key(used, found):
        return _encoder.encode(marker(payload))
    try:
        return unwrap(payload, used)
    except PayloadError:
        return _encoder.encode(marker(payload, "cannot decrypt"))


def _shown_text(text: str, used: PayloadCodec | None) -> str:
    if not knows_key(used, key_id(text)):
        return marker(text)
    try:
        return unseal(text, used)
    except PayloadError:
        return marker(text, "cannot decrypt")
