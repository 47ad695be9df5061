"""``RedisShared``: fleet-wide budgets, rate limits and breaker signals through Redis.

The call path never waits for Redis. Each shared policy keeps a ledger in this process
(``_leases``) that its synchronous methods read and write; one background task per trio
run and ``RedisShared`` exchanges every ledger with Redis every ``interval_s`` (sooner
when a lease runs dry), each exchange one Lua script bounded by ``timeout_s``. While
Redis cannot be reached (and until the first exchange of a trio run) ``connected`` is
False and every policy decides on its own local state; the task logs the failure once,
retries with backoff (``interval_s`` doubling to 5 s) and logs again when it is back.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import attrs
import trio

from .._redact import redact_text, redact_url
from . import _lua as lua
from ._leases import BudgetLedger, FleetCounts, TokenLease

if TYPE_CHECKING:
    from ..policies._breaker_core import _Circuit

__all__ = ["RedisShared"]

logger = logging.getLogger("toolvisor.shared")

_SCHEMES = ("redis", "rediss", "unix")
_MAX_BACKOFF_S = 5.0
#: How long Redis remembers a ledger's last answer (a request sent again is older).
_ANSWER_TTL_MS = 600_000
_NAME_MAX = 128


def _check_name(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"RedisShared: 'name' must be a str, got {type(value).__name__}")
    if not value or len(value) > _NAME_MAX:
        raise ValueError(
            f"RedisShared: 'name' must be 1 to {_NAME_MAX} characters, got {value[:40]!r}"
        )
    if not (value[0].isascii() and value[0].isalnum()) or any(
        not (c.isascii() and (c.isalnum() or c in "._-")) for c in value
    ):
        raise ValueError(
            f"RedisShared: 'name' {value!r} may hold only letters, digits, '_', '-' and '.', "
            "and must start with a letter or digit"
        )
    return value


def _check_url(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"RedisShared: 'url' must be a str, got {type(value).__name__}")
    parts = urlsplit(value)
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            "RedisShared: 'url' must be redis://host:port/db, rediss://... or "
            f"unix:///path, got {redact_url(value)!r}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"RedisShared: 'url' {redact_url(value)!r} names no host")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"RedisShared: 'url' {redact_url(value)!r} names no socket path")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port when it is read
    except ValueError as exc:
        raise ValueError(f"RedisShared: 'url' {redact_url(value)!r}: {exc}") from None
    return value


def _seconds(name: str, value: object, low: float, high: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not low <= value <= high
        or math.isnan(value)
    ):
        raise ValueError(
            f"RedisShared: {name!r} must be a number of seconds in [{low}, {high}], got {value!r}"
        )
    return float(value)


class _Member(Protocol):
    async def exchange(self, client: Any) -> None: ...

    def forget(self) -> None: ...


@attrs.define(eq=False)
class _Run:
    """The exchanges of one trio run (a RedisShared serves one run at a time)."""

    token: trio.lowlevel.TrioToken
    alive: bool = True
    wake: trio.Event = attrs.field(factory=trio.Event)
    first: trio.Event = attrs.field(factory=trio.Event)


class RedisShared:
    """A fleet-wide name in Redis for a budget, a rate limit and a breaker policy.

    Pass it as ``shared=`` to :class:`~toolvisor.RetryBudget`, :class:`~toolvisor.RateLimit`
    and the circuit-breaker policies: every process that uses the same Redis and the same
    ``name`` then counts together (see docs/remote.md, "Fleet-wide protection"). One
    ``RedisShared`` serves at most one budget, one rate limit and one breaker policy;
    build one per name. Every process of a name must give its policies the same
    configuration.

    Nothing connects until a policy first uses it inside a trio run; then one background
    task of that run exchanges the policies' ledgers with Redis every ``interval_s``.

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://...`` or ``unix:///path``.
        name: the fleet's name for these policies (letters, digits, ``_``, ``-``, ``.``).
        prefix: prepended to every key.
        interval_s: seconds between two exchanges with Redis.
        timeout_s: the longest an exchange may take before Redis counts as unreachable.

    Raises:
        ValueError / TypeError: a bad ``url``, ``name``, ``interval_s`` or ``timeout_s``.
        ImportError: coredis is missing (``pip install 'toolvisor[redis]'``).

    The password never appears in the ``repr``, the ``url`` attribute or the logs.
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        prefix: str = "toolvisor:shared:",
        interval_s: float = 0.1,
        timeout_s: float = 1.0,
    ) -> None:
        self._url = _check_url(url)
        self.name = _check_name(name)
        if not isinstance(prefix, str):
            raise TypeError(f"RedisShared: 'prefix' must be a str, got {type(prefix).__name__}")
        self.prefix = prefix
        self.interval_s = _seconds("interval_s", interval_s, 0.001, 60.0)
        self.timeout_s = _seconds("timeout_s", timeout_s, 0.001, 60.0)
        try:
            import coredis
        except ImportError as exc:
            raise ImportError(
                "RedisShared needs the coredis package: pip install 'toolvisor[redis]'"
            ) from exc
        self._coredis: Any = coredis
        #: The URL with its secrets as ``***``.
        self.url = redact_url(url)
        self._keys = f"{prefix}{name}:"
        self._members: dict[str, _Member] = {}
        self._run: _Run | None = None
        self._connected = False
        self._down_logged = False
        self._backoff = self.interval_s

    def __repr__(self) -> str:
        return f"RedisShared({self.url!r}, {self.name!r})"

    @property
    def connected(self) -> bool:
        """Whether the last exchange with Redis succeeded (the policies count fleet-wide)."""
        return self._connected

    async def wait_connected(self, timeout_s: float = 5.0) -> bool:
        """Start the exchanges in this trio run if needed and wait for the first one.

        Optional: without it the first exchange happens on the policies' first use, and
        until then (a few milliseconds) they decide locally. Returns False if no exchange
        succeeded within ``timeout_s`` (the policies keep working locally meanwhile).
        """
        self._use()
        run = self._run
        if run is None:
            return False
        with trio.move_on_after(timeout_s):
            await run.first.wait()
        return self._connected

    # --- the policies' side (synchronous, on the call path) -------------------------------

    def _use(self) -> bool:
        """Whether the policies count fleet-wide now; starts the exchanges if needed."""
        run = self._run
        if run is None or not run.alive:
            self._start()
            return False
        return self._connected

    def _poke(self) -> None:
        """A lease ran dry: exchange now rather than at the next interval."""
        run = self._run
        if run is not None:
            run.wake.set()

    def _attach(self, kind: str, member: _Member, owner: object) -> None:
        if kind in self._members:
            raise ValueError(
                f"{self!r} already serves a {kind}; give each {kind} a RedisShared of its "
                f"own name (got a second one: {owner!r})"
            )
        self._members[kind] = member

    def _budget(self, ratio: float, reserve: float, ttl_s: float, owner: object) -> _BudgetMember:
        member = _BudgetMember(self, ratio, reserve, ttl_s)
        self._attach("retry budget", member, owner)
        return member

    def _rate(
        self, per_second: float, capacity: float, max_wait_s: float, owner: object
    ) -> _RateMember:
        member = _RateMember(self, per_second, capacity, max_wait_s)
        self._attach("rate limit", member, owner)
        return member

    def _breaker(self, window_s: float, owner: object) -> _BreakerMember:
        member = _BreakerMember(self, window_s)
        self._attach("breaker policy", member, owner)
        return member

    # --- the background task ---------------------------------------------------------------

    def _start(self) -> None:
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            return  # outside trio: the policies decide locally
        run = self._run = _Run(token)
        self._connected = False
        for member in self._members.values():
            member.forget()
        trio.lowlevel.spawn_system_task(self._serve, run, name=f"toolvisor {self!r}")

    async def _serve(self, run: _Run) -> None:
        self._backoff = self.interval_s
        try:
            while True:
                try:
                    await self._connected_loop(run)
                except Exception as exc:  # a system task must not raise: log, retry
                    self._connected = False
                    if not self._down_logged:
                        self._down_logged = True
                        logger.warning(
                            "%r: Redis unreachable (%s: %s); each process decides on its "
                            "local state until it is back",
                            self,
                            type(exc).__name__,
                            _message(exc, self._url),
                        )
                    run.first.set()
                    await trio.sleep(self._backoff)
                    self._backoff = min(self._backoff * 2, _MAX_BACKOFF_S)
        finally:
            run.alive = False
            self._connected = False

    async def _connected_loop(self, run: _Run) -> None:
        client = self._coredis.Redis.from_url(
            self._url,
            decode_responses=True,
            stream_timeout=self.timeout_s,
            connect_timeout=self.timeout_s,
        )
        async with client:
            while True:
                with trio.fail_after(self.timeout_s):
                    for member in list(self._members.values()):
                        await member.exchange(client)
                self._backoff = self.interval_s
                if not self._connected:
                    self._connected = True
                    if self._down_logged:
                        self._down_logged = False
                        logger.info("%r: Redis is back; counting fleet-wide again", self)
                run.first.set()
                await trio.sleep(self.interval_s / 10)  # pokes come at most this often
                with trio.move_on_after(self.interval_s * 0.9):
                    await run.wake.wait()
                run.wake = trio.Event()

    def _script(self, text: str) -> Any:
        return self._coredis.commands.Script(script=text)


