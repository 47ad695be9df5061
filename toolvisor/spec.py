"""Tool specs: what a tool is called, what it takes, and which policies guard it.

Specs are mutable attrs classes, so the seed's style works::

    spec = FunctionToolSpec(id="payment-v1", tool_name="process_payment",
                            description="Process payment",
                            parameters=[StringParameter(name="transaction_id", required=True)])
    spec.idempotency.enabled = True
    spec.retry_policy = ExponentialBackoffRetryPolicy(max_attempts=3)

Every assignment is validated (a bad value raises ``ValueError`` naming the field).
Spawning a tool takes a snapshot (:meth:`ToolSpec.compile`): editing the spec later
changes nothing until ``Supervisor.reconfigure``.

Parameters are frozen values. Validation of a call's arguments uses the spec's JSON
Schema, compiled once by jsonschema-rs; defaults declared on parameters are documented in
the schema but not filled into the arguments (validation never mutates them).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import jsonschema_rs

from ._chaos import ChaosStrategy
from ._validation import ArgumentValidator, InputLimits
from .policies.budget import RetryBudget
from .policies.circuit_breaker import (
    ICircuitBreakerPolicy,
    NoOpCircuitBreakerPolicy,
    StandardCircuitBreakerPolicy,
)
from .policies.idempotency import (
    IIdempotencyKeyGenerator,
    default_key_generator,
    generator_takes_ctx,
)
from .policies.rate_limit import RateLimit
from .policies.retry import ExponentialBackoffRetryPolicy, IRetryPolicy, NoRetryPolicy

__all__ = [
    "ArrayParameter",
    "BooleanParameter",
    "CircuitBreakerConfig",
    "CompiledSpec",
    "DbToolSpec",
    "ExecutionContext",
    "FunctionToolSpec",
    "HttpToolSpec",
    "IdempotencyConfig",
    "IntegerParameter",
    "NumericParameter",
    "ObjectParameter",
    "Parameter",
    "RetryConfig",
    "StringParameter",
    "ToolSpec",
    "ToolType",
]


class ToolType(enum.StrEnum):
    """What kind of back end a tool talks to (informational; all run the same way)."""

    FUNCTION = "function"
    DB = "db"
    HTTP = "http"


# --------------------------------------------------------------------------- validators


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
    ):
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def _at_least_one(_inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


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


# --------------------------------------------------------------------------- parameters


def _one_of(name: str, allowed: tuple[str, ...]) -> Callable[[object, object, object], None]:
    def check(_inst: object, _attribute: object, value: object) -> None:
        if value not in allowed:
            raise ValueError(
                f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            )

    return check


def _optional_tuple(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen(kw_only=True)
class Parameter:
    """Base of the parameter classes; see the subclasses."""

    name: str = attrs.field(validator=_name)
    required: bool = False
    description: str = ""
    default: Any = None
    nullable: bool = False

    _json_type: str = attrs.field(default="", init=False, repr=False)

    def to_schema(self) -> dict[str, Any]:
        """This parameter's JSON Schema."""
        schema: dict[str, Any] = {
            "type": [self._json_type, "null"] if self.nullable else self._json_type
        }
        if self.description:
            schema["description"] = self.description
        if self.default is not None:
            schema["default"] = self.default
        schema.update(self._constraints())
        return schema

    def _constraints(self) -> dict[str, Any]:
        return {}


def _check_bounds(lo: float | None, hi: float | None, what: str) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min{what} ({lo}) must not exceed max{what} ({hi})")


