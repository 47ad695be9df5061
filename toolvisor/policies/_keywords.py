"""Clear errors for a misspelt keyword: which keyword the user most likely meant.

The policies take keyword arguments named as in their docstrings and nothing else (no
aliases: one name per setting keeps code and docs greppable). A keyword the class does
not take raises ``TypeError`` naming the right one: ``FixedRetryPolicy(delay=2)`` says
"did you mean 'delay_seconds'?".
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["suggest_keywords"]

C = TypeVar("C", bound=type)

#: Names users reach for from other libraries, and the keyword toolvisor uses.
_SYNONYMS = {
    "delay": "delay_seconds",
    "wait": "delay_seconds",
    "attempts": "max_attempts",
    "retries": "max_attempts",
    "max_retries": "max_attempts",
    "tries": "max_attempts",
    "threshold": "failure_threshold",
    "fail_max": "failure_threshold",
    "timeout": "recovery_timeout",
    "reset_timeout": "recovery_timeout",
    "recovery_timeout_s": "recovery_timeout",
    "initial_delay": "base_delay",
    "backoff": "multiplier",
    "factor": "multiplier",
}

_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def suggest_keywords(cls: C) -> C:
    """Make ``cls(...)`` with an unknown keyword raise a TypeError that suggests one."""
    names = [a.alias for a in attrs.fields(cls) if a.init]
    init: Callable[..., None] = cls.__init__  # type: ignore[misc]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        try:
            init(self, *args, **kwargs)
        except TypeError as exc:
            found = _UNEXPECTED.search(str(exc))
            if found is None or found.group(1) in names:
                raise
            raise TypeError(_message(cls.__name__, found.group(1), names)) from None

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def _message(class_name: str, given: str, names: list[str]) -> str:
    guess = _SYNONYMS.get(given)
    if guess not in names:
        close = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
        guess = close[0] if close else None
    hint = f"; did you mean {guess!r}?" if guess else ""
    return (
        f"{class_name}() got an unexpected keyword argument {given!r}{hint} "
        f"(it takes: {', '.join(names)})"
    )
