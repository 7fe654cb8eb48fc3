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
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import msgspec

from duralog.errors import PayloadError

from .events import NULL

_encoder = msgspec.json.Encoder()
_any_decoder = msgspec.json.Decoder()


class PayloadCodec(Protocol):
    """Turns encoded payload bytes into other bytes and back (encryption, compression).

    Installed process-wide with ``install`` (``Engine(payload_codec=...)`` does it).
    A transformed payload is kept as a JSON string ``"dlenc:<base64>"``, so event
    bodies stay JSON and their kinds, seqs and names stay readable.
    """

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


_ENVELOPE = b'"dlenc:'
_installed: PayloadCodec | None = None


def install(payload_codec: PayloadCodec | None) -> None:
    """Use ``payload_codec`` for every payload this process writes or reads (None: off)."""
    global _installed
    _installed = payload_codec


def _wrap(plain: bytes) -> msgspec.Raw:
    if _installed is None:
        return msgspec.Raw(plain)
    return msgspec.Raw(_ENVELOPE + base64.b64encode(_installed.encode(plain)) + b'"')


def _unwrap(payload: msgspec.Raw | bytes) -> bytes | msgspec.Raw:
    view = memoryview(payload)
    if view[: len(_ENVELOPE)] != _ENVELOPE:
        return payload
    data = bytes(view)
    if _installed is None:
        raise PayloadError(
            "this payload is encrypted and no payload codec is configured: pass "
            "Engine(payload_codec=...), or set DURALOG_KEYS for the CLI"
        )
    try:
        blob = base64.b64decode(data[len(_ENVELOPE) : -1], validate=True)
    except ValueError:
        raise PayloadError("an encrypted payload is not valid base64: it was altered") from None
    return _installed.decode(blob)


SUPPORTED_HINT = (
    "return or pass values msgspec can encode: None, bool, int, float, str, bytes, list, "
    "tuple, dict, set, datetime, UUID, Decimal, Enum, dataclasses, msgspec.Struct"
)


def encode(value: Any) -> msgspec.Raw:
    """Encode ``value`` into a payload; raises ``PayloadError`` saying which type failed."""
    if value is None:
        return NULL
    try:
        return _wrap(_encoder.encode(value))
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(
            f"cannot encode a value of type {type(value).__qualname__}: {exc}"
        ) from exc
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


def encode_call(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[msgspec.Raw, msgspec.Raw]:
    """Encode a call's positional and keyword arguments (kwargs is ``NULL`` when empty)."""
    encoded_args = encode(list(args))
    encoded_kwargs = encode(dict(kwargs)) if kwargs else NULL
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


def decode(payload: msgspec.Raw | bytes, tp: Any = Any) -> Any:
    """Decode one payload, typed when ``tp`` is given; raises ``PayloadError``."""
    try:
        return decoder_for(tp)(_unwrap(payload))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PayloadError(f"cannot decode payload as {_type_name(tp)}: {exc}") from exc


def convert(value: Any, tp: Any) -> Any:
    """Convert an already decoded JSON value into ``tp`` (used for typed arguments)."""
    if tp is Any:
        return value
    try:
        return msgspec.convert(value, tp, strict=False)
    except (msgspec.ValidationError, TypeError) as exc:
        raise PayloadError(f"cannot convert {value!r:.80} to {_type_name(tp)}: {exc}") from exc


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)
