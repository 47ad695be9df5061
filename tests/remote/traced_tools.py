"""A worker target whose supervisor is traced (``traced_tools:setup``).

Its spans go to ``$TV_TEST_SPANS``, one JSON line per finished span (name, trace id,
span id, parent span id, attributes), written by an OpenTelemetry SDK span exporter, so
a test in another process reads what the worker's SDK exported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from remote_tools import TOOLS

from toolvisor import Supervisor, telemetry


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for span in spans:
                out.write(json.dumps(span_record(span)) + "\n")
        return SpanExportResult.SUCCESS


def span_record(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
        "attributes": dict(span.attributes or {}),
        "pid": os.getpid(),
    }


async def setup(sup: Supervisor) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ["TV_TEST_SPANS"])))
    telemetry.instrument(sup, meter_provider=MeterProvider(), tracer_provider=provider)
    for spec, fn in TOOLS:
        await sup.spawn(spec, fn)
