"""The pages: ``/``, ``/workflows/{id}``, ``/queues``, ``/schedules``, ``/stats``, read
as HTML, and their forms; and the timeline's layout."""

from __future__ import annotations

import re
from types import ModuleType
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

import duralog
from duralog.console import timeline
from duralog.store import events as ev
from duralog.store.events import LogEntry


def rows(html: str) -> list[str]:
    """The workflow ids of the list's rows, in order."""
    return [
        m.replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'")
        for m in re.findall(r'<a class="wf" href="[^"]*">([^<]*)</a>', html)
    ]


def test_the_list_counts_filters_and_pages(client: TestClient) -> None:
    html = client.get("/").text
    assert re.search(r"RUNNING <b>1</b>", html) and re.search(r"COMPLETED <b>\d+</b>", html)
    everyone = rows(html)
    assert everyone[0] == "wait-1" and "retry-1" in everyone
    assert rows(client.get("/?status=RUNNING").text) == ["wait-1"]
    assert sorted(rows(client.get("/?id_prefix=echo-").text)) == ["echo-1", "echo-2", "echo-3"]
    first = client.get("/?limit=3").text
    assert rows(first) == everyone[:3]
    next_url = re.search(r'<a class="next" href="([^"]+)"', first)
    assert next_url is not None
    second = client.get(next_url.group(1).replace("&amp;", "&")).text
    assert rows(second) == everyone[3:6]
    assert "first page" in second


def test_the_list_shows_steps_and_retries(client: TestClient) -> None:
    html = client.get("/?id_prefix=retry-").text
    assert "<th>steps</th><th>retries</th>" in html
    row = re.search(r'<a class="wf" href="/workflows/retry-1">.*?</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r'<td class="num[^"]*">(\d+)</td>', row.group(0))
    assert cells == ["1", "2"]  # one step, called once, retried twice


def test_a_workflow_page_draws_one_bar_per_attempt(client: TestClient) -> None:
    html = client.get("/workflows/retry-1").text
    bars = re.findall(r'<rect class="shape (\w+)"', html)
    assert bars == ["retried", "retried", "attempt"]  # two failed attempts, then success
    assert html.count('<circle class="shape end"') == 1
    assert re.search(r"<title>#3-#4 StepRetrying: ui_flaky attempt 1 failed", html)
    assert "<td>StepRetrying</td>" in html
    assert 'max="9" value="9"' in html  # the time-travel slider, at the last event


def test_a_parent_links_its_child_and_its_timer(client: TestClient) -> None:
    child = client.get("/api/workflows?parent=parent-1").json()["workflows"][0]["id"]
    html = client.get("/workflows/parent-1").text
    assert child == "parent-1/4"  # a child's id holds a slash: it is quoted in links
    assert f'href="/workflows/{quote(child, safe="")}"' in html
    assert re.search(r'<rect class="shape timer"', html)
    assert re.search(r'<rect class="shape child"', html)
    assert 'href="/workflows/parent-1"' in client.get(f"/workflows/{quote(child, safe='')}").text


def test_time_travel_without_script_is_a_seq_in_the_address(client: TestClient) -> None:
    html = client.get("/workflows/retry-1?at=4").text
    assert "seq 4 of 9" in html
    assert "&#34;last_seq&#34;: 4" in html


def test_the_replay_check_is_shown_on_demand(client: TestClient) -> None:
    assert "agrees" not in client.get("/workflows/retry-1").text
    assert (
        "retry-1 (ui_retrying): agrees (replayed 9 of 9 events"
        in client.get("/workflows/retry-1?replay=1").text
    )


def test_actions_from_the_page(fresh: tuple[str, TestClient]) -> None:
    _, client = fresh
    page = client.get("/workflows/wait-1").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    for action in ("pause", "resume", "cancel"):
        assert f'action="/workflows/wait-1/{action}"' in page
        done = client.post(f"/workflows/wait-1/{action}", data={"csrf": csrf.group(1)})
        assert done.status_code == 200  # followed the redirect back to the page
    inbox = client.get("/api/workflows/wait-1").json()["inbox"]
    assert [i["kind"] for i in inbox] == ["PauseRequested", "ResumeRequested", "CancelRequested"]
    bad = client.post("/workflows/wait-1/signal", data={"csrf": csrf.group(1), "payload": "{"})
    assert bad.status_code == 400 and "not valid JSON" in bad.text


