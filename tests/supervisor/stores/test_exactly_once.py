"""Idempotent calls through the supervisor: exactly once, for every store and process.

The supervisor's idempotency cache joins concurrent duplicates in a process (single
flight); the store makes claims atomic across processes and keeps results across runs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolvisor as tv

WORKER = Path(__file__).with_name("idem_worker.py")


def payment_spec(name: str = "pay", *, persist: bool = True, **idem: Any) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        parameters=[
            tv.StringParameter(name="transaction_id", required=True),
            tv.NumericParameter(name="amount", minimum=0),
        ],
    )
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = persist
    spec.idempotency.key_fields = ["transaction_id"]
    for field, value in idem.items():
        setattr(spec.idempotency, field, value)
    return spec


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    made: tv.IdempotencyStore
    if request.param == "memory":
        made = tv.MemoryStore()
    elif request.param == "sqlite":
        made = tv.SQLiteStore(tmp_path / "idem.db")
    else:
        url = request.getfixturevalue("redis_url")
        made = tv.RedisStore(url, prefix=request.getfixturevalue("redis_prefix"))
    try:
        yield made
    finally:
        await made.aclose()


# ------------------------------------------------------------------ in one process


# The store is shared by the examples on purpose; each example uses fresh keys.
@pytest.mark.slow
@settings(max_examples=3, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))  # chooses the order and the delays of 10,000 calls
async def test_ten_thousand_concurrent_calls_over_100_keys_run_each_key_once(
    store: tv.IdempotencyStore, seed: int
) -> None:
    rnd = random.Random(seed)
    runs: Counter[str] = Counter()

    async def pay(args: dict[str, Any]) -> Any:
        runs[args["transaction_id"]] += 1
        await trio.sleep(rnd.uniform(0, 0.02))
        return {"tx": args["transaction_id"], "run": runs[args["transaction_id"]]}

    prefix = uuid.uuid4().hex[:8]  # hypothesis reuses the store: fresh keys per example
    order = [f"{prefix}-{i % 100}" for i in range(10_000)]
    rnd.shuffle(order)
    got: dict[int, Any] = {}
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(payment_spec(), pay)

        async def one(i: int, tx: str) -> None:
            if rnd.random() < 0.5:
                await trio.sleep(rnd.uniform(0, 0.03))
            got[i] = await sup.execute("pay", {"transaction_id": tx, "amount": 1})

        async with trio.open_nursery() as nursery:
            for i, tx in enumerate(order):
                nursery.start_soon(one, i, tx)
        stats = sup.stats("pay")
    assert set(runs.values()) == {1}
    assert len(runs) == 100
    assert all(got[i] == {"tx": tx, "run": 1} for i, tx in enumerate(order))
    assert stats.cache_hits == 10_000 - 100
    assert stats.successes == 10_000


async def test_same_key_with_other_arguments_is_a_conflict(store: tv.IdempotencyStore) -> None:
    ran = 0

    async def pay(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return args["amount"]

    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(payment_spec(), pay)
        tx = uuid.uuid4().hex
        assert await sup.execute("pay", {"transaction_id": tx, "amount": 10}) == 10
        with pytest.raises(tv.IdempotencyConflictError) as info:
            await sup.execute("pay", {"transaction_id": tx, "amount": 99})
        assert await sup.execute("pay", {"transaction_id": tx, "amount": 10}) == 10
    assert ran == 1
    assert "different arguments" in str(info.value)


async def test_tenants_never_share_results(store: tv.IdempotencyStore) -> None:
    async def pay(args: dict[str, Any], ctx: tv.ExecutionContext) -> Any:
        return ctx.tenant_id

    tx = uuid.uuid4().hex
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(payment_spec(), pay)
        a = tv.ExecutionContext(tenant_id="a")
        b = tv.ExecutionContext(tenant_id="b")
        assert await sup.execute("pay", {"transaction_id": tx}, a) == "a"
        assert await sup.execute("pay", {"transaction_id": tx}, b) == "b"
        assert await sup.execute("pay", {"transaction_id": tx}, a) == "a"
        assert sup.stats("pay").cache_hits == 1


async def test_failures_are_not_stored_and_waiters_get_the_error(
    store: tv.IdempotencyStore,
) -> None:
    attempts = 0

    async def flaky(args: dict[str, Any]) -> Any:
        nonlocal attempts
        attempts += 1
        await trio.sleep(0.05)
        if attempts == 1:
            raise ConnectionError("gateway down")
        return "charged"

    tx = uuid.uuid4().hex
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(payment_spec(), flaky)
        first = await sup.execute_many([("pay", {"transaction_id": tx})] * 5)
        assert all(isinstance(r.error, ConnectionError) for r in first)
        assert await sup.execute("pay", {"transaction_id": tx}) == "charged"
        assert await sup.execute("pay", {"transaction_id": tx}) == "charged"
    assert attempts == 2


async def test_a_non_serialisable_result_is_returned_and_never_rerun(
    store: tv.IdempotencyStore,
) -> None:
    ran = 0

    async def pay(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return {"at": object()}

    events: list[tv.Event] = []
    tx = uuid.uuid4().hex
    async with tv.open_supervisor(idempotency_store=store) as sup:
        sup.subscribe(events.append)
        await sup.spawn(payment_spec(), pay)
        value = await sup.execute("pay", {"transaction_id": tx})
        with pytest.raises(tv.IdempotencyStoreError, match="not stored"):
            await sup.execute("pay", {"transaction_id": tx})
    assert isinstance(value["at"], object)
    assert ran == 1
    assert [type(e) for e in events] == [tv.ResultNotStored, tv.CallFailed]
    assert "JSON" in events[0].reason  # type: ignore[union-attr]
    assert events[1].error_type == "IdempotencyStoreError"  # type: ignore[union-attr]


@pytest.mark.parametrize("on_unknown", ["fail", "retry"])
async def test_leader_giving_up_mid_attempt(
    autojump_clock: trio.testing.MockClock, on_unknown: str
) -> None:
    ran = 0

    async def slow(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        await trio.sleep(5)
        return ran

    async with tv.open_supervisor() as sup:
        await sup.spawn(payment_spec(persist=False, on_unknown_outcome=on_unknown), slow)
        async with trio.open_nursery() as nursery:

            async def impatient() -> None:
                with pytest.raises(tv.ToolTimeoutError):
                    await sup.execute("pay", {"transaction_id": "t"}, timeout=1)

            nursery.start_soon(impatient)
            await trio.sleep(0.1)
            if on_unknown == "retry":  # the waiter takes the key over and runs it
                assert await sup.execute("pay", {"transaction_id": "t"}) == 2
            else:  # the cut attempt may have charged: the key does not run again
                with pytest.raises(tv.IdempotencyOutcomeUnknownError) as info:
                    await sup.execute("pay", {"transaction_id": "t"})
                assert info.value.key == "idem:pay:-:fields:" + info.value.key.rsplit(":", 1)[1]
                assert await sup.forget("pay", info.value.key)
                assert await sup.execute("pay", {"transaction_id": "t"}) == 2
    assert ran == 2


async def test_results_expire_after_their_ttl(autojump_clock: trio.testing.MockClock) -> None:
    ran = 0

    async def pay(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return ran

    async with tv.open_supervisor() as sup:  # MemoryStore: trio's clock
        await sup.spawn(payment_spec(persist=False, ttl_s=60), pay)
        assert await sup.execute("pay", {"transaction_id": "t"}) == 1
        await trio.sleep(59)
        assert await sup.execute("pay", {"transaction_id": "t"}) == 1
        await trio.sleep(2)
        assert await sup.execute("pay", {"transaction_id": "t"}) == 2


async def test_execute_leader_failing_answers_its_duplicates_and_releases_the_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts = 0

    async def flaky(args: dict[str, Any]) -> Any:
        nonlocal attempts
        attempts += 1
        await trio.sleep(1)
        if attempts == 1:
            raise ConnectionError("gateway down")
        return "charged"

    store = tv.MemoryStore()
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await sup.execute("pay", {"transaction_id": "t"})
        except ConnectionError as exc:
            errors.append(exc)

    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(payment_spec(), flaky)
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(call)
                await trio.sleep(0.1)
        assert len(errors) == 3
        assert errors[1] is errors[0]  # the duplicates got the leader's own error
        assert len(store) == 0  # released, not stored
        assert await sup.execute("pay", {"transaction_id": "t"}) == "charged"
        assert len(store) == 1  # the success is stored
        assert await sup.execute("pay", {"transaction_id": "t"}) == "charged"
        stats = sup.stats("pay")
    assert attempts == 2
    assert stats.failures == 3
    assert stats.cache_hits == 1


async def test_execute_leader_cancelled_hands_the_key_to_a_waiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With on_unknown_outcome="retry" a cancelled leader leaves the key to a waiter."""
    ran = 0

    async def slow(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        await trio.sleep(5)
        return ran

    async with tv.open_supervisor() as sup:
        await sup.spawn(payment_spec(on_unknown_outcome="retry"), slow)
        got: list[Any] = []
        leader = trio.CancelScope()

        async def lead() -> None:
            with leader:
                await sup.execute("pay", {"transaction_id": "t"})

        async def wait() -> None:
            got.append(await sup.execute("pay", {"transaction_id": "t"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(lead)
            await trio.sleep(0.1)
            nursery.start_soon(wait)
            await trio.sleep(0.1)
            leader.cancel()
        assert got == [2]  # the waiter ran it: the cancelled leader left no result
        assert await sup.execute("pay", {"transaction_id": "t"}) == 2
        stats = sup.stats("pay")
    assert ran == 2
    assert stats.cancelled == 1
    assert stats.cache_hits == 1


async def test_execute_leader_cancelled_mid_attempt_leaves_the_outcome_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran = 0

    async def slow(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        await trio.sleep(5)
        return ran

    async with tv.open_supervisor() as sup:
        await sup.spawn(payment_spec(), slow)
        with trio.move_on_after(1):
            await sup.execute("pay", {"transaction_id": "t"})
        with pytest.raises(tv.IdempotencyOutcomeUnknownError):
            await sup.execute("pay", {"transaction_id": "t"})
        stats = sup.stats("pay")
    assert ran == 1
    assert (stats.calls, stats.cancelled, stats.failures) == (2, 1, 1)


async def test_supervisors_sharing_a_memory_store_run_a_key_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran = 0

    async def slow(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        await trio.sleep(1)
        return ran

    store = tv.MemoryStore()
    got: list[Any] = []

    async def call(sup: tv.Supervisor) -> None:
        got.append(await sup.execute("pay", {"transaction_id": "t"}))

    async with (
        tv.open_supervisor(idempotency_store=store) as first,
        tv.open_supervisor(idempotency_store=store) as second,
    ):
        await first.spawn(payment_spec(), slow)
        await second.spawn(payment_spec(), slow)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, first)
            await trio.sleep(0.1)
            nursery.start_soon(call, second)  # finds the first's claim in the store: waits
        assert second.stats("pay").cache_hits == 1
    assert got == [1, 1]
    assert ran == 1


async def test_a_ttl_the_memory_store_refuses_returns_the_value_and_keeps_the_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran = 0

    async def pay(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return "charged"

    events: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        sup.subscribe(events.append)
        await sup.spawn(payment_spec(persist=False, ttl_s=float("inf")), pay)
        assert await sup.execute("pay", {"transaction_id": "t"}) == "charged"
        with pytest.raises(tv.ToolTimeoutError):  # the claim still holds the key
            await sup.execute("pay", {"transaction_id": "t"}, timeout=5)
    assert ran == 1
    assert [type(e) for e in events] == [tv.ResultNotStored, tv.CallFailed]
    assert "failed to record" in events[0].reason  # type: ignore[union-attr]
    assert events[1].error_type == "ToolTimeoutError"  # type: ignore[union-attr]


async def test_executor_shares_the_same_idempotency(tmp_path: Path) -> None:
    ran = 0

    async def pay(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return "ok"

    store = tv.SQLiteStore(tmp_path / "x.db")
    try:
        executor = tv.FunctionToolExecutor(payment_spec(), pay, idempotency_store=store)
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(executor.execute, {"transaction_id": "tx-1"})
        again = tv.FunctionToolExecutor(payment_spec(), pay, idempotency_store=store)
        assert await again.execute({"transaction_id": "tx-1"}) == "ok"
    finally:
        await store.aclose()
    assert ran == 1


# ------------------------------------------------------------------ broken stores


async def test_corrupted_result_is_an_error_and_nothing_runs(tmp_path: Path) -> None:
    ran = 0

    async def pay(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return "ok"

    path = tmp_path / "idem.db"
    store = tv.SQLiteStore(path)
    try:
        async with tv.open_supervisor(idempotency_store=store) as sup:
            await sup.spawn(payment_spec(), pay)
            await sup.execute("pay", {"transaction_id": "tx-1"})
            with sqlite3.connect(path) as raw:  # someone tampers with the stored result
                tables = [r[0] for r in raw.execute("select name from sqlite_master")]
                table = next(t for t in tables if "record" in t or "idem" in t)
                cols = [r[1] for r in raw.execute(f"pragma table_info({table})")]
                col = next(c for c in cols if "result" in c)
                raw.execute(f"update {table} set {col} = 'not json {{'")
            with pytest.raises(tv.IdempotencyStoreError):
                await sup.execute("pay", {"transaction_id": "tx-1"})
    finally:
        await store.aclose()
    assert ran == 1


async def test_a_store_that_is_down_runs_nothing() -> None:
    ran = 0

    async def pay(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return "ok"

    with trio.socket.socket() as probe:  # a port with no server behind it
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = tv.RedisStore(f"redis://127.0.0.1:{port}/0")
    try:
        async with tv.open_supervisor(idempotency_store=store) as sup:
            await sup.spawn(payment_spec(), pay)
            with pytest.raises(tv.IdempotencyStoreError):
                await sup.execute("pay", {"transaction_id": "tx-1"}, timeout=10)
            stats = sup.stats("pay")
    finally:
        await store.aclose()
    assert ran == 0
    assert stats.failures == 1


# ------------------------------------------------------------------ across processes


def _run_worker(*argv: str, timeout: float = 60) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(WORKER), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    parsed: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return parsed


def _executions(log: Path) -> Counter[str]:
    if not log.exists():
        return Counter()
    return Counter(line.split()[1] for line in log.read_text().splitlines())


def _target(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return str(tmp_path / "shared.db")
    return f"{request.getfixturevalue('redis_url')}|{request.getfixturevalue('redis_prefix')}"


@pytest.mark.slow  # worker processes
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_two_processes_racing_on_the_same_keys_run_each_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = _target(kind, tmp_path, request)
    log = tmp_path / "runs.log"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), kind, target, "run", "50", str(log), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    results = [json.loads(o[0].strip().splitlines()[-1])["results"] for o in outputs]
    runs = _executions(log)
    assert sorted(runs) == sorted(str(k) for k in range(50))
    assert set(runs.values()) == {1}, "a key ran twice across processes"
    assert results[0] == results[1]  # both processes got each key's one result


@pytest.mark.slow  # worker processes
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_new_process_gets_stored_results_with_zero_executions(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = _target(kind, tmp_path, request)
    log = tmp_path / "runs.log"
    first = _run_worker(kind, target, "run", "20", str(log))
    second = _run_worker(kind, target, "run", "20", str(log))
    assert sum(_executions(log).values()) == 20
    assert second["results"] == first["results"]
    assert second["cache_hits"] == 40


@pytest.mark.slow  # worker processes
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_killed_holder_blocks_its_key_only_until_the_claim_expires(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = _target(kind, tmp_path, request)
    log = tmp_path / "runs.log"
    with subprocess.Popen(
        [sys.executable, str(WORKER), kind, target, "hang", "1", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "running"
        finally:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)
    started = time.monotonic()
    after = _run_worker(kind, target, "run", "1", str(log))
    waited = time.monotonic() - started
    assert after["results"]["0"]["by"] != holder.pid
    assert _executions(log)["0"] == 2  # the killed run, then exactly one more
    assert waited < 30


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_live_holder_keeps_its_key_past_its_lease_and_a_killed_one_frees_it(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The holder renews its 2 s lease while it lives: another process that wants the key
    waits (6 s, three leases) without running it; once the holder is SIGKILLed, the
    waiter runs it exactly once."""
    target = _target(kind, tmp_path, request)
    log = tmp_path / "runs.log"
    with subprocess.Popen(
        [sys.executable, str(WORKER), kind, target, "hang", "1", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "running"
            with subprocess.Popen(
                [sys.executable, str(WORKER), kind, target, "run", "1", str(log)],
                stdout=subprocess.PIPE,
                text=True,
            ) as waiter:
                time.sleep(6.0)
                assert _executions(log)["0"] == 1  # the lease was renewed: nobody else ran
                assert waiter.poll() is None  # still waiting for the key
                os.kill(holder.pid, signal.SIGKILL)
                holder.wait(timeout=10)
                out, _ = waiter.communicate(timeout=30)
        finally:
            if holder.poll() is None:
                os.kill(holder.pid, signal.SIGKILL)
    after = json.loads(out.strip().splitlines()[-1])
    assert after["results"]["0"]["by"] == waiter.pid
    assert _executions(log)["0"] == 2  # the holder's run, then exactly one more
