"""toolvisor: run tools as supervised trio actors with pluggable resilience policies.

Everything public is re-exported here; see README.md for a tour.
"""

from ._validation import InputLimits as InputLimits
from .actors.stats import ToolStats as ToolStats
from .errors import ActorCrashedError as ActorCrashedError
from .errors import CircuitOpenError as CircuitOpenError
from .errors import DeliveryFailedError as DeliveryFailedError
from .errors import DuplicateToolError as DuplicateToolError
from .errors import FieldError as FieldError
from .errors import IdempotencyConflictError as IdempotencyConflictError
from .errors import IdempotencyOutcomeUnknownError as IdempotencyOutcomeUnknownError
from .errors import IdempotencyStoreError as IdempotencyStoreError
from .errors import PolicyNotFoundError as PolicyNotFoundError
from .errors import RateLimitedError as RateLimitedError
from .errors import RateLimitError as RateLimitError
from .errors import RemoteToolError as RemoteToolError
from .errors import SupervisorClosedError as SupervisorClosedError
from .errors import ToolOverloadedError as ToolOverloadedError
from .errors import ToolTimeoutError as ToolTimeoutError
from .errors import ToolUnavailableError as ToolUnavailableError
from .errors import ToolvisorError as ToolvisorError
from .errors import UnknownToolError as UnknownToolError
from .errors import ValidationError as ValidationError
from .events import ActorRestarted as ActorRestarted
from .events import BreakerTransition as BreakerTransition
from .events import BudgetExhausted as BudgetExhausted
from .events import CallFailed as CallFailed
from .events import ConcurrencyLimitChanged as ConcurrencyLimitChanged
from .events import Event as Event
from .events import FallbackUsed as FallbackUsed
from .events import HedgeLaunched as HedgeLaunched
from .events import RateLimited as RateLimited
from .events import ResultNotStored as ResultNotStored
from .events import RetryScheduled as RetryScheduled
from .events import ToolFailed as ToolFailed
from .executor import FunctionToolExecutor as FunctionToolExecutor
from .logs import log_events as log_events
from .policies import AdaptiveCircuitBreakerPolicy as AdaptiveCircuitBreakerPolicy
from .policies import AdaptiveConcurrency as AdaptiveConcurrency
from .policies import CircuitBreakerPolicyFactory as CircuitBreakerPolicyFactory
from .policies import CircuitState as CircuitState
from .policies import CustomRetryPolicy as CustomRetryPolicy
from .policies import ExponentialBackoffRetryPolicy as ExponentialBackoffRetryPolicy
from .policies import FallbackPolicy as FallbackPolicy
from .policies import FieldBasedIdempotencyKeyGenerator as FieldBasedIdempotencyKeyGenerator
from .policies import FixedRetryPolicy as FixedRetryPolicy
from .policies import HashIdempotencyKeyGenerator as HashIdempotencyKeyGenerator
from .policies import HedgingPolicy as HedgingPolicy
from .policies import ICircuitBreakerPolicy as ICircuitBreakerPolicy
from .policies import IIdempotencyKeyGenerator as IIdempotencyKeyGenerator
from .policies import IRetryPolicy as IRetryPolicy
from .policies import NoOpCircuitBreakerPolicy as NoOpCircuitBreakerPolicy
from .policies import NoRetryPolicy as NoRetryPolicy
from .policies import RateLimit as RateLimit
from .policies import RetryBudget as RetryBudget
from .policies import RetryPolicyFactory as RetryPolicyFactory
from .policies import StandardCircuitBreakerPolicy as StandardCircuitBreakerPolicy
from .policies import StrategyFactory as StrategyFactory
from .remote import Remote as Remote
from .remote import RemotePendingCall as RemotePendingCall
from .remote import open_remote as open_remote
from .shared import RedisShared as RedisShared
from .spec import ArrayParameter as ArrayParameter
from .spec import BooleanParameter as BooleanParameter
from .spec import CircuitBreakerConfig as CircuitBreakerConfig
from .spec import DbToolSpec as DbToolSpec
from .spec import ExecutionContext as ExecutionContext
from .spec import FunctionToolSpec as FunctionToolSpec
from .spec import HttpToolSpec as HttpToolSpec
from .spec import IdempotencyConfig as IdempotencyConfig
from .spec import IntegerParameter as IntegerParameter
from .spec import NumericParameter as NumericParameter
from .spec import ObjectParameter as ObjectParameter
from .spec import Parameter as Parameter
from .spec import RetryConfig as RetryConfig
from .spec import StringParameter as StringParameter
from .spec import ToolSpec as ToolSpec
from .spec import ToolType as ToolType
from .supervisor import IdempotencyStore as IdempotencyStore
from .supervisor import MemoryStore as MemoryStore
from .supervisor import PendingCall as PendingCall
from .supervisor import RedisStore as RedisStore
from .supervisor import SQLiteStore as SQLiteStore
from .supervisor import Supervisor as Supervisor
from .supervisor import ToolRef as ToolRef
from .supervisor import ToolResult as ToolResult
from .supervisor import open_supervisor as open_supervisor

