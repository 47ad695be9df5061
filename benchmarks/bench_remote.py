"""Remote execute() over Redis Streams: calls/s and p50/p99 with 1 and 2 worker processes.

Run: ``python benchmarks/bench_remote.py [--redis URL] [--calls 2000] [--callers 64]``.
Without ``--redis`` it starts a throwaway ``redis-server`` on a free port.

For each tool (``noop`` returns at once; ``cpu`` burns 1 ms of CPU in the worker) and for
1 and 2 workers, alternated over ``--rounds`` rounds on the same server: ``--callers``
concurrent callers in one process send ``--calls`` calls with ``execute()``; prints the
median calls/s and the p50/p99 latency of each, and the 2-worker / 1-worker ratio.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import trio

import toolvisor

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_workers(url: str, namespace: str, n: int, workdir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        err = (workdir / f"w{i}.err").open("w")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "toolvisor",
                    "worker",
                    "benchtools:TOOLS",
                    "--redis",
                    url,
                    "--namespace",
                    namespace,
                ],
                cwd=workdir,
                stderr=err,
                stdout=subprocess.DEVNULL,
            )
        )
    deadline = time.monotonic() + 60
    for i in range(n):
        while ": serving " not in (workdir / f"w{i}.err").read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {i} did not start")
            time.sleep(0.05)
    return procs


async def measure(
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
    latencies.sort()
    return calls / wall, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    server = None
    url = options.redis
    if url is None:
        port = free_port()
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        url = f"redis://127.0.0.1:{port}/0"
    workdir = Path(tempfile.mkdtemp(prefix="tv-bench-remote-"))
    (workdir / "benchtools.py").write_text(TOOLS)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), str(workdir)])
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    try:
        for _round in range(options.rounds):
            for n in (1, 2) if _round % 2 == 0 else (2, 1):
                namespace = f"bench-{uuid.uuid4().hex[:8]}"
                procs = start_workers(url, namespace, n, workdir)
                try:
                    for tool in ("noop", "cpu"):
                        got = trio.run(
                            measure, url, namespace, tool, options.calls, options.callers
                        )
                        results.setdefault((tool, n), []).append(got)
                        print(f"  round {_round + 1}: {tool} x{n} workers: {got[0]:.0f} calls/s")
                finally:
                    for p in procs:
                        p.terminate()
                        p.wait()
    finally:
        if server is not None:
            server.terminate()
    print(
        f"\n{options.calls} calls, {options.callers} concurrent callers, "
        f"median of {options.rounds} rounds"
    )
    for tool in ("noop", "cpu"):
        rates = {}
        for n in (1, 2):
            runs = results[(tool, n)]
            rate = statistics.median(r[0] for r in runs)
            p50 = statistics.median(r[1] for r in runs) * 1000
            p99 = statistics.median(r[2] for r in runs) * 1000
            rates[n] = rate
            print(
                f"{tool:5} {n} worker(s): {rate:7.0f} calls/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
            )
        print(f"{tool:5} 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
