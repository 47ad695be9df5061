"""The life of calls through a real supervisor, as a Hypothesis state machine.

One trio run per example holds the supervisor for the whole example: it runs in a thread
of its own under a MockClock that only moves when a rule moves it, and each rule is sent
into that run (``trio_thread.TrioThread``). Rules spawn tools, issue calls of every kind
(success, failure, hang past its timeout, refused by an open breaker, idempotent
duplicates; through execute, submit, execute_many and a FunctionToolExecutor), cancel
callers, kill (also twice at once), stop, respawn, reconfigure and close. After every
step, once the calls of a tool settled, its counters obey
``calls == successes + failures + rejected + cancelled``, ``ToolResult.attempts`` equals
the runs of the tool for that call, and ``retries`` equals tool runs minus calls that ran;
every call issued gets exactly one outcome.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from trio_thread import TrioThread

import toolvisor as tv
from toolvisor.actors.stats import Counters

KINDS = ["ok", "fail", "hang", "slow"]
STEP_S = 0.25  # time moves in steps this long, each followed by every task settling


class ToolFailedError(Exception):
    """The tool's own failure."""


@attrs.define(eq=False)
class Caller:
    """One call issued, and what came back."""

    n: int
    tool: str
    gen: int
    via: str
    kind: str
    scope: trio.CancelScope
    outcomes: list[tuple[str, Any]] = attrs.Factory(list)
    attempts: int | None = None  # ToolResult.attempts, when the call gave one

    @property
    def pending(self) -> bool:
        return not self.outcomes


def spec_for(name: str) -> tv.FunctionToolSpec:
    if name == "b":
        params: list[tv.Parameter] = [tv.StringParameter(name="key", required=True)]
    else:
        params = [tv.IntegerParameter(name="n"), tv.StringParameter(name="kind")]
    spec = tv.FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        parameters=params,
        timeout_s=2,
        max_concurrency=2,
        queue_size=4,
    )
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.5)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=3, recovery_timeout=3
    )
    if name == "b":
        spec.idempotency.enabled = True
        spec.idempotency.key_fields = ["key"]
        spec.retry_policy = tv.NoRetryPolicy()
    return spec


