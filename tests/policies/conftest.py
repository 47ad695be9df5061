"""Shared fixtures of the policy tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

if importlib.util.find_spec("toolvisor") is None:  # pragma: no cover - uninstalled checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from toolvisor.policies import DEFAULT_RNG, CircuitBreakerPolicyFactory, RetryPolicyFactory

# Jitter drawn from the module-level Random must be reproducible under Hypothesis.
hypothesis.register_random(DEFAULT_RNG)


@pytest.fixture(autouse=True)
def _clean_factories() -> Iterator[None]:
    """Factories hold process-global registrations: start and end every test without any."""
    CircuitBreakerPolicyFactory.reset()
    RetryPolicyFactory.reset()
    yield
    CircuitBreakerPolicyFactory.reset()
    RetryPolicyFactory.reset()
