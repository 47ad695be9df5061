"""Fuzzing every entry point: any input gets a value or a documented error, never a hang.

Hypothesis generates calls to ``execute``, ``submit``, ``execute_many`` and the
``FunctionToolExecutor`` (arguments nested thousands of levels, megabyte strings, lone
surrogates, NaN, bytes, sets, non-string keys, contexts that are not contexts, tenants
that are not strings, tool names that are lists, timeouts of ``10**400``), and
``spawn`` calls with odd specs and functions. A call may only end with:

- its tool's value, or the tool's own exception (``ToolFaultError``);
- a ``ToolvisorError``;
- a ``TypeError`` or ``ValueError`` whose message starts with the parameter at fault
  (``ctx``, ``timeout``, ``tool``, ``spawn()``...);

and every message is shorter than 5,000 characters whatever the input. The default run
is short; the ``slow`` run makes 10,000 calls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolvisor as tv

#: What a documented TypeError/ValueError starts with: the parameter it is about.
DOCUMENTED = re.compile(
    r"^(ctx\b|timeout\b|tool\b|tool must|spawn\(\)|FunctionToolExecutor takes|fn\b|args\b|"
    r"arguments\b|calls?\b|execute_many\b|spec\b)"
)
MAX_MESSAGE = 5000
#: A call to a tool that returns at once must be answered well within this.
NO_HANG_S = 10.0


class ToolFaultError(Exception):
    """The tools' own failure: callers get it unwrapped (documented)."""


def check_error(exc: BaseException, where: str) -> None:
    """Fail unless ``exc`` is one a caller is told to expect."""
    text = str(exc)
    assert len(text) < MAX_MESSAGE, f"{where}: {type(exc).__name__} message of {len(text):,} chars"
    if isinstance(exc, tv.ToolvisorError | ToolFaultError):
        return
    if type(exc) in (TypeError, ValueError) and DOCUMENTED.match(text):
        return
    raise AssertionError(f"{where}: undocumented {type(exc).__name__}: {text[:300]}") from exc


# --------------------------------------------------------------------------- tools


async def echo(args: dict[str, Any]) -> dict[str, Any]:
    await trio.lowlevel.checkpoint()
    n = args.get("n")
    if isinstance(n, int) and n % 3 == 1:
        raise ToolFaultError(f"echo refused n={n}")
    return dict(args)


async def ctx_echo(args: dict[str, Any], ctx: tv.ExecutionContext) -> Any:
    await trio.lowlevel.checkpoint()
    return [ctx.tenant_id, ctx.request_id, len(args)]


def make_spec(name: str, *, idempotent: bool = False) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        parameters=[
            tv.StringParameter(name="text", required=False),
            tv.IntegerParameter(name="n", required=False),
            tv.ArrayParameter(name="items", items=tv.StringParameter(name="i"), required=False),
            tv.ObjectParameter(name="data", additional_properties=True, required=False),
        ],
        timeout_s=5.0,
        retry_policy=tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.0),
    )
    spec.idempotency.enabled = idempotent
    return spec


TOOLS: dict[str, tuple[Callable[..., Any], bool]] = {
    "echo": (echo, False),
    "ctx_echo": (ctx_echo, False),
    "idem": (echo, True),
    "idem_ctx": (ctx_echo, True),
}


# --------------------------------------------------------------------------- strategies


class Big:
    """A value too deep or too long to print: built only when the call is made, so that
    Hypothesis reports a failing example as ``Big('list', 3000)``."""

    def __init__(self, kind: str, size: int) -> None:
        self.kind = kind
        self.size = size

    def __repr__(self) -> str:
        return f"Big({self.kind!r}, {self.size})"

    def build(self) -> Any:
        if self.kind == "str":
            return "é" * self.size
        if self.kind == "int":  # 5,000 digits: too long for str()
            return 10**self.size
        value: Any = 1
        for _ in range(self.size):
            value = [value] if self.kind == "list" else {"a": value}
        return value


