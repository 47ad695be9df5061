"""The error hierarchy: structured fields, actionable messages, the stdlib bases users catch."""

from __future__ import annotations

import copy
import pickle

import pytest
import trio

import toolvisor
from toolvisor import (
    ActorCrashedError,
    CircuitBreakerPolicyFactory,
    CircuitOpenError,
    DeliveryFailedError,
    DuplicateToolError,
    FieldError,
    IdempotencyConflictError,
    IdempotencyOutcomeUnknownError,
    IdempotencyStoreError,
    PolicyNotFoundError,
    RateLimitedError,
    RemoteToolError,
    RetryPolicyFactory,
    SupervisorClosedError,
    ToolOverloadedError,
    ToolTimeoutError,
    ToolUnavailableError,
    ToolvisorError,
    UnknownToolError,
    ValidationError,
)
from toolvisor import errors as errors_module


def examples() -> list[ToolvisorError]:
    """One instance of every public error class."""
    return [
        ValidationError([FieldError("/amount", "required field is missing")], tool="pay"),
        CircuitOpenError("pay", retry_after=12.5),
        RateLimitedError("pay", retry_after=0.25),
        ToolTimeoutError("pay", 30),
        ToolOverloadedError("pay", max_concurrency=4, queue_size=10),
        ToolUnavailableError("pay", reason="restarted 4 times within 5 s"),
        ActorCrashedError("pay", RuntimeError("boom")),
        IdempotencyConflictError("tx-1", tool="pay"),
        IdempotencyOutcomeUnknownError("tx-1", tool="pay"),
        IdempotencyStoreError("SQLiteStore('tv.db')", "database is locked"),
        UnknownToolError("pya", ["pay", "lookup"]),
        DuplicateToolError("pay"),
        SupervisorClosedError(),
        PolicyNotFoundError("tenant_aware", ["standard", "adaptive", "noop"]),
        DeliveryFailedError("pay", deliveries=5),
        RemoteToolError("myapp.PaymentDeclined", "card expired", tool="pay"),
    ]


def test_every_error_class_is_covered_and_derives_from_the_base() -> None:
    public = {
        name
        for name in errors_module.__all__
        if isinstance(getattr(errors_module, name), type)
        and issubclass(getattr(errors_module, name), BaseException)
    }
    # RateLimitError is for tools to raise (a back end's answer), not one of toolvisor's own.
    assert {type(e).__name__ for e in examples()} | {"ToolvisorError", "RateLimitError"} == public
    for err in examples():
        assert isinstance(err, ToolvisorError)
        assert type(err).__doc__, f"{type(err).__name__} needs a docstring saying whose fault"


def test_validation_error_fields_and_message() -> None:
    problems = [FieldError("/amount", "required field is missing"), FieldError("", "bad")]
    err = ValidationError(problems, tool="process_payment")
    assert err.errors == tuple(problems)
    assert err.tool == "process_payment"
    assert isinstance(err, ValueError)
    text = str(err)
    assert "process_payment" in text
    assert "2 problems" in text
    assert "/amount: required field is missing" in text
    assert "<arguments>: bad" in text


def test_field_error_is_a_frozen_value() -> None:
    err = FieldError("/a/0", "too long")
    assert err == FieldError("/a/0", "too long")
    assert (err.path, err.message) == ("/a/0", "too long")
    assert str(err) == "/a/0: too long"
    with pytest.raises(AttributeError):
        err.path = "/b"  # type: ignore[misc]


def test_circuit_open_error_carries_retry_after() -> None:
    err = CircuitOpenError("pay", 12.5)
    assert (err.tool, err.retry_after) == ("pay", 12.5)
    assert "'pay'" in str(err)
    assert "12.5 s" in str(err)
    assert CircuitOpenError("pay", -3).retry_after == 0.0  # never negative


def test_tool_timeout_error_is_a_timeout_error() -> None:
    err = ToolTimeoutError("pay", 30)
    assert isinstance(err, TimeoutError)
    assert (err.tool, err.timeout_s, err.scope) == ("pay", 30, "attempt")
    assert "'pay'" in str(err)
    assert "30 s" in str(err)
    assert "timeout_s" in str(err)  # tells what to raise
    with pytest.raises(TimeoutError):
        raise ToolTimeoutError("pay", 1.5, scope="call")
    assert "timeout=" in str(ToolTimeoutError("pay", 1.5, scope="call"))


