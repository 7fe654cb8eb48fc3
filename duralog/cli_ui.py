"""``duralog ui``: the web console and JSON API over the log (``duralog[ui]``)."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import threading
import webbrowser

import click

from duralog._cli_common import Command, Context, Problem, friendly, pass_context

#: What a token may hold: it travels in a header and a cookie as it is.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{16,}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8265, show_default=True)
@click.option("--read-only", is_flag=True, help="No actions: every POST is answered 403.")
@click.option("--open", "open_browser", is_flag=True, help="Open the console in a browser.")
@click.option(
    "--token",
    envvar="DURALOG_UI_TOKEN",
    help="Require this token with every request (env DURALOG_UI_TOKEN; needed to listen "
    "on an address other than loopback; 16 or more of A-Z a-z 0-9 . _ ~ + / = -).",
)
@pass_context
@friendly
def ui(
    ctx: Context, host: str, port: int, read_only: bool, open_browser: bool, token: str | None
) -> None:
    """Serve the web console and the JSON API (/api/) over the log.

    Pages: / (workflows), /workflows/ID (timeline, events, time travel, replay
    check with --app, actions), /queues, /schedules, /stats. It listens on
    loopback unless told otherwise; any other address needs --token, which every
    request must then carry (Authorization: Bearer TOKEN, or open
    /?token=TOKEN once in a browser). Needs the extra: pip install 'duralog[ui]'.

    \b
    Example:
      duralog --db shop.db --app shop.workflows ui --open
      DURALOG_UI_TOKEN=$(openssl rand -hex 24) duralog --db shop.db ui --host 0.0.0.0
    """
    try:
        import uvicorn

        from duralog.console.app import create_app
        from duralog.console.service import Console
    except ImportError as exc:
        raise Problem(
            f"duralog ui needs the ui extra ({exc.name} is missing): pip install 'duralog[ui]'",
            2,
        ) from None
    if token is not None and not _TOKEN.fullmatch(token):
        raise Problem(
            "--token must be 16 or more of A-Z a-z 0-9 . _ ~ + / = - (e.g. openssl rand -hex 24)",
            2,
        )
    if token is None and not _loopback(host):
        raise Problem(
            f"--host {host} is not a loopback address: give --token (or set "
            "DURALOG_UI_TOKEN) so that only holders of it can use the console",
            2,
        )
    console = Console(ctx, read_only=read_only, token=token)
    try:
        config = uvicorn.Config(
            create_app(console),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,  # open event streams do not end by themselves
        )
        server = uvicorn.Server(config)
        shown = f"[{host}]" if ":" in host else host
        address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}/"
        click.echo(f"duralog console on {address} serving {ctx.where} (Ctrl-C to stop)", err=True)
        if open_browser:
            threading.Timer(0.5, webbrowser.open, [address]).start()
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once stopped
            server.run()
    finally:
        console.close()
    click.echo("console stopped", err=True)
