"""Compiled argument validation: a JSON Schema judged by jsonschema-rs.

The fast path is one ``is_valid`` call into compiled Rust code. Only when that fails do we
spend time on explaining: a walk that finds values JSON cannot hold (bytes, sets, NaN,
infinities, non-string keys), then jsonschema-rs's own error list, rewritten so that
every problem names its path and says what to do.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from typing import Any

import jsonschema_rs

from .errors import FieldError, ValidationError

__all__ = ["ArgumentValidator"]

_MAX_REPORTED = 50


def _pointer(parts: list[str | int] | tuple[str | int, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _describe(value: object) -> str:
    return type(value).__name__


def _has_surrogate(s: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in s)


def _non_json_problems(
    value: object, path: list[str | int], out: list[FieldError], bad_paths: set[str]
) -> object:
    """Collect values JSON cannot carry; return a copy safe to hand to jsonschema-rs."""
    if isinstance(value, str):
        if not value.isascii() and _has_surrogate(value):
            where = _pointer(path)
            out.append(FieldError(where, "strings must be valid Unicode (lone surrogate)"))
            bad_paths.add(where)
            return None
        return value
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        where = _pointer(path)
        out.append(FieldError(where, f"{value!r} is not allowed: numbers must be finite"))
        bad_paths.add(where)
        return None
    if isinstance(value, Mapping):
        clean: dict[str, object] = {}
        for k, v in value.items():
            if not isinstance(k, str) or (not k.isascii() and _has_surrogate(k)):
                where = _pointer(path)
                got = "a lone surrogate" if isinstance(k, str) else _describe(k)
                out.append(FieldError(where, f"object keys must be valid strings, got {got} {k!r}"))
                bad_paths.add(where)
                continue
            clean[k] = _non_json_problems(v, [*path, k], out, bad_paths)
        return clean
    if isinstance(value, list | tuple):
        return [_non_json_problems(v, [*path, i], out, bad_paths) for i, v in enumerate(value)]
    where = _pointer(path)
    out.append(
        FieldError(
            where,
            f"a {_describe(value)} is not a JSON value (use str, int, float, bool, None, "
            "list or dict)",
        )
    )
    bad_paths.add(where)
    return None


def _closed(schema: object) -> bool:
    """Whether jsonschema-rs type-checks every value the schema admits.

    Where a schema leaves values open (an array without ``items``, an object with
    ``additionalProperties``), jsonschema-rs never looks at them, so NaN, bytes or sets
    there would pass ``is_valid``: such schemas need the JSON walk on the fast path too.
    """
    if not isinstance(schema, Mapping) or "type" not in schema:
        return False
    kinds = schema["type"]
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if "array" in kinds and not _closed(schema.get("items")):
        return False
    if "object" not in kinds:
        return True
    return schema.get("additionalProperties", True) is False and all(
        _closed(s) for s in schema.get("properties", {}).values()
    )


@functools.lru_cache(maxsize=1024)
def _compile(schema_json: str) -> jsonschema_rs.Validator:
    """One compiled validator per distinct schema: they are immutable, so tools with the
    same parameters share one (each costs a few KB of native memory)."""
    return jsonschema_rs.validator_for(json.loads(schema_json))


class ArgumentValidator:
    """Validates a call's arguments against a compiled JSON Schema.

    Args:
        schema: the JSON Schema of the arguments object.
        tool: the tool's name, for error messages.
    """

    __slots__ = ("_closed", "_is_valid", "_validator", "schema", "tool")

    def __init__(self, schema: Mapping[str, Any], tool: str | None = None) -> None:
        self.schema = schema
        self.tool = tool
        self._validator = _compile(json.dumps(schema, sort_keys=True))
        self._is_valid = self._validator.is_valid
        self._closed = _closed(schema)

    def validate(self, args: object) -> None:
        """Raise ``ValidationError`` listing every problem, or return None.

        Never mutates ``args``.
        """
        try:
            if type(args) is dict and self._is_valid(args):
                if self._closed:
                    return
                found: list[FieldError] = []
                _non_json_problems(args, [], found, set())
                if not found:
                    return
        except ValueError:
            pass  # a value jsonschema-rs cannot convert: explained below
        problems = self.explain(args)
        if problems:  # a valid Mapping that is not exactly a dict (OrderedDict, ...) passes
            raise ValidationError(problems, tool=self.tool)

    def explain(self, args: object) -> list[FieldError]:
        """Every problem of ``args``, each with its path (empty when valid)."""
        if not isinstance(args, Mapping):
            return [
                FieldError(
                    "",
                    f"arguments must be an object (a dict of parameter name to value), "
                    f"got {_describe(args)}",
                )
            ]
        problems: list[FieldError] = []
        bad_paths: set[str] = set()
        clean = _non_json_problems(args, [], problems, bad_paths)
        for err in self._validator.iter_errors(clean):
            if len(problems) >= _MAX_REPORTED:
                break
            problems.extend(_rewrite(err, bad_paths, self.schema))
        return problems


def _rewrite(
    err: jsonschema_rs.ValidationError, bad_paths: set[str], schema: Mapping[str, Any]
) -> list[FieldError]:
    where = _pointer(err.instance_path)
    if where in bad_paths:
        return []  # already reported as a non-JSON value at that path
    kind = err.kind
    name = type(kind).__name__
    if name == "AdditionalProperties":
        allowed = sorted(_properties_at(schema, err.schema_path))
        hint = f"expected one of: {', '.join(allowed)}" if allowed else "this object takes none"
        return [
            FieldError(f"{where}/{_pointer([u])[1:]}", f"unknown field ({hint})")
            for u in getattr(kind, "unexpected", ())
        ]
    if name == "Required":
        prop = getattr(kind, "property", None)
        if isinstance(prop, str):
            return [FieldError(f"{where}{_pointer([prop])}", "required field is missing")]
    if name == "Type" and isinstance(err.instance, bool):
        return [FieldError(where, f"{json.dumps(err.instance)} is a boolean, {_expected(err)}")]
    return [FieldError(where, err.message)]


def _expected(err: jsonschema_rs.ValidationError) -> str:
    msg = err.message
    marker = "is not of type "
    return "expected " + msg.split(marker, 1)[1] if marker in msg else msg


def _properties_at(schema: Mapping[str, Any], schema_path: object) -> list[str]:
    node: Any = schema
    parts = list(schema_path) if isinstance(schema_path, list | tuple) else []
    for part in parts[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return []
    props = node.get("properties", {}) if isinstance(node, Mapping) else {}
    return list(props)