@attrs.frozen(kw_only=True)
class StringParameter(Parameter):
    """A string, optionally limited by ``enum``, length bounds or a regex ``pattern``."""

    enum: Sequence[str] | None = attrs.field(default=None, converter=_optional_tuple)
    min_length: int | None = attrs.field(default=None, validator=_optional_count)
    max_length: int | None = attrs.field(default=None, validator=_optional_count)
    pattern: str | None = None
    _json_type: str = attrs.field(default="string", init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_bounds(self.min_length, self.max_length, "_length")
        if self.pattern is not None:
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
        if self.enum is not None and not all(isinstance(e, str) for e in self.enum):
            raise ValueError(f"enum of {self.name!r} must hold strings only, got {self.enum!r}")

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
    enum: Sequence[float] | None = attrs.field(default=None, converter=_optional_tuple)
    _json_type: str = attrs.field(default="number", init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_bounds(self.minimum, self.maximum, "imum")

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

    def __attrs_post_init__(self) -> None:
        _check_bounds(self.min_items, self.max_items, "_items")

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

    def __attrs_post_init__(self) -> None:
        _unique_names(self.properties, f"properties of {self.name!r}")

    def _constraints(self) -> dict[str, Any]:
        return _object_schema(self.properties, self.additional_properties, with_type=False)


def _unique_names(params: Sequence[Parameter], where: str) -> None:
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
    schema: dict[str, Any] = {"type": "object"} if with_type else {}
    schema["properties"] = {p.name: p.to_schema() for p in params}
    required = [p.name for p in params if p.required]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = additional
    return schema


# --------------------------------------------------------------------------- configs


@attrs.define(kw_only=True)
class IdempotencyConfig:
    """How a tool deduplicates calls (one per spec).

    Attributes:
        enabled: deduplicate calls by key.
        persist_result: keep results in the supervisor's store (use a persistent store,
            SQLiteStore or RedisStore, for results to survive restarts).
        ttl_s: how long a success (or an unknown outcome) is remembered (default 24 h,
            as Stripe does).
        key_fields: the argument names the key is built from; empty means a hash of all
            arguments.
        claim_ttl_s: the lease of an execution in progress: its holder renews it while
            it lives (queued, running, waiting between attempts), so it only matters
            when the holder dies (a crash, SIGKILL): the key is then free again at most
            this long after. None means 30 s.
        on_unknown_outcome: what an attempt that started and was cut (per-attempt
            timeout, the call's deadline, the caller's cancellation, an actor crash)
            means, since it may have had its effect. ``"fail"`` (default): no further
            attempt; the key is recorded as *unknown* for ``ttl_s`` and later calls get
            ``IdempotencyOutcomeUnknownError`` without running, until
            ``Supervisor.forget``. ``"retry"``: the call may retry and later calls may run
            again (for tools that pass ``ctx.idempotency_key`` to a service that
            deduplicates on it).
    """

    enabled: bool = False
    persist_result: bool = False
    ttl_s: float = attrs.field(default=86400.0, validator=_positive)
    key_fields: list[str] = attrs.field(factory=list)
    claim_ttl_s: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_positive)
    )
    on_unknown_outcome: Literal["fail", "retry"] = attrs.field(
        default="fail", validator=_one_of("on_unknown_outcome", ("fail", "retry"))
    )


@attrs.define(kw_only=True)
class RetryConfig:
    """Legacy retry configuration; becomes an ``ExponentialBackoffRetryPolicy``."""

    max_attempts: int = attrs.field(default=3, validator=_at_least_one)
    base_delay_s: float = attrs.field(default=1.0, validator=_non_negative)
    max_delay_s: float = attrs.field(default=30.0, validator=_non_negative)

    def to_policy(self) -> IRetryPolicy:
        """The equivalent pluggable policy."""
        return ExponentialBackoffRetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.base_delay_s,
            max_delay=max(self.max_delay_s, self.base_delay_s),
        )


@attrs.define(kw_only=True)
class CircuitBreakerConfig:
    """Legacy breaker configuration; becomes a ``StandardCircuitBreakerPolicy`` if enabled."""

    enabled: bool = True
    failure_threshold: int = attrs.field(default=5, validator=_at_least_one)
    recovery_timeout_s: float = attrs.field(default=30.0, validator=_non_negative)

    def to_policy(self) -> ICircuitBreakerPolicy:
        """The equivalent pluggable policy (a no-op one when disabled)."""
        if not self.enabled:
            return NoOpCircuitBreakerPolicy()
        return StandardCircuitBreakerPolicy(
            failure_threshold=self.failure_threshold, recovery_timeout=self.recovery_timeout_s
        )


