"""toolvisor.aio: the Supervisor API from asyncio programs (asyncio.run), on asyncio and
trio tool functions alike."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
import sniffio
import trio
from aio_helpers import add_up, make_spec, run, settled

import toolvisor as tv
import toolvisor.aio as aio
from toolvisor.aio._guest import Guest


class Boom(Exception):  # noqa: N818 - a tool's own failure, named as a user would
    """A tool's own failure."""


async def a_echo(args: dict[str, Any]) -> Any:
    await asyncio.sleep(0)
    return args.get("x")


async def t_echo(args: dict[str, Any]) -> Any:
    await trio.lowlevel.checkpoint()
    return args.get("x")


ECHO = {"asyncio": a_echo, "trio": t_echo}
RUNS_ON = ["asyncio", "trio"]


# ------------------------------------------------------------------ calls


@pytest.mark.parametrize("runs_on", RUNS_ON)
def test_execute_submit_and_execute_many(runs_on: aio.RunsOn) -> None:
    async def main() -> None:
        async with aio.open_supervisor() as sup:
            ref = await sup.spawn(make_spec(), ECHO[runs_on], runs_on=runs_on)
            assert isinstance(ref, aio.ToolRef)
            assert await sup.execute("t", {"x": 1}) == 1
            assert await ref.execute({"x": 2}) == 2
            pending = await sup.submit("t", {"x": 3})
            result = await pending.result()
            assert result.ok and result.value == 3 and result.attempts == 1
            assert pending.done and pending.tool == "t"
            assert await pending.value() == 3
            results = await sup.execute_many(
                [("t", {"x": i}) for i in range(5)] + [("nope", {}), ("t", {"y": 1})]
            )
            assert [r.value for r in results[:5]] == [0, 1, 2, 3, 4]
            assert isinstance(results[5].error, tv.UnknownToolError)
            assert isinstance(results[6].error, tv.ValidationError)
            assert sup.tools() == ["t"]
            assert sup.function_schemas()["t"]["name"] == "t"
            assert ref.function_schema == sup.function_schemas()["t"]
            stats = ref.stats()
            assert stats.calls == 8 and stats.successes == 8 and add_up(stats)  # invalid: uncounted
            with pytest.raises(tv.ValidationError):
                await sup.execute("t", {"x": "one"})
            with pytest.raises(tv.UnknownToolError):
                await sup.execute("nope", {})

    run(main)


def test_an_asyncio_tool_runs_as_an_asyncio_task_and_passes_ctx() -> None:
    seen: dict[str, Any] = {}
    gate = asyncio.Event()
    running = asyncio.Event()

    async def tool(args: dict[str, Any], ctx: tv.ExecutionContext) -> str:
        running.set()
        seen["task"] = asyncio.current_task()
        seen["library"] = sniffio.current_async_library()
        seen["ctx"] = ctx
        await gate.wait()  # an asyncio primitive the test sets from its own task
        return "done"

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            ctx = tv.ExecutionContext(tenant_id="acme")
            call = asyncio.create_task(sup.execute("t", {"x": 1}, ctx))
            await running.wait()
            assert not call.done()
            gate.set()
            assert await call == "done"
            assert seen["ctx"].tenant_id == "acme"

    run(main)
    assert isinstance(seen["task"], asyncio.Task)
    assert seen["library"] == "asyncio"


def test_a_trio_tool_runs_in_the_trio_guest() -> None:
    seen: list[str] = []

    async def tool(args: dict[str, Any]) -> str:
        seen.append(sniffio.current_async_library())
        await trio.sleep(0.01)
        return "ok"

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool, runs_on="trio")
            assert await sup.execute("t", {}) == "ok"

    run(main)
    assert seen == ["trio"]


def test_trio_code_spawned_as_asyncio_says_to_use_runs_on_trio() -> None:
    async def trio_tool(args: dict[str, Any]) -> None:
        await trio.sleep(0.01)

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), trio_tool)  # the default: an asyncio task
            with pytest.raises(RuntimeError) as info:
                await sup.execute("t", {})
            assert any("runs_on='trio'" in note for note in info.value.__notes__)

    run(main)


