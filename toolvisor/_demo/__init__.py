"""``toolvisor demo``: the seed's payment tool and two others against failing back ends.

Three tools run under one supervisor, each against a simulated back end that fails in
a pattern (a gateway outage, an API with a rate limit and a slow period, a database
failover). A stream of calls, duplicates included, goes to each; the view shows live,
per tool, what the policies do. Payments are idempotent with results in a SQLite file,
so a second run answers the payments the first one charged from the store, without
charging them again. Ctrl-C stops it early with the summary so far. With ``workers``
the calls go through that many ``toolvisor worker`` processes over Redis instead
(:mod:`.fleet`). See docs/cli.md.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs
import trio
import trio.lowlevel

from .._metrics_port import metrics_endpoint
from ..supervisor import IdempotencyStore, SQLiteStore, open_supervisor
from .backends import Database, PaymentGateway, SearchApi, Timeline
from .report import PAYMENT_RESEND_S, DemoReport, PaymentSummary, ToolSummary, Tracker, plural
from .tools import Backends, DemoTool, build_tools
from .view import MIN_WIDTH, LiveView, PlainView, StatsSource, View, layout_for, plain_summary

if TYPE_CHECKING:
    from ..events import Event

__all__ = [
    "DemoOptions",
    "DemoReport",
    "PaymentSummary",
    "ToolSummary",
    "check_db_path",
    "default_db_path",
    "plain_summary",
    "run_demo",
]

_DUPLICATE_RATE = {"process_payment": 0.25, "record_order": 0.2}
_DRAIN_S = 3.0  # after the duration: calls still running get this long (they have deadlines)


@attrs.frozen(kw_only=True)
class DemoOptions:
    """The demo's settings (the command-line options)."""

    duration: float = 15.0
    seed: int = 7
    db: Path
    plain: bool = False
    metrics_port: int | None = None  # serve Prometheus metrics on this port while running
    workers: int = 0  # > 0: the calls go through this many worker processes over Redis
    redis: str | None = None  # the workers' Redis (None: a redis-server of the demo's own)


def default_db_path() -> Path:
    """Where the demo keeps its SQLite file when ``--db`` is not given.

    The per-user data directory (``$XDG_DATA_HOME/toolvisor/demo.db``, by default
    ``~/.local/share/toolvisor/demo.db``; ``~/Library/Application Support/toolvisor`` on
    macOS; ``%LOCALAPPDATA%\\toolvisor`` on Windows), or ``./toolvisor-demo.db`` when that
    directory cannot be created.
    """
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    directory = base / "toolvisor"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path.cwd() / "toolvisor-demo.db"
    if not os.access(directory, os.W_OK):
        return Path.cwd() / "toolvisor-demo.db"
    return directory / "demo.db"


