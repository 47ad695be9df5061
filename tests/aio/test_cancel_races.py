"""A caller cancelled in the loop iteration in which its call got room in the inbox.

The call waited for room (full bulkhead, overflow="wait") in a trio task
(`guest.call(_wait_for_room, ...)`). The trio side puts the call into the inbox and
finishes; before the asyncio caller wakes, the caller is cancelled (another task's
`task.cancel()` or an `asyncio.timeout` expiring in that same iteration).

As docs/asyncio.md ("Cancellation, both ways") says, the call is counted as cancelled
and its attempt is cancelled (before the fix, the tool ran it to its end for nobody).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aio_helpers import make_spec, run, settled

from toolvisor import aio
from toolvisor.aio import _supervisor as aio_sup
from toolvisor.supervisor.calls import _wait_for_room
from toolvisor.supervisor.core import Supervisor as TrioSupervisor


def test_a_caller_cancelled_as_its_call_gets_room_cancels_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()
    ran: list[str] = []
    victim_box: list[asyncio.Task[Any]] = []
    original = _wait_for_room

    async def wait_then_caller_cancelled(route: Any, call: Any) -> None:
        await original(route, call)
        # the call is in the inbox; the trio side ends now.  In this very loop
        # iteration, before the caller's task wakes, its caller is cancelled:
        victim_box[0].cancel()

    monkeypatch.setattr(aio_sup, "_wait_for_room", wait_then_caller_cancelled)

    async def tool(args: dict[str, Any]) -> Any:
        ran.append(f"start {args['x']}")
        if args["x"] == 0:
            await release.wait()
        else:
            try:
                await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                ran.append(f"cancelled {args['x']}")
                raise
        ran.append(f"end {args['x']}")
        return args["x"]

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(max_concurrency=1, queue_size=0), tool)
            first = asyncio.ensure_future(sup.execute("t", {"x": 0}))
            await asyncio.sleep(0.01)
            victim = asyncio.ensure_future(sup.execute("t", {"x": 1}))
            victim_box.append(victim)
            await asyncio.sleep(0.01)  # the victim waits for room, in trio
            release.set()
            assert await first == 0
            with pytest.raises(asyncio.CancelledError):
                await victim
            await asyncio.sleep(0.3)
            await settled(sup, "t")
            stats = sup.stats("t")
            assert stats.cancelled == 1, stats
            assert "end 1" not in ran, ran

    run(main)


def test_a_caller_cancelled_as_its_submit_returns_cancels_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The trio side sent the call and returned its PendingCall; the asyncio caller was
    cancelled before it woke, so nobody will hold the call: it ends as cancelled."""
    ran: list[str] = []
    victim_box: list[asyncio.Task[Any]] = []
    original = TrioSupervisor.submit

    async def submit_then_caller_cancelled(self: Any, *args: Any, **kw: Any) -> Any:
        pending = await original(self, *args, **kw)
        victim_box[0].cancel()  # the caller is cancelled as the trio side returns
        return pending

    monkeypatch.setattr(TrioSupervisor, "submit", submit_then_caller_cancelled)

    async def tool(args: dict[str, Any]) -> Any:
        ran.append("start")
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            ran.append("cancelled")
            raise
        ran.append("end")

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(), tool)

            async def caller() -> None:
                pending = await sup.submit("t", {})
                await pending.value()

            victim = asyncio.ensure_future(caller())
            victim_box.append(victim)
            with pytest.raises(asyncio.CancelledError):
                await victim
            await asyncio.sleep(0.3)
            await settled(sup, "t")
            assert sup.stats("t").cancelled == 1
            assert ran in (["start", "cancelled"], [])  # cut, or cancelled before it ran

    run(main)