def test_spawn_refuses_bad_input() -> None:
    def not_async(args: dict[str, Any]) -> None:
        return None

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            with pytest.raises(ValueError, match="runs_on must be 'asyncio' or 'trio'"):
                await sup.spawn(make_spec(), a_echo, runs_on="curio")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="not an async function"):
                await sup.spawn(make_spec(), not_async)
            with pytest.raises(TypeError, match="takes a ToolSpec"):
                await sup.spawn("t", a_echo)  # type: ignore[arg-type]
            await sup.spawn(make_spec(), a_echo)
            with pytest.raises(tv.DuplicateToolError):
                await sup.spawn(make_spec(), a_echo)

    run(main)


# ------------------------------------------------------------------ deadlines and cancellation


class Recorder:
    """An asyncio tool that sleeps and records how its task ended (cleanup included)."""

    def __init__(self, sleep_s: float = 10.0, cleanup_s: float = 0.02) -> None:
        self.sleep_s = sleep_s
        self.cleanup_s = cleanup_s
        self.started = 0
        self.cancelled = 0
        self.ended = 0
        self.running = asyncio.Event()

    async def __call__(self, args: dict[str, Any]) -> str:
        self.started += 1
        self.running.set()
        try:
            await asyncio.sleep(self.sleep_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            await asyncio.sleep(self.cleanup_s)  # cleanup that needs the loop
            raise
        finally:
            self.ended += 1
        return "slept"


def test_per_attempt_timeout_cancels_the_asyncio_task_and_waits_for_it() -> None:
    tool = Recorder()

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(timeout_s=0.05), tool)
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("t", {})
            # the attempt ended only once its task had (its cleanup included)
            assert tool.cancelled == 1 and tool.ended == 1
            stats = sup.stats("t")
            assert stats.in_flight == 0 and stats.timeouts == 1 and add_up(stats)

    run(main)


def test_call_deadline_cancels_the_asyncio_task() -> None:
    tool = Recorder()

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("t", {}, timeout=0.05)
            assert loop.time() - started < 2.0
            await settled(sup, "t")  # the cut attempt's cleanup runs on
            assert tool.cancelled == 1 and tool.ended == 1
            stats = sup.stats("t")
            assert stats.failures == 1 and stats.in_flight == 0 and add_up(stats)

    run(main)


@pytest.mark.parametrize("how", ["task.cancel", "asyncio.timeout"])
def test_a_cancelled_asyncio_caller_cancels_its_call(how: str) -> None:
    tool = Recorder()

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            if how == "task.cancel":
                call = asyncio.create_task(sup.execute("t", {}))
                await tool.running.wait()
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
            else:
                with pytest.raises(TimeoutError) as info:
                    async with asyncio.timeout(0.05):
                        await sup.execute("t", {})
                assert not isinstance(info.value, tv.ToolTimeoutError)  # asyncio's own
            await settled(sup, "t")
            assert tool.cancelled == 1 and tool.ended == 1
            stats = sup.stats("t")
            assert stats.cancelled == 1 and stats.in_flight == 0 and add_up(stats)

    run(main)


@pytest.mark.parametrize("runs_on", RUNS_ON)
def test_cancelling_a_caller_waiting_on_submit_cancels_the_call(runs_on: aio.RunsOn) -> None:
    ran: list[str] = []

    async def a_slow(args: dict[str, Any]) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            ran.append("ended")

    async def t_slow(args: dict[str, Any]) -> None:
        try:
            await trio.sleep(10)
        finally:
            ran.append("ended")

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            slow = a_slow if runs_on == "asyncio" else t_slow
            await sup.spawn(make_spec(), slow, runs_on=runs_on)
            pending = await sup.submit("t", {})
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await pending.value()
            await settled(sup, "t")
            assert ran == ["ended"]
            assert sup.stats("t").cancelled == 1 and add_up(sup.stats("t"))

    run(main)


