"""``toolvisor demo --workers N``: the calls go through N worker processes over Redis.

The runs are real: a redis-server the demo starts on a free port, two ``toolvisor
worker`` OS processes, real time (a few seconds each, hence ``slow``).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolvisor._demo import DemoOptions, run_demo
from toolvisor.cli import main

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs the redis-server executable"
)


def _pid(worker_id: str) -> int:
    return int(worker_id.rsplit("-", 2)[-2])  # HOST-PID-xxxxxx


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@needs_redis_server
def test_two_workers_answer_the_demos_calls(tmp_path: Path) -> None:
    out = io.StringIO()
    options = DemoOptions(duration=3.0, db=tmp_path / "unused.db", plain=True, workers=2)
    report = run_demo(options, out=out)
    text = out.getvalue()

    assert len(report.workers) == 2
    assert all(n > 0 for _, n in report.workers), report.workers  # both took part
    calls = sum(t.calls for t in report.tools)
    assert calls > 30
    assert sum(n for _, n in report.workers) + report.unanswered == calls
    assert report.unanswered < calls / 10
    for t in report.tools:
        assert t.consistent, t
        assert t.successes > 0, t
    payments = report.payments
    assert payments.double_charges == 0  # the workers share one RedisStore
    assert payments.duplicate_hits > 0  # resends answered from the cache, by either worker

    answered = ", ".join(f"{w} {n}" for w, n in report.workers)
    assert f"calls answered by each worker: {answered}; without a reply:" in text
    assert re.search(r"worker 2 of 2 serving: \S+-\d+-\w+", text)
    # Stopped at the end: the workers (SIGTERM) and the demo's own redis-server.
    for worker, _ in report.workers:
        assert not _alive(_pid(worker)), worker
    url = report.db_path.split("RedisStore at ", 1)[1].split(" ", 1)[0]
    assert not _listening(url)


@pytest.mark.slow
@needs_redis_server
def test_ctrl_c_stops_the_workers_and_prints_the_summary_so_far(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    demo = subprocess.Popen(
        [sys.executable, "-m", "toolvisor", "demo", "--workers", "2", "--duration", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    assert demo.stdout is not None
    workers: list[int] = []
    deadline = time.monotonic() + 30
    for line in demo.stdout:
        found = re.search(r"serving: \S+-(\d+)-\w+", line)
        if found:
            workers.append(int(found.group(1)))
        if len(workers) == 2 or time.monotonic() > deadline:
            break
    assert len(workers) == 2
    time.sleep(1.0)
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=30)
    assert demo.returncode == 130
    assert "interrupted (Ctrl-C)" in rest
    assert "calls answered by each worker:" in rest
    assert not any(_alive(pid) for pid in workers)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers: must be at least 1, got '0'"),
        (["--workers", "two"], "--workers: expected a whole number, got 'two'"),
        (["--redis", "redis://localhost:6379/0"], "give --workers N with it"),
        (["--workers", "2", "--redis", "localhost:6379"], "--redis must be a redis://"),
        (["--workers", "2", "--mcp"], "--workers and --mcp cannot be combined"),
    ],
)
def test_bad_workers_options_are_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--db", str(tmp_path / "d.db"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_workers_without_redis_server_or_url_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["demo", "--db", str(tmp_path / "d.db"), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--workers needs redis-server on the PATH" in err
    assert "or give --redis URL" in err
