"""The ``toolvisor`` command: help, schema, bench wiring and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import toolvisor
from toolvisor.cli import main

_MODULE = """
import toolvisor
from toolvisor import FunctionToolSpec, NumericParameter, StringParameter, ToolType

payment_spec = FunctionToolSpec(
    id="payment-processor-v1", tool_name="process_payment",
    description="Process payment", tool_type=ToolType.FUNCTION,
    parameters=[StringParameter(name="transaction_id", required=True),
                NumericParameter(name="amount", required=True, minimum=0),
                StringParameter(name="currency", required=True, enum=["USD", "EUR"])],
)
lookup_spec = FunctionToolSpec(id="lookup-v1", tool_name="lookup", description="Look up")
specs = [payment_spec, lookup_spec]
by_name = {"a": payment_spec}
not_a_spec = 42
mixed = [payment_spec, "nope"]

async def tool(args):
    return args

async def build_supervisor():
    async with toolvisor.open_supervisor() as sup:
        await sup.spawn(lookup_spec, tool)
        await sup.spawn(payment_spec, tool)
    return sup

def make_specs():
    return specs

def broken_factory():
    raise RuntimeError("no config file")
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A user's module in the current directory (as `python -m` would import it)."""
    (tmp_path / "usertools.py").write_text(textwrap.dedent(_MODULE))
    (tmp_path / "explodes.py").write_text("raise RuntimeError('import-time failure')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield "usertools"
    for name in ("usertools", "explodes"):
        sys.modules.pop(name, None)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("toolvisor: error: ")
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("argv", [["--help"], [], ["-h"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    for command in ("demo", "schema", "bench"):
        listed = [line for line in out.splitlines() if line.split()[:1] == [command]]
        assert len(listed) == 1, (command, out)  # each command listed once, with its help
    assert "130 on Ctrl-C" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert toolvisor.__version__ in capsys.readouterr().out


def test_demo_help_documents_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--duration", "--seed", "--db", "--plain"):
        assert option in out


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["demo", "--duration", "-3"], "must be a finite number of seconds > 0"),
        (["demo", "--duration", "0"], "must be a finite number of seconds > 0"),
        (["demo", "--duration", "nan"], "must be a finite number of seconds > 0"),
        (["demo", "--duration", "inf"], "must be a finite number of seconds > 0, got 'inf'"),
        (["demo", "--duration", "soon"], "expected seconds"),
        (["demo", "--seed", "x"], "argument --seed: expected an integer, got 'x'"),
        (["schema", "--indent", "-3", "m:a"], "argument --indent: must be >= 0"),
        (["schema", "--indent", "two", "m:a"], "argument --indent: expected an integer"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["schema"], "the following arguments are required"),
    ],
)
def test_bad_usage_is_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert expected in _one_line_error(capsys)


def test_demo_refuses_unusable_db_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "demo.db"
    assert main(["demo", "--db", str(missing), "--duration", "1"]) == 2
    assert "does not exist" in _one_line_error(capsys)

    assert main(["demo", "--db", str(tmp_path), "--duration", "1"]) == 2
    assert "is a directory" in _one_line_error(capsys)

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["demo", "--db", str(a_file / "demo.db"), "--duration", "1"]) == 2
    assert "does not exist" in _one_line_error(capsys)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, just some bytes" * 100)
    assert main(["demo", "--db", str(garbage), "--duration", "1"]) == 2
    assert "cannot be used as a SQLite database" in _one_line_error(capsys)


# --------------------------------------------------------------------------- schema


