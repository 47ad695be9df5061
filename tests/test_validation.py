"""Argument validation: every problem at once, never mutating, agreeing with JSON Schema.

The independent oracle is the pure-Python ``jsonschema`` package (Draft 2020-12). Known,
documented differences, where toolvisor (jsonschema-rs) is the one following the spec:

- ``pattern`` is an ECMA-262 regex: ``$`` matches only at the very end and ``\\d``/``\\w``
  are ASCII, while python-jsonschema uses Python's ``re`` (``$`` also matches before a
  final newline, ``\\d`` matches any Unicode digit). The agreement tests therefore use
  patterns without ``$``, ``\\d`` or ``\\w``; ``test_pattern_follows_ecma_262`` pins it.
- Tuples are accepted as arrays by toolvisor (Python code passes them), while
  python-jsonschema's ``array`` type takes lists only; tuples are not JSON, so the
  agreement tests leave them out.
"""

from __future__ import annotations

import copy
import math
import types
from collections import OrderedDict
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from toolvisor import (
    ArrayParameter,
    BooleanParameter,
    FieldError,
    FunctionToolSpec,
    IntegerParameter,
    NumericParameter,
    ObjectParameter,
    Parameter,
    StringParameter,
    ToolvisorError,
    ValidationError,
)


def payment_spec() -> FunctionToolSpec:
    return FunctionToolSpec(
        id="payment-processor-v1",
        tool_name="process_payment",
        parameters=[
            StringParameter(name="transaction_id", required=True),
            NumericParameter(name="amount", required=True),
            StringParameter(name="currency", required=True),
        ],
    )


def order_spec() -> FunctionToolSpec:
    return FunctionToolSpec(
        id="order-v2",
        tool_name="place_order",
        parameters=[
            StringParameter(name="sku", required=True, min_length=3, max_length=12),
            StringParameter(name="currency", required=True, enum=["USD", "EUR"]),
            NumericParameter(name="amount", required=True, minimum=0, maximum=10_000),
            NumericParameter(name="discount", exclusive_minimum=0, exclusive_maximum=1),
            IntegerParameter(name="quantity", minimum=1),
            BooleanParameter(name="gift"),
            ArrayParameter(
                name="tags", items=StringParameter(name="tag", max_length=8), max_items=3
            ),
            ObjectParameter(
                name="address",
                properties=[
                    StringParameter(name="city", required=True),
                    StringParameter(name="zip"),
                ],
            ),
            ArrayParameter(
                name="lines",
                items=ObjectParameter(
                    name="line",
                    properties=[
                        StringParameter(name="sku", required=True),
                        IntegerParameter(name="qty", required=True, minimum=1),
                    ],
                ),
            ),
        ],
    )


def problems(spec: FunctionToolSpec, args: object) -> dict[str, list[str]]:
    """Validate and return {path: [messages]}; fails the test if validation passes."""
    with pytest.raises(ValidationError) as info:
        spec.validate(args)
    out: dict[str, list[str]] = {}
    for err in info.value.errors:
        out.setdefault(err.path, []).append(err.message)
    return out


# --------------------------------------------------------------------------- accepting


@pytest.mark.parametrize(
    "args",
    [
        {"transaction_id": "tx-12345", "amount": 99.99, "currency": "USD"},
        {"transaction_id": "", "amount": 0, "currency": ""},
        {"transaction_id": "tx", "amount": -1e300, "currency": "€"},
        {"transaction_id": "tx", "amount": 10**30, "currency": "USD"},
    ],
)
def test_valid_arguments_pass(args: dict[str, object]) -> None:
    assert payment_spec().validate(args) is None
    assert payment_spec().compile().validator.validate(args) is None


def test_a_full_valid_order_passes() -> None:
    order_spec().validate(
        {
            "sku": "ABC-1",
            "currency": "EUR",
            "amount": 10_000,
            "discount": 0.5,
            "quantity": 3.0,  # JSON Schema: 3.0 is an integer
            "gift": False,
            "tags": ["a", "bb"],
            "address": {"city": "Lyon"},
            "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}],
        }
    )


