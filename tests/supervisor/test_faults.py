"""Crashes, restarts, shutdown and the exactly-one-reply guarantee under random faults."""

from __future__ import annotations

import contextlib
import itertools
import random
from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import toolvisor as tv
from toolvisor.actors.actor import ToolActor


def make_spec(name: str = "t", **kw: Any) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.IntegerParameter(name="x")], **kw
    )


async def test_kill_mid_call_answers_held_calls_and_serves_queued_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[int] = []

    async def slow(args: dict[str, Any]) -> Any:
        started.append(args["x"])
        await trio.sleep(10)
        return args["x"]

    spec = make_spec(max_concurrency=2)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(failure_threshold=1)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, slow)
        pendings = [await sup.submit("t", {"x": i}) for i in range(5)]
        await trio.sleep(1)  # 0 and 1 are running, 2..4 queued
        await sup.kill("t")
        results = [await p.result() for p in pendings]
        stats = sup.stats("t")
    assert [type(r.error) for r in results[:2]] == [tv.ActorCrashedError] * 2
    assert [r.value for r in results[2:]] == [2, 3, 4]
    assert stats.restarts == 1 and stats.breaker_state == "closed"
    assert stats.calls == stats.successes + stats.failures + stats.rejected == 5


async def test_kill_as_an_idle_actors_first_call_arrives_answers_that_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # submit() hands the call to the waiting actor without a checkpoint, so kill() lands
    # after the actor received it and before it ran: the call is held, the crash answers.
    async def echo(args: dict[str, Any]) -> Any:
        return args["x"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), echo)
        pending = await sup.submit("t", {"x": 1})
        with trio.fail_after(60):
            await sup.kill("t")
        result = await pending.result()
        assert await sup.execute("t", {"x": 2}) == 2
        stats = sup.stats("t")
    assert isinstance(result.error, tv.ActorCrashedError)
    assert stats.restarts == 1
    # The killed call never started: rejected (no attempt ran), not failed.
    assert (stats.calls, stats.successes, stats.rejected, stats.failures) == (2, 1, 1, 0)


async def test_a_real_crash_is_handled_like_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ToolActor._serve
    crashes = 0

    async def buggy(self: ToolActor, me: Any, *rest: Any) -> None:
        nonlocal crashes
        if me.current.args["x"] == 13 and crashes == 0:
            crashes += 1
            raise RuntimeError("bug in the actor")
        await original(self, me, *rest)

    monkeypatch.setattr(ToolActor, "_serve", buggy)
    events: list[tv.Event] = []

    async def echo(args: dict[str, Any]) -> Any:
        return args["x"]

    async with tv.open_supervisor() as sup:
        sup.subscribe(events.append)
        await sup.spawn(make_spec(), echo)
        with pytest.raises(tv.ActorCrashedError) as info:
            await sup.execute("t", {"x": 13}, timeout=5)
        assert await sup.execute("t", {"x": 13}) == 13
    assert isinstance(info.value.cause, RuntimeError)
    assert sorted(type(e).__name__ for e in events) == ["ActorRestarted", "CallFailed"]
    [failed] = [e for e in events if isinstance(e, tv.CallFailed)]
    assert failed.error_type == "ActorCrashedError"


async def test_restart_intensity_marks_the_tool_failed_and_others_run_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def echo(args: dict[str, Any]) -> Any:
        return args["x"]

    events: list[tv.Event] = []
    async with tv.open_supervisor(max_restarts=2, within_s=10) as sup:
        sup.subscribe(events.append)
        await sup.spawn(make_spec("fragile"), echo)
        await sup.spawn(make_spec("steady"), echo)
        await sup.kill("fragile")
        await trio.sleep(11)  # the first crash leaves the window
        await sup.kill("fragile")
        await sup.kill("fragile")
        assert await sup.execute("fragile", {"x": 1}) == 1  # 2 restarts in 10 s: still up
        await sup.kill("fragile")  # a 3rd within 10 s: failed
        with pytest.raises(tv.ToolUnavailableError) as info:
            await sup.execute("fragile", {"x": 1})
        assert await sup.execute("steady", {"x": 2}) == 2
        with pytest.raises(tv.ToolUnavailableError):
            await sup.kill("fragile")
    assert "crashed 3 times within 10 s" in str(info.value)
    assert [type(e).__name__ for e in events] == ["ActorRestarted"] * 3 + [
        "ToolFailed",
        "CallFailed",  # the call refused with ToolUnavailableError
    ]


