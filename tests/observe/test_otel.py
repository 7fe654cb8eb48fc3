"""OpenTelemetry traces (``duralog.observe.otel``), read back from the SDK's in-memory
exporter: one span per run and per step attempt, their parents, attributes and events,
on SQLite and PostgreSQL. The trace across a SIGKILL is in test_otel_crash.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import duralog
from duralog.errors import ConfigurationError
from duralog.observe import otel
from duralog.observe.otel import instrument
from duralog.store import events as ev
from duralog.store.crypto import AesGcmCodec

RETRY_ONCE = duralog.RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=False)


@duralog.step(retry=RETRY_ONCE)
def ot_flaky(x: int) -> int:
    if duralog.step_info().attempt == 1:
        raise ConnectionError(f"attempt 1 of {x} fails")
    return x


@duralog.step
def ot_double(x: int) -> int:
    return 2 * x


@duralog.step(retry=duralog.RetryPolicy(max_attempts=1))
def ot_broken(secret: str) -> None:
    raise ValueError(f"cannot use {secret}")


#: The span current inside each ``ot_peek`` attempt (sync and async), by label.
seen_inside: dict[str, int] = {}


@duralog.step
def ot_peek(label: str) -> None:
    seen_inside[label] = trace.get_current_span().get_span_context().span_id


@duralog.step
async def ot_peek_async(label: str) -> None:
    seen_inside[label] = trace.get_current_span().get_span_context().span_id


@duralog.workflow(name="ot_peeking")
async def ot_peeking(label: str) -> None:
    await ot_peek(f"{label}-sync")
    await ot_peek_async(f"{label}-async")


@duralog.workflow(name="ot_child")
async def ot_child(x: int) -> int:
    return await ot_double(x)


@duralog.workflow(name="ot_parent")
async def ot_parent(x: int) -> int:
    y = await ot_flaky(x)
    await duralog.sleep(0.01)
    duralog.publish("stage", "slept")
    bonus: int = await duralog.wait_signal("bonus")
    z = await ot_child(y + bonus)
    return await ot_double(z)


@duralog.workflow(name="ot_failing")
async def ot_failing(secret: str) -> None:
    await ot_broken(secret)


@duralog.workflow(name="ot_again")
async def ot_again(n: int) -> int:
    await ot_double(n)
    if n:
        duralog.continue_as_new(n - 1)
    return n


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file, or a fresh PostgreSQL schema (skipped without a server)."""
    if request.param == "sqlite":
        return str(tmp_path / "traced.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    yield memory
    memory.clear()


def traced(store: str, exporter: InMemorySpanExporter, **options: object) -> duralog.Engine:
    """An engine whose spans go to ``exporter`` (its own provider, not the global one)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = duralog.Engine(store, **options)  # type: ignore[arg-type]
    instrument(engine, tracer_provider=provider)
    return engine


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_run_is_a_span_with_a_child_span_per_step_attempt(
    store: str, exporter: InMemorySpanExporter
) -> None:
    with traced(store, exporter) as engine:
        handle = engine.start(ot_parent, 5, id="order-5")
        assert handle.get_event("stage", timeout=30) == "slept"
        handle.signal("bonus", 1)
        assert handle.result(timeout=30) == 24
        history = handle.history()
    spans = exporter.get_finished_spans()
    (run,) = named(spans, "workflow ot_parent")
    (child,) = named(spans, "workflow ot_child")
    flaky = named(spans, "step ot_flaky")
    doubles = named(spans, "step ot_double")
    assert [s.attributes["duralog.attempt"] for s in flaky] == [1, 2]  # type: ignore[index]
    assert len(doubles) == 2
    # One trace; steps under their run, the child's run under its parent's.
    assert {s.context.trace_id for s in spans} == {run.context.trace_id}
    assert run.parent is None
    assert parent_id(child) == run.context.span_id
    for span in flaky:
        assert parent_id(span) == run.context.span_id
    assert sorted(parent_id(s) or 0 for s in doubles) == sorted(
        [run.context.span_id, child.context.span_id]
    )
    # The attributes a step attempt carries, the same key for both attempts.
    first, second = flaky
    run_id = history[0].event.run_id  # type: ignore[union-attr]
    assert dict(first.attributes or {}) == {
        "duralog.workflow_id": "order-5",
        "duralog.step": "ot_flaky",
        "duralog.seq": 2,
        "duralog.attempt": 1,
        "duralog.idempotency_key": f"order-5:{run_id}:2",
        "duralog.outcome": "retrying",
    }
    assert second.attributes["duralog.idempotency_key"] == f"order-5:{run_id}:2"  # type: ignore[index]
    # The failed attempt: error status and the exception; the retry succeeded.
    assert first.status.status_code is StatusCode.ERROR
    (exception,) = [e for e in first.events if e.name == "exception"]
    assert exception.attributes == {
        "exception.type": "ConnectionError",
        "exception.message": "attempt 1 of 5 fails",
        "exception.stacktrace": exception.attributes["exception.stacktrace"],  # type: ignore[index]
    }
    assert "ConnectionError" in str(exception.attributes["exception.stacktrace"])  # type: ignore[index]
    assert second.status.status_code is StatusCode.UNSET
    assert second.attributes["duralog.outcome"] == "completed"  # type: ignore[index]
    # Timers, the signal, published state and the child are events of the run's span.
    names = [e.name for e in run.events]
    assert names == [
        "timer started",
        "timer fired",
        "state published",
        "signal received",
        "child started",
        "child completed",
    ]
    by_name = {e.name: dict(e.attributes or {}) for e in run.events}
    assert by_name["signal received"]["duralog.signal"] == "bonus"
    assert by_name["state published"]["duralog.key"] == "stage"
    assert by_name["child started"]["duralog.child_workflow"] == "ot_child"
    assert run.attributes["duralog.outcome"] == "completed"  # type: ignore[index]
    # Times come from the log: each span within its run's.
    assert run.start_time is not None and run.end_time is not None
    for span in spans:
        assert span.start_time is not None and span.end_time is not None
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
    # The run's span context is recorded in its first event.
    started = history[0].event
    assert isinstance(started, ev.WorkflowStarted)
    context = run.context
    assert started.trace == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )


def test_the_span_current_at_start_is_the_runs_parent(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    engine = traced(str(tmp_path / "web.db"), exporter)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("web")
    with engine:
        with tracer.start_as_current_span("POST /orders"):
            handle = engine.start(ot_child, 3)
        assert handle.result(timeout=30) == 6
    spans = exporter.get_finished_spans()
    (request,) = named(spans, "POST /orders")
    (run,) = named(spans, "workflow ot_child")
    (step,) = named(spans, "step ot_double")
    assert parent_id(run) == request.context.span_id
    assert parent_id(step) == run.context.span_id
    assert {s.context.trace_id for s in spans} == {request.context.trace_id}


def test_an_attempts_span_is_current_while_its_code_runs(
    store: str, exporter: InMemorySpanExporter
) -> None:
    # So the spans a step makes itself (an HTTP client's, say) are its children.
    label = store.rsplit("/", 1)[-1]
    with traced(store, exporter) as engine:
        engine.run(ot_peeking, label)
    spans = exporter.get_finished_spans()
    (sync,) = named(spans, "step ot_peek")
    (asynchronous,) = named(spans, "step ot_peek_async")
    assert seen_inside[f"{label}-sync"] == sync.context.span_id
    assert seen_inside[f"{label}-async"] == asynchronous.context.span_id
    assert sync.attributes["duralog.outcome"] == "completed"  # type: ignore[index]


def test_only_the_steps_of_a_traced_registry_are_guarded(tmp_path: Path) -> None:
    from duralog.engine import hooks

    mine = duralog.Registry()
    mine.add(ot_peeking)
    assert not hooks.guards_of(ot_peek, mine)
    with duralog.Engine(str(tmp_path / "mine.db"), registry=mine, worker=False) as engine:
        instrument(engine, tracer_provider=TracerProvider())
        assert hooks.guards_of(ot_peek, mine)
        assert not hooks.guards_of(ot_peek, duralog.Registry())
    assert not hooks.guards_of(ot_peek, mine)  # the engine closed


def test_a_failed_run_has_an_error_status_and_no_secret_under_a_codec(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    codec = AesGcmCodec({"k1": os.urandom(32)}, "k1")
    with traced(str(tmp_path / "vault.db"), exporter, payload_codec=codec) as engine:
        handle = engine.start(ot_failing, "hunter2")
        with pytest.raises(duralog.WorkflowFailed):
            handle.result(timeout=30)
    spans = exporter.get_finished_spans()
    (run,) = named(spans, "workflow ot_failing")
    (step,) = named(spans, "step ot_broken")
    for span, error in ((run, "duralog.errors.StepFailed"), (step, "ValueError")):
        assert span.status.status_code is StatusCode.ERROR
        (exception,) = [e for e in span.events if e.name == "exception"]
        assert exception.attributes == {"exception.type": error, "exception.message": ""}
    assert step.attributes["duralog.outcome"] == "failed"  # type: ignore[index]
    assert run.attributes["duralog.outcome"] == "failed"  # type: ignore[index]
    everything = repr([(s.attributes, s.events, s.status.description) for s in spans])
    assert "hunter2" not in everything


def test_continue_as_new_runs_are_spans_in_a_chain(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    with traced(str(tmp_path / "again.db"), exporter) as engine:
        assert engine.run(ot_again, 2, id="again") == 0
    runs = named(exporter.get_finished_spans(), "workflow ot_again")
    assert [r.attributes["duralog.run"] for r in runs] == [1, 2, 3]  # type: ignore[index]
    assert [r.attributes["duralog.outcome"] for r in runs] == [  # type: ignore[index]
        "continued_as_new",
        "continued_as_new",
        "completed",
    ]
    assert parent_id(runs[1]) == runs[0].context.span_id
    assert parent_id(runs[2]) == runs[1].context.span_id
    assert len(named(exporter.get_finished_spans(), "step ot_double")) == 3


def test_a_run_left_open_ends_with_the_engine_and_goes_on_in_the_next(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    db = str(tmp_path / "open.db")
    with traced(db, exporter) as engine:
        handle = engine.start(ot_parent, 1, id="waits")
        # It waits for a signal that never comes while this engine runs.
        assert handle.get_event("stage", timeout=30) == "slept"
    (first,) = named(exporter.get_finished_spans(), "workflow ot_parent")
    assert first.attributes["duralog.outcome"] == "open"  # type: ignore[index]
    exporter.clear()
    with traced(db, exporter) as engine:
        handle = engine.get("waits")
        handle.signal("bonus", 0)
        assert handle.result(timeout=30) == 4
    spans = exporter.get_finished_spans()
    (resumed,) = named(spans, "workflow ot_parent")
    assert resumed.attributes["duralog.resumed"] is True  # type: ignore[index]
    assert resumed.context.trace_id == first.context.trace_id
    assert parent_id(resumed) == first.context.span_id
    # Nothing of the first engine's work is emitted again: only what was left.
    assert named(spans, "step ot_flaky") == []
    assert resumed.events[0].name == "signal received"


def test_duplicate_start_and_a_client_engine(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    db = str(tmp_path / "client.db")
    client = traced(db, exporter, worker=False)
    with client:
        client.start(ot_child, 2, id="c-1")
        client.start(ot_child, 2, id="c-1")  # the same workflow: no second run, no span
    (handed,) = named(exporter.get_finished_spans(), "workflow ot_child")
    assert handed.attributes["duralog.outcome"] == "handed_over"  # type: ignore[index]
    exporter.clear()
    with traced(db, exporter) as engine:
        assert engine.get("c-1").result(timeout=30) == 4
    spans = exporter.get_finished_spans()
    (run,) = named(spans, "workflow ot_child")
    assert parent_id(run) == handed.context.span_id
    assert run.context.trace_id == handed.context.trace_id
    (step,) = named(spans, "step ot_double")
    assert parent_id(step) == run.context.span_id


def test_instrumenting_twice_is_refused(tmp_path: Path) -> None:
    with duralog.Engine(str(tmp_path / "twice.db"), worker=False) as engine:
        instrument(engine, tracer_provider=TracerProvider())
        with pytest.raises(ConfigurationError, match="instrument an engine once"):
            instrument(engine, tracer_provider=TracerProvider())


def test_without_a_tracer_provider_nothing_is_recorded(tmp_path: Path) -> None:
    # The API's default provider makes no spans: runs record no trace context.
    with duralog.Engine(str(tmp_path / "noop.db")) as engine:
        instrument(engine)
        handle = engine.start(ot_child, 1)
        assert handle.result(timeout=30) == 2
        started = handle.history()[0].event
    assert isinstance(started, ev.WorkflowStarted) and started.trace is None


def test_import_duralog_does_not_load_opentelemetry() -> None:
    code = "import sys, duralog; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_the_extra_the_import_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n    import duralog.observe.otel\n"
        "except ImportError as exc:\n    print(exc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'duralog[otel]'" in out.stdout


@given(st.text(max_size=80))
def test_any_recorded_trace_context_is_read_without_error(text: str) -> None:
    # A history file may carry anything there: a bad one starts a trace of its own.

    context = otel._context(text)
    span_context = trace.get_current_span(context).get_span_context()
    assert not span_context.is_valid or f"{span_context.trace_id:032x}" in text


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.sampled_from([0, 1, 3]))
def test_a_recorded_trace_context_names_the_span_it_was_taken_from(
    trace_id: int, span_id: int, flags: int
) -> None:

    recorded = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    span = trace.NonRecordingSpan(
        trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags))
    )
    assert otel._traceparent(span) == recorded
    remote = trace.get_current_span(otel._context(recorded)).get_span_context()
    assert (remote.trace_id, remote.span_id, remote.trace_flags) == (trace_id, span_id, flags)
