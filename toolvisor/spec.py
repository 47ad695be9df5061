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
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from ._chaos import ChaosStrategy
from ._validation import ArgumentValidator, InputLimits
from .parameters import (
    ArrayParameter,
    BooleanParameter,
    IntegerParameter,
    NumericParameter,
    ObjectParameter,
    Parameter,
    StringParameter,
    _name,
    _object_schema,
    _optional_count,
    _unique_names,
)
from .policies.budget import RetryBudget
from .policies.circuit_breaker import (
    ICircuitBreakerPolicy,
    NoOpCircuitBreakerPolicy,
    StandardCircuitBreakerPolicy,
)
from .policies.concurrency import AdaptiveConcurrency
from .policies.fallback import FallbackPolicy
from .policies.hedging import HedgingPolicy
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


class Unchanged(enum.Enum):
    """The default of ``reconfigure``'s strategy arguments: keep the one in place (None
    removes it)."""

    UNCHANGED = "unchanged"


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


def check_bulkhead(value: object, name: str = "max_concurrency") -> None:
    """Raise ValueError (naming ``name``) unless ``value`` is an int >= 1 or an
    :class:`AdaptiveConcurrency`."""
    if isinstance(value, AdaptiveConcurrency):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be an integer >= 1, got {value!r} (or a "
            "toolvisor.AdaptiveConcurrency for a limit that adapts)"
        )


