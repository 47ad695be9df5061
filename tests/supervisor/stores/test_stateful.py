"""Stateful tests: MemoryStore and SQLiteStore, many keys, against a tiny dict model.

(One key's whole life, on every store, is ``test_key_life.py``.) Here the point is
the keys together: MemoryStore's bound evicts done records only, never a claim nor an
unknown record.

Each rule is applied to the store and to the model; the answers must match, and the
invariants are checked after every step. Time is a fake clock that only rules move.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from store_helpers import FakeClock

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores import (
    IdempotencyStore,
    MemoryStore,
    Record,
    RecordState,
    SQLiteStore,
)

_T = TypeVar("_T")

KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
TTLS = st.sampled_from([1.0, 2.5, 10.0])
DONE_TTLS = st.sampled_from([0.0, 1.0, 5.0, 30.0])
RESULTS = st.one_of(st.none(), st.text(max_size=8))


def budget(default: int, ci: int) -> int:
    """Hypothesis examples: a few for ``pytest``, more in CI (HYPOTHESIS_PROFILE=ci)."""
    return ci if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else default


@attrs.define
class ModelEntry:
    fingerprint: str
    state: RecordState
    owner: str
    expires_at: float
    result_json: str | None = None
    not_stored_reason: str | None = None


class Model:
    """What a store should hold: claims, unknown records, and done records in
    least-recently-used order."""

    def __init__(self, max_entries: int | None) -> None:
        self.max_entries = max_entries
        self.claims: dict[str, ModelEntry] = {}
        self.unknown: dict[str, ModelEntry] = {}
        self.done: dict[str, ModelEntry] = {}  # insertion order = LRU order

    def size(self) -> int:
        return len(self.claims) + len(self.unknown) + len(self.done)

    def live(self, key: str, now: float) -> ModelEntry | None:
        entry = self.claims.get(key) or self.unknown.get(key) or self.done.get(key)
        if entry is not None and entry.expires_at > now:
            if key in self.done:
                self.done[key] = self.done.pop(key)  # a use
            return entry
        self.claims.pop(key, None)
        self.unknown.pop(key, None)
        self.done.pop(key, None)
        return None

    def claim(self, key: str, fp: str, owner: str, ttl: float, now: float) -> ModelEntry | None:
        """The standing entry, or None when claimed; raises when full of claims."""
        standing = self.live(key, now)
        if standing is not None:
            return standing
        if self.max_entries is not None and self.size() >= self.max_entries:
            if self.done:
                del self.done[next(iter(self.done))]
            else:
                dropped = 0
                for held in (self.claims, self.unknown):
                    expired = [k for k, e in held.items() if e.expires_at <= now]
                    for k in expired:
                        del held[k]
                    dropped += len(expired)
                if not dropped:
                    raise IdempotencyStoreError("model", "full")
        self.claims[key] = ModelEntry(fp, RecordState.IN_PROGRESS, owner, now + ttl)
        return None

    def holds(self, key: str, owner: str, now: float) -> ModelEntry | None:
        entry = self.claims.get(key)
        if entry is None or entry.owner != owner or entry.expires_at <= now:
            return None
        return entry


def as_entry(record: Record) -> ModelEntry:
    return ModelEntry(
        record.fingerprint,
        record.state,
        record.owner,
        record.expires_at,
        record.result_json,
        record.not_stored_reason,
    )


class StoreMachine(RuleBasedStateMachine):
    max_entries: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(start=1000.0)
        self.model = Model(self.max_entries)
        self.owners = 0
        self.known_owners: list[str] = ["nobody"]
        self.store: IdempotencyStore = self.make_store()

    def make_store(self) -> IdempotencyStore:
        raise NotImplementedError

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        async def main() -> _T:
            return await coro

        return trio.run(main)

    def teardown(self) -> None:
        self.run(self.store.aclose())

    def pick_owner(self, key: str, data: st.DataObject) -> str:
        """Most often ``key``'s holder (so claims get settled), else a recent owner."""
        others = self.known_owners[-4:]
        holder = self.model.claims.get(key)
        if holder is not None:
            return data.draw(st.sampled_from([holder.owner] * len(others) + others))
        return data.draw(st.sampled_from(others))

    @rule(key=KEYS, fp=st.sampled_from(["f1", "f2"]), ttl=TTLS)
    def claim(self, key: str, fp: str, ttl: float) -> None:
        self.owners += 1
        owner = f"owner-{self.owners}"
        self.known_owners.append(owner)
        now = self.clock()
        try:
            standing = self.model.claim(key, fp, owner, ttl, now)
        except IdempotencyStoreError:
            try:
                self.run(self.store.claim(key, fp, owner, ttl))
            except IdempotencyStoreError:
                return
            raise AssertionError("the store took a claim the model says does not fit") from None
        outcome = self.run(self.store.claim(key, fp, owner, ttl))
        if standing is None:
            assert outcome.claimed
            assert as_entry(outcome.record) == self.model.claims[key]
        else:
            assert not outcome.claimed
            assert as_entry(outcome.record) == standing

    @rule(key=KEYS, data=st.data(), ttl=DONE_TTLS, result=RESULTS, reason=RESULTS)
    def complete(
        self, key: str, data: st.DataObject, ttl: float, result: str | None, reason: str | None
    ) -> None:
        owner = self.pick_owner(key, data)
        now = self.clock()
        held = self.model.holds(key, owner, now)
        assert self.run(self.store.complete(key, owner, ttl, result, reason)) is (held is not None)
        if held is not None:
            del self.model.claims[key]
            if ttl > 0:
                self.model.done[key] = ModelEntry(
                    held.fingerprint, RecordState.DONE, owner, now + ttl, result, reason
                )

    @rule(key=KEYS, data=st.data(), ttl=TTLS)
    def renew(self, key: str, data: st.DataObject, ttl: float) -> None:
        owner = self.pick_owner(key, data)
        now = self.clock()
        held = self.model.holds(key, owner, now)
        assert self.run(self.store.renew(key, owner, ttl)) is (held is not None)
        if held is not None:
            held.expires_at = now + ttl

    @rule(key=KEYS, data=st.data(), ttl=DONE_TTLS)
    def mark_unknown(self, key: str, data: st.DataObject, ttl: float) -> None:
        owner = self.pick_owner(key, data)
        now = self.clock()
        held = self.model.holds(key, owner, now)
        assert self.run(self.store.mark_unknown(key, owner, ttl)) is (held is not None)
        if held is not None:
            del self.model.claims[key]
            if ttl > 0:
                self.model.unknown[key] = ModelEntry(
                    held.fingerprint, RecordState.UNKNOWN, owner, now + ttl
                )

    @rule(key=KEYS)
    def forget(self, key: str) -> None:
        now = self.clock()
        live = any(
            key in held and held[key].expires_at > now
            for held in (self.model.claims, self.model.unknown, self.model.done)
        )
        assert self.run(self.store.forget(key)) is live
        for held in (self.model.claims, self.model.unknown, self.model.done):
            held.pop(key, None)

    @rule(key=KEYS, data=st.data())
    def release(self, key: str, data: st.DataObject) -> None:
        owner = self.pick_owner(key, data)
        held = self.model.holds(key, owner, self.clock())
        assert self.run(self.store.release(key, owner)) is (held is not None)
        if held is not None:
            del self.model.claims[key]

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        expected = self.model.live(key, self.clock())
        got = self.run(self.store.get(key))
        assert (None if got is None else as_entry(got)) == expected
        if got is not None:
            assert got.key == key

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 20.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


