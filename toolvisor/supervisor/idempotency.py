"""The idempotency cache: at most one execution per key within its TTL.

Held by the supervisor (and by each FunctionToolExecutor). For an idempotent call it:

1. builds the key (tool- and tenant-namespaced) and the arguments' fingerprint;
2. joins a *flight* already running for the key in this process (single flight: no
   second execution, the waiters get the leader's outcome), or leads one;
3. the leader claims the key in the store, atomically (across processes for SQLite and
   Redis). If the key is done, the stored result is returned with no execution; if
   another process holds it, the leader polls until that claim completes or expires;
4. on success the result is stored as JSON for ``ttl_s``; on a clean failure (the tool
   raised) the claim is released, so a later call may run again (failures are not
   stored); when an attempt started and was cut (per-attempt timeout, the call's
   deadline, the caller's cancellation, an actor crash) the outcome is *unknown* and,
   with ``on_unknown_outcome="fail"`` (the default), the key is recorded as unknown: later
   calls get ``IdempotencyOutcomeUnknownError`` and nothing runs until ``forget``.

The key the tool sees (``ctx.idempotency_key``) is the caller's own
(``ExecutionContext(idempotency_key=...)``) or the generator's; in the store it is
namespaced by the spec's id, the tool and the tenant (:func:`storage_key`). A claim is a
lease, renewed by this cache while its call lives (queued, running, waiting between
attempts): it expires only when its holder is gone. Every store operation before the
execution is bounded by the call's deadline.

The same key with different arguments raises ``IdempotencyConflictError``. A store that
fails before the execution raises ``IdempotencyStoreError`` and nothing runs: without
the store, toolvisor cannot prove the call would not run twice. A store that fails
*after* a success (``complete``) cannot take the result back: the caller gets its value,
an error is logged, a ``ResultNotStored`` event says why, and the key is recorded as
unknown. Settling a key after its execution waits for the store at most ``_CLEANUP_S``;
when the store has not answered by then (or failed to record the key either way), the
claim stays held and renewed and the settling is tried again in the background until
the store answers: a key is never freed by a store that is merely slow.

The in-process flight table is owned by this object and mutated only synchronously
(between awaits), so the supervisor's tasks need no lock.
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import attrs
import outcome
import trio

from .._json import compact_dumps, load_stored
from ..actors.call import Call
from ..errors import (
    IdempotencyConflictError,
    IdempotencyOutcomeUnknownError,
    IdempotencyStoreError,
    ToolTimeoutError,
)
from ..events import Event, ResultNotStored
from ..policies.idempotency import fingerprint
from ..spec import CompiledSpec, ExecutionContext
from .stores.base import IdempotencyStore, Record, RecordState
from .stores.memory import MemoryStore

__all__ = ["Flight", "IdempotencyCache", "call_key", "storage_key"]

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


@attrs.define
class _Lease:
    """A claim this cache holds, renewed while its call lives."""

    store: IdempotencyStore
    key: str
    ttl_s: float
    #: When the store last confirmed the claim (claimed or renewed it), trio time.
    confirmed_at: float = attrs.field(factory=trio.current_time)


Execute = Callable[[Call], Awaitable[Any]]
"""Sends a call to its tool and waits for its end (the supervisor's send-and-wait)."""

Settle = Callable[[], Awaitable[bool]]
"""A store operation that settles a key after its execution (complete, mark_unknown or
release, its arguments bound)."""


async def _record_success(
    store: IdempotencyStore,
    key: str,
    owner: str,
    ttl_s: float,
    result_json: str | None,
    reason: str | None,
) -> bool:
    """Record a success again: as done, or, when the store refuses that, as unknown (a
    later duplicate must not run either way)."""
    try:
        return await store.complete(key, owner, ttl_s, result_json, reason)
    except Exception:
        return await store.mark_unknown(key, owner, ttl_s)


async def _bounded(settling: Awaitable[bool]) -> bool | None:
    """Await ``settling`` (a store operation after the execution) shielded from the
    caller's cancellation, for at most ``_CLEANUP_S``; None if the store did not answer
    by then."""
    with trio.move_on_after(_CLEANUP_S, shield=True):
        return await settling
    return None


def _unknown(spec: CompiledSpec, call: Call, exc: BaseException) -> bool:
    """Whether an execution that ended with ``exc`` leaves the key's outcome unknown: an
    attempt had started and was cut (it may have had its effect) and the spec says
    ``on_unknown_outcome="fail"``. A clean failure releases the key instead."""
    return spec.on_unknown_outcome == "fail" and (
        call.in_attempt or isinstance(exc, IdempotencyOutcomeUnknownError)
    )


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
                "idempotency_store must implement IdempotencyStore (claim/renew/complete/"
                f"mark_unknown/release/forget/get/aclose), got {type(store).__name__}"
            )
        self.local: IdempotencyStore = (
            store if store is not None and not store.persistent else MemoryStore()
        )
        self.store: IdempotencyStore = store if store is not None else self.local
        #: Every idempotent tool's keys go to ``store``, ``persist_result`` or not: set on
        #: a remote worker, whose store the fleet shares (keys kept in one worker's
        #: memory would let another worker run the same key).
        self.shared = False
        self.publish = publish
        self._flights: dict[str, Flight] = {}
        self._leases: dict[str, _Lease] = {}  # owner -> the claim it holds
        self._renewing = False
        self._nap: trio.CancelScope | None = None  # the renewer's sleep, while it sleeps
        self._owner = secrets.token_hex(8)
        self._seq = 0
        #: The scopes of the background tasks (renewer, settlers), cancelled by close().
        self._background: set[trio.CancelScope] = set()
        self.closed = False

    def close(self) -> None:
        """Stop renewing claims and settling keys in the background (the supervisor
        closed, its store may close next): the claims still held lapse with their
        leases, as those of a process that exits do."""
        self.closed = True
        for scope in list(self._background):
            scope.cancel()

    async def run(self, spec: CompiledSpec, call: Call, execute: Execute) -> Any:
        """Run ``call`` at most once per key; end it and return its value (or raise).

        ``execute(call)`` runs it for real (it ends the call); every other way the call
        ends (a stored result, a duplicate's outcome, a conflict, an unknown outcome, a
        store failure, its deadline while waiting) is ended here. A call its spec's
        fallback answered returns the fallback's value, while its key follows the error
        the fallback replaced (released, or recorded unknown; never done).
        """
        try:
            return await self._run(spec, call, execute)
        except Exception:
            if call.replaced is None:
                raise
            return call.result()  # the error was replaced at the call's end

    async def _run(self, spec: CompiledSpec, call: Call, execute: Execute) -> Any:
        try:
            fp = fingerprint(call.args)
            call.key = key = call_key(spec, call.args, call.ctx, fp)
            stored_key = storage_key(spec, call.ctx.tenant_id, key)
            joined = None
            if stored_key in self._flights:  # a duplicate of a call running here
                joined = await self._join(spec, call, stored_key, fp)
        except BaseException as exc:
            call.settle(exc)
            raise
        if joined is not None:
            return _joined(call, joined)
        flight = self._flights[stored_key] = Flight(fp, stored_key)
        try:
            value = await self._lead(spec, call, stored_key, fp, execute)
        except Exception as exc:
            flight.result = _left_or_failed(exc)
            raise
        else:
            flight.result = outcome.Value(value)
            return value
        finally:
            if flight.done is not None:
                flight.done.set()
            if self._flights.get(stored_key) is flight:
                del self._flights[stored_key]

    async def forget(self, spec: CompiledSpec, key: str, tenant_id: str | None = None) -> bool:
        """Drop the record of ``key`` (as the tool saw it); True if there was one."""
        if not isinstance(key, str) or not key:
            raise TypeError(f"key must be a non-empty str, got {key!r:.100}")
        return await self._store_of(spec).forget(storage_key(spec, tenant_id, key))

    def _store_of(self, spec: CompiledSpec) -> IdempotencyStore:
        """Where ``spec``'s keys are claimed and their results kept."""
        return self.store if spec.persist_result or self.shared else self.local

    async def _join(
        self, spec: CompiledSpec, call: Call, key: str, fp: str
    ) -> outcome.Outcome[Any] | None:
        """Wait for the flights of ``key`` in this process; the outcome of the one that
        answered for this call, or None once no flight is left (this call leads)."""
        while (flight := self._flights.get(key)) is not None:
            if flight.fingerprint != fp:
                raise IdempotencyConflictError(_shown(call), tool=spec.tool_name)
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
        store = self._store_of(spec)
        owner = self._new_owner()
        lease = spec.claim_ttl_s
        try:
            stored = await self._claim(spec, call, store, key, fp, owner, lease)
            if stored is None and call.ctx.delivery > 1 and spec.on_unknown_outcome == "fail":
                await self._delivered_again(spec, call, store, key, owner)
        except BaseException as exc:
            call.settle(exc)
            raise
        if stored is not None:
            call.succeed(stored.value, cached=True)
            return stored.value
        held = _Lease(store, key, lease)
        self._hold(owner, held)
        # The store operation that settles the key after the execution, to be tried again
        # while the claim is kept if the store does not answer it (None: settled).
        unsettled: Settle | None = None
        try:
            try:
                value = await execute(call)
                if call.replaced is not None:
                    # A fallback's value, not the tool's: the key (and the duplicates
                    # waiting on it) follow the failure it replaced.
                    raise call.replaced  # noqa: TRY301 - the failure path below settles the key
            except BaseException as exc:
                unknown = _unknown(spec, call, exc)
                answered = await _bounded(
                    self._after_failure(spec, call, store, key, owner, exc, unknown)
                )
                if not answered:
                    if unknown:
                        ttl = spec.idempotency_ttl_s
                        unsettled = functools.partial(store.mark_unknown, key, owner, ttl)
                    else:
                        unsettled = functools.partial(store.release, key, owner)
                    if answered is None:
                        self._not_answered(
                            spec, key, "settling the key after its call failed", event=False
                        )
                raise
            result_json, reason = _encode(value)
            notified: list[bool] = []  # _store_success published ResultNotStored already
            settling = self._store_success(spec, store, key, owner, result_json, reason, notified)
            if store.persistent:  # I/O: finish it even if the caller is being cancelled now
                answered = await _bounded(settling)
            else:  # in memory: nothing in it waits or fails
                answered = await settling
            if not answered:
                unsettled = functools.partial(
                    _record_success, store, key, owner, spec.idempotency_ttl_s, result_json, reason
                )
                if answered is None:
                    self._not_answered(
                        spec, key, "recording the success (the tool ran)", event=not notified
                    )
            return value
        finally:
            if unsettled is None:
                self._leases.pop(owner, None)
            elif self.closed:  # nothing renews it any more: it lapses with its lease
                self._leases.pop(owner, None)
                log.error("idempotency key %r: not settled before the supervisor closed", key)
            else:  # the claim stays held (renewed): the key does not run again meanwhile
                trio.lowlevel.spawn_system_task(
                    self._settle_later, owner, held, unsettled, name="toolvisor idempotency settle"
                )

    async def _delivered_again(
        self, spec: CompiledSpec, call: Call, store: IdempotencyStore, key: str, owner: str
    ) -> None:
        """A call delivered again (its worker died holding it) found its key free: the
        worker that died may have run it, so the outcome is unknown. Record it so (the
        key does not run until ``forget``) and raise ``IdempotencyOutcomeUnknownError``."""
        with trio.move_on_after(_CLEANUP_S, shield=True):
            await store.mark_unknown(key, owner, spec.idempotency_ttl_s)
        error = IdempotencyOutcomeUnknownError(_shown(call), tool=spec.tool_name)
        error.add_note(
            f"toolvisor: this call was delivered {call.ctx.delivery} times: the worker that "
            "held it before died, and may have run it; forget() the key once you know it "
            "did not take effect"
        )
        raise error

    async def _claim(
        self,
        spec: CompiledSpec,
        call: Call,
        store: IdempotencyStore,
        key: str,
        fp: str,
        owner: str,
        lease: float,
    ) -> outcome.Value[Any] | None:
        """Claim ``key`` for ``owner``, polling while another process holds it.

        Returns None once claimed, or the stored result of a key that is done. Bounded by
        the call's deadline: a store that cannot answer in time times the call out, and
        nothing runs.
        """
        poll = _POLL_FIRST_S
        while True:
            if call.deadline == math.inf:  # nothing to bound: no cancel scope to enter
                claim = await store.claim(key, fp, owner, lease)
            else:
                with trio.move_on_at(call.deadline) as waiting:
                    claim = await store.claim(key, fp, owner, lease)
                if waiting.cancelled_caught:
                    raise _timed_out(call, f"the idempotency store ({_name(store)}) did not answer")
            if claim.claimed:
                return None
            record = claim.record
            if record.fingerprint != fp:
                raise IdempotencyConflictError(_shown(call), tool=spec.tool_name)
            if record.state is RecordState.DONE:
                return outcome.Value(_decode(store, record))
            if record.state is RecordState.UNKNOWN:
                raise IdempotencyOutcomeUnknownError(_shown(call), tool=spec.tool_name)
            # Another process runs this key: wait for it to finish or its lease to end.
            if trio.current_time() + poll > call.deadline:
                await trio.sleep_until(call.deadline)
                raise _timed_out(call, "another process still runs this key")
            await trio.sleep(poll)
            poll = min(poll * 2, _POLL_MAX_S)

    async def _after_failure(
        self,
        spec: CompiledSpec,
        call: Call,
        store: IdempotencyStore,
        key: str,
        owner: str,
        exc: BaseException,
        unknown: bool,
    ) -> bool:
        """The execution ended without a value: release the key, or record it unknown
        (``unknown``: see :func:`_unknown`); whether the store answered."""
        try:
            if unknown:
                done = await store.mark_unknown(key, owner, spec.idempotency_ttl_s)
                if isinstance(exc, Exception) and not isinstance(
                    exc, IdempotencyOutcomeUnknownError
                ):
                    exc.add_note(
                        f"toolvisor: the outcome of idempotency key {_shown(call)!r} is "
                        "unknown (an attempt was cut); the key does not run again until "
                        "forgotten"
                    )
            else:
                done = await store.release(key, owner)
        except Exception as exc:
            # No traceback: the store error's own message would say the call did not run.
            log.error(  # noqa: TRY400
                "settling idempotency key %r after its call failed: %s; the claim is kept "
                "and the store asked again",
                key,
                _detail(exc),
            )
            return False
        if not done:
            log.warning("idempotency key %r: the claim was lost before the call ended", key)
        return True

    async def _store_success(
        self,
        spec: CompiledSpec,
        store: IdempotencyStore,
        key: str,
        owner: str,
        result_json: str | None,
        reason: str | None,
        notified: list[bool],
    ) -> bool:
        """Record the success of ``key``; never silent when that fails (``notified`` says
        that the ``ResultNotStored`` event went out). False when the store failed to
        record it, as done or as unknown (the claim then stays held)."""
        try:
            stored = await store.complete(key, owner, spec.idempotency_ttl_s, result_json, reason)
        except Exception as exc:
            stored = False
            reason = f"the store failed to record the success (the tool ran): {_detail(exc)}"
        else:
            if not stored:
                reason = "the claim was lost before the success could be recorded"
        if reason is None:
            return True
        log.error("idempotency key %r of tool %r: %s", key, spec.tool_name, reason)
        notified.append(True)
        if self.publish is not None:
            self.publish(ResultNotStored(spec.tool_name, key, reason, trio.current_time()))
        if not stored:
            # The key must not run twice: block it as unknown if the store lets us.
            try:
                await store.mark_unknown(key, owner, spec.idempotency_ttl_s)
            except Exception as exc:
                log.error(  # noqa: TRY400 - as above: the tool ran
                    "recording idempotency key %r as unknown failed: %s; the claim is kept "
                    "and the store asked again",
                    key,
                    _detail(exc),
                )
                return False
        return True

    def _not_answered(self, spec: CompiledSpec, key: str, what: str, *, event: bool) -> None:
        """The store did not answer the operation settling ``key`` within ``_CLEANUP_S``;
        ``event``: publish ``ResultNotStored`` too (a success's goes out once)."""
        reason = (
            f"the idempotency store did not answer within {_CLEANUP_S:g} s while {what}; "
            "the claim is kept (the key does not run again) and the store asked again"
        )
        log.error("idempotency key %r of tool %r: %s", key, spec.tool_name, reason)
        if event and self.publish is not None:
            self.publish(ResultNotStored(spec.tool_name, key, reason, trio.current_time()))

    async def _settle_later(self, owner: str, lease: _Lease, settle: Settle) -> None:
        """Keep ``owner``'s claim held and try ``settle`` again until the store answers
        it, then let the claim go (a system task: it never raises).

        The claim stays renewed meanwhile, so no call runs the key; it is given up when
        the renewer finds it lost, or when the store confirmed it for none of a whole
        lease (it has lapsed there: a store that stays down, or was closed).
        """
        wait = min(1.0, lease.ttl_s / 3)
        try:
            with trio.CancelScope() as background:
                self._background.add(background)
                if self.closed:  # closed between this task's spawn and its start
                    background.cancel()
                await self._settle_again(owner, lease, settle, wait)
            if background.cancelled_caught:
                log.error(
                    "idempotency key %r: not settled before the supervisor closed; its "
                    "claim lapses with its lease",
                    lease.key,
                )
        finally:
            self._background.discard(background)
            if self._leases.get(owner) is lease:
                del self._leases[owner]

    async def _settle_again(self, owner: str, lease: _Lease, settle: Settle, wait: float) -> None:
        """``_settle_later``'s retries, until the store answers or the claim is gone."""
        while self._leases.get(owner) is lease:
            if trio.current_time() - lease.confirmed_at > lease.ttl_s:
                log.error(
                    "idempotency key %r: settling it is given up; the store confirmed "
                    "its claim for none of its %g s lease, so the claim has lapsed "
                    "and the key may run again",
                    lease.key,
                    lease.ttl_s,
                )
                return
            await trio.sleep(wait)
            wait = min(wait * 2, lease.ttl_s / 3)
            try:
                with trio.move_on_after(lease.ttl_s / 3) as waiting:
                    await settle()
            except Exception as exc:
                log.error(  # noqa: TRY400 - the store's own words say enough
                    "settling idempotency key %r failed again: %s", lease.key, _detail(exc)
                )
                continue
            if not waiting.cancelled_caught:
                log.warning("idempotency key %r: settled once the store answered", lease.key)
                return

    def _new_owner(self) -> str:
        """A fresh owner for a claim."""
        self._seq += 1
        return f"{self._owner}-{self._seq}"

    def _hold(self, owner: str, lease: _Lease) -> None:
        """Keep ``owner``'s claim alive until it is dropped from ``_leases``."""
        self._leases[owner] = lease
        if not self._renewing and not self.closed:
            self._renewing = True
            trio.lowlevel.spawn_system_task(self._renew, name="toolvisor idempotency leases")
        elif self._nap is not None:  # a shorter lease than those the renewer sleeps for
            due = trio.current_time() + lease.ttl_s / 3
            if due < self._nap.deadline:
                self._nap.deadline = due

    async def _renew(self) -> None:
        """Renew every held claim a third of its lease before it ends; stop when none is
        held (a system task: it never raises)."""
        with trio.CancelScope() as background:
            self._background.add(background)
            if self.closed:
                background.cancel()
            try:
                while self._leases:
                    period = min(lease.ttl_s for lease in self._leases.values()) / 3
                    with trio.move_on_after(period) as self._nap:
                        await trio.sleep_forever()
                    self._nap = None
                    # Side by side: a store slow to renew one claim holds up no other.
                    async with trio.open_nursery() as nursery:
                        for owner, lease in list(self._leases.items()):
                            nursery.start_soon(self._renew_one, owner, lease, period)
            finally:
                self._background.discard(background)
                self._nap = None
                self._renewing = False

    async def _renew_one(self, owner: str, lease: _Lease, period: float) -> None:
        """Renew one claim, waiting at most ``period`` for the store (never raises)."""
        if self._leases.get(owner) is not lease:
            return  # its call ended meanwhile
        renewed: bool | None = None
        try:
            with trio.move_on_after(period):
                renewed = await lease.store.renew(lease.key, owner, lease.ttl_s)
        except Exception:
            log.exception("renewing the claim on idempotency key %r failed", lease.key)
            return
        if renewed is None:
            log.warning(
                "renewing the claim on idempotency key %r: the store did not answer within "
                "%.3g s; renewed again next time",
                lease.key,
                period,
            )
            return
        if renewed:
            lease.confirmed_at = trio.current_time()
        # A call that ended while its renewal was on the way completed or released its
        # claim: not renewing it then is no loss.
        elif self._leases.get(owner) is lease:
            log.warning("idempotency key %r: its claim was lost", lease.key)
            del self._leases[owner]


