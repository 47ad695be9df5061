"""One process of a fleet in the fleet-wide tests: ``fleet_worker.py MODE URL NAME ...``.

Prints ``ready`` once its policies have exchanged with Redis (or at once for a Redis
that is down), waits for ``go`` on stdin, runs its load through a real supervisor and
prints one JSON line of what it saw. Modes:

* ``storm N``: N calls of a tool that always fails, 3 attempts each, shared budget.
* ``succeed N``: N calls of a tool that succeeds (deposits only), shared budget.
* ``rate SECONDS``: calls as fast as it can for SECONDS through a shared rate limit;
  prints the wall-clock times of the admitted calls.
* ``breaker N``: N calls alternating failure and success, shared breaker.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio

import toolvisor as tv

RATIO = 0.2
RATE, BURST = 50.0, 10.0


class DownError(Exception):
    """The dependency is down."""


def spec(name: str) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.IntegerParameter(name="i")]
    )


async def main(mode: str, url: str, name: str, arg: str) -> dict[str, Any]:
    shared = tv.RedisShared(url, name, interval_s=0.05, timeout_s=0.5)
    out: dict[str, Any] = {"mode": mode}
    async with tv.open_supervisor() as sup:
        s = spec("tool")
        if mode in ("storm", "succeed"):
            s.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.001)
            s.retry_budget = tv.RetryBudget(
                ratio=RATIO, min_retries_per_s=0.0, ttl_s=60.0, shared=shared
            )
        elif mode == "rate":
            s.rate_limit = tv.RateLimit(RATE, burst=BURST, shared=shared)
        else:
            s.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
                failure_threshold=5,
                recovery_timeout=60,
                shared=shared,
                fleet_error_rate=0.4,
                fleet_min_calls=30,
                fleet_window_s=30.0,
            )

        async def tool(args: dict[str, Any]) -> int:
            if mode == "storm" or (mode == "breaker" and args["i"] % 2 == 0):
                raise DownError("503")
            return args["i"]

        await sup.spawn(s, tool)
        out["connected"] = await shared.wait_connected(3.0)
        print("ready", flush=True)
        assert sys.stdin.readline().strip() == "go"
        n = int(float(arg))
        if mode in ("storm", "succeed"):
            for start in range(0, n, 10):
                await sup.execute_many([("tool", {"i": i}) for i in range(start, start + 10)])
                await trio.sleep(0.002)
        elif mode == "rate":
            admitted: list[float] = []
            end = time.time() + float(arg)
            i = 0
            while time.time() < end:
                result = (await sup.execute_many([("tool", {"i": i})]))[0]
                if result.ok:
                    admitted.append(time.time())
                i += 1
                await trio.sleep(0.001)
            out["admitted"] = admitted
        else:
            for i in range(n):
                await sup.execute_many([("tool", {"i": i})])
                await trio.sleep(0.01)
            # The fleet's totals reach every process within an exchange or two.
            with trio.move_on_after(3.0):
                while sup.stats("tool").breaker_state == "closed":  # noqa: ASYNC110
                    await trio.sleep(0.02)
            out["state"] = sup.stats("tool").breaker_state
        stats = sup.stats("tool")
        out.update(
            calls=stats.calls,
            successes=stats.successes,
            failures=stats.failures,
            rejected=stats.rejected,
            retries=stats.retries,
            budget_exhausted=stats.budget_exhausted,
            rate_limited=stats.rate_limited,
            still_connected=shared.connected,
        )
    return out


if __name__ == "__main__":
    print(json.dumps(trio.run(main, *sys.argv[1:5])), flush=True)
