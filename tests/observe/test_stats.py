"""Metrics read from the log: ``collect``, ``duralog stats`` and its Prometheus output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import wait_for

import duralog
from duralog.cli import main
from duralog.observe.metrics import BUCKETS, Stats, WorkflowMetrics, prometheus_text


@duralog.step(retry=duralog.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
def st_pay(order: str) -> str:
    if order.startswith("bad") or (order.startswith("flaky") and duralog.step_info().attempt == 1):
        raise ConnectionError(f"payments down for {order}")
    return f"paid {order}"


@duralog.step
def st_ship(order: str) -> str:
    return f"shipped {order}"


@duralog.workflow(name="st_order")
async def st_order(order: str) -> str:
    await st_pay(order)
    return await st_ship(order)


@duralog.workflow(name="st_wait")
async def st_wait() -> None:
    await duralog.sleep(3600)


@duralog.workflow(name="st_again")
async def st_again(n: int) -> int:
    if n:
        duralog.continue_as_new(n - 1)
    return n


def populate(engine: duralog.Engine) -> None:
    for order in ("ok-1", "ok-2", "flaky-1"):
        engine.run(st_order, order, timeout=10)
    with pytest.raises(duralog.WorkflowFailed):
        engine.run(st_order, "bad-1", timeout=10)
    engine.run(st_again, 2, timeout=10)
    waiting = engine.start(st_wait)
    wait_for(lambda: any(e.kind == "TimerStarted" for e in waiting.history()))


def test_counts_durations_retries_and_failures(engine: duralog.Engine) -> None:
    populate(engine)
    stats = engine.stats()
    workflows = {w.name: w for w in stats.workflows}
    order = workflows["st_order"]
    assert (order.started, order.completed, order.failed, order.running) == (4, 3, 1, 0)
    assert order.duration.count == 4 and order.duration.max is not None
    assert (workflows["st_again"].started, workflows["st_again"].continued) == (3, 2)
    assert workflows["st_again"].completed == 1
    assert (workflows["st_wait"].started, workflows["st_wait"].running) == (1, 1)
    steps = {s.name: s for s in stats.steps}
    pay = steps["st_pay"]
    assert (pay.calls, pay.attempts, pay.completed, pay.failed, pay.retries) == (4, 7, 3, 1, 3)
    assert pay.errors == {"ConnectionError": 4}
    assert pay.attempt_duration.count == 7 and pay.duration.count == 4
    assert pay.duration.buckets[-1] == 4  # every one of them under a day
    assert (steps["st_ship"].calls, steps["st_ship"].completed) == (3, 3)

    only = engine.stats(name="st_again")
    assert [w.name for w in only.workflows] == ["st_again"] and only.steps == []


def test_since_counts_only_the_window(engine: duralog.Engine) -> None:
    engine.run(st_order, "ok-early", timeout=10)
    boundary = time.time()
    time.sleep(0.01)  # event times are wall-clock: step past the boundary
    engine.run(st_order, "flaky-late", timeout=10)
    stats = engine.stats(since=boundary)
    (order,) = stats.workflows
    assert (order.started, order.completed) == (1, 1)
    (pay,) = [s for s in stats.steps if s.name == "st_pay"]
    assert (pay.calls, pay.attempts, pay.retries) == (1, 2, 1)
    assert stats.since == boundary


def _invoke(*args: str) -> Any:
    env: dict[str, str | None] = {"DURALOG_DB": None, "DURALOG_APP": None}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)


def test_the_cli_prints_tables_json_and_prometheus(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        populate(engine)
    text = _invoke("--db", db, "stats")
    assert text.exit_code == 0, text.output
    assert re.search(r"st_order\s+4\s+3\s+1\s+0\s+0\s+0\s+0", text.output), text.output
    assert re.search(r"st_pay\s+4\s+7\s+3\s+1\s+3\s+0", text.output), text.output
    assert "4  st_pay: ConnectionError" in text.output

    as_json = _invoke("--db", db, "stats", "--since", "1h", "--json")
    data = json.loads(as_json.output)
    assert {w["name"]: w["started"] for w in data["workflows"]}["st_order"] == 4

    prom = _invoke("--db", db, "stats", "--prometheus")
    assert prom.exit_code == 0
    families = parse_exposition(prom.output)
    assert families["duralog_workflows_started_total"][("st_order",)] == 4
    assert families["duralog_step_retries_total"][("st_pay",)] == 3
    assert families["duralog_step_errors_total"][("ConnectionError", "st_pay")] == 4
    assert families["duralog_workflows_running"][("running", "st_wait")] == 1
    assert families["duralog_step_attempt_duration_seconds"][("st_pay", "+Inf")] == 7

    both = _invoke("--db", db, "stats", "--json", "--prometheus")
    assert both.exit_code == 2 and "one of" in both.output


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> dict[str, dict[tuple[str, ...], float]]:
    """A strict reader of the text format: every family declared before its samples,
    histogram buckets cumulative and ending at +Inf == _count. A sample's key is its
    label values in the order of the label names, ``le`` last (prometheus_client
    writes the labels sorted by name)."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    families: dict[str, dict[tuple[str, ...], float]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name not in types
            types[name] = kind
            families[name] = {}
            continue
        found = _SAMPLE.match(line)
        assert found, line
        name, value = found["name"], float(found["value"])
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"sample before its TYPE line: {line}"
        pairs = sorted(_LABEL.findall(found["labels"] or ""), key=lambda p: (p[0] == "le", p[0]))
        labels = tuple(v for _, v in pairs)
        if name.endswith("_bucket") or name == family:
            families[family][labels] = value
        elif name.endswith("_count"):
            assert families[family][(*labels, "+Inf")] == value
    for name, kind in types.items():
        if kind != "histogram":
            continue
        series: dict[tuple[str, ...], list[float]] = {}
        for labels, value in families[name].items():
            series.setdefault(labels[:-1], []).append(value)
        for counts in series.values():
            assert len(counts) == len(BUCKETS) + 1 and counts == sorted(counts)
    return families


