"""Input limits and hostile arguments: refused up front, with short messages.

Each test here is one finding of the adversarial run: arguments nested 10,000 levels
(a ``RecursionError`` before), lone surrogates on closed schemas (they reached the
tool), 10 MB values embedded whole in the error message, huge strings validated for
seconds. The validator's walk that decides (``_within``) and the one that explains
(``_non_json_problems``) must agree, which a property test checks.
"""

from __future__ import annotations

import contextlib
import gc
import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolvisor import (
    ArrayParameter,
    FunctionToolSpec,
    InputLimits,
    IntegerParameter,
    ObjectParameter,
    StringParameter,
    ValidationError,
)
from toolvisor._validation import ArgumentValidator, _non_json_problems, _Walk, _within


def closed_spec(**kwargs: Any) -> FunctionToolSpec:
    """Every value type-checked by the schema (the old fast path skipped the walk here)."""
    return FunctionToolSpec(
        id="closed",
        tool_name="closed",
        parameters=[
            StringParameter(name="name"),
            IntegerParameter(name="count", required=False),
            ArrayParameter(name="tags", items=StringParameter(name="tag"), required=False),
        ],
        **kwargs,
    )


def open_spec(**kwargs: Any) -> FunctionToolSpec:
    """An object parameter open to any keys: its content is not typed by the schema."""
    return FunctionToolSpec(
        id="open",
        tool_name="open",
        parameters=[ObjectParameter(name="doc", additional_properties=True)],
        **kwargs,
    )


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    with no_gc():  # each collection would walk the whole chain: seconds at 100,000
        for _ in range(depth - 1):
            value = [value]
    return value


