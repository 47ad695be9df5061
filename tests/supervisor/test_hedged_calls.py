"""Hedged calls through a real supervisor (and the executor), on trio's MockClock.

Each tool here follows a *plan*: what attempt ``n`` of a call does (sleep, then return or
raise), and records every attempt's start, end and cancellation, so the tests see which
attempts ran, which won and which were cancelled.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import toolvisor as tv
from toolvisor.supervisor.stores.base import ClaimOutcome


class FlakyError(Exception):
    """The service failed this attempt."""


@attrs.define
class Step:
    """What one attempt does: sleep ``after`` seconds, then return ``value`` or raise."""

    after: float
    value: Any = "ok"
    error: BaseException | None = None


@attrs.define
class Run:
    call: Any
    attempt: int
    key: str | None
    started: float
    ended: float | None = None
    cancelled: bool = False


class Planned:
    """A tool whose attempts follow ``plan(call_arg, attempt) -> Step``; it records them."""

    def __init__(self, plan: Callable[[Any, int], Step]) -> None:
        self.plan = plan
        self.runs: list[Run] = []
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, args: dict[str, Any], ctx: tv.ExecutionContext) -> Any:
        run = Run(args.get("q"), ctx.attempt, ctx.idempotency_key, trio.current_time())
        self.runs.append(run)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        step = self.plan(args.get("q"), ctx.attempt)
        try:
            await trio.sleep(step.after)
        except trio.Cancelled:
            run.cancelled = True
            raise
        finally:
            self.running -= 1
            run.ended = trio.current_time()
        if step.error is not None:
            raise step.error
        return step.value


def by_attempt(steps: dict[int, Step]) -> Callable[[Any, int], Step]:
    return lambda _q, attempt: steps[attempt]


def make_spec(
    name: str = "search",
    hedging: tv.HedgingPolicy | None = None,
    **fields: Any,
) -> tv.FunctionToolSpec:
    fields.setdefault("read_only", True)
    return tv.FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        parameters=[tv.StringParameter(name="q")],
        hedging=hedging,
        **fields,
    )


def invariant(stats: tv.ToolStats) -> bool:
    return stats.calls == stats.successes + stats.failures + stats.rejected + stats.cancelled


# --------------------------------------------------------------------------- the modes


async def test_latency_mode_a_fast_hedge_wins_and_the_slow_first_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Planned(by_attempt({1: Step(10.0, "slow"), 2: Step(0.25, "fast")}))
    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=1)
    spec = make_spec(
        hedging=tv.HedgingPolicy(max_hedged_attempts=1, delay=1.0),
        circuit_breaker_policy=breaker,
    )
    events: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        sup.subscribe(events.append)
        await sup.spawn(spec, tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
        stats = sup.stats("search")
    assert (result.ok, result.value, result.attempts) == (True, "fast", 2)
    assert result.elapsed_s == pytest.approx(1.25)
    first, hedge = tool.runs
    assert (first.attempt, first.started, first.cancelled) == (1, 0.0, True)
    assert first.ended == pytest.approx(1.25)  # cancelled as soon as the hedge won
    assert (hedge.attempt, hedge.started, hedge.cancelled) == (2, 1.0, False)
    assert (stats.successes, stats.failures, stats.hedged, stats.retries) == (1, 0, 1, 0)
    assert stats.timeouts == 0 and invariant(stats)
    assert stats.breaker_state == "closed"  # the cancelled loser is no failure
    assert [e for e in events if isinstance(e, tv.HedgeLaunched)] == [
        tv.HedgeLaunched(tool="search", attempt=2, at=1.0)
    ]


async def test_latency_mode_a_first_attempt_within_delay_launches_no_hedge(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Planned(by_attempt({1: Step(0.75, "quick")}))
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(hedging=tv.HedgingPolicy(delay=1.0)), tool)
        assert await sup.execute("search", {"q": "a"}) == "quick"
        stats = sup.stats("search")
    assert len(tool.runs) == 1 and stats.hedged == 0


async def test_latency_mode_a_failure_launches_the_next_attempt_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    steps = {1: Step(0.5, error=FlakyError("503")), 2: Step(0.25, "second")}
    tool = Planned(by_attempt(steps))
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(hedging=tv.HedgingPolicy(delay=5.0)), tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
        stats = sup.stats("search")
    assert (result.value, result.attempts) == ("second", 2)
    assert [r.started for r in tool.runs] == [0.0, 0.5]  # not 5.0
    assert (stats.successes, stats.failures, stats.hedged) == (1, 0, 1)


async def test_parallel_mode_starts_every_attempt_at_once_and_the_fastest_wins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    steps = {1: Step(3.0, "a"), 2: Step(1.0, "b"), 3: Step(2.0, "c")}
    tool = Planned(by_attempt(steps))
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(hedging=tv.HedgingPolicy(max_hedged_attempts=2, delay=0)), tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
        stats = sup.stats("search")
    assert (result.value, result.attempts, result.elapsed_s) == ("b", 3, 1.0)
    assert [r.started for r in tool.runs] == [0.0, 0.0, 0.0]
    assert [r.cancelled for r in tool.runs] == [True, False, True]
    assert (stats.hedged, stats.failures, stats.timeouts) == (2, 0, 0)


async def test_fallback_mode_never_hedges_a_slow_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Planned(by_attempt({1: Step(25.0, "slow")}))
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(hedging=tv.HedgingPolicy(delay=-1), timeout_s=60.0), tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
    assert (result.value, result.attempts, result.elapsed_s) == ("slow", 1, 25.0)


async def test_fallback_mode_hedges_only_after_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    steps = {1: Step(2.0, error=FlakyError("503")), 2: Step(0.5, "backup")}
    tool = Planned(by_attempt(steps))
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(hedging=tv.HedgingPolicy(delay=-1)), tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
        stats = sup.stats("search")
    assert (result.value, result.attempts, result.elapsed_s) == ("backup", 2, 2.5)
    assert [r.started for r in tool.runs] == [0.0, 2.0]
    assert (stats.successes, stats.failures, stats.hedged, stats.retries) == (1, 0, 1, 0)


# --------------------------------------------------------------------------- lost races


async def test_a_lost_race_raises_the_tools_own_latest_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    steps = {1: Step(2.0, error=FlakyError("first")), 2: Step(1.5, error=FlakyError("second"))}
    tool = Planned(by_attempt(steps))
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(hedging=tv.HedgingPolicy(delay=1.0)), tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
        stats = sup.stats("search")
    assert isinstance(result.error, FlakyError) and str(result.error) == "second"  # at t=2.5
    assert result.attempts == 2
    assert any("after 2 attempts" in note for note in result.error.__notes__)
    assert (stats.failures, stats.hedged, stats.retries) == (1, 1, 0) and invariant(stats)


async def test_the_retry_policy_retries_a_lost_race_with_a_new_race(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def plan(_q: Any, attempt: int) -> Step:
        return Step(0.5, "third race") if attempt == 5 else Step(0.5, error=FlakyError())

    tool = Planned(plan)
    spec = make_spec(
        hedging=tv.HedgingPolicy(max_hedged_attempts=1, delay=-1),
        retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=1.0),
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
        stats = sup.stats("search")
    # race 1: attempts 1, 2 fail; wait 1 s; race 2: 3, 4 fail; wait 1 s; race 3: 5 wins
    assert (result.value, result.attempts) == ("third race", 5)
    assert [r.started for r in tool.runs] == [0.0, 0.5, 2.0, 2.5, 4.0]
    assert (stats.retries, stats.hedged) == (2, 2)
    assert result.attempts == 1 + stats.retries + stats.hedged


async def test_every_hedged_attempt_has_its_own_timeout_and_the_watchdog_cuts_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The first attempt hangs past timeout_s (1.5 s): it alone is cut; the hedge,
    # started at 1 s, runs past the first's limit and wins at 1.75 s.
    tool = Planned(by_attempt({1: Step(math.inf), 2: Step(0.75, "hedge")}))
    spec = make_spec(hedging=tv.HedgingPolicy(delay=1.0), timeout_s=1.5)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
        stats = sup.stats("search")
    assert (result.value, result.elapsed_s) == ("hedge", 1.75)
    assert tool.runs[0].ended == 1.5 and tool.runs[0].cancelled
    assert stats.timeouts == 1 and stats.failures == 0


async def test_a_timed_out_attempt_in_fallback_mode_launches_the_hedge(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Planned(by_attempt({1: Step(math.inf), 2: Step(0.25, "backup")}))
    spec = make_spec(hedging=tv.HedgingPolicy(delay=-1), timeout_s=1.0)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
    assert (result.value, result.elapsed_s, result.attempts) == ("backup", 1.25, 2)


async def test_the_calls_deadline_bounds_every_hedged_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Planned(lambda _q, _n: Step(math.inf))
    spec = make_spec(hedging=tv.HedgingPolicy(max_hedged_attempts=3, delay=0.5))
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        [result] = await sup.execute_many([("search", {"q": "a"})], timeout=1.25)
        stats = sup.stats("search")
    assert isinstance(result.error, tv.ToolTimeoutError)
    assert result.elapsed_s == 1.25
    assert [r.started for r in tool.runs] == [0.0, 0.5, 1.0]
    assert all(r.cancelled and r.ended == 1.25 for r in tool.runs)
    assert (stats.failures, stats.hedged) == (1, 2) and invariant(stats)


async def test_a_caller_that_gives_up_cancels_every_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Planned(lambda _q, _n: Step(math.inf))
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(hedging=tv.HedgingPolicy(delay=0)), tool)
        with trio.move_on_after(2.0):
            await sup.execute("search", {"q": "a"})
        stats = sup.stats("search")
    assert len(tool.runs) == 2 and all(r.cancelled for r in tool.runs)
    assert (stats.cancelled, stats.failures) == (1, 0) and invariant(stats)


async def test_a_crashing_hedge_fails_the_call_and_the_actor_serves_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def plan(q: Any, attempt: int) -> Step:
        if q == "crash" and attempt == 2:
            return Step(0.25, error=SystemExit(3))
        return Step(5.0 if q == "crash" else 0.25, "ok")

    tool = Planned(plan)
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(hedging=tv.HedgingPolicy(delay=0)), tool)
        [crashed] = await sup.execute_many([("search", {"q": "crash"})])
        assert await sup.execute("search", {"q": "fine"}) == "ok"
        stats = sup.stats("search")
    assert isinstance(crashed.error, tv.ActorCrashedError)
    assert isinstance(crashed.error.cause, SystemExit)
    assert tool.runs[0].cancelled  # the other attempt of the crashed call
    assert (stats.failures, stats.successes) == (1, 1) and invariant(stats)


# --------------------------------------------------------------------------- breaker


@attrs.define
class RecordingBreaker:
    """A user breaker (the public protocol) that records what each attempt ended with."""

    outcomes: list[str] = attrs.field(factory=list)

    async def execute_with_breaker(self, func: Callable[[], Awaitable[Any]], tool_name: str) -> Any:
        try:
            value = await func()
        except Exception:
            self.outcomes.append("failure")
            raise
        except BaseException:
            self.outcomes.append("abandoned")
            raise
        self.outcomes.append("success")
        return value

    def get_state(self, tool_name: str) -> str:
        return "closed"

    def reset(self, tool_name: str) -> None:
        pass


async def test_every_hedged_attempt_passes_the_breaker_and_a_loser_is_abandoned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = RecordingBreaker()
    tool = Planned(by_attempt({1: Step(3.0), 2: Step(1.0, error=FlakyError()), 3: Step(0.5)}))
    spec = make_spec(
        hedging=tv.HedgingPolicy(max_hedged_attempts=2, delay=0),
        circuit_breaker_policy=breaker,  # type: ignore[arg-type]
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
    assert result.ok and result.attempts == 3
    # attempt 3 won at 0.5; attempts 1 and 2 were cancelled: abandoned, not failures
    assert sorted(breaker.outcomes) == ["abandoned", "abandoned", "success"]


async def test_losers_are_never_failures_nor_breaker_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # failure_threshold=1: one recorded failure would open the breaker
    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=1000)
    tool = Planned(lambda q, attempt: Step(0.1 * ((int(q) + attempt) % 4) + 0.05))
    spec = make_spec(
        hedging=tv.HedgingPolicy(max_hedged_attempts=2, delay=0.1),
        circuit_breaker_policy=breaker,
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        results = await sup.execute_many([("search", {"q": str(i)}) for i in range(40)])
        stats = sup.stats("search")
    assert all(r.ok for r in results)
    assert any(r.cancelled for r in tool.runs)  # there were losers
    assert (stats.failures, stats.successes, stats.breaker_state) == (0, 40, "closed")
    assert breaker.failure_count("search") == 0
    assert sum(r.attempts for r in results) == len(tool.runs) == 40 + stats.hedged


async def test_an_open_breaker_stops_the_race_and_the_call_raises_the_tools_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=60)
    tool = Planned(by_attempt({1: Step(0.5, error=FlakyError("down"))}))
    spec = make_spec(
        hedging=tv.HedgingPolicy(max_hedged_attempts=2, delay=-1),
        circuit_breaker_policy=breaker,
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        [result] = await sup.execute_many([("search", {"q": "a"})])
        stats = sup.stats("search")
    assert isinstance(result.error, FlakyError)  # the failure that opened the breaker
    assert any("breaker" in note for note in result.error.__notes__)
    assert (result.attempts, stats.hedged, stats.failures) == (1, 0, 1)


# --------------------------------------------------------------------------- idempotency


class CountingStore(tv.MemoryStore):
    """A MemoryStore that counts its claims and completions."""

    def __init__(self) -> None:
        super().__init__()
        self.claims = 0
        self.completes = 0

    async def claim(
        self, key: str, fingerprint: str, owner: str, claim_ttl_s: float
    ) -> ClaimOutcome:
        self.claims += 1
        return await super().claim(key, fingerprint, owner, claim_ttl_s)

    async def complete(
        self,
        key: str,
        owner: str,
        ttl_s: float,
        result_json: str | None,
        not_stored_reason: str | None = None,
    ) -> bool:
        self.completes += 1
        return await super().complete(key, owner, ttl_s, result_json, not_stored_reason)


def idempotent_spec(on_unknown: str = "fail", **fields: Any) -> tv.FunctionToolSpec:
    spec = make_spec(read_only=False, **fields)
    spec.idempotency.enabled = True
    spec.idempotency.on_unknown_outcome = on_unknown  # type: ignore[assignment]
    return spec


async def test_an_idempotent_hedged_call_runs_under_one_claim_and_is_stored_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CountingStore()
    tool = Planned(by_attempt({1: Step(5.0, "slow"), 2: Step(0.5, "fast")}))
    spec = idempotent_spec(hedging=tv.HedgingPolicy(delay=1.0))
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(spec, tool)
        [first] = await sup.execute_many([("search", {"q": "a"})])
        [again] = await sup.execute_many([("search", {"q": "a"})])
        stats = sup.stats("search")
    assert (first.value, first.attempts) == ("fast", 2)
    assert (again.value, again.cached, again.attempts) == ("fast", True, 0)
    assert len(tool.runs) == 2  # the second call did not run the tool
    keys = {r.key for r in tool.runs}
    assert len(keys) == 1 and None not in keys  # both attempts saw the call's one key
    assert (store.claims, store.completes) == (2, 1)  # one claim per call, one result
    assert (stats.cache_hits, stats.hedged) == (1, 1)


async def test_a_loser_is_not_an_unknown_outcome_but_a_lost_race_with_a_cut_attempt_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def plan(q: Any, attempt: int) -> Step:
        if q == "won":  # the first is cut at timeout_s (unknown), the hedge wins
            return Step(math.inf) if attempt == 1 else Step(0.75, "won")
        return Step(math.inf) if attempt == 1 else Step(0.25, error=FlakyError())

    tool = Planned(plan)
    spec = idempotent_spec(hedging=tv.HedgingPolicy(delay=0.5), timeout_s=1.0)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        won = [await sup.execute_many([("search", {"q": "won"})]) for _ in range(2)]
        lost = [await sup.execute_many([("search", {"q": "lost"})]) for _ in range(2)]
    won = [r for [r] in won]
    lost = [r for [r] in lost]
    assert [r.value for r in won] == ["won", "won"] and won[1].cached
    # lost: the hedge failed cleanly at 0.75, the first was cut at 1.0: unknown
    assert isinstance(lost[0].error, tv.IdempotencyOutcomeUnknownError)
    assert isinstance(lost[1].error, tv.IdempotencyOutcomeUnknownError)
    assert lost[1].attempts == 0  # the key does not run again


# --------------------------------------------------------------------------- spawn


async def test_spawn_refuses_hedging_on_a_tool_that_may_not_run_twice() -> None:
    tool = Planned(by_attempt({1: Step(0.0)}))
    spec = make_spec("charge", hedging=tv.HedgingPolicy(), read_only=False)
    async with tv.open_supervisor() as sup:
        with pytest.raises(ValueError, match="'charge'") as caught:
            await sup.spawn(spec, tool)
        assert sup.tools() == []
        message = str(caught.value)
        assert "spec.read_only = True" in message
        assert "spec.idempotency.enabled = True" in message
        with pytest.raises(ValueError, match="'charge'"):
            tv.FunctionToolExecutor(spec, tool)
        # either fix is accepted
        spec.read_only = True
        await sup.spawn(spec, tool)
        await sup.spawn(idempotent_spec(name="charge2", hedging=tv.HedgingPolicy()), tool)
        assert sup.tools() == ["charge", "charge2"]


# --------------------------------------------------------------------------- the rest


async def test_hedges_do_not_take_bulkhead_slots(autojump_clock: trio.testing.MockClock) -> None:
    tool = Planned(lambda _q, _n: Step(1.0))
    spec = make_spec(hedging=tv.HedgingPolicy(max_hedged_attempts=2, delay=0), max_concurrency=2)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        results = await sup.execute_many([("search", {"q": str(i)}) for i in range(5)])
    assert all(r.ok for r in results)
    # at most max_concurrency calls at once, each racing 1 + max_hedged_attempts
    assert tool.most_at_once == 2 * 3


async def test_the_executor_hedges_the_same_way(autojump_clock: trio.testing.MockClock) -> None:
    tool = Planned(by_attempt({1: Step(10.0, "slow"), 2: Step(0.25, "fast")}))
    events: list[tv.Event] = []
    executor = tv.FunctionToolExecutor(
        make_spec(hedging=tv.HedgingPolicy(delay=1.0)), tool, on_event=events.append
    )
    assert await executor.execute({"q": "a"}) == "fast"
    stats = executor.stats()
    assert (stats.successes, stats.hedged, stats.failures) == (1, 1, 0)
    assert tool.runs[0].cancelled
    assert events == [tv.HedgeLaunched(tool="search", attempt=2, at=1.0)]


async def test_hedge_events_are_published_only_while_someone_listens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Planned(lambda _q, _n: Step(0.5))
    events: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(hedging=tv.HedgingPolicy(delay=0)), tool)
        await sup.execute("search", {"q": "a"})  # nobody listens
        unsubscribe = sup.subscribe(events.append)
        await sup.execute("search", {"q": "b"})
        unsubscribe()
        await sup.execute("search", {"q": "c"})
        stats = sup.stats("search")
    assert stats.hedged == 3
    assert [e.attempt for e in events if isinstance(e, tv.HedgeLaunched)] == [2]


# --------------------------------------------------------------------------- many calls

LATENCIES = [0.01, 0.1, 0.4, 1.5, 10.0, math.inf]


@st.composite
def call_plans(draw: st.DrawFn) -> tuple[list[list[Step]], list[float | None], list[float | None]]:
    """For each call: what each of its attempts does, its timeout=, when its caller quits."""
    n = draw(st.integers(1, 25))
    step = st.builds(
        Step,
        after=st.sampled_from(LATENCIES),
        value=st.just("ok"),
        error=st.sampled_from([None, None, FlakyError("503"), TypeError("bug")]),
    )
    plans = [draw(st.lists(step, min_size=12, max_size=12)) for _ in range(n)]
    timeouts = [draw(st.sampled_from([None, None, 0.5, 3.0])) for _ in range(n)]
    quits = [draw(st.sampled_from([None, None, None, 0.2, 2.0])) for _ in range(n)]
    return plans, timeouts, quits


@settings(max_examples=40, deadline=None)
@given(
    plan=call_plans(),
    hedges=st.integers(1, 3),
    delay=st.sampled_from([-1.0, 0.0, 0.05, 0.3]),
    retries=st.sampled_from([1, 2]),
)
def test_many_hedged_calls_get_one_reply_each_and_the_counters_add_up(
    plan: tuple[list[list[Step]], list[float | None], list[float | None]],
    hedges: int,
    delay: float,
    retries: int,
) -> None:
    steps, timeouts, quits = plan
    tool = Planned(lambda q, attempt: steps[int(q)][attempt - 1])
    spec = make_spec(
        hedging=tv.HedgingPolicy(max_hedged_attempts=hedges, delay=delay),
        retry_policy=tv.FixedRetryPolicy(max_attempts=retries, delay_seconds=0.2),
        timeout_s=1.0,
        max_concurrency=4,
    )
    replies: dict[int, list[Any]] = {i: [] for i in range(len(steps))}

    async def caller(sup: tv.Supervisor, i: int) -> None:
        with trio.move_on_after(quits[i] or math.inf):
            [result] = await sup.execute_many([("search", {"q": str(i)})], timeout=timeouts[i])
            replies[i].append(result)
            return
        replies[i].append("quit")

    async def main() -> tv.ToolStats:
        async with tv.open_supervisor() as sup:
            await sup.spawn(spec, tool)
            async with trio.open_nursery() as nursery:
                for i in range(len(steps)):
                    nursery.start_soon(caller, sup, i)
            return sup.stats("search")

    stats = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert all(len(r) == 1 for r in replies.values())  # exactly one reply per call
    results = [r for [r] in replies.values() if r != "quit"]
    assert stats.calls == len(steps) and invariant(stats)
    assert stats.successes == sum(r.ok for r in results)
    assert stats.failures >= sum(not r.ok for r in results)  # quitters may have failed first
    # every attempt that ran is counted once: the first of each call, retries, hedges
    ran = {r.call for r in tool.runs}
    assert len(tool.runs) == len(ran) + stats.retries + stats.hedged
    assert all(r.ended is not None for r in tool.runs)  # nothing runs on after its call
    assert stats.hedged <= hedges * (len(ran) + stats.retries)
    for i, [reply] in replies.items():
        if reply == "quit":
            continue
        runs = [r for r in tool.runs if r.call == str(i)]
        assert reply.attempts == len(runs)  # ToolResult.attempts: the attempts that ran
        if reply.ok:  # the value of an attempt of this call that returned, not cut
            assert any(not r.cancelled and steps[i][r.attempt - 1].error is None for r in runs)
        else:
            assert not isinstance(reply.error, trio.Cancelled)
