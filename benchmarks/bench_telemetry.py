"""Instrumented vs uninstrumented ``execute()`` throughput, as paired ratios in one run.

Usage::

    python benchmarks/bench_telemetry.py [--rounds N] [--calls N] [--contenders A,B,...]

The load is the per-call overhead section's (``execute()`` on a tool that returns at
once, Standard breaker, exponential retry, 30 s per-attempt timeout) at 1 and 100
concurrent callers. Each round runs every contender, each in its own ``trio.run`` (the
order rotating round by round):

* ``plain``: no instrumentation;
* ``metrics``: ``toolvisor.telemetry.instrument`` with an OpenTelemetry SDK
  ``MeterProvider`` (an in-memory reader) and the API's no-op tracer;
* ``metrics+traces``: the same plus an SDK ``TracerProvider`` whose
  ``BatchSpanProcessor`` exports to an exporter that drops the spans (its thread's CPU
  time counts);
* ``unbatched`` (run only when named): ``metrics`` with ``telemetry.FLUSH_AT = 1``,
  every duration recorded in the SDK as its call or attempt ends, for comparison;
* ``hooks`` (run only when named): ``instrument`` with the API's no-op meter provider
  and tracer, so the records cost nothing: toolvisor's own share (its call hooks and the
  event subscription).

The reader collects once at the end of the timed load: the durations still waiting
for the SDK are recorded then, inside the timing (the work is paid, not deferred).
Throughput is calls per CPU second of the process; the ratio of a round is
instrumented / plain within that round; the median over rounds is printed. Target:
>= 0.8x.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Sequence
from typing import Any

import trio
from opentelemetry import metrics
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import toolvisor as tv
from toolvisor import telemetry
from toolvisor.telemetry import instrument

CONTENDERS = ("plain", "metrics", "metrics+traces")
ALL = (*CONTENDERS, "unbatched", "hooks")
FLUSH_AT = telemetry.FLUSH_AT


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _instant(args: dict[str, Any]) -> Any:
    return args["i"]


def _spec() -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id="b-v1",
        tool_name="b",
        timeout_s=30,
        parameters=[tv.IntegerParameter(name="i", required=True)],
    )
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=5, recovery_timeout=30
    )
    spec.retry_policy = tv.ExponentialBackoffRetryPolicy(
        max_attempts=5, base_delay=1.0, max_delay=30.0
    )
    return spec


def _round(contender: str, callers: int, calls: int) -> float:
    meter_provider: metrics.MeterProvider | None = None
    tracer_provider = None
    reader = InMemoryMetricReader()
    if contender == "hooks":
        meter_provider = NoOpMeterProvider()
    elif contender != "plain":
        meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.FLUSH_AT = 1 if contender == "unbatched" else FLUSH_AT
    if contender == "metrics+traces":
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(_Drop()))
    rate = 0.0

    async def main() -> None:
        nonlocal rate
        async with tv.open_supervisor() as sup:
            if meter_provider is not None:
                instrument(sup, meter_provider=meter_provider, tracer_provider=tracer_provider)
            await sup.spawn(_spec(), _instant)
            per = calls // callers

            async def caller(n: int) -> None:
                for i in range(n):
                    await sup.execute("b", {"i": i})

            async with trio.open_nursery() as nursery:  # warm-up
                for _ in range(callers):
                    nursery.start_soon(caller, max(1, per // 10))
            gc.collect()
            t0 = time.process_time()
            async with trio.open_nursery() as nursery:
                for _ in range(callers):
                    nursery.start_soon(caller, per)
            if isinstance(meter_provider, MeterProvider):
                reader.get_metrics_data()  # records what waits: part of the cost
            if tracer_provider is not None:
                tracer_provider.force_flush()  # the spans' export is part of the cost
            rate = per * callers / (time.process_time() - t0)

    trio.run(main)
    telemetry.FLUSH_AT = FLUSH_AT
    if isinstance(meter_provider, MeterProvider):
        meter_provider.shutdown()
    if tracer_provider is not None:
        tracer_provider.shutdown()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS[1:]),
        help=f"instrumented contenders, comma-separated, from {', '.join(ALL[1:])}",
    )
    options = parser.parse_args()
    chosen = tuple(c for c in options.contenders.split(",") if c)
    if not chosen or any(c not in ALL[1:] for c in chosen):
        parser.error(f"--contenders takes names from {', '.join(ALL[1:])}")
    contenders = ("plain", *chosen)
    for callers in (1, 100):
        rates: dict[str, list[float]] = {c: [] for c in contenders}
        ratios: dict[str, list[float]] = {c: [] for c in chosen}
        for r in range(options.rounds):
            k = r % len(contenders)
            order = contenders[k:] + contenders[:k]
            got = {c: _round(c, callers, options.calls) for c in order}
            for c, rate in got.items():
                rates[c].append(rate)
            for c in chosen:
                ratios[c].append(got[c] / got["plain"])
        line = f"{callers:>4} callers: plain {statistics.median(rates['plain']):,.0f}/s"
        for c in chosen:
            paired = ratios[c]
            line += (
                f" | {c} {statistics.median(rates[c]):,.0f}/s ratio {statistics.median(paired):.3f}"
                f" ({min(paired):.2f}-{max(paired):.2f})"
            )
        print(f"{line}  [{options.rounds} rounds]", flush=True)


if __name__ == "__main__":
    main()