def built(args: Any) -> Any:
    if isinstance(args, dict):
        return {k: v.build() if isinstance(v, Big) else v for k, v in args.items()}
    return args


hostile_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(2**80)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "é" * 50, "", "\x00"]),
    st.binary(max_size=4),
    st.frozensets(st.integers(), max_size=2),
    st.just(object()),
)
hostile_values = st.recursive(
    hostile_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(st.text(max_size=5), st.integers(), st.none()), inner, max_size=4
        ),
    ),
    max_leaves=20,
)
deep_values = st.builds(Big, st.sampled_from(["list", "dict"]), st.integers(1, 3000))
huge_strings = st.builds(Big, st.just("str"), st.sampled_from([200_000, 10_000_001]))
huge_ints = st.builds(Big, st.just("int"), st.just(5000))
fields = st.one_of(st.sampled_from(["text", "n", "items", "data", "extra"]), st.text(max_size=8))
arguments = st.one_of(
    st.dictionaries(
        fields, st.one_of(hostile_values, deep_values, huge_strings, huge_ints), max_size=4
    ),
    st.fixed_dictionaries({"text": st.text(max_size=30)}, optional={"n": st.integers(0, 9)}),
    st.sampled_from([None, [], "args", 3, ("text", "x"), {1: 2}]),
)
keys = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["t\ud800", "k" * 5000, "tenant/with?odd&chars%"]),
    st.binary(max_size=4),
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
)
contexts = st.one_of(
    st.none(),
    st.builds(
        tv.ExecutionContext,
        tenant_id=keys,
        request_id=st.one_of(st.none(), st.text(max_size=8), st.integers()),
        metadata=st.dictionaries(st.text(max_size=4), hostile_leaves, max_size=2),
        idempotency_key=keys,
    ),
    st.sampled_from([{"tenant_id": "acme"}, "acme", 7, ["ctx"], tv.ExecutionContext]),
)
tool_names = st.one_of(
    st.sampled_from(sorted(TOOLS)),
    st.sampled_from(sorted(TOOLS)),
    st.text(max_size=12),
    st.sampled_from([["echo"], None, 3, b"echo", "x" * 100_000, ("echo",), "echo\x00"]),
)
timeouts = st.one_of(
    st.none(),
    st.none(),
    st.floats(min_value=0.5, max_value=1e9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-3, max_value=10**500),
    st.sampled_from([10**400, 0, -1, True, False, "1", 1j, [1], math.nan, 1e-12, math.inf]),
)
entry_points = st.sampled_from(["execute", "submit", "execute_many", "executor"])
calls = st.tuples(entry_points, tool_names, arguments, contexts, timeouts)
malformed_entries = st.sampled_from(
    [("echo",), "echo", None, ("echo", {}, None, "extra"), 42, ("echo", {"text": "x"}, "ctx")]
)


# --------------------------------------------------------------------------- driving


class Run:
    """One supervisor with every tool, and the executors, for one generated batch."""

    def __init__(self, sup: tv.Supervisor) -> None:
        self.sup = sup
        self.executors = {
            name: tv.FunctionToolExecutor(make_spec(name, idempotent=idem), fn)
            for name, (fn, idem) in TOOLS.items()
        }
        self.calls = 0

    async def one(self, call: tuple[Any, ...]) -> None:
        entry, tool, args, ctx, timeout = call
        args = built(args)
        self.calls += 1
        where = f"{entry}({tool!r:.40}, ctx={type(ctx).__name__}, timeout={timeout!r:.30})"
        try:
            with trio.fail_after(NO_HANG_S):
                if entry == "execute":
                    await self.sup.execute(tool, args, ctx, timeout=timeout)
                elif entry == "submit":
                    pending = await self.sup.submit(tool, args, ctx, timeout=timeout)
                    result = await pending.result()
                    if result.error is not None:
                        check_error(result.error, where)
                elif entry == "executor":
                    executor = self.executors.get(tool) if isinstance(tool, str) else None
                    await (executor or self.executors["echo"]).execute(args, ctx, timeout=timeout)
        except trio.TooSlowError:
            raise AssertionError(f"{where}: no answer within {NO_HANG_S} s") from None
        except Exception as exc:
            check_error(exc, where)

    async def many(self, batch: list[Any], timeout: object) -> None:
        self.calls += len(batch)
        try:
            with trio.fail_after(NO_HANG_S):
                results = await self.sup.execute_many(batch, timeout=timeout)  # type: ignore[arg-type]
        except trio.TooSlowError:
            raise AssertionError("execute_many: no answer") from None
        except Exception as exc:  # the whole batch refused: only for a bad timeout
            check_error(exc, "execute_many")
            return
        assert len(results) == len(batch), "execute_many must answer every entry, in order"
        for i, result in enumerate(results):
            assert isinstance(result, tv.ToolResult)
            assert result.ok == (result.error is None)
            if result.error is not None:
                check_error(result.error, f"execute_many entry {i}")


