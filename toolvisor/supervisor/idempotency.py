"""The idempotency cache: at most one execution per key within its TTL.

Held by the supervisor (and by each FunctionToolExecutor). For an idempotent call it:

1. builds the key (tool- and tenant-namespaced) and the arguments' fingerprint;
2. joins a *flight* already running for the key in this process (single flight: no
   second execution, the waiters get the leader's outcome), or leads one;
3. the leader claims the key in the store, atomically (across processes for SQLite and
   Redis). If the key is done, the stored result is returned with no execution; if
   another process holds it, the leader polls until that claim completes or expires;
4. on success the result is stored as JSON for ``ttl_s``; on failure the claim is
   released, so a later call may run again (failures are not stored).

The same key with different arguments raises ``IdempotencyConflictError``. A store that
fails before the execution raises ``IdempotencyStoreError`` and nothing runs: without
the store, toolvisor cannot prove the call would not run twice. A store that fails
*after* a success (``complete``) cannot take the result back: the caller gets its value,
a ``ResultNotStored`` event says why, and the claim keeps the key blocked until the
claim expires.

The in-process flight table is owned by this object and mutated only synchronously
(between awaits), so the supervisor's tasks need no lock.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from .._json import compact_dumps
from ..actors.call import Call
from ..errors import IdempotencyConflictError, IdempotencyStoreError, ToolTimeoutError
from ..events import Event, ResultNotStored
from ..policies.idempotency import fingerprint
from ..spec import CompiledSpec
from .stores.base import IdempotencyStore, Record, RecordState
from .stores.memory import MemoryStore

__all__ = ["Flight", "IdempotencyCache"]

log = logging.getLogger("toolvisor")

_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.25
_CLEANUP_S = 5.0  # bound on shielded store clean-up after a failure or cancellation


class Flight:
    """One key's execution in this process, which later duplicates wait for."""

    __slots__ = ("done", "fingerprint", "key", "result")

    def __init__(self, fp: str, key: str) -> None:
        self.fingerprint = fp
        self.key = key
        self.done: trio.Event | None = None  # made by the first duplicate that waits
        self.result: outcome.Outcome[Any] | None = None  # None: the leader left; retry


Execute = Callable[[Call], Awaitable[Any]]
"""Sends a call to its tool and waits for its end (the supervisor's send-and-wait)."""


