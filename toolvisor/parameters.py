"""Parameters: what a tool takes, and the JSON Schema each one stands for.

Parameters are frozen values, checked when they are made, so that a schema handed to an
LLM provider is one the provider accepts and one the tool's own validation agrees with:

- a nullable parameter is written ``{"anyOf": [<its schema>, {"type": "null"}]}`` (type
  lists such as ``["string", "null"]`` break providers' strict-mode transforms), so an
  ``enum`` of a nullable parameter admits null too;
- a ``default`` must satisfy the parameter's own constraints;
- ``enum`` is a non-empty list of distinct values of the parameter's type (a bare string
  is an error: ``enum="USD"`` would otherwise mean ``("U", "S", "D")``);
- an object's schema always lists ``required`` (empty when nothing is) and says whether
  it takes other keys (``additionalProperties``).

Every schema is built fresh on each call: editing one never changes the parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import jsonschema_rs

__all__ = [
    "ArrayParameter",
    "BooleanParameter",
    "IntegerParameter",
    "NumericParameter",
    "ObjectParameter",
    "Parameter",
    "StringParameter",
]


# --------------------------------------------------------------------------- validators


def _optional_number(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number or None, got {value!r}")


def _optional_count(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an integer >= 0 or None, got {value!r}")


_NAME_RE = re.compile(r"^[^\s\x00-\x1f]{1,128}$")


def _name(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{attribute.name} must be a non-empty string of at most 128 characters without "
            f"whitespace, got {value!r}"
        )


def _enum_values(value: object) -> object:
    """Lists and tuples become tuples; anything else is left for the check to reject."""
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def _check_bounds(lo: float | None, hi: float | None, what: str) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min{what} ({lo}) must not exceed max{what} ({hi})")


def _is_number(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and (isinstance(value, int) or math.isfinite(value))
    )


# --------------------------------------------------------------------------- parameters


@attrs.frozen(kw_only=True)
class Parameter:
    """Base of the parameter classes; see the subclasses.

    Attributes:
        name: the argument's key.
        required: the caller must give it.
        description: what it means, for the model and for people.
        default: the value the tool assumes when it is absent (documented in the schema,
            never filled in); it must satisfy the parameter's own constraints.
        nullable: ``null`` is a valid value (written as ``anyOf`` with ``{"type": "null"}``).
    """

    name: str = attrs.field(validator=_name)
    required: bool = False
    description: str = ""
    default: Any = None
    nullable: bool = False

    _json_type: str = attrs.field(default="", init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._check()
        if self.default is not None:
            self._check_default()

    def to_schema(self) -> dict[str, Any]:
        """This parameter's JSON Schema (a new dict on every call)."""
        typed: dict[str, Any] = {"type": self._json_type}
        typed.update(self._constraints())
        schema: dict[str, Any] = {"anyOf": [typed, {"type": "null"}]} if self.nullable else typed
        if self.description:
            schema["description"] = self.description
        if self.default is not None:
            schema["default"] = _copy_json(self.default)
        return schema

    def _check(self) -> None:
        """Subclasses check their own fields here (before the default is checked)."""

    def _constraints(self) -> dict[str, Any]:
        return {}

    def _check_default(self) -> None:
        schema = self.to_schema()
        del schema["default"]
        try:
            validator = jsonschema_rs.validator_for(schema)
            problem = next(iter(validator.iter_errors(self.default)), None)
        except ValueError as exc:  # not a JSON value (a set, bytes, NaN, ...)
            raise ValueError(
                f"default of {self.name!r} must be a JSON value, got {self.default!r}: {exc}"
            ) from None
        if problem is not None:
            raise ValueError(
                f"default of {self.name!r} does not satisfy its own constraints: {problem.message}"
            )

    def _check_enum(self, enum: object, kind: str, fits: Any) -> None:
        if enum is None:
            return
        if isinstance(enum, str | bytes):
            raise ValueError(
                f"enum of {self.name!r} must be a list of values, not a bare string: write "
                f"enum=[{enum!r}], not enum={enum!r}"
            )
        if not isinstance(enum, tuple):
            raise ValueError(
                f"enum of {self.name!r} must be a list of values, got {type(enum).__name__}"
            )
        if not enum:
            raise ValueError(
                f"enum of {self.name!r} is empty: no value could ever pass; list the allowed "
                "values or drop enum"
            )
        if None in enum:
            raise ValueError(
                f"enum of {self.name!r} holds None: declare nullable=True to admit null"
            )
        bad = [e for e in enum if not fits(e)]
        if bad:
            raise ValueError(f"enum of {self.name!r} must hold {kind} only, got {bad[0]!r}")
        if len(set(enum)) != len(enum):
            raise ValueError(f"enum of {self.name!r} lists a value twice: {list(enum)!r}")


def _copy_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_json(v) for v in value]
    return value