def _message(exc: BaseException, url: str) -> str:
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _message(exc.exceptions[0], url)
    return redact_text(str(exc) or repr(exc), url)


class _BudgetMember:
    """A RetryBudget's ledger and its exchange (``_lua.BUDGET``)."""

    def __init__(self, shared: RedisShared, ratio: float, reserve: float, ttl_s: float) -> None:
        self.shared = shared
        self.ledger = BudgetLedger(ratio=ratio, ttl_s=ttl_s)
        self.reserve = reserve
        self.ttl_s = ttl_s
        self.id = uuid.uuid4().hex
        self.script = shared._script(lua.BUDGET)

    def forget(self) -> None:
        self.ledger.forget()

    async def exchange(self, client: Any) -> None:
        from ..policies.budget import SLICES

        ledger = self.ledger
        request = ledger.outgoing(trio.current_time())
        if request is None:
            return
        keys = self.shared._keys
        reply = await self.script(
            keys=[f"{keys}budget:", f"{keys}budget:ack:{self.id}"],
            args=[
                str(request.seq),
                str(request.calls),
                str(request.retries),
                str(request.returned),
                str(request.returned_slice),
                str(request.want),
                repr(ledger.ratio),
                repr(self.reserve),
                str(max(1, round(self.ttl_s * 1000))),
                str(SLICES),
                str(_ANSWER_TTL_MS),
            ],
            client=client,
        )
        ledger.answered(request.seq, int(reply[0]), int(reply[1]), trio.current_time())