@pytest.mark.parametrize(
    "args",
    [
        OrderedDict(transaction_id="tx", amount=1, currency="USD"),
        types.MappingProxyType({"transaction_id": "tx", "amount": 1, "currency": "USD"}),
    ],
)
def test_any_mapping_of_valid_arguments_passes(args: object) -> None:
    payment_spec().validate(args)


def test_non_dict_mapping_with_problems_still_lists_them() -> None:
    args = OrderedDict(transaction_id="tx", amount="1")
    assert set(problems(payment_spec(), args)) == {"/amount", "/currency"}


# --------------------------------------------------------------------------- rejecting


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    args = {
        "sku": "ab",
        "currency": "GBP",
        "amount": -1,
        "discount": 1,
        "quantity": 1.5,
        "gift": 1,
        "tags": ["toolongtag", 1, "a", "b"],
        "address": {"zip": 3, "x": 1},
        "lines": [{"sku": "a", "qty": 0}, {"qty": True}, "str"],
        "extra": 1,
    }
    found = problems(order_spec(), args)
    assert set(found) == {
        "/sku",
        "/currency",
        "/amount",
        "/discount",
        "/quantity",
        "/gift",
        "/tags",
        "/tags/0",
        "/tags/1",
        "/address/zip",
        "/address/x",
        "/address/city",
        "/lines/0/qty",
        "/lines/1/sku",
        "/lines/1/qty",
        "/lines/2",
        "/extra",
    }
    assert any("shorter than 3" in m for m in found["/sku"])
    assert any("USD" in m and "EUR" in m for m in found["/currency"])
    assert any("minimum" in m for m in found["/amount"])
    assert any("maximum" in m for m in found["/discount"])
    assert any("integer" in m for m in found["/quantity"])
    assert any("boolean" in m for m in found["/gift"])
    assert any("more than 3" in m for m in found["/tags"])
    assert any("longer than 8" in m for m in found["/tags/0"])
    assert found["/address/city"] == ["required field is missing"]
    assert found["/lines/1/sku"] == ["required field is missing"]
    assert any("boolean" in m for m in found["/lines/1/qty"])
    assert any("object" in m for m in found["/lines/2"])


def test_unknown_fields_each_at_their_own_path_listing_the_known_ones() -> None:
    found = problems(
        payment_spec(),
        {"transaction_id": "tx", "amount": 1, "currency": "USD", "tip": 1, "a/b": 2, "m~n": 3},
    )
    assert set(found) == {"/tip", "/a~1b", "/m~0n"}  # JSON-pointer escaping
    for messages in found.values():
        assert messages == ["unknown field (expected one of: amount, currency, transaction_id)"]


def test_every_missing_required_field_is_listed() -> None:
    found = problems(payment_spec(), {})
    assert found == {
        "/transaction_id": ["required field is missing"],
        "/amount": ["required field is missing"],
        "/currency": ["required field is missing"],
    }


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("param", [NumericParameter, IntegerParameter])
def test_booleans_are_not_numbers(param: type[NumericParameter], value: bool) -> None:
    spec = FunctionToolSpec(id="t", tool_name="t", parameters=[param(name="n")])
    found = problems(spec, {"n": value})
    assert list(found) == ["/n"]
    assert "boolean" in found["/n"][0]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_rejected_at_top_level_and_nested(value: float) -> None:
    found = problems(payment_spec(), {"transaction_id": "tx", "amount": value, "currency": "USD"})
    assert list(found) == ["/amount"]
    assert "finite" in found["/amount"][0]

    nested = problems(
        order_spec(),
        {
            "sku": "ABC",
            "currency": "USD",
            "amount": 1,
            "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": value}],
            "tags": [value],
        },
    )
    assert set(nested) == {"/lines/1/qty", "/tags/0"}
    assert all("finite" in m for ms in nested.values() for m in ms)


