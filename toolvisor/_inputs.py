"""Checks of what a caller hands to the public entry points, before anything runs.

Every entry point (``execute``, ``submit``, ``execute_many``, the executor, ``spawn``)
answers bad input with a documented error that names the parameter: a ``TypeError`` for
the wrong kind of value, a ``ValueError`` for a value of the right kind out of range.
Without these checks a list as a tool name surfaces as ``unhashable type: 'list'``, a
context that is not an :class:`~toolvisor.ExecutionContext` as an ``AttributeError`` deep
in the idempotency path, and ``timeout=10**400`` as an ``OverflowError``.

:class:`InputLimits` bounds the arguments themselves (nesting depth, size, string
length); the argument validator applies them before the JSON Schema, so a hostile
payload is refused in microseconds instead of exhausting the stack or blocking the
event loop.
"""

from __future__ import annotations

import math

from ._validation import DEFAULT_LIMITS, SURROGATE, InputLimits
from .errors import shown
from .spec import ExecutionContext

__all__ = [
    "DEFAULT_LIMITS",
    "InputLimits",
    "check_context",
    "check_timeout",
    "check_tool_name",
]


def _check_key(name: str, value: object, limits: InputLimits) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__} {shown(value)}")
    if len(value) > limits.max_key_length:
        raise ValueError(
            f"{name} is {len(value):,} characters long; the limit is "
            f"{limits.max_key_length:,} (InputLimits.max_key_length)"
        )
    if not value.isascii() and SURROGATE.search(value):
        raise ValueError(
            f"{name} must be valid Unicode: it holds a lone surrogate ({shown(value)})"
        )


def check_context(ctx: object, limits: InputLimits = DEFAULT_LIMITS) -> ExecutionContext:
    """The call's context: ``ctx`` itself, or a default one for None.

    Raises:
        TypeError: ``ctx`` is not an ExecutionContext (or None), or its ``tenant_id`` or
            ``idempotency_key`` is not a str (or None).
        ValueError: ``tenant_id`` or ``idempotency_key`` is longer than
            ``limits.max_key_length`` or holds a lone surrogate.
    """
    if ctx is None:
        return _NO_CONTEXT
    if not isinstance(ctx, ExecutionContext):
        raise TypeError(
            f"ctx must be a toolvisor.ExecutionContext or None, got {type(ctx).__name__} "
            f"{shown(ctx)}"
        )
    _check_key("ctx.tenant_id", ctx.tenant_id, limits)
    _check_key("ctx.idempotency_key", ctx.idempotency_key, limits)
    delivery = ctx.delivery
    if type(delivery) is not int or delivery < 1:
        raise ValueError(f"ctx.delivery must be an int >= 1, got {shown(delivery)}")
    return ctx


_NO_CONTEXT = ExecutionContext()


def check_timeout(timeout: object) -> float | None:
    """The call's overall deadline in seconds as a float, or None for no deadline.

    ``math.inf`` is accepted and means no deadline too (returned as ``inf``).

    Raises:
        TypeError: ``timeout`` is a bool or not a real number.
        ValueError: ``timeout`` is NaN, zero or negative, or an integer too large for a
            float (``10**400``).
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"timeout must be a number of seconds or None, got {type(timeout).__name__} "
            f"{shown(timeout)}"
        )
    try:
        seconds = float(timeout)
    except OverflowError:
        raise ValueError(
            f"timeout={shown(timeout)} is too large for a number of seconds "
            "(use None for no deadline)"
        ) from None
    if math.isnan(seconds):
        raise ValueError("timeout must be a number of seconds, got NaN")
    if seconds <= 0.0:
        raise ValueError(f"timeout must be > 0 seconds, got {shown(timeout)}")
    return seconds


def check_tool_name(name: object) -> str:
    """``name`` itself, once it is known to be a str.

    Raises:
        TypeError: ``name`` is not a str (a list, None, bytes...).
    """
    if not isinstance(name, str):
        raise TypeError(
            f"tool must be a tool's name (a str), got {type(name).__name__} {shown(name)}"
        )
    return name
