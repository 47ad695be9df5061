"""The entry points' checks of a call's context, timeout and tool name (``_inputs``)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolvisor import ExecutionContext, InputLimits
from toolvisor._inputs import check_context, check_timeout, check_tool_name

# --------------------------------------------------------------------------- check_context


def test_check_context_passes_a_context_through_and_defaults_none() -> None:
    ctx = ExecutionContext(tenant_id="acme", idempotency_key="order-1")
    assert check_context(ctx) is ctx
    assert check_context(None) == ExecutionContext()


@pytest.mark.parametrize("ctx", [{"tenant_id": "acme"}, "acme", 42, ["acme"], ExecutionContext])
def test_check_context_refuses_what_is_not_a_context(ctx: object) -> None:
    with pytest.raises(TypeError, match=r"^ctx must be a toolvisor\.ExecutionContext or None"):
        check_context(ctx)


@pytest.mark.parametrize("field", ["tenant_id", "idempotency_key"])
@pytest.mark.parametrize("value", [b"acme", 42, ["acme"], 1.5, object()])
def test_check_context_refuses_non_string_keys(field: str, value: object) -> None:
    ctx = ExecutionContext(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=rf"^ctx\.{field} must be a str or None, got "):
        check_context(ctx)


@pytest.mark.parametrize("field", ["tenant_id", "idempotency_key"])
def test_check_context_refuses_too_long_or_invalid_unicode_keys(field: str) -> None:
    with pytest.raises(ValueError, match=rf"ctx\.{field} is 1,025 characters.*max_key_length"):
        check_context(ExecutionContext(**{field: "k" * 1025}))
    with pytest.raises(ValueError, match=rf"ctx\.{field} must be valid Unicode"):
        check_context(ExecutionContext(**{field: "tenant-\ud800"}))
    limits = InputLimits(max_key_length=8)
    assert check_context(ExecutionContext(**{field: "k" * 8}), limits).tenant_id in (None, "k" * 8)
    with pytest.raises(ValueError, match=r"is 9 characters long; the limit is 8"):
        check_context(ExecutionContext(**{field: "k" * 9}), limits)


def test_check_context_messages_stay_short_whatever_the_value() -> None:
    with pytest.raises(TypeError) as info:
        check_context(ExecutionContext(tenant_id=b"x" * 10_000_000))  # type: ignore[arg-type]
    assert len(str(info.value)) < 300
    assert "10,000,000 bytes" in str(info.value)


# --------------------------------------------------------------------------- check_timeout


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [(None, None), (1, 1.0), (0.25, 0.25), (10**9, 1e9), (math.inf, math.inf)],
)
def test_check_timeout_accepts_positive_numbers(timeout: Any, expected: float | None) -> None:
    assert check_timeout(timeout) == expected
    assert check_timeout(timeout) is None or isinstance(check_timeout(timeout), float)


@pytest.mark.parametrize("timeout", [True, False, "10", b"1", [1], 1j, Fraction(1, 2), object()])
def test_check_timeout_refuses_what_is_not_a_number(timeout: object) -> None:
    with pytest.raises(TypeError, match=r"^timeout must be a number of seconds or None, got "):
        check_timeout(timeout)


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        (math.nan, "got NaN"),
        (0, "must be > 0 seconds, got 0"),
        (0.0, "must be > 0 seconds"),
        (-1, "must be > 0 seconds, got -1"),
        (-math.inf, "must be > 0 seconds"),
        (10**400, r"timeout=<an integer of 1,329 bits> is too large.*None for no deadline"),
    ],
)
def test_check_timeout_refuses_nan_non_positive_and_overflowing(
    timeout: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_timeout(timeout)


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=10**300, max_value=10**500),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=5),
        st.fractions(),
        st.complex_numbers(),
        st.lists(st.integers(), max_size=2),
    )
)
def test_check_timeout_answers_anything_with_a_float_or_a_documented_error(
    timeout: object,
) -> None:
    error: Exception | None = None
    try:
        seconds = check_timeout(timeout)
    except (TypeError, ValueError) as exc:
        error = exc
    if error is not None:
        assert str(error).startswith("timeout")
    else:
        assert seconds is None or (isinstance(seconds, float) and seconds > 0)


# --------------------------------------------------------------------------- check_tool_name


def test_check_tool_name_passes_strings_and_refuses_the_rest() -> None:
    assert check_tool_name("lookup") == "lookup"
    for name in (["lookup"], None, b"lookup", 3, ("a",)):
        with pytest.raises(TypeError, match=r"^tool must be a tool's name \(a str\), got "):
            check_tool_name(name)
