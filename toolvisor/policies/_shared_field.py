"""The ``shared=`` field's check, one for every policy that takes a ``RedisShared``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["check_shared"]


def check_shared(prefix: str = "") -> Callable[[object, attrs.Attribute[Any], object], None]:
    """An attrs validator: the value is a ``RedisShared`` or None (``prefix`` starts the
    error message, e.g. ``"RateLimit: "``)."""

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        # Imported here: toolvisor.shared imports the policies it serves.
        from toolvisor.shared import RedisShared

        if value is not None and not isinstance(value, RedisShared):
            raise TypeError(
                f"{prefix}{attribute.name!r} must be a RedisShared or None, got {value!r}"
            )

    return check