def nested_dicts(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    with no_gc():
        for _ in range(depth - 1):
            value = {"a": value}
    return value


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def refusal(spec: FunctionToolSpec, args: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        spec.validate(args)
    return info.value


# --------------------------------------------------------------------------- depth


@pytest.mark.parametrize("depth", [900, 10_000, 100_000])
@pytest.mark.parametrize("nest", [nested_lists, nested_dicts])
def test_deep_nesting_is_a_validation_error_not_a_recursion_error(depth: int, nest: Any) -> None:
    err = refusal(open_spec(), {"doc": {"x": nest(depth)}})
    assert "nested deeper than 64 levels (InputLimits.max_depth)" in str(err)
    assert len(err.errors) == 1
    assert err.errors[0].path.startswith("/doc/x/")
    assert len(str(err)) < 4096


def test_depth_limit_counts_the_arguments_object_as_level_one() -> None:
    spec = open_spec(input_limits=InputLimits(max_depth=4))
    spec.validate({"doc": {"a": {"b": 1}}})  # arguments, doc, a: three levels
    spec.validate({"doc": {"a": {"b": [1]}}})  # four
    err = refusal(spec, {"doc": {"a": {"b": [[1]]}}})
    assert err.errors[0].path == "/doc/a/b/0"
    assert "nested deeper than 4 levels" in err.errors[0].message


def test_input_limits_are_checked_and_have_documented_defaults() -> None:
    assert InputLimits() == InputLimits(
        max_depth=64, max_size=10_000_000, max_string_length=10_000_000, max_key_length=1024
    )
    for field in ("max_depth", "max_size", "max_string_length", "max_key_length"):
        for bad in (0, -1, True, 1.5, "3"):
            with pytest.raises(ValueError, match=f"^{field} must be an integer >= 1"):
                InputLimits(**{field: bad})
    with pytest.raises(ValueError, match="max_depth must be at most 500"):
        InputLimits(max_depth=501)
    with pytest.raises(TypeError, match="input_limits"):
        closed_spec(input_limits={"max_depth": 3})


def test_changing_a_specs_limits_changes_its_validator() -> None:
    spec = open_spec()
    spec.validate({"doc": {"x": nested_lists(10)}})
    spec.input_limits = InputLimits(max_depth=5)
    with pytest.raises(ValidationError, match="nested deeper than 5 levels"):
        spec.validate({"doc": {"x": nested_lists(10)}})
    assert spec.compile().validator.limits == InputLimits(max_depth=5)


# --------------------------------------------------------------------------- surrogates


@pytest.mark.parametrize("make_spec", [closed_spec, open_spec])
def test_lone_surrogates_are_refused_on_every_schema(make_spec: Any) -> None:
    spec = make_spec()
    args = (
        {"name": "caf\udce9", "tags": ["ok", "\ud800"]}
        if spec.tool_name == "closed"
        else {"doc": {"text": "caf\udce9", "list": ["ok", "\ud800"]}}
    )
    err = refusal(spec, args)
    assert all("lone surrogate" in e.message for e in err.errors)
    assert len(err.errors) == 2


def test_a_lone_surrogate_in_a_key_is_refused() -> None:
    err = refusal(open_spec(), {"doc": {"\udfff": 1}})
    assert err.errors[0].path == "/doc"
    assert "an object key must be valid Unicode" in err.errors[0].message


def test_valid_non_ascii_passes() -> None:
    closed_spec().validate({"name": "café ☕ 𝄞", "tags": ["日本"]})
    open_spec().validate({"doc": {"ключ": "значение 𝄞"}})


# --------------------------------------------------------------------------- sizes


def test_arguments_past_the_size_limit_are_refused_before_the_schema() -> None:
    spec = closed_spec(input_limits=InputLimits(max_size=1000))
    spec.validate({"name": "x" * 900})
    err = refusal(spec, {"name": "x" * 1000, "count": "not a number"})
    # Only the limit: the schema is not run on a payload past a limit.
    assert [e.message for e in err.errors] == [
        "the arguments are larger than 1,000 characters of JSON (InputLimits.max_size); "
        "send less, or raise the tool's input_limits"
    ]


def test_many_small_items_count_towards_the_size_limit() -> None:
    spec = open_spec(input_limits=InputLimits(max_size=10_000))
    spec.validate({"doc": {"items": list(range(300))}})
    with pytest.raises(ValidationError, match=r"InputLimits\.max_size"):
        spec.validate({"doc": {"items": list(range(1000))}})
    with pytest.raises(ValidationError, match=r"InputLimits\.max_size"):
        spec.validate({"doc": {f"k{i}": None for i in range(1000)}})


def test_string_length_limit_names_the_string() -> None:
    spec = closed_spec(input_limits=InputLimits(max_string_length=10))
    err = refusal(spec, {"name": "ok", "tags": ["fine", "x" * 11]})
    assert err.errors[0].path == "/tags/1"
    assert "a string of 11 characters is longer than 10 (InputLimits.max_string_length)" in str(err)
    err = refusal(open_spec(input_limits=InputLimits(max_string_length=10)), {"doc": {"k" * 11: 1}})
    assert "an object key of 11 characters" in str(err)


@pytest.mark.parametrize("make_spec", [closed_spec, open_spec])
def test_a_huge_non_ascii_string_is_refused_by_the_size_limit(make_spec: Any) -> None:
    """100 MB of non-ASCII text blocked the event loop 4.3 s; now the size check comes
    first (``len`` of a str costs nothing) and the walk stops there."""
    big = "é" * 100_000_000
    spec = make_spec()
    args = {"name": big} if spec.tool_name == "closed" else {"doc": {"text": big}}
    err = refusal(spec, args)
    assert "InputLimits.max_size" in str(err)
    assert len(str(err)) < 400


def test_integers_too_long_for_json_text_are_refused() -> None:
    spec = closed_spec()
    spec.validate({"name": "n", "count": 10**400})  # big, but JSON can carry it
    err = refusal(spec, {"name": "n", "count": 10**5000})
    assert err.errors[0].path == "/count"
    assert "too large to write as JSON text" in err.errors[0].message
    assert len(str(err)) < 400


# --------------------------------------------------------------------------- messages


def test_a_10_mb_value_gives_a_short_message_and_keeps_the_detail() -> None:
    spec = closed_spec()
    err = refusal(spec, {"name": 1, "count": "x" * 9_000_000})
    assert len(str(err)) < 4096  # was 10,000,079 characters
    paths = sorted(e.path for e in err.errors)
    assert paths == ["/count", "/name"]
    count = next(e for e in err.errors if e.path == "/count")
    assert count.message.startswith('"xxxxxxxx')
    assert 'is not of type "integer"' in count.message
    assert re.search(r"\.\.\.\(9,000,0\d\d characters in all\)\.\.\.", count.message)
    assert len(count.message) <= 220


def test_many_problems_show_the_first_ten_and_count_the_rest() -> None:
    spec = FunctionToolSpec(
        id="many",
        tool_name="many",
        parameters=[IntegerParameter(name=f"p{i:02}") for i in range(40)],
    )
    err = refusal(spec, {f"p{i:02}": "y" * 10_000 for i in range(40)})
    assert len(err.errors) == 40
    assert str(err).endswith("; and 30 more (see .errors)")
    assert len(str(err)) < 4096


def test_non_json_values_are_shown_cut() -> None:
    err = refusal(open_spec(), {"doc": {"blob": b"\x00" * 1_000_000, 7: "int key"}})
    assert len(str(err)) < 1000
    assert {e.path for e in err.errors} == {"/doc/blob", "/doc"}


# --------------------------------------------------------------------------- agreement

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),  # includes lone surrogates
    st.binary(max_size=3),
)
values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=4),
    ),
    max_leaves=30,
)


@given(
    args=st.dictionaries(st.text(max_size=6), values, max_size=4),
    limits=st.builds(
        InputLimits,
        max_depth=st.integers(1, 6),
        max_size=st.integers(1, 400),
        max_string_length=st.integers(1, 15),
    ),
)
def test_the_deciding_walk_agrees_with_the_explaining_walk(
    args: dict[str, Any], limits: InputLimits
) -> None:
    walk = _Walk(limits)
    _non_json_problems(args, [], walk)
    assert _within(args, limits) == (not walk.out), walk.out
    validator = ArgumentValidator({"type": "object"}, "any", limits)
    if not walk.out:
        validator.validate(args)
        return
    with pytest.raises(ValidationError) as info:
        validator.validate(args)
    assert list(info.value.errors) == walk.out[:50]


def test_finite_floats_and_large_ints_within_limits_pass() -> None:
    open_spec().validate({"doc": {"f": 1.5e300, "i": 2**200, "n": -math.pi}})
