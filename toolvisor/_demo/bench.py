"""The demo's payment tool as a ``toolvisor bench --tool`` target.

``toolvisor bench --tool toolvisor._demo.bench:payment --args '{...}'`` load-tests the
demo's ``process_payment`` (idempotent, Standard breaker, exponential retry, 1 s per
attempt) against its simulated card gateway: 20-80 ms per charge, 6 % connection resets,
and a 503 outage from 30 % to 45 % of each level's first 10 seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .backends import Database, PaymentGateway, SearchApi, Timeline
from .tools import Backends, build_tools

if TYPE_CHECKING:
    from ..supervisor import Supervisor

__all__ = ["payment"]

#: The gateway's phases are fractions of this many seconds from the spawn.
TIMELINE_S = 10.0


async def payment(sup: Supervisor) -> None:
    """Spawn the demo's payment tool on ``sup`` against a fresh simulated gateway."""
    timeline = Timeline(trio.current_time(), TIMELINE_S)
    backends = Backends(
        gateway=PaymentGateway(timeline, seed=7),
        api=SearchApi(timeline, seed=7),
        db=Database(timeline, seed=7),
    )
    tool = build_tools(backends, seed=7)[0]
    await sup.spawn(tool.spec, tool.fn)
