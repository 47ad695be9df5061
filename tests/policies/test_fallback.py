"""FallbackPolicy on its own: what it replaces, with what, and what it refuses to be."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import toolvisor as tv
from toolvisor.policies import FallbackPolicy


class OutageError(Exception):
    """A dependency's failure."""


def test_value_replaces_every_exception_by_default() -> None:
    policy = FallbackPolicy(value={"hits": []})
    assert policy.on == (Exception,)
    errors = [OutageError("down"), tv.CircuitOpenError("t", 1.0), tv.ToolTimeoutError("t", 2.0)]
    for error in errors:
        assert policy.replaces(error)
        assert policy.value_for(error) == {"hits": []}


def test_none_is_a_value() -> None:
    policy = FallbackPolicy(value=None)
    assert policy.replaces(OutageError()) and policy.value_for(OutageError()) is None


def test_fn_is_called_with_the_error_it_replaces() -> None:
    seen: list[Exception] = []

    def from_cache(error: Exception) -> str:
        seen.append(error)
        return f"cached ({type(error).__name__})"

    policy = FallbackPolicy(fn=from_cache)
    error = OutageError("down")
    assert policy.value_for(error) == "cached (OutageError)"
    assert seen == [error]


def test_on_chooses_what_is_replaced() -> None:
    policy = FallbackPolicy(value=0, on=(tv.CircuitOpenError, tv.ToolTimeoutError))
    assert policy.replaces(tv.CircuitOpenError("t", 1.0))
    assert policy.replaces(tv.ToolTimeoutError("t", 1.0, scope="call"))
    assert not policy.replaces(OutageError())
    assert not policy.replaces(tv.RateLimitedError("t", 1.0))


def test_a_single_class_or_a_list_is_taken_as_a_tuple() -> None:
    assert FallbackPolicy(value=0, on=OutageError).on == (OutageError,)
    assert FallbackPolicy(value=0, on=[OutageError, KeyError]).on == (OutageError, KeyError)


def test_validation_errors_are_never_replaced() -> None:
    policy = FallbackPolicy(value=0)
    error = tv.ValidationError([tv.FieldError("x", "is required")])
    assert isinstance(error, Exception)
    assert not policy.replaces(error)
    # ValueError covers ValidationError (it subclasses it): still never replaced.
    assert not FallbackPolicy(value=0, on=(ValueError,)).replaces(error)
    assert FallbackPolicy(value=0, on=(ValueError,)).replaces(ValueError("other"))


async def test_cancellations_and_interrupts_are_never_replaced() -> None:
    policy = FallbackPolicy(value=0)
    caught: list[BaseException] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as cancelled:
            caught.append(cancelled)
            raise
    assert isinstance(caught[0], trio.Cancelled) and not policy.replaces(caught[0])
    assert not policy.replaces(KeyboardInterrupt())
    assert not policy.replaces(SystemExit(1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of 'value'.*got neither"),
        ({"value": 1, "fn": lambda e: 2}, "exactly one of 'value'.*got both"),
        ({"fn": 3}, "'fn' must be a function"),
        ({"value": 1, "on": ()}, "'on' must be a non-empty tuple"),
        ({"value": 1, "on": "Exception"}, "'on' must be a non-empty tuple"),
        ({"value": 1, "on": (OutageError, 3)}, "'on' must hold exception classes, got 3"),
        ({"value": 1, "on": (BaseException,)}, "'on' holds BaseException, which is not an"),
        ({"value": 1, "on": (trio.Cancelled,)}, "never replaces a cancellation"),
        ({"value": 1, "on": (KeyboardInterrupt,)}, "never replaces a cancellation"),
        ({"value": 1, "on": (tv.ValidationError,)}, "never hides bad arguments"),
    ],
)
def test_bad_construction_names_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        FallbackPolicy(**kwargs)


def test_an_async_fn_is_refused() -> None:
    async def fetch(error: Exception) -> int:
        return 1

    class AsyncCallable:
        async def __call__(self, error: Exception) -> int:
            return 1

    for fn in (fetch, AsyncCallable()):
        with pytest.raises(TypeError, match=r"'fn' must be a plain function.*coroutine"):
            FallbackPolicy(fn=fn)


def test_frozen_with_a_readable_repr() -> None:
    policy = FallbackPolicy(value=[], on=(OutageError,))
    assert repr(policy) == f"FallbackPolicy(value=[], fn=None, on=({OutageError!r},))"
    assert "value=<unset>" in repr(FallbackPolicy(fn=str))
    with pytest.raises(AttributeError):
        policy.value = 1  # type: ignore[misc]


def test_spec_field_validates() -> None:
    spec = tv.FunctionToolSpec(id="a-v1", tool_name="a")
    assert spec.fallback is None
    spec.fallback = FallbackPolicy(value=1)
    assert spec.compile().fallback is spec.fallback
    with pytest.raises(ValueError, match="fallback must be a FallbackPolicy or None, got 1"):
        spec.fallback = 1  # type: ignore[assignment]
    spec.fallback = None
    assert spec.compile().fallback is None