async def test_graceful_close_lets_calls_finish_within_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(args: dict[str, Any]) -> Any:
        await trio.sleep(args["x"])
        return args["x"]

    pendings: list[tv.PendingCall] = []
    async with tv.open_supervisor(grace_s=5) as sup:
        await sup.spawn(make_spec(max_concurrency=1), slow)
        for x in (1, 2, 3):  # run one at a time: done at 1, 3, 6 s
            pendings.append(await sup.submit("t", {"x": x}))
        t0 = trio.current_time()
    assert trio.current_time() - t0 == pytest.approx(5.0)
    results = [await p.result() for p in pendings]
    assert [r.value for r in results[:2]] == [1, 2]
    assert isinstance(results[2].error, tv.SupervisorClosedError)


async def test_close_answers_queued_calls_past_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hang(args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    pendings: list[tv.PendingCall] = []
    async with tv.open_supervisor(grace_s=1) as sup:
        await sup.spawn(make_spec(max_concurrency=1), hang)
        for x in range(4):
            pendings.append(await sup.submit("t", {"x": x}))
    results = [await p.result() for p in pendings]
    assert all(isinstance(r.error, tv.SupervisorClosedError) for r in results)


async def test_idempotent_submits_are_answered_when_the_supervisor_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hang(args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    spec = make_spec(max_concurrency=1)
    spec.idempotency.enabled = True
    pendings: list[tv.PendingCall] = []
    async with tv.open_supervisor(grace_s=1) as sup:
        await sup.spawn(spec, hang)
        for x in range(3):
            pendings.append(await sup.submit("t", {"x": x}))
        await trio.sleep(0.1)
    with trio.fail_after(1):
        results = [await p.result() for p in pendings]
    assert all(isinstance(r.error, tv.SupervisorClosedError) for r in results)


async def test_stop_drains_then_frees_the_name(autojump_clock: trio.testing.MockClock) -> None:
    async def slow(args: dict[str, Any]) -> Any:
        await trio.sleep(1)
        return args["x"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(max_concurrency=1), slow)
        pendings = [await sup.submit("t", {"x": x}) for x in range(3)]
        await sup.stop("t")
        assert [(await p.result()).value for p in pendings] == [0, 1, 2]
        with pytest.raises(tv.ToolUnavailableError, match="it was stopped"):
            await sup.execute("t", {"x": 1})
        await sup.spawn(make_spec(), slow)  # the name is free again
        assert await sup.execute("t", {"x": 5}) == 5


async def test_stop_past_its_grace_answers_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hang(args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(max_concurrency=1), hang)
        pendings = [await sup.submit("t", {"x": x}) for x in range(3)]
        await sup.stop("t", grace_s=2)
        results = [await p.result() for p in pendings]
    assert all(isinstance(r.error, tv.ToolUnavailableError) for r in results)


async def test_memory_stays_bounded_when_callers_flood_a_slow_tool(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(args: dict[str, Any]) -> Any:
        await trio.sleep(1)
        return 1

    peak_queue = 0
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(max_concurrency=2, queue_size=8), slow)

        async def watch() -> None:
            nonlocal peak_queue
            while True:
                peak_queue = max(peak_queue, sup.stats("t").queued)
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            results = await sup.execute_many([("t", {"x": i}) for i in range(200)])
            nursery.cancel_scope.cancel()
    assert all(r.ok for r in results)
    assert peak_queue <= 8  # the rest wait as blocked senders, not in a growing buffer


async def test_seed_scenario_breaker_opens_and_retries_follow_their_delays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The seed's "Test Your Policies": a tool failing 70% of the time with TimeoutError."""
    rng = random.Random(7)
    attempt_times: list[float] = []

    async def failing_function(args: dict[str, Any]) -> Any:
        attempt_times.append(trio.current_time())
        if rng.random() < 0.7:
            raise TimeoutError("Simulated timeout")
        return {"status": "success"}

    spec = make_spec()
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=5, recovery_timeout=30
    )
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=2.0)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, failing_function)
        results = [(await sup.execute_many([("t", {"x": i})]))[0] for i in range(30)]
        stats = sup.stats("t")
    opened = [r for r in results if isinstance(r.error, tv.CircuitOpenError)]
    assert opened, "the breaker must open under a 70% failure rate"
    assert stats.retries > 0
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(attempt_times)}
    assert 2.0 in gaps  # retries wait exactly delay_seconds on trio's clock
    assert all(g == 0 or g >= 2.0 for g in gaps)


