"""Fixtures of the fleet-wide tests: a real redis-server, and a fresh name per test.

Redis is a throwaway ``redis-server`` on a free port (pytest-redis) when the executable
is installed, or the server at ``TOOLVISOR_REDIS_URL``; otherwise the tests skip.
"""

from __future__ import annotations

import gc
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_redis import factories

REDIS_SERVER = shutil.which("redis-server")
REDIS_URL_ENV = os.environ.get("TOOLVISOR_REDIS_URL")
HERE = Path(__file__).parent

#: coredis 6.9 leaves a failed connection's anyio memory streams unclosed; they warn when
#: garbage-collected (see tests/supervisor/stores/conftest.py).
COREDIS_LEAK = (
    "ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

shared_redis_proc = factories.redis_proc(executable=REDIS_SERVER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings(COREDIS_LEAK))


@pytest.fixture(autouse=True, scope="module")
def _collect_coredis_garbage() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    if REDIS_URL_ENV:
        return REDIS_URL_ENV
    if REDIS_SERVER is None:
        pytest.skip("no Redis: install redis-server or set TOOLVISOR_REDIS_URL")
    proc = request.getfixturevalue("shared_redis_proc")
    return f"redis://{proc.host}:{proc.port}/0"


@pytest.fixture
def name() -> str:
    """A fleet name of its own per test, so tests never see each other's counts."""
    return f"t-{uuid.uuid4().hex[:12]}"