@attrs.frozen(kw_only=True)
class ExecutionContext:
    """Who is calling: passed to tools that take a second argument.

    Attributes:
        tenant_id: namespaces idempotency keys, so tenants never share results.
        request_id: the caller's own identifier of the request (for its logs).
        metadata: anything else the caller wants the tool to see.
        idempotency_key: the caller's own idempotency key for this call (it replaces the
            generated one; still namespaced by tool and tenant). A tool that takes ``ctx``
            sees the call's key here (the caller's or the generated one; None when the tool
            is not idempotent), to pass it to the service it calls.
        attempt: the 1-based number of the attempt the tool is running (0 outside one).
    """

    tenant_id: str | None = None
    request_id: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    idempotency_key: str | None = None
    attempt: int = 0


# --------------------------------------------------------------------------- specs


def _parameters(_inst: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, list | tuple):
        raise ValueError(f"parameters must be a list of Parameter, got {value!r}")
    _unique_names(value, "parameters")


def _overflow(_inst: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in ("wait", "reject"):
        raise ValueError(f"overflow must be 'wait' or 'reject', got {value!r}")


def _a(name: str) -> str:
    """``name`` with its indefinite article ("an IRetryPolicy", "a RetryConfig")."""
    return f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"


def _is_policy(kind: type[Any], name: str) -> Any:
    def check(_inst: object, _attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not isinstance(value, kind):
            raise ValueError(f"{name} must be {_a(kind.__name__)} or None, got {value!r}")

    return check


def _optional_instance(kind: type[Any], hint: str = "") -> Any:
    """A validator: ``value`` is a ``kind`` or None; the message names the field."""

    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not isinstance(value, kind):
            raise ValueError(
                f"{attribute.name} must be {_a(kind.__name__)} or None, got {value!r}{hint}"
            )

    return check


def _chaos(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, list):
        raise ValueError(
            f"{attribute.name} must be a list of toolvisor.testing.chaos strategies, got {value!r}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, ChaosStrategy):
            raise ValueError(
                f"{attribute.name}[{i}] must be a chaos strategy (ChaosFault, ChaosLatency, "
                f"ChaosOutcome, or an object with `async def around(attempt)`), got {item!r}"
            )


def _description(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{attribute.name} must be a string, got {value!r}")


def _idempotency(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, IdempotencyConfig):
        raise ValueError(
            f"{attribute.name} must be an IdempotencyConfig, got {value!r}; set its fields "
            "instead (spec.idempotency.enabled = True)"
        )


def _tool_type(value: str) -> ToolType:
    try:
        return ToolType(value)
    except ValueError:
        known = ", ".join(repr(t.value) for t in ToolType)
        raise ValueError(f"tool_type must be a ToolType or one of {known}, got {value!r}") from None


@attrs.define(kw_only=True)
class ToolSpec:
    """A tool's name, arguments and resilience policies.

    Attributes:
        id: a stable identifier of this version of the tool.
        tool_name: the routing name, unique per supervisor.
        timeout_s: the budget of one attempt (``ToolTimeoutError`` past it; retryable).
        max_concurrency: bulkhead: attempts of this tool running at once.
        queue_size: calls that may wait in the actor's inbox beyond those running.
        overflow: with a full inbox, ``"wait"`` (backpressure until the call's deadline)
            or ``"reject"`` (``ToolOverloadedError`` at once).
        retry_policy / circuit_breaker_policy: None means the legacy ``retry`` /
            ``circuit_breaker`` configs decide, and without those: no retry, no breaker.
        input_limits: bounds on a call's arguments (nesting depth, size, string length),
            checked before the schema; see :class:`InputLimits` for the defaults.
        retry_budget: a :class:`RetryBudget` capping this tool's retries as a share of
            its calls (one instance on several specs is one shared budget); None: the
            retry policy alone decides.
        rate_limit: a :class:`RateLimit` (token bucket) the tool's calls take a token
            from before they reach its inbox; None: no limit.
        chaos: ``toolvisor.testing.chaos`` strategies wrapping each attempt (faults,
            latency, made-up outcomes; the first outermost); empty: none.
    """

    id: str = attrs.field(validator=_name)
    tool_name: str = attrs.field(validator=_name)
    description: str = attrs.field(default="", validator=_description)
    tool_type: ToolType = attrs.field(default=ToolType.FUNCTION, converter=_tool_type)
    parameters: list[Parameter] = attrs.field(factory=list, validator=_parameters)
    timeout_s: float = attrs.field(default=30.0, validator=_positive)
    idempotency: IdempotencyConfig = attrs.field(factory=IdempotencyConfig, validator=_idempotency)
    idempotency_key_generator: IIdempotencyKeyGenerator | None = attrs.field(
        default=None,
        validator=_optional_instance(
            IIdempotencyKeyGenerator, " (an object with a generate(tool_name, args, ...) method)"
        ),
    )
    circuit_breaker_policy: ICircuitBreakerPolicy | None = attrs.field(
        default=None, validator=_is_policy(ICircuitBreakerPolicy, "circuit_breaker_policy")
    )
    retry_policy: IRetryPolicy | None = attrs.field(
        default=None, validator=_is_policy(IRetryPolicy, "retry_policy")
    )
    retry: RetryConfig | None = attrs.field(default=None, validator=_optional_instance(RetryConfig))
    circuit_breaker: CircuitBreakerConfig | None = attrs.field(
        default=None, validator=_optional_instance(CircuitBreakerConfig)
    )
    max_concurrency: int = attrs.field(default=16, validator=_at_least_one)
    queue_size: int = attrs.field(default=1024, validator=_optional_count)
    overflow: Literal["wait", "reject"] = attrs.field(default="wait", validator=_overflow)
    input_limits: InputLimits = attrs.field(
        factory=InputLimits, validator=attrs.validators.instance_of(InputLimits)
    )
    retry_budget: RetryBudget | None = attrs.field(
        default=None, validator=_optional_instance(RetryBudget, " (a toolvisor.RetryBudget)")
    )
    rate_limit: RateLimit | None = attrs.field(
        default=None, validator=_optional_instance(RateLimit, " (a toolvisor.RateLimit)")
    )
    chaos: list[ChaosStrategy] = attrs.field(factory=list, validator=_chaos)

    _validator_cache: tuple[tuple[Parameter, ...], ArgumentValidator] | None = attrs.field(
        default=None, init=False, repr=False, eq=False
    )

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments object (``additionalProperties: false``)."""
        return _object_schema(self.parameters, additional=False)

    def to_function_schema(self) -> dict[str, Any]:
        """``{"name", "description", "parameters"}``, as LLM function-calling APIs take it."""
        return {
            "name": self.tool_name,
            "description": self.description,
            "parameters": self.json_schema(),
        }

    def validate(self, args: object) -> None:
        """Check ``args``; raise ``ValidationError`` listing every problem. Never mutates."""
        self._argument_validator().validate(args)

    def _argument_validator(self) -> ArgumentValidator:
        params = tuple(self.parameters)
        cached = self._validator_cache
        if (
            cached is None
            or len(cached[0]) != len(params)
            or any(a is not b for a, b in zip(cached[0], params, strict=True))
            or cached[1].tool != self.tool_name
            or cached[1].limits != self.input_limits
        ):
            _unique_names(params, "parameters")
            validator = ArgumentValidator(self.json_schema(), self.tool_name, self.input_limits)
            cached = (params, validator)
            self._validator_cache = cached
        return cached[1]

    def effective_retry_policy(self) -> IRetryPolicy:
        """The policy that runs: the explicit one, else the legacy config's, else none."""
        if self.retry_policy is not None:
            return self.retry_policy
        if self.retry is not None:
            return self.retry.to_policy()
        return NoRetryPolicy()

    def effective_circuit_breaker_policy(self) -> ICircuitBreakerPolicy:
        """The breaker that runs: the explicit one, else the legacy config's, else none."""
        if self.circuit_breaker_policy is not None:
            return self.circuit_breaker_policy
        if self.circuit_breaker is not None:
            return self.circuit_breaker.to_policy()
        return NoOpCircuitBreakerPolicy()

    def compile(self) -> CompiledSpec:
        """Take the immutable snapshot a tool's actor runs with."""
        idem = self.idempotency
        validator = self._argument_validator()
        generator = self.idempotency_key_generator or default_key_generator(idem.key_fields)
        return CompiledSpec(
            tool_name=self.tool_name,
            spec_id=self.id,
            timeout_s=float(self.timeout_s),
            validator=validator,
            retry_policy=self.effective_retry_policy(),
            retry_budget=self.retry_budget,
            rate_limit=self.rate_limit,
            chaos=tuple(self.chaos),
            breaker=self.effective_circuit_breaker_policy(),
            max_concurrency=self.max_concurrency,
            queue_size=self.queue_size,
            overflow=self.overflow,
            idempotent=idem.enabled,
            persist_result=idem.persist_result,
            idempotency_ttl_s=float(idem.ttl_s),
            key_fields=tuple(idem.key_fields),
            claim_ttl_s=float(idem.claim_ttl_s or DEFAULT_LEASE_S),
            on_unknown_outcome=idem.on_unknown_outcome,
            key_generator=generator,
            key_generator_takes_ctx=generator_takes_ctx(generator),
            key_for_fingerprint=getattr(generator, "key_for_fingerprint", None),
            function_schema={  # shares the validator's schema: no second copy per tool
                "name": self.tool_name,
                "description": self.description,
                "parameters": validator.schema,
            },
        )


@attrs.define(kw_only=True)
class FunctionToolSpec(ToolSpec):
    """A tool backed by a Python async function (``tool_type`` FUNCTION)."""

    tool_type: ToolType = attrs.field(default=ToolType.FUNCTION, converter=_tool_type)


@attrs.define(kw_only=True)
class DbToolSpec(ToolSpec):
    """A tool that talks to a database (``tool_type`` DB)."""

    tool_type: ToolType = attrs.field(default=ToolType.DB, converter=_tool_type)


@attrs.define(kw_only=True)
class HttpToolSpec(ToolSpec):
    """A tool that calls an HTTP API (``tool_type`` HTTP)."""

    tool_type: ToolType = attrs.field(default=ToolType.HTTP, converter=_tool_type)


@attrs.frozen(kw_only=True)
class CompiledSpec:
    """The immutable snapshot of a spec that an actor (or executor) runs with."""

    tool_name: str
    spec_id: str
    timeout_s: float
    validator: ArgumentValidator
    retry_policy: IRetryPolicy
    breaker: ICircuitBreakerPolicy
    #: The spec's retry budget (shared, mutable: the one instance the spec names).
    retry_budget: RetryBudget | None = attrs.field(default=None, eq=False)
    #: The spec's token bucket (shared, mutable: the one instance the spec names).
    rate_limit: RateLimit | None = attrs.field(default=None, eq=False)
    #: The spec's chaos strategies, the first outermost (empty: none).
    chaos: tuple[ChaosStrategy, ...] = ()
    max_concurrency: int
    queue_size: int
    overflow: str
    idempotent: bool
    persist_result: bool
    idempotency_ttl_s: float
    key_fields: tuple[str, ...]
    claim_ttl_s: float
    key_generator: IIdempotencyKeyGenerator
    key_generator_takes_ctx: bool = True
    #: The generator's optional ``key_for_fingerprint(tool_name, fingerprint, *,
    #: tenant_id)``: the key from the arguments' fingerprint, already computed per call.
    key_for_fingerprint: Callable[..., str] | None = attrs.field(default=None, eq=False)
    function_schema: Mapping[str, Any]
    on_unknown_outcome: str = "fail"
    #: The breaker's optional ``retry_after(tool_name)`` (None when a call would be
    #: admitted now, else the seconds until one may be): with it, the supervisor refuses
    #: calls in the caller's task while the breaker is open. None for breakers without it.
    retry_after: Callable[[str], float | None] | None = attrs.field(
        default=None, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        if self.retry_after is None:
            object.__setattr__(self, "retry_after", getattr(self.breaker, "retry_after", None))

    def with_policies(
        self,
        *,
        retry_policy: IRetryPolicy | None = None,
        circuit_breaker_policy: ICircuitBreakerPolicy | None = None,
    ) -> CompiledSpec:
        """A copy with the given policies swapped in (None keeps the current one)."""
        return attrs.evolve(
            self,
            retry_policy=retry_policy if retry_policy is not None else self.retry_policy,
            breaker=circuit_breaker_policy if circuit_breaker_policy is not None else self.breaker,
            retry_after=None,
        )


DEFAULT_LEASE_S = 30.0
"""The lease of an idempotent execution in progress when ``claim_ttl_s`` is None."""