class _RateMember:
    """A RateLimit's lease and its exchange (``_lua.RATE``)."""

    def __init__(
        self, shared: RedisShared, per_second: float, capacity: float, max_wait_s: float
    ) -> None:
        self.shared = shared
        self.lease = TokenLease(per_second=per_second, capacity=capacity)
        self.max_wait_s = max_wait_s
        self.id = uuid.uuid4().hex
        self.script = shared._script(lua.RATE)

    def forget(self) -> None:
        self.lease.forget()

    def reserve(self, now: float, deadline: float) -> float:
        """The local bucket's contract (see ``RateLimit.reserve``), served from the lease."""
        lease = self.lease
        delay = lease.take(now, deadline, self.max_wait_s)
        if delay is None:
            if lease.satisfied:
                self.shared._poke()
            return -max(self.shared.interval_s, 1 / lease.per_second)
        return delay

    async def exchange(self, client: Any) -> None:
        lease = self.lease
        request = lease.outgoing()
        if request is None:
            return
        keys = self.shared._keys
        reply = await self.script(
            keys=[f"{keys}rate", f"{keys}rate:ack:{self.id}"],
            args=[
                str(request.seq),
                str(request.returned),
                str(request.want),
                repr(lease.capacity),
                repr(lease.per_second / 1000),
                repr(self.max_wait_s * 1000),
                str(_ANSWER_TTL_MS),
            ],
            client=client,
        )
        lease.answered(request.seq, int(reply[0]), float(reply[1]), trio.current_time())


@attrs.define(eq=False)
class _Batch:
    seq: int
    args: list[str]
    tools: list[str]
    sent_at: float


class _BreakerMember:
    """A breaker policy's per-tool counts and their exchange (``_lua.BREAKER``)."""

    BUCKETS = 10

    def __init__(self, shared: RedisShared, window_s: float) -> None:
        self.shared = shared
        self.bucket_ms = max(1, round(window_s * 1000 / self.BUCKETS))
        self.tools: dict[str, tuple[FleetCounts, _Circuit]] = {}
        self.id = uuid.uuid4().hex
        self.seq = 0
        self.inflight: _Batch | None = None
        self.offset_ms: float | None = None
        self.script = shared._script(lua.BREAKER)

    def track(self, circuit: _Circuit) -> FleetCounts:
        counts = FleetCounts()
        self.tools[circuit.tool_name] = (counts, circuit)
        return counts

    def forget(self) -> None:
        self.inflight, self.offset_ms = None, None
        for counts, _ in self.tools.values():
            counts.forget()

    async def exchange(self, client: Any) -> None:
        if not self.tools:
            return
        batch = self.inflight
        if batch is None:
            self.seq += 1
            offset = self.offset_ms
            args = [str(self.seq), str(self.bucket_ms), str(self.BUCKETS), str(_ANSWER_TTL_MS)]
            args.append("0" if offset is None else repr(offset))
            names = list(self.tools)
            for name in names:
                counts = self.tools[name][0]
                ok, failed = counts.take()
                since = "" if offset is None or counts.since == -math.inf else counts.since
                args += [name, str(ok), str(failed), "" if since == "" else repr(since * 1000)]
            batch = self.inflight = _Batch(self.seq, args, names, trio.current_time())
        keys = self.shared._keys
        reply = await self.script(
            keys=[f"{keys}cb:", f"{keys}cb:ack:{self.id}"], args=batch.args, client=client
        )
        self.inflight = None
        now = trio.current_time()
        self.offset_ms = float(reply[0]) - now * 1000
        for i, name in enumerate(batch.tools):
            counts, circuit = self.tools[name]
            if counts.since > batch.sent_at:
                continue  # closed or reset meanwhile: these totals are from before
            counts.calls, counts.failures = int(reply[1 + 2 * i]), int(reply[2 + 2 * i])
            circuit.consider_fleet(now)
