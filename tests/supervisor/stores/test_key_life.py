"""One key's life, on every store, against a model of a few lines.

The rules are what happens to an idempotency key: a caller claims it (the first, or a
second owner while it is held), the holder renews its lease, completes, fails (releases)
or records an unknown outcome, an operator forgets the key, time passes, and a holder
crashes (it stops renewing, so its lease runs out). Each rule is applied to the real
store and to the model; their answers and the record the store holds must agree after
every step. The store's clock jumps: a FakeClock for MemoryStore and SQLiteStore, and for
Redis (whose expiry is the server's) the record's PX shortened by the same amount.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import attrs
import coredis
import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from store_helpers import FakeClock

from toolvisor.supervisor.stores import (
    IdempotencyStore,
    MemoryStore,
    Record,
    RecordState,
    RedisStore,
    SQLiteStore,
)

_T = TypeVar("_T")

KEY = "idem:pay:t=acme:fields:k"
# Multiples of 0.5 s: Redis's real time, which also passes (a few ms per step), never
# reaches a boundary the model has not.
CLAIM_TTLS = st.sampled_from([1.0, 2.5, 10.0])
RECORD_TTLS = st.sampled_from([0.0, 1.5, 5.0, 30.0])
STEPS = st.sampled_from([0.5, 1.0, 3.0, 20.0])
RESULTS = st.one_of(st.none(), st.sampled_from(['{"id": 1}', '""', "[1, 2]"]))


@attrs.frozen
class Entry:
    state: RecordState
    fingerprint: str
    owner: str
    expires_at: float
    result_json: str | None = None
    not_stored_reason: str | None = None


class KeyModel:
    """The key's one record, and the time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.entry: Entry | None = None

    def live(self) -> Entry | None:
        if self.entry is not None and self.entry.expires_at <= self.now:
            self.entry = None
        return self.entry

    def held_by(self, owner: str) -> Entry | None:
        entry = self.live()
        if entry is None or entry.state is not RecordState.IN_PROGRESS or entry.owner != owner:
            return None
        return entry

    def settle(self, held: Entry, state: RecordState, ttl: float, **fields: Any) -> None:
        if ttl == 0.0:
            self.entry = None  # a TTL of 0 drops the record
        else:
            self.entry = attrs.evolve(held, state=state, expires_at=self.now + ttl, **fields)


