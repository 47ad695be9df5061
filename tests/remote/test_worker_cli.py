"""``toolvisor worker``: bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import pytest

from toolvisor.cli import main

OK = ["worker", "remote_tools:TOOLS", "--redis", "redis://h"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["worker", "remote_tools:TOOLS"], "--redis"),
        (["worker", "remote_tools", "--redis", "redis://h"], "expected MODULE:ATTR"),
        (["worker", "no_such_mod:X", "--redis", "redis://h"], "no such module"),
        (["worker", "remote_tools:NOPE", "--redis", "redis://h"], "no attribute 'NOPE'"),
        (["worker", "remote_tools:trace", "--redis", "redis://h"], "(spec, fn) pairs"),
        (["worker", "remote_tools:TOOLS", "--redis", "http://h"], "unix:// URL"),
        ([*OK, "--namespace", "a b"], "namespace"),
        ([*OK, "--concurrency", "0"], "at least 1"),
        ([*OK, "--claim-idle-s", "-1"], "> 0"),
        ([*OK, "--max-deliveries", "x"], "whole number"),
        ([*OK, "--metrics-port", "70000"], "must be a TCP port in 0-65535, got '70000'"),
        ([*OK, "--metrics-port", "http"], "expected a TCP port number, got 'http'"),
    ],
)  # fmt: skip
def test_bad_input_names_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("toolvisor: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_an_unreachable_redis_fails_with_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "remote_tools:TOOLS", "--redis", "redis://127.0.0.1:1/0"]) == 1
    err = capsys.readouterr().err
    assert "Redis at redis://127.0.0.1:1/0" in err


def test_help_lists_the_worker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "worker" in capsys.readouterr().out
    assert main(["worker", "--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--redis",
        "--namespace",
        "--concurrency",
        "--claim-idle-s",
        "--max-deliveries",
        "--metrics-port",
    ):
        assert option in out