@attrs.frozen(kw_only=True)
class StringParameter(Parameter):
    """A string, optionally limited by ``enum``, length bounds or a regex ``pattern``."""

    enum: Sequence[str] | None = attrs.field(default=None, converter=_enum_values)
    min_length: int | None = attrs.field(default=None, validator=_optional_count)
    max_length: int | None = attrs.field(default=None, validator=_optional_count)
    pattern: str | None = None
    _json_type: str = attrs.field(default="string", init=False, repr=False)

    def _check(self) -> None:
        _check_bounds(self.min_length, self.max_length, "_length")
        if self.pattern is not None:
            if not isinstance(self.pattern, str):
                raise ValueError(f"pattern of {self.name!r} must be a string, got {self.pattern!r}")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regex: {exc}") from exc
            try:  # the dialect that judges it (ECMA-262) rejects some Python-only syntax
                jsonschema_rs.validator_for({"pattern": self.pattern})
            except jsonschema_rs.ValidationError as exc:
                raise ValueError(
                    f"pattern {self.pattern!r} is not a valid ECMA-262 regex: {exc}"
                ) from exc
        self._check_enum(self.enum, "strings", lambda e: isinstance(e, str))

    def _constraints(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.min_length is not None:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out


@attrs.frozen(kw_only=True)
class NumericParameter(Parameter):
    """A finite number (int or float; booleans are rejected), optionally bounded."""

    minimum: float | None = attrs.field(default=None, validator=_optional_number)
    maximum: float | None = attrs.field(default=None, validator=_optional_number)
    exclusive_minimum: float | None = attrs.field(default=None, validator=_optional_number)
    exclusive_maximum: float | None = attrs.field(default=None, validator=_optional_number)
    enum: Sequence[float] | None = attrs.field(default=None, converter=_enum_values)
    _json_type: str = attrs.field(default="number", init=False, repr=False)

    def _check(self) -> None:
        _check_bounds(self.minimum, self.maximum, "imum")
        self._check_enum(self.enum, *self._enum_kind())

    def _enum_kind(self) -> tuple[str, Any]:
        return "finite numbers", _is_number

    def _constraints(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for attr, key in (
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("exclusive_minimum", "exclusiveMinimum"),
            ("exclusive_maximum", "exclusiveMaximum"),
        ):
            value = getattr(self, attr)
            if value is not None:
                out[key] = value
        if self.enum is not None:
            out["enum"] = list(self.enum)
        return out


@attrs.frozen(kw_only=True)
class IntegerParameter(NumericParameter):
    """An integer (JSON Schema's meaning: 3 and 3.0 are integers; booleans are not)."""

    _json_type: str = attrs.field(default="integer", init=False, repr=False)

    def _enum_kind(self) -> tuple[str, Any]:
        return "integers", lambda e: _is_number(e) and float(e).is_integer()


@attrs.frozen(kw_only=True)
class BooleanParameter(Parameter):
    """``true`` or ``false``."""

    _json_type: str = attrs.field(default="boolean", init=False, repr=False)


@attrs.frozen(kw_only=True)
class ArrayParameter(Parameter):
    """A list whose items all match ``items`` (any JSON value when ``items`` is None)."""

    items: Parameter | None = None
    min_items: int | None = attrs.field(default=None, validator=_optional_count)
    max_items: int | None = attrs.field(default=None, validator=_optional_count)
    unique_items: bool = False
    _json_type: str = attrs.field(default="array", init=False, repr=False)

    def _check(self) -> None:
        _check_bounds(self.min_items, self.max_items, "_items")
        if self.items is not None and not isinstance(self.items, Parameter):
            raise ValueError(f"items of {self.name!r} must be a Parameter, got {self.items!r}")

    def _constraints(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.items is not None:
            out["items"] = self.items.to_schema()
        if self.min_items is not None:
            out["minItems"] = self.min_items
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        if self.unique_items:
            out["uniqueItems"] = True
        return out


@attrs.frozen(kw_only=True)
class ObjectParameter(Parameter):
    """A nested object with its own ``properties`` (unknown keys rejected by default)."""

    properties: Sequence[Parameter] = attrs.field(factory=tuple, converter=tuple)
    additional_properties: bool = False
    _json_type: str = attrs.field(default="object", init=False, repr=False)

    def _check(self) -> None:
        _unique_names(self.properties, f"properties of {self.name!r}")

    def _constraints(self) -> dict[str, Any]:
        return _object_schema(self.properties, self.additional_properties, with_type=False)


def _unique_names(params: Iterable[Parameter], where: str) -> None:
    seen: set[str] = set()
    for p in params:
        if not isinstance(p, Parameter):
            raise ValueError(f"{where} must be Parameter instances, got {p!r}")
        if p.name in seen:
            raise ValueError(f"{where}: duplicate parameter name {p.name!r}")
        seen.add(p.name)


def _object_schema(
    params: Sequence[Parameter], additional: bool, *, with_type: bool = True
) -> dict[str, Any]:
    """The schema of an object holding ``params``; ``required`` is always present."""
    schema: dict[str, Any] = {"type": "object"} if with_type else {}
    schema["properties"] = {p.name: p.to_schema() for p in params}
    schema["required"] = [p.name for p in params if p.required]
    schema["additionalProperties"] = additional
    return schema
