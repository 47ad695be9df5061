"""The ``--metrics-port`` of toolvisor's commands (``demo``, ``worker``, ``mcp``): a
Prometheus ``/metrics`` endpoint of one supervisor while the command runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .supervisor import Supervisor
    from .telemetry import MetricsServer

__all__ = ["MetricsPortError", "metrics_endpoint"]


class MetricsPortError(OSError):
    """The metrics port cannot be listened on (in use, or not allowed): the caller's
    choice of port, not a failure of the service the command talks to."""


@contextlib.contextmanager
def metrics_endpoint(sup: Supervisor, port: int | None) -> Iterator[MetricsServer | None]:
    """``sup``'s metrics served on ``port`` inside the block (None: no endpoint, None
    yielded); stopped when the block ends, however it ends.

    Raises:
        MetricsPortError: ``port`` cannot be listened on.
        ImportError: the ``prometheus`` extra is not installed.
    """
    if port is None:
        yield None
        return
    from .telemetry import serve_prometheus

    try:
        server = serve_prometheus(sup, port)
    except OSError as exc:
        raise MetricsPortError(
            f"--metrics-port {port}: cannot listen on it: {exc.strerror or exc}"
        ) from exc
    try:
        yield server
    finally:
        server.close()
