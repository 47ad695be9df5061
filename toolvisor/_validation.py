"""Compiled argument validation: input limits, then a JSON Schema judged by jsonschema-rs.

Every call first goes through one walk of its arguments (``_within``) that checks the
:class:`InputLimits` (nesting depth, size, string length) and that every value is one JSON
can hold (no bytes, sets, NaN, infinities, non-string keys or lone surrogates), whatever
the schema; then one ``is_valid`` call into compiled Rust code. The walk is iterative and
stops at the first limit, so a hostile payload (10,000 nested lists, a 100 MB string)
costs microseconds, not the stack or seconds of the event loop. Only when either check
fails do we spend time on explaining: the problems the walk finds, then jsonschema-rs's
own error list, rewritten so that every problem names its path and says what to do, and
cut so that no message embeds a huge value.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

import attrs
import jsonschema_rs

from .errors import MAX_PROBLEM_CHARS, FieldError, ValidationError, cut, shown

__all__ = ["DEFAULT_LIMITS", "SURROGATE", "ArgumentValidator", "InputLimits"]

_MAX_REPORTED = 50
#: A problem's message longer than this is cut in the middle (its end says what is wrong):
#: as long as a ValidationError shows, so the note of what was cut is never cut again.
_MAX_MESSAGE = MAX_PROBLEM_CHARS
#: A lone surrogate: a str can hold one, UTF-8 (and so JSON on the wire) cannot.
SURROGATE = re.compile("[\ud800-\udfff]")
#: Characters of JSON text a float or a small int takes at most, for the size estimate.
_NUMBER_SIZE = 24


def _positive_int(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {shown(value)}")


def _at_most(bound: int) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if value > bound:
            raise ValueError(f"{attribute.name} must be at most {bound}, got {value!r}")

    return check


#: Deeper arguments would need more stack than explaining them may take.
_MAX_DEPTH = 500


@attrs.frozen(kw_only=True)
class InputLimits:
    """Upper bounds on a call's arguments and context, checked before anything runs.

    A call past a limit raises ``ValidationError`` (arguments) or ``ValueError``
    (context) naming the limit; the tool is not run. The defaults are far above what a
    person or a model sends by accident, and low enough that a hostile call is refused
    at once: validating arguments at the size limit takes milliseconds.

    Attributes:
        max_depth: how deeply lists and objects may nest (the arguments object itself
            is depth 1). Default 64; at most 500.
        max_size: the arguments' size, counted in characters of their JSON text
            (estimated while walking them, never encoded). Default 10,000,000.
        max_string_length: the longest string (value or key), in characters.
            Default 10,000,000 (so by default only ``max_size`` bounds a string).
        max_key_length: the longest ``tenant_id`` or ``idempotency_key`` of a context,
            in characters. Default 1,024.
    """

    max_depth: int = attrs.field(default=64, validator=[_positive_int, _at_most(_MAX_DEPTH)])
    max_size: int = attrs.field(default=10_000_000, validator=_positive_int)
    max_string_length: int = attrs.field(default=10_000_000, validator=_positive_int)
    max_key_length: int = attrs.field(default=1024, validator=_positive_int)


DEFAULT_LIMITS = InputLimits()


def _pointer(parts: list[str | int] | tuple[str | int, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _describe(value: object) -> str:
    return type(value).__name__


def _has_surrogate(s: str) -> bool:
    return not s.isascii() and SURROGATE.search(s) is not None


def _int_fits(value: int) -> bool:
    """Whether ``str(value)`` works (CPython refuses ints of more than 4300 digits)."""
    if value.bit_length() < _INT_BITS_SAFE:
        return True
    try:
        str(value)
    except ValueError:
        return False
    return True


def _int_size(value: int) -> int:
    bits = value.bit_length()
    return _NUMBER_SIZE if bits < 64 else bits * 30103 // 100000 + 2


_MAX_DIGITS = sys.get_int_max_str_digits() or sys.maxsize
#: Below this many bits an int has fewer digits than CPython's limit.
_INT_BITS_SAFE = min(_MAX_DIGITS, sys.maxsize // 4) * 3


def _within(args: Mapping[str, Any], limits: InputLimits) -> bool:
    """Whether ``args`` is within ``limits`` and made of JSON values only.

    The decision alone, without paths, on every call: ``_non_json_problems`` explains a
    False (and counts the size the same way). One iterative walk, so no payload can
    exhaust the stack. An object's keys are checked together in C (one ``str.join``);
    the loop in Python runs once per value.
    """
    max_depth = limits.max_depth
    max_string = limits.max_string_length
    budget = limits.max_size
    stack: list[tuple[object, int]] = []
    value: object = args
    depth = 1
    while True:
        items: Any
        if type(value) is dict or isinstance(value, Mapping):
            try:
                keys = "".join(value)  # TypeError for a key that is not a str
            except TypeError:
                return False
            if not (keys.isascii() or not _has_surrogate(keys)) or (
                len(keys) > max_string and max(map(len, value)) > max_string
            ):
                return False
            budget -= 2 + len(keys) + 4 * len(value)
            items = value.values()
        elif isinstance(value, list | tuple):
            budget -= 2 + len(value)
            items = value
        elif _scalar_ok(value, max_string):  # a subclass of a scalar (an IntEnum, ...)
            budget -= _scalar_size(value)
            items = ()
        else:
            return False
        for v in items:
            kind = type(v)
            if kind is str:
                if len(v) > max_string or not (v.isascii() or not _has_surrogate(v)):
                    return False
                budget -= len(v) + 2
            elif kind is int:
                if v.bit_length() < 64:
                    budget -= _NUMBER_SIZE
                elif _int_fits(v):
                    budget -= _int_size(v)
                else:
                    return False
            elif v is None or kind is bool or (kind is float and math.isfinite(v)):
                budget -= _NUMBER_SIZE
            elif depth >= max_depth and isinstance(v, Mapping | list | tuple):
                return False
            else:
                stack.append((v, depth + 1))
        if budget < 0:
            return False
        if not stack:
            return True
        value, depth = stack.pop()


def _scalar_size(value: object) -> int:
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_size(value)
    return _NUMBER_SIZE


def _scalar_ok(value: object, max_string: int) -> bool:
    if isinstance(value, str):
        return len(value) <= max_string and not _has_surrogate(value)
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _int_fits(value)
    return isinstance(value, float) and math.isfinite(value)


class _Walk:
    """What ``_non_json_problems`` found: problems, their paths, the size so far."""

    __slots__ = ("bad_paths", "limit_hit", "limits", "out", "oversize", "size")

    def __init__(self, limits: InputLimits) -> None:
        self.limits = limits
        self.out: list[FieldError] = []
        self.bad_paths: set[str] = set()
        self.size = 0
        self.limit_hit = False
        self.oversize = False

    def problem(self, path: list[str | int], message: str, *, limit: bool = False) -> None:
        where = _pointer(path)
        self.out.append(FieldError(where, message))
        self.bad_paths.add(where)
        self.limit_hit = self.limit_hit or limit

    def grow(self, n: int) -> bool:
        """Count ``n`` more characters; False (reported once) past ``max_size``."""
        self.size += n
        if self.size <= self.limits.max_size:
            return True
        if not self.oversize:
            self.oversize = True
            self.problem(
                [],
                f"the arguments are larger than {self.limits.max_size:,} characters of JSON "
                "(InputLimits.max_size); send less, or raise the tool's input_limits",
                limit=True,
            )
        return False


def _check_string(s: str, path: list[str | int], walk: _Walk, what: str) -> bool:
    if len(s) > walk.limits.max_string_length:
        walk.problem(
            path,
            f"{what} of {len(s):,} characters is longer than "
            f"{walk.limits.max_string_length:,} (InputLimits.max_string_length)",
            limit=True,
        )
        return False
    if _has_surrogate(s):
        walk.problem(path, f"{what} must be valid Unicode (lone surrogate in {shown(s)})")
        return False
    return True


def _non_json_problems(value: object, path: list[str | int], walk: _Walk, depth: int = 1) -> object:
    """Collect values JSON cannot carry and limits passed; return a copy safe to hand to
    jsonschema-rs (with None where a value was bad).

    Recursive, but never deeper than ``max_depth``; stops walking once the size limit is
    passed (the limit is the one problem reported then).
    """
    if walk.size > walk.limits.max_size:
        return None
    if isinstance(value, str):
        if not walk.grow(len(value) + 2) or not _check_string(value, path, walk, "a string"):
            return None
        return value
    if value is None or isinstance(value, bool):
        walk.grow(_NUMBER_SIZE)
        return value
    if isinstance(value, int):
        if not _int_fits(value):
            walk.problem(
                path,
                f"{shown(value)} has more than {_MAX_DIGITS:,} digits: too large to write as "
                "JSON text",
            )
            return None
        walk.grow(_int_size(value))
        return value
    if isinstance(value, float):
        walk.grow(_NUMBER_SIZE)
        if math.isfinite(value):
            return value
        walk.problem(path, f"{value!r} is not allowed: numbers must be finite")
        return None
    if isinstance(value, Mapping | list | tuple) and depth > walk.limits.max_depth:
        walk.problem(
            path,
            f"nested deeper than {walk.limits.max_depth} levels (InputLimits.max_depth); "
            "flatten the arguments, or raise the tool's input_limits",
            limit=True,
        )
        return None
    if isinstance(value, Mapping):
        clean: dict[str, object] = {}
        walk.grow(2)
        for k, v in value.items():
            if not isinstance(k, str):
                walk.problem(path, f"object keys must be strings, got {_describe(k)} {shown(k)}")
                continue
            if not walk.grow(len(k) + 4) or not _check_string(k, path, walk, "an object key"):
                continue
            clean[k] = _non_json_problems(v, [*path, k], walk, depth + 1)
            if walk.size > walk.limits.max_size:
                break
        return clean
    if isinstance(value, list | tuple):
        walk.grow(2)
        items: list[object] = []
        for i, v in enumerate(value):
            if not walk.grow(1):
                break
            items.append(_non_json_problems(v, [*path, i], walk, depth + 1))
            if walk.size > walk.limits.max_size:
                break
        return items
    walk.problem(
        path,
        f"a {_describe(value)} is not a JSON value (use str, int, float, bool, None, list or dict)",
    )
    return None


@functools.lru_cache(maxsize=1024)
def _compile(schema_json: str) -> jsonschema_rs.Validator:
    """One compiled validator per distinct schema: they are immutable, so tools with the
    same parameters share one (each costs a few KB of native memory)."""
    return jsonschema_rs.validator_for(json.loads(schema_json))


class ArgumentValidator:
    """Validates a call's arguments against input limits and a compiled JSON Schema.

    Args:
        schema: the JSON Schema of the arguments object.
        tool: the tool's name, for error messages.
        limits: the bounds checked before the schema (default: ``InputLimits()``).
    """

    __slots__ = ("_is_valid", "_validator", "limits", "schema", "tool")

    def __init__(
        self,
        schema: Mapping[str, Any],
        tool: str | None = None,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        if not isinstance(limits, InputLimits):
            raise TypeError(f"limits must be an InputLimits, got {shown(limits)}")
        self.schema = schema
        self.tool = tool
        self.limits = limits
        self._validator = _compile(json.dumps(schema, sort_keys=True))
        self._is_valid = self._validator.is_valid

    def validate(self, args: object) -> None:
        """Raise ``ValidationError`` listing every problem, or return None.

        Never mutates ``args``.
        """
        try:
            if type(args) is dict and _within(args, self.limits) and self._is_valid(args):
                return
        except ValueError:
            pass  # a value jsonschema-rs cannot convert: explained below
        problems = self.explain(args)
        if problems:  # a valid Mapping that is not exactly a dict (OrderedDict, ...) passes
            raise ValidationError(problems, tool=self.tool)

    def explain(self, args: object) -> list[FieldError]:
        """Every problem of ``args``, each with its path (empty when valid).

        Past a limit, only the limits' problems: the schema is not run on such a payload.
        """
        if not isinstance(args, Mapping):
            return [
                FieldError(
                    "",
                    f"arguments must be an object (a dict of parameter name to value), "
                    f"got {_describe(args)}",
                )
            ]
        walk = _Walk(self.limits)
        clean = _non_json_problems(args, [], walk)
        problems = walk.out[:_MAX_REPORTED]
        if walk.limit_hit:
            return problems
        for err in self._validator.iter_errors(clean):
            if len(problems) >= _MAX_REPORTED:
                break
            problems.extend(_rewrite(err, walk.bad_paths, self.schema))
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
    return [FieldError(where, cut(err.message, _MAX_MESSAGE))]


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
