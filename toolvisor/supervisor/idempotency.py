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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import outcome
import trio

from .._json import compact_dumps
from ..actors.stats import Counters
from ..errors import IdempotencyConflictError, IdempotencyStoreError, ToolTimeoutError
from ..events import Event, ResultNotStored
from ..policies.idempotency import HashIdempotencyKeyGenerator, fingerprint
from ..spec import CompiledSpec, ExecutionContext
from .stores.base import IdempotencyStore, Record, RecordState
from .stores.memory import MemoryStore

__all__ = ["Deferred", "Flight", "IdempotencyCache"]

log = logging.getLogger("toolvisor")

_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.25
_CLEANUP_S = 5.0  # bound on shielded store clean-up after a failure or cancellation


class Flight:
    """One key's execution in this process, which later duplicates wait for.

    Made by :meth:`IdempotencyCache.lead` when this call holds the key: ``owner`` then
    holds the claim in ``store`` (a MemoryStore). A flight of the general path has no
    ``store``: that path claims and completes by itself.
    """

    __slots__ = ("done", "fingerprint", "key", "owner", "result", "store")

    def __init__(
        self, fp: str, key: str, owner: str = "", store: MemoryStore | None = None
    ) -> None:
        self.fingerprint = fp
        self.key = key
        self.owner = owner
        self.store = store
        self.done: trio.Event | None = None  # made by the first duplicate that waits
        self.result: outcome.Outcome[Any] | None = None  # None: the leader left; retry


class Deferred:
    """A call that :meth:`IdempotencyCache.lead` could not start: finish it with ``resume``.

    ``record`` is what a MemoryStore holds for the key (done, or claimed by another cache
    sharing the store); None when a duplicate is in flight here or the store is not a
    MemoryStore.
    """

    __slots__ = ("fingerprint", "key", "record")

    def __init__(self, fp: str, key: str, record: Record | None = None) -> None:
        self.fingerprint = fp
        self.key = key
        self.record = record


