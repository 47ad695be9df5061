"""Schema rules: what a parameter may declare, and the JSON Schema it stands for."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from toolvisor import (
    ArrayParameter,
    BooleanParameter,
    FunctionToolSpec,
    IdempotencyConfig,
    IntegerParameter,
    NumericParameter,
    ObjectParameter,
    Parameter,
    StringParameter,
    ValidationError,
)
from toolvisor.parameters import StringParameter as MovedStringParameter
from toolvisor.spec import StringParameter as SpecStringParameter


def _spec(*params: Parameter, **kw: Any) -> FunctionToolSpec:
    return FunctionToolSpec(id="t-v1", tool_name="t", parameters=list(params), **kw)


#: One parameter of every kind, each with the constraints it takes, some nullable.
EVERY_KIND: list[Parameter] = [
    StringParameter(name="sku", required=True, min_length=3, max_length=12, pattern="^[A-Z0-9-]+$"),
    StringParameter(name="currency", enum=["USD", "EUR"], nullable=True, default="USD"),
    NumericParameter(name="amount", minimum=0, maximum=100, default=5.5),
    NumericParameter(name="ratio", exclusive_minimum=0, exclusive_maximum=1, nullable=True),
    IntegerParameter(name="qty", minimum=1, enum=[1, 2, 3], default=1),
    BooleanParameter(name="gift", default=False, description="wrap it"),
    ArrayParameter(
        name="tags",
        items=StringParameter(name="tag", max_length=8),
        min_items=1,
        max_items=3,
        unique_items=True,
        nullable=True,
    ),
    ArrayParameter(name="anything"),
    ObjectParameter(
        name="address",
        properties=[StringParameter(name="city", required=True), StringParameter(name="zip")],
        default={"city": "Paris"},
    ),
    ObjectParameter(name="meta", additional_properties=True, nullable=True),
]


def test_parameters_moved_module_is_the_same_class() -> None:
    assert SpecStringParameter is MovedStringParameter is StringParameter


@pytest.mark.parametrize("param", EVERY_KIND, ids=lambda p: p.name)
def test_every_parameter_schema_is_valid_json_schema(param: Parameter) -> None:
    jsonschema.Draft202012Validator.check_schema(param.to_schema())
    jsonschema.Draft7Validator.check_schema(param.to_schema())


def test_the_spec_schema_of_every_kind_is_valid_json_schema() -> None:
    schema = _spec(*EVERY_KIND).json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["sku"]


# --------------------------------------------------------------------------- nullable


def test_nullable_is_written_as_any_of_with_null() -> None:
    schema = StringParameter(name="note", nullable=True, description="a note").to_schema()
    assert schema == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "description": "a note",
    }
    assert not any(isinstance(s.get("type"), list) for s in schema["anyOf"])


def test_nullable_enum_admits_null_and_still_rejects_other_values() -> None:
    spec = _spec(StringParameter(name="currency", enum=["USD", "EUR"], nullable=True))
    spec.validate({"currency": None})
    spec.validate({"currency": "EUR"})
    with pytest.raises(ValidationError):
        spec.validate({"currency": "GBP"})


def test_nullable_nested_object_keeps_its_own_rules() -> None:
    spec = _spec(
        ObjectParameter(
            name="address", nullable=True, properties=[StringParameter(name="city", required=True)]
        )
    )
    spec.validate({"address": None})
    spec.validate({"address": {"city": "Oslo"}})
    with pytest.raises(ValidationError):
        spec.validate({"address": {}})
    with pytest.raises(ValidationError):
        spec.validate({"address": {"city": "Oslo", "extra": 1}})


def test_non_json_values_inside_a_nullable_parameter_are_rejected() -> None:
    spec = _spec(NumericParameter(name="amount", nullable=True))
    with pytest.raises(ValidationError, match="finite"):
        spec.validate({"amount": float("nan")})


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: IntegerParameter(name="qty", minimum=1, default=0), "qty"),
        (lambda: StringParameter(name="c", enum=["USD"], default="EUR"), "c"),
        (lambda: StringParameter(name="s", max_length=2, default="abc"), "s"),
        (lambda: StringParameter(name="p", pattern="^a+$", default="b"), "p"),
        (lambda: NumericParameter(name="n", default="5"), "n"),
        (lambda: IntegerParameter(name="i", default=1.5), "i"),
        (lambda: BooleanParameter(name="b", default=1), "b"),
        (lambda: ArrayParameter(name="a", items=IntegerParameter(name="x"), default=["y"]), "a"),
        (lambda: ArrayParameter(name="a2", max_items=1, default=[1, 2]), "a2"),
        (
            lambda: ObjectParameter(
                name="o", properties=[StringParameter(name="k", required=True)], default={}
            ),
            "o",
        ),
    ],
)
def test_a_default_must_satisfy_its_own_constraints(make: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=f"default of '{problem}' does not satisfy"):
        make()


def test_a_default_must_be_json() -> None:
    with pytest.raises(ValueError, match="default of 'a'"):
        ArrayParameter(name="a", default={1, 2})


def test_valid_defaults_are_kept_in_the_schema_as_copies() -> None:
    param = ObjectParameter(name="o", properties=[StringParameter(name="k")], default={"k": "v"})
    schema = param.to_schema()
    assert schema["default"] == {"k": "v"}
    schema["default"]["k"] = "changed"
    assert param.to_schema()["default"] == {"k": "v"}
    assert param.default == {"k": "v"}


# --------------------------------------------------------------------------- enum


def test_a_bare_string_enum_is_an_error_not_its_letters() -> None:
    with pytest.raises(ValueError, match=r"not a bare string: write enum=\['USD'\]"):
        StringParameter(name="currency", enum="USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: StringParameter(name="c", enum=[]), "is empty"),
        (lambda: NumericParameter(name="n", enum=()), "is empty"),
        (lambda: StringParameter(name="c", enum=["a", "a"]), "twice"),
        (lambda: StringParameter(name="c", enum=["a", 1]), "strings only"),
        (lambda: StringParameter(name="c", enum=["a", None]), "nullable=True"),
        (lambda: NumericParameter(name="n", enum=[1, True]), "finite numbers"),
        (lambda: NumericParameter(name="n", enum=[float("inf")]), "finite numbers"),
        (lambda: IntegerParameter(name="i", enum=[1, 2.5]), "integers only"),
        (lambda: StringParameter(name="c", enum={"a", "b"}), "must be a list"),
        (lambda: StringParameter(name="c", enum=b"ab"), "bare string"),
    ],
)
def test_enum_must_be_a_non_empty_list_of_distinct_values(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_enum_accepts_lists_and_tuples() -> None:
    assert StringParameter(name="c", enum=("USD", "EUR")).to_schema()["enum"] == ["USD", "EUR"]
    assert IntegerParameter(name="i", enum=[1, 2]).to_schema()["enum"] == [1, 2]


# --------------------------------------------------------------------------- specs


def test_required_is_always_present_nested_too() -> None:
    schema = _spec(
        StringParameter(name="a"), ObjectParameter(name="o", properties=[])
    ).json_schema()
    assert schema["required"] == []
    assert schema["properties"]["o"]["required"] == []
    assert _spec().json_schema() == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_schemas_are_copies_the_validation_does_not_share() -> None:
    spec = _spec(StringParameter(name="a", required=True))
    spec.to_function_schema()["parameters"]["required"].clear()
    spec.json_schema()["properties"]["a"]["type"] = "integer"
    assert spec.json_schema()["required"] == ["a"]
    with pytest.raises(ValidationError):
        spec.validate({})
    with pytest.raises(ValidationError):
        spec.validate({"a": 1})


@pytest.mark.parametrize(
    "name", ["a" * 65, "pay ment", "pay.ment", "payment/v1", "", "naïve", "a:b"]
)
def test_tool_name_must_be_one_llm_providers_take(name: str) -> None:
    with pytest.raises(ValueError, match="LLM providers reject other tool names"):
        FunctionToolSpec(id="t-v1", tool_name=name)


@pytest.mark.parametrize("name", ["a", "process_payment", "get-weather", "A1_b-2", "x" * 64])
def test_tool_names_providers_take_are_accepted(name: str) -> None:
    assert FunctionToolSpec(id="t-v1", tool_name=name).tool_name == name


def test_tool_name_is_checked_on_assignment_too() -> None:
    spec = _spec()
    with pytest.raises(ValueError, match="tool_name"):
        spec.tool_name = "has space"


def test_key_fields_must_name_parameters_at_construction() -> None:
    with pytest.raises(ValueError, match=r"names 'order_id', which is not one of its parameters"):
        _spec(
            StringParameter(name="tx"),
            idempotency=IdempotencyConfig(enabled=True, key_fields=["order_id"]),
        )


def test_key_fields_must_name_parameters_on_assignment() -> None:
    spec = _spec(StringParameter(name="tx"))
    with pytest.raises(ValueError, match="'nope'"):
        spec.idempotency = IdempotencyConfig(enabled=True, key_fields=["nope"])
    spec.idempotency = IdempotencyConfig(enabled=True, key_fields=["tx"])
    with pytest.raises(ValueError, match="'tx'"):
        spec.parameters = [StringParameter(name="other")]


def test_key_fields_edited_in_place_are_checked_when_compiled() -> None:
    spec = _spec(StringParameter(name="tx"))
    spec.idempotency.key_fields = ["tx"]  # the seed's style
    spec.compile()
    spec.idempotency.key_fields.append("amount")
    with pytest.raises(ValueError, match="'amount'"):
        spec.compile()


def test_key_fields_as_a_bare_string_is_an_error() -> None:
    spec = _spec(StringParameter(name="tx"))
    spec.idempotency.key_fields = "tx"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="must be a list of parameter names"):
        spec.compile()


def test_read_only_defaults_to_false_and_takes_booleans_only() -> None:
    assert _spec().read_only is False
    assert _spec(read_only=True).read_only is True
    with pytest.raises(TypeError):
        _spec(read_only="yes")
