"""Per-call cost of argument validation for the seed's payment tool (3 fields).

Run: ``python benchmarks/bench_validation.py [--calls N] [--rounds R]``.

In one process it alternates rounds of: an empty Python function call (the baseline),
``compiled.validator.validate(args)`` (what an actor runs), ``spec.validate(args)`` (the
spec's convenience path, which checks its cached validator first) and, for scale, the
rejection path (``ValidationError`` built and caught). It prints the median per call of
each over the rounds, and the difference to the baseline. Alternating rounds in one
process keeps a noisy machine from faking a difference. The target is under 5 us for a
small valid dict.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if importlib.util.find_spec("toolvisor") is None:  # run from a checkout, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolvisor import (
    FunctionToolSpec,
    NumericParameter,
    StringParameter,
    ToolType,
    ValidationError,
)

TARGET_US = 5.0


def payment_spec() -> FunctionToolSpec:
    return FunctionToolSpec(
        id="payment-processor-v1",
        tool_name="process_payment",
        description="Process payment with full resilience",
        tool_type=ToolType.FUNCTION,
        parameters=[
            StringParameter(name="transaction_id", required=True),
            NumericParameter(name="amount", required=True),
            StringParameter(name="currency", required=True),
        ],
        timeout_s=30,
    )


def empty(_args: object) -> None:
    return None


def timed_round(fn: Callable[[object], None], args: object, calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn(args)
    return (time.perf_counter_ns() - start) / calls


def rejecting(validate: Callable[[object], None]) -> Callable[[object], None]:
    def run(args: object) -> None:
        with contextlib.suppress(ValidationError):
            validate(args)

    return run


def main(calls: int, rounds: int) -> None:
    spec = payment_spec()
    compiled = spec.compile()
    valid = {"transaction_id": "tx-12345", "amount": 99.99, "currency": "USD"}
    invalid = {"transaction_id": "tx-12345", "amount": True, "currency": "USD", "tip": 1}
    compiled.validator.validate(valid)  # warm up, and prove the args are valid
    spec.validate(valid)

    cases: dict[str, tuple[Callable[[object], None], object, int]] = {
        "baseline: empty function call": (empty, valid, calls),
        "compiled.validator.validate(valid)": (compiled.validator.validate, valid, calls),
        "spec.validate(valid)": (spec.validate, valid, calls),
        "spec.validate(invalid) -> ValidationError": (
            rejecting(spec.validate),
            invalid,
            max(1, calls // 20),
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):  # alternate: every case once per round
        for name, (fn, args, n) in cases.items():
            samples[name].append(timed_round(fn, args, n))

    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["baseline: empty function call"]
    print(f"payment args (3 fields), {calls} calls x {rounds} alternating rounds, medians:")
    print(f"{'case':<45} {'ns/call':>10} {'us/call':>9} {'minus baseline':>15}")
    for name, ns in medians.items():
        print(f"{name:<45} {ns:>10.0f} {ns / 1000:>9.3f} {ns - base:>12.0f} ns")
    for name in ("compiled.validator.validate(valid)", "spec.validate(valid)"):
        verdict = "meets" if medians[name] / 1000 < TARGET_US else "MISSES"
        print(f"{name}: {verdict} the {TARGET_US:g} us target")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=9, help="rounds (>= 7)")
    ns = parser.parse_args()
    if ns.rounds < 7:
        parser.error("--rounds must be at least 7 (medians of fewer are not trusted)")
    main(ns.calls, ns.rounds)
