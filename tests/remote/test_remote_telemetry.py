"""Telemetry of remote calls: trace context from caller to worker, and a worker's /metrics."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from remote_support import WorkerProcess, eventually, launch, serving
from remote_tools import TOOLS

import toolvisor
from toolvisor import RemoteToolError, Supervisor, telemetry
from toolvisor._target import Target
from toolvisor.cli import main
from toolvisor.remote import Worker, WorkerOptions, run_worker


class Traced:
    """An SDK tracer provider writing to memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture
def caller_side() -> Iterator[Traced]:
    traced = Traced()
    yield traced
    traced.provider.shutdown()


@pytest.fixture
def worker_side() -> Iterator[Traced]:
    traced = Traced()
    yield traced
    traced.provider.shutdown()


@pytest.fixture
async def in_process_worker(
    redis_url: str, namespace: str
) -> AsyncIterator[Callable[[Traced | None], Any]]:
    """``await start(traced)``: a worker in this process (instrumented when ``traced``);
    it runs in a task started before any test span, so it shares no context with one."""
    workers: list[Worker] = []
    async with trio.open_nursery() as nursery:

        async def start(traced: Traced | None) -> Worker:
            async def setup(sup: Supervisor) -> None:
                if traced is not None:
                    telemetry.instrument(
                        sup, meter_provider=MeterProvider(), tracer_provider=traced.provider
                    )
                for spec, fn in TOOLS:
                    await sup.spawn(spec, fn)

            ready = trio.Event()

            def on_ready(worker: Worker) -> None:
                workers.append(worker)
                ready.set()

            nursery.start_soon(
                lambda: run_worker(
                    Target(text="test:setup", setup=setup),
                    redis_url,
                    WorkerOptions(namespace=namespace, grace_s=1),
                    on_ready=on_ready,
                    handle_signals=False,
                )
            )
            await ready.wait()
            return workers[-1]

        yield start
        for worker in workers:
            worker.stop()


async def test_a_remote_call_joins_the_callers_trace(
    redis_url: str,
    namespace: str,
    in_process_worker: Callable[[Traced | None], Any],
    caller_side: Traced,
    worker_side: Traced,
) -> None:
    await in_process_worker(worker_side)
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        with caller_side.tracer.start_as_current_span("handle request") as request:
            assert (await remote.execute("echo", {"text": "hi"}))["echo"] == "hi"
            with pytest.raises(RemoteToolError):
                await remote.execute("decline", {"card": "4242"})
        await remote.execute("echo", {"text": "no span"})
    parent = request.get_span_context()
    first, second, alone = sorted(
        worker_side.spans("call echo") + worker_side.spans("call decline"),
        key=lambda s: s.start_time or 0,
    )
    for span in (first, second):
        assert span.context.trace_id == parent.trace_id
        assert span.parent is not None and span.parent.span_id == parent.span_id
        assert span.parent.is_remote
    assert second.attributes["outcome"] == "failed"
    (attempt,) = [s for s in worker_side.spans("attempt echo") if s.parent == first.context]
    assert attempt.context.trace_id == parent.trace_id
    # A call made without a current span starts a trace of its own on the worker.
    assert alone.parent is None
    assert alone.context.trace_id != parent.trace_id


async def test_tracestate_travels_with_the_trace(
    redis_url: str,
    namespace: str,
    in_process_worker: Callable[[Traced | None], Any],
    caller_side: Traced,
    worker_side: Traced,
) -> None:
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    await in_process_worker(worker_side)
    span_context = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        trace_state=trace.TraceState([("vendor", "opaque-value")]),
    )
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
    try:
        assert telemetry.remote_fields() == {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "vendor=opaque-value",
        }
        async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
            await remote.execute("echo", {"text": "hi"})
    finally:
        otel_context.detach(token)
    (span,) = worker_side.spans("call echo")
    assert span.context.trace_id == span_context.trace_id
    assert span.parent is not None and span.parent.span_id == span_context.span_id
    assert span.context.trace_state.get("vendor") == "opaque-value"


async def test_an_uninstrumented_worker_ignores_the_trace_context(
    redis_url: str,
    namespace: str,
    in_process_worker: Callable[[Traced | None], Any],
    caller_side: Traced,
) -> None:
    worker = await in_process_worker(None)
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        with caller_side.tracer.start_as_current_span("handle request"):
            assert (await remote.execute("echo", {"text": "hi"}))["echo"] == "hi"
    assert worker.answered == 1
    assert not telemetry.is_instrumented(worker._sup)


