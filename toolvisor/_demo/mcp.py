"""``toolvisor demo --mcp``: the demo's three tools served to an agent over MCP (stdio).

The same tools, back ends and policies as the live demo; the back ends' failure
patterns (a gateway outage, a slow API, a database failover) play out over the first
``duration`` seconds after the server starts, then the back ends stay healthy. Payments
are idempotent with results in the SQLite file, as in the live demo.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from ..supervisor import SQLiteStore, Supervisor, open_supervisor
from .backends import Database, PaymentGateway, SearchApi, Timeline
from .tools import Backends, build_tools

__all__ = ["serve_demo_mcp", "spawn_demo_tools"]


async def spawn_demo_tools(sup: Supervisor, *, seed: int, duration: float) -> list[str]:
    """Spawn the demo's tools on ``sup``, their failure patterns starting now."""
    timeline = Timeline(trio.current_time(), duration)
    backends = Backends(
        gateway=PaymentGateway(timeline, seed),
        api=SearchApi(timeline, seed),
        db=Database(timeline, seed),
    )
    names = []
    for tool in build_tools(backends, seed):
        await sup.spawn(tool.spec, tool.fn)
        names.append(tool.spec.tool_name)
    return names


def serve_demo_mcp(*, db: Path, seed: int, duration: float) -> None:
    """Serve the demo's tools over stdio until the client closes the connection."""
    from ..mcp import serve_stdio

    async def main() -> None:
        store = SQLiteStore(str(db))
        try:
            async with open_supervisor(idempotency_store=store, grace_s=1.0) as sup:
                names = await spawn_demo_tools(sup, seed=seed, duration=duration)
                print(
                    f"toolvisor demo: serving {', '.join(names)} over MCP (stdio)",
                    file=sys.stderr,
                )
                await serve_stdio(sup, name="toolvisor-demo")
        finally:
            with trio.CancelScope(shield=True):
                await store.aclose()

    trio.run(main)
