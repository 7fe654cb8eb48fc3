"""Addresses as they may be printed: the passwords in a log's URL masked or found."""

from __future__ import annotations

import re
import urllib.parse

_SECRET_KEYS = ("password", "passfile", "sslpassword")


def redact(url: str) -> str:
    """``url`` (a log's address) as it may be printed: every password masked.

    Masks the password of the user part (``user:***@``, up to the last ``@`` of the
    authority, so an unencoded ``@``, ``/`` or ``?`` in it is masked too) and the
    value of ``password``, ``sslpassword`` and ``passfile`` parameters, percent-encoded
    names included. When in doubt it masks more (a host or path), never less.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # not a URL: maybe libpq's "key=value" form
        return re.sub(_KEY_VALUE_SECRET, r"\1***", url, flags=re.IGNORECASE)
    span = _password_span(rest)
    if span is not None:
        rest = f"{rest[: span[0]]}***{rest[span[1] :]}"
    base, qsep, query = rest.partition("?")
    if qsep:
        query = "&".join(_redact_parameter(part) for part in query.split("&"))
    return f"{scheme}://{base}{qsep}{query}"


def secrets_of(url: str) -> list[str]:
    """The passwords written in ``url``, as written and percent-decoded (longest
    first): what a last line of defence removes from text that must not show them."""
    found: set[str] = set()
    rest = url.partition("://")[2]
    if rest:
        span = _password_span(rest)
        if span is not None:
            found.add(rest[span[0] : span[1]])
        for part in rest.partition("?")[2].split("&"):
            key, eq, value = part.partition("=")
            if eq and urllib.parse.unquote(key).strip().lower() in _SECRET_KEYS:
                found.add(value)
    else:
        found.update(
            m.group(3).strip("'") for m in re.finditer(_KEY_VALUE_SECRET, url, re.IGNORECASE)
        )
    found |= {urllib.parse.unquote(secret) for secret in found}
    return sorted((s for s in found if s), key=len, reverse=True)


def _password_span(rest: str) -> tuple[int, int] | None:
    """Where the password is in ``rest`` (a URL after ``://``), if it has one."""
    cut = rest.find("?")
    at = rest.rfind("@", 0, cut if cut >= 0 else len(rest))
    if at < 0:
        at = rest.rfind("@")  # a "?" inside the password
    colon = rest.find(":", 0, at)
    return (colon + 1, at) if at >= 0 and colon >= 0 else None


def _redact_parameter(part: str) -> str:
    key, eq, _ = part.partition("=")
    if eq and urllib.parse.unquote(key).strip().lower() in _SECRET_KEYS:
        return f"{key}=***"
    return part


# A pattern, compiled (and cached by ``re``) by its first use, not by every process
# that opens a log: only a libpq "key=value" string needs it.
_KEY_VALUE_SECRET = rf"(({'|'.join(_SECRET_KEYS)})\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)"
