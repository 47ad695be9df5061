"""RedisShared across a Redis restart: local decisions while it is down, shared again after.

Three ``RedisShared`` instances in one trio run stand for three processes (each has its
own connection, background task and ledgers, as a process has); the Redis is a
``redis-server`` of the test's own, killed and started again on the same port.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import toolvisor as tv
from toolvisor._local_redis import free_port
from toolvisor.errors import CircuitOpenError

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

FAST = {"interval_s": 0.02, "timeout_s": 0.3}


class DownError(Exception):
    """The dependency is down."""


class Server:
    """A redis-server without persistence on ``port``: a restart starts it empty."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not start on {self.port}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)  # a crash: nothing is saved
        self.proc.wait()
        self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(free_port(), tmp_path)
    s.start()
    try:
        yield s
    finally:
        if s.proc is not None:
            s.kill()


async def call(policy: tv.StandardCircuitBreakerPolicy, tool_name: str, fail: bool) -> None:
    async def tool() -> int:
        if fail:
            raise DownError("503")
        return 1

    with contextlib.suppress(DownError, CircuitOpenError):
        await policy.execute_with_breaker(tool, tool_name)


async def alternate(policies: list[tv.StandardCircuitBreakerPolicy], tool_name: str) -> None:
    """15 calls per process, every other one failing: never 5 failures in a row, fewer
    than fleet_min_calls alone; the fleet's 45 calls fail at 50 %."""
    for i in range(15):
        for policy in policies:
            await call(policy, tool_name, fail=i % 2 == 0)
        await trio.sleep(0.01)
    await trio.sleep(0.2)  # a few exchanges


async def test_redis_restarted_mid_run(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="toolvisor.shared")
    url = f"redis://127.0.0.1:{server.port}/0"
    shared = [tv.RedisShared(url, "restart", **FAST) for _ in range(3)]
    budgets = [tv.RetryBudget(ratio=0.2, min_retries_per_s=0.0, ttl_s=30, shared=s) for s in shared]
    breakers = [
        tv.StandardCircuitBreakerPolicy(
            failure_threshold=5,
            recovery_timeout=60,
            shared=s,
            fleet_error_rate=0.4,
            fleet_min_calls=30,
            fleet_window_s=30,
        )
        for s in shared
    ]
    a, b, c = budgets
    for s in shared:
        assert await s.wait_connected(5.0)

    # Redis dies: every process notices, warns once, and goes on deciding locally.
    server.kill()
    with trio.fail_after(5):
        while any(s.connected for s in shared):  # noqa: ASYNC110
            await trio.sleep(0.02)
    with trio.fail_after(3):  # no decision waits for Redis
        for _ in range(50):
            a.deposit(trio.current_time())
        assert sum(a.try_withdraw(trio.current_time()) for _ in range(20)) == 10  # 0.2 x 50
        assert sum(c.try_withdraw(trio.current_time()) for _ in range(20)) == 0  # no calls
        await alternate(breakers, "while-down")
        # The fleet's 50 % failures are not seen: no breaker opens by the fleet's rate...
        assert [p.get_state("while-down") for p in breakers] == ["closed"] * 3
        for _ in range(5):  # ...and each opens by its own rule
            await call(breakers[0], "while-down", fail=True)
        assert breakers[0].get_state("while-down") == "open"
    await trio.sleep(0.5)  # several reconnection attempts, still down
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(down) == 3  # once per process, not once per attempt

    # Redis is back, empty: every process reconnects and counts fleet-wide again.
    server.start()
    with trio.fail_after(10):  # the backoff doubles from 0.02 s while Redis is down
        while not all(s.connected for s in shared):  # noqa: ASYNC110
            await trio.sleep(0.02)
    back = [r for r in caplog.records if "Redis is back" in r.getMessage()]
    assert len(back) == 3
    for _ in range(50):
        b.deposit(trio.current_time())
    await trio.sleep(0.2)
    # c made no call at all: alone it may not retry (as while Redis was down); the
    # fleet's calls pay for its retries again, never more than 0.2 of them.
    granted = 0
    for _ in range(40):
        granted += c.try_withdraw(trio.current_time())
        await trio.sleep(0.01)
    print(f"c retried {granted} times on the fleet's credit after the restart")
    assert 5 <= granted <= 20
    await alternate(breakers, "after-restart")
    assert [p.get_state("after-restart") for p in breakers] == ["open"] * 3
