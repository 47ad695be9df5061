"""The public API: every exported name exists, once, and the documented names are there."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import toolvisor

SUBPACKAGES = [
    "toolvisor.policies",
    "toolvisor.supervisor",
    "toolvisor.actors",
    "toolvisor.parameters",
    "toolvisor.llm",
    "toolvisor.mcp",
]

# The names the public contract promises, by module.
PROMISED_NAMES = {
    "toolvisor": {
        # 2. Tool specs
        "ToolSpec", "FunctionToolSpec", "DbToolSpec", "ToolType", "StringParameter",
        "NumericParameter", "IntegerParameter", "BooleanParameter", "ArrayParameter",
        "ObjectParameter", "IdempotencyConfig", "RetryConfig", "CircuitBreakerConfig",
        # 3. Policies
        "ICircuitBreakerPolicy", "CircuitState", "StandardCircuitBreakerPolicy",
        "AdaptiveCircuitBreakerPolicy", "NoOpCircuitBreakerPolicy", "IRetryPolicy",
        "NoRetryPolicy", "FixedRetryPolicy", "ExponentialBackoffRetryPolicy",
        "CustomRetryPolicy", "CircuitBreakerPolicyFactory", "RetryPolicyFactory",
        "FieldBasedIdempotencyKeyGenerator", "HashIdempotencyKeyGenerator",
        "RetryBudget", "RateLimit",
        # 5. Actors and supervisor
        "open_supervisor", "Supervisor", "ToolRef", "ToolResult", "PendingCall", "ToolStats",
        "ExecutionContext",
        # 6. Stores
        "MemoryStore", "SQLiteStore", "RedisStore",
        # 7. Errors
        "ToolvisorError", "ValidationError", "CircuitOpenError", "ToolTimeoutError",
        "ToolOverloadedError", "ToolUnavailableError", "ActorCrashedError",
        "IdempotencyConflictError", "UnknownToolError", "DuplicateToolError",
        "SupervisorClosedError", "PolicyNotFoundError",
        "RateLimitError",  # for tools to raise: retry policies wait its retry_after
        # 8. Seed compatibility
        "FunctionToolExecutor",
    },
    "toolvisor.policies": {
        "ICircuitBreakerPolicy", "CircuitState", "StandardCircuitBreakerPolicy",
        "AdaptiveCircuitBreakerPolicy", "NoOpCircuitBreakerPolicy", "IRetryPolicy",
        "NoRetryPolicy", "FixedRetryPolicy", "ExponentialBackoffRetryPolicy",
        "CustomRetryPolicy", "CircuitBreakerPolicyFactory", "RetryPolicyFactory",
        "FieldBasedIdempotencyKeyGenerator", "HashIdempotencyKeyGenerator",
        "RetryBudget", "RateLimit",
    },
    "toolvisor.policies.idempotency": {
        "FieldBasedIdempotencyKeyGenerator", "HashIdempotencyKeyGenerator",
    },
    "toolvisor.supervisor": {"open_supervisor", "MemoryStore", "SQLiteStore", "RedisStore"},
    "toolvisor.errors": {
        "ToolvisorError", "ValidationError", "CircuitOpenError", "ToolTimeoutError",
        "ToolOverloadedError", "ToolUnavailableError", "ActorCrashedError",
        "IdempotencyConflictError", "UnknownToolError", "DuplicateToolError",
        "SupervisorClosedError", "PolicyNotFoundError", "RateLimitError", "RateLimitedError",
    },
    "toolvisor.testing": {"RateLimitError", "FlakyTool", "AttemptRecorder", "EventLog"},
    "toolvisor.llm": {
        "openai_tools", "anthropic_tools", "openai_tool_messages", "anthropic_tool_results",
        "error_info", "result_text",
    },
    "toolvisor.mcp": {"mcp_server", "serve_stdio", "serve_http"},
    "toolvisor.testing.chaos": {"ChaosFault", "ChaosLatency", "ChaosOutcome", "ChaosStrategy"},
    "toolvisor.spec": {
        "ToolSpec", "FunctionToolSpec", "DbToolSpec", "ToolType", "IdempotencyConfig",
        "RetryConfig", "CircuitBreakerConfig",
    },
}  # fmt: skip


@pytest.mark.parametrize("module_name", ["toolvisor", *SUBPACKAGES])
def test_all_is_sorted_unique_and_every_name_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = module.__all__
    assert len(names) == len(set(names)), "duplicates in __all__"
    if module_name == "toolvisor":  # policies groups its constants first; only the top is sorted
        assert names == sorted(names)
    for name in names:
        assert hasattr(module, name), f"{module_name}.{name} is in __all__ but missing"


@pytest.mark.parametrize("module_name", ["toolvisor", *SUBPACKAGES])
def test_star_import_gives_exactly_all(module_name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module_name} import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(importlib.import_module(module_name).__all__)


@pytest.mark.parametrize("module_name", SUBPACKAGES)
def test_top_level_reexports_are_the_subpackage_objects(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        if hasattr(toolvisor, name):
            assert getattr(toolvisor, name) is getattr(module, name), name


@pytest.mark.parametrize("module_name", sorted(PROMISED_NAMES))
def test_design_names_are_exported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(getattr(module, "__all__", dir(module)))
    missing = PROMISED_NAMES[module_name] - exported
    assert not missing, f"{module_name} lacks {sorted(missing)}"


def test_exported_names_are_real_public_objects() -> None:
    for name in toolvisor.__all__:
        if name == "__version__":
            assert isinstance(toolvisor.__version__, str)
            continue
        obj = getattr(toolvisor, name)
        if isinstance(obj, type) or inspect.isfunction(obj):  # not aliases such as Event
            assert obj.__module__.startswith("toolvisor."), f"{name} from {obj.__module__}"
            assert obj.__name__ == name, f"{name} is exported under another name"


def test_package_imports_in_a_fresh_interpreter_without_warnings() -> None:
    code = "import toolvisor, toolvisor.policies, toolvisor.supervisor, toolvisor.actors"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