def test_overloaded_unavailable_crashed_fields() -> None:
    over = ToolOverloadedError("pay", max_concurrency=4, queue_size=10)
    assert (over.tool, over.max_concurrency, over.queue_size) == ("pay", 4, 10)
    assert "max_concurrency" in str(over)
    assert "'pay'" in str(over)

    down = ToolUnavailableError("pay", "restarted 4 times within 5 s")
    assert (down.tool, down.reason) == ("pay", "restarted 4 times within 5 s")
    assert "restarted 4 times" in str(down)

    cause = RuntimeError("boom")
    crashed = ActorCrashedError("pay", cause)
    assert (crashed.tool, crashed.cause) == ("pay", cause)
    assert "RuntimeError: boom" in str(crashed)
    assert ActorCrashedError("pay").cause is None


def test_idempotency_errors_fields() -> None:
    conflict = IdempotencyConflictError("tx-1", tool="pay")
    assert (conflict.key, conflict.tool) == ("tx-1", "pay")
    assert "'tx-1'" in str(conflict)
    assert "new key" in str(conflict)

    store = IdempotencyStoreError("redis://cache", "connection refused")
    assert (store.store, store.detail) == ("redis://cache", "connection refused")
    assert "not executed" in str(store)


def test_unknown_tool_error_lists_known_names() -> None:
    err = UnknownToolError("pya", ["pay", "lookup"])
    assert isinstance(err, LookupError)
    assert err.name == "pya"
    assert err.known == ("lookup", "pay")
    assert "'pya'" in str(err)
    assert "'lookup', 'pay'" in str(err)
    assert "none" in str(UnknownToolError("x", []))


def test_policy_not_found_error_lists_known_names() -> None:
    err = PolicyNotFoundError("tenant_aware", ["standard", "adaptive"])
    assert isinstance(err, LookupError)
    assert (err.name, err.known) == ("tenant_aware", ("adaptive", "standard"))
    assert "'tenant_aware'" in str(err)
    assert "adaptive, standard" in str(err)


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (CircuitBreakerPolicyFactory, {"standard", "adaptive", "noop"}),
        (RetryPolicyFactory, {"none", "fixed", "exponential"}),
    ],
)
def test_factories_raise_policy_not_found_naming_the_known_ones(
    factory: type[CircuitBreakerPolicyFactory], expected: set[str]
) -> None:
    with pytest.raises(PolicyNotFoundError) as info:
        factory.get_policy("no-such-policy")
    assert info.value.name == "no-such-policy"
    assert expected <= set(info.value.known)
    for name in expected:
        assert name in str(info.value)


def test_duplicate_and_closed_messages_say_what_to_do() -> None:
    dup = DuplicateToolError("pay")
    assert dup.name == "pay"
    assert "reconfigure()" in str(dup)
    assert "stop()" in str(dup)
    assert "new supervisor" in str(SupervisorClosedError())
    assert str(SupervisorClosedError("closing")).startswith("closing")


@pytest.mark.parametrize("err", examples(), ids=lambda e: type(e).__name__)
def test_errors_survive_pickle_and_copy(err: ToolvisorError) -> None:
    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err)):
        assert type(clone) is type(err)
        assert str(clone) == str(err)
        assert clone.args == err.args
        assert set(vars(clone)) == set(vars(err))


def test_errors_are_reexported_from_the_package() -> None:
    for err in examples():
        assert getattr(toolvisor, type(err).__name__) is type(err)


# --------------------------------------------------------------------------- RateLimitError


def test_rate_limit_error_is_public_and_not_a_toolvisor_error() -> None:
    import toolvisor.testing
    from toolvisor import RateLimitError

    assert toolvisor.testing.RateLimitError is RateLimitError  # one class, two import paths
    assert "RateLimitError" in toolvisor.__all__
    err = RateLimitError("429 Too Many Requests", retry_after=2.5)
    assert not isinstance(err, ToolvisorError)  # the back end's answer, raised by tools
    assert (str(err), err.retry_after) == ("429 Too Many Requests", 2.5)
    assert repr(err) == "RateLimitError('429 Too Many Requests', retry_after=2.5)"
    copied = pickle.loads(pickle.dumps(err))
    assert (type(copied), str(copied), copied.retry_after) == (RateLimitError, str(err), 2.5)


class _ClientRateLimited(toolvisor.RateLimitError):
    """A user's client exception, derived from the public base."""


