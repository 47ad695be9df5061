"""Where the time goes when the timers section's 10,000 calls time out at once.

Usage::

    python benchmarks/bench_timers_profile.py [--calls N] [--rounds R]

Runs the timers section's round (``toolvisor._bench.timers``: N calls with a 0.5 s
per-attempt timeout to tools that sleep for ever, against bare ``trio.fail_after``),
alternating the two contenders for R rounds in this process, and reports per round:
p99 lateness, task steps per call (a trio instrument counts every step, by task
function), and the time spent in garbage collections by generation (``gc.callbacks``).
Then the same rounds with the collector disabled, which separates the collector's share
of the lateness from the scheduling work.
"""

from __future__ import annotations

import argparse
import collections
import gc
import statistics
import time
from typing import Any

import trio

from toolvisor._bench import timers


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.by_task: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.by_task[task.name.rsplit(".", 1)[-1]] += 1


class _GcTimes:
    def __init__(self) -> None:
        self.seconds: collections.Counter[int] = collections.Counter()
        self.count: collections.Counter[int] = collections.Counter()
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.count[info["generation"]] += 1


def _round(contender: str, calls: int, collect: bool) -> dict[str, Any]:
    steps = _Steps()
    gc_times = _GcTimes()
    gc.callbacks.append(gc_times)
    if not collect:
        gc.disable()
    try:

        async def main() -> dict[str, Any]:
            trio.lowlevel.add_instrument(steps)
            if contender == "toolvisor":
                return await timers._toolvisor(calls, 100, 0.5)
            return await timers._trio(calls, 0.5)

        figures = trio.run(main)
    finally:
        gc.enable()
        gc.callbacks.remove(gc_times)
    return {
        "p99_ms": figures["p99_ms"],
        "steps_per_call": sum(steps.by_task.values()) / calls,
        "steps_by_task": {k: round(v / calls, 2) for k, v in steps.by_task.most_common(6)},
        "gc_ms": {g: round(gc_times.seconds[g] * 1000) for g in sorted(gc_times.seconds)},
        "gc_count": dict(sorted(gc_times.count.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    for collect in (True, False):
        ratios = []
        print("garbage collector", "on" if collect else "off")
        for r in range(options.rounds):
            order = ["toolvisor", "trio"] if r % 2 == 0 else ["trio", "toolvisor"]
            got = {name: _round(name, options.calls, collect) for name in order}
            ratios.append(got["toolvisor"]["p99_ms"] / got["trio"]["p99_ms"])
            for name, f in got.items():
                print(
                    f"  round {r} {name:>9}: p99 {f['p99_ms']:7.1f} ms, "
                    f"{f['steps_per_call']:.2f} steps/call {f['steps_by_task']}, "
                    f"gc ms by generation {f['gc_ms']} (collections {f['gc_count']})"
                )
        print(f"  p99 toolvisor / trio, paired median: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
