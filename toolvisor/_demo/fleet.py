"""``toolvisor demo --workers N``: a redis-server, N worker processes, and the caller's tallies.

The demo's calls go through Redis Streams to N ``toolvisor worker`` OS processes that
serve the demo's tools (:mod:`toolvisor._demo.worker`). Without ``--redis`` the demo
starts a ``redis-server`` of its own on a free port, without persistence, and stops it at
the end. Workers and server run in sessions of their own, so a Ctrl-C in the terminal
reaches the demo alone, which then stops them itself: SIGTERM, so each worker finishes
what it holds and exits 0.

The policies run in the workers, so the caller counts what the replies tell it: the
outcome, the attempts, whether the idempotency cache answered, and which worker did.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.lowlevel

from .._local_redis import free_port, server_argv
from ..actors.stats import ToolStats
from ..errors import (
    CircuitOpenError,
    RateLimitedError,
    SupervisorClosedError,
    ToolOverloadedError,
    ToolTimeoutError,
    ToolUnavailableError,
    UnknownToolError,
)
from ..remote import Remote
from .report import PER_WORKER
from .worker import DURATION_ENV, SEED_ENV, START_FILE_ENV

__all__ = ["NAMESPACE", "Fleet", "FleetError", "RemoteTally", "free_port", "open_fleet"]

#: The demo's namespace: a second run on the same ``--redis`` finds the payments stored.
NAMESPACE = "toolvisor-demo"
_READY_S = 30.0  # a worker imports toolvisor and connects within this, or the demo fails
_STOP_S = 8.0  # after SIGTERM: the worker's grace (2 s) plus its hand-back, with room
_WORKER_GRACE_S = "2"
_SERVING = re.compile(r"toolvisor worker (\S+): serving")

#: Errors that say no attempt ran (the supervisor counts those calls as rejected).
_REJECTIONS = (
    CircuitOpenError,
    RateLimitedError,
    ToolOverloadedError,
    ToolUnavailableError,
    SupervisorClosedError,
    UnknownToolError,
)


class FleetError(Exception):
    """The demo's redis-server or a worker did not start: the message says why."""


@attrs.define
class _Proc:
    name: str
    process: trio.Process
    log: Path

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


@attrs.frozen
class Fleet:
    """The running fleet: where its Redis is and which workers serve."""

    url: str
    namespace: str
    workers: tuple[str, ...]  # worker ids, in start order
    own_redis: bool  # started by the demo (and stopped at the end)
    start_file: Path  # where the caller writes its start (the workers' timeline)

    def start(self, epoch: float) -> None:
        """Tell the workers the demo starts at ``epoch`` (seconds since the epoch)."""
        tmp = self.start_file.with_suffix(".tmp")
        tmp.write_text(repr(epoch))
        tmp.replace(self.start_file)  # atomic: a worker reads all of it or nothing


async def _ping(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    async with stream:
        await stream.send_all(b"PING\r\n")
        with trio.move_on_after(1.0):
            return (await stream.receive_some(64)).startswith(b"+PONG")
    return False


async def _open(name: str, argv: list[str], log: Path, env: Mapping[str, str]) -> _Proc:
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops them
        )
    return _Proc(name, process, log)


async def _stop(procs: list[_Proc]) -> None:
    """SIGTERM each (a worker finishes what it holds), wait; SIGKILL what outlives it."""
    for proc in procs:
        if proc.process.returncode is None:
            proc.process.send_signal(signal.SIGTERM)
    with trio.move_on_after(_STOP_S):
        for proc in procs:
            await proc.process.wait()
    for proc in procs:
        if proc.process.returncode is None:
            proc.process.kill()
            await proc.process.wait()


async def _redis_server(directory: Path) -> tuple[_Proc, str]:
    port = free_port()
    argv = server_argv(port, str(directory))
    if argv is None:
        raise FleetError("--workers needs redis-server on the PATH, or give --redis URL")
    proc = await _open("redis-server", argv, directory / "redis.log", os.environ)
    with trio.move_on_after(10.0):
        while proc.process.returncode is None:
            if await _ping(port):
                return proc, f"redis://127.0.0.1:{port}/0"
            await trio.sleep(0.05)
    await _stop([proc])
    raise FleetError(f"redis-server did not start on port {port}: {proc.tail()}")


async def _wait_serving(procs: list[_Proc]) -> tuple[str, ...]:
    """Each worker's id, once it prints that it serves; FleetError if one exits first."""
    ids: dict[str, str] = {}
    with trio.move_on_after(_READY_S):
        while len(ids) < len(procs):
            for proc in procs:
                if proc.name in ids:
                    continue
                try:
                    found = _SERVING.search(proc.log.read_text(errors="replace"))
                except OSError:
                    found = None
                if found is not None:
                    ids[proc.name] = found.group(1)
                elif proc.process.returncode is not None:
                    raise FleetError(
                        f"{proc.name} exited with status {proc.process.returncode}: {proc.tail()}"
                    )
            await trio.sleep(0.05)
        return tuple(ids[p.name] for p in procs)
    late = next(p for p in procs if p.name not in ids)
    raise FleetError(f"{late.name} did not serve within {_READY_S:g} s: {late.tail()}")