class KeyLife(RuleBasedStateMachine):
    """The rules; a subclass says how to make its store, run it and move its clock."""

    def __init__(self) -> None:
        super().__init__()
        self.model = KeyModel()
        self.owners: list[str] = []
        self.crashed: set[str] = set()
        self.store = self.make_store()

    # --- per store -----------------------------------------------------------------

    def make_store(self) -> IdempotencyStore:
        raise NotImplementedError

    def run(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        # The machine runs in a worker thread of the test's trio run (Hypothesis's
        # stateful runner is synchronous): the store's operations go back to that one
        # loop, so its connections live across the steps.
        return trio.from_thread.run(make)

    def advance_store(self, seconds: float) -> None:
        raise NotImplementedError

    def expires_at(self, entry: Entry) -> float:
        """The model's ``expires_at`` on the store's clock."""
        raise NotImplementedError

    def same_record(self, got: Record, entry: Entry) -> None:
        assert got.key == KEY
        assert (got.state, got.fingerprint, got.owner) == (
            entry.state,
            entry.fingerprint,
            entry.owner,
        )
        assert (got.result_json, got.not_stored_reason) == (
            entry.result_json,
            entry.not_stored_reason,
        )
        assert got.expires_at == pytest.approx(self.expires_at(entry), abs=1e-6)

    def teardown(self) -> None:
        self.run(self.store.aclose)

    # --- rules ---------------------------------------------------------------------

    def some_owner(self, data: st.DataObject) -> str:
        """Most often the holder (its operations are the life of the key), else another."""
        others = [*self.owners[-3:], "stranger"]
        entry = self.model.live()
        if entry is not None and entry.state is RecordState.IN_PROGRESS:
            return data.draw(st.sampled_from([entry.owner] * len(others) + others))
        return data.draw(st.sampled_from(others))

    @rule(fp=st.sampled_from(["fp1", "fp2"]), ttl=CLAIM_TTLS)
    def claim(self, fp: str, ttl: float) -> None:
        """A caller claims the key: the first one, or a second owner while it is held."""
        owner = f"owner-{len(self.owners) + 1}"
        self.owners.append(owner)
        standing = self.model.live()
        outcome = self.run(lambda: self.store.claim(KEY, fp, owner, ttl))
        if standing is None:
            assert outcome.claimed
            self.model.entry = Entry(RecordState.IN_PROGRESS, fp, owner, self.model.now + ttl)
        else:
            assert not outcome.claimed
        assert self.model.entry is not None
        self.same_record(outcome.record, self.model.entry)

    @rule(data=st.data(), ttl=CLAIM_TTLS)
    def renew(self, data: st.DataObject, ttl: float) -> None:
        owner = self.some_owner(data)
        held = self.model.held_by(owner)
        assert self.run(lambda: self.store.renew(KEY, owner, ttl)) is (held is not None)
        if held is not None:
            self.model.entry = attrs.evolve(held, expires_at=self.model.now + ttl)

    @rule(data=st.data(), ttl=RECORD_TTLS, result=RESULTS, reason=RESULTS)
    def complete(
        self, data: st.DataObject, ttl: float, result: str | None, reason: str | None
    ) -> None:
        owner = self.some_owner(data)
        held = self.model.held_by(owner)
        got = self.run(lambda: self.store.complete(KEY, owner, ttl, result, reason))
        assert got is (held is not None)
        if held is not None:
            self.model.settle(
                held, RecordState.DONE, ttl, result_json=result, not_stored_reason=reason
            )

    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        """The holder's attempt failed cleanly: it gives the key up."""
        owner = self.some_owner(data)
        held = self.model.held_by(owner)
        assert self.run(lambda: self.store.release(KEY, owner)) is (held is not None)
        if held is not None:
            self.model.entry = None

    @rule(data=st.data(), ttl=RECORD_TTLS)
    def mark_unknown(self, data: st.DataObject, ttl: float) -> None:
        """The holder's attempt was cut: its outcome is unknown."""
        owner = self.some_owner(data)
        held = self.model.held_by(owner)
        assert self.run(lambda: self.store.mark_unknown(KEY, owner, ttl)) is (held is not None)
        if held is not None:
            self.model.settle(held, RecordState.UNKNOWN, ttl)

    @rule()
    def forget(self) -> None:
        standing = self.model.live()
        assert self.run(lambda: self.store.forget(KEY)) is (standing is not None)
        self.model.entry = None

    @rule(seconds=STEPS)
    def time_passes(self, seconds: float) -> None:
        self.model.now += seconds
        self.advance_store(seconds)

    @precondition(
        lambda self: (
            self.model.live() is not None and self.model.live().state is RecordState.IN_PROGRESS
        )  # type: ignore[union-attr]
    )
    @rule()
    def holder_crashes(self) -> None:
        """The holder dies (SIGKILL): nobody renews, and its lease runs out."""
        entry = self.model.live()
        assert entry is not None
        self.crashed.add(entry.owner)
        self.time_passes(entry.expires_at - self.model.now)
        assert self.model.live() is None

    @invariant()
    def the_store_holds_what_the_model_does(self) -> None:
        entry = self.model.live()
        got = self.run(lambda: self.store.get(KEY))
        if entry is None:
            assert got is None
        else:
            assert got is not None
            self.same_record(got, entry)
            # A crashed holder never holds the key again.
            assert not (got.state is RecordState.IN_PROGRESS and got.owner in self.crashed)


class MemoryKeyLife(KeyLife):
    def make_store(self) -> IdempotencyStore:
        self.clock = FakeClock(start=500.0)
        return MemoryStore(max_entries=2, clock=self.clock)

    def run(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        # MemoryStore never yields: each coroutine ends on its first send.
        coro = make()
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        coro.close()
        raise AssertionError("MemoryStore yielded to the event loop")

    def advance_store(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def expires_at(self, entry: Entry) -> float:
        return 500.0 + entry.expires_at


class SQLiteKeyLife(KeyLife):
    def make_store(self) -> IdempotencyStore:
        self.clock = FakeClock(start=1_700_000_000.0)
        self.tmp = tempfile.TemporaryDirectory()
        return SQLiteStore(Path(self.tmp.name) / "idem.db", clock=self.clock)

    def advance_store(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def expires_at(self, entry: Entry) -> float:
        return 1_700_000_000.0 + entry.expires_at

    def teardown(self) -> None:
        super().teardown()
        self.tmp.cleanup()


class RedisKeyLife(KeyLife):
    url = ""
    raw: coredis.Redis[str]

    def make_store(self) -> IdempotencyStore:
        self.prefix = f"toolvisor-test:{uuid.uuid4().hex}:"
        return RedisStore(self.url, prefix=self.prefix)

    def advance_store(self, seconds: float) -> None:
        """Make ``seconds`` pass for the key: shorten its PX by as much."""
        record_key = f"{self.prefix}default:{KEY}"

        async def advance() -> None:
            left = await self.raw.pttl(record_key)
            if left < 0:
                return
            rest = left - int(seconds * 1000)
            if rest <= 0:
                await self.raw.delete([record_key])
            else:
                await self.raw.pexpire(record_key, rest)

        self.run(advance)

    def same_record(self, got: Record, entry: Entry) -> None:
        # expires_at is the writer's wall clock, which the jumps do not move: compare
        # the rest; the time left is Redis's own PX, checked by the model's expiries.
        super().same_record(got, attrs.evolve(entry, expires_at=got.expires_at))

    def expires_at(self, entry: Entry) -> float:
        return entry.expires_at


def key_life_settings(share: float, steps: int) -> settings:
    """A share of the profile's examples (100 by default, more on CI)."""
    examples = max(10, int(settings.default.max_examples * share))
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None)


def test_memory_store_key_life() -> None:
    run_state_machine_as_test(MemoryKeyLife, settings=key_life_settings(0.6, 30))


async def test_sqlite_store_key_life() -> None:
    await trio.to_thread.run_sync(
        lambda: run_state_machine_as_test(SQLiteKeyLife, settings=key_life_settings(0.2, 25))
    )


@pytest.mark.redis
@pytest.mark.slow
async def test_redis_store_key_life(redis_url: str) -> None:
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as raw:
        RedisKeyLife.url = redis_url
        RedisKeyLife.raw = raw
        await trio.to_thread.run_sync(
            lambda: run_state_machine_as_test(RedisKeyLife, settings=key_life_settings(0.3, 25))
        )
