"""The worker: a supervisor whose calls come from Redis streams.

One stream per tool (``{ns}:call:{tool}``), one consumer group per namespace (``ns``):
every worker serving a tool reads that tool's stream as one consumer of the group, so
Redis hands each call to exactly one of them. A call stays in the group's pending list
until the worker that holds it answers (one Lua step: acknowledge, delete, reply), so a
call held by a worker that dies is still there, and a **janitor** in every worker claims
calls idle past ``claim_idle_s`` (``XAUTOCLAIM``). A live worker keeps its long calls from
being claimed by resetting their idle time every ``claim_idle_s / 3``. A call delivered
more than ``max_deliveries`` times (it killed every worker that took it) goes to the
dead-letter stream ``{ns}:dead:{tool}``, and its caller gets ``DeliveryFailedError``.

Life of one call on a worker::

    XREADGROUP / XAUTOCLAIM -> held (at most `concurrency`)
      -> cancelled by its caller already?   acknowledge, no reply
      -> past its deadline?                 ToolTimeoutError reply, never started
      -> Supervisor.submit(..., timeout=what is left of the deadline)
      -> reply (value or error as JSON), acknowledge, delete

On ``stop()`` (SIGTERM) the worker reads nothing more, lets the calls it holds finish
for ``grace_s``, hands back the rest (each put back on its stream as a fresh entry, at
once readable by the other workers) and unregisters.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

from ..errors import DeliveryFailedError, ToolTimeoutError
from ..supervisor import PendingCall, Supervisor, ToolResult
from . import _lua
from ._batch import Batches
from ._redis import Redis, redis_errors
from ._wire import DELIVERED_BEFORE, IncomingCall, Keys, delivered_before, dumps, encode_error

__all__ = ["Worker", "WorkerOptions"]

log = logging.getLogger("toolvisor.remote")

#: How long a worker's registration lives without renewal, and how often it is renewed.
REGISTRATION_TTL_S = 10.0
REGISTRATION_EVERY_S = 2.0
#: A reply waits this long in its caller's stream for the caller to read it.
REPLY_TTL_MS = 600_000
#: Bounds of the reply, dead-letter and cancellation streams (approximate, ``MAXLEN ~``).
REPLY_MAXLEN = 100_000
DEAD_MAXLEN = 10_000
CANCEL_MAXLEN = 10_000
#: How long one blocking read waits, which bounds how soon ``stop()`` takes effect.
READ_BLOCK_MS = 500
#: After a Redis error the loops wait this long (doubling up to the max) and try again.
BACKOFF_S = 0.1
BACKOFF_MAX_S = 5.0
#: Cancellations remembered for calls not (yet) held here.
CANCELLED_REMEMBERED = 10_000
#: Most calls answered in one script run (the answers that finished meanwhile).
ANSWER_BATCH = 128


def _positive_int(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _positive_seconds(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{attribute.name} must be a number of seconds > 0, got {value!r}")


@attrs.frozen
class WorkerOptions:
    """How a worker consumes its calls.

    Attributes:
        namespace: the fleet's namespace: keys, consumer group and registrations.
        concurrency: most calls this worker holds at once (read, running or answering).
        claim_idle_s: a call held this long by a worker that stopped renewing it (dead,
            or frozen) is claimed by another worker's janitor.
        max_deliveries: a call delivered this many times without an answer goes to the
            dead-letter stream on its next claim, and its caller gets DeliveryFailedError.
        grace_s: on stop, how long held calls may take to finish before they are handed
            back to the stream.
    """

    namespace: str = "toolvisor"
    concurrency: int = attrs.field(default=64, validator=_positive_int)
    claim_idle_s: float = attrs.field(default=30.0, validator=_positive_seconds)
    max_deliveries: int = attrs.field(default=5, validator=_positive_int)
    grace_s: float = attrs.field(default=10.0, validator=_positive_seconds)


class _Held:
    """A call this worker holds, from its read until its answer."""

    __slots__ = (
        "call_id",
        "cancelled",
        "delivery",
        "entry_id",
        "fields",
        "hand_back",
        "scope",
        "stream",
        "tool",
    )

    def __init__(self, tool: str, stream: str, entry_id: str, fields: Mapping[str, str]) -> None:
        self.tool = tool
        self.stream = stream
        self.entry_id = entry_id
        self.fields = dict(fields)
        self.call_id = self.fields.get("id", "")
        self.scope: trio.CancelScope | None = None
        self.hand_back = False
        self.cancelled = False
        #: Times this call was delivered (more than 1: claimed from a worker that died):
        #: Redis counts the deliveries of this entry; a call a stopping worker handed
        #: back is a new entry that carries the deliveries before it.
        self.delivery = 1 + delivered_before(self.fields)

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class _Answer:
    """A call's answer waiting for the answering task (see ``Worker._answer_loop``)."""

    __slots__ = ("done", "held", "reply", "reply_key", "sent")

    def __init__(self, held: _Held, reply: Mapping[str, str] | None, reply_key: str) -> None:
        self.held = held
        self.reply = reply
        self.reply_key = reply_key if reply is not None else ""
        self.done = 0
        self.sent = trio.Event()


