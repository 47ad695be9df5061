"""A tool's actor lets every finished call go: its arguments are freed with the caller's.

An idle worker (or the actor's first task) that kept the last call it served would keep
that call's arguments, context and reply alive for as long as it waits: a large payload
held by an idle tool, and short-lived objects kept through garbage collections.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv


class Args(dict[str, Any]):
    """The call's arguments, as a dict a weak reference can watch."""


def make_spec(**kw: Any) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id="t-v1", tool_name="t", parameters=[tv.IntegerParameter(name="x")], **kw
    )


async def echo(args: dict[str, Any]) -> Any:
    await trio.lowlevel.checkpoint()
    return args["x"]


async def _arguments_left_alive(spec: tv.FunctionToolSpec) -> list[int]:
    """Run concurrent calls (the pool grows past one worker), then report the ``x`` of
    every call whose arguments something still holds once its caller let them go."""
    refs: list[tuple[int, weakref.ref[Args]]] = []

    async def one(i: int) -> None:
        args = Args(x=i)
        refs.append((i, weakref.ref(args)))
        assert await sup.execute("t", args) == i

    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, echo)
        gc.disable()  # only references keep the arguments alive, never a late collection
        try:
            for batch in range(3):
                async with trio.open_nursery() as nursery:
                    for i in range(4):
                        nursery.start_soon(one, batch * 4 + i)
            await trio.sleep(0.01)  # every worker back waiting on the inbox
            alive = [i for i, ref in refs if ref() is not None]
        finally:
            gc.enable()
        assert sup.stats("t").successes == 12
    return alive


async def test_idle_workers_keep_no_finished_call() -> None:
    assert await _arguments_left_alive(make_spec()) == []


async def test_idle_workers_of_a_gated_bulkhead_keep_no_finished_call() -> None:
    spec = make_spec(max_concurrency=tv.AdaptiveConcurrency(initial=4, min_limit=1, max_limit=8))
    assert await _arguments_left_alive(spec) == []


async def test_a_worker_that_cut_a_call_keeps_none_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A worker whose call ran out of ``timeout_s`` settles the cut, then waits for the
    next call holding nothing of the one it cut.

    A timed-out call's error refers to the frames it passed, so the call and its
    arguments form a cycle: what matters is that nothing live reaches them once the
    collector has run.
    """

    async def stuck(args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    refs: list[weakref.ref[Args]] = []
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(timeout_s=1.0), stuck)
        for i in range(3):
            args = Args(x=i)
            refs.append(weakref.ref(args))
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("t", args)
            del args
        await trio.sleep(1.0)  # every cut settled, the worker back waiting on the inbox
        gc.collect()
        alive = [i for i, ref in enumerate(refs) if ref() is not None]
        assert sup.stats("t").timeouts == 3
    assert alive == []