def test_nan_in_an_unconstrained_place_is_still_rejected() -> None:
    spec = FunctionToolSpec(
        id="t",
        tool_name="t",
        parameters=[
            ArrayParameter(name="anything"),
            ObjectParameter(name="meta", additional_properties=True),
        ],
    )
    found = problems(spec, {"anything": [1, [math.nan]], "meta": {"deep": {"x": math.inf}}})
    assert set(found) == {"/anything/1/0", "/meta/deep/x"}


def test_integer_parameter_takes_integral_floats_but_not_fractions() -> None:
    spec = FunctionToolSpec(id="t", tool_name="t", parameters=[IntegerParameter(name="n")])
    spec.validate({"n": 3})
    spec.validate({"n": 3.0})
    spec.validate({"n": 2**80})
    assert "integer" in problems(spec, {"n": 3.5})["/n"][0]
    assert "integer" in problems(spec, {"n": "3"})["/n"][0]


def test_strings_past_max_length_count_code_points() -> None:
    spec = FunctionToolSpec(
        id="t", tool_name="t", parameters=[StringParameter(name="s", max_length=2)]
    )
    spec.validate({"s": "a😀"})
    assert "longer than 2" in problems(spec, {"s": "a😀x"})["/s"][0]


@pytest.mark.parametrize(
    ("param", "ok", "bad"),
    [
        (NumericParameter(name="v", minimum=0, maximum=1), [0, 1, 0.5], [-0.001, 1.001]),
        (NumericParameter(name="v", exclusive_minimum=0, exclusive_maximum=1), [0.5], [0, 1]),
        (IntegerParameter(name="v", enum=[1, 2]), [1, 2, 2.0], [3, True, "1"]),
        (StringParameter(name="v", enum=["a", "b"]), ["a"], ["c", "A", 1]),
        (StringParameter(name="v", min_length=2), ["ab"], ["a", ""]),
        (StringParameter(name="v", pattern="^tx-[0-9]"), ["tx-1", "tx-9abc"], ["tx-", "ax-1"]),
        (ArrayParameter(name="v", min_items=1, max_items=2), [[1], [1, 2]], [[], [1, 2, 3]]),
        (ArrayParameter(name="v", unique_items=True), [[1, 2]], [[1, 1], [1, 1.0]]),
    ],
)
def test_constraints_accept_inside_and_reject_outside(
    param: Parameter, ok: list[object], bad: list[object]
) -> None:
    spec = FunctionToolSpec(id="t", tool_name="t", parameters=[param])
    for value in ok:
        spec.validate({"v": value})
    for value in bad:
        assert list(problems(spec, {"v": value})) == ["/v"], value


def test_pattern_follows_ecma_262() -> None:
    # python-jsonschema accepts both of these (Python's re); ECMA-262 rejects them.
    spec = FunctionToolSpec(
        id="t",
        tool_name="t",
        parameters=[
            StringParameter(name="code", pattern="^[A-Z]+$"),
            StringParameter(name="digit", pattern="^\\d$"),
        ],
    )
    spec.validate({"code": "ABC", "digit": "7"})
    assert set(problems(spec, {"code": "ABC\n", "digit": "٣"})) == {"/code", "/digit"}


@pytest.mark.parametrize("args", [[], ["transaction_id"], "tx-1", None, 42, ("a", 1)])
def test_non_dict_arguments_are_one_problem_at_the_root(args: object) -> None:
    found = problems(payment_spec(), args)
    assert list(found) == [""]
    assert "must be an object" in found[""][0]
    assert type(args).__name__ in found[""][0]


def test_non_string_keys_are_rejected() -> None:
    found = problems(
        payment_spec(),
        {"transaction_id": "tx", "amount": 1, "currency": "USD", 1: "x", (2, 3): "y"},
    )
    assert list(found) == [""]
    assert len(found[""]) == 2
    assert all("keys must be" in m for m in found[""])