__version__ = "0.1.0"

__all__ = [
    "ActorCrashedError",
    "ActorRestarted",
    "AdaptiveCircuitBreakerPolicy",
    "AdaptiveConcurrency",
    "ArrayParameter",
    "BooleanParameter",
    "BreakerTransition",
    "BudgetExhausted",
    "CallFailed",
    "CircuitBreakerConfig",
    "CircuitBreakerPolicyFactory",
    "CircuitOpenError",
    "CircuitState",
    "ConcurrencyLimitChanged",
    "CustomRetryPolicy",
    "DbToolSpec",
    "DeliveryFailedError",
    "DuplicateToolError",
    "Event",
    "ExecutionContext",
    "ExponentialBackoffRetryPolicy",
    "FallbackPolicy",
    "FallbackUsed",
    "FieldBasedIdempotencyKeyGenerator",
    "FieldError",
    "FixedRetryPolicy",
    "FunctionToolExecutor",
    "FunctionToolSpec",
    "HashIdempotencyKeyGenerator",
    "HedgeLaunched",
    "HedgingPolicy",
    "HttpToolSpec",
    "ICircuitBreakerPolicy",
    "IIdempotencyKeyGenerator",
    "IRetryPolicy",
    "IdempotencyConfig",
    "IdempotencyConflictError",
    "IdempotencyOutcomeUnknownError",
    "IdempotencyStore",
    "IdempotencyStoreError",
    "InputLimits",
    "IntegerParameter",
    "MemoryStore",
    "NoOpCircuitBreakerPolicy",
    "NoRetryPolicy",
    "NumericParameter",
    "ObjectParameter",
    "Parameter",
    "PendingCall",
    "PolicyNotFoundError",
    "RateLimit",
    "RateLimitError",
    "RateLimited",
    "RateLimitedError",
    "RedisShared",
    "RedisStore",
    "Remote",
    "RemotePendingCall",
    "RemoteToolError",
    "ResultNotStored",
    "RetryBudget",
    "RetryConfig",
    "RetryPolicyFactory",
    "RetryScheduled",
    "SQLiteStore",
    "StandardCircuitBreakerPolicy",
    "StrategyFactory",
    "StringParameter",
    "Supervisor",
    "SupervisorClosedError",
    "ToolFailed",
    "ToolOverloadedError",
    "ToolRef",
    "ToolResult",
    "ToolSpec",
    "ToolStats",
    "ToolTimeoutError",
    "ToolType",
    "ToolUnavailableError",
    "ToolvisorError",
    "UnknownToolError",
    "ValidationError",
    "__version__",
    "log_events",
    "open_remote",
    "open_supervisor",
]
