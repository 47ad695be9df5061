"""toolvisor's MCP stdio transport: every line gets exactly one answer.

In process, a toolvisor MCP server reads lines from one pipe and writes to another, and
the test speaks raw JSON-RPC on the other ends: lines the SDK's message parser refuses
are answered with the request's id, and the server goes on. The slow test runs
``toolvisor mcp`` as a subprocess on its real stdin and stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_tools
import pytest
import trio

from toolvisor import open_supervisor
from toolvisor._mcp_stdio import INVALID_REQUEST, MAX_LINE_BYTES, PARSE_ERROR, streams_on
from toolvisor.mcp import mcp_server

TESTS = Path(__file__).parent
ROOT = TESTS.parent

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(request_id: object, name: str, arguments: object) -> dict[str, Any]:
    params = {"name": name, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def line(message: object) -> bytes:
    return json.dumps(message).encode() + b"\n"


class Peer:
    """The client's ends of the two pipes: raw lines out, JSON replies in."""

    def __init__(self, out: trio.lowlevel.FdStream, into: trio.lowlevel.FdStream) -> None:
        self._out = out
        self._in = into
        self._buffer = b""

    async def send(self, data: bytes) -> None:
        await self._out.send_all(data)

    async def reply(self) -> dict[str, Any]:
        with trio.fail_after(10):
            while b"\n" not in self._buffer:
                chunk = await self._in.receive_some()
                assert chunk, f"the server closed its output; unread: {self._buffer!r}"
                self._buffer += chunk
        first, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(first)
        return reply

    async def close_and_read_rest(self) -> bytes:
        """Ends the server's input, and everything it wrote after what was read."""
        await self._out.aclose()
        rest = self._buffer
        with trio.fail_after(10):
            while chunk := await self._in.receive_some():
                rest += chunk
        return rest