def test_remote_context_of_bad_fields_is_none() -> None:
    assert telemetry.remote_context("") is None
    assert telemetry.remote_context("garbage", "a=b") is None
    assert telemetry.remote_context("00-" + "0" * 32 + "-" + "0" * 16 + "-01") is None
    assert telemetry.remote_fields() == {}  # no current span


# --------------------------------------------------------------------------- processes

#: The names docs/telemetry.md documents, as the demo serves them (families).
NAMES = {
    "toolvisor_call_duration_seconds",
    "toolvisor_attempt_duration_seconds",
    "toolvisor_events",
    "toolvisor_breaker_state",
    "toolvisor_in_flight",
    "toolvisor_queued",
}


def metrics_url(worker: WorkerProcess) -> str | None:
    found = re.search(r"metrics on (http://\S+/metrics)", worker.stderr())
    return None if found is None else found.group(1)


@pytest.mark.slow
async def test_a_worker_process_serves_metrics(
    redis_url: str, namespace: str, start_worker: Callable[..., Any]
) -> None:
    worker: WorkerProcess = await start_worker("--metrics-port", "0")
    await eventually(lambda: metrics_url(worker))
    url = metrics_url(worker)
    assert url is not None and url.startswith("http://127.0.0.1:")
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        for i in range(3):
            await remote.execute("echo", {"text": str(i)})
        with pytest.raises(RemoteToolError):
            await remote.execute("decline", {"card": "4242"})
        with pytest.raises(RemoteToolError):
            await remote.execute("fragile", {})  # opens its breaker
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families.keys() >= NAMES, sorted(families)
    counts = {
        (s.labels["tool"], s.labels["outcome"]): s.value
        for s in families["toolvisor_call_duration_seconds"].samples
        if s.name == "toolvisor_call_duration_seconds_count"
    }
    assert counts == {("echo", "succeeded"): 3, ("decline", "failed"): 1, ("fragile", "failed"): 1}
    opened = [
        s
        for s in families["toolvisor_events"].samples
        if s.name == "toolvisor_events_total" and s.labels.get("breaker_state") == "open"
    ]
    assert [(s.labels["tool"], s.value) for s in opened] == [("fragile", 1.0)]
    breaker = {
        s.labels["state"]: s.value
        for s in families["toolvisor_breaker_state"].samples
        if s.labels["tool"] == "fragile"
    }
    assert breaker == {"closed": 0.0, "half_open": 0.0, "open": 1.0}


@pytest.mark.slow
async def test_worker_spans_join_the_callers_trace_across_processes(
    redis_url: str,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caller_side: Traced,
) -> None:
    spans_path = tmp_path / "spans.jsonl"
    monkeypatch.setenv("TV_TEST_SPANS", str(spans_path))
    trace_log = tmp_path / "trace.log"
    worker = launch(redis_url, namespace, trace_log, tmp_path, target="traced_tools:setup")
    try:
        await eventually(lambda: serving(worker), 30)
        async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
            with caller_side.tracer.start_as_current_span("handle request") as request:
                await remote.execute("echo", {"text": "hi"})
        await eventually(lambda: spans_path.exists() and spans_path.read_text().count("\n") >= 2)
    finally:
        worker.proc.kill()
        worker.proc.wait()
    records = [json.loads(line) for line in spans_path.read_text().splitlines()]
    by_name = {r["name"]: r for r in records}
    parent = request.get_span_context()
    call, attempt = by_name["call echo"], by_name["attempt echo"]
    assert call["pid"] == worker.pid
    assert call["trace_id"] == attempt["trace_id"] == f"{parent.trace_id:032x}"
    assert call["parent_id"] == f"{parent.span_id:016x}"
    assert attempt["parent_id"] == call["span_id"]
    assert call["attributes"]["outcome"] == "succeeded"


def test_a_metrics_port_in_use_is_a_clear_error(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["worker", "remote_tools:TOOLS", "--redis", redis_url, "--namespace", namespace]
        assert main([*argv, "--metrics-port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"toolvisor: error: --metrics-port {port}: cannot listen on it" in err
    assert "Redis" not in err
