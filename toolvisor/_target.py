"""``MODULE:ATTR``: where the commands that serve or load-test a user's tools find them.

ATTR names either a list, tuple or dict (its values) of ``(spec, fn)`` pairs, or an async
function ``setup(sup)`` that spawns the tools itself (for tools that need a client or a
connection pool made first). :func:`load_target` imports and checks it without starting
anything, so a command fails before it opens a port or a pipe; :func:`spawn_target`
spawns the tools on a supervisor.
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

_SHAPE = (
    "a list, tuple or dict of (spec, fn) pairs, or an async function setup(sup) that "
    "spawns the tools"
)


class TargetError(ValueError):
    """``MODULE:ATTR`` does not name tools that can be served (the user's fault)."""


@attrs.frozen
class Target:
    """The tools ``MODULE:ATTR`` names, checked and ready to spawn.

    Attributes:
        text: ``MODULE:ATTR`` as given.
        pairs: the ``(spec, fn)`` pairs, empty when ``setup`` spawns the tools.
        setup: the async ``setup(sup)`` function, or None.
        module: the imported module (a worker reads its optional ``idempotency_store``).
    """

    text: str
    pairs: tuple[tuple[ToolSpec, Callable[..., Any]], ...] = ()
    setup: Callable[[Supervisor], Awaitable[object]] | None = None
    module: ModuleType | None = attrs.field(default=None, eq=False, repr=False)


def _looks_like_path(module: str) -> bool:
    return "/" in module or "\\" in module or module.endswith(".py") or module.startswith(".")


def import_attr(text: str) -> Any:
    """Import ``MODULE:ATTR`` (``ATTR`` may be dotted) and return the attribute.

    The user's current directory is importable, as under ``python -m``. Raises
    ``TargetError`` with a message that says what to type instead: for a path given where
    a module name belongs (``tools/pay.py:X`` -> ``tools.pay:X``), a module that is not
    there or fails to import, or a missing attribute.
    """
    # The last colon: an attribute never holds one, a Windows path's drive letter does.
    module_name, sep, attr = text.rpartition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"expected MODULE:ATTR (e.g. myapp.tools:TOOLS), got {text!r}")
    if _looks_like_path(module_name):
        dotted = module_name.removesuffix(".py").strip("./\\").replace("/", ".")
        raise TargetError(
            f"give a module name, not a path: {module_name!r} (e.g. {dotted}:{attr}, run "
            "from the directory that holds it)"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the user's own modules
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise TargetError(
                f"cannot import module {module_name!r}: no such module (is the current "
                "directory the one that holds it?)"
            ) from None
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
    return value


def _pair(text: str, index: object, item: object) -> tuple[ToolSpec, Callable[..., Any]]:
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise TargetError(
            f"{text}[{index!r}] is a {type(item).__name__}, not a (spec, fn) pair; {text} "
            f"must be {_SHAPE}"
        )
    spec, fn = item
    if not isinstance(spec, ToolSpec):
        raise TargetError(f"{text}[{index!r}][0] is a {type(spec).__name__}, not a ToolSpec")
    if not inspect.iscoroutinefunction(fn) and not inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (an async callable object is fine too)
    ):
        raise TargetError(
            f"{text}[{index!r}][1] (tool {spec.tool_name!r}) is not an async function"
        )
    return spec, fn


def load_target(text: str) -> Target:
    """Import ``MODULE:ATTR`` and check that it names tools.

    Raises:
        TargetError: a path instead of a module name, a module that does not import, a
            missing attribute, or a value of another shape (the message says which).
    """
    value = import_attr(text)
    module = sys.modules.get(text.rpartition(":")[0])
    if isinstance(value, Mapping):
        items: list[tuple[object, object]] = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    elif inspect.iscoroutinefunction(value):
        try:
            inspect.signature(value).bind(object())
        except TypeError:
            raise TargetError(
                f"{text} is an async function but does not take one argument: it must be "
                "setup(sup), which spawns the tools on sup"
            ) from None
        return Target(text, setup=value, module=module)
    else:
        raise TargetError(f"{text} is a {type(value).__name__}; it must be {_SHAPE}")
    pairs = tuple(_pair(text, index, item) for index, item in items)
    if not pairs:
        raise TargetError(f"{text} is empty: there is no tool to serve")
    names = [spec.tool_name for spec, _ in pairs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TargetError(f"{text} names tool {dupes[0]!r} twice")
    return Target(text, pairs=pairs, module=module)


async def spawn_target(sup: Supervisor, target: Target) -> list[str]:
    """Spawn ``target``'s tools on ``sup``; return the names of the tools it added.

    Raises:
        TargetError: ``setup(sup)`` raised, or spawned no tool.
    """
    before = set(sup.tools())
    if target.setup is not None:
        try:
            await target.setup(sup)
        except Exception as exc:
            raise TargetError(f"{target.text}(sup) failed: {type(exc).__name__}: {exc}") from exc
    else:
        for spec, fn in target.pairs:
            await sup.spawn(spec, fn)
    added = sorted(set(sup.tools()) - before)
    if not added:
        raise TargetError(f"{target.text}(sup) spawned no tool")
    return added