def test_a_tool_task_cancelled_by_other_code_is_a_failure_with_a_clear_error() -> None:
    async def tool(args: dict[str, Any]) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # as a library shutting its own tasks down would
        await asyncio.sleep(1)

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            with pytest.raises(RuntimeError, match="cancelled from outside toolvisor"):
                await sup.execute("t", {})
            stats = sup.stats("t")
            assert stats.failures == 1 and stats.cancelled == 0 and add_up(stats)

    run(main)


def test_2000_concurrent_calls_with_random_cancellations_each_get_one_outcome() -> None:
    rng = random.Random(1414)
    tasks_started = 0
    tasks_ended = 0

    async def tool(args: dict[str, Any]) -> int:
        nonlocal tasks_started, tasks_ended
        tasks_started += 1
        try:
            await asyncio.sleep(args["x"] / 1000)
        finally:
            tasks_ended += 1
        return args["x"]

    outcomes: list[str] = []

    async def caller(sup: aio.Supervisor, i: int, cancel_after: float | None) -> None:
        call = asyncio.ensure_future(sup.execute("t", {"x": i % 20}))
        if cancel_after is not None:
            await asyncio.sleep(cancel_after)
            call.cancel()
        try:
            value = await call
        except asyncio.CancelledError:
            outcomes.append("cancelled")
        else:
            assert value == i % 20
            outcomes.append("value")

    async def main() -> tv.ToolStats:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(max_concurrency=64), tool)
            plan = [rng.choice([None, 0.0, 0.001, 0.005, 0.02]) for _ in range(2000)]
            await asyncio.gather(*(caller(sup, i, c) for i, c in enumerate(plan)))
            return sup.stats("t")

    stats = run(main)
    assert len(outcomes) == 2000
    assert stats.calls == 2000 and add_up(stats) and stats.failures == 0
    # a caller cancelled after its reply was sent still sees CancelledError (asyncio
    # semantics); every call the trio side counted cancelled was seen cancelled
    assert outcomes.count("value") <= stats.successes
    assert outcomes.count("cancelled") >= stats.cancelled > 0
    assert tasks_started == tasks_ended  # no tool task outlived the supervisor


# ------------------------------------------------------------------ policies


@pytest.mark.parametrize("runs_on", RUNS_ON)
def test_retries_until_success(runs_on: aio.RunsOn) -> None:
    attempts: list[int] = []

    async def flaky(args: dict[str, Any], ctx: tv.ExecutionContext) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise Boom(len(attempts))
        return "ok"

    async def main() -> None:
        spec = make_spec()
        spec.retry_policy = tv.ExponentialBackoffRetryPolicy(
            max_attempts=4, base_delay=0.01, jitter=0.0
        )
        async with aio.open_supervisor() as sup:
            await sup.spawn(spec, flaky, runs_on=runs_on)
            result = (await sup.execute_many([("t", {})]))[0]
            assert result.ok and result.value == "ok" and result.attempts == 3
            stats = sup.stats("t")
            assert stats.retries == 2 and stats.successes == 1 and add_up(stats)

    run(main)
    assert len(attempts) == 3


@pytest.mark.parametrize("runs_on", RUNS_ON)
def test_breaker_opens_and_refuses_without_running(runs_on: aio.RunsOn) -> None:
    ran = 0

    async def failing(args: dict[str, Any]) -> None:
        nonlocal ran
        ran += 1
        raise Boom(ran)

    async def main() -> None:
        spec = make_spec()
        spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
            failure_threshold=2, recovery_timeout=60
        )
        async with aio.open_supervisor() as sup:
            await sup.spawn(spec, failing, runs_on=runs_on)
            for _ in range(2):
                with pytest.raises(Boom):  # the tool ran: its own error
                    await sup.execute("t", {})
            assert sup.stats("t").breaker_state == "open"
            with pytest.raises(tv.CircuitOpenError) as info:
                await sup.execute("t", {})
            assert 0 < info.value.retry_after <= 60
            stats = sup.stats("t")
            assert stats.failures == 2 and stats.rejected == 1 and add_up(stats)

    run(main)
    assert ran == 2


