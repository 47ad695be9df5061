"""Tool specs: building them as the seed does, rejecting bad ones, their JSON Schema."""

from __future__ import annotations

import jsonschema
import pytest

from toolvisor import (
    ArrayParameter,
    BooleanParameter,
    CircuitBreakerConfig,
    DbToolSpec,
    ExponentialBackoffRetryPolicy,
    FieldBasedIdempotencyKeyGenerator,
    FixedRetryPolicy,
    FunctionToolSpec,
    HttpToolSpec,
    IdempotencyConfig,
    IntegerParameter,
    NoOpCircuitBreakerPolicy,
    NoRetryPolicy,
    NumericParameter,
    ObjectParameter,
    RetryConfig,
    StandardCircuitBreakerPolicy,
    StringParameter,
    ToolType,
    ValidationError,
)


def payment_spec() -> FunctionToolSpec:
    """The seed's payment tool, built exactly as its document does."""
    return FunctionToolSpec(
        id="payment-processor-v1",
        tool_name="process_payment",
        description="Process payment with full resilience",
        tool_type=ToolType.FUNCTION,
        parameters=[
            StringParameter(name="transaction_id", required=True),
            NumericParameter(name="amount", required=True),
            StringParameter(name="currency", required=True),
        ],
        timeout_s=30,
    )


# --------------------------------------------------------------------------- building


def test_seed_payment_spec_takes_every_assignment() -> None:
    spec = payment_spec()
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    spec.idempotency.ttl_s = 86400
    spec.idempotency.key_fields = ["transaction_id"]
    generator = FieldBasedIdempotencyKeyGenerator()
    spec.idempotency_key_generator = generator
    breaker = StandardCircuitBreakerPolicy(failure_threshold=5, recovery_timeout=60)
    spec.circuit_breaker_policy = breaker
    retry = ExponentialBackoffRetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0)
    spec.retry_policy = retry

    assert spec.tool_type is ToolType.FUNCTION
    assert spec.timeout_s == 30
    assert spec.idempotency == IdempotencyConfig(
        enabled=True, persist_result=True, ttl_s=86400, key_fields=["transaction_id"]
    )
    assert spec.effective_retry_policy() is retry
    assert spec.effective_circuit_breaker_policy() is breaker

    compiled = spec.compile()
    assert compiled.tool_name == "process_payment"
    assert compiled.spec_id == "payment-processor-v1"
    assert compiled.timeout_s == 30.0
    assert compiled.idempotent is True
    assert compiled.persist_result is True
    assert compiled.idempotency_ttl_s == 86400.0
    assert compiled.key_fields == ("transaction_id",)
    assert compiled.key_generator is generator
    assert compiled.retry_policy is retry
    assert compiled.breaker is breaker
    compiled.validator.validate({"transaction_id": "tx-12345", "amount": 99.99, "currency": "USD"})


def test_spec_defaults_match_the_design() -> None:
    spec = FunctionToolSpec(id="t-v1", tool_name="t")
    assert spec.tool_type is ToolType.FUNCTION
    assert spec.timeout_s == 30
    assert spec.parameters == []
    assert spec.max_concurrency == 16
    assert spec.queue_size == 1024
    assert spec.overflow == "wait"
    assert spec.retry_policy is None
    assert spec.circuit_breaker_policy is None
    assert spec.idempotency.enabled is False


def test_each_spec_has_its_own_idempotency_config() -> None:
    first, second = payment_spec(), payment_spec()
    assert first.idempotency is not second.idempotency
    first.idempotency.enabled = True
    first.idempotency.key_fields.append("transaction_id")
    assert second.idempotency.enabled is False
    assert second.idempotency.key_fields == []


@pytest.mark.parametrize(
    ("cls", "tool_type"),
    [
        (FunctionToolSpec, ToolType.FUNCTION),
        (DbToolSpec, ToolType.DB),
        (HttpToolSpec, ToolType.HTTP),
    ],
)
def test_spec_subclasses_set_their_tool_type(
    cls: type[FunctionToolSpec], tool_type: ToolType
) -> None:
    assert cls(id="x-v1", tool_name="x").tool_type is tool_type