async def test_a_subclass_is_waited_out_and_excluded_from_the_breaker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from toolvisor.testing import AttemptRecorder, FlakyTool

    spec = toolvisor.FunctionToolSpec(id="api-v1", tool_name="api")
    spec.circuit_breaker_policy = toolvisor.StandardCircuitBreakerPolicy(
        failure_threshold=2, exclude=[toolvisor.RateLimitError]
    )
    spec.retry_policy = toolvisor.FixedRetryPolicy(max_attempts=4, delay_seconds=0.1)
    tool = AttemptRecorder(
        FlakyTool([_ClientRateLimited(retry_after=3), _ClientRateLimited(retry_after=5)])
    )
    async with toolvisor.open_supervisor(grace_s=0) as sup:
        await sup.spawn(spec, tool)
        assert await sup.execute("api", {}) == {"status": "success"}
        # Two rate limits in a row with failure_threshold=2: excluded, so still closed.
        assert sup.stats("api").breaker_state == "closed"
    assert tool.gaps() == pytest.approx([3.0, 5.0])  # at least retry_after, not 0.1 s


# --------------------------------------------------------------------------- bounded texts

HUGE = "z" * 10_000_000


def huge_examples() -> list[ToolvisorError]:
    """Every error whose message shows something the caller sent, fed 10 MB of it."""
    return [
        ValidationError([FieldError(f"/p{i}", HUGE) for i in range(50)], tool=HUGE),
        ToolUnavailableError("pay", reason=HUGE),
        ActorCrashedError("pay", RuntimeError(HUGE)),
        IdempotencyConflictError(HUGE, tool="pay"),
        IdempotencyStoreError("SQLiteStore('tv.db')", HUGE),
        UnknownToolError(HUGE, [f"tool-{i}" for i in range(10_000)]),
        DuplicateToolError(HUGE),
        PolicyNotFoundError(HUGE, [f"policy-{i}" for i in range(10_000)]),
    ]


@pytest.mark.parametrize("err", huge_examples(), ids=lambda e: type(e).__name__)
def test_messages_stay_a_few_kb_whatever_the_input(err: ToolvisorError) -> None:
    assert len(str(err)) < 4096
    assert "..." in str(err)


def test_validation_error_keeps_every_problem_in_errors() -> None:
    err = huge_examples()[0]
    assert isinstance(err, ValidationError)
    assert len(err.errors) == 50
    assert err.errors[0].message == HUGE  # the structured detail is whole
    assert "and 40 more (see .errors)" in str(err)


def test_shown_cuts_values_and_says_how_long_they_were() -> None:
    assert errors_module.shown("short") == "'short'"
    assert errors_module.shown("x" * 1000) == f"{'x' * 80!r}... (1,000 characters)"
    assert errors_module.shown(b"\x00" * 500).endswith("... (500 bytes)")
    assert errors_module.shown(10**400) == "<an integer of 1,329 bits>"

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert errors_module.shown(Hostile()) == "<Hostile whose repr() raised RuntimeError>"
    assert len(errors_module.shown(list(range(10_000)))) < 200


def test_store_error_says_whether_the_tool_ran() -> None:
    not_run = IdempotencyStoreError("S", "claim failed")
    ran = IdempotencyStoreError("S", "complete failed", tool_ran=True)
    unknown = IdempotencyStoreError("S", "the connection dropped", tool_ran=None)
    assert not_run.tool_ran is False
    assert str(not_run).endswith("; the call was not executed")
    assert str(ran).endswith("; the tool ran for this call")
    assert str(unknown).endswith("; whether the tool ran for this call is unknown")
    again = pickle.loads(pickle.dumps(ran))
    assert (again.tool_ran, str(again)) == (True, str(ran))


def test_remote_errors_carry_their_fields_in_the_message() -> None:
    dead = DeliveryFailedError("pay", deliveries=3)
    assert (dead.tool, dead.deliveries) == ("pay", 3)
    assert "3 times" in str(dead) and "dead-letter" in str(dead)
    err = RemoteToolError("myapp.PaymentDeclined", "card expired", tool="pay")
    assert (err.type_name, err.message, err.tool) == (
        "myapp.PaymentDeclined",
        "card expired",
        "pay",
    )
    assert str(err) == "tool 'pay' raised myapp.PaymentDeclined: card expired"
    assert str(RemoteToolError("ValueError", "bad")) == "ValueError: bad"
