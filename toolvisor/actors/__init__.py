"""Tool actors: the call, the inbox loop and its workers, and the shared attempt loop."""

from .actor import ActorKilled as ActorKilled
from .actor import ToolActor as ToolActor
from .call import Call as Call
from .call import CallState as CallState
from .pipeline import ToolRunner as ToolRunner
from .stats import ToolStats as ToolStats

__all__ = ["ActorKilled", "Call", "CallState", "ToolActor", "ToolRunner", "ToolStats"]