def test_schema_of_one_spec(user_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", f"{user_module}:payment_spec"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "process_payment"
    assert printed["description"] == "Process payment"
    params = printed["parameters"]
    assert params["additionalProperties"] is False
    assert params["required"] == ["transaction_id", "amount", "currency"]
    assert params["properties"]["currency"]["enum"] == ["USD", "EUR"]


@pytest.mark.parametrize("attr", ["specs", "make_specs", "build_supervisor"])
def test_schema_of_a_list_a_factory_or_a_supervisor(
    attr: str, user_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", f"{user_module}:{attr}", "--indent", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # --indent 0: one line
    names = sorted(s["name"] for s in json.loads(out))
    assert names == ["lookup", "process_payment"]


def test_schema_of_a_dict(user_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", f"{user_module}:by_name"]) == 0
    assert [s["name"] for s in json.loads(capsys.readouterr().out)] == ["process_payment"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("no_such_module_xyz:spec", "cannot import module 'no_such_module_xyz': no such module"),
        ("usertools:missing", "module 'usertools' has no attribute 'missing'"),
        ("usertools:not_a_spec", "is an int, not a ToolSpec"),
        ("usertools:mixed", "holds a str, not a ToolSpec"),
        ("usertools", "expected MODULE:ATTR"),
        ("path/to/usertools.py:payment_spec", "give a module name, not a path"),
        ("usertools.py:payment_spec", "not a path: 'usertools.py' (e.g. usertools:payment_spec"),
        (":spec", "expected MODULE:ATTR"),
        ("explodes:spec", "importing module 'explodes' failed: RuntimeError: import-time"),
    ],
)
def test_schema_errors_are_one_line(
    target: str, expected: str, user_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", target]) == 2
    assert expected in _one_line_error(capsys)


def test_a_failing_factory_exits_1(user_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The factory ran and failed: a failure while running (1), not bad usage (2)."""
    assert main(["schema", f"{user_module}:broken_factory"]) == 1
    assert "calling usertools:broken_factory failed: RuntimeError: no config file" in (
        _one_line_error(capsys)
    )


# --------------------------------------------------------------------------- bench


def test_bench_without_the_suite_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "toolvisor._bench", None)  # import -> ModuleNotFoundError
    assert main(["bench", "--quick"]) == 2
    assert "benchmark suite (toolvisor._bench) is not part of" in _one_line_error(capsys)


def test_bench_passes_its_arguments_through(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    fake = types.ModuleType("toolvisor._bench")

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "toolvisor._bench", fake)
    argv = ["--quick", "--json", "out.json", "--plot", "out.png"]
    assert main(["bench", *argv]) == 3
    assert main(["bench", "--help"]) == 3
    assert seen == [argv, ["--help"]]


def test_bench_missing_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    real = importlib.import_module

    def fake_import(name: str, *args: Any) -> Any:
        if name == "toolvisor._bench":
            raise ModuleNotFoundError("No module named 'tenacity'", name="tenacity")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    assert main(["bench"]) == 2
    assert "pip install 'toolvisor[bench]'" in _one_line_error(capsys)


# --------------------------------------------------------------------------- python -m


def test_python_dash_m_entry_point() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "toolvisor", "--help"], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0
    assert "demo" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "toolvisor", "nope"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr


def test_bench_without_its_extras_uses_the_toolvisor_error_form(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The suite imports, a package of the extra does not: one line, exit 2."""
    import importlib

    from toolvisor._bench import _deps

    real = importlib.import_module

    def without_tenacity(name: str, *args: Any) -> Any:
        if name.split(".")[0] == "tenacity":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args)

    monkeypatch.setattr(_deps.importlib, "import_module", without_tenacity)
    assert main(["bench", "--quick", "--sections", "overhead"]) == 2
    line = _one_line_error(capsys)
    assert "the benchmarks need 'tenacity'" in line
    assert "pip install -e '.[bench]'" in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--rounds", "0"], "argument --rounds: must be >= 1, got '0'"),
        (["--rounds", "x"], "argument --rounds: expected an integer >= 1, got 'x'"),
        (["--sections", "nope"], "unknown section(s) nope; known: overhead"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bench_bad_options_are_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *argv]) == 2
    line = _one_line_error(capsys)
    assert expected in line
    assert line.endswith("(see toolvisor bench --help)")
