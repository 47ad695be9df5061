"""JSON encoders built once: the idempotency path encodes on every first execution.

``json.JSONEncoder.encode`` builds a new C encoder object on every call; building it
once halves the cost of encoding a small dict. The output is the standard library's,
byte for byte. Without the circular-reference markers, a value that contains itself
raises ``RecursionError`` (callers treat it like any value that is not JSON).
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

__all__ = ["canonical_dumps", "compact_dumps"]


def _refuse(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder(*, sort_keys: bool) -> Any:
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
    #  skipkeys, allow_nan)
    return c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", sort_keys, False, False)


if c_make_encoder is not None:
    _CANONICAL = _encoder(sort_keys=True)
    _COMPACT = _encoder(sort_keys=False)

    def canonical_dumps(value: object) -> str:
        """Sorted keys, no spaces, non-ASCII as is, NaN and infinities refused (ValueError)."""
        return "".join(_CANONICAL(value, 0))

    def compact_dumps(value: object) -> str:
        """No spaces, non-ASCII as is, NaN and infinities refused (ValueError)."""
        return "".join(_COMPACT(value, 0))

else:  # an interpreter without json's C accelerator: the same output, slower

    def canonical_dumps(value: object) -> str:
        """Sorted keys, no spaces, non-ASCII as is, NaN and infinities refused (ValueError)."""
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )

    def compact_dumps(value: object) -> str:
        """No spaces, non-ASCII as is, NaN and infinities refused (ValueError)."""
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
