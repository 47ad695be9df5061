"""Helpers shared by the stores (private)."""

from __future__ import annotations

import math

__all__ = ["check_ttl"]


def check_ttl(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, or raise ValueError naming ``name`` (the caller's fault).

    A TTL must be finite and positive; ``allow_zero`` also accepts 0 (a done record that
    expires at once, which is the same as releasing the key).
    """
    ttl = float(value)
    if not math.isfinite(ttl) or ttl < 0.0 or (ttl == 0.0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return ttl