@contextlib.asynccontextmanager
async def open_fleet(
    workers: int, url: str | None, *, seed: int, duration: float
) -> AsyncIterator[Fleet]:
    """Start ``workers`` worker processes (and a redis-server unless ``url``); stop them after."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    with tempfile.TemporaryDirectory(prefix="toolvisor-demo-") as tmp:
        directory = Path(tmp)
        procs: list[_Proc] = []
        redis: _Proc | None = None
        try:
            if url is None:
                redis, url = await _redis_server(directory)
            start_file = directory / "start"
            env = dict(os.environ)
            env.update(
                {SEED_ENV: str(seed), DURATION_ENV: repr(duration), START_FILE_ENV: str(start_file)}
            )
            argv = [sys.executable, "-m", "toolvisor", "worker", "toolvisor._demo.worker:setup"]
            argv += ["--redis", url, "--namespace", NAMESPACE, "--grace-s", _WORKER_GRACE_S]
            for i in range(workers):
                name = f"worker {i + 1}"
                procs.append(await _open(name, argv, directory / f"worker-{i + 1}.log", env))
            ids = await _wait_serving(procs)
            yield Fleet(url, NAMESPACE, ids, redis is not None, start_file)
        finally:
            with trio.CancelScope(shield=True):
                await _stop(procs)
                if redis is not None:
                    await _stop([redis])


class RemoteTally:
    """The caller's counts of the fleet's calls, from the replies; ``stats()`` gives them
    shaped as a supervisor's, for the demo's views."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self.calls: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.timeouts: Counter[str] = Counter()
        self.cache_hits: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()  # attempts the replies report (back-end calls)
        self.by_worker: Counter[str] = Counter()  # calls answered, by worker id
        self.unanswered = 0  # calls that ended without a reply (refused, deadline, cancelled)
        self.ran_by_tx: Counter[str] = Counter()  # payments a worker ran (not from the cache)

    async def send(self, tool: str, args: Mapping[str, Any], timeout: float) -> None:
        """Call ``tool`` on the fleet; count how it ended; raise the call's error."""
        self.calls[tool] += 1
        self.in_flight[tool] += 1
        try:
            pending = await self.remote.submit(tool, args, timeout=timeout)
            result = await pending.result()  # never raises for the call's own failure
        except trio.Cancelled:
            self.cancelled[tool] += 1
            self.unanswered += 1
            raise
        except Exception as exc:  # refused before it was sent (Redis down, unknown tool)
            self._count_error(tool, exc)
            self.unanswered += 1
            raise
        finally:
            self.in_flight[tool] -= 1
        if result.error is not None:
            self._count_error(tool, result.error)
        else:
            self.successes[tool] += 1
        worker = pending.worker
        if worker is None:  # the caller's deadline passed before a reply came
            self.unanswered += 1
        else:
            self.by_worker[worker] += 1
            self.attempts[tool] += result.attempts
            self.retries[tool] += max(0, result.attempts - 1)
            if result.cached:
                self.cache_hits[tool] += 1
            elif result.ok and "transaction_id" in args:
                self.ran_by_tx[str(args["transaction_id"])] += 1
        if result.error is not None:
            raise result.error

    def _count_error(self, tool: str, exc: BaseException) -> None:
        if isinstance(exc, _REJECTIONS):
            self.rejected[tool] += 1
        else:
            self.failures[tool] += 1
        if isinstance(exc, ToolTimeoutError):
            self.timeouts[tool] += 1

    def stats(self, tool: str) -> ToolStats:
        """What the caller knows of ``tool``, shaped as ``Supervisor.stats`` gives it (the
        demo measures latencies itself; each worker keeps its own breaker)."""
        return ToolStats(
            tool=tool,
            calls=self.calls[tool],
            successes=self.successes[tool],
            failures=self.failures[tool],
            retries=self.retries[tool],
            rejected=self.rejected[tool],
            cancelled=self.cancelled[tool],
            timeouts=self.timeouts[tool],
            cache_hits=self.cache_hits[tool],
            in_flight=self.in_flight[tool],
            queued=0,
            restarts=0,
            breaker_state=PER_WORKER,
            latency_p50_s=0.0,
            latency_p99_s=0.0,
        )

    def workers(self, started: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
        """Calls answered by each worker: the demo's own (in start order), then any other
        worker of the namespace that took some."""
        others = sorted(w for w in self.by_worker if w not in started)
        return tuple((w, self.by_worker[w]) for w in (*started, *others))
