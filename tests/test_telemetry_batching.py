"""Durations reach the SDK in batches: a collection still sees every call that ended
before it, exactly once, and nothing waiting is lost when instrumentation stops."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import toolvisor as tv
from toolvisor import telemetry


def spec(name: str) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(id=f"{name}-v1", tool_name=name, parameters=[])


async def half_a_second(args: dict[str, Any]) -> str:
    await trio.sleep(0.5)
    return "ok"


async def at_once(args: dict[str, Any]) -> str:
    return "ok"


def histogram(reader: InMemoryMetricReader, name: str) -> tuple[int, float]:
    """(count, sum) of a duration histogram, over all its attribute sets."""
    data = reader.get_metrics_data()
    count, total = 0, 0.0
    for rm in data.resource_metrics if data is not None else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        count += point.count
                        total += point.sum
    return count, total


async def test_a_collection_sees_every_call_that_ended_before_it(
    reader: InMemoryMetricReader, autojump_clock: trio.testing.MockClock
) -> None:
    async with tv.open_supervisor() as sup:
        ins = telemetry.instrument(sup, meter_provider=reader.provider)  # type: ignore[attr-defined]
        await sup.spawn(spec("t"), half_a_second)
        for _ in range(5):
            await sup.execute("t", {})
        assert len(ins.pending) == 10  # fewer than FLUSH_AT: none recorded yet
        assert histogram(reader, "toolvisor.call.duration") == (5, pytest.approx(2.5))
        assert histogram(reader, "toolvisor.attempt.duration") == (5, pytest.approx(2.5))
        assert not ins.pending
        for _ in range(3):
            await sup.execute("t", {})
        # cumulative: the next collection adds the new calls, once each
        assert histogram(reader, "toolvisor.call.duration") == (8, pytest.approx(4.0))


async def test_a_full_batch_is_recorded_without_waiting_for_a_collection(
    reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "FLUSH_AT", 8)
    async with tv.open_supervisor() as sup:
        ins = telemetry.instrument(sup, meter_provider=reader.provider)  # type: ignore[attr-defined]
        await sup.spawn(spec("t"), at_once)
        for _ in range(50):
            await sup.execute("t", {})
            assert len(ins.pending) < 8  # the memory they take is bounded
        assert histogram(reader, "toolvisor.call.duration")[0] == 50
        assert histogram(reader, "toolvisor.attempt.duration")[0] == 50


async def test_uninstrument_loses_no_duration_waiting_or_still_running(
    reader: InMemoryMetricReader, autojump_clock: trio.testing.MockClock
) -> None:
    async with tv.open_supervisor() as sup:
        ins = telemetry.instrument(sup, meter_provider=reader.provider)  # type: ignore[attr-defined]
        await sup.spawn(spec("slow"), half_a_second)
        await sup.spawn(spec("fast"), at_once)
        for _ in range(3):
            await sup.execute("fast", {})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.execute, "slow", {})
            await trio.sleep(0.1)  # the slow call is running
            ins.uninstrument()
            assert not ins.pending  # what waited went to the SDK now
        # the slow call ended after uninstrument(): its durations wait for a collection
        assert histogram(reader, "toolvisor.call.duration") == (4, pytest.approx(0.5))
        assert histogram(reader, "toolvisor.attempt.duration") == (4, pytest.approx(0.5))
        await sup.execute("fast", {})  # not instrumented any more
        assert histogram(reader, "toolvisor.call.duration")[0] == 4


async def test_a_supervisor_gone_without_uninstrument_loses_no_duration(
    reader: InMemoryMetricReader, autojump_clock: trio.testing.MockClock
) -> None:
    async with tv.open_supervisor() as sup:
        telemetry.instrument(sup, meter_provider=reader.provider)  # type: ignore[attr-defined]
        await sup.spawn(spec("t"), half_a_second)
        for _ in range(3):
            await sup.execute("t", {})
    del sup
    gc.collect()  # the supervisor and its instrumentation are gone, their durations not
    assert histogram(reader, "toolvisor.call.duration") == (3, pytest.approx(1.5))
    assert histogram(reader, "toolvisor.attempt.duration") == (3, pytest.approx(1.5))


def test_collections_from_another_thread_record_each_duration_once(
    reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's thread and trio's (full batches) flush the same batch at once."""
    monkeypatch.setattr(telemetry, "FLUSH_AT", 16)
    done = threading.Event()
    collections = 0

    def collect() -> None:
        nonlocal collections
        while not done.is_set():
            reader.get_metrics_data()
            collections += 1

    async def main() -> None:
        async with tv.open_supervisor() as sup:
            telemetry.instrument(sup, meter_provider=reader.provider)  # type: ignore[attr-defined]
            await sup.spawn(spec("t"), at_once)

            async def caller() -> None:
                for _ in range(200):
                    await sup.execute("t", {})

            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(caller)

    thread = threading.Thread(target=collect)
    thread.start()
    try:
        trio.run(main)
    finally:
        done.set()
        thread.join()
    assert collections > 1
    assert histogram(reader, "toolvisor.call.duration")[0] == 2000
    assert histogram(reader, "toolvisor.attempt.duration")[0] == 2000
