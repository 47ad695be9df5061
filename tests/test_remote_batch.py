"""The queue remote callers send from and workers answer from, one batch per round trip."""

from __future__ import annotations

import trio
import trio.testing

from toolvisor.remote._batch import Batches


async def test_items_are_taken_oldest_first_at_most_size_at_a_time() -> None:
    queue: Batches[int] = Batches(3)
    for i in range(7):
        queue.put(i)
    assert [await queue.take(), await queue.take(), await queue.take()] == [
        [0, 1, 2],
        [3, 4, 5],
        [6],
    ]


async def test_take_waits_for_an_item_and_drain_empties(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue: Batches[str] = Batches(10)
    taken: list[list[str]] = []

    async def taker() -> None:
        taken.append(await queue.take())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(taker)
        await trio.sleep(1)
        assert taken == []  # nothing put: the taker waits
        queue.put("a")
    assert taken == [["a"]]
    queue.put("b")
    queue.put("c")
    assert queue.drain() == ["b", "c"]
    with trio.move_on_after(1) as scope:
        await queue.take()  # drained: nothing left to take
    assert scope.cancelled_caught
