"""MCP's stdio transport, answering every line: the streams ``serve_stdio`` runs on.

The SDK's own stdio transport hands a line it cannot parse to the server as an
exception, and the server drops it: a request whose JSON the SDK's parser refuses (a
5,000-digit integer, arguments nested 200 deep, a lone surrogate escape, bytes that are
not UTF-8) gets no reply, and its client waits for one until its own timeout. Here each
such line is answered at once with a JSON-RPC error carrying the line's ``id`` when one
can be read from it: -32700 (parse error) for a line the parser refuses, -32600 (invalid
request) for JSON that is not a JSON-RPC message, or whose ``id`` is neither a string
nor an integer (the SDK would take it for a notification and never answer).

While it serves, fd 0 reads the null device and fd 1 writes to stderr: a tool that reads
stdin sees its end, and one that prints (``print()``, a C library, a child process)
cannot write into the protocol. The wire is served from private duplicates, and fd 0 and
1 are pointed back at it on exit.

A line longer than :data:`MAX_LINE_BYTES` (4 MiB, the limit the SDK sets on an HTTP
request body) is not held: its first bytes are kept, the rest is read and dropped up to
its newline, and it is answered with -32600 under its ``id`` when the ``id`` is among the
members that open it (as the SDK's client writes it: ``{"jsonrpc":"2.0","id":1,...}``).

Reads and writes run in worker threads, as blocking reads of a pipe or terminal must
(non-blocking mode would be shared with every other holder of the descriptor): one hop
per chunk read, and one per batch of replies written, each ending with its newline.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import anyio
import mcp_types as types
import pydantic
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.message import SessionMessage

__all__ = ["MAX_LINE_BYTES", "stdio_streams", "streams_on"]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600

_CHUNK = 1 << 16
_SHOWN = 300  # characters of a parser's complaint quoted back to the client
_MAX_ID_DIGITS = 4300  # Python's default int_max_str_digits: a longer integer id is refused
#: The longest line read as a message, in bytes (without its newline): as over HTTP.
MAX_LINE_BYTES: int = DEFAULT_MAX_REQUEST_BODY_SIZE
_HEAD = 1024  # bytes kept of a line over the limit, to find its id in
# One top-level member of an object with a scalar value, from where the last one ended.
_LEADING_MEMBER = re.compile(
    rb'\s*"((?:[^"\\]|\\.)*)"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+|true|false|null)\s*,'
)

_serving = False  # fd 0 and 1 are one process's: a second claim would read /dev/null


def _claim(fd: int, divert: Callable[[], int]) -> tuple[int, Callable[[], None]]:
    """A private duplicate of ``fd`` (the wire), and ``fd`` pointed at ``divert()``.

    When the descriptors cannot be moved, the wire is ``fd`` itself, served in place.
    """
    try:
        wire = os.dup(fd)  # non-inheritable: children never hold the wire
    except OSError:
        return fd, lambda: None
    try:
        diversion = divert()
        try:
            os.dup2(diversion, fd)
        finally:
            os.close(diversion)
    except OSError:
        os.close(wire)
        return fd, lambda: None
    # The duplicate stays open after the claim ends: a reading thread abandoned by a
    # cancelled read may still block on it, and a closed number could be reused under it.

    def restore() -> None:
        os.dup2(wire, fd)

    return wire, restore


def _null_input() -> int:
    return os.open(os.devnull, os.O_RDONLY)


def _stderr_output() -> int:
    try:
        return os.dup(2)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


def _line_id(line: bytes) -> str | int | None:
    """The request id in ``line`` when plain JSON parsing finds one (a top-level string or
    integer ``id``), else None: a refused line is answered under the id it was sent with."""

    def bounded_int(digits: str) -> int | None:
        return int(digits) if len(digits.lstrip("-")) <= _MAX_ID_DIGITS else None

    try:
        # Bytes that are not UTF-8 are refused by the parser; their id may still be read.
        value = json.loads(line.decode(errors="replace"), parse_int=bounded_int)
    except (ValueError, RecursionError):  # RecursionError: nested past Python's stack
        return None
    if not isinstance(value, dict):
        return None
    found = value.get("id")
    if isinstance(found, bool) or not isinstance(found, str | int):
        return None
    if isinstance(found, str):
        try:
            found.encode()
        except UnicodeEncodeError:  # a lone surrogate: not text a reply can carry
            return None
    return found


def _head_id(head: bytes) -> str | int | None:
    """The ``id`` of a line of which only ``head`` was kept: found when it is one of the
    scalar members that open the object, else None (a member further on, or nested in
    ``params``, cannot be told apart without reading the whole line)."""
    start = head.find(b"{")
    if start < 0 or head[:start].strip():
        return None
    at = start + 1
    while match := _LEADING_MEMBER.match(head, at):
        if match.group(1) == b"id":
            return _line_id(b'{"id":' + match.group(2) + b"}")
        at = match.end()
    return None


def _error(request_id: str | int | None, code: int, message: str) -> types.JSONRPCError:
    """The error reply to a line answered here; ``message`` cut to ``_SHOWN`` characters."""
    if len(message) > _SHOWN:
        message = message[: _SHOWN - 3] + "..."
    return types.JSONRPCError(
        jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message)
    )


def _too_long(head: bytes, size: int, limit: int) -> types.JSONRPCError:
    message = (
        f"Invalid request: the message is {size:,} bytes, over the limit of {limit:,} "
        "bytes; it was not read"
    )
    return _error(_head_id(head), INVALID_REQUEST, message)


def _refusal(line: bytes, exc: Exception) -> types.JSONRPCError:
    """The error reply to ``line``, which the message parser refused with ``exc``."""
    if isinstance(exc, pydantic.ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        invalid_json = [e["msg"] for e in errors if e["type"] == "json_invalid"]
        if invalid_json:
            problem = invalid_json[0].removeprefix("Invalid JSON: ")
            code, message = PARSE_ERROR, f"Parse error: {problem}"
        else:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in errors
            )
            code = INVALID_REQUEST
            message = f"Invalid request: not a JSON-RPC 2.0 message ({problems})"
    else:
        code, message = PARSE_ERROR, f"Parse error: {type(exc).__name__}: {exc}"
    return _error(_line_id(line), code, message)


def _bad_id(line: bytes) -> types.JSONRPCError | None:
    """For a line parsed as a notification: the error reply when it carries an ``id``
    (a request whose id is neither a string nor an integer), else None."""
    try:
        value = json.loads(line, parse_int=lambda digits: None)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or "id" not in value:
        return None
    message = f"Invalid request: id must be a string or an integer, got {value['id']!r}"
    return _error(None, INVALID_REQUEST, message)


async def _read(
    fd: int,
    to_server: MemoryObjectSendStream[SessionMessage | Exception],
    replies: MemoryObjectSendStream[SessionMessage],
    limit: int,
) -> None:
    """Each line of ``fd`` to the server as a message, or answered here as refused."""

    async def line_in(line: bytes) -> None:
        if not line.strip():
            return
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except Exception as exc:
            await replies.send(SessionMessage(_refusal(line, exc)))
            return
        if isinstance(message, types.JSONRPCNotification) and b'"id"' in line:
            refused = _bad_id(line)
            if refused is not None:
                await replies.send(SessionMessage(refused))
                return
        await to_server.send(SessionMessage(message))

    async def over(head: bytes, size: int) -> None:
        await replies.send(SessionMessage(_too_long(head, size, limit)))

    async with to_server, replies:
        with suppress(anyio.BrokenResourceError):  # the server stopped reading
            await _each_line(fd, line_in, over, limit)


async def _each_line(
    fd: int,
    line_in: Callable[[bytes], Awaitable[None]],
    over: Callable[[bytes, int], Awaitable[None]],
    limit: int,
) -> None:
    """``line_in`` on every line of ``fd`` (without its newline) until it ends, and
    ``over(head, size)`` instead for a line longer than ``limit`` bytes: of such a line
    only ``head`` (its first bytes) is ever held."""
    partial = bytearray()  # the start of a line whose newline has not come yet
    head = b""  # the start of a line over the limit, whose rest is being dropped
    dropped = 0  # the size of that line so far (0: no line is being dropped)

    async def ended(piece: bytes) -> None:
        nonlocal head, dropped
        if dropped:
            size, dropped = dropped + len(piece), 0
            await over(head, size)
            return
        if partial:
            partial.extend(piece)
            piece = bytes(partial)
            partial.clear()
        if len(piece) > limit:
            await over(piece[:_HEAD], len(piece))
        else:
            await line_in(piece)

    while chunk := await trio.to_thread.run_sync(os.read, fd, _CHUNK, abandon_on_cancel=True):
        *lines, rest = chunk.split(b"\n")
        for line in lines:
            await ended(line)
        if dropped:
            dropped += len(rest)
        else:
            partial += rest
            if len(partial) > limit:
                head, dropped = bytes(partial[:_HEAD]), len(partial)
                partial.clear()
    if partial or dropped:  # the last line, without its newline
        await ended(b"")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _write(
    fd: int, from_server: MemoryObjectReceiveStream[SessionMessage], serving: trio.CancelScope
) -> None:
    """Every message to ``fd``, one JSON line each; messages waiting to be sent together
    go in one write. A client that closed its end has gone: ``serving`` is cancelled."""
    async with from_server:
        async for first in from_server:
            lines = [first.message.model_dump_json(by_alias=True, exclude_unset=True)]
            while True:
                try:
                    more = from_server.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                lines.append(more.message.model_dump_json(by_alias=True, exclude_unset=True))
            data = ("\n".join(lines) + "\n").encode()
            try:
                await trio.to_thread.run_sync(_write_all, fd, data, abandon_on_cancel=True)
            except BrokenPipeError:
                serving.cancel()
                return


@asynccontextmanager
async def streams_on(
    wire_in: int, wire_out: int, *, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """The read and write streams of an MCP server reading lines from the descriptor
    ``wire_in`` and writing them to ``wire_out``, for ``Server.run``; a line longer than
    ``max_line_bytes`` is answered as refused, never held."""
    to_server, from_client = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_client, from_server = anyio.create_memory_object_stream[SessionMessage](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read, wire_in, to_server, to_client.clone(), max_line_bytes)
        nursery.start_soon(_write, wire_out, from_server, nursery.cancel_scope)
        yield from_client, to_client


@asynccontextmanager
async def stdio_streams() -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """The read and write streams of an MCP server on this process's stdin and stdout,
    for ``Server.run``; the read stream ends when stdin does.

    Raises:
        RuntimeError: this process's stdin and stdout are already being served.
    """
    global _serving
    if _serving:
        raise RuntimeError("this process's stdin and stdout are already serving MCP")
    _serving = True
    restores: list[Callable[[], None]] = []
    try:
        wire_in, restore = _claim(0, _null_input)
        restores.append(restore)
        wire_out, restore = _claim(1, _stderr_output)
        restores.append(restore)
        async with streams_on(wire_in, wire_out) as streams:
            yield streams
    finally:
        for restore in reversed(restores):
            with suppress(OSError):  # the original descriptor is gone: nothing to restore
                restore()
        _serving = False
