"""The supervisor's event hub: callbacks and channels that see every event.

Events are published by the tools' runners (retries, breaker transitions), the restart
loops (restarts, a tool given up) and the idempotency cache (results not stored). When
nobody listens, publishers hold ``None`` instead of the hub's ``publish`` and build no
event at all: ``wire`` keeps them in step with the subscriptions.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from ..events import Event

__all__ = ["EventHub", "Publish"]

log = logging.getLogger("toolvisor")

Publish = Callable[[Event], None]


class EventHub:
    """Fans events out to callbacks and channels.

    Args:
        wire: called with ``publish`` (or None when nobody listens) whenever the
            subscriptions change, to hand it to every publisher.
    """

    def __init__(self, wire: Callable[[Publish | None], None]) -> None:
        self._wire = wire
        self._callbacks: list[Callable[[Event], None]] = []
        self._channels: list[trio.MemorySendChannel[Event]] = []
        self.dropped = 0

    @property
    def publisher(self) -> Publish | None:
        """``publish`` while anyone listens, else None."""
        return self.publish if (self._callbacks or self._channels) else None

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes."""
        self._callbacks.append(callback)
        self._wire(self.publisher)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
            self._wire(self.publisher)

        return unsubscribe

    @asynccontextmanager
    async def events(self, buffer: int = 1024) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """A channel of events; when it is full, new events are dropped (``dropped``)."""
        send, receive = trio.open_memory_channel[Event](buffer)
        self._channels.append(send)
        self._wire(self.publisher)
        try:
            async with receive:
                yield receive
        finally:
            self._channels.remove(send)
            send.close()
            self._wire(self.publisher)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every callback and channel; a failing callback is logged."""
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("toolvisor event callback %r failed on %r", callback, event)
        for channel in list(self._channels):
            try:
                channel.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.dropped += 1
