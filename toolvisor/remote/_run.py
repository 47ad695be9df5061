"""Run a worker process: its supervisor, its store, its signals."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable

import trio

from .._metrics_port import MetricsPortError, metrics_endpoint
from .._target import Target, spawn_target
from ..supervisor import IdempotencyStore, RedisStore, open_supervisor
from ._redis import open_client, redact, single_error
from ._wire import Keys
from ._worker import Worker, WorkerOptions

__all__ = ["MetricsPortError", "run_worker"]

log = logging.getLogger("toolvisor.remote")


def _module_store(target: Target) -> IdempotencyStore | None:
    module = target.module
    store = getattr(module, "idempotency_store", None)
    if module is None or store is None:
        return None
    for method in ("claim", "complete", "release", "get"):
        if not callable(getattr(store, method, None)):
            raise TypeError(
                f"{module.__name__}.idempotency_store is a {type(store).__name__}, "
                "not an idempotency store (it has no "
                f"{method}() method)"
            )
    return store  # type: ignore[no-any-return]


async def run_worker(
    target: Target,
    url: str,
    options: WorkerOptions,
    *,
    on_ready: Callable[[Worker], None] | None = None,
    handle_signals: bool = True,
    metrics_port: int | None = None,
) -> Worker:
    """Serve ``target``'s tools from the Redis at ``url`` until SIGTERM/SIGINT; return the worker.

    The supervisor's idempotency store is a :class:`~toolvisor.RedisStore` on the same
    URL, under the namespace's prefix, so every worker of the fleet shares it; a module
    that defines ``idempotency_store`` next to its tools gives its own instead. Every
    idempotent tool's keys are claimed there, whether its spec sets ``persist_result``
    or not (on one process, ``persist_result=False`` keeps them in its memory).

    ``metrics_port`` (the ``prometheus`` extra): serve the supervisor's metrics on
    ``http://127.0.0.1:PORT/metrics`` while the worker runs (0: any free port; the
    worker's ``metrics_url`` says which), as ``toolvisor.telemetry.serve_prometheus``.

    Raises:
        MetricsPortError: ``metrics_port`` cannot be listened on.
        ImportError: ``metrics_port`` is given without the ``prometheus`` extra.
    """
    try:
        return await _run(target, url, options, on_ready, handle_signals, metrics_port)
    except BaseExceptionGroup as group:
        one = single_error(group)
        if one is not None:
            raise one from one.__cause__
        raise


async def _run(
    target: Target,
    url: str,
    options: WorkerOptions,
    on_ready: Callable[[Worker], None] | None,
    handle_signals: bool,
    metrics_port: int | None,
) -> Worker:
    keys = Keys(options.namespace)
    own = _module_store(target)
    store = own if own is not None else RedisStore(url, prefix=keys.idem_prefix)
    try:
        async with open_client(url) as client, open_supervisor(idempotency_store=store) as sup:
            # The fleet shares its keys: an idempotent tool's calls, whichever worker
            # takes them, are claimed in this store even without persist_result.
            sup._idem.shared = True
            await spawn_target(sup, target)
            worker = Worker(client, sup, options)
            with metrics_endpoint(sup, metrics_port) as metrics:
                worker.metrics_url = None if metrics is None else metrics.url
                await _serve(worker, on_ready, handle_signals, url, options)
    finally:
        if own is None:
            await store.aclose()
    return worker


async def _serve(
    worker: Worker,
    on_ready: Callable[[Worker], None] | None,
    handle_signals: bool,
    url: str,
    options: WorkerOptions,
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.serve)
        if handle_signals:
            nursery.start_soon(_stop_on_signal, worker)
        log.info(
            "worker %s serving %s from %s (namespace %r)",
            worker.worker_id,
            ", ".join(worker.tools),
            redact(url),
            options.namespace,
        )
        if on_ready is not None:
            on_ready(worker)
        await _wait_stopped(worker, nursery)


async def _stop_on_signal(worker: Worker) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            print(
                f"toolvisor worker {worker.worker_id}: {signal.Signals(signum).name}, "
                f"stopping ({worker.held} calls held)",
                file=sys.stderr,
                flush=True,
            )
            worker.stop()
            return


async def _wait_stopped(worker: Worker, nursery: trio.Nursery) -> None:
    # serve() returns once stopped and drained; then the signal task has nothing to do.
    await worker.stopped.wait()
    nursery.cancel_scope.cancel()