class IdempotencyCache:
    """Single flight in process plus a store for results (see the module docstring).

    ``run`` is the whole protocol. A caller that wants no coroutine between itself and the
    execution (the supervisor's ``execute``) splits it: ``lead``; then either ``resume``
    with its answer, or execute and report with ``succeeded`` / ``failed``.

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
        self._prefixes: dict[str, str] = {}  # tool name -> its tenant-less hash key prefix
        self._owner = secrets.token_hex(8)
        self._seq = 0

    async def run(
        self,
        spec: CompiledSpec,
        args: Mapping[str, Any],
        ctx: ExecutionContext,
        deadline: float,
        counters: Counters,
        execute: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bool]:
        """Run ``execute`` at most once per key; return ``(value, answered_from_cache)``."""
        flight = self.lead(spec, args, ctx, deadline, counters, trio.current_time())
        if type(flight) is Deferred:
            return await self.resume(flight, spec, deadline, counters, execute)
        assert type(flight) is Flight
        try:
            value = await execute()
        except BaseException as exc:
            self.failed(flight, exc)
            raise
        self.succeeded(flight, spec, value, trio.current_time())
        return value, False

    def lead(
        self,
        spec: CompiledSpec,
        args: Mapping[str, Any],
        ctx: ExecutionContext,
        deadline: float,
        counters: Counters,
        now: float,
    ) -> Flight | Deferred:
        """Take the key of this call if that needs no waiting; never yields.

        ``now`` is ``trio.current_time()``; so is ``now`` of ``succeeded``. (The supervisor
        reads trio's clock more cheaply than the store could.)

        Returns the :class:`Flight` this call now leads (its claim is held in a
        MemoryStore: execute, then call ``succeeded`` or ``failed`` exactly once), or a
        :class:`Deferred` for ``resume``: a duplicate is in flight, the MemoryStore holds
        the key, or the store is one that waits (SQLite, Redis, a subclass).

        Raises:
            IdempotencyConflictError: the key is done with other arguments.
            IdempotencyStoreError: the MemoryStore is full of calls in progress.
        """
        fp = fingerprint(args)
        generator = spec.key_generator
        if type(generator) is not HashIdempotencyKeyGenerator:
            key = generator.generate(
                spec.tool_name, args, key_fields=spec.key_fields, tenant_id=ctx.tenant_id
            )
        elif ctx.tenant_id is None:  # the key is a prefix per tool, then the fingerprint
            prefix = self._prefixes.get(spec.tool_name)
            if prefix is None:
                prefix = generator.key_for_fingerprint(spec.tool_name, "")
                self._prefixes[spec.tool_name] = prefix
            key = prefix + fp
        else:
            key = generator.key_for_fingerprint(spec.tool_name, fp, tenant_id=ctx.tenant_id)
        store = self.store if spec.persist_result else self.local
        # Subclasses of MemoryStore may override its methods: they take the general path.
        if key in self._flights or type(store) is not MemoryStore:
            return Deferred(fp, key)
        owner, claim_ttl = self._new_claim(spec, deadline, now)
        try:
            record = store._claim(key, fp, owner, claim_ttl, now)
        except IdempotencyStoreError:
            counters.failures += 1
            raise
        if record is not None:
            if record.fingerprint != fp:
                counters.failures += 1
                raise IdempotencyConflictError(key, tool=spec.tool_name)
            return Deferred(fp, key, record)
        flight = self._flights[key] = Flight(fp, key, owner, store)
        return flight

    def succeeded(self, flight: Flight, spec: CompiledSpec, value: Any, now: float) -> None:
        """Store the value of ``flight``'s execution and answer its waiters; never yields."""
        store = flight.store
        assert store is not None
        key = flight.key
        try:
            result_json, reason = _encode(value)
            try:
                store._complete(key, flight.owner, spec.idempotency_ttl_s, result_json, reason, now)
            except Exception as exc:  # a TTL the store refuses
                reason = f"the store failed to record the success: {exc}"
                log.exception("completing idempotency key %r failed", key)
            if reason is not None and self.publish is not None:
                self.publish(ResultNotStored(spec.tool_name, key, reason, now))
        except BaseException as exc:
            self._land(flight, None, exc)
            raise
        if flight.done is not None:
            self._land(flight, value, None)
        elif self._flights.get(key) is flight:  # nobody waits (the usual case): just leave
            del self._flights[key]

    def failed(self, flight: Flight, exc: BaseException) -> None:
        """Release ``flight``'s key after its execution raised ``exc``; never yields."""
        store = flight.store
        assert store is not None
        try:
            store._release(flight.key, flight.owner)
        except Exception:
            log.exception("releasing idempotency key %r failed", flight.key)
        self._land(flight, None, exc)

    def _land(self, flight: Flight, value: Any, exc: BaseException | None) -> None:
        """End ``flight``: its waiters get its outcome; the key leaves the flight table."""
        done = flight.done
        if done is not None:  # only a waiting duplicate reads the result
            if exc is None:
                flight.result = outcome.Value(value)
            elif isinstance(exc, Exception):
                flight.result = _left_or_failed(exc)
            # else (cancelled): no result, so a waiter takes over.
            done.set()
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    async def resume(
        self,
        deferred: Deferred,
        spec: CompiledSpec,
        deadline: float,
        counters: Counters,
        execute: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bool]:
        """``run`` for what ``lead`` could not start: return ``(value, from_cache)``."""
        fp = deferred.fingerprint
        key = deferred.key
        store = self.store if spec.persist_result else self.local
        record = deferred.record
        if record is not None and record.state is RecordState.DONE:
            return self._hit(store, record, counters), True
        # (A MemoryStore key claimed by another cache sharing the store: the general path
        # waits for it as for another process.)
        while (flight := self._flights.get(key)) is not None:
            if flight.fingerprint != fp:
                counters.failures += 1
                raise IdempotencyConflictError(key, tool=spec.tool_name)
            if flight.done is None:
                flight.done = trio.Event()
            await _wait_until(flight.done, deadline, spec.tool_name, counters)
            if flight.result is not None:
                return self._joined(flight.result, counters), True
        flight = Flight(fp, key)
        self._flights[key] = flight
        try:
            value, cached = await self._lead(spec, store, key, fp, deadline, counters, execute)
        except Exception as exc:
            flight.result = _left_or_failed(exc)
            raise
        else:
            flight.result = outcome.Value(value)
            return value, cached
        finally:
            if flight.done is not None:
                flight.done.set()
            if self._flights.get(key) is flight:
                del self._flights[key]

    def _new_claim(self, spec: CompiledSpec, deadline: float, now: float) -> tuple[str, float]:
        """A fresh owner for a claim, and how long the claim lasts."""
        self._seq += 1
        claim_ttl = spec.claim_ttl_s
        if deadline != math.inf:
            claim_ttl = _claim_ttl(claim_ttl, deadline, now)
        return f"{self._owner}-{self._seq}", claim_ttl

    @staticmethod
    def _joined(result: outcome.Outcome[Any], counters: Counters) -> Any:
        if isinstance(result, outcome.Error):
            counters.failures += 1
            raise result.error
        assert isinstance(result, outcome.Value)
        counters.successes += 1
        counters.cache_hits += 1
        return result.value

    def _hit(self, store: IdempotencyStore, record: Record, counters: Counters) -> Any:
        value = self._decode(store, record, counters)
        counters.successes += 1
        counters.cache_hits += 1
        return value

    async def _lead(
        self,
        spec: CompiledSpec,
        store: IdempotencyStore,
        key: str,
        fp: str,
        deadline: float,
        counters: Counters,
        execute: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bool]:
        """Claim ``key`` in ``store`` (polling while another holds it), then execute."""
        owner, claim_ttl = self._new_claim(spec, deadline, trio.current_time())
        poll = _POLL_FIRST_S
        while True:
            try:
                claim = await store.claim(key, fp, owner, claim_ttl)
            except IdempotencyStoreError:
                counters.failures += 1
                raise
            if claim.claimed:
                break
            record = claim.record
            if record.fingerprint != fp:
                counters.failures += 1
                raise IdempotencyConflictError(key, tool=spec.tool_name)
            if record.state is RecordState.DONE:
                return self._hit(store, record, counters), True
            # Another process runs this key: wait for it to finish or for its claim to end.
            now = trio.current_time()
            if now + poll > deadline:
                await trio.sleep_until(deadline)
                counters.timeouts += 1
                counters.failures += 1
                raise ToolTimeoutError(spec.tool_name, deadline - now, scope="call")
            await trio.sleep(poll)
            poll = min(poll * 2, _POLL_MAX_S)
        try:
            value = await execute()
        except BaseException:
            with trio.move_on_after(_CLEANUP_S, shield=True):
                try:
                    await store.release(key, owner)
                except Exception:
                    log.exception("releasing idempotency key %r failed", key)
            raise
        result_json, reason = _encode(value)
        try:
            if store.persistent:  # I/O: finish it even if the caller is being cancelled
                with trio.move_on_after(_CLEANUP_S, shield=True):
                    await store.complete(key, owner, spec.idempotency_ttl_s, result_json, reason)
            else:
                await store.complete(key, owner, spec.idempotency_ttl_s, result_json, reason)
        except Exception as exc:
            reason = f"the store failed to record the success: {exc}"
            log.exception("completing idempotency key %r failed", key)
        if reason is not None and self.publish is not None:
            self.publish(ResultNotStored(spec.tool_name, key, reason, trio.current_time()))
        return value, False

    @staticmethod
    def _decode(store: IdempotencyStore, record: Record, counters: Counters) -> Any:
        name = type(store).__name__
        if record.result_json is None:
            counters.failures += 1
            raise IdempotencyStoreError(
                name,
                f"key {record.key!r} already executed successfully, but its result was not "
                f"stored ({record.not_stored_reason or 'no reason recorded'}); it is not "
                "executed again until its TTL ends",
            )
        try:
            return json.loads(record.result_json)
        except ValueError as exc:
            counters.failures += 1
            raise IdempotencyStoreError(
                name, f"stored result of key {record.key!r} is not valid JSON ({exc})"
            ) from exc


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


async def _wait_until(event: trio.Event, deadline: float, tool: str, counters: Counters) -> None:
    if deadline == math.inf:
        await event.wait()
        return
    with trio.move_on_at(deadline):
        await event.wait()
        return
    counters.timeouts += 1
    counters.failures += 1
    raise ToolTimeoutError(tool, 0.0, scope="call")