def check_db_path(path: Path) -> str | None:
    """Why ``path`` cannot hold the demo's SQLite store, or None if it can."""
    if path.is_dir():
        return f"--db {str(path)!r} is a directory; give a file path"
    parent = path.parent
    if not parent.is_dir():
        return f"--db {str(path)!r}: directory {str(parent)!r} does not exist"
    # WAL mode writes the -wal and -shm files next to the database.
    if not os.access(parent, os.W_OK):
        return f"--db {str(path)!r}: directory {str(parent)!r} is not writable"
    if path.exists() and not os.access(path, os.W_OK):
        return f"--db {str(path)!r} is not writable"
    try:
        conn = sqlite3.connect(path, timeout=1.0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"--db {str(path)!r} cannot be used as a SQLite database: {exc}"
    return None


#: How the demo sends one call: ``await send(tool, args, timeout)`` returns on success and
#: raises the call's error (``Supervisor.execute``, or the fleet's ``RemoteTally.send``).
Send = Callable[[str, Mapping[str, Any], float], Awaitable[object]]


async def _produce(
    send: Send,
    tool: DemoTool,
    callers: trio.Nursery,
    tracker: Tracker,
    end: float,
    rng: random.Random,
) -> None:
    """Send calls to ``tool`` at its rate until ``end``; resend some earlier ones."""
    name = tool.spec.tool_name
    duplicate_rate = _DUPLICATE_RATE.get(name, 0.0)
    resend_after = PAYMENT_RESEND_S if "transaction_id" in tool.make_args(0) else None
    sent: list[int] = []
    index = 0
    while trio.current_time() < end:
        if sent and rng.random() < duplicate_rate:
            which = rng.choice(sent[-40:])
        else:
            which, index = index, index + 1
            sent.append(which)
        callers.start_soon(_call, send, tool, which, tracker, end, resend_after)
        await trio.sleep(min(rng.expovariate(tool.rate), 4 / tool.rate))


async def _call(
    send: Send,
    tool: DemoTool,
    index: int,
    tracker: Tracker,
    end: float,
    resend_after: float | None,
) -> None:
    name = tool.spec.tool_name
    args = tool.make_args(index)
    started = trio.current_time()
    # send is execute() (not submit()): the summary checks that every call is counted
    # once, and execute() is the path whose counting every test of the call path covers.
    try:
        await send(name, args, tool.timeout)
    except Exception as exc:  # every failure is shown in the summary
        tracker.on_result(name, args, exc, trio.current_time() - started)
        if resend_after is not None and trio.current_time() + resend_after < end:
            await trio.sleep(resend_after)
            await _call(send, tool, index, tracker, end, None)
    else:
        tracker.on_result(name, args, None, trio.current_time() - started)


async def _watch(tools: Sequence[DemoTool], tracker: Tracker) -> None:
    """Note the back ends' phase changes and the adaptive breaker's threshold moves."""
    phases = {t.spec.tool_name: "normal" for t in tools}
    thresholds = {t.spec.tool_name: t.opens_after() for t in tools}
    while True:
        for t in tools:
            name = t.spec.tool_name
            phase = t.backend_state()
            if phase != phases[name]:
                phases[name] = phase
                tracker.note(name, f"back end: {phase}")
            rate = t.error_rate()
            threshold = t.opens_after()
            if rate is not None and threshold != thresholds[name]:
                tracker.note(
                    name,
                    f"adaptive: opens after {plural(threshold or 0, 'failure')} "
                    f"(was {thresholds[name]}; {rate:.0%} errors)",
                )
                thresholds[name] = threshold
        await trio.sleep(0.1)


async def _on_ctrl_c(stop: trio.CancelScope, interrupted: list[bool]) -> None:
    """On SIGINT (Ctrl-C): stop the calls, so the demo prints its summary so far."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            interrupted.append(True)
            stop.cancel()
            return


def _build(options: DemoOptions, t0: float) -> tuple[Backends, list[DemoTool], Tracker]:
    timeline = Timeline(t0, options.duration)
    backends = Backends(
        gateway=PaymentGateway(timeline, options.seed),
        api=SearchApi(timeline, options.seed),
        db=Database(timeline, options.seed),
    )
    tools = build_tools(backends, options.seed)
    return backends, tools, Tracker([t.spec.tool_name for t in tools], t0)


async def _drive(
    options: DemoOptions,
    view: View,
    source: StatsSource,
    send: Send,
    tools: Sequence[DemoTool],
    tracker: Tracker,
    events: trio.MemoryReceiveChannel[Event] | None,
) -> bool:
    """Send the calls and show them until the end (or Ctrl-C: then return True)."""
    interrupted: list[bool] = []
    async with trio.open_nursery() as background:
        if events is not None:
            background.start_soon(tracker.consume, events)
        background.start_soon(_watch, tools, tracker)
        background.start_soon(view.run, source, tools, tracker, options.duration)
        end = tracker.t0 + options.duration
        with trio.move_on_at(end + _DRAIN_S) as stop:
            if _catch_ctrl_c():
                background.start_soon(_on_ctrl_c, stop, interrupted)
            async with trio.open_nursery() as callers:
                for i, tool in enumerate(tools):
                    rng = random.Random(f"stream:{options.seed}:{i}")
                    callers.start_soon(_produce, send, tool, callers, tracker, end, rng)
        await trio.lowlevel.checkpoint()  # let the event consumer catch up
        background.cancel_scope.cancel()
    return bool(interrupted)


async def _run(options: DemoOptions, view: View, store: IdempotencyStore | None) -> DemoReport:
    if options.workers:
        return await _run_fleet(options, view)
    t0 = trio.current_time()
    backends, tools, tracker = _build(options, t0)
    if store is None:
        store = SQLiteStore(options.db)
    try:
        async with open_supervisor(idempotency_store=store, grace_s=1.0) as sup:
            for tool in tools:
                await sup.spawn(tool.spec, tool.fn)

            async def send(name: str, args: Mapping[str, Any], timeout: float) -> object:
                return await sup.execute(name, args, timeout=timeout)

            with metrics_endpoint(sup, options.metrics_port) as metrics:
                if metrics is not None:
                    print(f"toolvisor demo: metrics on {metrics.url}", file=sys.stderr, flush=True)
                async with sup.events(buffer=4096) as events:
                    interrupted = await _drive(options, view, sup, send, tools, tracker, events)
            view.close()
            summaries = tuple(
                tracker.summarise(sup.stats(t.spec.tool_name), t.policies, t.backend_attempts())
                for t in tools
            )
            dropped = sup.events_dropped
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
    return DemoReport(
        db_path=str(options.db),
        seed=options.seed,
        duration_s=options.duration,
        elapsed_s=trio.current_time() - t0,
        tools=summaries,
        payments=tracker.payments(backends.gateway.charged),
        events_dropped=dropped,
        interrupted=interrupted,
        outcomes=tuple(tracker.outcomes),
    )


async def _run_fleet(options: DemoOptions, view: View) -> DemoReport:
    """The demo's calls through ``options.workers`` worker processes (see :mod:`.fleet`)."""
    from ..remote import open_remote
    from ..remote._redis import redact
    from .fleet import RemoteTally, open_fleet

    async with (
        open_fleet(
            options.workers, options.redis, seed=options.seed, duration=options.duration
        ) as fleet,
        open_remote(fleet.url, namespace=fleet.namespace) as remote,
    ):
        t0 = trio.current_time()
        fleet.start(time.time())  # the workers' back ends play their story from now
        _, tools, tracker = _build(options, t0)
        for i, worker in enumerate(fleet.workers):
            tracker.note("workers", f"worker {i + 1} of {len(fleet.workers)} serving: {worker}")
        tally = RemoteTally(remote)
        interrupted = await _drive(options, view, tally, tally.send, tools, tracker, None)
        view.close()
        summaries = tuple(
            tracker.summarise(
                tally.stats(t.spec.tool_name), t.policies, tally.attempts[t.spec.tool_name]
            )
            for t in tools
        )
        workers = tally.workers(fleet.workers)
        unanswered = tally.unanswered
        where = f"RedisStore at {redact(fleet.url)} (namespace {fleet.namespace!r})"
    return DemoReport(
        db_path=where,
        seed=options.seed,
        duration_s=options.duration,
        elapsed_s=trio.current_time() - t0,
        tools=summaries,
        payments=tracker.payments(tally.ran_by_tx),
        events_dropped=0,
        interrupted=interrupted,
        outcomes=tuple(tracker.outcomes),
        workers=workers,
        unanswered=unanswered,
    )


def _catch_ctrl_c() -> bool:
    """Whether this run handles SIGINT itself (only the main thread can, and only once)."""
    return threading.current_thread() is threading.main_thread()


def run_demo(
    options: DemoOptions,
    *,
    out: TextIO | None = None,
    clock: trio.abc.Clock | None = None,
    store: IdempotencyStore | None = None,
    view: View | None = None,
) -> DemoReport:
    """Run the demo to its end, print its summary, return the report.

    Args:
        options: duration, seed, database file and view.
        out: where to print (default ``sys.stdout``); the live view needs a terminal,
            so anything that is not one gets the plain view.
        clock: a trio clock (tests pass a ``MockClock``).
        store: the idempotency store (default: ``SQLiteStore(options.db)``). With a
            MockClock use a MemoryStore: SQLite's worker thread lets the clock jump.
        view: how to show the progress and the summary (default: the live table on a
            terminal wide enough, else plain lines).
    """
    if not (math.isfinite(options.duration) and options.duration > 0):
        raise ValueError(f"duration must be > 0 seconds, got {options.duration!r}")
    if options.workers < 0:
        raise ValueError(
            f"workers must be at least 1 (0: in this process), got {options.workers!r}"
        )
    if options.workers and clock is not None:
        raise ValueError("worker processes run on the real clock: no clock= with workers")
    stream = sys.stdout if out is None else out
    if view is None:
        view = _default_view(options, stream)
    view.intro(_intro(options))
    report = trio.run(_run, options, view, store, clock=clock)
    view.summary(report)
    return report


def _default_view(options: DemoOptions, stream: TextIO) -> View:
    console = None
    if not options.plain and stream.isatty():
        from rich.console import Console

        console = Console(file=stream)
    if console is None or layout_for(console.size.width) == "plain":
        view = PlainView(stream)
        if console is not None:
            print(
                f"(a {console.size.width}-column terminal: plain log lines; the live table "
                f"needs {MIN_WIDTH} columns)",
                file=stream,
            )
        return view
    return LiveView(console)


def _intro(options: DemoOptions) -> Sequence[str]:
    if options.workers:
        from ..remote._redis import redact

        redis = "a redis-server of its own" if options.redis is None else redact(options.redis)
        store = (
            f"calls go through {plural(options.workers, 'worker process', 'worker processes')} "
            f"over {redis}; idempotency store: Redis, shared by the workers"
        )
    else:
        store = f"idempotency store (SQLite): {options.db}"
    return [
        f"toolvisor demo: {options.duration:g} s, seed {options.seed}",
        store,
        "tools: process_payment (card gateway with an outage), search_catalog (partner "
        "API with a rate limit and a slow period), record_order (database with a failover)",
    ]
