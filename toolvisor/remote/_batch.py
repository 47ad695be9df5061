"""A queue taken in batches: what a caller sends and a worker answers per script run."""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Batches(Generic[T]):
    """Items put from any task of one trio run, taken by one task ``size`` at most at a time.

    While the taking task is busy with a batch (one round trip to Redis), the items put
    meanwhile wait for the next: an item alone goes at once, and under load one round
    trip carries many.
    """

    __slots__ = ("_items", "_ready", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: list[T] = []
        self._ready = trio.Event()

    def put(self, item: T) -> None:
        self._items.append(item)
        self._ready.set()

    async def take(self) -> list[T]:
        """The oldest items (at least one, at most ``size``), once there are any."""
        await self._ready.wait()
        size = self.size
        batch = self._items[:size]
        del self._items[:size]
        if not self._items:
            self._ready = trio.Event()
        return batch

    def drain(self) -> list[T]:
        """Every item waiting now, taken (for a queue that closes)."""
        items, self._items = self._items, []
        if items:  # the event said "items waiting": a later take() waits for new ones
            self._ready = trio.Event()
        return items
