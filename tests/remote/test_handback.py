"""A call a stopping worker hands back keeps its count of deliveries.

A worker that stops hands back the calls it still holds: each becomes a new stream
entry, which Redis counts as a first delivery. When the call had been delivered before
(its first worker died holding it, maybe after charging), the next worker must still
know, or it takes the key for a fresh one and runs it again once the dead worker's claim
lapses. Real Redis, in-process workers, real time (about 6 s).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import toolvisor
from toolvisor import ExecutionContext, FunctionToolSpec, RedisStore, StringParameter
from toolvisor.policies.idempotency import fingerprint
from toolvisor.remote._redis import open_client
from toolvisor.remote._wire import Keys, delivered_before
from toolvisor.remote._worker import Worker, WorkerOptions
from toolvisor.supervisor.idempotency import call_key, storage_key

pytestmark = pytest.mark.slow

LEASE_S = 6.0  # the dead worker's claim: longer than the janitors' claim_idle_s


def _spec() -> FunctionToolSpec:
    spec = FunctionToolSpec(
        id="charge-v1",
        tool_name="charge",
        parameters=[StringParameter(name="tx", required=True)],
    )
    spec.idempotency.enabled = True
    spec.idempotency.key_fields = ["tx"]
    spec.idempotency.claim_ttl_s = LEASE_S
    spec.idempotency.persist_result = True  # in the fleet's store (as run_worker does)
    return spec


def test_the_count_reads_from_the_entry() -> None:
    assert delivered_before({}) == 0
    assert delivered_before({"delivered_before": "2"}) == 2
    for garbage in ("", "-1", "two", "²", "9" * 12):
        assert delivered_before({"delivered_before": garbage}) == 0


async def test_a_redelivered_call_handed_back_is_not_run_again(
    redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    charged: list[str] = []
    args = {"tx": "tx-1"}

    async def charge(_args: dict[str, Any]) -> str:
        charged.append("a live worker")
        return "paid"

    async def worker(name: str, options: WorkerOptions, stop_after: float | None) -> None:
        store = RedisStore(redis_url, prefix=keys.idem_prefix)
        try:
            async with (
                open_client(redis_url) as client,
                toolvisor.open_supervisor(idempotency_store=store) as sup,
            ):
                await sup.spawn(_spec(), charge)
                serving = Worker(client, sup, options, worker_id=name)
                async with trio.open_nursery() as nursery:
                    await nursery.start(serving.serve)
                    if stop_after is None:
                        await trio.sleep_forever()
                    await trio.sleep(stop_after)
                    serving.stop()
                    await serving.stopped.wait()
        finally:
            await store.aclose()

    compiled = _spec().compile()
    fp = fingerprint(args)
    key = storage_key(compiled, None, call_key(compiled, args, ExecutionContext(), fp))
    async with open_client(redis_url) as raw, trio.open_nursery() as nursery:
        await raw.xgroup_create(keys.calls("charge"), keys.group, "$", mkstream=True)
        # A worker "A" that registered the tool, read the call, claimed its key,
        # charged, and was killed (it never answers).
        await raw.set(keys.worker("A"), '{"tools": {"charge": {}}}', px=60_000)
        now_ms = int((await raw.time()).timestamp() * 1000)
        await raw.zadd(keys.workers, {"A": now_ms + 60_000})
        async with toolvisor.open_remote(redis_url, namespace=namespace) as remote:
            pending = await remote.submit("charge", args, timeout=60)
            assert await raw.xreadgroup(keys.group, "A", {keys.calls("charge"): ">"}, count=1)
            dead = RedisStore(redis_url, prefix=keys.idem_prefix)
            assert (await dead.claim(key, fp, "A-owner", LEASE_S)).claimed
            await dead.aclose()
            charged.append("the dead worker")
            # B claims the dead worker's call (delivery 2), waits for A's claim on the
            # key to lapse, and is stopped meanwhile: it hands the call back.
            await worker(
                "B", WorkerOptions(namespace=namespace, claim_idle_s=0.5, grace_s=0.5), 2.5
            )
            # C reads the handed-back entry as Redis's first delivery of it.
            options = WorkerOptions(namespace=namespace, claim_idle_s=60)
            nursery.start_soon(worker, "C", options, None)
            with trio.fail_after(20):
                result = await pending.result()
        # The caller closed first (cancelling the nursery inside it would cut its own
        # clean-up): then the worker C.
        nursery.cancel_scope.cancel()
    assert isinstance(result.error, toolvisor.IdempotencyOutcomeUnknownError), result
    assert charged == ["the dead worker"]
