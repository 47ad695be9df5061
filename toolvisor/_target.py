"""``MODULE:ATTR``: the tools a command serves (``toolvisor worker``, ``toolvisor mcp``).

``ATTR`` names, inside the importable ``MODULE``, either

- a list or tuple of ``(spec, fn)`` pairs, or a dict whose values are such pairs, or
- an async function ``setup(sup)`` that spawns the tools on the supervisor it is given
  (and may do anything else a supervisor's owner does: subscribe to events, ...).

The current directory is importable, as with ``python -m``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs

from .spec import ToolSpec

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["Target", "TargetError", "load_target", "spawn_target"]

_EXAMPLE = "e.g. myapp.tools:TOOLS"


class TargetError(ValueError):
    """``MODULE:ATTR`` does not name tools toolvisor can serve (the user's fault)."""


@attrs.frozen
class Target:
    """What ``MODULE:ATTR`` names, once imported.

    Attributes:
        text: the ``MODULE:ATTR`` text it was loaded from.
        module: the imported module.
        pairs: the ``(spec, fn)`` pairs to spawn (empty when ``setup`` is given).
        setup: the async ``setup(sup)`` function, or None.
    """

    text: str
    module: ModuleType = attrs.field(repr=False)
    pairs: tuple[tuple[ToolSpec, Callable[..., Any]], ...] = ()
    setup: Callable[[Supervisor], Awaitable[object]] | None = None


def load_target(text: str) -> Target:
    """Import ``MODULE`` and read ``ATTR``; check it names tools.

    Raises:
        TargetError: malformed text, a module that does not import, a missing attribute,
            or an attribute that is neither pairs nor an async setup function.
    """
    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"expected MODULE:ATTR ({_EXAMPLE}), got {text!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the user's own modules
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise TargetError(f"cannot import module {module_name!r}: no such module") from None
        raise TargetError(f"importing module {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise TargetError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {attr!r}") from None
    if inspect.iscoroutinefunction(value):
        return Target(text=text, module=module, setup=value)
    items: list[Any]
    if isinstance(value, Mapping):
        items = list(value.values())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise TargetError(
            f"{text} is a {type(value).__name__}; give a list/tuple/dict of (spec, fn) pairs "
            "or an async function setup(sup)"
        )
    pairs: list[tuple[ToolSpec, Callable[..., Any]]] = []
    for i, item in enumerate(items):
        if not (
            isinstance(item, tuple | list)
            and len(item) == 2
            and isinstance(item[0], ToolSpec)
            and callable(item[1])
        ):
            raise TargetError(
                f"{text}: item {i} is {item!r:.80}, not a (ToolSpec, async function) pair"
            )
        if not inspect.iscoroutinefunction(item[1]):
            raise TargetError(
                f"{text}: the function of tool {item[0].tool_name!r} is not an async function"
            )
        pairs.append((item[0], item[1]))
    if not pairs:
        raise TargetError(f"{text} holds no tools")
    return Target(text=text, module=module, pairs=tuple(pairs))


async def spawn_target(sup: Supervisor, target: Target) -> list[str]:
    """Spawn ``target``'s tools on ``sup``; return the names of the tools it added.

    Raises:
        TargetError: the setup function failed or spawned nothing.
    """
    before = set(sup.tools())
    if target.setup is not None:
        try:
            await target.setup(sup)
        except Exception as exc:
            raise TargetError(f"setup {target.text} failed: {type(exc).__name__}: {exc}") from exc
    else:
        for spec, fn in target.pairs:
            await sup.spawn(spec, fn)
    added = sorted(set(sup.tools()) - before)
    if not added:
        raise TargetError(f"setup {target.text} spawned no tools")
    return added