def test_tool_type_is_a_string_enum_and_accepts_its_value() -> None:
    assert ToolType.DB == "db"
    assert FunctionToolSpec(id="x", tool_name="x", tool_type="http").tool_type is ToolType.HTTP


def test_seed_db_spec_with_fixed_retry() -> None:
    spec = DbToolSpec(
        id="orders-v1",
        tool_name="create_order",
        parameters=[StringParameter(name="order_id", required=True)],
    )
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=3, recovery_timeout=15
    )
    spec.retry_policy = FixedRetryPolicy(max_attempts=2, delay_seconds=0.5)
    spec.idempotency.enabled = True
    spec.idempotency.key_fields = ["order_id"]
    compiled = spec.compile()
    assert spec.tool_type is ToolType.DB
    assert compiled.key_fields == ("order_id",)
    assert isinstance(compiled.retry_policy, FixedRetryPolicy)


# --------------------------------------------------------------------------- legacy configs


def test_legacy_retry_config_becomes_exponential_backoff() -> None:
    spec = payment_spec()
    spec.retry = RetryConfig(max_attempts=4, base_delay_s=0.5, max_delay_s=8.0)
    policy = spec.effective_retry_policy()
    assert isinstance(policy, ExponentialBackoffRetryPolicy)
    assert (policy.max_attempts, policy.base_delay, policy.max_delay) == (4, 0.5, 8.0)
    assert isinstance(spec.compile().retry_policy, ExponentialBackoffRetryPolicy)


def test_legacy_breaker_config_becomes_standard_breaker() -> None:
    spec = payment_spec()
    spec.circuit_breaker = CircuitBreakerConfig(failure_threshold=7, recovery_timeout_s=12.5)
    policy = spec.effective_circuit_breaker_policy()
    assert isinstance(policy, StandardCircuitBreakerPolicy)
    assert (policy.failure_threshold, policy.recovery_timeout) == (7, 12.5)


def test_disabled_legacy_breaker_config_is_no_breaker() -> None:
    spec = payment_spec()
    spec.circuit_breaker = CircuitBreakerConfig(enabled=False, failure_threshold=2)
    assert isinstance(spec.effective_circuit_breaker_policy(), NoOpCircuitBreakerPolicy)


def test_explicit_policies_win_over_legacy_configs() -> None:
    spec = payment_spec()
    spec.retry = RetryConfig(max_attempts=9)
    spec.circuit_breaker = CircuitBreakerConfig(failure_threshold=9)
    retry, breaker = NoRetryPolicy(), NoOpCircuitBreakerPolicy()
    spec.retry_policy = retry
    spec.circuit_breaker_policy = breaker
    assert spec.effective_retry_policy() is retry
    assert spec.effective_circuit_breaker_policy() is breaker
    compiled = spec.compile()
    assert compiled.retry_policy is retry
    assert compiled.breaker is breaker


def test_nothing_configured_means_no_retry_and_no_breaker() -> None:
    spec = payment_spec()
    assert isinstance(spec.effective_retry_policy(), NoRetryPolicy)
    assert isinstance(spec.effective_circuit_breaker_policy(), NoOpCircuitBreakerPolicy)
    compiled = spec.compile()
    assert isinstance(compiled.retry_policy, NoRetryPolicy)
    assert isinstance(compiled.breaker, NoOpCircuitBreakerPolicy)


# --------------------------------------------------------------------------- compile snapshot


