"""The shared idempotency store: records in Redis, through coredis (extra ``redis``)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from toolvisor._redact import redact_text, redact_url
from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores import _redis_lua as lua
from toolvisor.supervisor.stores._common import DEFAULT_NAMESPACE, check_namespace, check_ttl
from toolvisor.supervisor.stores.base import ClaimOutcome, Record, RecordState

if TYPE_CHECKING:
    import coredis
    from coredis.commands import Script

__all__ = ["RedisStore"]

_STATES = {s.value: s for s in RecordState}
#: A server that stops answering fails the call after this long instead of hanging it.
_STREAM_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 2.0


def _import_coredis() -> Any:
    try:
        import coredis
    except ImportError as exc:
        raise ImportError(
            "RedisStore needs the coredis package: pip install 'toolvisor[redis]'"
        ) from exc
    return coredis


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(ttl_s: float) -> int:
    return max(1, math.ceil(ttl_s * 1000.0))


class _Anchor:
    """Keeps coredis's connection pool entered in a trio system task.

    coredis (6.x) runs its connections in an anyio task group that must be entered and
    exited by one task, but a store has no ``async with`` of its own: operations come
    from whichever task calls them. The anchor task holds the pool open until
    ``aclose()`` or the end of the trio run; operations use it from their own tasks.
    """

    def __init__(self, client: coredis.Redis[str]) -> None:
        self.client = client
        self.token = trio.lowlevel.current_trio_token()
        self.ready = trio.Event()
        self.stop = trio.Event()
        self.done = trio.Event()
        self.error: BaseException | None = None

    async def run(self) -> None:
        # A system task must not raise (it would crash the trio run): keep the error
        # for the operation waiting on ``ready``, or for the next one.
        try:
            async with self.client:
                self.ready.set()
                await self.stop.wait()
        except Exception as exc:
            self.error = exc
        finally:
            self.ready.set()
            self.done.set()

    @property
    def usable(self) -> bool:
        return not self.done.is_set() and self.token is trio.lowlevel.current_trio_token()


class RedisStore:
    """Idempotency records in Redis: shared by every process and host that uses it.

    Each record is a hash under ``prefix + namespace + ":" + key`` whose PX expiry, held
    by Redis, is the claim's, the done or the unknown record's TTL: an expired record
    vanishes by itself, so a key that exists is live. Every operation is one Lua script,
    so the owner check and the write are one atomic step on the server (``SET NX`` alone
    could claim, but not check the owner on renew, complete and release). ``expires_at``
    in the returned records is on this process's wall clock (``time.time()``).

    Two applications sharing one Redis with different namespaces never see each other's
    keys. Records written by toolvisor before namespaces existed (at ``prefix + key``)
    are read, and forgotten, by the store of the namespace ``"default"``.

    Operations are cancellable: a caller's cancel scope (the call's deadline) ends a
    wait for a server that does not answer, at once; a server that never answers fails
    the operation after 10 s (``IdempotencyStoreError``).

    The connection opens on first use. With ``client=None`` the store makes a coredis
    client from ``url`` and owns it (``aclose()`` closes it); a ``client`` you pass must
    already be entered (``async with client:``) for as long as the store is used, and
    stays yours. A server that cannot be reached, a timeout, or a key under ``prefix``
    that is not a toolvisor record raises ``IdempotencyStoreError``.

    The password (in the URL's userinfo or a ``password=``/``token``-like query
    parameter) never appears in the store's ``repr``, its ``url`` attribute, its errors
    or its logs: each shows the URL with the secret as ``***``.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        prefix: prepended to every key (before the namespace).
        client: an entered ``coredis.Redis`` to use instead of ``url``.
        namespace: the application's name (letters, digits, ``_``, ``-``, ``.``; at
            most 128 characters).

    Raises:
        ImportError: coredis is missing (``pip install 'toolvisor[redis]'``).
    """

    persistent: bool = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "toolvisor:idem:",
        client: coredis.Redis[str] | coredis.Redis[bytes] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        self.namespace = check_namespace(namespace)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        self._coredis = _import_coredis()
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        self._url = url
        #: The URL with its secrets as ``***`` (the store connects with the real one).
        self.url = redact_url(url)
        self.prefix = prefix
        self._user_client = client
        shown = self.url if client is None else redact_text(repr(client), url)
        self._name = f"RedisStore({shown!r})"
        script_cls: type[Script[str]] = self._coredis.commands.Script
        self._claim_script = script_cls(script=lua.CLAIM)
        self._get_script = script_cls(script=lua.GET)
        self._renew_script = script_cls(script=lua.RENEW)
        self._complete_script = script_cls(script=lua.COMPLETE)
        self._mark_unknown_script = script_cls(script=lua.MARK_UNKNOWN)
        self._release_script = script_cls(script=lua.RELEASE)
        self._forget_script = script_cls(script=lua.FORGET)
        self._keys_prefix = f"{prefix}{self.namespace}:"
        # Where format-1 records (before namespaces) are: only the default namespace's.
        self._legacy_prefix = prefix if self.namespace == DEFAULT_NAMESPACE else None
        self._anchor: _Anchor | None = None
        self._anchor_lock = trio.Lock()

    def __repr__(self) -> str:
        return f"{self._name[:-1]}, prefix={self.prefix!r})"

    async def claim(
        self, key: str, fingerprint: str, owner: str, claim_ttl_s: float
    ) -> ClaimOutcome:
        """Claim ``key`` for ``owner`` unless a live record stands there (see ``base``)."""
        ttl = check_ttl("claim_ttl_s", claim_ttl_s)
        expires_at = time.time() + ttl
        args = [fingerprint, owner, repr(expires_at), str(_ms(ttl)), self.namespace]
        reply = await self._script(self._claim_script, key, args, "claim", legacy=True)
        if reply == 0:
            record = Record(
                key=key,
                fingerprint=fingerprint,
                state=RecordState.IN_PROGRESS,
                owner=owner,
                expires_at=expires_at,
            )
            return ClaimOutcome(claimed=True, record=record)
        found = self._parse_reply(key, reply, "claim")
        if found is None:
            raise IdempotencyStoreError(self._name, f"claim of {key!r}: bad reply {reply!r}")
        return ClaimOutcome(claimed=False, record=found)

    async def renew(self, key: str, owner: str, claim_ttl_s: float) -> bool:
        """Move the end of ``owner``'s live claim on ``key`` to ``claim_ttl_s`` from now."""
        ttl = check_ttl("claim_ttl_s", claim_ttl_s)
        args = [owner, repr(time.time() + ttl), str(_ms(ttl))]
        return await self._script(self._renew_script, key, args, "renew") == 1

    async def mark_unknown(self, key: str, owner: str, ttl_s: float) -> bool:
        """Turn ``owner``'s live claim on ``key`` into an unknown record kept ``ttl_s``."""
        ttl = check_ttl("ttl_s", ttl_s, allow_zero=True)
        args = [owner, repr(time.time() + ttl), "0" if ttl == 0.0 else str(_ms(ttl))]
        return await self._script(self._mark_unknown_script, key, args, "mark_unknown") == 1

    async def forget(self, key: str) -> bool:
        """Drop the record of ``key``, whatever it is; True if a live one was there."""
        reply = await self._script(self._forget_script, key, [], "forget", legacy=True)
        return isinstance(reply, int) and reply > 0

    async def complete(
        self,
        key: str,
        owner: str,
        ttl_s: float,
        result_json: str | None,
        not_stored_reason: str | None = None,
    ) -> bool:
        """Turn ``owner``'s live claim on ``key`` into a done record kept ``ttl_s`` seconds."""
        ttl = check_ttl("ttl_s", ttl_s, allow_zero=True)
        args = [
            owner,
            repr(time.time() + ttl),
            "0" if ttl == 0.0 else str(_ms(ttl)),
            "0" if result_json is None else "1",
            result_json or "",
            "0" if not_stored_reason is None else "1",
            not_stored_reason or "",
        ]
        return await self._script(self._complete_script, key, args, "complete") == 1

    async def release(self, key: str, owner: str) -> bool:
        """Drop ``owner``'s claim on ``key``."""
        return await self._script(self._release_script, key, [owner], "release") == 1

    async def get(self, key: str) -> Record | None:
        """The live record of ``key``, or None (Redis drops expired records itself)."""
        reply = await self._script(self._get_script, key, [], "get", legacy=True)
        if isinstance(reply, Sequence) and not isinstance(reply, str | bytes) and not reply:
            return None
        found = self._parse_reply(key, reply, "get")
        if found is None:
            raise IdempotencyStoreError(self._name, f"get of {key!r}: bad reply {reply!r}")
        return found

    async def aclose(self) -> None:
        """Close the connections the store opened (not a ``client`` you passed). Idempotent.

        A later operation connects again.
        """
        anchor, self._anchor = self._anchor, None
        if anchor is not None and anchor.usable:
            anchor.stop.set()
            await anchor.done.wait()

    # --- private ----------------------------------------------------------------------

    async def _client(self) -> coredis.Redis[str] | coredis.Redis[bytes]:
        if self._user_client is not None:
            return self._user_client
        anchor = self._anchor
        if anchor is not None and anchor.usable:
            return anchor.client
        async with self._anchor_lock:
            anchor = self._anchor
            if anchor is None or not anchor.usable:
                client = self._coredis.Redis.from_url(
                    self._url,
                    decode_responses=True,
                    stream_timeout=_STREAM_TIMEOUT_S,
                    connect_timeout=_CONNECT_TIMEOUT_S,
                )
                anchor = _Anchor(client)
                trio.lowlevel.spawn_system_task(anchor.run, name=f"toolvisor {self._name}")
                await anchor.ready.wait()
                if anchor.error is not None:
                    raise self._failed("connect", None, anchor.error) from anchor.error
                self._anchor = anchor
            return anchor.client

    async def _script(
        self, script: Script[str], key: str, args: list[str], what: str, *, legacy: bool = False
    ) -> object:
        client = await self._client()
        keys = [self._keys_prefix + key]
        if legacy and self._legacy_prefix is not None:
            keys.append(self._legacy_prefix + key)
        try:
            return await script(keys=keys, args=args, client=client)  # type: ignore[arg-type]
        except Exception as exc:
            raise self._failed(what, key, exc) from exc

    def _parse_reply(self, key: str, reply: object, what: str) -> Record | None:
        """The record in a script's HGETALL reply, or None when the reply is not one."""
        if not isinstance(reply, Sequence) or isinstance(reply, str | bytes) or len(reply) % 2:
            return None
        if not reply:
            return None
        fields = {_text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}
        return self._parse(key, fields)

    def _failed(self, what: str, key: str | None, exc: BaseException) -> IdempotencyStoreError:
        on = f" of {key!r}" if key is not None else ""
        if isinstance(exc, self._coredis.exceptions.WrongTypeError) or "WRONGTYPE" in str(exc):
            detail = (
                f"{what}{on}: key {self._keys_prefix + (key or '')!r} holds data that is not "
                f"a toolvisor record ({exc}); give the store a prefix of its own"
            )
        else:
            detail = f"{what}{on} failed: {type(exc).__name__}: {exc}"
        return IdempotencyStoreError(self._name, redact_text(detail, self._url))

    def _parse(self, key: str, raw: Mapping[str, object]) -> Record:
        fields = {k: _text(v) for k, v in raw.items()}
        problem = None
        state = _STATES.get(fields.get("st", ""))
        try:
            expires_at = float(fields.get("exp", "nan"))
        except ValueError:
            expires_at = math.nan
        version = fields.get("v")
        # A format-1 record (before namespaces) is read by the default namespace only.
        legacy = version == lua.LEGACY_FORMAT_VERSION and self._legacy_prefix is not None
        if not legacy and version != lua.FORMAT_VERSION:
            problem = f"format version {version!r}, expected {lua.FORMAT_VERSION!r}"
        elif not legacy and fields.get("ns") != self.namespace:
            problem = f"namespace {fields.get('ns')!r}, expected {self.namespace!r}"
        elif state is None:
            problem = f"unknown state {fields.get('st')!r}"
        elif "fp" not in fields or "ow" not in fields:
            problem = "fingerprint or owner missing"
        elif not math.isfinite(expires_at):
            problem = f"expires_at {fields.get('exp')!r} is not a finite number"
        if problem is not None or state is None:
            raise IdempotencyStoreError(
                self._name,
                f"unreadable record at {self._keys_prefix + key!r}: {problem}; "
                "give the store a prefix of its own or delete the key",
            )
        return Record(
            key=key,
            fingerprint=fields["fp"],
            state=state,
            owner=fields["ow"],
            expires_at=expires_at,
            result_json=fields.get("res"),
            not_stored_reason=fields.get("nsr"),
        )
