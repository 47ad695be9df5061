"""The delivery protocol against a model: every order of read, claim, answer, hand back, bury.

Consumers act as workers do, each on what it believes it holds (a slow worker still
believes it holds a call another worker's janitor claimed). The real Lua scripts run on a
real Redis; the model says a call is settled (answered, handed back or buried) exactly
once, whoever settles it first, and that its caller gets at most one reply.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import attrs
import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from toolvisor.remote import _lua

_T = TypeVar("_T")
CONSUMERS = st.sampled_from(["w1", "w2"])


@attrs.define
class CallModel:
    call_id: str
    entry: str  # its current stream entry id
    state: str = "unread"  # unread | held | answered | dead
    owner: str | None = None
    deliveries: int = 0
    replies: int = 0


class Portal:
    """One trio run in a thread holding one connection; each step is a call into it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis: Any = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._hold,), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _hold(self) -> None:
        import coredis

        async with coredis.Redis.from_url(self.url, decode_responses=True) as self.redis:
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            while not self._stop.is_set():  # noqa: ASYNC110 (set from another thread)
                await trio.sleep(0.05)

    def run(self, coro: Any) -> Any:
        async def main() -> Any:
            return await coro

        return trio.from_thread.run(main, trio_token=self._token)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class DeliveryMachine(RuleBasedStateMachine):
    portal: Portal

    def __init__(self) -> None:
        super().__init__()
        ns = f"tvstate-{uuid.uuid4().hex[:10]}"
        self.stream, self.group = f"{ns}:call:t", ns
        self.replies, self.dead = f"{ns}:reply:c", f"{ns}:dead:t"
        self.calls: dict[str, CallModel] = {}
        self.believed: dict[str, set[str]] = {"w1": set(), "w2": set()}
        self.ids = itertools.count()
        self.run(self.portal.redis.xgroup_create(self.stream, self.group, "0", mkstream=True))

    def run(self, coro: Coroutine[Any, Any, _T] | Any) -> _T:
        return self.portal.run(coro)  # type: ignore[no-any-return]

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        yield self.portal.redis

    def by_entry(self, entry: str) -> CallModel | None:
        return next((m for m in self.calls.values() if m.entry == entry), None)

    # ------------------------------------------------------------------ rules

    @rule()
    def send(self) -> None:
        call_id = f"c{next(self.ids)}"

        async def go() -> str:
            async with self.client() as c:
                fields = {"id": call_id, "reply": self.replies}
                return str(await c.xadd(self.stream, fields))

        self.calls[call_id] = CallModel(call_id, self.run(go()))

    @rule(consumer=CONSUMERS)
    def read(self, consumer: str) -> None:
        async def go() -> Any:
            async with self.client() as c:
                return await c.xreadgroup(self.group, consumer, {self.stream: ">"}, count=1)

        got = self.run(go())
        unread = sorted(
            (m for m in self.calls.values() if m.state == "unread"),
            key=lambda m: tuple(map(int, m.entry.split("-"))),
        )
        if not unread:
            assert not got
            return
        (entry,) = got[self.stream]
        assert entry.identifier == unread[0].entry  # oldest first
        model = unread[0]
        model.state, model.owner = "held", consumer
        model.deliveries += 1
        self.believed[consumer].add(model.entry)

    @precondition(lambda self: any(m.state == "held" for m in self.calls.values()))
    @rule(consumer=CONSUMERS, data=st.data())
    def claim(self, consumer: str, data: st.DataObject) -> None:
        """A janitor claims a held call (its holder looked dead): one more delivery."""
        held = sorted(m.call_id for m in self.calls.values() if m.state == "held")
        model = self.calls[data.draw(st.sampled_from(held))]

        async def go() -> Any:
            async with self.client() as c:
                return await c.xclaim(self.stream, self.group, consumer, 0, [model.entry])

        (entry,) = self.run(go())
        assert entry.identifier == model.entry
        model.owner = consumer
        model.deliveries += 1
        self.believed[consumer].add(model.entry)

    def _believed(self, consumer: str, data: st.DataObject) -> str | None:
        entries = sorted(self.believed[consumer])
        if not entries:
            return None
        entry = data.draw(st.sampled_from(entries))
        self.believed[consumer].discard(entry)
        return entry

    @rule(consumer=CONSUMERS, data=st.data())
    def answer(self, consumer: str, data: st.DataObject) -> None:
        entry = self._believed(consumer, data)
        if entry is None:
            return
        model = self.by_entry(entry)

        async def go() -> int:
            async with self.client() as c:
                script = c.register_script(_lua.FINISH)
                call_id = model.call_id if model else "?"
                args = [self.group, "60000", "1000", entry, "2", "id", call_id]
                (done,) = await script(keys=[self.stream, self.replies], args=args)
                return int(done)

        done = self.run(go())
        live = model is not None and model.state == "held"
        assert done == (1 if live else 0)
        if live and model is not None:
            model.state, model.owner = "answered", None
            model.replies += 1

    @rule(consumer=CONSUMERS, data=st.data())
    def hand_back(self, consumer: str, data: st.DataObject) -> None:
        entry = self._believed(consumer, data)
        if entry is None:
            return
        model = self.by_entry(entry)
        call_id = model.call_id if model else "?"

        async def go() -> tuple[int, Any]:
            async with self.client() as c:
                script = c.register_script(_lua.HAND_BACK)
                fields = ["id", call_id, "reply", self.replies]
                done = int(await script(keys=[self.stream], args=[self.group, entry, *fields]))
                last = await c.xrevrange(self.stream, count=1)
                return done, last

        done, last = self.run(go())
        live = model is not None and model.state == "held"
        assert done == (1 if live else 0)
        if live and model is not None:
            model.state, model.owner, model.deliveries = "unread", None, 0
            model.entry = last[0].identifier  # a fresh entry, at the end of the stream

    @rule(consumer=CONSUMERS, data=st.data())
    def bury(self, consumer: str, data: st.DataObject) -> None:
        entry = self._believed(consumer, data)
        if entry is None:
            return
        model = self.by_entry(entry)

        async def go() -> int:
            async with self.client() as c:
                script = c.register_script(_lua.BURY)
                call = ["id", model.call_id if model else "?"]
                reply = ["id", model.call_id if model else "?", "ok", "0"]
                args = [self.group, entry, "60000", "1000", str(len(call)), *call, *reply]
                return int(await script(keys=[self.stream, self.dead, self.replies], args=args))

        done = self.run(go())
        live = model is not None and model.state == "held"
        assert done == (1 if live else 0)
        if live and model is not None:
            model.state, model.owner = "dead", None
            model.replies += 1

    @rule(consumer=CONSUMERS)
    def keep(self, consumer: str) -> None:
        """Renewing keeps only what the consumer still owns, and takes nothing back."""
        entries = sorted(self.believed[consumer])
        if not entries:
            return

        async def go() -> int:
            async with self.client() as c:
                script = c.register_script(_lua.KEEP)
                return int(await script(keys=[self.stream], args=[self.group, consumer, *entries]))

        owned = [e for e in entries if (m := self.by_entry(e)) and m.owner == consumer]
        assert self.run(go()) == len(owned)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def redis_agrees_with_the_model(self) -> None:
        async def go() -> tuple[Any, Any, Any, int]:
            async with self.client() as c:
                replies = await c.xrange(self.replies)
                pending = await c.xpending(self.stream, self.group, "-", "+", 1000)
                return replies, pending, await c.xlen(self.stream), await c.xlen(self.dead)

        replies, pending, length, dead = self.run(go())
        counted: dict[str, int] = {}
        for entry in replies:
            counted[entry.field_values["id"]] = counted.get(entry.field_values["id"], 0) + 1
        for model in self.calls.values():
            assert counted.get(model.call_id, 0) == model.replies <= 1
        held = {m.entry: m for m in self.calls.values() if m.state == "held"}
        assert {p.identifier: (p.consumer, p.delivered) for p in pending} == {
            e: (m.owner, m.deliveries) for e, m in held.items()
        }
        assert length == sum(m.state in ("unread", "held") for m in self.calls.values())
        assert dead == sum(m.state == "dead" for m in self.calls.values())


@pytest.fixture(autouse=True)
def _portal(redis_url: str) -> Iterator[None]:
    DeliveryMachine.portal = Portal(redis_url)
    yield
    DeliveryMachine.portal.close()


TestDelivery = DeliveryMachine.TestCase
TestDelivery.settings = settings(max_examples=8, stateful_step_count=20, deadline=None)


@pytest.mark.slow
class TestDeliveryLong(DeliveryMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