def call_key(
    spec: CompiledSpec, args: Mapping[str, Any], ctx: ExecutionContext, fp: str | None = None
) -> str:
    """The call's key as the tool sees it: the caller's own, else the generator's.

    ``fp`` is the arguments' fingerprint when already computed: a generator whose key is
    made from it (the optional ``key_for_fingerprint``, which the hash generator has)
    then does not hash the arguments a second time.
    """
    if ctx.idempotency_key is not None:
        return ctx.idempotency_key
    if fp is not None and spec.key_for_fingerprint is not None:
        return spec.key_for_fingerprint(spec.tool_name, fp, tenant_id=ctx.tenant_id)
    generator = spec.key_generator
    if spec.key_generator_takes_ctx:
        return generator.generate(
            spec.tool_name, args, key_fields=spec.key_fields, tenant_id=ctx.tenant_id, ctx=ctx
        )
    return generator.generate(
        spec.tool_name, args, key_fields=spec.key_fields, tenant_id=ctx.tenant_id
    )


def storage_key(spec: CompiledSpec, tenant_id: str | None, key: str) -> str:
    """The key in the store: the call's key namespaced by spec id, tool and tenant.

    The namespace's components are percent-encoded, so they hold no ``|``, and the key
    is everything after the fourth ``|``: two specs (two applications sharing a store),
    two tools or two tenants never share a record.
    """
    return _namespace(spec.spec_id, spec.tool_name, tenant_id) + key


