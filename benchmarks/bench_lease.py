"""What renewing idempotency leases costs a 1 s call, on SQLite and Redis: paired ratios.

Usage::

    python benchmarks/bench_lease.py [--rounds N] [--calls N] [--redis URL]

Each round runs ``--calls`` concurrent idempotent one-second calls (fresh keys) twice on
the same store, alternating the order: once with a lease longer than the call (30 s: no
renewal happens during it) and once with a 0.9 s lease, which the cache renews every
0.3 s, so each call's claim is renewed about three times. The paired ratio of a round is
renewed / not renewed wall time for the whole batch; the median over rounds is printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import toolvisor as tv


async def _one_second(args: dict[str, Any]) -> int:
    await trio.sleep(1.0)
    return int(args["i"])


def _spec(lease_s: float) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=f"lease-{lease_s}",
        tool_name="slow",
        parameters=[tv.IntegerParameter(name="i", required=True)],
        max_concurrency=1000,
    )
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    spec.idempotency.claim_ttl_s = lease_s
    return spec


async def _batch(store: tv.IdempotencyStore, lease_s: float, calls: int, offset: int) -> float:
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(_spec(lease_s), _one_second)
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(calls):
                nursery.start_soon(sup.execute, "slow", {"i": offset + i})
        return time.perf_counter() - start


async def _rounds(make_store: Any, rounds: int, calls: int) -> list[float]:
    ratios = []
    for r in range(rounds):
        store = make_store(r)
        try:
            order = [30.0, 0.9] if r % 2 == 0 else [0.9, 30.0]
            wall = {}
            for k, lease in enumerate(order):
                wall[lease] = await _batch(store, lease, calls, offset=(2 * r + k) * calls)
            ratios.append(wall[0.9] / wall[30.0])
        finally:
            await store.aclose()
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--redis", default=None, help="a Redis URL (default: SQLite only)")
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    stores: dict[str, Any] = {"SQLiteStore": lambda r: tv.SQLiteStore(tmp / f"lease-{r}.db")}
    if options.redis:
        stores["RedisStore"] = lambda r: tv.RedisStore(options.redis, namespace=f"lease{r}")
    for name, make in stores.items():
        ratios = trio.run(_rounds, make, options.rounds, options.calls)
        print(
            f"{name}: {options.calls} concurrent 1 s calls, renewed (0.9 s lease) / not "
            f"renewed (30 s): median {statistics.median(ratios):.4f} "
            f"(range {min(ratios):.4f}-{max(ratios):.4f}, {len(ratios)} rounds)"
        )


if __name__ == "__main__":
    main()
