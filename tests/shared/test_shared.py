"""RedisShared in one trio run: several instances stand for several processes.

Each ``RedisShared`` has its own connection, background task and ledgers, exactly as a
process has; the fleet tests in real OS processes are in test_fleet_processes.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

import coredis
import pytest
import trio

import toolvisor as tv
from toolvisor._local_redis import free_port
from toolvisor.errors import CircuitOpenError

pytestmark = pytest.mark.redis

FAST = {"interval_s": 0.02, "timeout_s": 0.5}


class DownError(Exception):
    """The dependency is down."""


def fleet(url: str, name: str, n: int, **options: Any) -> list[tv.RedisShared]:
    return [tv.RedisShared(url, name, **{**FAST, **options}) for _ in range(n)]


async def connect(*shared: tv.RedisShared) -> None:
    for s in shared:
        assert await s.wait_connected(5.0), s


async def exchanged(shared: tv.RedisShared, rounds: int = 3) -> None:
    """Let a few exchanges happen (each interval_s apart)."""
    await trio.sleep(shared.interval_s * rounds + 0.05)


# --- construction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"url": "http://localhost:6379"}, ValueError, "'url' must be redis://"),
        ({"url": "localhost:6379"}, ValueError, "'url' must be redis://"),
        ({"url": "redis://:secret@/0"}, ValueError, "names no host"),
        ({"url": "redis://localhost:port/0"}, ValueError, "'url'"),
        ({"url": "unix://"}, ValueError, "names no socket path"),
        ({"url": 6379}, TypeError, "'url' must be a str"),
        ({"name": ""}, ValueError, "'name' must be 1 to 128"),
        ({"name": "x" * 129}, ValueError, "'name' must be 1 to 128"),
        ({"name": "pay ments"}, ValueError, "'name' 'pay ments' may hold only"),
        ({"name": "a:b"}, ValueError, "may hold only"),
        ({"name": "-a"}, ValueError, "must start with a letter or digit"),
        ({"name": None}, TypeError, "'name' must be a str"),
        ({"interval_s": 0}, ValueError, "'interval_s'"),
        ({"interval_s": math.nan}, ValueError, "'interval_s'"),
        ({"timeout_s": -1}, ValueError, "'timeout_s'"),
        ({"timeout_s": True}, ValueError, "'timeout_s'"),
        ({"prefix": 1}, TypeError, "'prefix'"),
    ],
)
def test_bad_arguments_name_the_problem(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args = {"url": "redis://localhost:6379/0", "name": "payments", **kwargs}
    with pytest.raises(error, match=match):
        tv.RedisShared(**args)


def test_the_password_never_shows() -> None:
    with pytest.raises(ValueError) as caught:
        tv.RedisShared("redis://:hunter2@/0", "payments")
    assert "hunter2" not in str(caught.value)
    shared = tv.RedisShared("redis://:hunter2@db:6379/0", "payments")
    assert "hunter2" not in repr(shared) + shared.url + repr(tv.RetryBudget(shared=shared))


def test_one_shared_serves_one_policy_of_each_kind() -> None:
    shared = tv.RedisShared("redis://localhost:6379/0", "payments")
    tv.RetryBudget(shared=shared)
    tv.RateLimit(10, shared=shared)
    tv.StandardCircuitBreakerPolicy(shared=shared)
    with pytest.raises(ValueError, match="already serves a retry budget"):
        tv.RetryBudget(shared=shared)
    with pytest.raises(ValueError, match="already serves a rate limit"):
        tv.RateLimit(5, shared=shared)
    with pytest.raises(ValueError, match="already serves a breaker policy"):
        tv.AdaptiveCircuitBreakerPolicy(shared=shared)


@pytest.mark.parametrize(
    "build",
    [
        lambda: tv.RetryBudget(shared="redis://localhost"),
        lambda: tv.RateLimit(1, shared="redis://localhost"),
        lambda: tv.StandardCircuitBreakerPolicy(shared="redis://localhost"),
    ],
)
def test_shared_must_be_a_redis_shared(build: Callable[[], object]) -> None:
    with pytest.raises(TypeError, match="'shared' must be a RedisShared"):
        build()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fleet_error_rate": 0}, "fleet_error_rate"),
        ({"fleet_error_rate": 1.5}, "fleet_error_rate"),
        ({"fleet_min_calls": 0}, "fleet_min_calls"),
        ({"fleet_window_s": 0}, "fleet_window_s"),
    ],
)
def test_bad_fleet_breaker_settings_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises((ValueError, TypeError), match=field):
        tv.StandardCircuitBreakerPolicy(**kwargs)


def test_outside_trio_a_shared_policy_decides_locally() -> None:
    shared = tv.RedisShared("redis://localhost:6379/0", "payments")
    budget = tv.RetryBudget(ratio=0.5, min_retries_per_s=0.0, shared=shared)
    budget.deposit(0.0)
    budget.deposit(0.0)
    assert budget.try_withdraw(0.0) and not budget.try_withdraw(0.0)
    assert not shared.connected


# --- the retry budget ------------------------------------------------------------------


async def test_a_process_spends_credits_the_others_deposited(redis_url: str, name: str) -> None:
    a, b, c = fleet(redis_url, name, 3)
    budgets = [
        tv.RetryBudget(ratio=0.2, min_retries_per_s=0.0, ttl_s=30, shared=s) for s in (a, b, c)
    ]
    await connect(a, b, c)
    for budget in budgets[:2]:
        for _ in range(50):
            budget.deposit(trio.current_time())
    await exchanged(a)
    # c made no call: alone it could not retry; the fleet's 100 calls pay for 20 retries.
    local = tv.RetryBudget(ratio=0.2, min_retries_per_s=0.0, ttl_s=30)
    assert not local.try_withdraw(trio.current_time())
    granted = 0
    for _ in range(40):
        granted += budgets[2].try_withdraw(trio.current_time())
        await trio.sleep(0.01)
    assert 18 <= granted <= 20
    # Nobody else can spend what c spent.
    await exchanged(a)
    assert sum(b.try_withdraw(trio.current_time()) for b in budgets) <= 20 - granted


async def test_a_fleet_wide_failure_storm_holds_the_ratio(redis_url: str, name: str) -> None:
    shared = fleet(redis_url, name, 3)
    runs = 0

    async def down(args: dict[str, Any]) -> Any:
        nonlocal runs
        runs += 1
        raise DownError("503")

    async def process(sup: tv.Supervisor, n: int) -> None:
        for start in range(0, n, 10):
            results = await sup.execute_many([("down", {"i": i}) for i in range(start, start + 10)])
            assert all(isinstance(r.error, DownError) for r in results)

    async with (
        tv.open_supervisor() as s1,
        tv.open_supervisor() as s2,
        tv.open_supervisor() as s3,
    ):
        sups = [s1, s2, s3]
        for sup, sh in zip(sups, shared, strict=True):
            spec = tv.FunctionToolSpec(
                id="down-v1", tool_name="down", parameters=[tv.IntegerParameter(name="i")]
            )
            spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.001)
            spec.retry_budget = tv.RetryBudget(
                ratio=0.2, min_retries_per_s=0.0, ttl_s=60, shared=sh
            )
            await sup.spawn(spec, down)
        await connect(*shared)
        async with trio.open_nursery() as nursery:
            for sup, n in zip(sups, (300, 200, 100), strict=True):
                nursery.start_soon(process, sup, n)
        stats = [sup.stats("down") for sup in sups]
    calls = sum(s.calls for s in stats)
    retries = sum(s.retries for s in stats)
    assert calls == 600 and runs == calls + retries
    assert 0.18 * calls <= retries <= 0.2 * calls
    assert all(s.calls == s.failures for s in stats)


async def test_a_lost_answer_is_applied_once(redis_url: str, name: str) -> None:
    (shared,) = fleet(redis_url, name, 1, interval_s=60.0)
    budget = tv.RetryBudget(ratio=0.5, min_retries_per_s=0.0, ttl_s=30, shared=shared)
    await connect(shared)
    member = budget._fleet
    assert member is not None
    for _ in range(10):
        budget.deposit(trio.current_time())
    request = member.ledger.outgoing(trio.current_time())
    assert request is not None and request.calls == 10
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        await member.exchange(client)  # sends the request in flight
        assert member.ledger.inflight is None
        member.ledger.inflight = request  # as if its answer had been lost: sent again
        await member.exchange(client)
        keys = [k async for k in client.scan_iter(match=f"toolvisor:shared:{name}:budget:[0-9]*")]
        calls = [int(await client.hget(k, "c") or 0) for k in keys]
        assert sum(calls) == 10
        # Every key the fleet writes expires by itself.
        for key in [k async for k in client.scan_iter(match=f"toolvisor:shared:{name}:*")]:
            assert await client.pttl(key) > 0, key


# --- the rate limit ----------------------------------------------------------------------


async def test_a_shared_rate_limit_admits_at_most_rate_t_plus_burst(
    redis_url: str, name: str
) -> None:
    shared = fleet(redis_url, name, 3)
    rate, burst = 100.0, 20.0
    limits = [tv.RateLimit(rate, burst=burst, shared=s) for s in shared]
    start = trio.current_time()
    await connect(*shared)
    admitted = [0, 0, 0]

    async def hammer(i: int) -> None:
        end = trio.current_time() + 0.6
        while trio.current_time() < end:
            if limits[i].reserve(trio.current_time()) >= 0:
                admitted[i] += 1
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        go = trio.current_time()
        for i in range(3):
            nursery.start_soon(hammer, i)
    elapsed = trio.current_time() - start
    total = sum(admitted)
    # From the first exchange (the bucket's creation) on, at most burst + rate * t.
    assert total <= burst + rate * elapsed
    # Three local buckets would admit about three times that; the fleet's uses its share.
    assert total >= 0.8 * (burst + rate * (trio.current_time() - go)) - 3
    assert min(admitted) > 0


async def test_a_shared_rate_limit_call_may_wait_for_its_token(redis_url: str, name: str) -> None:
    (shared,) = fleet(redis_url, name, 1)
    limit = tv.RateLimit(10, burst=1, max_wait_s=0.5, shared=shared)
    await connect(shared)
    await exchanged(shared)
    delays = []
    for _ in range(6):
        delays.append(limit.reserve(trio.current_time()))
        await exchanged(shared, 2)
    # The first comes at once; later ones wait up to max_wait_s (the fleet refills 10/s),
    # or are refused with how long to wait (negative) while the lease is empty.
    assert delays[0] == 0.0
    assert all(d <= 0.5 + 1e-6 for d in delays)


# --- the breakers ------------------------------------------------------------------------


async def call(policy: tv.StandardCircuitBreakerPolicy, fail: bool) -> None:
    async def tool() -> int:
        if fail:
            raise DownError("503")
        return 1

    # The tool's failure, or CircuitOpenError from the failure that opened the breaker.
    with contextlib.suppress(DownError, CircuitOpenError):
        await policy.execute_with_breaker(tool, "search")


async def test_breakers_open_on_the_fleets_failure_rate(redis_url: str, name: str) -> None:
    shared = fleet(redis_url, name, 3)
    policies = [
        tv.StandardCircuitBreakerPolicy(
            failure_threshold=5,
            recovery_timeout=0.5,
            shared=s,
            fleet_error_rate=0.4,
            fleet_min_calls=30,
            fleet_window_s=30,
        )
        for s in shared
    ]
    await connect(*shared)
    # Each process: 15 calls, every other one failing: never 5 failures in a row, and
    # fewer than fleet_min_calls on its own. The fleet: 45 calls, 50 % failed.
    for i in range(15):
        for policy in policies:
            await call(policy, fail=i % 2 == 0)
        if i < 8:
            await exchanged(shared[0], 1)
            assert all(p.get_state("search") == "closed" for p in policies)
    await exchanged(shared[0])
    assert [p.get_state("search") for p in policies] == ["open"] * 3
    ran = False

    async def tool() -> None:
        nonlocal ran
        ran = True

    with pytest.raises(CircuitOpenError):
        await policies[0].execute_with_breaker(tool, "search")
    assert not ran
    # Recovery is each process's own: a trial success closes it, and the failures that
    # opened it do not open it again.
    await trio.sleep(0.5)
    await call(policies[0], fail=False)
    assert policies[0].get_state("search") == "closed"
    await exchanged(shared[0])
    assert policies[0].get_state("search") == "closed"
    assert policies[1].get_state("search") == "half_open"


async def test_one_failing_process_does_not_open_a_healthy_fleet(redis_url: str, name: str) -> None:
    shared = fleet(redis_url, name, 3)
    policies = [
        tv.StandardCircuitBreakerPolicy(
            failure_threshold=3, shared=s, fleet_error_rate=0.5, fleet_min_calls=20
        )
        for s in shared
    ]
    await connect(*shared)
    for _ in range(3):  # the bad host opens its own breaker
        await call(policies[0], fail=True)
    for _ in range(20):
        for policy in policies[1:]:
            await call(policy, fail=False)
    await exchanged(shared[0])
    assert [p.get_state("search") for p in policies] == ["open", "closed", "closed"]


# --- Redis unreachable ---------------------------------------------------------------------


async def test_without_redis_every_policy_works_on_its_local_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    caplog.set_level(logging.INFO, logger="toolvisor.shared")
    b_shared, r_shared, c_shared = (tv.RedisShared(url, n, **FAST) for n in "brc")
    budget = tv.RetryBudget(ratio=0.5, min_retries_per_s=0.0, shared=b_shared)
    limit = tv.RateLimit(5, burst=3, shared=r_shared)
    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=2, shared=c_shared)
    with trio.fail_after(5):  # never blocks: each decision is immediate
        assert not await b_shared.wait_connected(0.3)
        for _ in range(4):
            budget.deposit(trio.current_time())
        assert [budget.try_withdraw(trio.current_time()) for _ in range(3)] == [1, 1, 0]
        assert [limit.reserve(trio.current_time()) >= 0 for _ in range(4)] == [1, 1, 1, 0]
        await call(breaker, fail=True)
        await call(breaker, fail=True)
        assert breaker.get_state("search") == "open"
        await trio.sleep(0.3)  # several reconnection attempts
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 3  # once per RedisShared, not once per attempt
    assert url.rsplit(":", 1)[0] in repr(warnings[0].args[0])
