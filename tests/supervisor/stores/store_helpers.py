"""Helpers shared by the store tests (a plain module: the tests folder has no package)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from toolvisor.supervisor.stores import IdempotencyStore


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@attrs.define
class Harness:
    """One store under test, with the way to make time pass for it."""

    kind: str
    store: IdempotencyStore
    now: Callable[[], float]
    advance: Callable[[float], Awaitable[None]]
