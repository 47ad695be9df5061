"""Remote calls over Redis: toolvisor's workers against arq's, 1 and 2 worker processes.

Run: ``python benchmarks/bench_remote.py [--redis URL] [--calls 2000] [--callers 64]
[--rounds 3]`` (``pip install 'toolvisor[bench]'``: arq and psutil). Without ``--redis``
it starts a throwaway ``redis-server`` on a free port.

Contenders, alternated round by round on the same server (each round rotates their
order): toolvisor (``open_remote().execute()`` against ``toolvisor worker`` processes)
and arq (``enqueue_job()`` then ``job.result()`` against ``arq`` worker processes), each
with 1 and 2 worker processes. Two jobs: ``noop`` returns at once, ``cpu`` burns 1 ms of
CPU in the worker. ``--callers`` concurrent callers in one process send ``--calls``
calls. Both workers run 64 jobs at once; arq polls its queue and each result every
5 ms (its defaults, 0.5 s, would make every arq call take a poll period) and does not
log each job.

Prints, per contender and job, the median calls/s, p50 and p99 over the rounds and the
CPU each process spent per call (psutil: the caller, the workers, redis-server when
the benchmark started it), then the median of the paired per-round ratios
toolvisor/arq and 2 workers/1 worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import trio

import toolvisor
from toolvisor._local_redis import free_port, server_argv

TOOLS = textwrap.dedent(
    """
    import time
    from toolvisor import FunctionToolSpec

    async def noop(args):
        return 1

    async def cpu(args):
        end = time.perf_counter() + 0.001
        while time.perf_counter() < end:
            pass
        return 1

    def spec(name):
        return FunctionToolSpec(id=name, tool_name=name, description=name, max_concurrency=64)

    TOOLS = [(spec("noop"), noop), (spec("cpu"), cpu)]
    """
)

ARQ_JOBS = textwrap.dedent(
    """
    import os
    import time

    from arq.connections import RedisSettings

    async def noop(ctx):
        return 1

    async def cpu(ctx):
        end = time.perf_counter() + 0.001
        while time.perf_counter() < end:
            pass
        return 1

    class WorkerSettings:
        functions = [noop, cpu]
        redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS"])
        queue_name = os.environ["BENCH_QUEUE"]
        max_jobs = 64
        poll_delay = 0.005
        keep_result = 60
        log_results = False
    """
)

ARQ_POLL_S = 0.005
JOBS = ("noop", "cpu")
CONTENDERS = (("toolvisor", 1), ("toolvisor", 2), ("arq", 1), ("arq", 2))

#: One measurement: calls/s, p50 s, p99 s, CPU seconds per call of (caller, workers, redis).
Sample = tuple[float, float, float, tuple[float, float, float]]


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def start_workers(
    system: str, url: str, namespace: str, n: int, workdir: Path
) -> list[subprocess.Popen[bytes]]:
    """``n`` worker processes of ``system``, once each is ready."""
    procs = []
    env = dict(os.environ, BENCH_REDIS=url, BENCH_QUEUE=namespace)
    for i in range(n):
        err = (workdir / f"{namespace}-{i}.err").open("w")
        if system == "toolvisor":
            argv = [sys.executable, "-m", "toolvisor", "worker", "benchtools:TOOLS"]
            argv += ["--redis", url, "--namespace", namespace]
        else:
            argv = [sys.executable, "-m", "arq", "benchjobs.WorkerSettings"]
        procs.append(subprocess.Popen(argv, cwd=workdir, stderr=err, stdout=err, env=env))
    ready = ": serving " if system == "toolvisor" else "Starting worker for"
    deadline = time.monotonic() + 60
    for i in range(n):
        while ready not in (workdir / f"{namespace}-{i}.err").read_text():
            if time.monotonic() > deadline or procs[i].poll() is not None:
                raise SystemExit(f"{system} worker {i} did not start")
            time.sleep(0.05)
    return procs


def _summary(latencies: list[float], calls: int, wall: float) -> tuple[float, float, float]:
    latencies.sort()
    return calls / wall, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


async def measure_toolvisor(
    url: str, namespace: str, tool: str, calls: int, callers: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    async with toolvisor.open_remote(url, namespace=namespace) as remote:
        for _ in range(50):  # warm up: connections, scripts, the tool list
            await remote.execute(tool, {})
        left = calls

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t = time.perf_counter()
                await remote.execute(tool, {}, timeout=30)
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(callers):
                nursery.start_soon(caller)
        wall = time.perf_counter() - started
    return _summary(latencies, calls, wall)


async def measure_arq(
    url: str, queue: str, job: str, calls: int, callers: int
) -> tuple[float, float, float]:
    from arq import create_pool
    from arq.connections import RedisSettings

    latencies: list[float] = []
    pool = await create_pool(RedisSettings.from_dsn(url))
    try:

        async def one() -> None:
            queued = await pool.enqueue_job(job, _queue_name=queue)
            assert queued is not None
            await queued.result(timeout=30, poll_delay=ARQ_POLL_S)

        for _ in range(50):  # warm up
            await one()
        left = calls

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t = time.perf_counter()
                await one()
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        wall = time.perf_counter() - started
    finally:
        await pool.aclose()
    return _summary(latencies, calls, wall)


def run_one(
    system: str,
    url: str,
    namespace: str,
    job: str,
    options: argparse.Namespace,
    procs: list[subprocess.Popen[bytes]],
    server: psutil.Process | None,
) -> Sample:
    me = psutil.Process()
    workers = [psutil.Process(p.pid) for p in procs]
    before = (_cpu(me), sum(_cpu(w) for w in workers), _cpu(server))
    if system == "toolvisor":
        got = trio.run(measure_toolvisor, url, namespace, job, options.calls, options.callers)
    else:
        got = asyncio.run(measure_arq(url, namespace, job, options.calls, options.callers))
    after = (_cpu(me), sum(_cpu(w) for w in workers), _cpu(server))
    total = options.calls + 50
    cpu = tuple((a - b) / total for a, b in zip(after, before, strict=True))
    return (*got, cpu)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--redis", default=None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    server = None
    url = options.redis
    if url is None:
        port = free_port()
        argv = server_argv(port, tempfile.mkdtemp(prefix="tv-bench-redis-"))
        if argv is None:
            raise SystemExit("bench_remote.py: no redis-server on the PATH; give --redis URL")
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        url = f"redis://127.0.0.1:{port}/0"
    server_proc = None if server is None else psutil.Process(server.pid)
    workdir = Path(tempfile.mkdtemp(prefix="tv-bench-remote-"))
    (workdir / "benchtools.py").write_text(TOOLS)
    (workdir / "benchjobs.py").write_text(ARQ_JOBS)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), str(workdir)])
    results: dict[tuple[str, int, str], list[Sample]] = {}
    try:
        for round_ in range(options.rounds):
            order = CONTENDERS[round_ % len(CONTENDERS) :] + CONTENDERS[: round_ % len(CONTENDERS)]
            for system, n in order:
                namespace = f"bench-{uuid.uuid4().hex[:8]}"
                procs = start_workers(system, url, namespace, n, workdir)
                try:
                    for job in JOBS:
                        got = run_one(system, url, namespace, job, options, procs, server_proc)
                        results.setdefault((system, n, job), []).append(got)
                        print(
                            f"  round {round_ + 1}: {system:9} {job:4} x{n}: {got[0]:6.0f} calls/s"
                            f"  p50 {got[1] * 1000:6.1f} ms  p99 {got[2] * 1000:6.1f} ms",
                            flush=True,
                        )
                finally:
                    for p in procs:
                        p.terminate()
                        p.wait()
    finally:
        if server is not None:
            server.terminate()
    report(results, options)


def report(results: dict[tuple[str, int, str], list[Sample]], options: argparse.Namespace) -> None:
    print(
        f"\n{options.calls} calls, {options.callers} concurrent callers, "
        f"median of {options.rounds} rounds; CPU ms per call: caller / workers / redis-server"
    )
    for job in JOBS:
        for system, n in CONTENDERS:
            runs = results[(system, n, job)]
            rate = statistics.median(r[0] for r in runs)
            p50 = statistics.median(r[1] for r in runs) * 1000
            p99 = statistics.median(r[2] for r in runs) * 1000
            cpu = [statistics.median(r[3][i] for r in runs) * 1000 for i in range(3)]
            print(
                f"{job:4} {system:9} {n} worker(s): {rate:6.0f} calls/s  p50 {p50:6.1f} ms  "
                f"p99 {p99:6.1f} ms  CPU {cpu[0]:.3f} / {cpu[1]:.3f} / {cpu[2]:.3f}"
            )
    print("\npaired ratios (median over the rounds of each round's ratio):")
    for job in JOBS:
        for n in (1, 2):
            tv, arq = results[("toolvisor", n, job)], results[("arq", n, job)]
            ratio = statistics.median(a[0] / b[0] for a, b in zip(tv, arq, strict=True))
            print(f"{job:4} {n} worker(s): toolvisor / arq calls/s {ratio:.2f}x")
        for system in ("toolvisor", "arq"):
            one, two = results[(system, 1, job)], results[(system, 2, job)]
            ratio = statistics.median(b[0] / a[0] for a, b in zip(one, two, strict=True))
            print(f"{job:4} {system:9} 2 workers / 1 worker: {ratio:.2f}x")


if __name__ == "__main__":
    main()