async def run_batch(batch: list[tuple[Any, ...]], extra: list[Any]) -> int:
    async with tv.open_supervisor(grace_s=1.0) as sup:
        for name, (fn, idem) in TOOLS.items():
            await sup.spawn(make_spec(name, idempotent=idem), fn)
        run = Run(sup)
        many = [c for c in batch if c[0] == "execute_many"]
        for call in batch:
            if call[0] != "execute_many":
                await run.one(call)
        if many or extra:
            entries = [(c[1], built(c[2]), c[3]) for c in many] + extra
            await run.many(entries, many[0][4] if many else None)
        return run.calls


FUZZ_SETTINGS = settings(
    deadline=None,
    report_multiple_bugs=False,  # shrink one failure, not every kind (minutes on a big batch)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(FUZZ_SETTINGS, max_examples=40)
@given(batch=st.lists(calls, min_size=1, max_size=6), extra=st.lists(malformed_entries, max_size=2))
def test_fuzzed_calls_end_with_documented_errors_only(
    batch: list[tuple[Any, ...]], extra: list[Any]
) -> None:
    trio.run(run_batch, batch, extra)


@pytest.mark.slow
def test_ten_thousand_fuzzed_calls_end_with_documented_errors_only() -> None:
    made = [0]

    @settings(FUZZ_SETTINGS, max_examples=1250, database=None)
    @given(batch=st.lists(calls, min_size=8, max_size=8))
    def fuzz(batch: list[tuple[Any, ...]]) -> None:
        made[0] += trio.run(run_batch, batch, [])

    fuzz()
    assert made[0] >= 10_000


# --------------------------------------------------------------------------- spawn


async def good_tool(args: dict[str, Any]) -> None:
    await trio.lowlevel.checkpoint()


def sync_tool(args: dict[str, Any]) -> None:
    return None


async def no_args() -> None:
    await trio.lowlevel.checkpoint()


specs = st.one_of(
    st.builds(make_spec, st.sampled_from(["a", "b", "echo"])),
    st.sampled_from([None, "spec", {"tool_name": "a"}, 3, tv.FunctionToolSpec]),
)
functions = st.sampled_from([good_tool, sync_tool, no_args, None, "fn", 3, print, lambda a: a])


@settings(FUZZ_SETTINGS, max_examples=60)
@given(spawns=st.lists(st.tuples(specs, functions), min_size=1, max_size=4))
def test_fuzzed_spawns_end_with_a_tool_or_a_documented_error(
    spawns: list[tuple[Any, Any]],
) -> None:
    async def main() -> None:
        async with tv.open_supervisor(grace_s=0.5) as sup:
            for spec, fn in spawns:
                try:
                    ref = await sup.spawn(spec, fn)
                except Exception as exc:
                    check_error(exc, f"spawn({spec!r:.40}, {fn!r:.40})")
                else:
                    assert ref.name in sup.tools()
                    with trio.fail_after(NO_HANG_S):
                        try:
                            await sup.execute(ref.name, {})
                        except Exception as exc:
                            check_error(exc, f"execute after spawn({fn!r:.40})")

    trio.run(main)
