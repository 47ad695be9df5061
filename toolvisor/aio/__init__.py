"""toolvisor for asyncio applications (FastAPI, LangGraph, PydanticAI, ...).

``toolvisor.aio.open_supervisor()`` runs the trio supervisor as a trio guest on the
running asyncio loop, in the same thread, and gives asyncio code the Supervisor API as
asyncio coroutines. Tool functions run as asyncio tasks by default (they are written for
the host loop); ``spawn(spec, fn, runs_on="trio")`` runs a trio-native one in the guest.
See docs/asyncio.md.
"""

from ._supervisor import EventStream as EventStream
from ._supervisor import PendingCall as PendingCall
from ._supervisor import RunsOn as RunsOn
from ._supervisor import Supervisor as Supervisor
from ._supervisor import ToolRef as ToolRef
from ._supervisor import open_supervisor as open_supervisor
from ._supervisor import run_trio as run_trio

__all__ = [
    "EventStream",
    "PendingCall",
    "RunsOn",
    "Supervisor",
    "ToolRef",
    "open_supervisor",
    "run_trio",
]
