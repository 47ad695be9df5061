"""A Redis server for the RedisStore figures: ``TOOLVISOR_REDIS_URL`` or a throwaway one."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from .._local_redis import free_port, server_argv

__all__ = ["redis_server"]


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str | None, str]]:
    """Yield ``(url, how)``; url is None when no server is reachable (``how`` says why).

    Uses ``TOOLVISOR_REDIS_URL`` when set; otherwise starts ``redis-server`` (when on
    PATH) on a free loopback port without persistence, and stops it on exit.
    """
    url = os.environ.get("TOOLVISOR_REDIS_URL")
    if url:
        yield url, "TOOLVISOR_REDIS_URL"
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="toolvisor-bench-redis-") as workdir:
        argv = server_argv(port, workdir)
        if argv is None:
            yield None, "skipped: no redis-server on PATH and no TOOLVISOR_REDIS_URL"
            return
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10.0
            up = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), 0.2):
                        up = True
                        break
                except OSError:
                    time.sleep(0.05)
            if up:
                yield f"redis://127.0.0.1:{port}/0", f"throwaway redis-server on port {port}"
            else:
                yield None, "skipped: the throwaway redis-server did not start"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