def _bulkhead(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_bulkhead(value, attribute.name)


_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _tool_name(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _TOOL_NAME_RE.match(value):
        raise ValueError(
            f"{attribute.name} must be 1 to 64 characters from a-z, A-Z, 0-9, '_' and '-' "
            f"(LLM providers reject other tool names), got {value!r}"
        )


def _one_of(name: str, allowed: tuple[str, ...]) -> Callable[[object, object, object], None]:
    def check(_inst: object, _attribute: object, value: object) -> None:
        if value not in allowed:
            raise ValueError(
                f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            )

    return check


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
        delivery: how many times this call was delivered to a process: 1, or more when a
            remote worker died holding it and another worker claimed it. An idempotent
            call delivered again may have run on the worker that died: with
            ``on_unknown_outcome="fail"`` its key is recorded unknown instead of running
            it blind (``IdempotencyOutcomeUnknownError``), unless it is done already.
    """

    tenant_id: str | None = None
    request_id: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    idempotency_key: str | None = None
    attempt: int = 0
    delivery: int = 1


# --------------------------------------------------------------------------- specs


def _parameters(_inst: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, list | tuple):
        raise ValueError(f"parameters must be a list of Parameter, got {value!r}")
    _unique_names(value, "parameters")


def _check_key_fields(
    tool_name: object, fields: object, parameters: list[Parameter] | tuple[Parameter, ...]
) -> None:
    if (
        isinstance(fields, str)
        or not isinstance(fields, list | tuple)
        or not all(isinstance(f, str) for f in fields)
    ):
        raise ValueError(
            f"idempotency.key_fields of tool {tool_name!r} must be a list of parameter "
            f"names, got {fields!r}"
        )
    names = [p.name for p in parameters if isinstance(p, Parameter)]
    unknown = [f for f in fields if f not in names]
    if unknown:
        listing = ", ".join(repr(n) for n in names) or "none"
        raise ValueError(
            f"idempotency.key_fields of tool {tool_name!r} names {unknown[0]!r}, which is "
            f"not one of its parameters ({listing})"
        )


def _key_fields_named(inst: ToolSpec, attribute: attrs.Attribute[Any], value: object) -> None:
    # On assignment attrs validates before it stores: judge the new value with the old rest.
    params = value if attribute.name == "parameters" else getattr(inst, "parameters", None)
    idem = value if attribute.name == "idempotency" else getattr(inst, "idempotency", None)
    if isinstance(params, list | tuple) and isinstance(idem, IdempotencyConfig):
        _check_key_fields(getattr(inst, "tool_name", None), idem.key_fields, params)


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
        max_concurrency: bulkhead: attempts of this tool running at once; an int (fixed),
            or an :class:`AdaptiveConcurrency` whose limit follows the tool's latency and
            drops (one instance on several specs is one limit they share).
        queue_size: calls that may wait in the actor's inbox beyond those running.
        overflow: with a full inbox, ``"wait"`` (backpressure until the call's deadline)
            or ``"reject"`` (``ToolOverloadedError`` at once).
        retry_policy / circuit_breaker_policy: None means the legacy ``retry`` /
            ``circuit_breaker`` configs decide, and without those: no retry, no breaker.
        input_limits: bounds on a call's arguments (nesting depth, size, string length),
            checked before the schema; see :class:`InputLimits` for the defaults.
        read_only: the tool does not change anything (it only reads); advertised to
            agents (MCP's ``readOnlyHint``), never enforced.
        retry_budget: a :class:`RetryBudget` capping this tool's retries as a share of
            its calls (one instance on several specs is one shared budget); None: the
            retry policy alone decides.
        rate_limit: a :class:`RateLimit` (token bucket) the tool's calls take a token
            from before they reach its inbox; None: no limit.
        chaos: ``toolvisor.testing.chaos`` strategies wrapping each attempt (faults,
            latency, made-up outcomes; the first outermost); empty: none.
        fallback: a :class:`FallbackPolicy` answering, with its value, the calls that
            would end with an error it replaces (outermost: after retries, budget,
            breaker, rate limit, bulkhead and deadline); None: callers get the error.
        hedging: a :class:`HedgingPolicy` racing more attempts of a slow or failed call
            (the first that returns wins); only for ``read_only`` or idempotent tools
            (compiling, hence spawning, refuses others); None: one attempt at a time.

    ``tool_name`` is what LLM providers see, so it follows their rule:
    ``^[a-zA-Z0-9_-]{1,64}$``. ``idempotency.key_fields`` must name parameters (checked
    at construction, on assignment and when the spec is compiled).
    """

    id: str = attrs.field(validator=_name)
    tool_name: str = attrs.field(validator=_tool_name)
    description: str = attrs.field(default="", validator=_description)
    tool_type: ToolType = attrs.field(default=ToolType.FUNCTION, converter=_tool_type)
    parameters: list[Parameter] = attrs.field(
        factory=list, validator=[_parameters, _key_fields_named]
    )
    timeout_s: float = attrs.field(default=30.0, validator=_positive)
    idempotency: IdempotencyConfig = attrs.field(
        factory=IdempotencyConfig, validator=[_idempotency, _key_fields_named]
    )
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
    max_concurrency: int | AdaptiveConcurrency = attrs.field(default=16, validator=_bulkhead)
    queue_size: int = attrs.field(default=1024, validator=_optional_count)
    overflow: Literal["wait", "reject"] = attrs.field(default="wait", validator=_overflow)
    read_only: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
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
    fallback: FallbackPolicy | None = attrs.field(
        default=None,
        validator=_optional_instance(FallbackPolicy, " (a toolvisor.FallbackPolicy)"),
    )
    hedging: HedgingPolicy | None = attrs.field(
        default=None, validator=_optional_instance(HedgingPolicy, " (a toolvisor.HedgingPolicy)")
    )

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
        # key_fields may have been edited in place since the last check
        _check_key_fields(self.tool_name, self.idempotency.key_fields, self.parameters)
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
            fallback=self.fallback,
            breaker=self.effective_circuit_breaker_policy(),
            concurrency=self.max_concurrency,
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
            read_only=self.read_only,
            hedging=self.hedging,
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
    #: The spec's fallback (None: none); each call takes it when it is made.
    fallback: FallbackPolicy | None = attrs.field(default=None, eq=False)
    #: The bulkhead: a fixed number of workers, or the AdaptiveConcurrency (shared,
    #: mutable: the one instance the spec names) whose limit the worker pool follows.
    concurrency: int | AdaptiveConcurrency = attrs.field(default=16, eq=False)
    queue_size: int
    overflow: str
    idempotent: bool
    persist_result: bool
    idempotency_ttl_s: float
    key_fields: tuple[str, ...]
    claim_ttl_s: float
    key_generator: IIdempotencyKeyGenerator
    key_generator_takes_ctx: bool = True
    read_only: bool = False
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
    #: ``concurrency`` when it is an AdaptiveConcurrency, else None (derived).
    adaptive_concurrency: AdaptiveConcurrency | None = attrs.field(
        default=None, init=False, repr=False, eq=False
    )
    #: The spec's hedging policy (None: one attempt at a time).
    hedging: HedgingPolicy | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.concurrency, int):
            object.__setattr__(self, "adaptive_concurrency", self.concurrency)
        # The no-op breaker's retry_after is always None: the send path need not ask it.
        if self.retry_after is None and type(self.breaker) is not NoOpCircuitBreakerPolicy:
            object.__setattr__(self, "retry_after", getattr(self.breaker, "retry_after", None))
        if self.hedging is not None:
            _check_hedged(self)

    @property
    def max_concurrency(self) -> int:
        """The bulkhead's size now: the fixed int, or the adaptive limit's current value."""
        concurrency = self.concurrency
        return concurrency if isinstance(concurrency, int) else concurrency.limit

    def with_policies(
        self,
        *,
        retry_policy: IRetryPolicy | None = None,
        circuit_breaker_policy: ICircuitBreakerPolicy | None = None,
        retry_budget: RetryBudget | Unchanged | None = Unchanged.UNCHANGED,
        rate_limit: RateLimit | Unchanged | None = Unchanged.UNCHANGED,
        fallback: FallbackPolicy | Unchanged | None = Unchanged.UNCHANGED,
        hedging: HedgingPolicy | Unchanged | None = Unchanged.UNCHANGED,
    ) -> CompiledSpec:
        """A copy with the given policies swapped in.

        For ``retry_policy`` and ``circuit_breaker_policy`` None keeps the current one;
        the strategies (``retry_budget``, ``rate_limit``, ``fallback``, ``hedging``) are
        kept unless given, and None removes them.

        Raises:
            ValueError: ``hedging`` on a tool neither read-only nor idempotent.
        """
        strategies: dict[str, Any] = {}
        if retry_budget is not Unchanged.UNCHANGED:
            strategies["retry_budget"] = retry_budget
        if rate_limit is not Unchanged.UNCHANGED:
            strategies["rate_limit"] = rate_limit
        if fallback is not Unchanged.UNCHANGED:
            strategies["fallback"] = fallback
        if hedging is not Unchanged.UNCHANGED:
            strategies["hedging"] = hedging
        return attrs.evolve(
            self,
            retry_policy=retry_policy if retry_policy is not None else self.retry_policy,
            breaker=circuit_breaker_policy if circuit_breaker_policy is not None else self.breaker,
            retry_after=None,
            **strategies,
        )


def _check_hedged(spec: CompiledSpec) -> None:
    """Hedging runs attempts of one call side by side: only for tools that may run twice."""
    if not (spec.read_only or spec.idempotent):
        raise ValueError(
            f"tool {spec.tool_name!r} has spec.hedging but is neither read-only nor "
            "idempotent, and hedging runs several attempts of one call at once; set "
            "spec.read_only = True if the tool only reads, or spec.idempotency.enabled = "
            "True if its service deduplicates on ctx.idempotency_key, or set "
            "spec.hedging = None"
        )


DEFAULT_LEASE_S = 30.0
"""The lease of an idempotent execution in progress when ``claim_ttl_s`` is None."""
