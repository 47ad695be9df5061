"""The caller's side: ``open_remote(url)`` and what it hands back."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import trio

from .._inputs import check_context
from ..errors import (
    FieldError,
    RemoteToolError,
    SupervisorClosedError,
    ToolTimeoutError,
    ToolUnavailableError,
    UnknownToolError,
    ValidationError,
)
from ..spec import ExecutionContext
from ..supervisor import ToolResult
from ..supervisor.calls import CallSpec, run_many
from . import _lua
from ._batch import Batches
from ._redis import Redis, open_client, redact, redis_errors, single_error
from ._wire import FORMAT_VERSION, Keys, decode_error, dumps, encode_ctx, loads

__all__ = ["Remote", "RemotePendingCall", "open_remote"]

log = logging.getLogger("toolvisor.remote")

#: How long the fleet's tool list is trusted before it is read again.
TOOLS_FRESH_S = 1.0
READ_BLOCK_MS = 500
CANCEL_MAXLEN = 10_000
BACKOFF_S = 0.1
BACKOFF_MAX_S = 5.0
#: Most calls sent in one script run (the calls submitted meanwhile).
SEND_BATCH = 128


class _Outgoing:
    """A call waiting for the sending task (see ``Remote._send_loop``)."""

    __slots__ = ("error", "fields", "sent", "stream")

    def __init__(self, stream: str, fields: Mapping[str, str]) -> None:
        self.stream = stream
        self.fields = fields
        self.error: BaseException | None = None
        self.sent = trio.Event()


class _Slot:
    """Where a call's reply lands (set once, read any number of times)."""

    __slots__ = ("event", "fields", "tool")

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.event = trio.Event()
        self.fields: Mapping[str, str] | None = None

    def deliver(self, fields: Mapping[str, str]) -> None:
        if self.fields is None:
            self.fields = fields
            self.event.set()

    def outcome(self) -> tuple[bool, Any, Exception | None]:
        fields = self.fields
        assert fields is not None
        if fields.get("ok") == "1":
            try:
                return True, loads(fields.get("value", "null")), None
            except (ValueError, TypeError) as exc:  # TypeError: bytes, not UTF-8
                error = RemoteToolError("ValueError", f"unreadable value: {exc}", tool=self.tool)
                return False, None, error
        return False, None, decode_error(fields.get("error", ""), tool=self.tool)


class RemotePendingCall:
    """A call sent with :meth:`Remote.submit`, whose result is awaited later.

    The call is in its tool's stream already; a worker runs it whether or not anyone
    awaits it. Awaiting past its deadline raises ``ToolTimeoutError``; a waiter cancelled
    before the reply cancels the call on its worker (best effort).
    """

    __slots__ = ("_remote", "_slot", "_started", "call_id", "deadline", "timeout", "tool")

    def __init__(
        self,
        remote: Remote,
        tool: str,
        call_id: str,
        slot: _Slot,
        *,
        deadline: float,
        timeout: float | None,
        started: float,
    ) -> None:
        self._remote = remote
        self.tool = tool
        self.call_id = call_id
        self._slot = slot
        self.deadline = deadline
        self.timeout = timeout
        self._started = started

    @property
    def done(self) -> bool:
        """True once the call has its reply."""
        return self._slot.fields is not None

    @property
    def worker(self) -> str | None:
        """The id of the worker that answered (``HOST-PID-xxxxxx``), None before the reply."""
        fields = self._slot.fields
        return None if fields is None else fields.get("worker") or None

    async def value(self) -> Any:
        """The tool's value, or raise the call's error (like ``execute()``)."""
        slot = self._slot
        try:
            with trio.move_on_at(self.deadline):
                await slot.event.wait()
        except trio.Cancelled:
            if slot.fields is None:
                await self._remote._give_up(self)
            raise
        if slot.fields is None:
            if self._remote.closed:
                raise SupervisorClosedError("the remote connection was closed before the reply")
            await self._remote._give_up(self)
            raise ToolTimeoutError(self.tool, self.timeout or 0.0, scope="call")
        ok, value, error = slot.outcome()
        if not ok:
            assert error is not None
            raise error
        return value

    async def result(self) -> ToolResult:
        """A :class:`~toolvisor.ToolResult`; never raises for the call's own failure."""
        try:
            value = await self.value()
        except Exception as exc:
            return self._make(ok=False, error=exc)
        return self._make(ok=True, value=value)

    def _make(self, *, ok: bool, value: Any = None, error: Exception | None = None) -> ToolResult:
        fields = self._slot.fields or {}
        try:
            attempts = int(fields.get("attempts", "0"))
        except ValueError:
            attempts = 0
        return ToolResult(
            tool=self.tool,
            ok=ok,
            value=value,
            error=error,
            attempts=attempts,
            elapsed_s=trio.current_time() - self._started,
            cached=fields.get("cached") == "1",
            fallback=fields.get("fallback") == "1",
        )


