"""Section 4: the idempotency cache's hit path and first-execution path vs a plain call.

All contenders call ``Supervisor.execute()`` on a tool that returns at once, with the
policies of section 1, through a one-line wrapper (the same for all):

- ``plain``: the tool without idempotency;
- ``<store>_hit``: idempotent, the same arguments every call (executed once during
  set-up), so every timed call is served from the store;
- ``<store>_first``: idempotent, a fresh key every call (the call index is in the
  arguments): claim, execute, complete.

Stores: MemoryStore, SQLiteStore (a fresh file in a temporary directory per round) and
RedisStore (when a server is reachable).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .. import MemoryStore, SQLiteStore, open_supervisor
from ..supervisor import IdempotencyStore
from ._config import Config, Target, make_target
from ._contenders import STANDARD, TOOL, instant, tool_spec
from ._harness import Args, Call, Contender, Tick, measure_series
from ._redis import redis_server

__all__ = ["run_idempotency", "steps_idempotency"]

_HIT = {"i": 0}
StoreFactory = Callable[[], IdempotencyStore]


def _contender(name: str, label: str, store: StoreFactory, mode: str) -> Contender:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Call]:
        made = store()
        try:
            async with open_supervisor(idempotency_store=made) as sup:
                await sup.spawn(tool_spec(STANDARD, idempotent=mode != "plain"), instant)
                execute = sup.execute
                fixed = _HIT if mode == "hit" else None
                if fixed is not None:
                    await execute(TOOL, fixed)

                async def call(args: Args) -> object:
                    return await execute(TOOL, fixed or args)

                yield call
        finally:
            await made.aclose()

    return Contender(name, label, "trio", setup)


def _stores(tmp: Path, redis_url: str | None) -> list[tuple[str, str, StoreFactory]]:
    counter = [0]

    def sqlite() -> IdempotencyStore:
        counter[0] += 1
        return SQLiteStore(tmp / f"bench-{counter[0]}.db")

    stores: list[tuple[str, str, StoreFactory]] = [
        ("memory", "MemoryStore", MemoryStore),
        ("sqlite", "SQLiteStore", sqlite),
    ]
    if redis_url is not None:
        from .. import RedisStore

        def redis() -> IdempotencyStore:
            return RedisStore(redis_url, prefix=f"toolvisor-bench:{uuid.uuid4().hex}:")

        stores.append(("redis", "RedisStore", redis))
    return stores


def _count_contenders() -> int:
    redis = bool(os.environ.get("TOOLVISOR_REDIS_URL")) or shutil.which("redis-server")
    return 1 + 2 * (3 if redis else 2)


def steps_idempotency(cfg: Config) -> int:
    return len(cfg.idem_concurrency) * _count_contenders() * (cfg.rounds + 1)


def run_idempotency(
    cfg: Config, tick: Tick, _done: dict[str, Any]
) -> tuple[dict[str, Any], list[Target]]:
    """Plain vs hit vs first execution, for each store, alternated round by round."""
    with (
        tempfile.TemporaryDirectory(prefix="toolvisor-bench-") as tmp,
        redis_server() as (
            url,
            redis_how,
        ),
    ):
        contenders = [_contender("plain", "plain call (no idempotency)", MemoryStore, "plain")]
        for key, label, factory in _stores(Path(tmp), url):
            contenders.append(_contender(f"{key}_hit", f"{label} hit", factory, "hit"))
            contenders.append(_contender(f"{key}_first", f"{label} first", factory, "first"))
        series = [
            measure_series(
                contenders, c, rounds=cfg.rounds, round_s=cfg.round_s, probe=cfg.probe, tick=tick
            )
            for c in cfg.idem_concurrency
        ]
    for s in series:
        # Cost of a call relative to a plain call: the inverse of the throughput ratio.
        s["cost_vs_plain"] = {
            c.name: 1.0 / s["ratios"][f"{c.name}/plain"]
            for c in contenders
            if c.name != "plain" and s["ratios"][f"{c.name}/plain"] > 0
        }
    section = {
        "title": "Idempotency: hit path and first execution vs a plain call",
        "policies": STANDARD.description,
        "notes": [
            "every contender calls Supervisor.execute() through the same one-line wrapper",
            "hit: the same arguments every call (executed once in set-up); first: a fresh "
            "key every call (the call index is in the arguments)",
            "idempotency.persist_result=True so the named store is used; SQLite: a fresh "
            "database file per round in a temporary directory",
            f"Redis: {redis_how}",
            '"cost vs plain call": time per call relative to a plain call (1 / throughput ratio)',
        ],
        "redis": redis_how,
        "contenders": {c.name: c.label for c in contenders},
        "series": series,
    }
    targets: list[Target] = []
    for s in series:
        c = s["concurrency"]
        callers = f"{c} caller{'s' * (c > 1)}"
        targets.append(
            make_target(
                f"idempotency_hit_c{c}",
                "idempotency",
                f"MemoryStore hit path >= 1.0x plain-call throughput ({callers})",
                s["ratios"]["memory_hit/plain"],
                ">=",
                1.0,
            )
        )
        targets.append(
            make_target(
                f"idempotency_first_c{c}",
                "idempotency",
                f"MemoryStore first execution costs <= 2x a plain call ({callers})",
                s["cost_vs_plain"].get("memory_first", float("nan")),
                "<=",
                2.0,
            )
        )
    return section, targets
