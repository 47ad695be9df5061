"""The demo's tools in a ``toolvisor worker`` process (``toolvisor demo --workers N``).

``toolvisor worker toolvisor._demo.worker:setup`` serves the same three tools, with the
same policies, against back ends of its own: each worker's simulated gateway, API and
database play the same story (the seed's) on the same timeline as the demo's caller,
which writes the moment it starts to the file ``TOOLVISOR_DEMO_START_FILE`` names (seconds
since the epoch). The demo starts its workers with that environment; nothing else does.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from .backends import Database, PaymentGateway, SearchApi, Timeline
from .tools import Backends, build_tools

if TYPE_CHECKING:
    from ..supervisor import Supervisor

__all__ = ["START_FILE_ENV", "SharedStartTimeline", "setup"]

START_FILE_ENV = "TOOLVISOR_DEMO_START_FILE"
SEED_ENV = "TOOLVISOR_DEMO_SEED"
DURATION_ENV = "TOOLVISOR_DEMO_DURATION"


@attrs.define
class SharedStartTimeline(Timeline):
    """A timeline whose start is the caller's, read from ``path`` on first use.

    The caller writes the file once every worker serves and before it sends the first
    call, so every call a worker runs finds it; the wall clock maps that start onto this
    process's trio clock (the workers run on the caller's host, with the caller's clock).
    Before the file exists the timeline stands before its start: every phase is
    ``"normal"``.
    """

    path: Path = Path()
    _known: bool = False

    def elapsed(self) -> float:
        if not self._known:
            try:
                start = float(self.path.read_text())
            except (OSError, ValueError):
                return -1.0
            self.t0 = trio.current_time() - (time.time() - start)
            self._known = True
        return super().elapsed()


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: this module is served by `toolvisor demo --workers`"
        )
    return value


async def setup(sup: Supervisor) -> None:
    """Spawn the demo's three tools on ``sup``, against this process's back ends."""
    seed = int(_env(SEED_ENV))
    duration = float(_env(DURATION_ENV))
    if not (math.isfinite(duration) and duration > 0):
        raise RuntimeError(f"{DURATION_ENV} must be seconds > 0, got {duration!r}")
    timeline = SharedStartTimeline(0.0, duration, path=Path(_env(START_FILE_ENV)))
    backends = Backends(
        gateway=PaymentGateway(timeline, seed),
        api=SearchApi(timeline, seed),
        db=Database(timeline, seed),
    )
    for tool in build_tools(backends, seed):
        await sup.spawn(tool.spec, tool.fn)
