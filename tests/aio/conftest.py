"""Fixtures of the toolvisor.aio tests: the session's Redis server under the name they use."""

from __future__ import annotations

import pytest


@pytest.fixture
def aio_redis_url(redis_url: str) -> str:
    """The URL of a Redis server for the tests (tests/conftest.py), or skip."""
    return redis_url