@pytest.mark.parametrize("runs_on", RUNS_ON)
def test_idempotency_with_sqlite_runs_each_key_once(runs_on: aio.RunsOn, tmp_path: Path) -> None:
    charged: list[str] = []

    async def a_charge(args: dict[str, Any]) -> dict[str, str]:
        await asyncio.sleep(0.02)
        charged.append(args["tx"])
        return {"tx": args["tx"], "status": "charged"}

    async def t_charge(args: dict[str, Any]) -> dict[str, str]:
        await trio.sleep(0.02)
        charged.append(args["tx"])
        return {"tx": args["tx"], "status": "charged"}

    def spec() -> tv.FunctionToolSpec:
        s = make_spec("charge", parameters=[tv.StringParameter(name="tx", required=True)])
        s.idempotency.enabled = True
        s.idempotency.persist_result = True
        s.idempotency.key_fields = ["tx"]
        return s

    fn = a_charge if runs_on == "asyncio" else t_charge

    async def main() -> None:
        async with aio.open_supervisor(idempotency_store=tv.SQLiteStore(tmp_path / "i.db")) as sup:
            await sup.spawn(spec(), fn, runs_on=runs_on)
            # concurrent duplicates: one execution (single flight)
            values = await asyncio.gather(
                *(sup.execute("charge", {"tx": "tx-1"}) for _ in range(5))
            )
            assert all(v == {"tx": "tx-1", "status": "charged"} for v in values)
            result = (await sup.execute_many([("charge", {"tx": "tx-1"})]))[0]
            assert result.ok and result.cached and result.attempts == 0
            pending = await sup.submit("charge", {"tx": "tx-2"})
            assert (await pending.result()).value["tx"] == "tx-2"
            assert sup.stats("charge").cache_hits >= 1
        # a second program on the same file: answered from the store
        store = tv.SQLiteStore(tmp_path / "i.db")
        async with aio.open_supervisor(idempotency_store=store) as sup:
            await sup.spawn(spec(), fn, runs_on=runs_on)
            assert (await sup.execute("charge", {"tx": "tx-1"}))["status"] == "charged"
        await aio.run_trio(store.aclose)  # the store is the caller's to close

    run(main)
    assert charged == ["tx-1", "tx-2"]


def test_reconfigure_stop_and_kill() -> None:
    calls = 0

    async def flaky(args: dict[str, Any]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Boom("first")
        return calls

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), flaky)
            await sup.reconfigure(
                "t", retry_policy=tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.0)
            )
            assert await sup.execute("t", {}) == 2  # retried under the new policy
            with pytest.raises(TypeError, match="retry_policy"):
                await sup.reconfigure("t", retry_policy="fixed")  # type: ignore[arg-type]
            restarted: list[tv.Event] = []
            unsubscribe = sup.subscribe(restarted.append)
            await sup.kill("t")
            unsubscribe()
            assert [type(e) for e in restarted] == [tv.ActorRestarted]
            assert sup.stats("t").restarts == 1
            assert await sup.execute("t", {}) == 3
            await sup.stop("t")
            assert sup.tools() == []
            with pytest.raises(tv.ToolUnavailableError, match="stopped"):
                await sup.execute("t", {})
            await sup.spawn(make_spec(), flaky)  # the name is free again
            assert await sup.execute("t", {}) == 4

    run(main)


def test_events_as_an_async_iterator() -> None:
    async def failing(args: dict[str, Any]) -> None:
        raise Boom()

    received: list[tv.Event] = []

    async def main() -> None:
        spec = make_spec()
        spec.retry_policy = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.0)
        spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
            failure_threshold=3, recovery_timeout=60
        )
        async with aio.open_supervisor() as sup:
            await sup.spawn(spec, failing)
            async with sup.events() as events:

                async def consume() -> None:
                    async for event in events:
                        received.append(event)

                consumer = asyncio.create_task(consume())
                # two failed attempts, then one that opens the breaker
                for _ in range(2):
                    assert not (await sup.execute_many([("t", {})]))[0].ok
                await asyncio.sleep(0.01)
            await asyncio.wait_for(consumer, 1)  # the stream ended with its block
            with pytest.raises(ValueError, match="buffer"):
                async with sup.events(0):
                    pass

    run(main)
    assert isinstance(received[0], tv.RetryScheduled) and received[0].attempt == 1
    transitions = [(e.old, e.new) for e in received if isinstance(e, tv.BreakerTransition)]
    assert transitions == [("closed", "open")]