def test_queues_schedules_and_stats_pages(client: TestClient) -> None:
    # The queues declared in this process (other tests' too) and those of the log.
    queues = client.get("/api/queues").json()
    page = client.get("/queues").text
    assert all(f">{q['name']}</a>" in page for q in queues)
    assert "no queues" in page if not queues else "no queues" not in page
    assert "no schedules" in client.get("/schedules").text
    stats = client.get("/stats").text
    assert "ui_flaky" in stats and "ui_retrying" in stats
    assert client.get("/stats?since=nonsense").status_code == 400


def test_the_stats_page_charts_the_series(client: TestClient) -> None:
    html = client.get("/stats?since=1d").text
    for chart in ("throughput", "steps", "latency", "failures"):
        assert f'<figure class="chart" id="chart-{chart}">' in html
    figures = dict(re.findall(r'id="chart-(\w+)">(.*?)</figure>', html, re.S))
    # retry-1's two retries are drawn in the failures chart, its attempts' latency as
    # dots of p50, p95 and p99, the completed runs as bars of their outcome.
    retries = re.findall(r"<title>[^<]*: (\d+) retries</title>", figures["failures"])
    assert sum(int(n) for n in retries) == 2
    for quantile in ("p50", "p95", "p99"):
        assert f'data-series="{quantile}"' in figures["latency"]
        assert re.search(rf"<title>[^<]*: {quantile} [\d.]+ m?s \(\d+ attempts\)", html)
    done = re.findall(r"<title>[^<]*: (\d+) completed</title>", figures["throughput"])
    assert sum(int(n) for n in done) == 7  # retry-1, echo-1..3, parent-1 and its child, hostile
    assert "<script" not in html.split("<main", 1)[1].split("</main>", 1)[0]


def test_static_files_are_ours(client: TestClient) -> None:
    script = client.get("/static/console.js")
    assert script.status_code == 200 and "EventSource" in script.text
    assert "http" not in script.text.replace("text/html", "")  # nothing from elsewhere
    assert client.get("/static/console.css").status_code == 200


def _history(delays: list[tuple[int, float]]) -> list[LogEntry]:
    """A workflow whose one step takes ``len(delays)`` attempts: each (failed?, gap)."""
    raw = ev.NULL
    at = 1000.0
    entries = [
        LogEntry(1, at, ev.WorkflowStarted(name="w", args=raw)),
        LogEntry(2, at, ev.StepScheduled(name="s", args=raw)),
    ]
    for attempt, (_, gap) in enumerate(delays, 1):
        at += gap
        entries.append(LogEntry(len(entries) + 1, at, ev.StepStarted(step_seq=2, attempt=attempt)))
        at += gap
        last = attempt == len(delays)
        ended: ev.Event = (
            ev.StepCompleted(step_seq=2, result=raw)
            if last
            else ev.StepRetrying(step_seq=2, attempt=attempt, error=_error(), next_attempt_at=at)
        )
        entries.append(LogEntry(len(entries) + 1, at, ended))
    return entries


def _error() -> ev.ErrorDetails:
    return ev.ErrorDetails(type="E", message="m", traceback="")


@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0.0, 1e5)), min_size=1, max_size=20))
def test_the_layout_has_one_bar_per_attempt_inside_the_drawing(
    delays: list[tuple[int, float]],
) -> None:
    entries = _history(delays)
    drawn = timeline.layout(entries, now=entries[-1].at + 1)
    bars = [s for s in drawn.shapes if s.width > 0]
    assert len(bars) == len(delays)
    assert [b.kind for b in bars] == ["retried"] * (len(delays) - 1) + ["attempt"]
    for shape in drawn.shapes:
        assert 0 <= shape.x <= timeline.WIDTH + 1
        assert shape.x + shape.width <= timeline.WIDTH + 2
    assert [b.x for b in bars] == sorted(b.x for b in bars)


def test_the_runs_of_a_continue_as_new_chain_are_linked(
    fresh: tuple[str, TestClient], app: ModuleType
) -> None:
    db, client = fresh
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        assert engine.run(app.countdown, 2, id="count") == 0
    current = client.get("/workflows/count").text
    for run in ("count~run1", "count~run2"):
        assert f'href="/workflows/{quote(run, safe="")}"' in current
    archived = client.get(f"/workflows/{quote('count~run1', safe='')}").text
    assert 'href="/workflows/count"' in archived
    assert (
        "runs"
        not in re.sub(r"<[^>]+>", "", client.get("/workflows/retry-1").text).split("timeline")[0]
    )
