"""A throwaway redis-server on loopback: the demo's fleet and the benchmarks start one."""

from __future__ import annotations

import shutil
import socket

__all__ = ["free_port", "server_argv"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_argv(port: int, directory: str) -> list[str] | None:
    """The command of a redis-server on 127.0.0.1:``port`` that writes nothing to disk
    (no snapshots, no append-only file; ``directory`` for anything else), or None when
    redis-server is not on the PATH."""
    executable = shutil.which("redis-server")
    if executable is None:
        return None
    return [
        executable,
        *("--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no", "--dir", directory),
    ]