def test_labels_are_escaped() -> None:
    stats = Stats(since=None, at=0.0, workflows=[WorkflowMetrics(name='we"ird\\name\nx')], steps=[])
    text = prometheus_text(stats)
    assert 'workflow="we\\"ird\\\\name\\nx"' in text
    parse_exposition(text)


def test_prometheus_client_reads_back_what_collect_counted(db: str) -> None:
    with duralog.Engine(db, durability="normal", poll_interval=0.05) as engine:
        populate(engine)
        stats = engine.stats()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    kinds = {}
    for family in text_string_to_metric_families(stats.prometheus()):
        kinds[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value

    def value(name: str, **labels: str) -> float:
        return samples[name, frozenset(labels.items())]

    assert kinds["duralog_workflows_started"] == "counter"
    assert kinds["duralog_workflows_running"] == "gauge"
    assert kinds["duralog_step_duration_seconds"] == "histogram"
    for wf in stats.workflows:
        assert value("duralog_workflows_started_total", workflow=wf.name) == wf.started
        for outcome in ("completed", "failed", "cancelled", "continued"):
            found = value("duralog_workflows_finished_total", workflow=wf.name, outcome=outcome)
            assert found == getattr(wf, outcome)
        for status in ("running", "suspended"):
            found = value("duralog_workflows_running", workflow=wf.name, status=status)
            assert found == getattr(wf, status)
        assert value("duralog_workflow_duration_seconds_count", workflow=wf.name) == (
            wf.duration.count
        )
        assert value("duralog_workflow_duration_seconds_sum", workflow=wf.name) == pytest.approx(
            wf.duration.sum
        )
    for step in stats.steps:
        for field in ("calls", "attempts", "completed", "failed", "retries", "circuit_open"):
            assert value(f"duralog_step_{field}_total", step=step.name) == getattr(step, field)
        for error, count in step.errors.items():
            assert value("duralog_step_errors_total", step=step.name, error=error) == count
        for bound, count in zip(BUCKETS, step.attempt_duration.buckets, strict=True):
            found = value(
                "duralog_step_attempt_duration_seconds_bucket", step=step.name, le=str(bound)
            )
            assert found == count
        assert (
            value("duralog_step_attempt_duration_seconds_bucket", step=step.name, le="+Inf")
            == step.attempt_duration.count
        )
    assert value("duralog_step_retries_total", step="st_pay") == 3


def test_two_renderings_do_not_share_a_registry() -> None:
    """Each rendering has a registry of its own: the global one stays empty of duralog's
    families, and two stats render side by side (as two engines in one process would)."""
    one = Stats(since=None, at=0.0, workflows=[WorkflowMetrics(name="a", started=1)], steps=[])
    two = Stats(since=None, at=0.0, workflows=[WorkflowMetrics(name="b", started=2)], steps=[])
    assert 'workflow="a"} 1.0' in prometheus_text(one)
    text = prometheus_text(two)
    assert 'workflow="b"} 2.0' in text and 'workflow="a"' not in text
    assert b"duralog_" not in generate_latest(REGISTRY)


def test_prometheus_client_loads_only_with_the_exposition(tmp_path: Any) -> None:
    """``import duralog`` and ``engine.stats()`` leave prometheus_client unloaded; the
    exposition loads it."""
    code = (
        "import sys, duralog\n"
        "engine = duralog.Engine(sys.argv[1], worker=False)\n"
        "stats = engine.stats()\n"
        "print('prometheus_client' in sys.modules)\n"
        "stats.prometheus()\n"
        "print('prometheus_client' in sys.modules)\n"
        "engine.close()\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "log.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert found.stdout.split() == ["False", "True"], found.stderr
