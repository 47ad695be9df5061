"""Fixtures of the fleet-wide tests: a fresh fleet name per test.

The Redis server is the session's one (``redis_url`` in tests/conftest.py).
"""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def name() -> str:
    """A fleet name of its own per test, so tests never see each other's counts."""
    return f"t-{uuid.uuid4().hex[:12]}"
