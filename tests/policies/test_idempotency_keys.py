"""Idempotency key generators: determinism, namespacing, injectivity, errors."""

from __future__ import annotations

import hashlib
import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolvisor.errors import ValidationError
from toolvisor.policies import (
    FieldBasedIdempotencyKeyGenerator,
    HashIdempotencyKeyGenerator,
    IIdempotencyKeyGenerator,
    default_key_generator,
    fingerprint,
)

FIELDS = FieldBasedIdempotencyKeyGenerator()
HASH = HashIdempotencyKeyGenerator()

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
args_strategy = st.dictionaries(st.text(max_size=5), json_values, max_size=4)
names = st.text(max_size=6)
tenants = st.none() | st.text(max_size=6)


def test_fingerprint_is_sha256_of_canonical_json() -> None:
    args = {"b": [1, 2.5], "a": "é"}
    canonical = '{"a":"é","b":[1,2.5]}'
    assert fingerprint(args) == hashlib.sha256(canonical.encode()).hexdigest()
    assert canonical == json.dumps(
        args, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


@given(args=args_strategy)
def test_fingerprint_matches_hashlib_for_any_arguments(args: dict[str, Any]) -> None:
    # The fingerprint hashes with CPython's own SHA-256 where it has one: same digests.
    canonical = json.dumps(
        args, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    expected = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    assert fingerprint(args) == expected
    assert HASH.generate("t", args).endswith(":" + expected)


def test_fingerprint_of_a_mapping_that_is_not_a_dict() -> None:
    args = {"b": 1, "a": [True, None]}
    assert fingerprint(MappingProxyType(args)) == fingerprint(args)
    with pytest.raises(ValidationError):
        fingerprint(MappingProxyType({"x": object()}))


@given(args=args_strategy)
def test_hash_key_ignores_key_order(args: dict[str, Any]) -> None:
    reversed_args = dict(reversed(list(args.items())))
    assert HASH.generate("t", args) == HASH.generate("t", reversed_args)
    assert fingerprint(args) == fingerprint(reversed_args)


def test_hash_key_depends_on_every_argument() -> None:
    assert HASH.generate("t", {"a": 1, "b": 2}) != HASH.generate("t", {"a": 1, "b": 3})


def test_field_key_uses_only_the_key_fields() -> None:
    one = FIELDS.generate("pay", {"tx": "1", "amount": 5}, key_fields=["tx"])
    two = FIELDS.generate("pay", {"tx": "1", "amount": 9}, key_fields=["tx"])
    other = FIELDS.generate("pay", {"tx": "2", "amount": 5}, key_fields=["tx"])
    assert one == two != other
    both = FIELDS.generate("pay", {"tx": "1", "amount": 5}, key_fields=["tx", "amount"])
    assert both == FIELDS.generate("pay", {"amount": 5, "tx": "1"}, key_fields=["amount", "tx"])


def test_missing_fields_are_all_named() -> None:
    with pytest.raises(ValidationError) as info:
        FIELDS.generate("pay", {"tx": "1"}, key_fields=["tx", "order_id", "a/b"])
    assert [e.path for e in info.value.errors] == ["/order_id", "/a~1b"]
    assert info.value.tool == "pay"


def test_empty_key_fields_is_an_error() -> None:
    with pytest.raises(ValidationError, match="key_fields"):
        FIELDS.generate("pay", {"tx": "1"})


def test_non_json_arguments_are_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        HASH.generate("t", {"x": float("nan")})
    with pytest.raises(ValidationError):
        fingerprint({"x": object()})


@pytest.mark.parametrize("gen", [FIELDS, HASH], ids=["fields", "hash"])
def test_tenants_never_share_keys(gen: IIdempotencyKeyGenerator) -> None:
    args = {"tx": "1"}
    keys = {
        gen.generate("pay", args, key_fields=["tx"], tenant_id=tenant)
        for tenant in [None, "", "-", "acme", "globex", "t=acme"]
    }
    assert len(keys) == 6


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("a:b", "c"), ("a", "b:c")),
        (("a", None), ("a:-", None)),
        (("a%3A", None), ("a:", None)),
        (("x", "t=y"), ("x", "t%3Dy")),
    ],
)
def test_colons_and_escapes_do_not_collide(
    a: tuple[str, str | None], b: tuple[str, str | None]
) -> None:
    for gen in (FIELDS, HASH):
        key_a = gen.generate(a[0], {"k": 1}, key_fields=["k"], tenant_id=a[1])
        key_b = gen.generate(b[0], {"k": 1}, key_fields=["k"], tenant_id=b[1])
        assert key_a != key_b


@given(
    tool_a=names,
    tenant_a=tenants,
    args_a=args_strategy,
    tool_b=names,
    tenant_b=tenants,
    args_b=args_strategy,
)
def test_hash_keys_are_injective(
    tool_a: str,
    tenant_a: str | None,
    args_a: dict[str, Any],
    tool_b: str,
    tenant_b: str | None,
    args_b: dict[str, Any],
) -> None:
    same_input = (tool_a, tenant_a, fingerprint(args_a)) == (tool_b, tenant_b, fingerprint(args_b))
    same_key = HASH.generate(tool_a, args_a, tenant_id=tenant_a) == HASH.generate(
        tool_b, args_b, tenant_id=tenant_b
    )
    assert same_input == same_key


@given(tool=names, tenant=tenants, value=json_values)
def test_keys_are_deterministic_and_have_five_parts(
    tool: str, tenant: str | None, value: Any
) -> None:
    key = FIELDS.generate(tool, {"id": value}, key_fields=["id"], tenant_id=tenant)
    assert key == FIELDS.generate(tool, {"id": value}, key_fields=["id"], tenant_id=tenant)
    assert len(key.split(":")) == 5
    assert key.startswith("idem:")


def test_default_key_generator() -> None:
    assert isinstance(default_key_generator(["order_id"]), FieldBasedIdempotencyKeyGenerator)
    assert isinstance(default_key_generator([]), HashIdempotencyKeyGenerator)
    assert isinstance(default_key_generator(()), IIdempotencyKeyGenerator)
