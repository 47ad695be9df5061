"""MODULE:ATTR: finding a user's tools, and saying clearly what is wrong with a target."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolvisor import open_supervisor
from toolvisor._target import TargetError, load_target, spawn_target

MODULE = """
from toolvisor import FunctionToolSpec, StringParameter

A = FunctionToolSpec(id="a-v1", tool_name="tool_a")
B = FunctionToolSpec(id="b-v1", tool_name="tool_b")

async def fn(args):
    return "ok"

def sync_fn(args):
    return "ok"

PAIRS = [(A, fn), (B, fn)]
BY_NAME = {"a": (A, fn)}
TUPLE = ((A, fn),)
EMPTY = []
NOT_PAIRS = [A]
SYNC = [(A, sync_fn)]
DUPLICATE = [(A, fn), (A, fn)]
NOT_A_SPEC = [("a", fn)]
NUMBER = 3

async def setup(sup):
    await sup.spawn(A, fn)

async def spawns_nothing(sup):
    pass

async def broken(sup):
    raise RuntimeError("no database")

async def two_args(sup, other):
    pass

class Holder:
    PAIRS = PAIRS
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "user_tools_x.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "user_broken_x.py").write_text("import no_such_dependency_x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_tools_x"
    sys.modules.pop("user_tools_x", None)
    sys.modules.pop("user_broken_x", None)


async def test_pairs_in_a_list_dict_tuple_or_nested_attribute_are_spawned(module: str) -> None:
    for attr, names in [
        ("PAIRS", ["tool_a", "tool_b"]),
        ("BY_NAME", ["tool_a"]),
        ("TUPLE", ["tool_a"]),
        ("Holder.PAIRS", ["tool_a", "tool_b"]),
    ]:
        target = load_target(f"{module}:{attr}")
        async with open_supervisor() as sup:
            assert await spawn_target(sup, target) == names
            assert await sup.execute("tool_a", {}) == "ok"


async def test_an_async_setup_spawns_the_tools_itself(module: str) -> None:
    target = load_target(f"{module}:setup")
    assert target.setup is not None and target.pairs == ()
    async with open_supervisor() as sup:
        assert await spawn_target(sup, target) == ["tool_a"]


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("EMPTY", "is empty"),
        ("NOT_PAIRS", "not a (spec, fn) pair"),
        ("SYNC", "is not an async function"),
        ("DUPLICATE", "names tool 'tool_a' twice"),
        ("NOT_A_SPEC", "not a ToolSpec"),
        ("NUMBER", "is a int; it must be a list, tuple or dict of (spec, fn) pairs"),
        ("two_args", "does not take one argument"),
        ("MISSING", "has no attribute 'MISSING'"),
    ],
)
def test_a_target_of_the_wrong_shape_says_what_is_wrong(
    module: str, attr: str, message: str
) -> None:
    with pytest.raises(TargetError, match=re.escape(message)):
        load_target(f"{module}:{attr}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tools/payments.py:TOOLS", r"give a module name, not a path.*tools\.payments:TOOLS"),
        ("payments.py:TOOLS", "give a module name, not a path"),
        ("./payments:TOOLS", "give a module name, not a path"),
        ("no_such_module_x:TOOLS", "no such module"),
        ("user_tools_x", "expected MODULE:ATTR"),
        (":TOOLS", "expected MODULE:ATTR"),
    ],
)
def test_bad_target_text_is_explained(module: str, text: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        load_target(text)


def test_a_module_that_fails_to_import_names_its_error(module: str) -> None:
    with pytest.raises(TargetError, match="importing module 'user_broken_x' failed"):
        load_target("user_broken_x:TOOLS")


def test_target_error_is_a_value_error() -> None:
    assert issubclass(TargetError, ValueError)


@pytest.mark.parametrize(
    ("attr", "message"), [("spawns_nothing", "spawned no tool"), ("broken", "no database")]
)
async def test_a_setup_that_fails_or_spawns_nothing_is_an_error(
    module: str, attr: str, message: str
) -> None:
    target = load_target(f"{module}:{attr}")
    async with open_supervisor() as sup:
        with pytest.raises(TargetError, match=message):
            await spawn_target(sup, target)
