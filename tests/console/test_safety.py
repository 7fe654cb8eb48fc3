"""The console's safety: loopback names only without a token, the token on every
request with one, CSRF on every form, ``--read-only``, encrypted payloads, and hostile
ids and payloads escaped everywhere."""

from __future__ import annotations

import base64
import os
import re
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient
from support import wait_for

import duralog
from duralog.cli import main

HOSTILE = "<script>alert('x')</script>"
TOKEN = "s3cret-token-0123456789"
JSON = {"Content-Type": "application/json"}
MakeClient = Callable[..., AbstractContextManager[TestClient]]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no form on the page"
    return found.group(1)


def test_only_loopback_names_are_served_without_a_token(client: TestClient) -> None:
    for host in ("localhost:8265", "127.0.0.1", "[::1]:8265"):
        assert client.get("/api/workflows", headers={"Host": host}).status_code == 200
    rebound = client.get("/api/workflows", headers={"Host": "evil.example:8265"})
    assert rebound.status_code == 403
    assert rebound.json() == {"error": "this console serves loopback names only"}


def test_a_token_is_needed_on_every_request(shop_db: str, make_client: MakeClient) -> None:
    with make_client(shop_db, token=TOKEN) as client:
        for url in (
            "/",
            "/workflows/retry-1",
            "/api/workflows",
            "/api/events",
            "/static/console.js",
        ):
            response = client.get(url)
            assert response.status_code == 401, url
        assert client.post("/api/workflows/wait-1/cancel", headers=JSON).status_code == 401
        wrong = client.get("/api/workflows", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}", "Host": "console.example"}
        assert client.get("/api/workflows", headers=bearer).status_code == 200
        # A browser opens /?token=... once: the token moves into an HttpOnly cookie.
        opened = client.get(f"/?token={TOKEN}&status=RUNNING", follow_redirects=False)
        assert opened.status_code == 303
        assert opened.headers["location"] == "/?status=RUNNING"
        assert "HttpOnly" in opened.headers["set-cookie"]
        assert client.get("/?status=RUNNING").status_code == 200  # the cookie, now


def test_the_cli_refuses_another_address_without_a_token(shop_db: str) -> None:
    env = {"DURALOG_DB": None, "DURALOG_APP": None, "DURALOG_UI_TOKEN": None}
    result = CliRunner().invoke(main, ["--db", shop_db, "ui", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    assert result.output.startswith("error: --host 0.0.0.0 is not a loopback address: give --token")
    short = CliRunner().invoke(main, ["--db", shop_db, "ui", "--token", "abc"], env=env)
    assert short.exit_code == 2
    assert "--token must be 16 or more" in short.output
    assert "Traceback" not in result.output + short.output


def test_without_the_extra_ui_says_which_to_install(
    shop_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn fails
    result = CliRunner().invoke(main, ["--db", shop_db, "ui"], env={"DURALOG_DB": None})
    assert result.exit_code == 2
    assert result.output == (
        "error: duralog ui needs the ui extra (uvicorn is missing): pip install 'duralog[ui]'\n"
    )


def test_forms_need_the_csrf_value(fresh: tuple[str, TestClient]) -> None:
    _, client = fresh
    page = client.get("/workflows/wait-1").text
    form = {"name": "go", "payload": '"x"'}
    forged = client.post("/workflows/wait-1/signal", data=form)
    assert forged.status_code == 403
    assert "stale or from another site" in forged.text
    elsewhere = client.post(
        "/workflows/wait-1/signal",
        data={**form, "csrf": csrf_of(page)},
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 403
    # A cross-site form can send neither JSON nor a token to the API.
    plain = client.post("/api/workflows/wait-1/cancel", content=b"{}")
    assert plain.status_code == 415
    assert client.get("/api/workflows/wait-1/history").json()[-1]["kind"] != "SignalReceived"
    sent = client.post(
        "/workflows/wait-1/signal", data={**form, "csrf": csrf_of(page)}, follow_redirects=False
    )
    assert sent.status_code == 303
    assert sent.headers["location"] == "/workflows/wait-1"


def test_read_only_shows_no_actions_and_refuses_every_post(
    shop_db: str, make_client: MakeClient
) -> None:
    with make_client(shop_db, read_only=True) as client:
        page = client.get("/workflows/wait-1").text
        assert 'name="csrf"' not in page and "read-only" in page
        for url in ("/api/workflows/wait-1/cancel", "/api/workflows", "/workflows/wait-1/pause"):
            response = client.post(url, headers=JSON, content=b"{}")
            assert response.status_code == 403, url
        assert client.get("/api/workflows/wait-1").json()["status"] == "RUNNING"


def test_hostile_ids_and_payloads_are_escaped_on_every_page(client: TestClient) -> None:
    pages = ["/", "/?name=ui_echo", f"/workflows/{quote(HOSTILE, safe='')}", "/stats"]
    for url in pages:
        html = client.get(url).text
        assert HOSTILE not in html, url
        assert "<script>alert" not in html, url
        assert len(re.findall(r"<script\b", html)) == 1, url  # console.js only
    html = client.get(f"/workflows/{quote(HOSTILE, safe='')}").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    filtered = client.get(f"/?id_prefix={quote(HOSTILE)}").text
    assert "<script>alert" not in filtered and 'value="&lt;script&gt;' in filtered


def test_hostile_signal_names_are_escaped(fresh: tuple[str, TestClient]) -> None:
    _, client = fresh
    sent = client.post(
        f"/api/workflows/wait-1/signal/{quote(HOSTILE, safe='')}", headers=JSON, json=HOSTILE
    )
    assert sent.status_code == 200, sent.text
    html = client.get("/workflows/wait-1").text
    assert "<script>alert" not in html


KEY = os.urandom(32)
KEYS = f"k1:{base64.b64encode(KEY).decode()}"


def test_encrypted_payloads_show_only_with_the_key(
    tmp_path: Path, app: ModuleType, make_client: MakeClient
) -> None:
    db = str(tmp_path / "vault.db")
    codec = duralog.AesGcmCodec({"k1": KEY}, "k1")
    with duralog.Engine(db, durability="normal", poll_interval=0.05, payload_codec=codec) as e:
        assert e.run(app.echo, "the secret", id="vault-1") == "the secret"
        waiting = e.start(app.waiter, "w", id="vault-2")
        wait_for(lambda: len(waiting.history()) >= 4)
    with make_client(db) as client:
        history = client.get("/api/workflows/vault-1/history").text
        page = client.get("/workflows/vault-1").text
        assert "the secret" not in history + page
        assert "&lt;encrypted: key k1&gt;" in page and "<encrypted: key k1>" in history
    from duralog._cli_common import Context
    from duralog.console.app import create_app
    from duralog.console.service import Console

    console = Console(Context(db, ("app_console",), codec))
    try:
        with TestClient(create_app(console), base_url="http://127.0.0.1") as client:
            assert "the secret" in client.get("/api/workflows/vault-1/history").text
            assert "the secret" in client.get("/workflows/vault-1").text
            sent = client.post("/api/workflows/vault-2/signal/x", headers=JSON, json=1)
            assert sent.status_code == 200, sent.text
    finally:
        console.close()
    with make_client(db) as client:  # no key: a payload would be stored in clear
        refused = client.post("/api/workflows/vault-2/signal/x", headers=JSON, json="clear")
        assert refused.status_code == 400
        assert "keeps its data encrypted" in refused.json()["error"]
