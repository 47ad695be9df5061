"""Shared test settings: Hypothesis profiles (CI runs more examples), and one Redis server.

Redis is the server at ``TOOLVISOR_REDIS_URL`` (``.ci/run`` starts one), else a throwaway
``redis-server`` on a free port (pytest-redis) when the executable is installed, started
on first use and shared by the whole session; otherwise the Redis cases skip and say how
to enable them. Tests keep apart by key prefix, fleet name or namespace, never by server.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings
from pytest_redis import factories

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from otel_support import Otel

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REDIS_SERVER = shutil.which("redis-server")
REDIS_URL_ENV = os.environ.get("TOOLVISOR_REDIS_URL")
REDIS_SKIP_REASON = (
    "no Redis: install redis-server (apt-get install redis-server) or set TOOLVISOR_REDIS_URL"
)

HERE = Path(__file__).parent
#: The folders whose tests talk to Redis through coredis.
REDIS_FOLDERS = (HERE / "supervisor" / "stores", HERE / "shared", HERE / "remote", HERE / "aio")

#: coredis 6.9 leaves a failed connection's anyio memory streams unclosed (a client
#: pointed at a server that is down): they warn when garbage-collected, in whichever test
#: is running then. Ignore exactly those warnings in the Redis folders, and collect once
#: per module there, so they surface (and are ignored) in the module that made them.
COREDIS_LEAK = (
    "ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

redis_proc = factories.redis_proc(executable=REDIS_SERVER)


def _in_redis_folder(path: Path) -> bool:
    return any(folder in path.parents for folder in REDIS_FOLDERS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _in_redis_folder(item.path):
            item.add_marker(pytest.mark.filterwarnings(COREDIS_LEAK))


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection made (every imported module, function and class, Hypothesis's
    # strategies) lives until the session ends: moved out of the collector's reach, so
    # that no collection during the tests traverses it again (the full collection of
    # the Redis modules' teardown below went from about 0.3 s to under 0.05 s).
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def _collect_coredis_garbage(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    # In the teardown of the module's last test (which carries the filter above): a full
    # collection costs ~0.15-0.3 s with Hypothesis loaded, too much per test or module.
    if "coredis" in sys.modules and _in_redis_folder(Path(str(request.path))):
        gc.collect()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of a Redis server for the tests, or skip."""
    if REDIS_URL_ENV:
        return REDIS_URL_ENV
    if REDIS_SERVER is None:
        pytest.skip(REDIS_SKIP_REASON)
    proc = request.getfixturevalue("redis_proc")
    return f"redis://{proc.host}:{proc.port}/0"


# OpenTelemetry SDK fixtures, imported on first use only (most tests never load the SDK).


@pytest.fixture
def otel() -> Iterator[Otel]:
    """An SDK meter and tracer provider writing to memory (tests/otel_support.py)."""
    from otel_support import Otel

    o = Otel()
    yield o
    o.meter_provider.shutdown()
    o.tracer_provider.shutdown()


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """An in-memory metric reader; its meter provider is ``reader.provider``."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    reader.provider = provider  # type: ignore[attr-defined]
    yield reader
    provider.shutdown()
