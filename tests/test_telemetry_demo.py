"""``toolvisor demo --metrics-port``: /metrics scraped over loopback while the demo runs."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from toolvisor import MemoryStore
from toolvisor._demo import DemoOptions, run_demo
from toolvisor._local_redis import free_port
from toolvisor.cli import main

ROOT = Path(__file__).resolve().parents[1]

# The names docs/telemetry.md documents (families: histograms without _bucket/_count).
NAMES = {
    "toolvisor_call_duration_seconds",
    "toolvisor_attempt_duration_seconds",
    "toolvisor_events",
    "toolvisor_breaker_state",
    "toolvisor_in_flight",
    "toolvisor_queued",
}


def scrape_during(command: list[str], port: int) -> tuple[dict[str, object], str]:
    """Run ``command``; scrape its /metrics until every documented name is there."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    families: dict[str, object] = {}
    try:
        give_up = time.monotonic() + 20
        while time.monotonic() < give_up and proc.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            assert response.status_code == 200
            families = {f.name: f for f in text_string_to_metric_families(response.text)}
            if families.keys() >= NAMES:
                break
            time.sleep(0.2)
    finally:
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return families, err


@pytest.mark.slow
def test_demo_serves_metrics_while_it_runs(tmp_path: Path) -> None:
    port = free_port()
    families, err = scrape_during(
        [
            sys.executable,
            "-m",
            "toolvisor",
            "demo",
            "--plain",
            "--duration",
            "3",
            "--db",
            str(tmp_path / "demo.db"),
            "--metrics-port",
            str(port),
        ],
        port,
    )
    assert families.keys() >= NAMES, sorted(families)
    assert f"http://127.0.0.1:{port}/metrics" in err


@pytest.mark.slow
def test_demo_options_metrics_port_serves_metrics(tmp_path: Path) -> None:
    """The same endpoint through run_demo() with a memory store."""
    port = free_port()
    script = (
        "from pathlib import Path\n"
        "from toolvisor import MemoryStore\n"
        "from toolvisor._demo import DemoOptions, run_demo\n"
        f"run_demo(DemoOptions(duration=3, db=Path({str(tmp_path / 'd.db')!r}), plain=True,"
        f" metrics_port={port}), store=MemoryStore())\n"
    )
    families, _err = scrape_during([sys.executable, "-c", script], port)
    assert families.keys() >= NAMES, sorted(families)
    duration = families["toolvisor_call_duration_seconds"]
    tools = {s.labels["tool"] for s in duration.samples}  # type: ignore[attr-defined]
    assert tools == {"process_payment", "search_catalog", "record_order"}


def test_metrics_port_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--metrics-port", "70000"]) == 2
    assert "must be a TCP port in 0-65535, got '70000'" in capsys.readouterr().err
    assert main(["demo", "--metrics-port", "http"]) == 2
    assert "expected a TCP port number, got 'http'" in capsys.readouterr().err


def test_metrics_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        options = DemoOptions(duration=1, db=tmp_path / "x.db", plain=True, metrics_port=port)
        with pytest.raises(OSError, match=f"--metrics-port {port}: cannot listen on it"):
            run_demo(options, out=io.StringIO(), store=MemoryStore())
