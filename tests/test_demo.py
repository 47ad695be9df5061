"""``toolvisor demo``: runs to its summary, its numbers add up, and payments persist.

The two runs on a real clock are the point (real SQLite, real time): about 2 s each.
A third run covers the full default duration on trio's MockClock, instantly.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
import trio

import toolvisor._demo
from toolvisor import MemoryStore
from toolvisor._demo import DemoOptions, DemoReport, run_demo
from toolvisor._demo.tools import payment_args
from toolvisor.cli import main


def _parse_summary(text: str) -> dict[str, dict[str, str]]:
    """The printed summary table (one column per tool), as {tool: {row label: cell}}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("summary "))
    tools = lines[start].split()[1:]
    rows: dict[str, dict[str, str]] = {tool: {} for tool in tools}
    for line in lines[start + 1 :]:
        if line.startswith("check:"):
            break
        label, *cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(tools), line
        for tool, cell in zip(tools, cells, strict=True):
            rows[tool][label] = cell
    return rows


def _check_consistent(text: str, report: DemoReport) -> None:
    table = _parse_summary(text)
    assert set(table) == {"process_payment", "search_catalog", "record_order"}
    for tool, row in table.items():
        calls, ok, failed, rejected, cancelled = (
            int(row[c])
            for c in ("calls", "successes", "failures (ran)", "rejected (not run)", "cancelled")
        )
        assert calls > 0, tool
        assert calls == ok + failed + rejected + cancelled, (tool, row)
        assert int(row["cache hits"]) <= ok, (tool, row)
        summary = report.tool(tool)
        assert (summary.calls, summary.successes) == (calls, ok)
        assert int(row["breaker transitions"]) == len(summary.breaker_transitions)
        assert summary.consistent
    assert "check: calls = successes + failures + rejected + cancelled for every tool: yes" in text
    assert report.payments.double_charges == 0


@pytest.mark.slow  # two whole demo runs
def test_demo_twice_on_one_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reports: list[DemoReport] = []
    real_run = toolvisor._demo.run_demo

    def keep(*args: Any, **kwargs: Any) -> DemoReport:
        reports.append(real_run(*args, **kwargs))
        return reports[-1]

    monkeypatch.setattr(toolvisor._demo, "run_demo", keep)
    db = tmp_path / "demo.db"
    argv = ["demo", "--duration", "1.5", "--plain", "--seed", "3", "--db", str(db)]

    assert main(argv) == 0
    first_out = capsys.readouterr().out
    assert str(db) in first_out  # the path is printed
    first = reports[0]
    _check_consistent(first_out, first)
    assert first.payments.charged_now, "some payments succeed in the first run"
    assert first.payments.from_store == frozenset()
    assert db.exists()

    assert main(argv) == 0
    second_out = capsys.readouterr().out
    second = reports[1]
    _check_consistent(second_out, second)

    # The payments charged by run 1 and sent again by run 2 are answered from the store:
    # cache hits, and not one of them charged again.
    resent = first.payments.charged_now & second.payments.sent
    assert resent, "the same seed sends the same transaction ids"
    assert resent <= second.payments.from_store
    assert not (second.payments.charged_now & first.payments.charged_now)
    assert second.tool("process_payment").cache_hits >= len(resent)
    # A payment that failed in run 1 stored nothing: where run 2 answered it, it charged it.
    answered_later = first.payments.failed & (
        second.payments.charged_now | second.payments.from_store
    )
    assert answered_later <= second.payments.charged_now
    assert f"{len(second.payments.from_store)} answered from the store" in second_out


