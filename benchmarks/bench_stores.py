"""Median cost of the idempotency stores' hot-path operations, in one process.

Prints, for each store, the median microseconds of one ``claim`` + ``complete`` pair
(a first call of a key) and of one ``get`` (a repeated key), and for SQLite also the
same pair run directly on the trio thread, to show what the worker thread costs.

Redis is measured when reachable: at ``TOOLVISOR_REDIS_URL``, else on a throwaway
``redis-server`` started on a free port when the executable exists.

Usage: python benchmarks/bench_stores.py [--n N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import trio

from toolvisor._bench._redis import redis_server
from toolvisor.supervisor.stores import IdempotencyStore, MemoryStore, SQLiteStore

RESULT = '{"status": "ok", "id": 12345, "items": [1, 2, 3]}'


def median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000.0


async def bench(store: IdempotencyStore, n: int, tag: str) -> tuple[float, float]:
    pairs: list[int] = []
    gets: list[int] = []
    clock = time.perf_counter_ns
    for i in range(n):
        key = f"{tag}-{i}"
        t0 = clock()
        await store.claim(key, "fp", "owner", 30.0)
        await store.complete(key, "owner", 3600.0, RESULT)
        pairs.append(clock() - t0)
    for i in range(n):
        key = f"{tag}-{i}"
        t0 = clock()
        await store.get(key)
        gets.append(clock() - t0)
    return median_us(pairs), median_us(gets)


async def bench_sqlite_get_in_thread(store: SQLiteStore, n: int) -> float:
    """``get`` through the worker thread, as the writes go (what reads would cost there)."""
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        await store._run(store._get_sync, f"s-{i}", time.time())
        samples.append(time.perf_counter_ns() - t0)
    return median_us(samples)


def bench_sqlite_in_loop(store: SQLiteStore, n: int) -> float:
    """The same pair through the store's sync internals, on the calling thread."""
    samples = []
    from toolvisor.supervisor.stores import sqlite as mod

    live = threading.Event()  # never set: the caller never gives up here
    namespace = store.namespace
    for i in range(n):
        key = f"inloop-{i}"
        t0 = time.perf_counter_ns()
        now = time.time()
        store._claim_sync(live, key, "fp", "owner", now, now + 30.0)
        store._execute_sync(
            live, mod._COMPLETE, (now + 3600.0, RESULT, None, namespace, key, "owner", now)
        )
        samples.append(time.perf_counter_ns() - t0)
    return median_us(samples)


async def main(n: int) -> None:
    rows: list[tuple[str, float, float]] = []
    memory = MemoryStore()
    rows.append(("MemoryStore", *await bench(memory, n * 10, "m")))
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteStore(Path(tmp) / "bench.db")
        rows.append(("SQLiteStore", *await bench(sqlite, n, "s")))
        get_thread = await bench_sqlite_get_in_thread(sqlite, n)
        in_loop = bench_sqlite_in_loop(sqlite, n)
        rows.append(("SQLiteStore, all on the trio thread", in_loop, float("nan")))
        rows.append(("SQLiteStore, get via the worker thread", float("nan"), get_thread))
        await sqlite.aclose()
    with redis_server() as (url, _how):
        if url is None:
            print("Redis: skipped (no redis-server and no TOOLVISOR_REDIS_URL)")
        else:
            from toolvisor.supervisor.stores import RedisStore

            redis = RedisStore(url, prefix=f"bench:{time.time_ns()}:")
            await redis.get("warm-up")
            rows.append(("RedisStore (loopback)", *await bench(redis, n, "r")))
            await redis.aclose()
    print(f"{'store':<40} {'claim+complete µs':>18} {'get µs':>10}")
    for name, pair, get in rows:
        pair_text = "-" if pair != pair else f"{pair:.1f}"
        get_text = "-" if get != get else f"{get:.1f}"
        print(f"{name:<40} {pair_text:>18} {get_text:>10}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="operations per store")
    trio.run(main, parser.parse_args().n)
