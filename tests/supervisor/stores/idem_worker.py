"""A separate OS process that runs idempotent calls through a supervisor.

Usage: python idem_worker.py STORE TARGET MODE KEYS LOG [SEED]
  STORE: sqlite | redis;  TARGET: the SQLite path, or "URL|PREFIX" for Redis
  MODE: run  - execute KEYS keys (shuffled by SEED) concurrently; print results as JSON
        hang - claim key 0 with a 2 s claim and hang inside the tool (to be SIGKILLed)
  LOG: a file the tool appends "pid key" to each time its body runs
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

import trio

import toolvisor as tv


def make_store(kind: str, target: str) -> tv.IdempotencyStore:
    if kind == "sqlite":
        return tv.SQLiteStore(target)
    url, prefix = target.split("|")
    return tv.RedisStore(url, prefix=prefix)


async def main(kind: str, target: str, mode: str, keys: int, log: str, seed: int) -> None:
    store = make_store(kind, target)

    async def charge(args: dict[str, Any]) -> Any:
        with open(log, "a") as f:  # noqa: ASYNC230 - a tiny append, the evidence we need
            f.write(f"{os.getpid()} {args['k']}\n")
        if mode == "hang":
            print("running", flush=True)
            await trio.sleep_forever()
        await trio.sleep(0.01)
        return {"key": args["k"], "by": os.getpid()}

    spec = tv.FunctionToolSpec(
        id="charge-v1", tool_name="charge", parameters=[tv.IntegerParameter(name="k")]
    )
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    spec.idempotency.key_fields = ["k"]
    if mode == "hang":
        spec.idempotency.claim_ttl_s = 2.0
    try:
        async with tv.open_supervisor(idempotency_store=store) as sup:
            await sup.spawn(spec, charge)
            order = list(range(keys)) * 2
            random.Random(seed).shuffle(order)
            results: dict[int, Any] = {}

            async def one(k: int) -> None:
                results[k] = await sup.execute("charge", {"k": k})

            async with trio.open_nursery() as nursery:
                for k in order:
                    nursery.start_soon(one, k)
            stats = sup.stats("charge")
        print(json.dumps({"results": results, "cache_hits": stats.cache_hits}), flush=True)
    finally:
        await store.aclose()


if __name__ == "__main__":
    kind, target, mode, keys, log = sys.argv[1:6]
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    trio.run(main, kind, target, mode, int(keys), log, seed)
