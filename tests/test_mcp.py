"""toolvisor.mcp: the real MCP client of the ``mcp`` SDK against toolvisor's server.

In process over the SDK's in-memory transport and over streamable HTTP on a loopback
port (hypercorn's trio worker); ``toolvisor mcp`` as a subprocess over stdio and HTTP in
the slow tests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import mcp_tools
import pytest
import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from toolvisor import (
    ExecutionContext,
    FallbackPolicy,
    FunctionToolSpec,
    IdempotencyConfig,
    open_supervisor,
)
from toolvisor.mcp import mcp_server, serve_http

TESTS = Path(__file__).parent
ROOT = TESTS.parent


@pytest.fixture(autouse=True)
def _fresh_seen() -> None:
    for key in mcp_tools.SEEN:
        mcp_tools.SEEN[key] = 0


@asynccontextmanager
async def served(transport: str, **server_kw: Any) -> AsyncIterator[Client]:
    """A client connected to a toolvisor MCP server of mcp_tools' tools."""
    async with open_supervisor() as sup:
        await mcp_tools.setup(sup)
        if transport == "memory":
            async with Client(mcp_server(sup, **server_kw)) as client:
                yield client
            return
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve_http, sup, port=0, **server_kw))
            async with Client(f"{binds[0]}/mcp") as client:
                yield client
            nursery.cancel_scope.cancel()


TRANSPORTS = ["memory", "http"]


def _meta(result: Any) -> dict[str, Any]:
    return dict((result.meta or {}).get("toolvisor/error") or {})


def _text(result: Any) -> str:
    return "".join(c.text for c in result.content)


# --------------------------------------------------------------------------- tools/list


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_list_gives_schemas_and_hints(transport: str) -> None:
    async with served(transport) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert set(listed) == {"add", "charge", "decline", "down", "echo", "flaky", "probe", "slow"}
    assert listed["add"].input_schema == mcp_tools.ADD.json_schema()
    assert listed["add"].description == "Add two integers"
    charge = listed["charge"].annotations
    assert charge is not None
    assert (charge.idempotent_hint, charge.destructive_hint) == (True, False)
    add = listed["add"].annotations
    assert add is not None
    assert (add.idempotent_hint, add.read_only_hint, add.destructive_hint) == (False, False, True)


async def test_read_only_tools_are_hinted_read_only() -> None:
    async with served("memory") as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    echo = listed["echo"].annotations
    assert echo is not None
    assert (echo.read_only_hint, echo.destructive_hint) == (True, False)


