"""Helpers shared by the stores (private)."""

from __future__ import annotations

import math
import re

__all__ = ["DEFAULT_NAMESPACE", "check_namespace", "check_ttl"]

#: The namespace of a store built without one.
DEFAULT_NAMESPACE = "default"
_NAMESPACE_MAX = 128
# No ':' (Redis keys are built as prefix + namespace + ':' + key, and a namespace that
# could hold the separator could make two namespaces' keys meet), no spaces or control
# characters (namespaces show in logs and in keys an operator types).
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


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


def check_namespace(value: object) -> str:
    """Return ``value`` if it is a usable namespace, else raise (the caller's fault).

    A namespace is an application's name: 1 to 128 characters, letters, digits, ``_``,
    ``-`` and ``.``, starting with a letter or digit.
    """
    if not isinstance(value, str):
        raise TypeError(f"namespace must be a str, got {type(value).__name__}: {value!r}")
    if not value:
        raise ValueError("namespace must not be empty; name the application, e.g. 'billing'")
    if len(value) > _NAMESPACE_MAX:
        raise ValueError(
            f"namespace must be at most {_NAMESPACE_MAX} characters, got {len(value)}: "
            f"{value[:40]!r}..."
        )
    if _NAMESPACE_RE.fullmatch(value) is None:
        raise ValueError(
            f"namespace {value!r} may hold only letters, digits, '_', '-' and '.', "
            "and must start with a letter or digit"
        )
    return value
