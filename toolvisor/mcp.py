"""Serve a supervisor's tools over MCP (the Model Context Protocol), on the official SDK.

Needs the ``mcp`` extra: ``pip install 'toolvisor[mcp]'`` (the ``mcp`` SDK, and hypercorn
for HTTP). Everything runs under trio: the SDK is written on anyio.

- ``tools/list``: every tool, its JSON Schema as ``inputSchema``, and hints:
  ``idempotentHint`` (idempotency enabled), ``readOnlyHint`` (``ToolSpec.read_only``),
  ``destructiveHint`` (neither of those).
- ``tools/call`` runs ``sup.execute``: the tool's breaker, retries, deadlines and
  idempotency apply. A dict value is returned as ``structuredContent`` and as its JSON
  text; any other value as JSON text. Every error, bad arguments included, is a result
  with ``isError: true``, the error as text, and ``_meta["toolvisor/error"]`` =
  ``{"type", "retryable", "retry_after", "attempts"}``, so the model can fix its
  arguments, wait, or give up. An unknown tool is a JSON-RPC error (invalid params).
- A key in the request's ``_meta["idempotencyKey"]`` is the call's idempotency key: a
  client that re-sends a call after a broken connection gets the first call's result.
- The client's cancellation (``notifications/cancelled``, or a closed connection)
  cancels the call and its running attempt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import mcp_types as types
import trio
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from ._json import compact_dumps
from ._mcp_stdio import stdio_streams
from .errors import FieldError, UnknownToolError, ValidationError, shown
from .llm import error_info, error_text
from .spec import ExecutionContext

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

    from .supervisor import Supervisor

__all__ = [
    "IDEMPOTENCY_KEY_META",
    "TOOLVISOR_ERROR_META",
    "mcp_server",
    "serve_http",
    "serve_stdio",
]

#: The request ``_meta`` key whose value becomes the call's idempotency key.
IDEMPOTENCY_KEY_META = "idempotencyKey"
#: The result ``_meta`` key of an error result's details.
TOOLVISOR_ERROR_META = "toolvisor/error"

_INVALID_PARAMS = -32602  # JSON-RPC's code, which MCP uses for an unknown tool


def _hints(sup: Supervisor, tool: str) -> types.ToolAnnotations:
    spec = sup.spec(tool)
    idempotent = spec.idempotent
    read_only = spec.read_only
    return types.ToolAnnotations(
        idempotent_hint=idempotent,
        read_only_hint=read_only,
        destructive_hint=not (idempotent or read_only),
    )


def _tool(sup: Supervisor, schema: Mapping[str, Any]) -> types.Tool:
    return types.Tool(
        name=schema["name"],
        description=schema.get("description") or None,
        input_schema=_json_copy(schema["parameters"]),
        annotations=_hints(sup, schema["name"]),
    )


def _json_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_copy(v) for v in value]
    return value


def _error_result(exc: BaseException, attempts: int) -> types.CallToolResult:
    """``exc`` as a result the model reads: ``isError``, the text, and the details in
    ``_meta`` (``attempts``: the attempts of this call that ran the tool)."""
    info = error_info(exc)
    assert info is not None
    meta = {
        "type": info["type"],
        "retryable": info["retryable"],
        "retry_after": info["retry_after"],
        "attempts": attempts,
    }
    return types.CallToolResult(
        content=[types.TextContent(text=error_text(exc))],
        is_error=True,
        _meta={TOOLVISOR_ERROR_META: meta},
    )


def _value_result(value: Any) -> types.CallToolResult:
    try:
        text = compact_dumps(value)
    except (TypeError, ValueError):
        # Not JSON: the model still gets a readable value, without structured content
        # (and a value even repr() cannot show, a 5,000-digit int or a list nested
        # 100,000 deep, is named by its kind: the result never fails).
        try:
            shown_value = repr(value)
        except Exception:
            shown_value = shown(value)
        return types.CallToolResult(content=[types.TextContent(text=shown_value)])
    if isinstance(value, Mapping):
        return types.CallToolResult(
            content=[types.TextContent(text=text)], structured_content=_json_copy(value)
        )
    return types.CallToolResult(content=[types.TextContent(text=text)])


def _call_context(meta: Mapping[str, Any] | None, request_id: object) -> ExecutionContext:
    key = None if meta is None else meta.get(IDEMPOTENCY_KEY_META)
    if key is not None and (not isinstance(key, str) or not key):
        problem = f"_meta.{IDEMPOTENCY_KEY_META} must be a non-empty string, got {key!r}"
        raise ValidationError([FieldError("", problem)])
    return ExecutionContext(
        idempotency_key=key, request_id=None if request_id is None else str(request_id)
    )


def mcp_server(
    sup: Supervisor, *, name: str = "toolvisor", timeout: float | None = None
) -> Server[Any]:
    """An MCP server (the SDK's low-level ``Server``) for ``sup``'s tools.

    Run it on any transport of the SDK; :func:`serve_stdio` and :func:`serve_http` do.

    Args:
        sup: the supervisor whose tools are served (tools spawned later are listed too).
        name: the server's name, as clients show it.
        timeout: the overall deadline of each call, in seconds (``execute(timeout=...)``);
            None for none beyond the tools' own ``timeout_s``.
    """
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    from . import __version__

    async def list_tools(
        _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[_tool(sup, s) for s in sup.function_schemas().values()])

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        args = params.arguments
        call = None
        try:
            call_ctx = _call_context(params.meta or ctx.meta, ctx.request_id)
            # execute's own path, keeping the call to report its attempts: no submit,
            # PendingCall or ToolResult per call (a fifth of this handler's cost).
            call, done = sup._start(params.name, {} if args is None else args, call_ctx, timeout)
            value = await done
        except UnknownToolError as exc:
            if call is not None:  # the tool's own error, not an unknown tool
                return _error_result(exc, call.attempts)
            listing = ", ".join(exc.known) or "none"
            raise MCPError(
                _INVALID_PARAMS, f"unknown tool {shown(params.name)}; tools: {listing}"
            ) from None
        except Exception as exc:  # refused before sending (no call: no attempt), or failed
            return _error_result(exc, 0 if call is None else call.attempts)
        return _value_result(value)

    def input_schema(tool: str) -> Mapping[str, Any] | None:
        schema = sup.function_schemas().get(tool)
        return None if schema is None else _json_copy(schema["parameters"])

    return Server(
        name,
        version=__version__,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=input_schema,
    )


async def serve_stdio(
    sup: Supervisor, *, name: str = "toolvisor", timeout: float | None = None
) -> None:
    """Serve ``sup``'s tools over this process's stdin and stdout until stdin closes.

    While it serves, stdout belongs to the protocol: file descriptor 1 points at stderr
    (anything a tool prints goes there) and 0 at the null device. Every line gets one
    answer: a line the SDK's parser refuses is answered with a JSON-RPC error (-32700 or
    -32600) under its ``id``, where the SDK's own stdio transport would drop it, and a
    line over 4 MiB (the SDK's limit of an HTTP request body) with -32600, never held.

    Raises:
        RuntimeError: another ``serve_stdio`` is serving this process's stdin and stdout.
    """
    server = mcp_server(sup, name=name, timeout=timeout)
    async with stdio_streams() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def serve_http(
    sup: Supervisor,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str = "toolvisor",
    timeout: float | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``sup``'s tools over streamable HTTP at ``http://HOST:PORT/mcp``, until cancelled.

    Served by hypercorn's trio worker. ``port=0`` picks a free port; started with
    ``nursery.start(...)``, it reports the addresses it listens on (``["http://..."]``).
    On a loopback host the SDK's DNS-rebinding protection is on (only loopback
    ``Host`` and ``Origin`` headers are accepted).
    """
    from hypercorn.config import Config
    from hypercorn.trio import serve

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
    server = mcp_server(sup, name=name, timeout=timeout)
    app = server.streamable_http_app(host=host)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"  # stderr: stdout may be a protocol stream
    config.graceful_timeout = 1.0
    await serve(app, config, mode="asgi", task_status=task_status)  # type: ignore[arg-type]