# --------------------------------------------------------------------------- tools/call


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_call_returns_structured_content_and_json_text(transport: str) -> None:
    async with served(transport) as client:
        echoed = await client.call_tool("echo", {"text": "héllo"})
        added = await client.call_tool("add", {"a": 2, "b": 3})
    assert not echoed.is_error
    assert echoed.structured_content == {"text": "héllo"}
    assert json.loads(_text(echoed)) == {"text": "héllo"}
    assert not added.is_error
    assert _text(added) == "5"
    assert added.structured_content is None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bad_arguments_are_an_error_result_the_model_can_fix(transport: str) -> None:
    async with served(transport) as client:
        result = await client.call_tool("add", {"a": "two", "c": 1})
    assert result.is_error
    text = _text(result)
    assert "/a" in text and "/c" in text and "/b" in text
    assert "Fix the arguments" in text
    assert _meta(result) == {
        "type": "ValidationError",
        "retryable": False,
        "retry_after": None,
        "attempts": 0,
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_tool_error_is_an_error_result_with_its_own_type(transport: str) -> None:
    async with served(transport) as client:
        result = await client.call_tool("decline", {})
    assert result.is_error
    assert "card declined: insufficient funds" in _text(result)
    assert _meta(result) == {
        "type": "CardDeclinedError",
        "retryable": False,
        "retry_after": None,
        "attempts": 1,
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_tool_that_failed_its_retries_reports_the_attempts_that_ran(
    transport: str,
) -> None:
    async with served(transport) as client:
        result = await client.call_tool("flaky", {})
        probe = await client.call_tool("probe", {"tool": "flaky"})
    assert result.is_error
    assert "the service did not answer" in _text(result)
    assert _meta(result) == {
        "type": "TimeoutError",
        "retryable": True,
        "retry_after": None,
        "attempts": 3,
    }
    assert probe.structured_content["flaky_attempts"] == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_open_breaker_says_not_now_with_retry_after(transport: str) -> None:
    async with served(transport) as client:
        first = await client.call_tool("down", {})
        second = await client.call_tool("down", {})
        probe = await client.call_tool("probe", {"tool": "down"})
    assert _meta(first)["type"] == "ConnectionError"  # the failure that opened it: the tool's own
    assert _meta(first)["retryable"] is True
    assert _meta(first)["attempts"] == 1
    assert "payment gateway unreachable" in _text(first)
    meta = _meta(second)
    assert meta["type"] == "CircuitOpenError"
    assert meta["retryable"] is False
    assert 0 < meta["retry_after"] <= 60
    assert meta["attempts"] == 0
    assert "Do not call again before" in _text(second)
    assert probe.structured_content["calls"] == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unknown_tool_is_a_json_rpc_error(transport: str) -> None:
    async with served(transport) as client:
        with pytest.raises(MCPError, match="unknown tool 'nope'") as caught:
            await client.call_tool("nope", {})
        assert caught.value.code == -32602
        assert not (await client.call_tool("add", {"a": 1, "b": 1})).is_error


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_server_survives_bad_requests(transport: str) -> None:
    async with served(transport) as client:
        huge = await client.call_tool("echo", {"text": "x" * 2_000_000})
        assert huge.is_error and _meta(huge)["type"] == "ValidationError"
        odd = await client.call_tool("add", {"a": [1, {"b": None}], "b": 1e308})
        assert odd.is_error
        with pytest.raises(MCPError):
            await client.call_tool("", {})
        bad_key = await client.call_tool("charge", {"cents": 5}, meta={"idempotencyKey": 7})
        assert bad_key.is_error and "idempotencyKey" in _text(bad_key)
        assert _text(await client.call_tool("add", {"a": 40, "b": 2})) == "42"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_idempotency_key_in_meta_answers_a_resent_call_without_running_it(
    transport: str,
) -> None:
    async with served(transport) as client:
        first = await client.call_tool("charge", {"cents": 500}, meta={"idempotencyKey": "k-1"})
        again = await client.call_tool("charge", {"cents": 500}, meta={"idempotencyKey": "k-1"})
    assert first.structured_content == {"charged": 500, "execution": 1}
    assert again.structured_content == first.structured_content
    assert mcp_tools.SEEN["executions"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_new_idempotency_key_runs_the_same_arguments_again(transport: str) -> None:
    async with served(transport) as client:
        await client.call_tool("charge", {"cents": 500}, meta={"idempotencyKey": "k-1"})
        other = await client.call_tool("charge", {"cents": 500}, meta={"idempotencyKey": "k-2"})
    assert other.structured_content == {"charged": 500, "execution": 2}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_null_idempotency_key_is_no_key_the_tools_own_applies(transport: str) -> None:
    async with served(transport) as client:
        first = await client.call_tool("charge", {"cents": 7}, meta={"idempotencyKey": None})
        again = await client.call_tool("charge", {"cents": 7})
        other = await client.call_tool("charge", {"cents": 8}, meta={"idempotencyKey": None})
    # charge's own key comes from its arguments: the same cents are one execution.
    assert first.structured_content == {"charged": 7, "execution": 1}
    assert again.structured_content == first.structured_content
    assert other.structured_content == {"charged": 8, "execution": 2}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_cancellation_cancels_the_running_attempt(transport: str) -> None:
    async with served(transport) as client:
        with trio.move_on_after(0.3) as scope:
            await client.call_tool("slow", {})
        assert scope.cancelled_caught
        for _ in range(100):  # the cancellation travels to the server
            probe = (await client.call_tool("probe", {"tool": "slow"})).structured_content
            if probe["slow_cancelled"]:
                break
            await trio.sleep(0.02)
    assert probe["slow_started"] == 1
    assert probe["slow_cancelled"] == 1
    assert probe["cancelled"] == 1
    assert probe["in_flight"] == 0


@pytest.mark.parametrize("transport", ["memory", pytest.param("http", marks=pytest.mark.slow)])
async def test_200_concurrent_calls_get_exactly_one_result_each(transport: str) -> None:
    answers: dict[int, list[str]] = {}

    async with served(transport) as client:

        async def one(i: int) -> None:
            result = await client.call_tool("add", {"a": i, "b": 1000})
            answers.setdefault(i, []).append(_text(result))

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
    assert answers == {i: [str(i + 1000)] for i in range(200)}


async def test_a_tool_that_raises_unknown_tool_error_is_its_own_error_not_an_unknown_tool() -> None:
    # The tool exists and ran: an UnknownToolError of its own (a tool calling another
    # that is missing) is its failure, an error result, never the JSON-RPC error
    # of a tool that does not exist.
    async with open_supervisor() as sup:

        async def lookup(args: dict[str, Any]) -> Any:
            return await sup.execute("missing", {})

        await sup.spawn(FunctionToolSpec(id="lookup-v1", tool_name="lookup"), lookup)
        async with Client(mcp_server(sup)) as client:
            result = await client.call_tool("lookup", {})
    assert result.is_error
    assert "missing" in _text(result)
    assert _meta(result) == {
        "type": "UnknownToolError",
        "retryable": False,
        "retry_after": None,
        "attempts": 1,
    }


async def test_a_tool_that_takes_ctx_sees_the_request_id_and_the_idempotency_key() -> None:
    async with open_supervisor() as sup:

        async def whoami(args: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
            return {"request_id": ctx.request_id, "key": ctx.idempotency_key}

        await sup.spawn(FunctionToolSpec(id="whoami-v1", tool_name="whoami"), whoami)
        spec = FunctionToolSpec(
            id="keyed-v1", tool_name="keyed", idempotency=IdempotencyConfig(enabled=True)
        )
        await sup.spawn(spec, whoami)
        async with Client(mcp_server(sup)) as client:
            first = (await client.call_tool("whoami", {})).structured_content
            second = (await client.call_tool("whoami", {})).structured_content
            keyed = await client.call_tool("keyed", {}, meta={"idempotencyKey": "k-9"})
    assert first["key"] is None
    assert isinstance(first["request_id"], str) and first["request_id"]
    assert first["request_id"] != second["request_id"]  # each request its own
    assert keyed.structured_content["key"] == "k-9"


async def test_a_failed_call_its_fallback_answers_is_a_value_result() -> None:
    async with open_supervisor() as sup:

        async def broken(args: dict[str, Any]) -> Any:
            raise ConnectionError("down")

        spec = FunctionToolSpec(
            id="cached-v1",
            tool_name="cached",
            fallback=FallbackPolicy(value={"stale": True}),
        )
        await sup.spawn(spec, broken)
        async with Client(mcp_server(sup)) as client:
            result = await client.call_tool("cached", {})
    assert not result.is_error
    assert result.structured_content == {"stale": True}


async def test_call_deadline_from_the_server_option() -> None:
    async with served("memory", timeout=0.2) as client:
        result = await client.call_tool("slow", {})
    meta = _meta(result)
    assert result.is_error
    assert meta["type"] == "ToolTimeoutError"
    assert meta["retryable"] is True
    assert mcp_tools.SEEN["slow_cancelled"] == 1


def test_server_options_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout"):
        mcp_server(object(), timeout=0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the command


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow
async def test_toolvisor_mcp_over_stdio_with_the_real_client() -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "toolvisor", "mcp", "mcp_tools:setup", "--timeout", "30"],
        env=_env(),
        cwd=str(TESTS),
    )
    async with Client(params) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"add", "charge", "echo", "slow"} <= tools
        assert _text(await client.call_tool("add", {"a": 1, "b": 2})) == "3"
        invalid = await client.call_tool("add", {"a": 1})
        assert _meta(invalid)["type"] == "ValidationError"
        assert invalid.is_error and _meta(invalid)["attempts"] == 0
        declined = await client.call_tool("decline", {})
        assert declined.is_error
        assert _meta(declined) == {
            "type": "CardDeclinedError",
            "retryable": False,
            "retry_after": None,
            "attempts": 1,
        }
        flaky = _meta(await client.call_tool("flaky", {}))
        assert (flaky["type"], flaky["attempts"]) == ("TimeoutError", 3)
        await client.call_tool("down", {})
        opened = _meta(await client.call_tool("down", {}))
        assert opened["type"] == "CircuitOpenError" and opened["retry_after"] > 0
        assert (opened["retryable"], opened["attempts"]) == (False, 0)
        first = await client.call_tool("charge", {"cents": 9}, meta={"idempotencyKey": "s-1"})
        again = await client.call_tool("charge", {"cents": 9}, meta={"idempotencyKey": "s-1"})
        assert again.structured_content == first.structured_content
        with trio.move_on_after(0.5):
            await client.call_tool("slow", {})
        for _ in range(100):
            probe = (await client.call_tool("probe", {"tool": "slow"})).structured_content
            if probe["cancelled"]:
                break
            await trio.sleep(0.02)
        assert (probe["slow_cancelled"], probe["cancelled"], probe["in_flight"]) == (1, 1, 0)
        assert probe["executions"] == 1

        results: list[str] = []

        async def one(i: int) -> None:
            results.append(_text(await client.call_tool("add", {"a": i, "b": 0})))

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
        assert sorted(results, key=int) == [str(i) for i in range(200)]


@asynccontextmanager
async def toolvisor_mcp_http(*options: str) -> AsyncIterator[list[str]]:
    """``toolvisor mcp mcp_tools:TOOLS --transport http --port 0 OPTIONS`` in a subprocess;
    its stderr lines up to the one that says where it serves."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "toolvisor", "mcp", "mcp_tools:TOOLS", "--transport", "http",
         "--port", "0", *options],
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=str(TESTS),
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = b""
        with trio.fail_after(20):
            while b"/mcp" not in seen:
                chunk = await proc.stderr.receive_some()
                assert chunk, seen.decode()
                seen += chunk
        yield seen.decode().splitlines()
    finally:
        proc.terminate()
        await proc.wait()


def _after(lines: list[str], marker: str, sep: str) -> str:
    return next(x for x in lines if marker in x).rsplit(sep, 1)[1].strip()


@pytest.mark.slow
async def test_toolvisor_mcp_over_http_prints_its_url_and_serves() -> None:
    async with toolvisor_mcp_http() as lines:
        url = _after(lines, "serving", " at ")
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        async with Client(url) as client:
            assert _text(await client.call_tool("add", {"a": 20, "b": 22})) == "42"


@pytest.mark.slow
async def test_toolvisor_mcp_serves_its_calls_metrics_on_the_metrics_port() -> None:
    async with toolvisor_mcp_http("--metrics-port", "0") as lines:
        metrics = _after(lines, "metrics on", " on ")
        assert metrics.startswith("http://127.0.0.1:") and metrics.endswith("/metrics")
        async with Client(_after(lines, "serving", " at ")) as client:
            for a in (1, 2):
                assert _text(await client.call_tool("add", {"a": a, "b": 1})) == str(a + 1)
            assert (await client.call_tool("decline", {})).is_error
        async with httpx.AsyncClient() as http:
            response = await http.get(metrics)
        response.raise_for_status()
    counts = {
        (sample.labels["tool"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "toolvisor_call_duration_seconds_count"
    }
    assert counts == {("add", "succeeded"): 2.0, ("decline", "failed"): 1.0}


def test_toolvisor_mcp_metrics_port_in_use_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from toolvisor.cli import main

    cwd = os.getcwd()
    os.chdir(TESTS)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            status = main(["mcp", "mcp_tools:TOOLS", "--metrics-port", str(port)])
    finally:
        os.chdir(cwd)
    assert status == 1
    err = capsys.readouterr().err
    assert f"toolvisor: error: --metrics-port {port}: cannot listen on it" in err
    assert main(["mcp", "mcp_tools:TOOLS", "--metrics-port", "http"]) == 2


@pytest.mark.slow
async def test_toolvisor_demo_mcp_serves_the_demo_tools(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "toolvisor", "demo", "--mcp", "--db", str(tmp_path / "demo.db")],
        env=_env(),
    )
    async with Client(params) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) == {"process_payment", "record_order", "search_catalog"}
        payment = listed["process_payment"].annotations
        assert payment is not None and payment.idempotent_hint is True
        args = {"transaction_id": "tx-mcp-1", "amount": 12.5, "currency": "EUR"}
        first = await client.call_tool("process_payment", args)
        again = await client.call_tool("process_payment", args)
    if not first.is_error:  # the gateway may reset the connection: then it is not stored
        assert again.structured_content == first.structured_content
        assert first.structured_content["status"] == "success"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("mcp_tools.py:TOOLS", "give a module name, not a path"),
        ("no_such_module_x:TOOLS", "no such module"),
        ("mcp_tools:NOPE", "has no attribute 'NOPE'"),
        ("mcp_tools:ECHO", "must be a list, tuple or dict of (spec, fn) pairs"),
        ("mcp_tools", "expected MODULE:ATTR"),
    ],
)
def test_toolvisor_mcp_bad_target_is_a_clear_startup_error(target: str, message: str) -> None:
    from toolvisor.cli import main

    cwd = os.getcwd()
    os.chdir(TESTS)
    try:
        import io
        from contextlib import redirect_stderr

        err = io.StringIO()
        with redirect_stderr(err):
            status = main(["mcp", target])
    finally:
        os.chdir(cwd)
    assert status == 2
    assert message in err.getvalue()
    assert err.getvalue().count("\n") == 1


async def test_an_http_body_over_the_limit_is_refused_and_the_server_goes_on() -> None:
    async with served("http") as client:
        with pytest.raises(
            MCPError, match="error response"
        ):  # the SDK's 413, as the client sees it
            await client.call_tool("echo", {"text": "x" * 5_000_000})
        assert _text(await client.call_tool("add", {"a": 1, "b": 1})) == "2"


# --------------------------------------------------------------------------- the benchmark


def _bench_mcp() -> Any:
    import importlib.util

    path = ROOT / "benchmarks" / "bench_mcp.py"
    spec = importlib.util.spec_from_file_location("bench_mcp", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_benchmarks_validating_bare_server_checks_what_toolvisor_checks() -> None:
    bench = _bench_mcp()
    async with Client(bench.bare_validating_server()) as client:
        assert _text(await client.call_tool("add", {"a": 2, "b": 3})) == "5"
        for bad in ({"a": "two", "b": 1}, {"a": 1}, {"a": 1, "b": 2, "c": 3}):
            assert (await client.call_tool("add", bad)).is_error
        with pytest.raises(MCPError, match="unknown tool"):
            await client.call_tool("nope", {})


async def test_the_benchmarks_breakdown_servers_answer_as_the_bare_one_does() -> None:
    bench = _bench_mcp()
    async with open_supervisor() as sup:
        await sup.spawn(bench.spec(), bench.add)
        servers = bench.breakdown_servers(sup)
        assert sorted(servers) == sorted(bench.BREAKDOWN)
        for name, server in servers.items():
            async with Client(server) as client:
                assert _text(await client.call_tool("add", {"a": 2, "b": 3})) == "5", name
        # Only bare_execute goes through the supervisor (the executor has its own tool).
        assert sup.stats("add").successes == 1


@pytest.mark.slow
def test_bench_mcp_runs_every_server_over_both_transports(tmp_path: Path) -> None:
    out = tmp_path / "mcp.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_mcp.py"), "--rounds", "1",
               "--calls", "16", "--concurrency", "2", "--breakdown",
               "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode in (0, 1), done.stderr  # 1: the target was missed, not a crash
    figures = json.loads(out.read_text())
    assert [r["transport"] for r in figures["results"]] == ["memory", "stdio"]
    for result in figures["results"]:
        for kind in ("bare", "bare_validating", "toolvisor"):
            assert result[f"{kind}_calls_per_s"] > 0
        assert result["ratio"] > 0 and result["ratio_vs_validating"] > 0
    stdio = figures["results"][1]
    assert stdio["bare_toolvisor_stdio_calls_per_s"] > 0 and stdio["ratio_same_transport"] > 0
    breakdown = figures["results"][0]["breakdown_ratio_vs_bare"]
    assert sorted(breakdown) == ["bare_awaiting", "bare_execute", "bare_executor"]
    assert all(ratio["median"] > 0 for ratio in breakdown.values())
    assert "toolvisor/bare_validating" in done.stdout
