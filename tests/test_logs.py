"""``log_events``: every event as one structured logging record, fields as ``extra``."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv
from toolvisor.logs import event_record


def make_spec(name: str = "t", **kw: Any) -> tv.FunctionToolSpec:
    params = kw.pop("parameters", [tv.IntegerParameter(name="x")])
    return tv.FunctionToolSpec(id=f"{name}-v1", tool_name=name, parameters=params, **kw)


async def always_down(args: dict[str, Any]) -> Any:
    raise ConnectionError("gateway down")


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


async def test_retries_transitions_and_failed_calls_are_one_record_each(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.DEBUG, logger="toolvisor.events")
    spec = make_spec(retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=2))
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=3, recovery_timeout=30
    )
    async with tv.open_supervisor() as sup:
        stop = tv.log_events(sup)
        await sup.spawn(spec, always_down)
        with pytest.raises(ConnectionError):
            await sup.execute("t", {"x": 1})
        stop()
        stop()  # twice is harmless
        with pytest.raises(tv.CircuitOpenError):
            await sup.execute("t", {"x": 1})  # not logged: stopped
    retries = records(caplog, "retry_scheduled")
    assert [(r.tool, r.attempt, r.wait_s, r.error_type) for r in retries] == [  # type: ignore[attr-defined]
        ("t", 1, 2.0, "ConnectionError"),
        ("t", 2, 2.0, "ConnectionError"),
    ]
    assert all(r.levelno == logging.INFO and r.name == "toolvisor.events" for r in retries)
    [opened] = records(caplog, "breaker_transition")
    assert (opened.old_state, opened.new_state, opened.levelno) == (  # type: ignore[attr-defined]
        "closed",
        "open",
        logging.WARNING,
    )
    [failed] = records(caplog, "call_failed")
    assert (failed.outcome, failed.attempts, failed.error_type) == (  # type: ignore[attr-defined]
        "failed",
        3,
        "ConnectionError",
    )
    assert failed.getMessage() == "tool 't': call failed (ConnectionError) after 3 attempts"


async def test_restarts_and_a_tool_given_up(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.DEBUG, logger="app.tools")

    async def echo(args: dict[str, Any]) -> Any:
        return args["x"]

    async with tv.open_supervisor(max_restarts=1, within_s=60) as sup:
        tv.log_events(sup, logger=logging.getLogger("app.tools"), level=logging.DEBUG)
        await sup.spawn(make_spec(), echo)
        await sup.kill("t")
        await sup.kill("t")
    restarted = records(caplog, "actor_restarted")
    given_up = records(caplog, "tool_failed")
    assert [(r.name, r.restarts, r.error_type, r.levelno) for r in restarted] == [  # type: ignore[attr-defined]
        ("app.tools", 1, "ActorKilled", logging.DEBUG)
    ]
    assert [(r.restarts, r.error_type) for r in given_up] == [(2, "ActorKilled")]  # type: ignore[attr-defined]


async def test_a_json_formatter_gets_the_fields_without_parsing() -> None:
    lines: list[str] = []

    class JsonHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            keys = ("event", "tool", "attempt", "wait_s", "error_type")
            lines.append(json.dumps({k: getattr(record, k, None) for k in keys}))

    logger = logging.getLogger("test.json")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = JsonHandler()
    logger.addHandler(handler)
    try:
        spec = make_spec(retry_policy=tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0))
        async with tv.open_supervisor() as sup:
            tv.log_events(sup, logger="test.json")
            await sup.spawn(spec, always_down)
            with pytest.raises(ConnectionError):
                await sup.execute("t", {"x": 1})
    finally:
        logger.removeHandler(handler)
    assert json.loads(lines[0]) == {
        "event": "retry_scheduled",
        "tool": "t",
        "attempt": 1,
        "wait_s": 0.0,
        "error_type": "ConnectionError",
    }
    assert json.loads(lines[1])["event"] == "call_failed"


def test_every_event_type_has_its_record_fields() -> None:
    events: list[tv.Event] = [
        tv.RetryScheduled("t", 1, 0.5, "E()", 1.0, "E"),
        tv.BreakerTransition("t", "open", "half_open", 2.0),
        tv.ActorRestarted("t", 1, "E()", 3.0, "E"),
        tv.ToolFailed("t", 4, "E()", 4.0, "E"),
        tv.ResultNotStored("t", "k", "not JSON", 5.0),
        tv.CallFailed("t", "rejected", "CircuitOpenError", "CircuitOpenError()", 0, 6.0),
        tv.BudgetExhausted("t", 7.0),
        tv.RateLimited("t", 0.25, 8.0),
        tv.FallbackUsed("t", "E()", 9.0),
        tv.HedgeLaunched("t", 2, 10.0),
        tv.ConcurrencyLimitChanged("t", 8, 4, 11.0),
    ]
    reserved = set(logging.LogRecord("n", 0, "", 0, "", None, None).__dict__) | {"message"}
    for event in events:
        level, message, fields = event_record(event)
        assert fields["tool"] == "t" and fields["at"] == event.at
        assert not reserved & set(fields), "extra may not overwrite LogRecord attributes"
        assert "'t'" in message
        assert level in (logging.INFO, logging.WARNING, logging.ERROR)
    assert [event_record(e)[2]["event"] for e in events] == [
        "retry_scheduled",
        "breaker_transition",
        "actor_restarted",
        "tool_failed",
        "result_not_stored",
        "call_failed",
        "budget_exhausted",
        "rate_limited",
        "fallback_used",
        "hedge_launched",
        "concurrency_limit_changed",
    ]


async def test_bad_arguments_are_named() -> None:
    async with tv.open_supervisor() as sup:
        with pytest.raises(TypeError, match="logger must be"):
            tv.log_events(sup, logger=42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="level must be"):
            tv.log_events(sup, level="INFO")  # type: ignore[arg-type]
