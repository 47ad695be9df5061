"""Chaos: seeded random mixes of faults, hangs, deadlines, cancellations, kills and duplicates.

Every run drives one supervisor on trio's MockClock with calls through ``execute``,
``submit`` and ``execute_many``, while tools fail, hang past their attempt timeout or
sleep past the caller's deadline, callers cancel their own scopes, ``kill()`` crashes
actors mid-call, and idempotent calls repeat the same key concurrently. Afterwards:

- every call got exactly one outcome (a value, a documented error, or its cancellation)
  and nothing hangs;
- each tool's counters obey ``calls == successes + failures + rejected + cancelled``;
- no idempotent key whose execution succeeded ran again, and no key ever ran twice at
  the same time (failures are not stored, so a failed key may run again).

The seed names the run: a failure reproduces with the same seed. The default runs are
short; the ``slow`` run makes 10,000 calls with hundreds of kills.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import toolvisor as tv


class ToolFaultError(Exception):
    """A tool's own failure."""


@attrs.define
class Ledger:
    """What the idempotent tool did, per key: to check that no key ran twice."""

    running: Counter[str] = attrs.field(factory=Counter)
    succeeded: set[str] = attrs.field(factory=set)
    overlaps: list[str] = attrs.field(factory=list)
    reruns_after_success: list[str] = attrs.field(factory=list)
    executions: int = 0


def make_tools(ledger: Ledger) -> dict[str, tuple[tv.FunctionToolSpec, Any]]:
    async def work(args: dict[str, Any]) -> Any:
        mode = args["mode"]
        if mode == "hang":
            await trio.sleep_forever()
        await trio.sleep(args["delay"])
        if mode == "fault":
            raise ToolFaultError(f"call {args['call']} failed")
        return args["call"]

    async def pay(args: dict[str, Any]) -> Any:
        key = args["transaction_id"]
        ledger.executions += 1
        if ledger.running[key]:
            ledger.overlaps.append(key)
        if key in ledger.succeeded:
            ledger.reruns_after_success.append(key)
        ledger.running[key] += 1
        try:
            if args["mode"] == "hang":
                await trio.sleep_forever()
            await trio.sleep(args["delay"])
            if args["mode"] == "fault":
                raise ToolFaultError(f"payment {key} declined")
        finally:
            ledger.running[key] -= 1
        ledger.succeeded.add(key)
        return {"paid": key}

    def spec(name: str, *, idempotent: bool = False) -> tv.FunctionToolSpec:
        params = [
            tv.StringParameter(name="mode"),
            tv.NumericParameter(name="delay", minimum=0),
            tv.IntegerParameter(name="call"),
        ]
        if idempotent:
            params.append(tv.StringParameter(name="transaction_id"))
        made = tv.FunctionToolSpec(
            id=f"{name}-v1",
            tool_name=name,
            parameters=params,
            timeout_s=1.0,
            max_concurrency=4,
            queue_size=8,
            overflow="reject" if name == "strict" else "wait",
            retry_policy=tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.05),
            circuit_breaker_policy=tv.StandardCircuitBreakerPolicy(
                failure_threshold=6, recovery_timeout=0.5
            ),
        )
        if idempotent:
            made.idempotency.enabled = True
            made.idempotency.key_fields = ["transaction_id"]
        return made

    return {
        "work": (spec("work"), work),
        "strict": (spec("strict"), work),
        "pay": (spec("pay", idempotent=True), pay),
    }


NO_OUTCOME = object()
#: A kill() returns once the actor restarted: well within this (MockClock seconds).
KILL_RETURNS_S = 5.0


def documented(exc: BaseException) -> bool:
    return isinstance(exc, tv.ToolvisorError | ToolFaultError)


@attrs.define
class Chaos:
    """One seeded run: the plan of every call, and what each call ended with."""

    seed: int
    calls: int
    kills: int = 0
    stuck_kills: int = 0
    outcomes: list[object] = attrs.field(factory=list)
    doubled: list[int] = attrs.field(factory=list)

    def record(self, i: int, outcome: object) -> None:
        if self.outcomes[i] is not NO_OUTCOME:
            self.doubled.append(i)
        self.outcomes[i] = outcome

    def args(self, rng: random.Random, i: int, tool: str) -> dict[str, Any]:
        roll = rng.random()
        mode = "hang" if roll < 0.05 else "fault" if roll < 0.3 else "ok"
        args: dict[str, Any] = {"mode": mode, "delay": rng.choice([0.0, 0.01, 0.2, 1.5]), "call": i}
        if tool == "pay":
            # Few keys: duplicates run concurrently and after each other.
            args["transaction_id"] = f"tx-{self.seed}-{rng.randrange(self.calls // 8 + 1)}"
        return args