def test_editing_the_spec_after_compile_changes_nothing_in_the_snapshot() -> None:
    spec = payment_spec()
    spec.idempotency.enabled = True
    spec.idempotency.key_fields = ["transaction_id"]
    compiled = spec.compile()
    before = (
        compiled.tool_name,
        compiled.timeout_s,
        compiled.max_concurrency,
        compiled.queue_size,
        compiled.overflow,
        compiled.idempotent,
        compiled.key_fields,
        compiled.idempotency_ttl_s,
        compiled.retry_policy,
        compiled.breaker,
        compiled.validator,
    )
    schema_before = compiled.validator.schema
    function_schema_before = dict(compiled.function_schema)

    spec.tool_name = "renamed"
    spec.timeout_s = 1
    spec.max_concurrency = 1
    spec.queue_size = 0
    spec.overflow = "reject"
    spec.idempotency.enabled = False
    spec.idempotency.key_fields.append("amount")
    spec.idempotency.ttl_s = 5
    spec.retry_policy = ExponentialBackoffRetryPolicy()
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy()
    spec.parameters.append(StringParameter(name="memo", required=True))
    spec.parameters[0] = IntegerParameter(name="transaction_id", required=True)

    after = (
        compiled.tool_name,
        compiled.timeout_s,
        compiled.max_concurrency,
        compiled.queue_size,
        compiled.overflow,
        compiled.idempotent,
        compiled.key_fields,
        compiled.idempotency_ttl_s,
        compiled.retry_policy,
        compiled.breaker,
        compiled.validator,
    )
    assert after == before
    assert compiled.validator.schema == schema_before
    assert compiled.function_schema == function_schema_before
    # The old snapshot still validates the old contract...
    compiled.validator.validate({"transaction_id": "tx-1", "amount": 1, "currency": "USD"})
    # ...while the edited spec validates the new one.
    with pytest.raises(ValidationError) as info:
        spec.validate({"transaction_id": "tx-1", "amount": 1, "currency": "USD"})
    assert {e.path for e in info.value.errors} == {"/transaction_id", "/memo"}
    assert spec.compile().tool_name == "renamed"


def test_compiled_spec_is_frozen() -> None:
    compiled = payment_spec().compile()
    with pytest.raises(AttributeError):
        compiled.timeout_s = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- bad specs


def _spec(**overrides: object) -> FunctionToolSpec:
    fields: dict[str, object] = {"id": "t-v1", "tool_name": "t"} | overrides
    return FunctionToolSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tool_name", ""),
        ("tool_name", "   "),
        ("tool_name", "has space"),
        ("tool_name", None),
        ("id", ""),
        ("timeout_s", 0),
        ("timeout_s", -1),
        ("timeout_s", True),
        ("max_concurrency", 0),
        ("max_concurrency", -3),
        ("queue_size", -1),
        ("overflow", "drop"),
        ("overflow", None),
        ("retry_policy", "exponential"),
        ("retry_policy", StandardCircuitBreakerPolicy()),
        ("circuit_breaker_policy", ExponentialBackoffRetryPolicy()),
        ("circuit_breaker_policy", 5),
        ("parameters", "transaction_id"),
        ("parameters", [StringParameter(name="a"), StringParameter(name="a")]),
        ("parameters", [{"name": "a"}]),
    ],
)
def test_bad_spec_field_fails_at_construction_and_at_assignment(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        _spec(**{field: value})
    spec = _spec()
    before = getattr(spec, field)
    with pytest.raises(ValueError, match=field):
        setattr(spec, field, value)
    assert getattr(spec, field) == before  # a rejected assignment leaves the old value


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("idempotency", True, "must be an IdempotencyConfig, got True; set its fields"),
        ("idempotency", {"enabled": True}, "must be an IdempotencyConfig"),
        ("tool_type", "bogus", "must be a ToolType or one of 'function', 'db', 'http'"),
        ("description", 3, "description must be a string, got 3"),
        ("retry", 5, "retry must be a RetryConfig or None, got 5"),
        ("retry", ExponentialBackoffRetryPolicy(), "retry must be a RetryConfig or None"),
        ("circuit_breaker", "x", "circuit_breaker must be a CircuitBreakerConfig or None"),
        ("idempotency_key_generator", 1, "must be an IIdempotencyKeyGenerator or None"),
        ("retry_policy", 1, "retry_policy must be an IRetryPolicy or None, got 1"),
        ("timeout_s", "30", "timeout_s must be a number > 0, got '30'"),
        ("max_concurrency", 2.5, "max_concurrency must be an integer >= 1, got 2.5"),
    ],
)
def test_a_wrong_field_type_is_one_line_naming_the_field(
    field: str, value: object, says: str
) -> None:
    """Construction and assignment both say what is wrong in one line (no attrs tuple)."""
    spec = _spec()
    before = getattr(spec, field)
    with pytest.raises(ValueError) as constructing:
        _spec(**{field: value})
    with pytest.raises(ValueError) as assigning:
        setattr(spec, field, value)
    for info in (constructing, assigning):
        assert len(info.value.args) == 1, info.value.args
        message = str(info.value)
        assert says in message
        assert "\n" not in message and "Attribute(" not in message
    assert getattr(spec, field) == before


