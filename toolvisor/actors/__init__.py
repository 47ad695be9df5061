"""Tool actors: the inbox loop, its workers, the message types and the shared pipeline."""

from .actor import ActorKilled as ActorKilled
from .actor import ToolActor as ToolActor
from .messages import Execute as Execute
from .messages import ReplySlot as ReplySlot
from .pipeline import ToolRunner as ToolRunner
from .stats import ToolStats as ToolStats

__all__ = ["ActorKilled", "Execute", "ReplySlot", "ToolActor", "ToolRunner", "ToolStats"]
