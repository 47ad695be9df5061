"""Remote calls across processes: a real redis-server, real ``toolvisor worker`` processes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from remote_support import ROOT, WorkerProcess, eventually, launch, read_trace, serving, settled
from remote_tools import TOOLS

import toolvisor
from toolvisor import (
    CircuitOpenError,
    ExecutionContext,
    FieldError,
    RemoteToolError,
    ToolTimeoutError,
    UnknownToolError,
    ValidationError,
)

Fleet = tuple[str, WorkerProcess, Path]


async def test_calls_run_on_the_worker_process(redis_url: str, shared_fleet: Fleet) -> None:
    namespace, worker, _trace_log = shared_fleet
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        value = await remote.execute("echo", {"text": "hi"})
        assert value == {"echo": "hi", "pid": worker.pid}
        pending = await remote.submit("echo", {"text": "later"}, timeout=10)
        result = await pending.result()
        assert result.ok and result.value["echo"] == "later" and result.attempts == 1
        assert pending.done
        results = await remote.execute_many(
            [("echo", {"text": str(i)}) for i in range(20)] + [("echo", {})]
        )
        assert [r.value["echo"] for r in results[:20]] == [str(i) for i in range(20)]
        assert isinstance(results[20].error, ValidationError)


async def test_function_schemas_are_the_fleets_tools(redis_url: str, shared_fleet: Fleet) -> None:
    namespace, _worker, _trace = shared_fleet
    expected = {spec.tool_name: spec.to_function_schema() for spec, _fn in TOOLS}
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        assert await remote.function_schemas() == dict(sorted(expected.items()))
        assert await remote.tools() == sorted(expected)


async def test_a_namespace_without_workers_knows_no_tools(redis_url: str, namespace: str) -> None:
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        assert await remote.function_schemas() == {}
        with pytest.raises(UnknownToolError) as info:
            await remote.execute("echo", {"text": "x"})
        assert info.value.known == ()


async def test_errors_cross_as_their_own_classes(redis_url: str, shared_fleet: Fleet) -> None:
    namespace, worker, _trace_log = shared_fleet
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        with pytest.raises(RemoteToolError) as tool_error:
            await remote.execute("decline", {"card": "4242"})
        assert tool_error.value.type_name == "remote_tools.PaymentDeclinedError"
        assert tool_error.value.message.startswith("card 4242 expired")
        assert tool_error.value.tool == "decline"

        with pytest.raises(ValidationError) as invalid:
            await remote.execute("echo", {"text": 3, "extra": True})
        assert invalid.value.tool == "echo"
        assert all(isinstance(e, FieldError) for e in invalid.value.errors)
        assert {e.path for e in invalid.value.errors} >= {"/text"}

        with pytest.raises(ToolTimeoutError) as attempt:  # spec.timeout_s is 0.5 s
            await remote.execute("stuck", {}, timeout=20)
        assert (attempt.value.scope, attempt.value.timeout_s) == ("attempt", 0.5)

        with pytest.raises(RemoteToolError) as opaque:
            await remote.execute("opaque", {})
        assert opaque.value.type_name == "TypeError"
        assert "JSON" in opaque.value.message

        with pytest.raises(RemoteToolError) as deep:
            await remote.execute("opaque", {"kind": "deep"})
        assert deep.value.type_name == "TypeError"
        assert "nested too deep" in deep.value.message
        with pytest.raises(RemoteToolError) as unprintable:
            await remote.execute("opaque", {"kind": "unprintable"})
        assert unprintable.value.type_name == "ValueError"
        assert "<an integer of 16,610 bits>" in unprintable.value.message
        with pytest.raises(RemoteToolError) as surrogate:
            await remote.execute("opaque", {"kind": "surrogate"})
        assert surrogate.value.type_name == "TypeError"
        assert "lone surrogate" in surrogate.value.message
        with pytest.raises(RemoteToolError) as quoting:
            await remote.execute("opaque", {"kind": "surrogate_error"})
        assert quoting.value.type_name == "KeyError"
        assert "no user \\udc00" in quoting.value.message
        nested: list[object] = []
        for _ in range(100_000):
            nested = [nested]
        with pytest.raises(ValidationError, match="nested too deep"):
            await remote.execute("echo", {"text": nested})
        assert (await remote.execute("echo", {"text": "still serving"}))["pid"] == worker.pid

        # A lone surrogate (UTF-8, and so Redis, cannot carry one) is refused before it
        # is sent; before, it broke the connection for every call of the caller.
        with pytest.raises(ValidationError, match="lone surrogate"):
            await remote.execute("echo", {"text": "\ud800"})
        with pytest.raises(ValueError, match=r"ctx\.tenant_id must be valid Unicode"):
            await remote.execute("echo", {"text": "x"}, ExecutionContext(tenant_id="\ud800"))
        with pytest.raises(ValueError, match=r"ctx\.request_id or ctx\.metadata"):
            await remote.execute("echo", {"text": "x"}, ExecutionContext(metadata={"n": "\udc00"}))
        with pytest.raises(TypeError, match="ExecutionContext"):
            await remote.execute("echo", {"text": "x"}, {"tenant_id": "t"})  # type: ignore[arg-type]
        assert (await remote.execute("echo", {"text": "on"}))["pid"] == worker.pid

        with pytest.raises(UnknownToolError) as unknown:
            await remote.execute("nope", {})
        assert "echo" in unknown.value.known

        with pytest.raises(ValidationError):
            await remote.execute("echo", {"text": math.nan})  # strict JSON: no NaN on the wire


async def test_a_fallback_answer_says_so_across_the_wire(
    redis_url: str, shared_fleet: Fleet
) -> None:
    namespace, _worker, _trace_log = shared_fleet
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        result = await (await remote.submit("quote", {})).result()
        assert (result.ok, result.value, result.fallback) == (
            True,
            {"price": 10, "stale": True},
            True,
        )
        assert result.attempts == 1  # the tool ran and failed; the fallback answered
        plain = await (await remote.submit("echo", {"text": "hi"})).result()
        assert (plain.ok, plain.fallback) == (True, False)


async def test_a_breaker_opened_on_the_worker_refuses_with_circuit_open_error(
    redis_url: str, shared_fleet: Fleet
) -> None:
    namespace, _worker, _trace_log = shared_fleet
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        # the tool ran and failed: its own error, also when that failure opened the breaker
        with pytest.raises(RemoteToolError) as first:
            await remote.execute("fragile", {})
        assert first.value.type_name == "ConnectionError"
        with pytest.raises(CircuitOpenError) as refused:  # the tool did not run
            await remote.execute("fragile", {})
        assert refused.value.tool == "fragile"
        assert 0 < refused.value.retry_after <= 60


async def test_context_reaches_the_tool(redis_url: str, shared_fleet: Fleet) -> None:
    namespace, _worker, _trace_log = shared_fleet
    ctx = ExecutionContext(tenant_id="t1", request_id="r1", metadata={"a": [1, 2]})
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        seen = await remote.execute("whoami", {}, ctx)
    assert seen == {"tenant_id": "t1", "request_id": "r1", "metadata": {"a": [1, 2]}}


@pytest.mark.slow
async def test_an_expired_call_is_never_started(
    redis_url: str, namespace: str, start_worker: Any, trace_log: Path, raw_redis: Any
) -> None:
    await start_worker("--concurrency", "1")
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        busy = await remote.submit("sleepy", {"key": "busy", "s": 1.0})
        await eventually(
            lambda: ("start", "sleepy", "busy") in [r[:3] for r in read_trace(trace_log)]
        )
        started = trio.current_time()
        with pytest.raises(ToolTimeoutError) as info:
            await remote.execute("sleepy", {"key": "late", "s": 0}, timeout=0.3)
        assert info.value.scope == "call"
        assert 0.3 <= trio.current_time() - started < 0.6
        assert await busy.value() == "busy"
        # the expired call was read and settled, not run
        await settled(raw_redis.xlen, f"{namespace}:call:sleepy")
    assert [r[:3] for r in read_trace(trace_log)] == [
        ("start", "sleepy", "busy"),
        ("end", "sleepy", "busy"),
    ]


async def test_a_cancelled_caller_cancels_the_call_on_its_worker(
    redis_url: str, shared_fleet: Fleet
) -> None:
    namespace, _worker, trace_log = shared_fleet
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        with trio.move_on_after(0.5) as scope:
            await remote.execute("sleepy", {"key": "c1", "s": 4})
        assert scope.cancelled_caught
        await eventually(
            lambda: ("cancelled", "sleepy", "c1") in [r[:3] for r in read_trace(trace_log)], 3
        )
        # a call past its timeout is cancelled on the worker too
        with pytest.raises(ToolTimeoutError):
            await remote.execute("sleepy", {"key": "c2", "s": 4}, timeout=0.5)
        await eventually(
            lambda: ("cancelled", "sleepy", "c2") in [r[:3] for r in read_trace(trace_log)], 3
        )
    assert ("end", "sleepy", "c1") not in [r[:3] for r in read_trace(trace_log)]


@pytest.mark.parametrize(
    ("args", "ctx", "problem"),
    [
        ('{"text":' + "[" * 100_000 + "]" * 100_000 + "}", "{}", "nests too deeply"),
        ('{"text":"x"}', '{"metadata":' + "[" * 100_000 + "]" * 100_000 + "}", "nests too deeply"),
        ('{"text":' + "9" * 5000 + "}", "{}", "not JSON"),
        ('{"text":"\\ud800"}', "{}", "lone surrogate"),
        ('{"text":"x"}', '{"tenant_id":"\\ud800"}', "lone surrogate"),
    ],
    ids=[
        "arguments-nested-100000-deep",
        "ctx-nested-100000-deep",
        "5000-digit-argument",
        "escaped-lone-surrogate-argument",
        "escaped-lone-surrogate-tenant",
    ],
)
async def test_a_call_no_client_could_send_is_refused_and_the_worker_serves_on(
    redis_url: str, shared_fleet: Fleet, raw_redis: Any, args: str, ctx: str, problem: str
) -> None:
    """As another program (or a hostile one) could write it to the stream directly."""
    namespace, worker, _trace_log = shared_fleet
    reply_stream = f"{namespace}:reply:raw-{os.getpid()}"
    call_id = f"raw-{abs(hash(args + ctx))}"
    fields = {"v": "1", "id": call_id, "reply": reply_stream, "args": args, "ctx": ctx}
    await raw_redis.xadd(f"{namespace}:call:echo", fields)
    with trio.fail_after(10):
        while not (replies := await raw_redis.xrange(reply_stream)):  # noqa: ASYNC110
            await trio.sleep(0.02)  # (another process writes it: no Event)
    reply = replies[0].field_values
    assert (reply["id"], reply["ok"]) == (call_id, "0")
    assert problem in json.loads(reply["error"])["message"]
    await raw_redis.delete([reply_stream])
    assert worker.proc.poll() is None
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        assert (await remote.execute("echo", {"text": "on"}))["pid"] == worker.pid


async def test_streams_are_left_empty(redis_url: str, shared_fleet: Fleet, raw_redis: Any) -> None:
    namespace, _worker, _trace_log = shared_fleet
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        results = await remote.execute_many([("echo", {"text": str(i)}) for i in range(300)])
        assert all(r.ok for r in results)
        reply_stream = f"{namespace}:reply:{remote.caller_id}"
        assert await raw_redis.xlen(f"{namespace}:call:echo") == 0
        summary = await raw_redis.xpending(f"{namespace}:call:echo", namespace)
        assert summary.pending == 0
        await settled(raw_redis.xlen, reply_stream)
    assert not await raw_redis.exists([reply_stream])


@pytest.mark.slow
async def test_sigterm_finishes_held_calls_and_exits_0(
    redis_url: str, namespace: str, start_worker: Any
) -> None:
    worker = await start_worker("--grace-s", "5")
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        calls = [await remote.submit("sleepy", {"key": f"g{i}", "s": 0.5}) for i in range(3)]
        await trio.sleep(0.2)
        worker.signal(signal.SIGTERM)
        assert [await c.value() for c in calls] == ["g0", "g1", "g2"]
        assert await worker.wait() == 0
        assert "3 calls answered" in worker.stderr()
        await trio.sleep(1.1)  # the caller trusts the fleet's tool list for 1 s
        with pytest.raises(UnknownToolError):  # it unregistered: no live worker serves echo
            await remote.execute("echo", {"text": "x"}, timeout=5)


@pytest.mark.slow
async def test_sigterm_hands_back_calls_that_outlast_the_grace(
    redis_url: str, namespace: str, start_worker: Any, trace_log: Path
) -> None:
    first = await start_worker("--grace-s", "0.3")
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        calls = [await remote.submit("sleepy", {"key": f"h{i}", "s": 3}) for i in range(3)]
        await eventually(lambda: len(read_trace(trace_log)) == 3)
        first.signal(signal.SIGTERM)
        assert await first.wait(5) == 0  # it did not wait for the 3 s calls
        second = await start_worker()
        with trio.fail_after(15):  # handed back: readable at once, not after claim_idle_s (30)
            assert [await c.value() for c in calls] == ["h0", "h1", "h2"]
    runs = read_trace(trace_log)
    assert {(e, k) for e, _t, k, pid in runs if pid == first.pid} == {
        (e, f"h{i}") for e in ("start", "cancelled") for i in range(3)
    }
    assert sorted(k for e, _t, k, pid in runs if e == "end") == ["h0", "h1", "h2"]
    assert {pid for e, _t, _k, pid in runs if e == "end"} == {second.pid}


@pytest.mark.slow
async def test_calls_of_a_killed_worker_are_claimed_by_another_and_answered_once(
    redis_url: str, namespace: str, start_worker: Any, trace_log: Path
) -> None:
    doomed = await start_worker("--claim-idle-s", "1")
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        calls = [
            await remote.submit("charge_retry", {"key": f"k{i}", "s": 2}, timeout=60)
            for i in range(50)
        ]
        started = trio.current_time()
        await eventually(lambda: len(read_trace(trace_log)) == 50)
        assert trio.current_time() - started < 1.5, "the doomed worker was too slow to start all"
        doomed.signal(signal.SIGKILL)
        assert await doomed.wait() == -signal.SIGKILL
        rescuer = await start_worker("--claim-idle-s", "1")
        with trio.fail_after(30):
            results = [await c.result() for c in calls]
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
        assert {r.value["pid"] for r in results} == {rescuer.pid}
        assert [r.value["charged"] for r in results] == [f"k{i}" for i in range(50)]
        # The same keys again: answered from the shared RedisStore, never run again.
        again = await remote.execute_many(
            [("charge_retry", {"key": f"k{i}", "s": 2}) for i in range(50)]
        )
        assert all(r.ok and r.cached for r in again), again[:2]
        rescuer.signal(signal.SIGTERM)
        assert await rescuer.wait() == 0
    ends = [k for e, _t, k, _pid in read_trace(trace_log) if e == "end"]
    assert sorted(ends) == sorted(f"k{i}" for i in range(50))  # each key ran to its end once
    assert "100 calls answered" in rescuer.stderr()  # one reply per call, none twice


@pytest.mark.slow
async def test_idempotent_calls_of_a_killed_worker_are_unknown_and_never_run_again(
    redis_url: str, namespace: str, start_worker: Any, trace_log: Path
) -> None:
    """on_unknown_outcome="fail" (the default): the worker that died may have charged."""
    doomed = await start_worker("--claim-idle-s", "1")
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        calls = [
            await remote.submit("charge", {"key": f"u{i}", "s": 2}, timeout=60) for i in range(20)
        ]
        await eventually(lambda: len(read_trace(trace_log)) == 20)
        doomed.signal(signal.SIGKILL)
        assert await doomed.wait() == -signal.SIGKILL
        rescuer = await start_worker("--claim-idle-s", "1")
        with trio.fail_after(30):
            results = [await c.result() for c in calls]
        errors = [r.error for r in results]
        assert all(isinstance(e, toolvisor.IdempotencyOutcomeUnknownError) for e in errors), errors
        assert len({e.key for e in errors}) == 20  # type: ignore[union-attr]  # one per key
        # Recorded unknown: the same keys again do not run either.
        again = await remote.execute_many([("charge", {"key": f"u{i}", "s": 2}) for i in range(20)])
        assert all(isinstance(r.error, toolvisor.IdempotencyOutcomeUnknownError) for r in again), [
            r.error for r in again
        ][:2]
        rescuer.signal(signal.SIGTERM)
        assert await rescuer.wait() == 0
    runs = read_trace(trace_log)
    assert {pid for _e, _t, _k, pid in runs} == {doomed.pid}  # nothing ran on the rescuer
    assert [e for e, _t, _k, _pid in runs] == ["start"] * 20


@pytest.mark.slow
async def test_a_call_that_kills_every_worker_ends_in_the_dead_letter_stream(
    redis_url: str, namespace: str, start_worker: Any, trace_log: Path, raw_redis: Any
) -> None:
    options = ("--claim-idle-s", "0.3", "--max-deliveries", "2")
    workers = [await start_worker(*options)]
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        pending = await remote.submit("poison", {"key": "p1"}, timeout=60)
        for _ in range(2):  # each worker that takes it dies; the next claims it
            assert await workers[-1].wait() == -signal.SIGKILL
            workers.append(await start_worker(*options))
        with pytest.raises(toolvisor.DeliveryFailedError) as info:
            with trio.fail_after(10):
                await pending.value()
        assert (info.value.tool, info.value.deliveries) == ("poison", 2)
        assert await remote.execute("echo", {"text": "alive"}) == {
            "echo": "alive",
            "pid": workers[-1].pid,
        }
    assert [(e, k) for e, _t, k, _pid in read_trace(trace_log)] == [("start", "p1")] * 2
    dead = await raw_redis.xrange(f"{namespace}:dead:poison")
    assert len(dead) == 1
    assert dead[0].field_values["id"] == pending.call_id
    assert dead[0].field_values["deliveries"] == "2"
    assert await raw_redis.xlen(f"{namespace}:call:poison") == 0


@pytest.mark.slow
async def test_a_thousand_concurrent_calls_over_two_workers_get_one_reply_each(
    redis_url: str, namespace: str, start_worker: Any
) -> None:
    workers = [await start_worker(), await start_worker()]
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        results = await remote.execute_many(
            [("echo", {"text": str(i)}) for i in range(1000)], timeout=60
        )
        assert [r.value["echo"] for r in results] == [str(i) for i in range(1000)]
        by_worker = {w.pid: sum(r.value["pid"] == w.pid for r in results) for w in workers}
        assert sum(by_worker.values()) == 1000 and min(by_worker.values()) > 0, by_worker
    for worker in workers:
        worker.signal(signal.SIGTERM)
    answered = 0
    for worker in workers:
        assert await worker.wait() == 0
        answered += int(worker.stderr().rsplit("stopped (", 1)[1].split()[0])
    assert answered == 1000  # no call answered twice


def spawn(argv: list[str], **options: Any) -> subprocess.Popen[str]:
    """A child process (a sync helper: starting one does not block the test for long)."""
    return subprocess.Popen(argv, text=True, **options)


_RESTART_CALLER = """
import sys, trio, toolvisor

