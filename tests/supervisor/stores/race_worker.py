"""One contender of test_multiprocess: claims keys in a store, prints what it won.

Usage: python race_worker.py KIND TARGET PREFIX TAG N_KEYS

It prints ``ready`` once connected, then starts when a line arrives on stdin.

Worker ``p1`` claims the keys in order, ``p2`` in reverse order, so the two meet and
contend in the middle whatever their start-up skew.
"""

from __future__ import annotations

import json
import sys

import trio

from toolvisor.supervisor.stores import IdempotencyStore, RedisStore, SQLiteStore


async def main(kind: str, target: str, prefix: str, tag: str, n: int) -> None:
    store: IdempotencyStore
    if kind == "sqlite":
        store = SQLiteStore(target, busy_timeout_s=30.0)
    else:
        store = RedisStore(target, prefix=prefix)
    await store.get("warm-up")  # connect and create the schema before the race
    print("ready", flush=True)
    sys.stdin.readline()  # blocks the loop on purpose: nothing else runs here
    order = range(n) if tag == "p1" else range(n - 1, -1, -1)
    results: list[list[object]] = [[] for _ in range(n)]
    for i in order:
        outcome = await store.claim(f"key-{i}", "fp", f"{tag}-{i}", 60.0)
        results[i] = [outcome.claimed, outcome.record.owner]
    await store.aclose()
    print(json.dumps(results))


if __name__ == "__main__":
    kind, target, prefix, tag, n = sys.argv[1:]
    trio.run(main, kind, target, prefix, tag, int(n))