class MemoryMachine(StoreMachine):
    max_entries = 3

    def make_store(self) -> IdempotencyStore:
        return MemoryStore(max_entries=self.max_entries or 1, clock=self.clock)

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        # MemoryStore never yields, so its coroutines finish on the first send (and a
        # trio.run per step would cost most of the test's time).
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        coro.close()
        raise AssertionError("MemoryStore yielded to the event loop")

    @invariant()
    def bounded_and_claims_kept(self) -> None:
        store = self.store
        assert isinstance(store, MemoryStore)
        assert len(store) <= 3
        now = self.clock()
        # Live claims and unknown records are never evicted (a get() of them changes
        # nothing, unlike a done record's, which counts as a use).
        for held in (self.model.claims, self.model.unknown):
            for key, entry in held.items():
                if entry.expires_at > now:
                    got = self.run(store.get(key))
                    assert got is not None
                    assert as_entry(got) == entry


class SQLiteMachine(StoreMachine):
    def make_store(self) -> IdempotencyStore:
        self.tmp = tempfile.TemporaryDirectory()
        return SQLiteStore(Path(self.tmp.name) / "idem.db", clock=self.clock)

    @initialize()
    def touch(self) -> None:
        self.run(self.store.get("a"))

    @invariant()
    def live_claims_are_stored(self) -> None:
        now = self.clock()
        for key, entry in self.model.claims.items():
            if entry.expires_at > now:
                got = self.run(self.store.get(key))
                assert got is not None
                assert got.owner == entry.owner

    def teardown(self) -> None:
        super().teardown()
        self.tmp.cleanup()


TestMemoryStore = MemoryMachine.TestCase
TestMemoryStore.settings = settings(
    max_examples=budget(40, 200), stateful_step_count=30, deadline=None
)
TestSQLiteStore = SQLiteMachine.TestCase
TestSQLiteStore.settings = settings(
    max_examples=budget(15, 40), stateful_step_count=25, deadline=None
)
