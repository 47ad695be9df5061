"""``toolvisor bench --tool MODULE:ATTR``: load tests of a user's own tool module."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rich", reason="needs the bench extra: pip install -e '.[bench]'")

from toolvisor._target import TargetError, load_target
from toolvisor.cli import main

_MODULE = """
import trio
import toolvisor as tv

seen = []

def _spec(name, **kw):
    return tv.FunctionToolSpec(id=name + "-v1", tool_name=name, description=name, **kw)

async def echo(args):
    seen.append(dict(args))
    await trio.sleep(0)
    return args

lookup = [(
    _spec(
        "lookup",
        parameters=[
            tv.StringParameter(name="key", required=True),
            tv.IntegerParameter(name="n", required=True, minimum=5, maximum=7),
            tv.StringParameter(name="region", default="eu"),
            tv.StringParameter(name="mode", required=True, enum=["a", "b"]),
            tv.BooleanParameter(name="flag"),
        ],
    ),
    echo,
)]

# Fails every call whose i is a multiple of 4, both attempts: successes, retries, failures.
flaky_spec = _spec("flaky", parameters=[tv.IntegerParameter(name="i", required=True)])
flaky_spec.retry_policy = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.001)
flaky_spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
    failure_threshold=1000, recovery_timeout=1.0
)
async def flaky(args):
    await trio.sleep(0)
    if args["i"] % 4 == 0:
        raise ConnectionError("flaky back end")
    return args["i"]

# Always fails: the breaker opens after 3 and rejects the rest for 60 s.
down_spec = _spec("down")
down_spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
    failure_threshold=3, recovery_timeout=60
)

async def down(args):
    raise ConnectionError("back end down")

both = [*lookup, (flaky_spec, flaky)]
by_name = {"f": (flaky_spec, flaky)}
pair_list_of_one = [(down_spec, down)]

async def setup(sup):
    await sup.spawn(flaky_spec, flaky)

async def setup_nothing(sup):
    pass

async def setup_raises(sup):
    raise RuntimeError("no config file")

async def two_args(sup, other):
    pass