def test_an_event_stream_drops_past_its_buffer_and_ends_with_the_supervisor() -> None:
    async def failing(args: dict[str, Any]) -> None:
        raise Boom()

    async def main() -> None:
        spec = make_spec()
        spec.retry_policy = tv.FixedRetryPolicy(max_attempts=4, delay_seconds=0.0)
        async with aio.open_supervisor() as sup:
            await sup.spawn(spec, failing)
            stream_cm = sup.events(buffer=1)
            stream = await stream_cm.__aenter__()
            with pytest.raises(Boom):
                await sup.execute("t", {})  # three RetryScheduled events, one CallFailed
            assert stream.dropped == 3 and sup.events_dropped == 3
            consumer = asyncio.create_task(_collect(stream))
        # the supervisor closed: the stream ends even though its block is still open
        assert len(await asyncio.wait_for(consumer, 1)) == 1
        await stream_cm.__aexit__(None, None, None)

    run(main)


async def _collect(stream: aio.EventStream) -> list[tv.Event]:
    return [event async for event in stream]


# ------------------------------------------------------------------ the block


def test_leaving_drains_running_calls_then_closes() -> None:
    tool = Recorder(sleep_s=0.05)

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            call = asyncio.create_task(sup.execute("t", {}))
            await tool.running.wait()
        assert await call == "slept"  # finished within the grace period
        with pytest.raises(tv.SupervisorClosedError):
            await sup.execute("t", {})
        assert Guest._by_loop.get(asyncio.get_running_loop()) is None  # the guest run ended

    run(main)
    assert tool.cancelled == 0


def test_past_the_grace_period_running_calls_are_cancelled() -> None:
    tool = Recorder(sleep_s=10)

    async def main() -> None:
        async with aio.open_supervisor(grace_s=0.05) as sup:
            await sup.spawn(make_spec(), tool)
            call = asyncio.create_task(sup.execute("t", {}))
            await tool.running.wait()
        with pytest.raises(tv.ToolvisorError):
            await call
        assert tool.cancelled == 1 and tool.ended == 1

    run(main)


def test_an_exception_in_the_block_comes_out_unchanged() -> None:
    tool = Recorder(sleep_s=10)
    error = LookupError("mine")

    async def body() -> asyncio.Task[Any]:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            call = asyncio.create_task(sup.execute("t", {}))
            await tool.running.wait()
            calls.append(call)
            raise error

    calls: list[asyncio.Task[Any]] = []

    async def main() -> None:
        with pytest.raises(LookupError) as info:
            await body()
        assert info.value is error
        call = calls[0]
        # the supervisor closed at once: the running call was cut, its task cancelled
        with pytest.raises(tv.ToolvisorError):
            await call
        assert tool.cancelled == 1 and tool.ended == 1

    run(main)


def test_cancelling_the_block_closes_the_supervisor_at_once() -> None:
    tool = Recorder(sleep_s=10)

    async def body(sup_box: list[aio.Supervisor]) -> None:
        async with aio.open_supervisor() as sup:
            sup_box.append(sup)
            await sup.spawn(make_spec(), tool)
            await sup.execute("t", {})

    async def main() -> None:
        box: list[aio.Supervisor] = []
        task = asyncio.create_task(body(box))
        await tool.running.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert tool.cancelled == 1 and tool.ended == 1
        assert box[0].stats("t").cancelled == 1

    run(main)


def test_bad_options_raise_when_entered() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="grace_s"):
            async with aio.open_supervisor(grace_s=-1):
                pass
        assert Guest._by_loop.get(asyncio.get_running_loop()) is None

    run(main)