def _lost_group(exc: BaseException) -> bool:
    """Redis's NOGROUP (coredis words it "No such key ... or consumer group")."""
    text = str(exc)
    return "NOGROUP" in text or "consumer group" in text


def _flat(fields: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in fields.items():
        out.append(key)
        out.append(value)
    return out


class Worker:
    """Consumes the calls of ``sup``'s tools from Redis; see the module docstring.

    Made and run by :func:`toolvisor.remote.run_worker` (or ``toolvisor worker``).
    """

    def __init__(
        self,
        client: Redis,
        sup: Supervisor,
        options: WorkerOptions,
        *,
        worker_id: str | None = None,
    ) -> None:
        self._client = client
        self._sup = sup
        self.options = options
        self._keys = Keys(options.namespace)
        self.worker_id = worker_id or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.tools = sup.tools()
        self._streams = {self._keys.calls(t): t for t in self.tools}
        self._held: dict[str, _Held] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._stopping = False
        self._room = trio.Event()
        self._finish = client.register_script(_lua.FINISH)
        self._answers: Batches[_Answer] = Batches(ANSWER_BATCH)
        self._bury = client.register_script(_lua.BURY)
        self._hand_back = client.register_script(_lua.HAND_BACK)
        self._keep = client.register_script(_lua.KEEP)
        self._errors = redis_errors()
        self.answered = 0
        #: Where the worker's metrics are served (``run_worker(metrics_port=...)``), or None.
        self.metrics_url: str | None = None
        #: Set once ``serve()`` has drained, handed back and unregistered.
        self.stopped = trio.Event()

    @property
    def held(self) -> int:
        """Calls held now."""
        return len(self._held)

    def stop(self) -> None:
        """Stop reading; ``serve()`` then drains, hands back what is left and returns."""
        self._stopping = True
        self._room.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until ``stop()``; ``task_status.started()`` once registered and reading."""
        await self._create_groups()
        cancel_from = f"{await self._server_ms()}-0"
        await self._register()
        try:
            async with trio.open_nursery() as calls:
                self._calls = calls
                async with trio.open_nursery() as background:
                    background.start_soon(self._answer_loop)
                    background.start_soon(self._keep_loop)
                    background.start_soon(self._register_loop)
                    background.start_soon(self._cancel_loop, cancel_from)
                    background.start_soon(self._janitor_loop)
                    task_status.started()
                    await self._read_loop()
                    with trio.move_on_after(self.options.grace_s):
                        await self._drained()
                    while self._held:  # hand back what is left (a late claim included)
                        for held in list(self._held.values()):
                            held.hand_back = True
                            held.cancel()
                        await self._drained()
                    background.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await self._unregister()
            self.stopped.set()

    async def _drained(self) -> None:
        """Return once no call is held (``_room`` is set whenever a held call ends)."""
        while self._held:
            self._room = trio.Event()
            await self._room.wait()

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        streams = list(self._streams)
        backoff = BACKOFF_S
        while not self._stopping:
            free = self.options.concurrency - len(self._held)
            if free <= 0:
                self._room = trio.Event()
                await self._room.wait()
                continue
            try:
                reply = await self._client.xreadgroup(
                    self._keys.group,
                    self.worker_id,
                    dict.fromkeys(streams, ">"),
                    count=max(1, free // len(streams)),
                    block=READ_BLOCK_MS,
                )
                backoff = BACKOFF_S
            except self._errors as exc:
                if _lost_group(exc):  # the server lost its data (restarted empty)
                    await self._ignore_errors(self._create_groups)
                log.warning("worker %s: reading calls failed: %s", self.worker_id, exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            for stream, entries in (reply or {}).items():
                for entry in entries:
                    if len(self._held) < self.options.concurrency:
                        self._start(stream, entry.identifier, entry.field_values)
                    else:
                        # COUNT applies per stream, so with fewer free slots than tools a
                        # read can bring more than fit: give those back at once.
                        extra = _Held(
                            self._streams[stream], stream, entry.identifier, entry.field_values
                        )
                        await self._give_back(extra)

    def _start(self, stream: str, entry_id: str, fields: Mapping[str, str]) -> _Held:
        held = _Held(self._streams[stream], stream, entry_id, fields)
        self._held[entry_id] = held
        self._calls.start_soon(self._serve, held)
        return held

    # ------------------------------------------------------------------ one call

    async def _serve(self, held: _Held) -> None:
        try:
            try:
                call = IncomingCall(held.fields)
            except (ValueError, TypeError) as exc:
                await self._settle_malformed(held, exc)
                return
            if held.call_id in self._cancelled:
                await self._answer(held, None, "")
                return
            remaining: float | None = None
            if call.deadline is not None:
                remaining = call.deadline - time.time()
                if remaining <= 0:  # never start an expired call
                    error = ToolTimeoutError(held.tool, call.timeout or 0.0, scope="call")
                    result = ToolResult(tool=held.tool, ok=False, error=error)
                    await self._answer(held, self._reply(held, result), call.reply)
                    return
            with trio.CancelScope() as scope:
                held.scope = scope
                if held.cancelled:
                    scope.cancel()
                try:
                    pending = await self._submit(held, call, remaining)
                    result = await pending.result()
                except Exception as exc:
                    result = ToolResult(tool=held.tool, ok=False, error=exc)
            if scope.cancelled_caught:
                if held.hand_back:
                    await self._give_back(held)
                else:  # its caller gave up: no one reads a reply
                    await self._answer(held, None, "")
                return
            await self._answer(held, self._reply(held, result), call.reply)
        finally:
            if self._held.get(held.entry_id) is held:
                del self._held[held.entry_id]
            self._room.set()

    async def _submit(self, held: _Held, call: IncomingCall, timeout: float | None) -> PendingCall:
        """Submit ``call`` to the supervisor; its span joins the caller's trace when the
        message carries one and the supervisor is instrumented."""
        ctx = call.ctx
        if held.delivery > 1:  # an idempotent call delivered again: on_unknown_outcome
            ctx = attrs.evolve(ctx, delivery=held.delivery)
        # toolvisor.telemetry is imported once anything is instrumented: without it,
        # nothing here costs more than this look-up.
        telemetry = sys.modules.get("toolvisor.telemetry") if call.traceparent else None
        if telemetry is None or not telemetry.is_instrumented(self._sup):
            return await self._sup.submit(held.tool, call.args, ctx, timeout=timeout)
        context = telemetry.remote_context(call.traceparent, call.tracestate)
        if context is None:
            return await self._sup.submit(held.tool, call.args, ctx, timeout=timeout)
        from opentelemetry import context as otel_context

        token = otel_context.attach(context)
        try:  # the call's span starts in submit(), under the caller's context
            return await self._sup.submit(held.tool, call.args, ctx, timeout=timeout)
        finally:
            otel_context.detach(token)

    def _reply(self, held: _Held, result: ToolResult) -> dict[str, str]:
        fields = {
            "id": held.call_id,
            "attempts": str(result.attempts),
            "cached": "1" if result.cached else "0",
            "worker": self.worker_id,
        }
        if result.fallback:
            fields["fallback"] = "1"  # absent otherwise: an older caller ignores it
        if result.ok:
            try:
                fields["value"] = dumps(result.value)
            except (TypeError, ValueError) as exc:
                error = TypeError(
                    f"tool {held.tool!r} returned a value JSON cannot carry "
                    f"({type(result.value).__name__}): {exc}"
                )
                fields.update(ok="0", error=encode_error(error))
            else:
                fields["ok"] = "1"
        else:
            assert result.error is not None
            fields.update(ok="0", error=encode_error(result.error))
        return fields

    async def _answer(self, held: _Held, reply: dict[str, str] | None, reply_key: str) -> None:
        answer = _Answer(held, reply, reply_key)
        self._answers.put(answer)
        await answer.sent.wait()
        if answer.done == 1 and reply is not None:
            self.answered += 1

    async def _answer_loop(self) -> None:
        """Answer the calls that finished, in one script run per batch.

        While one run is on its way, the calls that finish meanwhile queue for the next:
        an answer alone goes at once, and under load one round trip answers many. Runs
        until the worker has drained (``serve()`` cancels it after the last held call).
        """
        while True:
            batch = await self._answers.take()
            try:
                await self._send_answers(batch)
            finally:
                for answer in batch:  # no waiter is left behind, whatever happened
                    answer.sent.set()

    async def _send_answers(self, batch: Sequence[_Answer]) -> None:
        keys: list[str] = []
        args = [self._keys.group, str(REPLY_TTL_MS), str(REPLY_MAXLEN)]
        for answer in batch:
            reply = _flat(answer.reply) if answer.reply is not None else []
            keys += [answer.held.stream, answer.reply_key]
            args += [answer.held.entry_id, str(len(reply)), *reply]
        try:
            done = await self._finish(keys=keys, args=args)
        except self._errors as exc:
            # The calls stay pending: a janitor claims them again after claim_idle_s.
            log.warning(
                "worker %s: answering %s failed: %s",
                self.worker_id,
                ", ".join(a.held.call_id for a in batch),
                exc,
            )
            return
        for answer, one in zip(batch, done, strict=True):
            answer.done = int(one)

    async def _settle_malformed(self, held: _Held, exc: Exception) -> None:
        """A call no caller could have sent: straight to the dead letters, said why."""
        log.warning("worker %s: malformed call %s: %s", self.worker_id, held.entry_id, exc)
        reply_key = held.fields.get("reply", "") if held.call_id else ""
        reply = None
        if reply_key:
            reply = {
                "id": held.call_id,
                "ok": "0",
                "error": encode_error(ValueError(f"malformed call: {exc}")),
                "attempts": "0",
                "cached": "0",
                "worker": self.worker_id,
            }
        await self._to_dead_letters(held, {"reason": f"malformed: {exc}"}, reply_key, reply)

    async def _to_dead_letters(
        self,
        held: _Held,
        extra: Mapping[str, str],
        reply_key: str,
        reply: Mapping[str, str] | None,
    ) -> None:
        call = _flat({**held.fields, **extra, "buried_by": self.worker_id})
        args = [
            self._keys.group,
            held.entry_id,
            str(REPLY_TTL_MS),
            str(DEAD_MAXLEN),
            str(len(call)),
            *call,
            *(_flat(reply) if reply is not None else []),
        ]
        keys = [held.stream, self._keys.dead(held.tool), reply_key if reply is not None else ""]
        try:
            await self._bury(keys=keys, args=args)
        except self._errors as exc:
            log.warning(
                "worker %s: dead-lettering %s failed: %s", self.worker_id, held.call_id, exc
            )

    async def _give_back(self, held: _Held) -> None:
        # Handed back unfinished: the deliveries before this one may have run it (a
        # worker that died), and the next worker must know, as Redis would have counted
        # them had the entry stayed.
        fields = {**held.fields, DELIVERED_BEFORE: str(held.delivery - 1)}
        args = [self._keys.group, held.entry_id, *_flat(fields)]
        try:
            await self._hand_back(keys=[held.stream], args=args)
        except self._errors as exc:
            log.warning("worker %s: handing back %s failed: %s", self.worker_id, held.call_id, exc)

    # ------------------------------------------------------------------ background

    async def _janitor_loop(self) -> None:
        interval = min(max(self.options.claim_idle_s / 2, 0.05), 5.0)
        idle_ms = max(1, int(self.options.claim_idle_s * 1000))
        while not self._stopping:
            await trio.sleep(interval)
            for stream in self._streams:
                free = self.options.concurrency - len(self._held)
                if free <= 0 or self._stopping:
                    break
                try:
                    await self._claim(stream, idle_ms, free)
                except self._errors as exc:
                    log.warning("worker %s: claiming failed: %s", self.worker_id, exc)
                    if _lost_group(exc):
                        await self._ignore_errors(self._create_groups)

    async def _claim(self, stream: str, idle_ms: int, free: int) -> None:
        _next, entries, *_deleted = await self._client.xautoclaim(
            stream, self._keys.group, self.worker_id, idle_ms, "0-0", count=free
        )
        if not entries:
            return
        pending = await self._client.xpending(
            stream,
            self._keys.group,
            entries[0].identifier,
            entries[-1].identifier,
            len(entries) + len(self._held) + 16,
            consumer=self.worker_id,
        )
        delivered = {p.identifier: p.delivered for p in pending}
        for entry in entries:
            if entry.identifier in self._held:
                # Ours already (renewed late under load): it keeps running where it is.
                continue
            count = delivered.get(entry.identifier, 1) + delivered_before(entry.field_values)
            if count <= self.options.max_deliveries:
                log.info(
                    "worker %s: claimed call %s (delivery %d)",
                    self.worker_id,
                    entry.field_values.get("id"),
                    count,
                )
                self._start(stream, entry.identifier, entry.field_values).delivery = count
                continue
            held = _Held(self._streams[stream], stream, entry.identifier, entry.field_values)
            deliveries = count - 1
            error = DeliveryFailedError(held.tool, deliveries)
            reply_key = held.fields.get("reply", "")
            reply = {
                "id": held.call_id,
                "ok": "0",
                "error": encode_error(error),
                "attempts": "0",
                "cached": "0",
                "worker": self.worker_id,
            }
            log.warning(
                "worker %s: call %s of tool %r delivered %d times: dead letter",
                self.worker_id,
                held.call_id,
                held.tool,
                deliveries,
            )
            await self._to_dead_letters(
                held, {"deliveries": str(deliveries)}, reply_key if reply_key else "", reply
            )

    async def _keep_loop(self) -> None:
        interval = self.options.claim_idle_s / 3
        while True:
            await trio.sleep(interval)
            by_stream: dict[str, list[str]] = {}
            for held in self._held.values():
                by_stream.setdefault(held.stream, []).append(held.entry_id)
            for stream, ids in by_stream.items():
                await self._ignore_errors(
                    self._keep, keys=[stream], args=[self._keys.group, self.worker_id, *ids]
                )

    async def _cancel_loop(self, last_id: str) -> None:
        backoff = BACKOFF_S
        while True:
            try:
                reply = await self._client.xread(
                    {self._keys.cancel: last_id}, count=1000, block=READ_BLOCK_MS
                )
                backoff = BACKOFF_S
            except self._errors as exc:
                log.warning("worker %s: reading cancellations failed: %s", self.worker_id, exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            for entries in (reply or {}).values():
                for entry in entries:
                    last_id = entry.identifier
                    self._cancel(entry.field_values.get("id", ""))

    def _cancel(self, call_id: str) -> None:
        for held in self._held.values():
            if held.call_id == call_id:
                log.info("worker %s: call %s cancelled by its caller", self.worker_id, call_id)
                held.cancel()
        self._cancelled[call_id] = None
        while len(self._cancelled) > CANCELLED_REMEMBERED:
            self._cancelled.popitem(last=False)

    async def _register_loop(self) -> None:
        while True:
            await trio.sleep(REGISTRATION_EVERY_S)
            await self._ignore_errors(self._register)

    # ------------------------------------------------------------------ registry

    async def _create_groups(self) -> None:
        for stream in self._streams:
            try:
                await self._client.xgroup_create(stream, self._keys.group, "0", mkstream=True)
            except self._errors as exc:
                if "BUSYGROUP" not in str(exc) and "already exists" not in str(exc):
                    raise

    async def _register(self) -> None:
        info = {
            "worker": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": self.options.concurrency,
            "tools": {name: dict(schema) for name, schema in self._sup.function_schemas().items()},
        }
        ttl_ms = int(REGISTRATION_TTL_S * 1000)
        now = await self._server_ms()
        await self._client.set(self._keys.worker(self.worker_id), dumps(info), px=ttl_ms)
        await self._client.zadd(self._keys.workers, {self.worker_id: now + ttl_ms})
        await self._client.zremrangebyscore(self._keys.workers, "-inf", now)

    async def _unregister(self) -> None:
        try:
            await self._client.zrem(self._keys.workers, [self.worker_id])
            await self._client.delete([self._keys.worker(self.worker_id)])
            for stream in self._streams:
                if not await self._pending_of_mine(stream):
                    await self._client.xgroup_delconsumer(stream, self._keys.group, self.worker_id)
        except self._errors as exc:
            log.warning("worker %s: unregistering failed: %s", self.worker_id, exc)

    async def _pending_of_mine(self, stream: str) -> Sequence[object]:
        result: Sequence[object] = await self._client.xpending(
            stream, self._keys.group, "-", "+", 1, consumer=self.worker_id
        )
        return result

    async def _server_ms(self) -> int:
        now = await self._client.time()
        return int(now.timestamp() * 1000)

    async def _ignore_errors(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await fn(*args, **kwargs)
        except self._errors as exc:
            log.warning("worker %s: %s", self.worker_id, exc)