def test_duplicate_parameter_message_names_the_parameter() -> None:
    with pytest.raises(ValueError, match="duplicate parameter name 'amount'"):
        _spec(parameters=[NumericParameter(name="amount"), IntegerParameter(name="amount")])


def test_duplicate_nested_property_names_fail() -> None:
    with pytest.raises(ValueError, match=r"properties of 'address'.*duplicate.*'city'"):
        ObjectParameter(
            name="address",
            properties=[StringParameter(name="city"), StringParameter(name="city")],
        )


def test_duplicate_added_after_construction_fails_at_validate() -> None:
    spec = _spec(parameters=[StringParameter(name="a")])
    spec.parameters.append(StringParameter(name="a"))
    with pytest.raises(ValueError, match="duplicate parameter name 'a'"):
        spec.validate({"a": "x"})


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: NumericParameter(name="x", minimum=5, maximum=1), "minimum"),
        (lambda: IntegerParameter(name="x", minimum=5, maximum=1), "minimum"),
        (lambda: NumericParameter(name="x", minimum=float("nan")), "minimum"),
        (lambda: NumericParameter(name="x", maximum=float("inf")), "maximum"),
        (lambda: NumericParameter(name="x", minimum=True), "minimum"),
        (lambda: StringParameter(name="s", min_length=3, max_length=2), "min_length"),
        (lambda: StringParameter(name="s", max_length=-1), "max_length"),
        (lambda: StringParameter(name="s", pattern="(unclosed"), "pattern"),
        (lambda: StringParameter(name="s", pattern="[a-"), "pattern"),
        # Valid for Python's re but not ECMA-262, the dialect jsonschema-rs judges with.
        (lambda: StringParameter(name="s", pattern=r"abc\Z"), "pattern"),
        (lambda: StringParameter(name="s", pattern="a{,3}"), "pattern"),
        (lambda: StringParameter(name="s", enum=["a", 1]), "enum"),
        (lambda: ArrayParameter(name="a", min_items=2, max_items=1), "min_items"),
        (lambda: StringParameter(name=""), "name"),
        (lambda: StringParameter(name="two words"), "name"),
        (lambda: ObjectParameter(name="o", properties=["not a parameter"]), "properties"),
    ],
)
def test_bad_parameter_fails_at_construction_naming_the_field(make: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RetryConfig(max_attempts=0), "max_attempts"),
        (lambda: RetryConfig(base_delay_s=-1), "base_delay_s"),
        (lambda: RetryConfig(max_delay_s=float("nan")), "max_delay_s"),
        (lambda: CircuitBreakerConfig(failure_threshold=0), "failure_threshold"),
        (lambda: CircuitBreakerConfig(recovery_timeout_s=-0.5), "recovery_timeout_s"),
        (lambda: IdempotencyConfig(ttl_s=0), "ttl_s"),
        (lambda: IdempotencyConfig(claim_ttl_s=-1), "claim_ttl_s"),
    ],
)
def test_bad_config_fails_naming_the_field(make: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()  # type: ignore[operator]


def test_idempotency_assignment_is_validated() -> None:
    spec = payment_spec()
    with pytest.raises(ValueError, match="ttl_s"):
        spec.idempotency.ttl_s = -5
    assert spec.idempotency.ttl_s == 86400
    with pytest.raises(ValueError, match="idempotency must be an IdempotencyConfig"):
        spec.idempotency = {"enabled": True}  # type: ignore[assignment]


def test_legacy_retry_config_assignment_is_validated() -> None:
    config = RetryConfig()
    with pytest.raises(ValueError, match="max_attempts"):
        config.max_attempts = 0


# --------------------------------------------------------------------------- JSON Schema


def full_spec() -> FunctionToolSpec:
    """A spec using every parameter kind and every constraint."""
    return FunctionToolSpec(
        id="order-v2",
        tool_name="place_order",
        description="Place an order",
        parameters=[
            StringParameter(
                name="sku",
                required=True,
                description="Stock unit",
                min_length=3,
                max_length=12,
                pattern="^[A-Z0-9-]+$",
            ),
            StringParameter(name="currency", required=True, enum=["USD", "EUR"]),
            NumericParameter(name="amount", required=True, minimum=0, maximum=10_000),
            NumericParameter(name="discount", exclusive_minimum=0, exclusive_maximum=1),
            IntegerParameter(name="quantity", minimum=1, default=1),
            BooleanParameter(name="gift"),
            ArrayParameter(
                name="tags",
                items=StringParameter(name="tag", max_length=8),
                min_items=1,
                max_items=3,
                unique_items=True,
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


def test_json_schema_maps_every_constraint() -> None:
    schema = full_spec().json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["sku", "currency", "amount"]
    props = schema["properties"]
    assert list(props) == [
        "sku",
        "currency",
        "amount",
        "discount",
        "quantity",
        "gift",
        "tags",
        "address",
        "lines",
    ]
    assert props["sku"] == {
        "type": "string",
        "description": "Stock unit",
        "minLength": 3,
        "maxLength": 12,
        "pattern": "^[A-Z0-9-]+$",
    }
    assert props["currency"] == {"type": "string", "enum": ["USD", "EUR"]}
    assert props["amount"] == {"type": "number", "minimum": 0, "maximum": 10_000}
    assert props["discount"] == {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
    assert props["quantity"] == {"type": "integer", "minimum": 1, "default": 1}
    assert props["gift"] == {"type": "boolean"}
    assert props["tags"] == {
        "type": "array",
        "items": {"type": "string", "maxLength": 8},
        "minItems": 1,
        "maxItems": 3,
        "uniqueItems": True,
    }
    assert props["address"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    assert props["lines"]["items"] == {
        "type": "object",
        "properties": {
            "sku": {"type": "string"},
            "qty": {"type": "integer", "minimum": 1},
        },
        "required": ["sku", "qty"],
        "additionalProperties": False,
    }


def test_required_is_listed_even_when_empty() -> None:
    schema = _spec(parameters=[StringParameter(name="a")]).json_schema()
    assert schema["required"] == []
    assert schema["additionalProperties"] is False


def test_nullable_parameter_allows_null() -> None:
    spec = _spec(parameters=[StringParameter(name="note", nullable=True)])
    assert spec.json_schema()["properties"]["note"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}]
    }
    spec.validate({"note": None})
    with pytest.raises(ValidationError):
        _spec(parameters=[StringParameter(name="note")]).validate({"note": None})


def test_open_nested_object_accepts_extra_keys() -> None:
    spec = _spec(
        parameters=[ObjectParameter(name="meta", additional_properties=True)],
    )
    assert spec.json_schema()["properties"]["meta"]["additionalProperties"] is True
    spec.validate({"meta": {"anything": [1, 2]}})


@pytest.mark.parametrize("make", [payment_spec, full_spec, lambda: _spec()])
def test_json_schema_is_valid_draft_2020_12(make: object) -> None:
    schema = make().json_schema()  # type: ignore[operator]
    jsonschema.Draft202012Validator.check_schema(schema)


def test_to_function_schema_is_what_llm_apis_take() -> None:
    spec = payment_spec()
    assert spec.to_function_schema() == {
        "name": "process_payment",
        "description": "Process payment with full resilience",
        "parameters": spec.json_schema(),
    }


def test_json_schema_is_a_fresh_copy() -> None:
    spec = payment_spec()
    spec.json_schema()["properties"].clear()
    assert set(spec.json_schema()["properties"]) == {"transaction_id", "amount", "currency"}
