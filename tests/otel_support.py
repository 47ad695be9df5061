"""The OpenTelemetry SDK writing to memory, as the telemetry tests read it back."""

from __future__ import annotations

from collections import Counter
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import toolvisor as tv
from toolvisor import telemetry


class Otel:
    """An SDK meter and tracer provider writing to memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def instrument(self, sup: tv.Supervisor) -> telemetry.Instrumentation:
        return telemetry.instrument(
            sup, meter_provider=self.meter_provider, tracer_provider=self.tracer_provider
        )

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for rm in data.resource_metrics if data is not None else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def counts(self, name: str) -> Counter[frozenset[tuple[str, Any]]]:
        """Data points of a histogram (their counts) or a counter (their values)."""
        return Counter(
            {
                frozenset(p.attributes.items()): getattr(p, "count", None) or p.value
                for p in self.points(name)
            }
        )

    def spans(self, prefix: str = "") -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if s.parent is not None and s.parent.span_id == span.context.span_id
        ]