@asynccontextmanager
async def served_on_pipes(
    *, initialize: bool = True, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[Peer]:
    """A toolvisor MCP server of mcp_tools' tools over two pipes, and its client's ends."""
    to_server_r, to_server_w = os.pipe()
    to_client_r, to_client_w = os.pipe()
    async with open_supervisor() as sup:
        await mcp_tools.setup(sup)
        server = mcp_server(sup)

        async def serve() -> None:
            try:
                async with streams_on(to_server_r, to_client_w, max_line_bytes=max_line_bytes) as (
                    read,
                    write,
                ):
                    await server.run(read, write, server.create_initialization_options())
            finally:
                os.close(to_server_r)
                os.close(to_client_w)  # the client reads the end of the replies

        out = trio.lowlevel.FdStream(to_server_w)
        into = trio.lowlevel.FdStream(to_client_r)
        async with trio.open_nursery() as nursery, out, into:
            nursery.start_soon(serve)
            peer = Peer(out, into)
            if initialize:
                await peer.send(line(INITIALIZE))
                assert (await peer.reply())["id"] == "init"
                await peer.send(line(INITIALIZED))
            yield peer


DEEP = "[" * 250 + "]" * 250
HUGE = "9" * 5000
GOOD = call(100, "add", {"a": 1, "b": 2})

REFUSED = [
    pytest.param(
        '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        '"params":{"name":"echo","arguments":{"text":' + DEEP + "}}}",
        PARSE_ERROR, 1, "recursion limit", id="arguments-nested-250-deep",
    ),
    pytest.param(
        '{"jsonrpc":"2.0","id":2,"method":"tools/call",'
        '"params":{"name":"echo","arguments":{"text":"\\ud800"}}}',
        PARSE_ERROR, 2, "escape", id="lone-surrogate-escape",
    ),
    pytest.param(
        '{"jsonrpc":"2.0","id":3,"method":"tools/call",'
        '"params":{"name":"add","arguments":{"a":' + HUGE + ',"b":1}}}',
        PARSE_ERROR, 3, "number out of range", id="5000-digit-argument",
    ),
    pytest.param(
        '{"jsonrpc":"2.0","id":' + HUGE + ',"method":"ping"}',
        PARSE_ERROR, None, "number out of range", id="5000-digit-id",
    ),
    pytest.param("not json", PARSE_ERROR, None, "expected", id="not-json"),
    pytest.param(
        b'{"jsonrpc":"2.0","id":"u","method":"tools/call",'
        b'"params":{"name":"echo","arguments":{"text":"\xff"}}}',
        PARSE_ERROR, "u", "unicode", id="not-utf-8",
    ),
    pytest.param(
        '{"jsonrpc":"2.0","id":5}', INVALID_REQUEST, 5, "method: Field required",
        id="no-method",
    ),
    pytest.param(
        '[{"jsonrpc":"2.0","id":6,"method":"ping"}]', INVALID_REQUEST, None,
        "not a JSON-RPC 2.0 message", id="batch",
    ),
    pytest.param(
        '{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST, None,
        "id must be a string or an integer, got True", id="boolean-id",
    ),
    pytest.param(
        '{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST, None,
        "id must be a string or an integer, got 1.5", id="float-id",
    ),
    pytest.param(
        '{"jsonrpc":"1.0","id":7,"method":"ping"}', INVALID_REQUEST, 7, "jsonrpc",
        id="wrong-version",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("sent", "code", "request_id", "problem"), REFUSED)
async def test_a_refused_line_is_answered_with_its_id_and_the_server_goes_on(
    sent: str | bytes, code: int, request_id: object, problem: str
) -> None:
    async with served_on_pipes() as peer:
        raw = sent if isinstance(sent, bytes) else sent.encode()
        await peer.send(raw + b"\n" + line(GOOD))
        refused = await peer.reply()
        assert refused["id"] == request_id
        assert refused["error"]["code"] == code
        assert problem in refused["error"]["message"]
        answered = await peer.reply()
        assert answered["id"] == 100
        assert answered["result"]["content"][0]["text"] == "3"
        assert await peer.close_and_read_rest() == b""


async def test_a_refusal_quotes_at_most_300_characters_of_the_problem() -> None:
    async with served_on_pipes() as peer:
        await peer.send(line({"jsonrpc": "2.0", "id": ["x" * 1000], "method": "ping"}))
        reply = await peer.reply()
        assert reply["error"]["code"] == INVALID_REQUEST
        assert reply["error"]["message"].startswith("Invalid request: id must be")
        assert reply["error"]["message"].endswith("...")
        assert len(reply["error"]["message"]) == 300


async def test_blank_lines_are_skipped_without_an_answer() -> None:
    async with served_on_pipes() as peer:
        await peer.send(b"\n  \n\t\r\n" + line(GOOD))
        assert (await peer.reply())["id"] == 100
        assert await peer.close_and_read_rest() == b""


async def test_a_line_that_arrives_in_pieces_is_one_message() -> None:
    async with served_on_pipes() as peer:
        whole = line(GOOD)
        for piece in (whole[:7], whole[7:30], whole[30:]):
            await peer.send(piece)
            await trio.sleep(0.02)
        assert (await peer.reply())["result"]["content"][0]["text"] == "3"


async def test_a_line_of_a_megabyte_is_read_whole_and_answered() -> None:
    text = "x" * 1_000_000  # over echo's max_length of 1,000: not a line cut into pieces
    async with served_on_pipes() as peer:
        await peer.send(line(call("big", "echo", {"text": text})))
        reply = await peer.reply()
        assert reply["id"] == "big"
        assert reply["result"]["isError"] is True
        assert reply["result"]["_meta"]["toolvisor/error"]["type"] == "ValidationError"
        assert "is longer than 1000 characters" in reply["result"]["content"][0]["text"]


def padded(opening: str, size: int, closing: str = "") -> bytes:
    """A tools/call line of exactly ``size`` bytes between ``opening`` and ``closing``."""
    start = opening + '"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
    end = '"}}' + closing + "}"
    return (start + "x" * (size - len(start) - len(end)) + end).encode()


async def test_a_line_over_the_limit_is_refused_under_its_id_and_the_server_goes_on() -> None:
    assert MAX_LINE_BYTES == 4 * 1024 * 1024  # the SDK's limit of an HTTP request body
    sent = padded('{"jsonrpc":"2.0","id":7,', MAX_LINE_BYTES + 1)
    async with served_on_pipes() as peer:
        async with trio.open_nursery() as nursery:  # replies are read while it is sent
            nursery.start_soon(peer.send, sent + b"\n" + line(GOOD))
            refused = await peer.reply()
        assert refused["id"] == 7
        assert refused["error"]["code"] == INVALID_REQUEST
        assert refused["error"]["message"] == (
            "Invalid request: the message is 4,194,305 bytes, over the limit of 4,194,304 "
            "bytes; it was not read"
        )
        assert (await peer.reply())["id"] == 100
        assert await peer.close_and_read_rest() == b""


@pytest.mark.parametrize(
    ("opening", "closing", "request_id"),
    [
        ('{"jsonrpc":"2.0","id":7,', "", 7),
        ('{ "id" : "call-\\u00e9" , "jsonrpc":"2.0",', "", "call-\u00e9"),
        ('{"jsonrpc":"2.0",', ',"id":8', None),  # after the params: not read
        ('{"jsonrpc":"2.0","id":true,', "", None),
        ('{"jsonrpc":"2.0","meta":{"id":3},"id":4,', "", None),  # not among the opening scalars
    ],
)
async def test_the_id_of_a_line_over_the_limit_is_read_from_its_opening_members(
    opening: str, closing: str, request_id: object
) -> None:
    sent = padded(opening, 5_000, closing)
    async with served_on_pipes(max_line_bytes=4_999) as peer:
        await peer.send(sent + b"\n")
        refused = await peer.reply()
        assert refused["id"] == request_id
        assert refused["error"]["code"] == INVALID_REQUEST


async def test_a_line_at_the_limit_is_read_and_one_past_it_in_pieces_is_refused() -> None:
    async with served_on_pipes(max_line_bytes=70_000) as peer:
        at_limit = padded('{"jsonrpc":"2.0","id":"at",', 70_000)
        await peer.send(at_limit + b"\n")
        answered = await peer.reply()
        assert answered["id"] == "at"
        assert "is longer than 1000 characters" in answered["result"]["content"][0]["text"]
        past = padded('{"jsonrpc":"2.0","id":"past",', 70_001)
        for start in range(0, len(past), 9_000):  # over many reads: its newline comes last
            await peer.send(past[start : start + 9_000])
            await trio.sleep(0.005)
        await peer.send(b"\n" + line(GOOD))
        refused = await peer.reply()
        assert refused["id"] == "past"
        assert "70,001 bytes" in refused["error"]["message"]
        assert (await peer.reply())["id"] == 100


async def test_a_line_over_the_limit_without_a_newline_is_answered_at_the_end() -> None:
    async with served_on_pipes(max_line_bytes=1_000) as peer:
        await peer.send(padded('{"jsonrpc":"2.0","id":"last",', 3_000))
        rest = await peer.close_and_read_rest()
    replies = [json.loads(x) for x in rest.splitlines()]
    assert [(r["id"], r["error"]["code"]) for r in replies] == [("last", INVALID_REQUEST)]


async def test_a_line_of_64_mib_is_never_held_in_memory() -> None:
    piece = b"x" * (1 << 20)
    async with served_on_pipes() as peer:
        tracemalloc.start()
        try:
            await peer.send(b'{"jsonrpc":"2.0","id":"flood","method":"ping","params":{"p":"')
            for _ in range(64):
                await peer.send(piece)
            await peer.send(b'"}}\n')
            refused = await peer.reply()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert refused["id"] == "flood"
        assert "67,108,928 bytes" in refused["error"]["message"]
        assert peak < MAX_LINE_BYTES + 2 * (1 << 20)  # at most the limit, never the line


async def test_many_lines_in_one_write_get_one_answer_each() -> None:
    async with served_on_pipes() as peer:
        await peer.send(b"".join(line(call(i, "add", {"a": i, "b": 1})) for i in range(200)))
        replies = [await peer.reply() for _ in range(200)]
        assert sorted(r["id"] for r in replies) == list(range(200))
        assert all(r["result"]["content"][0]["text"] == str(r["id"] + 1) for r in replies)
        assert await peer.close_and_read_rest() == b""


async def test_a_refused_last_line_without_its_newline_is_answered_before_the_end() -> None:
    async with served_on_pipes() as peer:
        await peer.send(b'{"jsonrpc":"2.0","id":9}')
        rest = await peer.close_and_read_rest()
    replies = [json.loads(x) for x in rest.splitlines()]
    assert [(r["id"], r["error"]["code"]) for r in replies] == [(9, INVALID_REQUEST)]


async def test_a_client_that_closes_its_input_ends_the_server_quietly() -> None:
    to_server_r, to_server_w = os.pipe()
    to_client_r, to_client_w = os.pipe()
    os.close(to_client_r)  # the client stopped reading: every write fails with EPIPE
    async with open_supervisor() as sup:
        await mcp_tools.setup(sup)
        server = mcp_server(sup)
        os.write(to_server_w, line(INITIALIZE))
        try:
            with trio.fail_after(10):
                async with streams_on(to_server_r, to_client_w) as (read, write):
                    await server.run(read, write, server.create_initialization_options())
        finally:
            for fd in (to_server_r, to_server_w, to_client_w):
                os.close(fd)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow
async def test_toolvisor_mcp_over_stdio_answers_refused_lines_and_keeps_stdout_its_own() -> None:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "toolvisor", "mcp", "mcp_stdio_tools:TOOLS"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=str(TESTS),
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    peer = Peer(proc.stdin, proc.stdout)  # type: ignore[arg-type]
    try:
        await peer.send(line(INITIALIZE))
        assert (await peer.reply())["id"] == "init"
        await peer.send(line(INITIALIZED))
        await peer.send(
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":%s}\n' % DEEP.encode()
        )
        await peer.send(b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":"\\ud800"}}\n')
        await peer.send(line(call(3, "shout", {"text": "hello"})))
        async with trio.open_nursery() as nursery:  # the pipe holds 64 KiB: sent meanwhile
            nursery.start_soon(
                peer.send, padded('{"jsonrpc":"2.0","id":4,', MAX_LINE_BYTES + 1) + b"\n"
            )
            replies = {}
            for _ in range(4):
                reply = await peer.reply()
                replies[reply["id"]] = reply
        assert replies[1]["error"]["code"] == PARSE_ERROR
        assert replies[2]["error"]["code"] == PARSE_ERROR
        assert replies[4]["error"]["code"] == INVALID_REQUEST
        # Both prints reached stderr, not the protocol, and stdin read as ended.
        assert replies[3]["result"]["structuredContent"] == {"text": "hello", "stdin": ""}
        assert await peer.close_and_read_rest() == b""
        with trio.fail_after(10):
            assert await proc.wait() == 0
        errors = b""
        while chunk := await proc.stderr.receive_some():
            errors += chunk
        assert errors.count(b"hello\n") == 2
    finally:
        proc.kill()
        await proc.wait()
