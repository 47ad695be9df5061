"""Spawn time and memory of idle tool actors vs bare trio tasks blocked on a receive.

Run: ``python benchmarks/bench_actor_memory.py [--n 1000] [--rounds 5]``.

Each round spawns ``n`` toolvisor tool actors (Standard breaker, exponential retry, one
integer parameter) in a fresh interpreter, and ``n`` bare trio tasks each blocked on the
receive of its own memory channel in another, alternating which goes first. Memory per
actor comes from the RSS increase (everything) and from tracemalloc (Python heap only).
Prints the medians and the toolvisor / bare-task ratios; the target is at most 3x.
This is the suite's "actors" section (``toolvisor bench --sections actors``).
"""

from __future__ import annotations

import argparse
import dataclasses

from toolvisor._bench._config import Config
from toolvisor._bench.actors import run_actors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="actors (and bare tasks) per run")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds")
    options = parser.parse_args()
    cfg = dataclasses.replace(Config.full(), actors_n=options.n, actors_rounds=options.rounds)
    section, targets = run_actors(cfg, lambda label: print(f"  ran: {label}"), {})
    print(section["title"])
    for run in section["runs"].values():
        m = run["median"]
        print(
            f"  {run['label']:<38} spawn {m['spawn_us']:8.1f} µs   "
            f"RSS {m['rss_bytes']:8.0f} B   heap {m['traced_bytes']:8.0f} B   (medians)"
        )
    for key, value in section["ratios"].items():
        print(f"  ratio {key}: {value:.2f}x")
    for t in targets:
        verdict = "met" if t["met"] else "NOT MET"
        print(f"  target: {t['text']}: {t['value']:.2f} {t['op']} {t['threshold']:g} -> {verdict}")


if __name__ == "__main__":
    main()
