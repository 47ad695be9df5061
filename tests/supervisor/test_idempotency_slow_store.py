"""An idempotency store that is slow or fails *after* the tool ran never lets its key
run a second time, and never takes the run down.

A store can stall (a paused Redis, a SQLite write lock another process holds, a dead
connection until its own timeout) when toolvisor settles a key after the execution
(``complete``, ``mark_unknown``, ``release``) or renews a claim. The caller is answered
after at most ``_CLEANUP_S``; the claim stays held and renewed, and the settling is
tried again in the background until the store answers it. Each case runs on trio's
MockClock, well past the claim's 30 s lease.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv
from toolvisor import MemoryStore, ResultNotStored
from toolvisor.errors import IdempotencyOutcomeUnknownError, IdempotencyStoreError


class StallingStore(MemoryStore):
    """A persistent store whose first call of the named operations stalls ``stall_s``
    seconds and then fails, as a dead connection does until its timeout; later calls
    work (a fresh connection)."""

    persistent = True

    def __init__(self, *operations: str, stall_s: float = 10.0) -> None:
        super().__init__()
        self.stalling = set(operations)
        self.stall_s = stall_s
        self.calls: dict[str, int] = {}

    async def _maybe_stall(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        if operation in self.stalling:
            self.stalling.discard(operation)
            await trio.sleep(self.stall_s)
            raise IdempotencyStoreError("StallingStore", f"{operation} timed out")

    async def complete(
        self, key: str, owner: str, ttl_s: float, result_json: str | None, reason: str | None = None
    ) -> bool:
        await self._maybe_stall("complete")
        return await super().complete(key, owner, ttl_s, result_json, reason)

    async def mark_unknown(self, key: str, owner: str, ttl_s: float) -> bool:
        await self._maybe_stall("mark_unknown")
        return await super().mark_unknown(key, owner, ttl_s)

    async def release(self, key: str, owner: str) -> bool:
        await self._maybe_stall("release")
        return await super().release(key, owner)


class SilentRenewals(MemoryStore):
    """Renewals never answer (the server is paused); everything else works."""

    async def renew(self, key: str, owner: str, claim_ttl_s: float) -> bool:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


def _spec(*, timeout_s: float = 30.0) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id="pay-v1",
        tool_name="pay",
        parameters=[tv.StringParameter(name="tx", required=True)],
        timeout_s=timeout_s,
    )
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    spec.idempotency.key_fields = ["tx"]
    return spec


def _run(main: Any) -> Any:
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize(
    ("stall_s", "duplicate_gets"),
    [
        # The store's error comes within _CLEANUP_S: the key is marked unknown at once.
        (1.0, IdempotencyOutcomeUnknownError),
        (4.9, IdempotencyOutcomeUnknownError),
        # No answer within _CLEANUP_S: the caller is answered, the claim kept, and the
        # success recorded once the store answers again; the duplicate gets the value.
        (5.1, "paid"),
        (10.0, "paid"),
        (100.0, "paid"),
    ],
)
def test_a_success_the_store_is_slow_to_record_runs_once(
    stall_s: float, duplicate_gets: object
) -> None:
    charged: list[str] = []
    events: list[object] = []

    async def pay(args: dict[str, Any]) -> str:
        charged.append(args["tx"])
        return "paid"

    async def main() -> object:
        store = StallingStore("complete", stall_s=stall_s)
        async with tv.open_supervisor(idempotency_store=store) as sup:
            sup.subscribe(events.append)
            await sup.spawn(_spec(), pay)
            started = trio.current_time()
            assert await sup.execute("pay", {"tx": "t1"}) == "paid"
            assert trio.current_time() - started <= 5.0  # answered within _CLEANUP_S
            await trio.sleep(120)  # four leases later
            try:
                return await sup.execute("pay", {"tx": "t1"})
            except IdempotencyOutcomeUnknownError as exc:
                return type(exc)

    assert _run(main) == duplicate_gets
    assert charged == ["t1"]
    assert [type(e) for e in events if isinstance(e, ResultNotStored)] == [ResultNotStored]


def test_a_cut_attempt_the_store_is_slow_to_mark_unknown_never_runs_again() -> None:
    started: list[str] = []

    async def pay(args: dict[str, Any]) -> str:
        started.append(args["tx"])  # the charge leaves here; its answer is late
        await trio.sleep(5)
        return "paid"

    async def main() -> list[type[BaseException]]:
        store = StallingStore("mark_unknown", stall_s=10.0)
        seen: list[type[BaseException]] = []
        async with tv.open_supervisor(idempotency_store=store) as sup:
            await sup.spawn(_spec(timeout_s=1.0), pay)
            for _ in range(3):
                with pytest.raises(tv.ToolvisorError) as raised:
                    await sup.execute("pay", {"tx": "t1"})
                seen.append(type(raised.value))
                await trio.sleep(60)  # two leases later
        return seen

    seen = _run(main)
    assert started == ["t1"]
    assert seen[1:] == [IdempotencyOutcomeUnknownError, IdempotencyOutcomeUnknownError]


def test_a_clean_failure_the_store_is_slow_to_release_is_released_later() -> None:
    attempts: list[str] = []

    async def pay(args: dict[str, Any]) -> str:
        attempts.append(args["tx"])
        if len(attempts) == 1:
            raise ValueError("card declined")  # ran, failed cleanly: may run again
        return "paid"

    async def main() -> Any:
        store = StallingStore("release", stall_s=100.0)
        async with tv.open_supervisor(idempotency_store=store) as sup:
            await sup.spawn(_spec(), pay)
            with pytest.raises(ValueError, match="card declined"):
                await sup.execute("pay", {"tx": "t1"})
            await trio.sleep(200)  # the release went through in the background
            return await sup.execute("pay", {"tx": "t1"})

    assert _run(main) == "paid"
    assert attempts == ["t1", "t1"]


def test_a_renewal_that_never_answers_does_not_take_the_run_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    async def pay(args: dict[str, Any]) -> str:
        ran.append(args["tx"])
        await trio.sleep(100)  # longer than the 30 s lease: it is renewed meanwhile
        return "ok"

    async def main() -> list[Any]:
        async with tv.open_supervisor(idempotency_store=SilentRenewals()) as sup:
            await sup.spawn(_spec(timeout_s=1000), pay)
            results: list[Any] = []
            async with trio.open_nursery() as nursery:

                async def one(tx: str) -> None:
                    results.append(await sup.execute("pay", {"tx": tx}))

                for tx in ("a", "b"):
                    nursery.start_soon(one, tx)
            return results

    with caplog.at_level(logging.WARNING, logger="toolvisor"):
        assert _run(main) == ["ok", "ok"]
    assert sorted(ran) == ["a", "b"]
    assert "did not answer" in caplog.text


class DownAfterTheClaim(MemoryStore):
    """Claims work; then the store goes down for good (every later operation fails)."""

    persistent = True

    async def _down(self) -> bool:
        raise IdempotencyStoreError("DownAfterTheClaim", "connection refused")

    async def complete(
        self, key: str, owner: str, ttl_s: float, result_json: str | None, reason: str | None = None
    ) -> bool:
        return await self._down()

    async def mark_unknown(self, key: str, owner: str, ttl_s: float) -> bool:
        return await self._down()

    async def renew(self, key: str, owner: str, claim_ttl_s: float) -> bool:
        return await self._down()


def test_a_store_that_stays_down_is_given_up_after_a_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def pay(args: dict[str, Any]) -> str:
        return "paid"

    async def main() -> str:
        async with tv.open_supervisor(idempotency_store=DownAfterTheClaim()) as sup:
            await sup.spawn(_spec(), pay)
            value: str = await sup.execute("pay", {"tx": "t1"})
            await trio.sleep(600)  # twenty leases
            return value

    with caplog.at_level(logging.WARNING, logger="toolvisor"):
        assert _run(main) == "paid"
    given_up = [r for r in caplog.records if "settling it is given up" in r.getMessage()]
    assert len(given_up) == 1
    # Tried again for one lease (30 s: a try every 1, 2, 4, 8, 10 s, and renewals every
    # 10 s), not for the ten minutes after.
    assert len(caplog.records) < 20


class RefusesTheValue(MemoryStore):
    """A store that can never hold this success (``complete`` always fails), and whose
    first ``mark_unknown`` fails too (a blip); the claim itself renews fine."""

    persistent = True

    def __init__(self) -> None:
        super().__init__()
        self.marked = 0

    async def complete(
        self, key: str, owner: str, ttl_s: float, result_json: str | None, reason: str | None = None
    ) -> bool:
        raise IdempotencyStoreError("RefusesTheValue", "value too large for this store")

    async def mark_unknown(self, key: str, owner: str, ttl_s: float) -> bool:
        self.marked += 1
        if self.marked == 1:
            raise IdempotencyStoreError("RefusesTheValue", "connection reset")
        return await super().mark_unknown(key, owner, ttl_s)


def test_a_success_the_store_refuses_to_hold_is_recorded_unknown_later() -> None:
    async def pay(args: dict[str, Any]) -> str:
        return "paid"

    async def main() -> type[BaseException]:
        async with tv.open_supervisor(idempotency_store=RefusesTheValue()) as sup:
            await sup.spawn(_spec(), pay)
            assert await sup.execute("pay", {"tx": "t1"}) == "paid"
            await trio.sleep(60)
            with pytest.raises(tv.ToolvisorError) as raised:
                await sup.execute("pay", {"tx": "t1"}, timeout=5)
            return type(raised.value)

    # Not a wait for the claim's holder until the deadline: the key is known unknown.
    assert _run(main) is IdempotencyOutcomeUnknownError


def test_a_key_left_unsettled_is_let_go_when_the_supervisor_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = DownAfterTheClaim()
    renewals: list[float] = []
    renew = store.renew

    async def counted(key: str, owner: str, claim_ttl_s: float) -> bool:
        renewals.append(trio.current_time())
        return await renew(key, owner, claim_ttl_s)

    store.renew = counted  # type: ignore[method-assign]

    async def pay(args: dict[str, Any]) -> str:
        return "paid"

    async def main() -> float:
        async with tv.open_supervisor(idempotency_store=store) as sup:
            await sup.spawn(_spec(), pay)
            assert await sup.execute("pay", {"tx": "t1"}) == "paid"
        closed_at = trio.current_time()
        await trio.sleep(3600)  # the program goes on without the supervisor
        return closed_at

    with caplog.at_level(logging.ERROR, logger="toolvisor"):
        closed_at = _run(main)
    assert [t for t in renewals if t > closed_at] == []
    assert "not settled before the supervisor closed" in caplog.text


class FailsThenStalls(MemoryStore):
    """``complete`` fails after 1 s; the ``mark_unknown`` that follows stalls 10 s."""

    persistent = True

    def __init__(self) -> None:
        super().__init__()
        self.first = True

    async def complete(
        self, key: str, owner: str, ttl_s: float, result_json: str | None, reason: str | None = None
    ) -> bool:
        if self.first:
            await trio.sleep(1)
            raise IdempotencyStoreError("FailsThenStalls", "connection reset")
        return await super().complete(key, owner, ttl_s, result_json, reason)

    async def mark_unknown(self, key: str, owner: str, ttl_s: float) -> bool:
        if self.first:
            self.first = False
            await trio.sleep(10)
            raise IdempotencyStoreError("FailsThenStalls", "timed out")
        return await super().mark_unknown(key, owner, ttl_s)


def test_one_success_not_stored_is_one_event() -> None:
    events: list[object] = []

    async def pay(args: dict[str, Any]) -> str:
        return "paid"

    async def main() -> None:
        async with tv.open_supervisor(idempotency_store=FailsThenStalls()) as sup:
            sup.subscribe(events.append)
            await sup.spawn(_spec(), pay)
            assert await sup.execute("pay", {"tx": "t1"}) == "paid"
            await trio.sleep(60)

    _run(main)
    assert len([e for e in events if isinstance(e, ResultNotStored)]) == 1