def test_non_string_keys_nested() -> None:
    spec = FunctionToolSpec(
        id="t", tool_name="t", parameters=[ObjectParameter(name="o", additional_properties=True)]
    )
    found = problems(spec, {"o": {1: "x"}})
    assert list(found) == ["/o"]


@pytest.mark.parametrize(
    "value",
    [b"tx-1", bytearray(b"x"), {"a", "b"}, frozenset(), object(), 1j, Ellipsis, type],
    ids=lambda v: type(v).__name__,
)
def test_non_json_values_are_rejected_naming_their_type(value: object) -> None:
    found = problems(payment_spec(), {"transaction_id": value, "amount": 1, "currency": "USD"})
    assert list(found) == ["/transaction_id"]
    assert type(value).__name__ in found["/transaction_id"][0]
    assert "not a JSON value" in found["/transaction_id"][0]


def test_non_json_values_nested_in_unconstrained_places() -> None:
    spec = FunctionToolSpec(id="t", tool_name="t", parameters=[ArrayParameter(name="a")])
    found = problems(spec, {"a": [1, {"k": {1, 2}}, b"x"]})
    assert set(found) == {"/a/1/k", "/a/2"}


def test_lone_surrogates_are_rejected_where_they_are_inspected() -> None:
    spec = FunctionToolSpec(
        id="t", tool_name="t", parameters=[StringParameter(name="s", enum=["a"])]
    )
    assert "Unicode" in problems(spec, {"s": "\ud800"})["/s"][0]
    assert list(problems(spec, {"\udc00": 1})) == [""]


def test_validation_error_is_a_toolvisor_error_and_a_value_error() -> None:
    with pytest.raises(ValidationError) as info:
        payment_spec().validate({"amount": "x", "extra": 1})
    err = info.value
    assert isinstance(err, ToolvisorError)
    assert isinstance(err, ValueError)
    assert isinstance(err.errors, tuple)
    assert all(isinstance(e, FieldError) for e in err.errors)
    assert err.tool == "process_payment"
    text = str(err)
    assert "process_payment" in text
    for e in err.errors:
        assert e.path in text


def test_validation_never_mutates_the_arguments() -> None:
    args: dict[Any, Any] = {
        "sku": "ab",
        "currency": "USD",
        "amount": 5,
        "lines": [{"sku": "A", "qty": 0, "extra": [1, 2]}, {"qty": 1}],
        "address": {"city": "Paris", "zip": 75001},
        "tags": ["x"],
        "unknown": {"deep": [None, True]},
    }
    before = copy.deepcopy(args)
    with pytest.raises(ValidationError):
        order_spec().validate(args)
    assert args == before

    declared_default = FunctionToolSpec(
        id="t", tool_name="t", parameters=[IntegerParameter(name="n", default=7)]
    )
    empty: dict[str, object] = {}
    declared_default.validate(empty)
    assert empty == {}  # defaults are documented in the schema, never filled in


# --------------------------------------------------------------------------- hypothesis

SPECS = {
    "flat": payment_spec,
    "order": order_spec,
    "nested": lambda: FunctionToolSpec(
        id="t",
        tool_name="t",
        parameters=[
            ObjectParameter(
                name="outer",
                required=True,
                properties=[
                    ObjectParameter(
                        name="inner", properties=[NumericParameter(name="x", minimum=0)]
                    ),
                    StringParameter(name="label", pattern="^[a-z]"),
                ],
            )
        ],
    ),
    "array_of_objects": lambda: FunctionToolSpec(
        id="t",
        tool_name="t",
        parameters=[
            ArrayParameter(
                name="items",
                required=True,
                min_items=1,
                unique_items=True,
                items=ObjectParameter(
                    name="item",
                    properties=[
                        StringParameter(name="id", required=True, min_length=1),
                        BooleanParameter(name="flag"),
                        IntegerParameter(name="n", exclusive_maximum=100),
                    ],
                ),
            ),
            StringParameter(name="mode", enum=["a", "b"], nullable=True),
        ],
    ),
    # Open places (no ``items``, extra keys allowed) that jsonschema-rs never inspects.
    "open": lambda: FunctionToolSpec(
        id="t",
        tool_name="t",
        parameters=[
            ArrayParameter(name="anything", required=True),
            ObjectParameter(
                name="meta",
                additional_properties=True,
                properties=[IntegerParameter(name="version", minimum=0)],
            ),
        ],
    ),
}

