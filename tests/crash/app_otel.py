"""A traced workflow for the crash test, run in a subprocess: ``python app_otel.py DB
SPANS ID``.

Spans are written to the file ``SPANS`` as JSON lines, each as soon as it ends (and
synced), so that a process killed with SIGKILL leaves every span it had ended.
``CRASH=1`` makes step ``second`` SIGKILL its own process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import duralog
from duralog.observe.otel import instrument


class JsonLines(SpanExporter):
    """Appends each span to a file as one JSON object (name, ids, attributes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as f:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                line = {
                    "name": span.name,
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                    "attributes": dict(span.attributes or {}),
                    "events": [event.name for event in span.events],
                    "pid": os.getpid(),
                }
                f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return SpanExportResult.SUCCESS


@duralog.step
def first(x: int) -> int:
    return x + 1


@duralog.step
def second(x: int) -> int:
    if os.environ.get("CRASH") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 2


@duralog.workflow(name="traced")
async def traced(x: int) -> int:
    y = await first(x)
    await duralog.sleep(0.01)
    return await second(y)


if __name__ == "__main__":
    db, spans, workflow_id = sys.argv[1:]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines(spans)))
    engine = duralog.Engine(db)
    instrument(engine, tracer_provider=provider)
    with engine:
        with provider.get_tracer("app").start_as_current_span("request"):
            handle = engine.start(traced, 4, id=workflow_id)
        print(handle.result(timeout=60), flush=True)
    provider.shutdown()
