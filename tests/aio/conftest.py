"""Fixtures of the toolvisor.aio tests: a Redis server where one can run.

As in the store tests: the server at ``TOOLVISOR_REDIS_URL``, else a throwaway
``redis-server`` on a free port (pytest-redis) when the executable is installed, else
the Redis cases skip and say how to enable them.
"""

from __future__ import annotations

import os
import shutil

import pytest
from pytest_redis import factories

REDIS_SERVER = shutil.which("redis-server")
REDIS_URL_ENV = os.environ.get("TOOLVISOR_REDIS_URL")

aio_redis_proc = factories.redis_proc(executable=REDIS_SERVER)


@pytest.fixture(scope="session")
def aio_redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of a Redis server for the tests, or skip."""
    if REDIS_URL_ENV:
        return REDIS_URL_ENV
    if REDIS_SERVER is None:
        pytest.skip(
            "no Redis: install redis-server (apt-get install redis-server) "
            "or set TOOLVISOR_REDIS_URL"
        )
    proc = request.getfixturevalue("aio_redis_proc")
    return f"redis://{proc.host}:{proc.port}/0"