@functools.lru_cache(maxsize=4096)  # specs, tools and tenants repeat across calls
def _namespace(spec_id: str, tool_name: str, tenant_id: str | None) -> str:
    tenant = "-" if tenant_id is None else "t=" + _quote(tenant_id)
    return f"v2|{_quote(spec_id)}|{_quote(tool_name)}|{tenant}|"


def _quote(component: str) -> str:
    return quote(component, safe="", errors="surrogatepass")


def _detail(exc: Exception) -> str:
    """What a store's failure says, without the "not executed" ending of its message
    (these failures come after the tool ran)."""
    if isinstance(exc, IdempotencyStoreError):
        return f"{exc.store}: {exc.detail}"
    return f"{type(exc).__name__}: {exc}"


def _shown(call: Call) -> str:
    """The call's key as users see it (in errors)."""
    return call.key or ""


def _name(store: IdempotencyStore) -> str:
    return type(store).__name__


def _joined(call: Call, result: outcome.Outcome[Any]) -> Any:
    """End a duplicate with the outcome of the flight it waited for."""
    if isinstance(result, outcome.Error):
        call.fail(result.error)
        raise result.error
    assert isinstance(result, outcome.Value)
    call.succeed(result.value, cached=True)
    return result.value


def _decode(store: IdempotencyStore, record: Record) -> Any:
    name = _name(store)
    if record.result_json is None:
        raise IdempotencyStoreError(
            name,
            f"key {record.key!r} already executed successfully, but its result was not "
            f"stored ({record.not_stored_reason or 'no reason recorded'}); it is not "
            "executed again until its TTL ends",
        )
    return load_stored(record.result_json, store=name, key=record.key)


async def _wait_for(event: trio.Event, call: Call) -> None:
    """Wait for ``event`` until ``call``'s deadline (past it the call times out)."""
    with trio.move_on_at(call.deadline) as waiting:
        await event.wait()
    if waiting.cancelled_caught:
        raise _timed_out(call, "the same key was still running here")


def _timed_out(call: Call, why: str) -> ToolTimeoutError:
    """End ``call`` as timed out (nobody else ends it while it waits here)."""
    error = call.time_out()
    assert error is not None
    error.add_note(f"toolvisor: {why} when the call's deadline passed; the tool did not run")
    return error


def _left_or_failed(exc: Exception) -> outcome.Error | None:
    """What a leader's exception tells its waiters: None when the leader ran out of *its*
    time (it leaves, and a waiter takes over), else the error they all get."""
    if isinstance(exc, ToolTimeoutError) and exc.scope == "call":
        return None
    return outcome.Error(exc)


def _encode(value: Any) -> tuple[str | None, str | None]:
    try:
        return compact_dumps(value), None
    except (TypeError, ValueError) as exc:
        return None, f"the result is not JSON-serialisable ({type(exc).__name__}: {exc})"
