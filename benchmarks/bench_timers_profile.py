"""Where the time goes when the timers section's 10,000 calls time out at once.

Usage::

    python benchmarks/bench_timers_profile.py [--calls N] [--rounds R]

Runs the timers section's round (``toolvisor._bench.timers``: N calls with a 0.5 s
per-attempt timeout to tools that sleep for ever, against bare ``trio.fail_after``),
alternating the two contenders for R rounds in this process, and reports per round:
p99 lateness, task steps per call (a trio instrument counts every step, by task
function), the time spent in garbage collections by generation (``gc.callbacks``), and
the part of it inside the round's window, from the first attempt's deadline to the
last error's arrival: the collections that delay the errors ("in window": full
collections, and young ones of generations 0 and 1). Then the same rounds with the
collector disabled, which separates the collector's share of the lateness from the
scheduling work.
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
        self.seconds: dict[int, float] = collections.defaultdict(float)
        self.count: collections.Counter[int] = collections.Counter()
        #: Every collection as (generation, start, end), ``time.perf_counter()``.
        self.spans: list[tuple[int, float, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            end = time.perf_counter()
            self.seconds[info["generation"]] += end - self._started
            self.count[info["generation"]] += 1
            self.spans.append((info["generation"], self._started, end))

    def within(self, low: float, high: float, *, full: bool) -> tuple[float, int]:
        """Seconds of full (or young) collections inside ``[low, high]``, and how many."""
        seconds, count = 0.0, 0
        for generation, start, end in self.spans:
            if (generation == 2) == full and end > low and start < high:
                seconds += min(end, high) - max(start, low)
                count += 1
        return seconds, count


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
                return await timers._toolvisor(calls, 100, 0.5, log)
            return await timers._trio(calls, 0.5, log)

        log = timers.Log(calls)
        figures = trio.run(main)
    finally:
        gc.enable()
        gc.callbacks.remove(gc_times)
    low, high = log.window(0.5)
    full_s, full_n = gc_times.within(low, high, full=True)
    young_s, young_n = gc_times.within(low, high, full=False)
    return {
        "window_ms": round((high - low) * 1000),
        "in_window": f"full {full_s * 1000:.0f} ms ({full_n}), young {young_s * 1000:.0f} ms "
        f"({young_n})",
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
                    f"gc ms by generation {f['gc_ms']} (collections {f['gc_count']}); "
                    f"window {f['window_ms']} ms, in it: {f['in_window']}"
                )
        print(f"  p99 toolvisor / trio, paired median: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