def test_two_supervisors_share_one_guest_run_and_programs_run_again() -> None:
    async def main() -> None:
        async with aio.open_supervisor() as one, aio.open_supervisor() as two:
            await one.spawn(make_spec(), a_echo)
            await two.spawn(make_spec(), t_echo, runs_on="trio")
            assert await one.execute("t", {"x": 1}) == 1
            assert await two.execute("t", {"x": 2}) == 2
            assert Guest._by_loop[asyncio.get_running_loop()].users == 2
        async with aio.open_supervisor() as three:  # a fresh guest run
            await three.spawn(make_spec(), a_echo)
            assert await three.execute("t", {"x": 3}) == 3

    run(main)
    run(main)  # a second asyncio.run in the same thread


def test_aio_open_supervisor_outside_asyncio_says_what_to_use() -> None:
    async def from_trio() -> None:
        async with aio.open_supervisor():
            pass

    with pytest.raises(RuntimeError, match=r"toolvisor\.open_supervisor"):
        trio.run(from_trio)


def test_toolvisor_open_supervisor_under_asyncio_says_to_use_trio_or_aio() -> None:
    async def plain() -> None:
        async with tv.open_supervisor():
            pass

    async def beside_an_aio_supervisor() -> None:
        async with aio.open_supervisor():
            await plain()

    for main in (plain, beside_an_aio_supervisor):
        with pytest.raises(RuntimeError, match=r"toolvisor\.aio"):
            asyncio.run(main())


@pytest.mark.parametrize("passes", [0, 1, 2, 5, 20])
def test_a_supervisor_opened_while_the_last_one_leaves(passes: int) -> None:
    async def main() -> None:
        first = aio.open_supervisor()
        await first.__aenter__()
        leaving = asyncio.create_task(first.__aexit__(None, None, None))
        for _ in range(passes):  # the leaving one is somewhere in its close
            await asyncio.sleep(0)
        async with aio.open_supervisor() as second:
            await second.spawn(make_spec(), a_echo)
            assert await second.execute("t", {"x": 7}) == 7
        await leaving
        assert Guest._by_loop.get(asyncio.get_running_loop()) is None

    run(main)


def test_cancelled_while_entering_leaves_nothing_running() -> None:
    async def enter() -> None:
        async with aio.open_supervisor():
            await asyncio.sleep(10)

    async def main() -> None:
        for passes in range(4):
            task = asyncio.create_task(enter())
            for _ in range(passes):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert Guest._by_loop.get(asyncio.get_running_loop()) is None

    run(main)


@pytest.mark.parametrize("runs_on", RUNS_ON)
def test_a_tool_failure_comes_out_as_the_tools_own_exception(runs_on: aio.RunsOn) -> None:
    raised: list[Boom] = []

    async def failing(args: dict[str, Any]) -> None:
        raised.append(Boom("declined"))
        raise raised[-1]

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), failing, runs_on=runs_on)
            with pytest.raises(Boom) as info:
                await sup.execute("t", {})
            assert info.value is raised[0]
            result = (await sup.execute_many([("t", {})]))[0]
            assert not result.ok and result.error is raised[1] and result.attempts == 1
            stats = sup.stats("t")
            assert stats.failures == 2 and add_up(stats)

    run(main)


def test_run_trio_runs_trio_code_for_asyncio_with_its_outcome() -> None:
    async def trio_side(x: int) -> tuple[int, str]:
        await trio.sleep(0.01)
        return x * 2, sniffio.current_async_library()

    async def trio_fails() -> None:
        await trio.lowlevel.checkpoint()
        raise Boom("trio side")

    async def trio_forever() -> None:
        await trio.sleep_forever()

    async def main() -> None:
        assert await aio.run_trio(trio_side, 21) == (42, "trio")
        with pytest.raises(Boom, match="trio side"):
            await aio.run_trio(trio_fails)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await aio.run_trio(trio_forever)  # cancelled as a call is
        async with aio.open_supervisor():  # shares the supervisor's guest run
            assert (await aio.run_trio(trio_side, 1))[0] == 2
            assert Guest._by_loop[asyncio.get_running_loop()].users == 1
        assert Guest._by_loop.get(asyncio.get_running_loop()) is None

    run(main)