async def one_call(sup: tv.Supervisor, chaos: Chaos, rng: random.Random, i: int, tool: str) -> None:
    args = chaos.args(rng, i, tool)
    timeout = rng.choice([None, None, 0.5, 3.0])
    entry = rng.choice(["execute", "execute", "submit"])
    cancel_after = rng.choice([None, None, None, None, 0.05, 0.7])
    with trio.CancelScope() as scope:
        if cancel_after is not None:
            scope.deadline = trio.current_time() + cancel_after
        try:
            if entry == "execute":
                chaos.record(i, await sup.execute(tool, args, timeout=timeout))
            else:
                pending = await sup.submit(tool, args, timeout=timeout)
                chaos.record(i, await pending.result())
        except Exception as exc:
            chaos.record(i, exc)
        return
    chaos.record(i, trio.Cancelled)  # the caller's own scope ended the call


async def many_calls(
    sup: tv.Supervisor, chaos: Chaos, rng: random.Random, first: int, tools: list[str]
) -> None:
    batch = [(tool, chaos.args(rng, first + j, tool)) for j, tool in enumerate(tools)]
    results = await sup.execute_many(batch, timeout=rng.choice([None, 2.0]))
    assert len(results) == len(batch)
    for j, result in enumerate(results):
        chaos.record(first + j, result)


async def kill(sup: tv.Supervisor, chaos: Chaos, tool: str) -> None:
    chaos.kills += 1
    with trio.move_on_after(KILL_RETURNS_S) as scope:
        await sup.kill(tool)
    if scope.cancelled_caught:
        chaos.stuck_kills += 1


async def killer(sup: tv.Supervisor, chaos: Chaos, rng: random.Random, every_s: float) -> None:
    while True:
        await trio.sleep(rng.expovariate(1.0 / every_s))
        tool = rng.choice(["work", "strict", "pay"])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill, sup, chaos, tool)
            if rng.random() < 0.2:  # overlapping kills of one tool must all return
                nursery.start_soon(kill, sup, chaos, tool)


async def run_chaos(seed: int, calls: int, *, kill_every_s: float = 0.3) -> None:
    rng = random.Random(seed)
    ledger = Ledger()
    chaos = Chaos(seed=seed, calls=calls, outcomes=[NO_OUTCOME] * calls)
    async with tv.open_supervisor(max_restarts=10**6, within_s=1.0, grace_s=5.0) as sup:
        for spec, fn in make_tools(ledger).values():
            await sup.spawn(spec, fn)
        with trio.fail_after(calls * 10 + 600):  # MockClock seconds: only a hang gets here
            async with trio.open_nursery() as chaos_nursery:
                chaos_nursery.start_soon(killer, sup, chaos, rng, kill_every_s)
                async with trio.open_nursery() as callers:
                    i = 0
                    while i < calls:
                        await trio.sleep(rng.expovariate(50.0))
                        if rng.random() < 0.1 and i + 3 <= calls:
                            tools = [rng.choice(["work", "pay", "strict"]) for _ in range(3)]
                            callers.start_soon(many_calls, sup, chaos, rng, i, tools)
                            i += 3
                        else:
                            tool = rng.choice(["work", "work", "strict", "pay", "pay"])
                            callers.start_soon(one_call, sup, chaos, rng, i, tool)
                            i += 1
                chaos_nursery.cancel_scope.cancel()
        await trio.sleep(5.0)  # let calls abandoned by their callers settle
        stats = {name: sup.stats(name) for name in sup.tools()}

    # Every broken invariant at once, so one failing seed says all that went wrong.
    problems: list[str] = []
    if chaos.stuck_kills:
        problems.append(f"{chaos.stuck_kills} of {chaos.kills} kill()s did not return")
    missing = [i for i, o in enumerate(chaos.outcomes) if o is NO_OUTCOME]
    if missing:
        problems.append(f"{len(missing)} calls without an outcome: {missing[:10]}")
    if chaos.doubled:
        problems.append(f"calls with two outcomes: {chaos.doubled[:10]}")
    for i, outcome in enumerate(chaos.outcomes):
        error = outcome.error if isinstance(outcome, tv.ToolResult) else outcome
        if isinstance(error, BaseException) and not documented(error):
            problems.append(f"call {i} ended with {error!r}")
    for name, s in stats.items():
        if s.in_flight or s.queued:
            problems.append(f"{name} not settled: {s.in_flight} in flight, {s.queued} queued")
        if s.calls != s.successes + s.failures + s.rejected + s.cancelled:
            problems.append(
                f"{name}: calls {s.calls} != successes {s.successes} + failures "
                f"{s.failures} + rejected {s.rejected} + cancelled {s.cancelled}"
            )
    if ledger.overlaps:
        problems.append(f"keys run twice at once: {ledger.overlaps[:5]}")
    if ledger.reruns_after_success:
        problems.append(f"keys run again after succeeding: {ledger.reruns_after_success[:5]}")
    assert not problems, f"seed {seed}:\n" + "\n".join(problems)
    assert ledger.executions > 0 and chaos.kills > 0  # the run did what it is for


@pytest.mark.parametrize("seed", [1, 2])
async def test_chaos_short(seed: int, autojump_clock: trio.testing.MockClock) -> None:
    await run_chaos(seed, calls=150)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 15))
async def test_chaos_ten_thousand_calls_with_kills(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    await run_chaos(seed, calls=2000)
