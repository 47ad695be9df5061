"""A fallback: a call's failure or refusal replaced by a value the caller can use.

``FallbackPolicy(value=[])`` answers every call of its tool that would end with an
error matching ``on`` with ``[]`` instead; ``FallbackPolicy(fn=from_cache)`` answers it
with ``from_cache(error)``. It is the outermost strategy: it sees the call's one end,
after every other strategy had its say (the retries ran out, the budget refused one, the
breaker or the rate limit refused the call, the bulkhead was full, the deadline passed,
the actor crashed), so it replaces exactly what the caller would have seen.

What it never replaces:

* a ``ValidationError`` (bad arguments are the caller's bug, and they are found before a
  call exists);
* a cancellation (``trio.Cancelled``, ``KeyboardInterrupt``: ``on`` takes subclasses of
  ``Exception`` only, and a cancelled call has no reply to replace).

A call its fallback answered counts as a success (``ToolStats.successes`` and
``ToolStats.fallbacks``), its ``ToolResult`` has ``ok=True, fallback=True``, and
``execute`` returns the value. The tool's own outcome still decides everything else: the
breaker recorded the failure, and an idempotent call's key follows what really happened
(released after a clean failure, recorded unknown after a cut attempt; never stored as
done with the fallback's value).

``fn`` is a plain function, ``fn(error) -> value``, not a coroutine function: it runs at
the call's end, in whichever task ends the call (a worker of the tool, or the caller's
task), so it must be quick and must not block. For a fallback that needs I/O, catch the
error around ``execute`` instead. If ``fn`` raises, the call keeps its own end (its error,
with a note naming ``fn``'s exception).

Pure: nothing here runs the tool; :meth:`FallbackPolicy.replaces` and
:meth:`FallbackPolicy.value_for` are what the call's end asks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final

import attrs

from ..errors import ValidationError

__all__ = ["FallbackPolicy"]


class _Unset:
    """The ``value`` of a fallback that has ``fn`` instead (``None`` is a valid value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()


def _convert_on(value: object) -> object:
    if isinstance(value, type):
        return (value,)
    if isinstance(value, list | set | frozenset):
        return tuple(value)
    return value


def _validate_on(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not value:
        raise TypeError(
            f"FallbackPolicy: {attribute.name!r} must be a non-empty tuple of exception "
            f"classes, got {value!r}"
        )
    for kind in value:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(
                f"FallbackPolicy: {attribute.name!r} must hold exception classes, got {kind!r}"
            )
        if not issubclass(kind, Exception):
            raise TypeError(
                f"FallbackPolicy: {attribute.name!r} holds {kind.__name__}, which is not an "
                "Exception: a fallback never replaces a cancellation or an interrupt"
            )
        if issubclass(kind, ValidationError):
            raise TypeError(
                f"FallbackPolicy: {attribute.name!r} holds {kind.__name__}: a fallback never "
                "hides bad arguments (they are the caller's bug); fix the call instead"
            )


def _validate_fn(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not callable(value):
        raise TypeError(
            f"FallbackPolicy: {attribute.name!r} must be a function fn(error) -> value, "
            f"got {value!r}"
        )
    if inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(
        getattr(value, "__call__", None)  # noqa: B004 - async callable objects count too
    ):
        raise TypeError(
            f"FallbackPolicy: {attribute.name!r} must be a plain function fn(error) -> value, "
            f"got the coroutine function {value!r}: it runs at the call's end, which does "
            "not wait; catch the error around execute() for a fallback that needs I/O"
        )


@attrs.frozen(kw_only=True)
class FallbackPolicy:
    """Replace a call's failure or refusal matching ``on`` by a value; see the module.

    Args:
        value: what the call returns instead of raising (any value, ``None`` included).
        fn: ``fn(error) -> value``, a plain function called with the error it replaces.
            Give exactly one of ``value`` and ``fn``.
        on: the exception classes replaced (subclasses of ``Exception``; a single class
            is taken as a 1-tuple). ``ValidationError`` is never replaced.

    Example::

        spec.fallback = FallbackPolicy(value={"results": [], "stale": True})
        spec.fallback = FallbackPolicy(fn=lambda error: cache.get("catalog"),
                                       on=(CircuitOpenError, ToolTimeoutError))

    Raises:
        TypeError: neither or both of ``value`` and ``fn``; ``fn`` not a plain function;
            ``on`` not a non-empty tuple of ``Exception`` classes (naming the field).
    """

    value: Any = attrs.field(default=_UNSET)
    fn: Callable[[Exception], Any] | None = attrs.field(default=None, validator=_validate_fn)
    on: tuple[type[Exception], ...] = attrs.field(
        default=(Exception,),
        converter=_convert_on,
        validator=_validate_on,
    )

    def __attrs_post_init__(self) -> None:
        has_value = self.value is not _UNSET
        if has_value == (self.fn is not None):
            raise TypeError(
                "FallbackPolicy: give exactly one of 'value' (what the call returns instead) "
                "and 'fn' (fn(error) -> value), got " + ("both" if has_value else "neither")
            )

    def replaces(self, error: BaseException) -> bool:
        """Whether a call ending with ``error`` gets this fallback's value instead."""
        return isinstance(error, self.on) and not isinstance(error, ValidationError)

    def value_for(self, error: Exception) -> Any:
        """The value that replaces ``error``: ``value``, or ``fn(error)``.

        Raises:
            Exception: whatever ``fn`` raises (the call then keeps its own end).
        """
        fn = self.fn
        if fn is None:
            return self.value
        return fn(error)
