"""The console's web application: its routes, the JSON API under ``/api/`` and the
pages (Starlette, Jinja2 with autoescaping). ``create_app(console)`` builds it over
a ``Console``; ``duralog ui`` serves it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from duralog import _format
from duralog._cli_common import Problem
from duralog.errors import DuralogError
from duralog.replay.debug import report_text
from duralog.replay.history import entry_json

from . import charts, timeline
from .guard import Guard
from .service import ACTIONS, STATUSES, Console, Refused, refused

HERE = Path(__file__).resolve().parent
log = logging.getLogger("duralog.console")
_FORM = "application/x-www-form-urlencoded"


def create_app(console: Console) -> Guard:
    """The ASGI application serving ``console`` (its pages and ``/api/``), behind its
    ``Guard`` (host, token, read-only and CSRF checks)."""
    pages = _Pages(console)
    api = _Api(console)
    routes = [
        Route("/api/workflows", api.workflows, methods=["GET"]),
        Route("/api/workflows", api.start, methods=["POST"]),
        Route("/api/events", api.events, methods=["GET"]),
        Route("/api/queues", api.queues, methods=["GET"]),
        Route("/api/schedules", api.schedules, methods=["GET"]),
        Route("/api/stats", api.stats, methods=["GET"]),
        Route("/api/workflows/{workflow_id:path}/history", api.history, methods=["GET"]),
        Route("/api/workflows/{workflow_id:path}/state", api.state, methods=["GET"]),
        Route("/api/workflows/{workflow_id:path}/replay", api.replay, methods=["GET"]),
        Route("/api/workflows/{workflow_id:path}/signal/{name:path}", api.signal, methods=["POST"]),
        Route("/api/workflows/{workflow_id:path}/{action}", api.act, methods=["POST"]),
        Route("/api/workflows/{workflow_id:path}", api.workflow, methods=["GET"]),
        Route("/", pages.workflows, methods=["GET"]),
        Route("/queues", pages.queues, methods=["GET"]),
        Route("/schedules", pages.schedules, methods=["GET"]),
        Route("/schedules/{schedule_id:path}/{action}", pages.schedule_act, methods=["POST"]),
        Route("/stats", pages.stats, methods=["GET"]),
        Route("/workflows/{workflow_id:path}/signal", pages.signal, methods=["POST"]),
        Route("/workflows/{workflow_id:path}/{action}", pages.act, methods=["POST"]),
        Route("/workflows/{workflow_id:path}", pages.workflow, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers = {Refused: _refused, DuralogError: _refused, Problem: _refused}
    app = Starlette(routes=routes, exception_handlers=handlers)
    return Guard(app, token=console.token, read_only=console.read_only)


async def _refused(request: Request, exc: Exception) -> Response:
    """A ``Refused`` (or an error of duralog's, or a CLI ``Problem``) as one JSON error
    under ``/api/``, an error page elsewhere: never a traceback."""
    exc = refused(exc)
    if request.url.path.startswith("/api/"):
        return _json({"error": exc.message}, exc.status)
    return HTMLResponse(
        _render("error.html", status=exc.status, message=exc.message, read_only=False, csrf=""),
        exc.status,
    )


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status, media_type="application/json")


def _int(request: Request, key: str, default: int | None = None) -> int | None:
    text = request.query_params.get(key)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise Refused(400, f"{key} must be a whole number, not {text[:40]!r}") from None


def _params(request: Request) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        found.setdefault(key, []).append(value)
    return found


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Refused(400, "the request body is nested too deeply to be recorded") from None


class _Api:
    """``/api/``: what the CLI prints with ``-o json``, and its actions."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def workflows(self, request: Request) -> Response:
        query = self.console.query(_params(request))
        page = self.console.find(query, _int(request, "limit", 100) or 0)
        return _json({"workflows": page.rows(), "next_after": page.next_after})

    def workflow(self, request: Request) -> Response:
        return _json(self.console.show(request.path_params["workflow_id"]))

    def history(self, request: Request) -> Response:
        body = self.console.history_json(request.path_params["workflow_id"])
        return Response(body, media_type="application/json")

    def state(self, request: Request) -> Response:
        at = _int(request, "at")
        return _json(self.console.state(request.path_params["workflow_id"], at))

    def replay(self, request: Request) -> Response:
        return _json(self.console.replay_check(request.path_params["workflow_id"]))

    def queues(self, request: Request) -> Response:
        return _json(self.console.queues())

    def schedules(self, request: Request) -> Response:
        return _json(self.console.schedules())

    def stats(self, request: Request) -> Response:
        return _json(self.console.stats(request.query_params.get("since") or None).data())

    async def start(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise Refused(400, 'the body must be a JSON object: {"name": ..., "args": [...]}')
        args = body.get("args", [])
        workflow_id, queue = body.get("id"), body.get("queue")
        if not isinstance(args, list):
            raise Refused(400, "args must be a JSON array of positional arguments")
        if not all(v is None or isinstance(v, str) for v in (workflow_id, queue)):
            raise Refused(400, "id and queue must be strings")
        found = await run_in_threadpool(self.console.start, body["name"], args, workflow_id, queue)
        return _json(found, 201)

    async def signal(self, request: Request) -> Response:
        payload = await _json_body(request)
        workflow_id, name = request.path_params["workflow_id"], request.path_params["name"]
        return _json(await run_in_threadpool(self.console.signal, workflow_id, name, payload))

    async def act(self, request: Request) -> Response:
        body = await _json_body(request)
        reason = body.get("reason", "") if isinstance(body, dict) else ""
        if not isinstance(reason, str):
            raise Refused(400, "reason must be a string")
        workflow_id, action = request.path_params["workflow_id"], request.path_params["action"]
        return _json(await run_in_threadpool(self.console.act, workflow_id, action, reason))

    async def events(self, request: Request) -> Response:
        """Server-sent events: one ``data:`` line per appended event (as ``duralog tail
        -o jsonl``), and a comment every 15 s to keep proxies from closing it."""
        stop = threading.Event()
        lines: asyncio.Queue[str | None] = asyncio.Queue()  # None: the stream ends
        loop = asyncio.get_running_loop()
        try:
            interval = min(max(float(request.query_params.get("interval") or 0.5), 0.05), 10.0)
        except ValueError:
            raise Refused(400, "interval must be a number of seconds") from None
        found = await run_in_threadpool(self.console.events, stop, interval)

        def put(line: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has gone: we are done
                loop.call_soon_threadsafe(lines.put_nowait, line)

        def pump() -> None:
            try:
                for line in found:
                    put(line)
            except DuralogError as exc:  # the log went away (the console is closing)
                log.warning("duralog console: the event stream ends: %s", exc)
            finally:
                put(None)

        threading.Thread(target=pump, name="duralog-console-events", daemon=True).start()

        async def stream() -> AsyncIterator[str]:
            try:
                yield ": duralog events\n\n"
                while True:
                    try:
                        line = await asyncio.wait_for(lines.get(), 15)
                    except TimeoutError:
                        yield ": still here\n\n"
                        continue
                    if line is None:
                        return
                    yield f"data: {line}\n\n"
            finally:
                stop.set()

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


class _Pages:
    """The HTML pages, and the form posts of their actions."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def _page(self, name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(
            _render(name, read_only=self.console.read_only, csrf=self.console.csrf, **context)
        )

    def workflows(self, request: Request) -> HTMLResponse:
        params = _params(request)
        query = self.console.query(params)
        page = self.console.find(query, _int(request, "limit", 50) or 0)
        kept = {k: v for k, v in params.items() if k not in ("after", "token")}
        next_url = (
            "/?" + urlencode({**kept, "after": page.next_after}, doseq=True)
            if page.next_after
            else None
        )
        return self._page(
            "workflows.html",
            counts=self.console.counts(),
            records=page.records,
            counts_of=page.counts,
            next_url=next_url,
            first_url="/?" + urlencode(kept, doseq=True) if "after" in params else None,
            filters={k: (v[-1] if v else "") for k, v in params.items()},
            statuses=[s.value for s in STATUSES],
            now=time.time(),
        )

    def workflow(self, request: Request) -> HTMLResponse:
        workflow_id = request.path_params["workflow_id"]
        record = self.console.record(workflow_id)
        events = self.console.history(workflow_id)
        # The state at an event is the slider's (it asks the API); rendered here only
        # when the address asks for one, as a page without script does.
        at = _int(request, "at")
        state = self.console.state(workflow_id, at, events) if at is not None else None
        report = None
        if request.query_params.get("replay"):
            report = report_text(self.console.replay_check(workflow_id))
        children = self.console.children(events)
        runs = self.console.runs(workflow_id, events)
        return self._page(
            "workflow.html",
            record=record,
            events=events,
            steps=_step_names(events),
            at=len(events) if at is None else at,
            state=json.dumps(state, indent=2) if state is not None else "",
            report=report,
            can_replay=bool(self.console.ctx.apps),
            children=children,
            runs=runs,
            drawing=timeline.layout(events, time.time()),
            actions=ACTIONS,
        )

    def queues(self, request: Request) -> HTMLResponse:
        return self._page("queues.html", queues=self.console.queues())

    def schedules(self, request: Request) -> HTMLResponse:
        return self._page("schedules.html", schedules=self.console.schedules())

    def stats(self, request: Request) -> HTMLResponse:
        found = self.console.stats(request.query_params.get("since") or None)
        return self._page(
            "stats.html",
            stats=found.stats,
            series=found.series,
            charts=charts.charts(found.series),
            left=charts.LEFT,
            since=request.query_params.get("since", ""),
        )

    async def _form(self, request: Request) -> dict[str, str]:
        """The fields of a posted form (urlencoded, as browsers send one), once its CSRF
        value is checked."""
        if request.headers.get("content-type", "").split(";")[0].strip() != _FORM:
            raise Refused(415, f"a form is posted as {_FORM}")
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if not hmac.compare_digest(form.get("csrf", "").encode(), self.console.csrf.encode()):
            raise Refused(403, "this form is stale or from another site: reload the page")
        return form

    async def signal(self, request: Request) -> Response:
        form = await self._form(request)
        workflow_id = request.path_params["workflow_id"]
        text = str(form.get("payload") or "null")
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Refused(400, f"the signal's payload is not valid JSON: {exc}") from None
        name = str(form.get("name") or "")
        await run_in_threadpool(self.console.signal, workflow_id, name, payload)
        return RedirectResponse(workflow_url(workflow_id), 303)

    async def act(self, request: Request) -> Response:
        form = await self._form(request)
        workflow_id, action = request.path_params["workflow_id"], request.path_params["action"]
        reason = str(form.get("reason") or "")
        await run_in_threadpool(self.console.act, workflow_id, action, reason)
        return RedirectResponse(workflow_url(workflow_id), 303)

    async def schedule_act(self, request: Request) -> Response:
        await self._form(request)
        schedule_id, action = request.path_params["schedule_id"], request.path_params["action"]
        await run_in_threadpool(self.console.set_schedule, schedule_id, action)
        return RedirectResponse("/schedules", 303)


def workflow_url(workflow_id: str) -> str:
    """The address of a workflow's page (any character of the id is quoted)."""
    return "/workflows/" + quote(workflow_id, safe="")


def _step_names(events: list[Any]) -> dict[int, str]:
    return {e.seq: e.event.name for e in events if e.kind == "StepScheduled"}


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["when"] = _format.when
_ENV.filters["workflow_url"] = workflow_url
_ENV.filters["payload"] = _format.payload
_ENV.filters["quote"] = lambda text: quote(str(text), safe="")
_ENV.filters["seconds"] = charts.seconds


def _describe(entry: Any, steps: Mapping[int, str]) -> str:
    return _format.describe(entry, dict(steps))


_ENV.globals["describe"] = _describe
_ENV.globals["entry_json"] = lambda entry: entry_json(entry).decode()


def _render(name: str, **context: Any) -> str:
    return _ENV.get_template(name).render(**context)
