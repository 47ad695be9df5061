"""JSON for the idempotency path: encoders built once, and a strict decoder.

``json.JSONEncoder.encode`` builds a new C encoder object on every call; building it
once halves the cost of encoding a small dict. The output is the standard library's,
byte for byte. Without the circular-reference markers, a value that contains itself
recurses until the stack's limit, as one nested too deeply does: both are a
``ValueError``, like any other value that is not JSON.

``compact_dumps`` (what results are stored as) also refuses lone surrogates, which no
store can keep. ``loads`` reads what a store holds as strictly as toolvisor writes it: ``NaN`` and
``Infinity`` (which ``json.loads`` accepts) and numbers that overflow to infinity are
refused, and text nested too deeply for the stack is a ``ValueError``, not a
``RecursionError``. ``load_stored`` turns any of these into ``IdempotencyStoreError``.
"""

from __future__ import annotations

import json
import math
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from ._validation import SURROGATE
from .errors import IdempotencyStoreError, shown

__all__ = ["canonical_dumps", "compact_dumps", "load_stored", "loads"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed: numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{shown(text, 40)} is not allowed: numbers must be finite")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def loads(text: str) -> Any:
    """``json.loads`` that refuses what toolvisor never writes.

    Raises:
        ValueError: ``text`` is not JSON, holds ``NaN``, ``Infinity``, ``-Infinity`` or a
            number too large for a float, or nests too deeply to read (past the
            interpreter's recursion limit, about 1,000 levels).
        TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"JSON text must be a str, got {type(text).__name__}")
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError("JSON text nests too deeply to read") from None


def load_stored(text: str, *, store: str, key: str) -> Any:
    """The result stored under ``key``, read with :func:`loads`.

    Raises:
        IdempotencyStoreError: the stored text is not strict JSON (a tampered or
            corrupted store); the call was not executed.
    """
    try:
        return loads(text)
    except (ValueError, TypeError) as exc:
        raise IdempotencyStoreError(
            store, f"stored result of key {shown(key)} cannot be read ({exc})"
        ) from exc


def _valid_unicode(text: str) -> str:
    """``text``, unless it holds a lone surrogate: no store can keep one (SQLite and Redis
    take UTF-8), so a result holding one is refused here, before it is stored."""
    if not text.isascii() and SURROGATE.search(text):
        raise ValueError(
            "a string holds a lone surrogate: not valid Unicode (UTF-8 cannot carry it)"
        )
    return text


def _refuse(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder(*, sort_keys: bool) -> Any:
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
    #  skipkeys, allow_nan)
    return c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", sort_keys, False, False)


_TOO_DEEP = "nested too deep (or holding itself) to write as JSON"

if c_make_encoder is not None:
    _CANONICAL = _encoder(sort_keys=True)
    _COMPACT = _encoder(sort_keys=False)

    def _canonical(value: object) -> str:
        return "".join(_CANONICAL(value, 0))

    def _compact(value: object) -> str:
        return "".join(_COMPACT(value, 0))

else:  # an interpreter without json's C accelerator: the same output, slower

    def _canonical(value: object) -> str:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )

    def _compact(value: object) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_dumps(value: object) -> str:
    """Sorted keys, no spaces, non-ASCII as is; NaN, infinities and values nested past
    the stack refused (ValueError), and values JSON has no form for (TypeError)."""
    try:
        return _canonical(value)
    except RecursionError:  # raised before the stack ran out, caught after it unwound
        raise ValueError(_TOO_DEEP) from None


def compact_dumps(value: object) -> str:
    """No spaces, non-ASCII as is; NaN, infinities, lone surrogates and values nested
    past the stack refused (ValueError), and values JSON has no form for (TypeError)."""
    try:
        text = _compact(value)
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None
    return _valid_unicode(text)