class CallLife(RuleBasedStateMachine):
    """Calls through one supervisor, in one trio run per example."""

    def __init__(self) -> None:
        super().__init__()
        self.callers: list[Caller] = []
        self.runs: Counter[tuple[str, int, Any]] = Counter()  # (tool, gen, n or key) -> runs
        self.gen = {"a": 0, "b": 0}
        self.counters: dict[tuple[str, int], Counters] = {}
        self.live = {"a": True, "b": True}
        self.stopping: dict[str, bool] = {}
        self.kills_pending = 0
        self.closed = False
        self.seq = 0
        self.run = TrioThread(self._setup)
        self.clock = self.run.clock

    # -------------------------------------------------------------- the trio run

    async def _setup(self, nursery: trio.Nursery) -> None:
        self.close_requested = trio.Event()
        self.sup_closed = trio.Event()
        self.nursery = nursery
        await nursery.start(self._host)
        self.executor = tv.FunctionToolExecutor(spec_for("x"), self._tool_fn("x"))

    async def _host(self, task_status: trio.TaskStatus[None]) -> None:
        async with tv.open_supervisor(max_restarts=1000, within_s=1, grace_s=1) as sup:
            self.sup = sup
            for name in ("a", "b"):
                await self._spawn(name)
            task_status.started()
            await self.close_requested.wait()
        self.sup_closed.set()

    async def _spawn(self, name: str) -> None:
        self.gen[name] += 1
        await self.sup.spawn(spec_for(name), self._tool_fn(name))
        # No public read of a stopped tool's counters exists: keep the live object to
        # check the calls that ended while it stopped.
        self.counters[name, self.gen[name]] = self.sup._routes[name].counters
        self.live[name] = True

    def _tool_fn(self, name: str) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        async def tool(args: dict[str, Any]) -> Any:
            gen = self.gen.get(name, 1)
            if name == "b":
                ident, kind = args["key"], args["key"].rstrip("0123456789")
            else:
                ident, kind = args["n"], args["kind"]
            self.runs[name, gen, ident] += 1
            if kind == "fail":
                raise ToolFailedError(f"{name} {ident}")
            if kind == "hang":
                await trio.sleep_forever()
            if kind == "slow":
                await trio.sleep(1)
            return ident

        return tool

    def step(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        return self.run.step(fn)

    async def _advance(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP_S)):
            self.clock.jump(STEP_S)
            await trio.testing.wait_all_tasks_blocked()

    # -------------------------------------------------------------- calls

    async def _call(self, caller: Caller, args: dict[str, Any], timeout: float | None) -> None:
        sup = self.sup
        with caller.scope:
            try:
                if caller.via == "execute":
                    value = await sup.execute(caller.tool, args, timeout=timeout)
                    caller.outcomes.append(("value", value))
                elif caller.via == "executor":
                    value = await self.executor.execute(args, timeout=timeout)
                    caller.outcomes.append(("value", value))
                else:
                    if caller.via == "submit":
                        pending = await sup.submit(caller.tool, args, timeout=timeout)
                        result = await pending.result()
                        again = await pending.result()  # a PendingCall may be awaited twice
                        assert (again.ok, again.value, again.error) == (
                            result.ok,
                            result.value,
                            result.error,
                        )
                    else:
                        [result] = await sup.execute_many([(caller.tool, args)], timeout=timeout)
                    caller.attempts = result.attempts
                    if result.ok:
                        caller.outcomes.append(("value", result.value))
                    else:
                        caller.outcomes.append(("error", result.error))
            except Exception as exc:
                caller.outcomes.append(("error", exc))
        if caller.scope.cancelled_caught:
            caller.outcomes.append(("cancelled", None))

    @rule(
        tool=st.sampled_from(["a", "b", "x"]),
        kind=st.sampled_from(KINDS),
        via=st.sampled_from(["execute", "submit", "many"]),
        timeout=st.sampled_from([None, None, 1.0, 3.0]),
        key=st.integers(0, 2),
        burst=st.integers(1, 3),
    )
    def call(
        self, tool: str, kind: str, via: str, timeout: float | None, key: int, burst: int
    ) -> None:
        """``burst`` calls at once (duplicates of one key for the idempotent tool)."""
        if tool == "x":
            via = "executor"
        elif tool == "b" and via == "execute":
            via = "submit"  # every idempotent call gives a ToolResult (its attempts)

        async def issue() -> None:
            for _ in range(burst):
                self.seq += 1
                gen = self.gen.get(tool, 1)
                caller = Caller(self.seq, tool, gen, via, kind, trio.CancelScope())
                self.callers.append(caller)
                args: dict[str, Any]
                args = {"key": f"{kind}{key}"} if tool == "b" else {"n": self.seq, "kind": kind}
                self.nursery.start_soon(self._call, caller, args, timeout)

        self.step(issue)

    @precondition(lambda self: any(c.pending for c in self.callers))
    @rule(data=st.data())
    def cancel_a_caller(self, data: st.DataObject) -> None:
        caller = data.draw(st.sampled_from([c for c in self.callers if c.pending]))

        async def cancel() -> None:
            caller.scope.cancel()

        self.step(cancel)

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.5]))
    def advance(self, seconds: float) -> None:
        self.step(lambda: self._advance(seconds))

    # -------------------------------------------------------------- lifecycle

    @rule(tool=st.sampled_from(["a", "b"]), at_once=st.integers(1, 2))
    def kill(self, tool: str, at_once: int) -> None:
        async def one() -> None:
            try:
                await self.sup.kill(tool)
            except (tv.ToolUnavailableError, tv.SupervisorClosedError):
                pass
            finally:
                self.kills_pending -= 1

        async def kill() -> None:
            for _ in range(at_once):
                self.kills_pending += 1
                self.nursery.start_soon(one)

        self.step(kill)

    @precondition(lambda self: not self.closed)
    @rule(tool=st.sampled_from(["a", "b"]), grace=st.sampled_from([0.0, 1.0]))
    def stop(self, tool: str, grace: float) -> None:
        if not self.live[tool] or self.stopping.get(tool):
            return

        async def stop() -> None:
            self.stopping[tool] = True
            try:
                await self.sup.stop(tool, grace_s=grace)
            finally:
                self.stopping[tool] = False
                self.live[tool] = False

        async def start() -> None:
            self.nursery.start_soon(stop)

        self.step(start)

    @precondition(lambda self: not self.closed)
    @rule(tool=st.sampled_from(["a", "b"]))
    def respawn(self, tool: str) -> None:
        if self.live[tool] or self.stopping.get(tool):
            return
        self.step(lambda: self._spawn(tool))

    @precondition(lambda self: not self.closed)
    @rule(tool=st.sampled_from(["a", "b"]), attempts=st.integers(1, 3), threshold=st.integers(1, 4))
    def reconfigure(self, tool: str, attempts: int, threshold: int) -> None:
        if not self.live[tool] or self.stopping.get(tool):
            return

        async def swap() -> None:
            await self.sup.reconfigure(
                tool,
                retry_policy=tv.FixedRetryPolicy(max_attempts=attempts, delay_seconds=0.5),
                circuit_breaker_policy=tv.StandardCircuitBreakerPolicy(
                    failure_threshold=threshold, recovery_timeout=3
                ),
            )

        self.step(swap)

    @precondition(lambda self: not self.closed)
    @rule(now=st.integers(0, 9))
    def close(self, now: int) -> None:
        """Close the supervisor (rarely: nothing but refusals follows)."""
        if now == 0:
            self._close()

    def _close(self) -> None:
        async def close() -> None:
            self.close_requested.set()
            while not self.sup_closed.is_set():
                await self._advance(STEP_S)

        self.step(close)
        self.closed = True
        for name in self.live:
            self.live[name] = False

    # -------------------------------------------------------------- checks

    @invariant()
    def no_kill_hangs(self) -> None:
        assert self.kills_pending == 0, "a kill() did not return"

    @invariant()
    def each_call_has_at_most_one_outcome(self) -> None:
        for caller in self.callers:
            assert len(caller.outcomes) <= 1, caller

    @invariant()
    def settled_tools_balance(self) -> None:
        for (name, gen), counters in self.counters.items():
            if any(c.pending and c.tool == name and c.gen == gen for c in self.callers):
                continue
            self._check_tool(name, gen, counters)
        if not any(c.pending and c.tool == "x" for c in self.callers):
            self._check_tool("x", 1, self.executor.counters)

    def _check_tool(self, name: str, gen: int, c: Counters) -> None:
        ended = c.successes + c.failures + c.rejected + c.cancelled
        assert c.calls == ended, (name, gen, c.calls, ended)
        runs = {k[2]: n for k, n in self.runs.items() if k[:2] == (name, gen)}
        mine = [caller for caller in self.callers if (caller.tool, caller.gen) == (name, gen)]
        current = self.gen.get(name) == gen and self.live.get(name)
        if current and not self.stopping.get(name):
            stats = self.sup.stats(name)
            assert stats.calls == c.calls and stats.in_flight == stats.queued == 0
        if name == "b":
            # Idempotent calls: per execution, not per caller. Every b call gives a
            # ToolResult unless its caller was cancelled (then its attempts are unknown).
            if any(caller.outcomes[0][0] == "cancelled" for caller in mine):
                return
            attempts = [caller.attempts or 0 for caller in mine]
            assert sum(attempts) == sum(runs.values())
            assert c.retries == sum(runs.values()) - sum(a > 0 for a in attempts)
            return
        assert c.retries == sum(runs.values()) - len(runs)
        for caller in mine:
            self._check_caller(caller, runs.get(caller.n, 0))

    def _check_caller(self, caller: Caller, ran: int) -> None:
        [(what, result)] = caller.outcomes
        if caller.attempts is not None:
            assert caller.attempts == ran, (caller, ran)
        if what == "value":
            assert result == caller.n and ran >= 1
        elif what == "error":
            if isinstance(result, tv.CircuitOpenError):
                assert ran == 0, "CircuitOpenError for a call whose tool ran"
            if isinstance(result, ToolFailedError):
                assert caller.kind == "fail" and ran >= 1
            if caller.kind == "fail" and ran >= 1:
                # The tool ran and failed: its own error, or a timeout or crash.
                assert isinstance(
                    result,
                    ToolFailedError
                    | tv.ToolTimeoutError
                    | tv.ActorCrashedError
                    | tv.ToolUnavailableError
                    | tv.SupervisorClosedError,
                ), result

    def teardown(self) -> None:
        try:
            if self.run.failure is None:
                if not self.closed:
                    self._close()

                async def settle() -> None:
                    for _ in range(400):
                        if not any(c.pending for c in self.callers):
                            return
                        await self._advance(STEP_S)

                self.step(settle)
                assert all(len(c.outcomes) == 1 for c in self.callers), [
                    c for c in self.callers if len(c.outcomes) != 1
                ]
                self.no_kill_hangs()
                self.settled_tools_balance()
        finally:
            self.run.stop()


def test_call_life() -> None:
    run_state_machine_as_test(CallLife, settings=settings(max_examples=40, stateful_step_count=30))


@pytest.mark.slow
def test_call_life_longer() -> None:
    run_state_machine_as_test(CallLife, settings=settings(max_examples=300, stateful_step_count=50))
