"""Encryption at rest for payloads: AES-GCM, keys by id, rotation without rewriting.

    codec = AesGcmCodec.from_env()            # DURALOG_KEYS="k2:<base64>,k1:<base64>"
    engine = duralog.Engine("shop.db", payload_codec=codec)

Every payload (workflow inputs, step arguments and results, signal payloads,
recorded and published values, schedule arguments) and every text derived from
user data (error messages and tracebacks, cancel and pause reasons) is encrypted
with the current key, and its key id travels with it, so older values stay
readable after a rotation as long as their key is still configured. Kinds, seqs,
step names, error types and times stay in clear, so the log remains inspectable.
AES-GCM authenticates: a value altered on disk fails to decode with a clear
error instead of turning into garbage. Needs the ``cryptography`` package:
``pip install "duralog[encryption]"``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping

from duralog.errors import ConfigurationError, PayloadError

_NONCE = 12


class AesGcmCodec:
    """A payload codec that encrypts with AES-GCM (128, 192 or 256-bit keys).

    Args:
        keys: key id -> raw key bytes, or a function returning the key for an id.
        current: the id of the key new payloads are encrypted with.
    """

    def __init__(self, keys: Mapping[str, bytes] | Callable[[str], bytes], current: str) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ConfigurationError(
                "payload encryption needs the cryptography package: "
                'pip install "duralog[encryption]"'
            ) from None
        if not current or ":" in current:
            raise ConfigurationError(f"a key id must be non-empty and without ':', not {current!r}")
        self._aesgcm = AESGCM
        self._keys = keys
        self.current = current
        self._key(current)  # fail now, not at the first payload

    @classmethod
    def from_env(
        cls, keys_var: str = "DURALOG_KEYS", current_var: str = "DURALOG_KEY_ID"
    ) -> AesGcmCodec:
        """Keys from ``DURALOG_KEYS`` (``id:base64key,...``); the current one is
        ``DURALOG_KEY_ID`` or else the first listed."""
        spec = os.environ.get(keys_var, "")
        keys: dict[str, bytes] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key_id, sep, encoded = part.partition(":")
            try:
                keys[key_id] = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ConfigurationError(f"{keys_var}: the key {key_id!r} is not base64") from None
            if not sep or not key_id:
                raise ConfigurationError(f"{keys_var} must look like 'id:base64key,id2:base64key'")
        if not keys:
            raise ConfigurationError(f"{keys_var} is empty: set it to 'id:base64key'")
        return cls(keys, os.environ.get(current_var) or next(iter(keys)))

    def _key(self, key_id: str) -> bytes:
        try:
            key = self._keys(key_id) if callable(self._keys) else self._keys[key_id]
        except KeyError:
            raise PayloadError(
                f"no key with id {key_id!r} is configured: a payload encrypted with it cannot "
                "be read (keep old keys configured after a rotation)"
            ) from None
        if len(key) not in (16, 24, 32):
            raise ConfigurationError(f"key {key_id!r} must be 16, 24 or 32 bytes, not {len(key)}")
        return key

    def has_key(self, key_id: str) -> bool:
        """Whether a key with id ``key_id`` is configured (read commands ask before
        decrypting, to name a missing key instead of failing on it)."""
        try:
            self._key(key_id)
        except PayloadError:
            return False
        return True

    def encode(self, data: bytes) -> bytes:
        """``<key id>:<nonce><ciphertext and tag>``; the key id is authenticated too."""
        nonce = os.urandom(_NONCE)
        key_id = self.current.encode()
        sealed = self._aesgcm(self._key(self.current)).encrypt(nonce, data, key_id)
        return key_id + b":" + nonce + sealed

    def decode(self, data: bytes) -> bytes:
        """Decrypt and check; ``PayloadError`` if the payload was altered."""
        key_id, sep, rest = data.partition(b":")
        if not sep or len(rest) <= _NONCE:
            raise PayloadError("an encrypted payload is truncated: it was altered")
        from cryptography.exceptions import InvalidTag

        try:
            return bytes(
                self._aesgcm(self._key(key_id.decode())).decrypt(
                    rest[:_NONCE], rest[_NONCE:], key_id
                )
            )
        except InvalidTag:
            raise PayloadError(
                f"an encrypted payload failed authentication with key {key_id.decode()!r}: "
                "it was altered on disk, or the key is wrong"
            ) from None
