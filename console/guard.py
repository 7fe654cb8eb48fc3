"""The console's safety checks, run before any page or API call (an ASGI middleware).

- **Host.** Without a token only the loopback names are served (``localhost``,
  ``127.0.0.1``, ``[::1]``): a page elsewhere that resolves its own name to this
  machine (DNS rebinding) gets nothing.
- **Token.** With one, every request carries it: ``Authorization: Bearer TOKEN``,
  the ``duralog_token`` cookie, or once ``?token=TOKEN`` (which sets the cookie).
- **Writes.** Every state change is a POST. ``--read-only`` answers every POST 403.
  A POST under ``/api/`` must be ``Content-Type: application/json`` (a page on
  another site cannot send that without a preflight this server never approves); a
  POST from a form carries the console's CSRF value (checked where the form is
  read); a POST whose ``Origin`` is another site is refused either way.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The cookie a browser keeps the token in (HttpOnly, SameSite=Strict).
COOKIE = "duralog_token"
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class Guard:
    """Wraps ``app``; ``token`` (None: none needed) and ``read_only`` as for ``duralog ui``."""

    def __init__(self, app: ASGIApp, *, token: str | None, read_only: bool) -> None:
        self.app = app
        self.token = token
        self.read_only = read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        api = path.startswith("/api/")
        if self.token is None and _host_name(headers.get("host", "")) not in LOOPBACK:
            await _deny(send, 403, "this console serves loopback names only", api)
            return
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [None])[-1]
            if given is not None and _same(given, self.token) and scope["method"] == "GET":
                await _set_cookie(send, path, query, self.token)
                return
            if not self._has_token(headers):
                await _deny(send, 401, "a token is needed: Authorization: Bearer TOKEN", api)
                return
        if scope["method"] not in ("GET", "HEAD"):
            problem = self._write_problem(headers, api)
            if problem is not None:
                await _deny(send, problem[0], problem[1], api)
                return
        await self.app(scope, receive, send)

    def _has_token(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and _same(bearer[7:].strip(), self.token):
            return True
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header: no token in it
            return False
        found = cookie.get(COOKIE)
        return found is not None and _same(found.value, self.token)

    def _write_problem(self, headers: dict[str, str], api: bool) -> tuple[int, str] | None:
        if self.read_only:
            return 403, "this console is read-only (started with --read-only)"
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != headers.get("host", ""):
            return 403, "a request from another site is refused"
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if api and content_type != "application/json":
            return 415, "POST to /api/ needs Content-Type: application/json"
        return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8265
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


async def _deny(send: Send, status: int, message: str, api: bool) -> None:
    if api:
        body, kind = json.dumps({"error": message}).encode(), b"application/json"
    else:
        body, kind = f"{status}: {message}\n".encode(), b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _set_cookie(send: Send, path: str, query: dict[str, list[str]], token: str) -> None:
    """Keep the token in a cookie and go to the same address without it."""
    rest = {k: v for k, v in query.items() if k != "token"}
    target = quote(path) + ("?" + urlencode(rest, doseq=True) if rest else "")
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", target.encode("latin-1", "replace")),
                (b"set-cookie", cookie.encode("latin-1")),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
