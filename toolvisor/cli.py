"""The ``toolvisor`` command: ``demo``, ``schema``, ``mcp`` and ``bench``.

Every error of the user's making (a bad option, a module that does not import, a path
that cannot be written) prints one line on stderr and exits non-zero, without a
traceback: exit status 2 for bad usage, 1 for a failure while running.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import math
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .errors import ToolvisorError

__all__ = ["main"]

_PROG = "toolvisor"

_DESCRIPTION = """\
Run tools as supervised trio actors with circuit breakers, retries, timeouts,
bulkheads and idempotency.
"""

_EPILOG = "Exit status: 0 on success, 1 when a command fails, 2 on bad usage, 130 on Ctrl-C."


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class CommandFailedError(Exception):
    """The command ran and failed (e.g. the user's factory raised): one line, exit status 1."""


def _a(name: str) -> str:
    """``name`` with its indefinite article: "an int", "a str"."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port in 0-65535, got {text!r}")
    return value


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    if value > 24 * 3600:
        raise argparse.ArgumentTypeError(f"must be at most one day (86400 s), got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _indent(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 prints one line), got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _build_parser() -> _Parser:
    parser = _Parser(
        prog=_PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"toolvisor {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, title="commands"
    )

    demo = commands.add_parser(
        "demo",
        help="run three tools against failing back ends, live (about 15 s)",
        description=(
            "Spawn a payment processor (the one of the design document toolvisor's API "
            "was built from: docs/origins.md), a rate-limited partner API and an orders "
            "database against simulated back ends that fail in patterns; send calls, "
            "duplicates included; show per tool what the policies do; end with a summary "
            "(Ctrl-C: the summary so far, exit status 130). Payments are idempotent and "
            "stored in a SQLite file: run it twice with the same --db and the second run "
            "answers them from the store."
        ),
    )
    demo.add_argument(
        "--duration",
        type=_duration,
        default=15.0,
        metavar="SECONDS",
        help="how long calls are sent (default 15)",
    )
    demo.add_argument(
        "--seed",
        type=_integer,
        default=7,
        help="seeds the call stream and the back ends' failures (default 7); payments "
        "have the same transaction ids for the same seed on every run",
    )
    demo.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="the SQLite file of the idempotency store (default: the per-user data "
        "directory, e.g. ~/.local/share/toolvisor/demo.db, else ./toolvisor-demo.db)",
    )
    demo.add_argument(
        "--mcp",
        action="store_true",
        help="serve the demo's three tools to an agent over MCP (stdio) instead of running "
        "the live demo; the back ends' failures play out over the first --duration seconds",
    )
    demo.add_argument(
        "--plain",
        action="store_true",
        help="plain log lines instead of the live table (automatic when stdout is not a terminal)",
    )
    demo.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve the tools' metrics for Prometheus on http://127.0.0.1:PORT/metrics while "
        "the demo runs (needs toolvisor[prometheus]; see docs/telemetry.md)",
    )
    demo.add_argument(
        "--workers",
        type=_count,
        default=None,
        metavar="N",
        help="send the calls through N `toolvisor worker` processes over Redis (a "
        "redis-server of the demo's own on a free port unless --redis is given); the "
        "summary shows the calls each worker answered",
    )
    demo.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="with --workers: the Redis the workers and the demo use (redis://host:port/db) "
        "instead of a redis-server of the demo's own",
    )
    demo.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PATH.png",
        help="at the end, write a figure of calls per second by outcome and breaker state "
        "over time for each tool (needs toolvisor[plot])",
    )

    schema = commands.add_parser(
        "schema",
        help="print function-calling JSON schemas (schema MODULE:ATTR)",
        description=(
            "Import MODULE and print the function-calling schemas of ATTR: a ToolSpec "
            "(one object), a list/tuple/dict of ToolSpecs or a Supervisor (a JSON array). "
            "ATTR may also be a function taking no arguments (sync or async) returning one "
            "of those. The current directory is importable, as with python -m."
        ),
    )
    schema.add_argument("target", metavar="MODULE:ATTR", help="e.g. myapp.tools:payment_spec")
    schema.add_argument(
        "--indent", type=_indent, default=2, help="JSON indentation (default 2; 0 for one line)"
    )

    mcp = commands.add_parser(
        "mcp",
        help="serve tools over MCP",
        description=(
            "Import MODULE and serve the tools ATTR names over MCP, each call run through "
            "its spec's policies (breaker, retries, deadlines, idempotency). ATTR is a "
            "list, tuple or dict of (spec, fn) pairs, or an async function setup(sup) "
            "that spawns the tools. The current directory is importable, as with "
            "python -m. Over stdio, stdout carries the protocol: logs go to stderr."
        ),
    )
    mcp.add_argument("target", metavar="MODULE:ATTR", help="e.g. myapp.tools:TOOLS")
    mcp.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio (the default: an MCP client starts this command) or http "
        "(streamable HTTP at http://HOST:PORT/mcp)",
    )
    mcp.add_argument("--host", default="127.0.0.1", help="HTTP: address to listen on")
    mcp.add_argument(
        "--port", type=_port, default=8000, help="HTTP: port to listen on (default 8000)"
    )
    mcp.add_argument(
        "--timeout",
        type=_duration,
        default=None,
        metavar="SECONDS",
        help="overall deadline of each call (default: only the tools' own timeout_s)",
    )
    mcp.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="keep idempotent results in this SQLite file (default: in memory)",
    )
    mcp.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve the tools' metrics for Prometheus on http://127.0.0.1:PORT/metrics while "
        "serving (0: any free port; needs toolvisor[prometheus]; see docs/telemetry.md)",
    )

    worker = commands.add_parser(
        "worker",
        help="serve tools to remote callers over Redis Streams",
        description=(
            "Run a supervisor with the tools of MODULE:ATTR (a list/tuple/dict of "
            "(spec, fn) pairs, or an async setup(sup) that spawns them) and consume their "
            "calls from Redis: every worker of a namespace shares the work of its tools. "
            "Callers use toolvisor.open_remote(URL, namespace=NS). SIGTERM or Ctrl-C stops "
            "reading, lets held calls finish (--grace-s), hands back the rest and exits 0."
        ),
    )
    worker.add_argument("target", metavar="MODULE:ATTR", help="e.g. myapp.tools:TOOLS")
    worker.add_argument(
        "--redis", required=True, metavar="URL", help="e.g. redis://localhost:6379/0"
    )
    worker.add_argument(
        "--namespace", default="toolvisor", help="the fleet's namespace (default toolvisor)"
    )
    worker.add_argument(
        "--concurrency",
        type=_count,
        default=64,
        metavar="N",
        help="most calls this worker holds at once (default 64)",
    )
    worker.add_argument(
        "--claim-idle-s",
        type=_duration,
        default=30.0,
        metavar="S",
        help="claim calls held this long by a dead worker (default 30)",
    )
    worker.add_argument(
        "--max-deliveries",
        type=_count,
        default=5,
        metavar="K",
        help="after K deliveries without an answer a call goes to the dead letters (default 5)",
    )
    worker.add_argument(
        "--grace-s",
        type=_duration,
        default=10.0,
        metavar="S",
        help="on SIGTERM, how long held calls may take before they are handed back (default 10)",
    )
    worker.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve the worker's tool metrics for Prometheus on http://127.0.0.1:PORT/metrics "
        "(0: any free port; needs toolvisor[prometheus]; see docs/telemetry.md)",
    )

    commands.add_parser(
        "bench",
        help="run the benchmark suite (options: toolvisor bench --help)",
        add_help=False,
    )
    return parser


# --------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import DemoOptions, check_db_path, default_db_path, run_demo
    from ._demo.fleet import FleetError

    _check_workers(args)
    db = (args.db if args.db is not None else default_db_path()).expanduser()
    problem = check_db_path(db)
    if problem is not None:
        raise UsageError(problem)
    if args.mcp:
        try:
            from . import mcp as _needs_the_mcp_extra  # noqa: F401
        except ModuleNotFoundError as exc:
            raise UsageError(
                f"serving over MCP needs {exc.name!r}: pip install 'toolvisor[mcp]'"
            ) from None
        from ._demo.mcp import serve_demo_mcp

        try:
            serve_demo_mcp(db=db.resolve(), seed=args.seed, duration=args.duration)
        except KeyboardInterrupt:
            return 130
        return 0
    if args.metrics_port is not None:
        _require_prometheus()
    if args.plot is not None:
        from ._demo.plot import PlotDependencyError, require_matplotlib

        try:
            require_matplotlib()  # before the run, not after it
        except PlotDependencyError as exc:
            raise UsageError(str(exc)) from None
    options = DemoOptions(
        duration=args.duration,
        seed=args.seed,
        db=db.resolve(),
        plain=args.plain,
        metrics_port=args.metrics_port,
        workers=args.workers or 0,
        redis=args.redis,
    )
    try:
        report = run_demo(options)
        if args.plot is not None:
            from ._demo.plot import write_plot

            try:
                write_plot(report, args.plot)
            except OSError as exc:
                raise CommandFailedError(
                    f"--plot {args.plot}: cannot write it: {exc.strerror}"
                ) from None
            print(f"{_PROG}: plot written to {args.plot}", file=sys.stderr)
    except FleetError as exc:
        raise CommandFailedError(str(exc)) from None
    except BaseException as exc:
        # Ctrl-C before the demo's own handler is installed or after it is gone (start-up,
        # closing the store): one line, no traceback. The demo itself prints its summary.
        if not _only_keyboard_interrupts(exc):
            raise
        print(f"{_PROG}: demo interrupted", file=sys.stderr)
        return 130
    return 130 if report.interrupted else 0


def _check_workers(args: argparse.Namespace) -> None:
    """``--workers`` and ``--redis``: what they need, before anything starts."""
    if args.workers is None:
        if args.redis is not None:
            raise UsageError("--redis is the workers' Redis: give --workers N with it")
        return
    for option, given in (("--mcp", args.mcp), ("--metrics-port", args.metrics_port is not None)):
        if given:
            raise UsageError(
                f"--workers and {option} cannot be combined (the tools run in the workers)"
            )
    if args.plot is not None:
        raise UsageError(
            "--workers and --plot cannot be combined (each worker keeps its own breakers)"
        )
    if args.redis is not None and not args.redis.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError(
            f"--redis must be a redis://, rediss:// or unix:// URL, got {args.redis!r}"
        )
    try:
        import coredis  # noqa: F401
    except ImportError:
        raise UsageError("--workers needs coredis: pip install 'toolvisor[remote]'") from None
    if args.redis is None and shutil.which("redis-server") is None:
        raise UsageError(
            "--workers needs redis-server on the PATH to start one (install Redis 6.2 or "
            "newer), or give --redis URL"
        )


def _only_keyboard_interrupts(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_keyboard_interrupts(e) for e in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


# --------------------------------------------------------------------------- schema


def _load(target: str) -> Any:
    from ._target import TargetError, import_attr

    try:
        return import_attr(target)
    except TargetError as exc:
        raise UsageError(str(exc)) from None


def _call_factory(target: str, value: Any) -> Any:
    try:
        if inspect.iscoroutinefunction(value):
            import trio

            return trio.run(value)
        return value()
    except Exception as exc:
        raise CommandFailedError(f"calling {target} failed: {type(exc).__name__}: {exc}") from None


def _schemas(target: str, value: Any, *, called: bool = False) -> Any:
    from .spec import ToolSpec
    from .supervisor import Supervisor, ToolRef

    if isinstance(value, ToolSpec):
        return value.to_function_schema()
    if isinstance(value, Supervisor):
        return list(value.function_schemas().values())
    if isinstance(value, ToolRef):
        return dict(value.function_schema)
    items: list[Any] | None = None
    if isinstance(value, Mapping):
        items = list(value.values())
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    if items is not None:
        bad = [x for x in items if not isinstance(x, ToolSpec)]
        if not bad:
            return [spec.to_function_schema() for spec in items]
        raise UsageError(
            f"{target} holds {_a(type(bad[0]).__name__)}, not a ToolSpec; give a ToolSpec, "
            "a list of ToolSpecs or a Supervisor"
        )
    if callable(value) and not called and not isinstance(value, type):
        return _schemas(target, _call_factory(target, value), called=True)
    what = "returned" if called else "is"
    raise UsageError(
        f"{target} {what} {_a(type(value).__name__)}, not a ToolSpec, a list of ToolSpecs or a "
        "Supervisor"
    )


def _cmd_schema(args: argparse.Namespace) -> int:
    schemas = _schemas(args.target, _load(args.target))
    indent = args.indent if args.indent > 0 else None
    print(json.dumps(schemas, indent=indent, ensure_ascii=False))
    return 0


# --------------------------------------------------------------------------- mcp


def _cmd_mcp(args: argparse.Namespace) -> int:
    import trio

    from ._metrics_port import metrics_endpoint
    from ._target import TargetError, load_target, spawn_target
    from .supervisor import SQLiteStore, open_supervisor

    try:
        target = load_target(args.target)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    try:
        from . import mcp as tv_mcp
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"serving over MCP needs {exc.name!r}: pip install 'toolvisor[mcp]'"
        ) from None
    if args.db is not None:
        db = args.db.expanduser()
        if db.is_dir() or not db.parent.is_dir():
            raise UsageError(f"--db {str(args.db)!r}: no such directory for the SQLite file")
    if args.metrics_port is not None:
        _require_prometheus()

    async def serve() -> None:
        store = SQLiteStore(str(args.db.expanduser())) if args.db is not None else None
        try:
            async with open_supervisor(idempotency_store=store) as sup:
                names = await spawn_target(sup, target)
                with metrics_endpoint(sup, args.metrics_port) as metrics:
                    if metrics is not None:
                        print(f"{_PROG} mcp: metrics on {metrics.url}", file=sys.stderr)
                    if args.transport == "stdio":
                        listing = ", ".join(names)
                        print(f"{_PROG} mcp: serving {listing} over stdio", file=sys.stderr)
                        await tv_mcp.serve_stdio(sup, timeout=args.timeout)
                        return
                    async with trio.open_nursery() as nursery:
                        binds = await nursery.start(
                            functools.partial(
                                tv_mcp.serve_http,
                                sup,
                                host=args.host,
                                port=args.port,
                                timeout=args.timeout,
                            )
                        )
                        where = ", ".join(f"{b}/mcp" for b in binds)
                        listing = ", ".join(names)
                        print(f"{_PROG} mcp: serving {listing} at {where}", file=sys.stderr)
        finally:
            if store is not None:
                await store.aclose()

    try:
        trio.run(serve)
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:  # one failure out of the nurseries: report it alone
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise
    return 0


def _require_prometheus() -> None:
    """``--metrics-port`` needs the ``prometheus`` extra: a usage error before starting."""
    try:
        from .telemetry import require_prometheus

        require_prometheus()
    except ImportError as exc:
        raise UsageError(f"--metrics-port: {exc}") from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


# --------------------------------------------------------------------------- worker


def _cmd_worker(args: argparse.Namespace) -> int:
    import logging

    import trio

    from ._metrics_port import MetricsPortError
    from ._target import TargetError, load_target
    from .remote import WorkerOptions, run_worker
    from .remote._redis import redact, redis_errors
    from .remote._wire import check_namespace

    try:
        check_namespace(args.namespace)
    except ValueError as exc:
        raise UsageError(f"--namespace: {exc}") from None
    if not args.redis.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError(
            f"--redis must be a redis://, rediss:// or unix:// URL, got {args.redis!r}"
        )
    try:
        import coredis  # noqa: F401
    except ImportError:
        raise UsageError("the worker needs coredis: pip install 'toolvisor[remote]'") from None
    if args.metrics_port is not None:
        _require_prometheus()
    try:
        target = load_target(args.target)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    options = WorkerOptions(
        namespace=args.namespace,
        concurrency=args.concurrency,
        claim_idle_s=args.claim_idle_s,
        max_deliveries=args.max_deliveries,
        grace_s=args.grace_s,
    )
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    def ready(worker: Any) -> None:
        print(
            f"toolvisor worker {worker.worker_id}: serving {', '.join(worker.tools)} "
            f"from {redact(args.redis)} (namespace {args.namespace!r}, "
            f"concurrency {args.concurrency})",
            file=sys.stderr,
            flush=True,
        )
        if worker.metrics_url is not None:
            print(
                f"toolvisor worker {worker.worker_id}: metrics on {worker.metrics_url}",
                file=sys.stderr,
                flush=True,
            )

    try:
        serve = functools.partial(run_worker, on_ready=ready, metrics_port=args.metrics_port)
        worker = trio.run(serve, target, args.redis, options)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    except MetricsPortError as exc:  # an OSError, but not Redis's
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1
    except redis_errors() as exc:
        print(f"{_PROG}: error: Redis at {redact(args.redis)}: {exc}", file=sys.stderr)
        return 1
    print(
        f"toolvisor worker {worker.worker_id}: stopped ({worker.answered} calls answered)",
        file=sys.stderr,
        flush=True,
    )
    return 0


# --------------------------------------------------------------------------- bench


def _cmd_bench(argv: Sequence[str]) -> int:
    try:
        bench = importlib.import_module("toolvisor._bench")
    except ModuleNotFoundError as exc:
        if exc.name in ("toolvisor._bench", "toolvisor"):
            print(
                f"{_PROG}: error: the benchmark suite (toolvisor._bench) is not part of this "
                "installation",
                file=sys.stderr,
            )
            return 2
        print(
            f"{_PROG}: error: the benchmarks need {exc.name!r}: pip install 'toolvisor[bench]'",
            file=sys.stderr,
        )
        return 2
    status = bench.main(list(argv))
    return int(status) if status is not None else 0


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``toolvisor`` command with ``argv`` (default ``sys.argv[1:]``); return its status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    if args_list[:1] == ["bench"]:
        return _cmd_bench(args_list[1:])
    try:
        if not args_list:
            parser.print_help()
            return 0
        try:
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # --help and --version: report, do not exit the caller
            return exc.code if isinstance(exc.code, int) else 0
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "schema":
            return _cmd_schema(args)
        if args.command == "mcp":
            return _cmd_mcp(args)
        if args.command == "worker":
            return _cmd_worker(args)
    except UsageError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except CommandFailedError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1
    except ToolvisorError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
