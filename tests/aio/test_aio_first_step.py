"""An asyncio tool's task takes its first step inside its attempt: what the tool sees
there, and the attempt's cancellation rules when the task ends (or is cancelled) in it."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
from typing import Any

import anyio
import pytest
import sniffio
import trio
from aio_helpers import add_up, make_spec, run, settled

import toolvisor as tv
import toolvisor.aio as aio
from toolvisor.aio._tasks import start_task


def test_a_tool_that_never_suspends_runs_in_its_own_asyncio_task() -> None:
    seen: dict[str, Any] = {}

    async def tool(args: dict[str, Any]) -> int:
        seen["task"] = asyncio.current_task()
        seen["library"] = sniffio.current_async_library()
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            seen["trio task"] = None  # as in any asyncio task
        # entering anyio's scope needs its backend's current task: asyncio's
        with anyio.fail_after(5):  # noqa: ASYNC100
            seen["anyio task"] = anyio.get_current_task().id
        return int(args["x"]) + 1

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            caller = asyncio.current_task()
            assert await sup.execute("t", {"x": 1}) == 2
            task = seen["task"]
            assert isinstance(task, asyncio.Task) and task is not caller and task.done()
            assert seen["anyio task"] == id(task)
            assert sup.stats("t").successes == 1 and add_up(sup.stats("t"))

    run(main)
    assert seen["library"] == "asyncio"
    assert "trio task" in seen


@pytest.mark.parametrize("suspends_first", [False, True])
def test_asyncio_timeout_works_inside_a_tool(suspends_first: bool) -> None:
    async def tool(args: dict[str, Any]) -> str:
        if suspends_first:
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out inside"
        return "slept"

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            assert await sup.execute("t", {}) == "timed out inside"
            assert await sup.execute("t", {}) == "timed out inside"
            assert sup.stats("t").successes == 2 and add_up(sup.stats("t"))

    run(main)


def test_trio_code_in_the_first_step_fails_cleanly_and_the_actor_runs_on() -> None:
    async def tool(args: dict[str, Any]) -> str:
        if args.get("x"):
            with trio.move_on_after(1):  # trio code, no trio task here
                await trio.sleep(0.01)
        return "ok"

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            with pytest.raises(RuntimeError) as info:
                await sup.execute("t", {"x": 1})
            assert any("runs_on='trio'" in note for note in info.value.__notes__)
            # the attempt's trio task kept its own cancel scopes intact
            assert await sup.execute("t", {"x": 0}) == "ok"
            stats = sup.stats("t")
            assert stats.failures == 1 and stats.successes == 1 and add_up(stats)

    run(main)


def test_a_caller_cancelled_during_the_tools_first_step_cancels_the_task() -> None:
    record: list[str] = []

    async def tool(args: dict[str, Any]) -> str:
        callers[0].cancel()  # the caller gives up while this step runs
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            record.append("cancelled")
            raise
        return "slept"

    callers: list[asyncio.Task[Any]] = []

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            call = asyncio.create_task(sup.execute("t", {}))
            callers.append(call)
            with pytest.raises(asyncio.CancelledError):
                await call
            await settled(sup, "t")
            assert record == ["cancelled"]
            stats = sup.stats("t")
            assert stats.cancelled == 1 and stats.successes == 0 and add_up(stats)

    run(main)


def test_an_attempt_timing_out_during_the_first_step_cancels_the_task_and_waits() -> None:
    record: list[str] = []

    async def tool(args: dict[str, Any]) -> str:
        time.sleep(0.1)  # the first step overruns the attempt's 20 ms  # noqa: ASYNC251
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # cleanup that needs the loop
            record.append("cancelled")
            raise
        return "slept"

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(timeout_s=0.02), tool)
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("t", {})
            assert record == ["cancelled"]  # the attempt ended once its task had
            stats = sup.stats("t")
            assert stats.timeouts == 1 and stats.in_flight == 0 and add_up(stats)

    run(main)


def test_start_task_runs_the_first_step_now_in_the_tasks_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outer")
    steps: list[str] = []

    async def coro() -> str:
        steps.append(f"first step, var={var.get()}")
        await asyncio.sleep(0)
        steps.append("second step")
        return "done"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(var.set, "task's")

        def from_a_callback() -> None:
            # as in trio's scheduler pass: a loop callback, no asyncio task current
            task, ended = start_task(loop, coro(), context)
            tasks.append(task)
            steps.append(f"returned, ended={ended}")

        tasks: list[asyncio.Task[str]] = []
        loop.call_soon(from_a_callback)
        await asyncio.sleep(0)
        assert await tasks[0] == "done"

    asyncio.run(main())
    assert steps == ["first step, var=task's", "returned, ended=False", "second step"]


def test_start_task_from_inside_a_task_leaves_the_step_to_the_loop() -> None:
    steps: list[str] = []

    async def coro() -> None:
        steps.append("first step")

    async def main() -> None:
        task, ended = start_task(asyncio.get_running_loop(), coro(), contextvars.copy_context())
        steps.append(f"returned, ended={ended}")
        await task

    asyncio.run(main())
    assert steps == ["returned, ended=False", "first step"]


def test_start_task_reports_a_task_that_ended_in_its_first_step() -> None:
    async def coro() -> str:
        return "at once"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ends: list[tuple[asyncio.Task[str], bool]] = []
        loop.call_soon(lambda: ends.append(start_task(loop, coro(), contextvars.copy_context())))
        await asyncio.sleep(0)
        task, ended = ends[0]
        assert ended and task.result() == "at once"

    asyncio.run(main())


def test_system_exit_in_a_tools_first_step_leaves_the_loop_as_from_any_task() -> None:
    async def tool(args: dict[str, Any]) -> None:
        if args.get("x"):
            sys.exit(3)

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)
            await sup.execute("t", {"x": 0})
            await sup.execute("t", {"x": 1})
            raise AssertionError("the call returned")  # pragma: no cover

    with pytest.raises(SystemExit) as info:
        asyncio.run(main())
    assert info.value.code == 3
