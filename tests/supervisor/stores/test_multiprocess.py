"""Two OS processes race on the same keys: exactly one claim wins per key.

Real processes here, since that is what is tested: both workers connect, report ready,
and start on the same signal; one claims the 200 keys in order, the other in reverse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("race_worker.py")
REPO = Path(__file__).resolve().parents[3]
N_KEYS = 200


def race(kind: str, target: str, prefix: str = "") -> list[list[list[object]]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), kind, target, prefix, tag, str(N_KEYS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for tag in ("p1", "p2")
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            for p in procs:
                p.kill()
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"worker did not start: {line!r}\n{err}")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs


def check_one_winner_per_key(outputs: list[list[list[object]]]) -> None:
    first, second = outputs
    assert len(first) == len(second) == N_KEYS
    for i, ((won1, owner1), (won2, owner2)) in enumerate(zip(first, second, strict=True)):
        assert won1 != won2, f"key-{i}: both or neither claimed it"
        winner = f"p1-{i}" if won1 else f"p2-{i}"
        assert owner1 == owner2 == winner
    wins = sum(bool(won) for won, _ in first)
    print(f"process 1 won {wins} keys, process 2 won {N_KEYS - wins}")


@pytest.mark.slow
def test_sqlite_file_two_processes(tmp_path: Path) -> None:
    check_one_winner_per_key(race("sqlite", str(tmp_path / "idem.db")))


@pytest.mark.slow
def test_redis_two_processes(redis_url: str, redis_prefix: str) -> None:
    check_one_winner_per_key(race("redis", redis_url, redis_prefix))