not_tools = 42
not_a_pair = [(flaky_spec, flaky), "nope"]
bad_spec = [("lookup", echo)]
bad_fn = [(flaky_spec, 3)]
twice = [(flaky_spec, flaky), (flaky_spec, flaky)]
empty = []
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A user's module in the current directory (as `python -m` would import it)."""
    (tmp_path / "loadtools.py").write_text(textwrap.dedent(_MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield "loadtools"
    sys.modules.pop("loadtools", None)


def _bench(tmp_path: Path, *argv: str) -> dict[str, Any]:
    out = tmp_path / "out.json"
    assert main(["bench", "--plain", *argv, "--json", str(out)]) == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("toolvisor: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_outcomes_add_up_to_the_calls_sent_at_every_level(user_module: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "p.png"
    data = _bench(
        tmp_path,
        "--tool",
        f"{user_module}:setup",
        "--concurrency",
        "1",
        "7",
        "--calls",
        "60",
        "--plot",
        str(plot),
    )
    assert data["tool"] == "flaky"
    assert [level["concurrency"] for level in data["levels"]] == [1, 7]
    for level in data["levels"]:
        outcomes = level["outcomes"]
        assert sum(outcomes.values()) == 60 == level["counted_calls"]
        assert outcomes == {"succeeded": 45, "failed": 15, "rejected": 0, "cancelled": 0}
        assert level["retries"] == 15
        assert level["errors"] == {"ConnectionError": outcomes["failed"]}
        assert sum(s["ok"] + s["error"] for s in level["over_time"]) == 60
        assert level["calls_per_s"] > 0 and 0 < level["p50_ms"] <= level["p99_ms"]
    assert plot.stat().st_size > 0


def test_an_open_breaker_rejects_and_its_transition_is_reported(
    user_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _bench(
        tmp_path, "--tool", f"{user_module}:pair_list_of_one", "--concurrency", "1", "--calls", "20"
    )
    (level,) = data["levels"]
    assert level["outcomes"] == {"succeeded": 0, "failed": 3, "rejected": 17, "cancelled": 0}
    assert [(t["old"], t["new"]) for t in level["breaker_transitions"]] == [("closed", "open")]
    assert level["errors"] == {"ConnectionError": 3, "CircuitOpenError": 17}
    out = capsys.readouterr().out
    assert "closed->open" in out and "CircuitOpenError 17" in out


def test_arguments_come_from_the_schema_defaults_and_a_counter(
    user_module: str, tmp_path: Path
) -> None:
    data = _bench(tmp_path, "--tool", f"{user_module}:lookup", "--concurrency", "1", "--calls", "4")
    assert data["levels"][0]["outcomes"]["succeeded"] == 4
    seen = sys.modules[user_module].seen
    assert seen == [
        {"key": f"key-{i}", "n": 5 + i % 3, "region": "eu", "mode": "ab"[i % 2], "flag": i % 2 == 0}
        for i in range(4)
    ]


def test_args_json_with_the_counter_in_its_strings(user_module: str, tmp_path: Path) -> None:
    args = '{"key": "k-{i}", "n": 6, "mode": "b"}'
    data = _bench(
        tmp_path,
        "--tool",
        f"{user_module}:lookup",
        "--concurrency",
        "2",
        "--calls",
        "3",
        "--args",
        args,
    )
    assert data["args"] == {"key": "k-{i}", "n": 6, "mode": "b"}
    seen = sorted(sys.modules[user_module].seen, key=lambda a: a["key"])
    assert seen == [{"key": f"k-{i}", "n": 6, "mode": "b"} for i in range(3)]


def test_invalid_args_are_counted_apart_and_said(
    user_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _bench(
        tmp_path,
        "--tool",
        f"{user_module}:lookup",
        "--calls",
        "5",
        "--concurrency",
        "1",
        "--args",
        '{"key": "k"}',
    )
    (level,) = data["levels"]
    assert level["invalid"] == 5 and level["counted_calls"] == 0
    assert "5 calls had invalid arguments" in capsys.readouterr().out


def test_a_target_with_several_tools_needs_a_name(
    user_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--plain", "--tool", f"{user_module}:both", "--calls", "1"]) == 2
    assert "has 2 tools (flaky, lookup): choose one with --tool-name" in _one_line_error(capsys)
    assert main(["bench", "--plain", "--tool", f"{user_module}:both", "--tool-name", "x"]) == 2
    assert "has no tool 'x' (its tools: flaky, lookup)" in _one_line_error(capsys)
    data = _bench(
        tmp_path,
        "--tool",
        f"{user_module}:both",
        "--tool-name",
        "flaky",
        "--calls",
        "5",
        "--concurrency",
        "1",
    )
    assert data["tool"] == "flaky"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tool", "nocolon"], "expected MODULE:ATTR"),
        (["--tool", "tools.py:x"], "give a module name, not a path: 'tools.py'"),
        (["--tool", "no_such_module_xyz:x"], "cannot import module 'no_such_module_xyz'"),
        (["--tool", "{m}:missing"], "has no attribute 'missing'"),
        (["--tool", "{m}:not_tools"], "is a int; it must be a list, tuple or dict of (spec, fn)"),
        (["--tool", "{m}:not_a_pair"], "[1] is a str, not a (spec, fn) pair"),
        (["--tool", "{m}:bad_spec"], "[0][0] is a str, not a ToolSpec"),
        (["--tool", "{m}:bad_fn"], "[0][1] (tool 'flaky') is not an async function"),
        (["--tool", "{m}:twice"], "names tool 'flaky' twice"),
        (["--tool", "{m}:empty"], "is empty: there is no tool"),
        (["--tool", "{m}:two_args"], "does not take one argument: it must be setup(sup)"),
        (["--tool", "{m}:setup_nothing"], "setup_nothing(sup) spawned no tool"),
        (["--tool", "{m}:setup", "--args", "[1]"], "--args must be a JSON object, got list"),
        (["--tool", "{m}:setup", "--args", "{x"], "--args is not valid JSON"),
        (["--tool", "{m}:setup", "--args", '{"a": NaN}'], "NaN is not allowed"),
        (["--tool", "{m}:setup", "--args", '{"a":' + "9" * 5000 + "}"], "4300 digits"),
        (["--tool", "{m}:setup", "--args", "[" * 100_000], "nests too deeply"),
        (["--tool", "{m}:setup", "--concurrency", "0"], "must be in 1-100000, got '0'"),
        (["--tool", "{m}:setup", "--calls", "many"], "expected an integer >= 1, got 'many'"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    user_module: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{m}", user_module) for a in argv]
    assert main(["bench", "--plain", *argv]) == 2
    assert message in _one_line_error(capsys)


def test_a_setup_that_raises_is_a_failure_exit_status_1(
    user_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--plain", "--tool", f"{user_module}:setup_raises"]) == 1
    line = _one_line_error(capsys)
    assert "setup_raises(sup) failed: RuntimeError: no config file" in line


def test_load_target_takes_a_pair_pairs_a_dict_or_a_setup(user_module: str) -> None:
    assert [s.tool_name for s, _ in load_target(f"{user_module}:lookup").pairs] == ["lookup"]
    assert [s.tool_name for s, _ in load_target(f"{user_module}:both").pairs] == [
        "lookup",
        "flaky",
    ]
    assert [s.tool_name for s, _ in load_target(f"{user_module}:by_name").pairs] == ["flaky"]
    target = load_target(f"{user_module}:setup")
    assert target.setup is not None and target.pairs == ()
    with pytest.raises(TargetError):
        load_target(f"{user_module}:not_tools")
    assert issubclass(TargetError, ValueError)


def test_the_command_runs_in_its_own_interpreter(user_module: str, tmp_path: Path) -> None:
    import os

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(tmp_path)]),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolvisor",
            "bench",
            "--tool",
            f"{user_module}:by_name",
            "--concurrency",
            "3",
            "--calls",
            "30",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "flaky" in done.stdout and "succeeded" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "toolvisor", "bench", "--tool", f"{user_module}:nothing"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        f"toolvisor: error: module '{user_module}' has no attribute 'nothing'"
    )


def test_the_documented_module_and_command_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/cli.md's mytools.py and its command, with fewer calls per level."""
    pytest.importorskip("matplotlib")
    import re
    import shlex

    page = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    section = page[page.index("## `toolvisor bench --tool MODULE:ATTR`") :]
    module = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    command = re.search(r"^\$ (toolvisor bench --tool mytools:tools .*)$", section, re.MULTILINE)
    assert module is not None and command is not None
    (tmp_path / "mytools.py").write_text(module.group(1))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    argv = shlex.split(command.group(1))[1:]
    argv[argv.index("--calls") + 1] = "40"
    try:
        assert main([*argv, "--plain", "--json", "r.json"]) == 0
    finally:
        sys.modules.pop("mytools", None)
    levels = json.loads((tmp_path / "r.json").read_text())["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 10, 100]
    assert all(lv["outcomes"]["succeeded"] == 40 for lv in levels)
    assert (tmp_path / "lookup.png").stat().st_size > 0
    assert "lookup (mytools:tools)" in capsys.readouterr().out


def test_the_demo_payment_target_of_the_docs(tmp_path: Path) -> None:
    data = _bench(
        tmp_path,
        "--tool",
        "toolvisor._demo.bench:payment",
        "--concurrency",
        "6",
        "--calls",
        "12",
        "--args",
        '{"transaction_id": "tx-{i}", "amount": 12.5, "currency": "EUR"}',
    )
    (level,) = data["levels"]
    assert data["tool"] == "process_payment"
    assert sum(level["outcomes"].values()) == 12 == level["counted_calls"]
    assert level["invalid"] == 0