class IdempotencyCache:
    """Single flight in process plus a store for results (see the module docstring).

    Args:
        store: where results of ``persist_result`` tools go (default: a MemoryStore).
        publish: where ``ResultNotStored`` events go (None: nowhere).
    """

    def __init__(
        self,
        store: IdempotencyStore | None = None,
        *,
        publish: Callable[[Event], None] | None = None,
    ) -> None:
        if store is not None and not isinstance(store, IdempotencyStore):
            raise TypeError(
                f"idempotency_store must implement IdempotencyStore (claim/complete/release/"
                f"get/aclose), got {type(store).__name__}"
            )
        self.local: IdempotencyStore = (
            store if store is not None and not store.persistent else MemoryStore()
        )
        self.store: IdempotencyStore = store if store is not None else self.local
        self.publish = publish
        self._flights: dict[str, Flight] = {}
        self._owner = secrets.token_hex(8)
        self._seq = 0

    async def run(self, spec: CompiledSpec, call: Call, execute: Execute) -> Any:
        """Run ``call`` at most once per key; end it and return its value (or raise).

        ``execute(call)`` runs it for real (it ends the call); every other way the call
        ends (a stored result, a duplicate's outcome, a conflict, a store failure, its
        deadline while waiting) is ended here.
        """
        try:
            fp = fingerprint(call.args)
            key = spec.key_generator.generate(
                spec.tool_name, call.args, key_fields=spec.key_fields, tenant_id=call.ctx.tenant_id
            )
            joined = await self._join(spec, call, key, fp)
        except BaseException as exc:
            call.settle(exc)
            raise
        if joined is not None:
            return _joined(call, joined)
        flight = self._flights[key] = Flight(fp, key)
        try:
            value = await self._lead(spec, call, key, fp, execute)
        except Exception as exc:
            flight.result = _left_or_failed(exc)
            raise
        else:
            flight.result = outcome.Value(value)
            return value
        finally:
            if flight.done is not None:
                flight.done.set()
            if self._flights.get(key) is flight:
                del self._flights[key]

    async def _join(
        self, spec: CompiledSpec, call: Call, key: str, fp: str
    ) -> outcome.Outcome[Any] | None:
        """Wait for the flights of ``key`` in this process; the outcome of the one that
        answered for this call, or None once no flight is left (this call leads)."""
        while (flight := self._flights.get(key)) is not None:
            if flight.fingerprint != fp:
                raise IdempotencyConflictError(key, tool=spec.tool_name)
            if flight.done is None:
                flight.done = trio.Event()
            await _wait_for(flight.done, call)
            if flight.result is not None:
                return flight.result
        return None

    async def _lead(
        self, spec: CompiledSpec, call: Call, key: str, fp: str, execute: Execute
    ) -> Any:
        """Claim ``key`` in the store, then execute ``call`` and store its result."""
        store = self.store if spec.persist_result else self.local
        owner, claim_ttl = self._new_claim(spec, call.deadline)
        try:
            stored = await self._claim(spec, call, store, key, fp, owner, claim_ttl)
        except BaseException as exc:
            call.settle(exc)
            raise
        if stored is not None:
            call.succeed(stored.value, cached=True)
            return stored.value
        try:
            value = await execute(call)
        except BaseException:
            with trio.move_on_after(_CLEANUP_S, shield=True):
                try:
                    await store.release(key, owner)
                except Exception:
                    log.exception("releasing idempotency key %r failed", key)
            raise
        result_json, reason = _encode(value)
        try:
            # I/O: finish it even if the caller is being cancelled.
            with trio.move_on_after(_CLEANUP_S, shield=True):
                await store.complete(key, owner, spec.idempotency_ttl_s, result_json, reason)
        except Exception as exc:
            reason = f"the store failed to record the success: {exc}"
            log.exception("completing idempotency key %r failed", key)
        if reason is not None and self.publish is not None:
            self.publish(ResultNotStored(spec.tool_name, key, reason, trio.current_time()))
        return value

    async def _claim(
        self,
        spec: CompiledSpec,
        call: Call,
        store: IdempotencyStore,
        key: str,
        fp: str,
        owner: str,
        claim_ttl: float,
    ) -> outcome.Value[Any] | None:
        """Claim ``key`` for ``owner``, polling while another process holds it.

        Returns None once claimed, or the stored result of a key that is done.
        """
        poll = _POLL_FIRST_S
        while True:
            claim = await store.claim(key, fp, owner, claim_ttl)
            if claim.claimed:
                return None
            record = claim.record
            if record.fingerprint != fp:
                raise IdempotencyConflictError(key, tool=spec.tool_name)
            if record.state is RecordState.DONE:
                return outcome.Value(_decode(store, record))
            # Another process runs this key: wait for it to finish or its claim to end.
            if trio.current_time() + poll > call.deadline:
                await trio.sleep_until(call.deadline)
                raise _timed_out(call)
            await trio.sleep(poll)
            poll = min(poll * 2, _POLL_MAX_S)

    def _new_claim(self, spec: CompiledSpec, deadline: float) -> tuple[str, float]:
        """A fresh owner for a claim, and how long the claim lasts."""
        self._seq += 1
        claim_ttl = spec.claim_ttl_s
        if deadline != math.inf:
            claim_ttl = _claim_ttl(claim_ttl, deadline, trio.current_time())
        return f"{self._owner}-{self._seq}", claim_ttl


def _joined(call: Call, result: outcome.Outcome[Any]) -> Any:
    """End a duplicate with the outcome of the flight it waited for."""
    if isinstance(result, outcome.Error):
        call.fail(result.error)
        raise result.error
    assert isinstance(result, outcome.Value)
    call.succeed(result.value, cached=True)
    return result.value


def _decode(store: IdempotencyStore, record: Record) -> Any:
    name = type(store).__name__
    if record.result_json is None:
        raise IdempotencyStoreError(
            name,
            f"key {record.key!r} already executed successfully, but its result was not "
            f"stored ({record.not_stored_reason or 'no reason recorded'}); it is not "
            "executed again until its TTL ends",
        )
    try:
        return json.loads(record.result_json)
    except ValueError as exc:
        raise IdempotencyStoreError(
            name, f"stored result of key {record.key!r} is not valid JSON ({exc})"
        ) from exc


async def _wait_for(event: trio.Event, call: Call) -> None:
    """Wait for ``event`` until ``call``'s deadline (past it the call times out)."""
    with trio.move_on_at(call.deadline) as waiting:
        await event.wait()
    if waiting.cancelled_caught:
        raise _timed_out(call)


def _timed_out(call: Call) -> ToolTimeoutError:
    """End ``call`` as timed out (nobody else ends it while it waits here)."""
    error = call.time_out()
    assert error is not None
    return error


def _claim_ttl(claim_ttl_s: float, deadline: float, now: float) -> float:
    """A claim lasts no longer than the call may (plus a second), so a caller that gave up
    blocks its key only briefly."""
    return min(claim_ttl_s, max(deadline - now, 0.001)) + 1.0


def _left_or_failed(exc: Exception) -> outcome.Error | None:
    """What a leader's exception tells its waiters: None when the leader ran out of *its*
    time (it leaves, and a waiter takes over), else the error they all get."""
    if isinstance(exc, ToolTimeoutError) and exc.scope == "call":
        return None
    return outcome.Error(exc)


def _encode(value: Any) -> tuple[str | None, str | None]:
    try:
        return compact_dumps(value), None
    except (TypeError, ValueError, RecursionError) as exc:
        return None, f"the result is not JSON-serialisable ({type(exc).__name__}: {exc})"