async def main(url, pid_file):
    async with toolvisor.open_remote(url, namespace="restart") as remote:
        print((await remote.execute("echo", {"text": "before"}))["echo"], flush=True)
        sys.stdin.readline()  # the test stops Redis
        try:
            await remote.execute("echo", {"text": "down"}, timeout=2)
        except toolvisor.ToolUnavailableError as exc:
            print("unavailable", "127.0.0.1" in str(exc), flush=True)
        sys.stdin.readline()  # the test starts an empty Redis on the same port
        with trio.fail_after(20):
            while True:
                try:
                    value = await remote.execute("echo", {"text": "after"}, timeout=2)
                    break
                except (toolvisor.UnknownToolError, toolvisor.ToolUnavailableError,
                        toolvisor.ToolTimeoutError):
                    await trio.sleep(0.2)
        print(value["echo"], value["pid"], flush=True)

trio.run(main, sys.argv[1], None)
"""


@pytest.mark.slow
async def test_a_redis_restart_gives_clear_errors_then_the_fleet_recovers(
    tmp_path: Path, trace_log: Path
) -> None:
    # The caller runs in a process of its own: coredis leaves the streams of its failed
    # connections unclosed, and they would warn in whichever test runs when collected.
    import shutil
    import socket

    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [server, "--port", str(port), "--save", "", "--appendonly", "no"]
    url = f"redis://127.0.0.1:{port}/0"
    redis = spawn(argv, stdout=subprocess.DEVNULL)
    await trio.sleep(0.3)
    worker = launch(url, "restart", trace_log, tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    await eventually(lambda: serving(worker), 30)
    with (tmp_path / "caller.err").open("w") as err:
        caller = spawn(
            [sys.executable, "-c", _RESTART_CALLER, url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
        )  # fmt: skip
    assert caller.stdin is not None and caller.stdout is not None
    try:
        assert await trio.to_thread.run_sync(caller.stdout.readline) == "before\n"
        redis.kill()
        redis.wait()
        caller.stdin.write("\n")
        caller.stdin.flush()
        assert await trio.to_thread.run_sync(caller.stdout.readline) == "unavailable True\n"
        redis = spawn(argv, stdout=subprocess.DEVNULL)  # empty: no groups
        await trio.sleep(0.3)
        caller.stdin.write("\n")
        caller.stdin.flush()
        last = await trio.to_thread.run_sync(caller.stdout.readline)
        assert last == f"after {worker.pid}\n"
    finally:
        for proc in (caller, worker.proc, redis):
            proc.kill()
            proc.wait()
        caller.stdin.close()
        caller.stdout.close()


async def test_workers_of_a_fleet_share_an_idempotent_tools_keys(
    redis_url: str, namespace: str, start_worker: Any, trace_log: Path
) -> None:
    """`charge` does not set persist_result: its keys still go to the fleet's store, so
    the same key sent again is answered from it, whichever worker takes the call."""
    workers = [await start_worker(), await start_worker()]
    async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
        results = [
            await remote.execute_many([("charge", {"key": "tx-1", "s": 0})]) for _ in range(12)
        ]
    outcomes = [r for batch in results for r in batch]
    assert all(r.ok for r in outcomes), [r.error for r in outcomes][:2]
    assert [r.cached for r in outcomes] == [False] + [True] * 11
    assert [k for e, _t, k, _pid in read_trace(trace_log) if e == "start"] == ["tx-1"]
    for worker in workers:
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0