class Remote:
    """Calls tools on the workers of a namespace; made by :func:`open_remote`."""

    def __init__(self, client: Redis, url: str, keys: Keys) -> None:
        self._client = client
        self._url = redact(url)
        self._keys = keys
        self.caller_id = uuid.uuid4().hex
        self._reply_key = keys.reply(self.caller_id)
        self._pending: dict[str, _Slot] = {}
        self._errors = redis_errors()
        self._known: tuple[float, dict[str, Mapping[str, Any]]] | None = None
        self.closed = False
        self._nursery: trio.Nursery | None = None
        self._send = client.register_script(_lua.SEND)
        self._outgoing: Batches[_Outgoing] = Batches(SEND_BATCH)

    @property
    def namespace(self) -> str:
        """The namespace whose workers this caller sends to."""
        return self._keys.namespace

    # ------------------------------------------------------------------ calls

    async def execute(
        self,
        tool: str,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``tool`` on a worker; return its value or raise (see ``Supervisor.execute``).

        ``timeout`` is the call's overall deadline, carried in the message: a worker never
        starts the call past it, and past it the caller gets ``ToolTimeoutError``.

        Raises:
            UnknownToolError: no live worker of the namespace serves ``tool``.
            ToolUnavailableError: Redis cannot be reached.
            RemoteToolError: the tool raised (its type name and message).
            DeliveryFailedError: every worker that took the call died before answering.
        """
        pending = await self.submit(tool, args, ctx, timeout=timeout)
        return await pending.value()

    async def submit(
        self,
        tool: str,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        timeout: float | None = None,
    ) -> RemotePendingCall:
        """Send a call now; await ``pending.value()`` or ``pending.result()`` later.

        Raises at once what is wrong before sending: unknown tool, arguments JSON cannot
        carry (``ValidationError``), a bad ``ctx`` (as ``Supervisor.execute`` does, and
        ``ValueError`` for a ``request_id`` or ``metadata`` JSON cannot carry), a bad
        ``timeout``, Redis unreachable, a closed connection.
        """
        if self.closed:
            raise SupervisorClosedError("this remote connection is closed")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
        if not isinstance(args, Mapping):
            raise TypeError(f"args must be a mapping, got {type(args).__name__}")
        await self._check_tool(tool)
        try:
            args_json = dumps(dict(args))
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                [FieldError("", f"arguments cannot be sent as JSON: {exc}")], tool=tool
            ) from None
        if ctx is not None:
            check_context(ctx)  # what Supervisor.execute refuses, refused the same way
        try:
            ctx_json = encode_ctx(ctx)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"ctx.request_id or ctx.metadata cannot be sent as JSON: {exc}"
            ) from None
        started = trio.current_time()
        call_id = uuid.uuid4().hex
        fields = {
            "v": FORMAT_VERSION,
            "id": call_id,
            "reply": self._reply_key,
            "args": args_json,
            "ctx": ctx_json,
            "deadline": "" if timeout is None else repr(time.time() + timeout),
            "timeout": "" if timeout is None else repr(float(timeout)),
            "traceparent": "",
            "tracestate": "",
        }
        if "opentelemetry.trace" in sys.modules:  # else no span can be current here
            fields.update(_trace_fields())
        slot = _Slot(tool)
        self._pending[call_id] = slot
        outgoing = _Outgoing(self._keys.calls(tool), fields)
        self._outgoing.put(outgoing)
        try:
            await outgoing.sent.wait()
        except BaseException:
            self._pending.pop(call_id, None)
            raise
        if outgoing.error is not None:
            self._pending.pop(call_id, None)
            if isinstance(outgoing.error, SupervisorClosedError):
                raise outgoing.error
            raise self._unreachable(tool, outgoing.error) from outgoing.error
        return RemotePendingCall(
            self,
            tool,
            call_id,
            slot,
            deadline=math.inf if timeout is None else started + timeout,
            timeout=timeout,
            started=started,
        )

    async def execute_many(
        self, calls: Iterable[CallSpec], *, timeout: float | None = None
    ) -> list[ToolResult]:
        """Run calls concurrently; one :class:`~toolvisor.ToolResult` per call, in order.

        Never raises for a call's failure (unknown tool, bad arguments and malformed
        entries included).
        """
        return await run_many(self.submit, calls, timeout)

    # ------------------------------------------------------------------ the fleet

    async def function_schemas(self) -> dict[str, Mapping[str, Any]]:
        """The function-calling schema of every tool a live worker serves, by name."""
        return dict(await self._fleet(fresh=True))

    async def tools(self) -> list[str]:
        """Names of the tools the namespace's live workers serve."""
        return sorted(await self._fleet(fresh=True))

    async def _check_tool(self, tool: str) -> None:
        known = await self._fleet(fresh=False)
        if tool not in known:
            known = await self._fleet(fresh=True)
            if tool not in known:
                raise UnknownToolError(tool, known)

    async def _fleet(self, *, fresh: bool) -> dict[str, Mapping[str, Any]]:
        now = trio.current_time()
        if not fresh and self._known is not None and self._known[0] > now:
            return self._known[1]
        try:
            server_now = await self._client.time()
            live = await self._client.zrange(
                self._keys.workers,
                int(server_now.timestamp() * 1000),
                "+inf",
                sortby=_token("BYSCORE"),
            )
            infos = await self._client.mget([self._keys.worker(w) for w in live]) if live else []
        except self._errors as exc:
            raise self._unreachable(None, exc) from exc
        tools: dict[str, Mapping[str, Any]] = {}
        for info in infos:
            if info is None:
                continue
            try:
                served = loads(info)["tools"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(served, dict):
                for name, schema in served.items():
                    tools.setdefault(str(name), schema)
        tools = dict(sorted(tools.items()))
        self._known = (now + TOOLS_FRESH_S, tools)
        return tools

    # ------------------------------------------------------------------ sending

    async def _send_loop(self) -> None:
        """Send the submitted calls, in one script run per batch.

        While one run is on its way, the calls submitted meanwhile queue for the next: a
        call alone goes at once, and under load one round trip sends many. A run that
        fails fails each of its calls (``ToolUnavailableError`` from ``submit()``).
        """
        while True:
            batch = await self._outgoing.take()
            error: BaseException | None = SupervisorClosedError(
                "the remote connection was closed before the call was sent"
            )
            try:
                keys = [o.stream for o in batch]
                args: list[str] = []
                for o in batch:
                    args.append(str(2 * len(o.fields)))
                    for key, value in o.fields.items():
                        args += (key, value)
                await self._send(keys=keys, args=args)
                error = None
            except self._errors as exc:
                error = exc
            finally:
                for o in batch:  # no caller is left waiting, whatever happened
                    o.error = error
                    o.sent.set()

    # ------------------------------------------------------------------ replies

    async def _read_replies(self) -> None:
        last_id = "0-0"
        backoff = BACKOFF_S
        while True:
            try:
                reply = await self._client.xread(
                    {self._reply_key: last_id}, count=1000, block=READ_BLOCK_MS
                )
                backoff = BACKOFF_S
            except self._errors as exc:
                log.warning("caller %s: reading replies failed: %s", self.caller_id, exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            ids: list[str] = []
            for entries in (reply or {}).values():
                for entry in entries:
                    last_id = entry.identifier
                    ids.append(last_id)
                    slot = self._pending.pop(entry.field_values.get("id", ""), None)
                    if slot is not None:  # a late or second reply finds no slot: dropped
                        slot.deliver(entry.field_values)
            if ids:  # deleting the read replies need not delay reading the next ones
                assert self._nursery is not None
                self._nursery.start_soon(self._delete_replies, ids)

    async def _delete_replies(self, ids: list[str]) -> None:
        with contextlib.suppress(*self._errors):
            await self._client.xdel(self._reply_key, ids)

    async def _give_up(self, pending: RemotePendingCall) -> None:
        """The caller stopped waiting: forget the call, and cancel it on its worker."""
        if self._pending.pop(pending.call_id, None) is None or self.closed:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                await self._client.xadd(
                    self._keys.cancel,
                    {"id": pending.call_id, "tool": pending.tool},
                    trim_strategy=_token("MAXLEN"),
                    threshold=CANCEL_MAXLEN,
                    trim_operator=_token("APPROXIMATELY"),
                )
            except self._errors as exc:
                log.warning(
                    "caller %s: cancelling %s failed: %s", self.caller_id, pending.call_id, exc
                )

    def _unreachable(self, tool: str | None, exc: BaseException) -> ToolUnavailableError:
        return ToolUnavailableError(
            tool or "*", f"Redis at {self._url} failed: {type(exc).__name__}: {exc}"
        )

    async def _close(self) -> None:
        self.closed = True
        for outgoing in self._outgoing.drain():  # not sent: their submit() raises
            outgoing.error = SupervisorClosedError("the remote connection was closed")
            outgoing.sent.set()
        for slot in self._pending.values():
            slot.event.set()  # waiters wake up and see the connection closed
        self._pending.clear()
        with contextlib.suppress(*self._errors):
            await self._client.delete([self._reply_key])


def _trace_fields() -> dict[str, str]:
    """The caller's current span in W3C fields (empty without one)."""
    from ..telemetry import remote_fields

    return remote_fields()


def _token(name: str) -> Any:
    from coredis.tokens import PureToken

    return getattr(PureToken, name)


@contextlib.asynccontextmanager
async def open_remote(url: str, *, namespace: str = "toolvisor") -> AsyncIterator[Remote]:
    """Call the tools of the workers serving ``namespace`` on the Redis at ``url``.

    Example::

        async with toolvisor.open_remote("redis://localhost:6379/0") as remote:
            value = await remote.execute("process_payment", {"transaction_id": "tx-1"})

    Raises:
        ValueError: a bad namespace.
        ImportError: coredis is missing (``pip install 'toolvisor[remote]'``).
    """
    keys = Keys(namespace)
    try:
        async with open_client(url) as client, trio.open_nursery() as nursery:
            remote = Remote(client, url, keys)
            remote._nursery = nursery
            nursery.start_soon(remote._read_replies)
            nursery.start_soon(remote._send_loop)
            try:
                yield remote
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                    await remote._close()
    except BaseExceptionGroup as group:
        one = single_error(group)
        if one is not None:
            raise one from one.__cause__
        raise