BUILT = {name: make() for name, make in SPECS.items()}

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | st.integers() | finite_floats | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=12,
)

any_scalars = (
    json_scalars
    | st.sampled_from([math.nan, math.inf, -math.inf])
    | st.binary(max_size=4)
    | st.builds(object)
    | st.frozensets(st.integers(), max_size=3)
    | st.sets(st.integers(), max_size=3)
    | st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
)
any_values = st.recursive(
    any_scalars,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.tuples(kids, kids)
        | st.dictionaries(st.text(max_size=6) | st.integers() | st.none(), kids, max_size=4)
    ),
    max_leaves=12,
)


def valid_for(param: Parameter, noise: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values that (mostly) satisfy ``param``: the accept branch of the agreement test."""
    if isinstance(param, StringParameter):
        if param.enum is not None:
            return st.sampled_from(list(param.enum))
        lo = param.min_length or 0
        hi = param.max_length if param.max_length is not None else lo + 8
        alphabet = "abcxyz" if param.pattern else st.characters(codec="utf-8")
        return st.text(alphabet, min_size=max(lo, 1 if param.pattern else 0), max_size=hi)
    if isinstance(param, NumericParameter):
        lo, hi = _int_bounds(param)
        empty = lo is not None and hi is not None and lo > hi
        ints = st.nothing() if empty else st.integers(lo, hi)
        if isinstance(param, IntegerParameter):  # 3.0 is an integer too
            return ints | ints.filter(lambda i: abs(i) < 2**53).map(float)
        return ints | st.floats(
            param.minimum if param.minimum is not None else param.exclusive_minimum,
            param.maximum if param.maximum is not None else param.exclusive_maximum,
            exclude_min=param.exclusive_minimum is not None,
            exclude_max=param.exclusive_maximum is not None,
            allow_nan=False,
            allow_infinity=False,
        )
    if isinstance(param, BooleanParameter):
        return st.booleans()
    if isinstance(param, ArrayParameter):
        items = valid_for(param.items, noise) if param.items is not None else noise
        return st.lists(
            perturbed(items, noise),
            min_size=param.min_items or 0,
            max_size=param.max_items or 3,
            unique_by=repr if param.unique_items else None,
        )
    if isinstance(param, ObjectParameter):
        return object_for(param.properties, noise)
    raise AssertionError(f"no strategy for {param!r}")


def _int_bounds(param: NumericParameter) -> tuple[int | None, int | None]:
    lows = [math.ceil(param.minimum)] if param.minimum is not None else []
    if param.exclusive_minimum is not None:
        lows.append(math.floor(param.exclusive_minimum) + 1)
    highs = [math.floor(param.maximum)] if param.maximum is not None else []
    if param.exclusive_maximum is not None:
        highs.append(math.ceil(param.exclusive_maximum) - 1)
    return max(lows, default=None), min(highs, default=None)


def perturbed(
    strategy: st.SearchStrategy[Any], noise: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Usually ``strategy``, sometimes a ``noise`` value (the reject branch)."""
    return st.integers(0, 24).flatmap(lambda n: noise if n == 0 else strategy)


@st.composite
def _object(
    draw: st.DrawFn, params: tuple[Parameter, ...], noise: st.SearchStrategy[Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in params:
        keep = p.required or draw(st.booleans())
        if p.required and draw(st.integers(0, 29)) == 0:
            keep = False  # drop a required field
        if keep:
            out[p.name] = draw(perturbed(valid_for(p, noise), noise))
        if p.nullable and draw(st.integers(0, 9)) == 0:
            out[p.name] = None
    if draw(st.integers(0, 29)) == 0:
        out[draw(st.text(max_size=5))] = draw(noise)  # maybe an unknown field
    return out


def object_for(
    params: Any, noise: st.SearchStrategy[Any] = json_values
) -> st.SearchStrategy[dict[str, Any]]:
    return _object(tuple(params), noise)


def schema_values(spec: FunctionToolSpec) -> st.SearchStrategy[Any]:
    """Mostly objects built from the schema, sometimes arbitrary JSON."""
    built = object_for(spec.parameters)
    return st.integers(0, 3).flatmap(lambda n: json_values if n == 0 else built)


def has_non_json(value: object) -> bool:
    """NaN, infinities, bytes, sets, other objects or non-string keys anywhere inside."""
    if value is None or isinstance(value, str | bool | int):
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(not isinstance(k, str) or has_non_json(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_non_json(v) for v in value)
    return True


def snapshot(value: object) -> object:
    """A structural fingerprint (NaN-safe; opaque objects by identity) to detect mutation."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, dict):
        return ("dict", [(snapshot(k), snapshot(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [snapshot(v) for v in value])
    if isinstance(value, set | frozenset):
        return (type(value).__name__, sorted(repr(v) for v in value))
    if value is None or isinstance(value, str | bytes | int):
        return (type(value).__name__, value)
    return ("opaque", id(value))


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_validate_returns_none_or_raises_validation_error_and_never_mutates(
    name: str, data: st.DataObject
) -> None:
    spec = BUILT[name]
    args = data.draw(
        any_values
        | st.dictionaries(st.text(max_size=8), any_values)
        | object_for(spec.parameters, any_values)
    )
    before = snapshot(args)
    errors = _errors_of(spec, args)  # anything but ValidationError propagates: a failure
    if errors is None:
        assert not has_non_json(args), "accepted a value JSON cannot carry"
        event("accepted")
    else:
        assert errors, "a ValidationError must list at least one problem"
        assert all(isinstance(e, FieldError) and isinstance(e.path, str) for e in errors)
        assert all(e.message for e in errors)
        event("rejected")
    assert snapshot(args) == before


def _errors_of(spec: FunctionToolSpec, args: object) -> tuple[FieldError, ...] | None:
    """None when ``spec.validate`` returns None, else the ValidationError's errors."""
    try:
        result = spec.validate(args)
    except ValidationError as err:
        return err.errors
    assert result is None
    return None


_ORACLES: dict[int, jsonschema.Draft202012Validator] = {}


def _oracle(spec: FunctionToolSpec) -> jsonschema.Draft202012Validator:
    """The independent validator of ``spec`` (cached: the specs here are never edited)."""
    key = id(spec)
    if key not in _ORACLES:
        _ORACLES[key] = jsonschema.Draft202012Validator(spec.json_schema())
    return _ORACLES[key]


def _agree(spec: FunctionToolSpec, args: object) -> bool:
    oracle = _oracle(spec).is_valid(args)
    errors = _errors_of(spec, args)
    if errors is None:
        assert oracle, "toolvisor accepts what jsonschema rejects"
        return True
    assert not oracle, f"toolvisor rejects what jsonschema accepts: {errors}"
    return False


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_agrees_with_jsonschema_on_json_values(name: str, data: st.DataObject) -> None:
    spec = BUILT[name]
    args = data.draw(schema_values(spec))
    event("accepted" if _agree(spec, args) else "rejected")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_agreement_exercises_both_branches(name: str) -> None:
    spec = BUILT[name]
    outcomes: list[bool] = []

    @settings(max_examples=100, derandomize=True, database=None)
    @given(args=object_for(spec.parameters))
    def run(args: dict[str, Any]) -> None:
        outcomes.append(_agree(spec, args))

    run()
    accepted = sum(outcomes) / len(outcomes)
    assert 0.2 <= accepted <= 0.9, f"{name}: {accepted:.0%} accepted of {len(outcomes)}"