# ------------------------------------------------------------------ exactly one reply


FAULTS = ["ok", "error", "slow", "hang", "cancel_caller", "deadline", "kill"]


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_request_gets_exactly_one_reply(seed: int) -> None:
    rng = random.Random(seed)
    clock = trio.testing.MockClock(autojump_threshold=0)
    replies: Counter[int] = Counter()
    n_calls = 400

    async def main() -> None:
        async def tool(args: dict[str, Any]) -> Any:
            kind = FAULTS[args["x"] % len(FAULTS)]
            if kind == "error":
                raise ConnectionError("boom")
            if kind in ("slow", "deadline", "cancel_caller"):
                await trio.sleep(rng.uniform(0.1, 3))
            if kind == "hang":
                await trio.sleep_forever()
            return args["x"]

        spec = make_spec(
            max_concurrency=rng.randint(1, 8),
            queue_size=rng.randint(0, 16),
            overflow=rng.choice(["wait", "reject"]),
            timeout_s=2.0,
        )
        spec.retry_policy = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.5)
        spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
            failure_threshold=rng.randint(1, 20), recovery_timeout=1
        )
        async with tv.open_supervisor(max_restarts=1000, grace_s=1) as sup:
            await sup.spawn(spec, tool)

            async def caller(i: int) -> None:
                kind = FAULTS[i % len(FAULTS)]
                await trio.sleep(rng.uniform(0, 5))
                if kind == "kill" and rng.random() < 0.3:
                    await sup.kill("t")
                timeout = 1.0 if kind == "deadline" else None
                with trio.CancelScope() as scope:
                    if kind == "cancel_caller":
                        scope.deadline = trio.current_time() + rng.uniform(0, 2)
                    with contextlib.suppress(Exception):
                        await sup.execute("t", {"x": i}, timeout=timeout)
                    replies[i] += 1
                if scope.cancelled_caught:
                    replies[i] += 1  # cancelled by its own scope: its answer is Cancelled

            async with trio.open_nursery() as nursery:
                for i in range(n_calls):
                    nursery.start_soon(caller, i)
            stats = sup.stats("t")
            assert stats.in_flight == 0 and stats.queued == 0

    trio.run(main, clock=clock)  # returns only once every task ended: none left behind
    assert set(replies) == set(range(n_calls))
    assert set(replies.values()) == {1}, "a request got no reply or more than one"


# ------------------------------------------------------------------ lifecycle model


@settings(max_examples=40)
@given(
    ops=st.lists(
        st.one_of(
            st.just(("kill",)),
            st.just(("call",)),
            st.tuples(st.just("advance"), st.floats(0.1, 6.0)),
        ),
        max_size=25,
    ),
    max_restarts=st.integers(0, 3),
)
def test_actor_lifecycle_matches_the_otp_model(
    ops: list[tuple[Any, ...]], max_restarts: int
) -> None:
    """Restart intensity, checked step by step against a small model of OTP's rule."""
    within = 5.0
    clock = trio.testing.MockClock()

    async def main() -> None:
        async def echo(args: dict[str, Any]) -> Any:
            return args["x"]

        model_failed = False
        model_restarts = 0
        crash_times: list[float] = []
        async with tv.open_supervisor(max_restarts=max_restarts, within_s=within) as sup:
            await sup.spawn(make_spec(), echo)
            for op in ops:
                if op[0] == "advance":
                    clock.jump(op[1])
                elif op[0] == "kill":
                    if model_failed:
                        with pytest.raises(tv.ToolUnavailableError):
                            await sup.kill("t")
                        continue
                    await sup.kill("t")
                    now = trio.current_time()
                    model_restarts += 1
                    crash_times.append(now)
                    recent = [t for t in crash_times if t >= now - within]
                    model_failed = len(recent) > max_restarts
                else:
                    if model_failed:
                        with pytest.raises(tv.ToolUnavailableError):
                            await sup.execute("t", {"x": 1})
                    else:
                        assert await sup.execute("t", {"x": 1}) == 1
                assert sup.stats("t").restarts == model_restarts

    trio.run(main, clock=clock)
