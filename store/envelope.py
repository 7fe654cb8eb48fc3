"""Envelopes: how a payload codec's output sits in the log, and the codec in use.

A payload codec (encryption, compression) turns bytes into other bytes. What it
makes is kept as the text ``dlenc:<base64>``: inside a payload it is a JSON
string (``"dlenc:..."``), and the log's text fields derived from user data
(error messages and tracebacks, cancel and pause reasons) hold it as their
value. Event bodies stay JSON, and their kinds, seqs, names and times stay
readable without the key.

Functions here take the codec as an argument (``payload_codec``; ``None`` means no
codec). There is no codec for the whole process: an engine's codec travels with it
and with its store (``Engine(payload_codec=...)``), so two engines with different
keys can share a process.

``AesGcmCodec`` (``store/crypto.py``) writes ``<key id>:<nonce><ciphertext>``
inside the base64, so ``key_id`` can say which key a value needs without
decrypting it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Protocol

from duralog.errors import ErrorDetails, PayloadError

PREFIX = "dlenc:"
_PREFIX_BYTES = PREFIX.encode()
_PAYLOAD_PREFIX = b'"' + _PREFIX_BYTES


class PayloadCodec(Protocol):
    """Turns encoded payload bytes into other bytes and back (encryption, compression).

    An engine holds one (``Engine(payload_codec=...)``) and passes it to its store
    and its workflows. A transformed payload is kept as a JSON string ``"dlenc:<base64>"``, so event
    bodies stay JSON and their kinds, seqs and names stay readable.
    """

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


NO_CODEC_HINT = "pass Engine(payload_codec=...), or set DURALOG_KEYS (id:base64key,...) for the CLI"


# -- payloads (JSON) -----------------------------------------------------------


def wrap(plain: bytes, payload_codec: PayloadCodec | None) -> bytes:
    """``plain`` JSON as the log keeps it: an envelope JSON string, or as it is."""
    used = payload_codec
    if used is None:
        return plain
    return _PAYLOAD_PREFIX + base64.b64encode(used.encode(plain)) + b'"'


def is_sealed_payload(payload: bytes | memoryview) -> bool:
    """Whether a payload is an envelope (a JSON string ``"dlenc:..."``)."""
    if type(payload) is bytes:
        return payload.startswith(_PAYLOAD_PREFIX)
    return memoryview(payload)[: len(_PAYLOAD_PREFIX)] == _PAYLOAD_PREFIX


def unwrap(payload: bytes, payload_codec: PayloadCodec | None) -> bytes:
    """The JSON inside a payload envelope; ``PayloadError`` if it cannot be read."""
    return _open(_blob(payload[len(_PAYLOAD_PREFIX) : -1]), payload_codec)


# -- text fields ---------------------------------------------------------------


def is_sealed(text: str) -> bool:
    """Whether ``text`` (an error message, a reason) is an envelope."""
    return text.startswith(PREFIX) and _parse(text[len(PREFIX) :]) is not None


def seal(text: str, payload_codec: PayloadCodec | None) -> str:
    """``text`` as the log keeps it: an envelope under a codec, else as it is.

    The empty text and a text already sealed stay as they are (sealing twice would
    hide the envelope from readers that hold the key).
    """
    used = payload_codec
    if used is None or not text or is_sealed(text):
        return text
    return PREFIX + base64.b64encode(used.encode(text.encode("utf-8"))).decode("ascii")


def unseal(text: str, payload_codec: PayloadCodec | None) -> str:
    """The plain text of ``text`` (as it is when it is not an envelope); ``PayloadError``
    when it cannot be decrypted (no codec, an unknown key, an altered value)."""
    if not is_sealed(text):
        return text
    plain = _open(_blob(text[len(PREFIX) :].encode("ascii")), payload_codec)
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("an encrypted text does not decode as UTF-8: it was altered") from None


def seal_error(error: ErrorDetails, payload_codec: PayloadCodec | None) -> ErrorDetails:
    """``error`` with its message and traceback sealed (its type stays readable)."""
    used = payload_codec
    if used is None:
        return error
    message, traceback = seal(error.message, used), seal(error.traceback, used)
    if message is error.message and traceback is error.traceback:
        return error
    return ErrorDetails(error.type, message, traceback)


def unseal_error(error: ErrorDetails, payload_codec: PayloadCodec | None) -> ErrorDetails:
    """``error`` as it was raised: its message and traceback decrypted."""
    if not (is_sealed(error.message) or is_sealed(error.traceback)):
        return error
    used = payload_codec
    return ErrorDetails(error.type, unseal(error.message, used), unseal(error.traceback, used))


# -- key ids and markers -------------------------------------------------------


def key_id(envelope: str | bytes) -> str | None:
    """The key id an envelope (a text, or a payload's JSON string) was sealed with,
    read without decrypting; None when it names none (a codec other than
    ``AesGcmCodec``) or is no envelope."""
    text = envelope if isinstance(envelope, str) else bytes(envelope).decode("ascii", "replace")
    text = text.strip('"')
    if not text.startswith(PREFIX):
        return None
    return _parse(text[len(PREFIX) :]) or None


def marker(envelope: str | bytes, problem: str = "") -> str:
    """What read commands show instead of an envelope: ``<encrypted: key k1>``."""
    found = key_id(envelope)
    text = "<encrypted" + (f": key {found}" if found else "")
    return text + (f", {problem}>" if problem else ">")


def knows_key(payload_codec: PayloadCodec | None, found: str | None) -> bool:
    """Whether the codec can decrypt values sealed with key ``found`` (True when it
    cannot tell: decrypting then says)."""
    used = payload_codec
    if used is None:
        return False
    has_key = getattr(used, "has_key", None)
    return found is None or not callable(has_key) or bool(has_key(found))


# -- helpers -------------------------------------------------------------------


def _parse(encoded: str) -> str | None:
    """The key id in base64 ``encoded`` ("" when it names none); None if it is not base64."""
    try:
        return _key_of(_blob(encoded.encode("ascii")))
    except (PayloadError, UnicodeEncodeError):
        return None


def _key_of(blob: bytes) -> str:
    found, sep, _ = blob.partition(b":")
    if sep and 0 < len(found) <= 64 and found.isascii() and found.decode().isprintable():
        return found.decode()
    return ""


def _blob(encoded: bytes) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("an encrypted value is not valid base64: it was altered") from None


def _open(blob: bytes, used: PayloadCodec | None) -> bytes:
    if used is None:
        found = _key_of(blob)
        which = f" with key {found!r}" if found else ""
        raise PayloadError(
            f"this value is encrypted{which} and no payload codec is configured: {NO_CODEC_HINT}"
        )
    return used.decode(blob)