def test_demo_full_length_on_mock_clock(tmp_path: Path) -> None:
    """The default 15 s story, instantly: breakers open and close, numbers add up."""
    out = io.StringIO()
    options = DemoOptions(duration=15.0, seed=7, db=tmp_path / "demo.db", plain=True)
    report = run_demo(
        options,
        out=out,
        clock=trio.testing.MockClock(autojump_threshold=0),
        store=MemoryStore(),  # SQLite's worker thread would let the mock clock jump
    )
    text = out.getvalue()
    _check_consistent(text, report)
    payments = report.tool("process_payment")
    # The gateway outage opens the breaker, then it recovers; the final state is shown
    # with the transition that led to it.
    assert [(t.old, t.new) for t in payments.breaker_transitions][:1] == [("closed", "open")]
    assert payments.breaker_transitions[-1].new == payments.breaker_state == "closed"
    last = payments.breaker_transitions[-1]
    assert f"since {last.at:.1f} s" in _parse_summary(text)["process_payment"]["in that state"]
    assert "breaker of process_payment: closed -> open at " in text
    assert payments.cache_hits > 0  # resent transaction ids
    assert len(report.tool("record_order").breaker_transitions) >= 2  # the failover
    # The orders database's adaptive limit falls at the failover's timeouts (10.5-12.3 s
    # of 15) and climbs back once it is over; the summary shows where it ended.
    orders = report.tool("record_order")
    during = [n for at, n in orders.limit_changes if 10.5 <= at < 12.3]
    assert during and min(during) <= 2
    assert orders.limit_changes[-1][1] == orders.concurrency_limit > min(during)
    assert "adaptive concurrency limit of record_order: " in text
    assert _parse_summary(text)["record_order"]["concurrency limit (end)"] == str(
        orders.concurrency_limit
    )
    assert _parse_summary(text)["search_catalog"]["concurrency limit (end)"] == "16"
    search = report.tool("search_catalog")
    assert search.retries > 0  # the slow period
    # The partner API's own bucket on this side (RateLimit): it never answers 429.
    assert search.retry_errors.get("RateLimitError", 0) == 0
    assert "RateLimitError" not in search.errors
    # The adaptive breaker's moment, on the default seed: its threshold falls as the
    # error rate rises, and it opens.
    assert "search_catalog   adaptive: opens after 7 failures (was 8; " in text
    assert ("closed", "open") in [(t.old, t.new) for t in search.breaker_transitions]
    assert "breaker closed -> open" in text
    assert "back end: outage (503)" in text
    # Failed payments: a failure stores nothing, so the client's later send ran the charge.
    p = report.payments
    assert p.recovered, "payments that failed in the outage are charged by the resend"
    assert p.recovered <= p.charged_now
    assert not (p.failed & p.charged_now)
    assert f"{len(p.recovered)} were charged by a later send in this run" in text
    # Latency is over every call the demo made, and says so.
    assert "p50 ms (every call)" in text and "p99 ms (every call)" in text


def test_payment_ids_are_deterministic() -> None:
    assert payment_args(7, 12) == payment_args(7, 12)
    assert payment_args(7, 12)["transaction_id"] == "tx-7-00012"
    assert payment_args(7, 12) != payment_args(8, 12)


def test_run_demo_rejects_a_bad_duration(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duration"):
        run_demo(DemoOptions(duration=-1, db=tmp_path / "x.db"), out=io.StringIO())


# --------------------------------------------------------------------------- accounting
# The demo's summary relies on ToolStats counting every call exactly once: regressions
# found while building it.


async def test_a_call_cancelled_by_its_caller_is_counted_as_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from toolvisor import FunctionToolSpec, open_supervisor
    from toolvisor.testing import Delay, FlakyTool

    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(FunctionToolSpec(id="slow-v1", tool_name="slow"), FlakyTool([Delay(10)]))
        with trio.move_on_after(1):
            await sup.execute("slow", {})
        await trio.sleep(20)
        s = sup.stats("slow")
        assert s.cancelled == 1
        assert s.calls == s.successes + s.failures + s.rejected + s.cancelled


async def test_the_failure_that_trips_the_breaker_is_a_failure_not_a_rejection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from toolvisor import FunctionToolSpec, StandardCircuitBreakerPolicy, open_supervisor
    from toolvisor.testing import FlakyTool

    spec = FunctionToolSpec(id="trip-v1", tool_name="trip")
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(failure_threshold=1)
    tool = FlakyTool([ConnectionError("down")])
    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(spec, tool)
        with pytest.raises(Exception):  # CircuitOpenError from ConnectionError today
            await sup.execute("trip", {})
        assert tool.calls == 1  # the tool ran ...
        assert sup.stats("trip").rejected == 0  # ... so the call was not refused
        assert sup.stats("trip").failures == 1


async def test_a_pending_call_that_times_out_is_counted_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from toolvisor import FunctionToolSpec, ToolTimeoutError, open_supervisor
    from toolvisor.testing import Delay, FlakyTool

    spec = FunctionToolSpec(id="q-v1", tool_name="queued", max_concurrency=1)
    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(spec, FlakyTool([Delay(10), Delay(10)]))
        first = await sup.submit("queued", {})
        second = await sup.submit("queued", {}, timeout=1)  # waits behind the first
        assert isinstance((await second.result()).error, ToolTimeoutError)
        assert (await first.result()).ok
        await trio.sleep(30)
        s = sup.stats("queued")
        assert (s.calls, s.successes, s.failures, s.timeouts) == (2, 1, 1, 1)
