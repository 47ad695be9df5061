"""``MODULE:ATTR`` targets: what they may name, and the errors that say what is wrong."""

from __future__ import annotations

import re
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import toolvisor
from toolvisor._target import TargetError, load_target, spawn_target
from toolvisor.remote._run import _module_store

_MODULE = """
from toolvisor import FunctionToolSpec

async def fn(args):
    return 1

def not_async(args):
    return 1

a = FunctionToolSpec(id="a-v1", tool_name="a", description="a")
b = FunctionToolSpec(id="b-v1", tool_name="b", description="b")
PAIRS = [(a, fn), (b, fn)]
BY_NAME = {"a": (a, fn)}
SYNC = [(a, not_async)]
NOT_PAIRS = [a]
EMPTY = []
NUMBER = 3

async def setup(sup):
    await sup.spawn(b, fn)

async def setup_nothing(sup):
    pass

async def setup_fails(sup):
    raise RuntimeError("no config")
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"targets_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(_MODULE))
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


async def test_pairs_a_dict_and_a_setup_spawn_their_tools(module: str) -> None:
    for attr, expected in (("PAIRS", ["a", "b"]), ("BY_NAME", ["a"]), ("setup", ["b"])):
        async with toolvisor.open_supervisor() as sup:
            assert await spawn_target(sup, load_target(f"{module}:{attr}")) == expected
            assert sup.tools() == expected


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("SYNC", "not an async function"),
        ("NOT_PAIRS", "not a (ToolSpec, async function) pair"),
        ("EMPTY", "holds no tools"),
        ("NUMBER", "is a int"),
        ("MISSING", "no attribute 'MISSING'"),
    ],
)
def test_bad_targets_say_what_is_wrong(module: str, attr: str, message: str) -> None:
    with pytest.raises(TargetError, match=re.escape(message)):
        load_target(f"{module}:{attr}")


def test_bad_text_and_missing_modules() -> None:
    with pytest.raises(TargetError, match="expected MODULE:ATTR"):
        load_target("no_colon")
    with pytest.raises(TargetError, match="no such module"):
        load_target("no_such_module_xyz:TOOLS")


async def test_a_setup_that_fails_or_spawns_nothing(module: str) -> None:
    async with toolvisor.open_supervisor() as sup:
        with pytest.raises(TargetError, match="failed: RuntimeError: no config"):
            await spawn_target(sup, load_target(f"{module}:setup_fails"))
        with pytest.raises(TargetError, match="spawned no tools"):
            await spawn_target(sup, load_target(f"{module}:setup_nothing"))


def test_a_module_may_give_the_worker_its_own_store(module: str) -> None:
    target = load_target(f"{module}:PAIRS")
    assert _module_store(target) is None
    store = toolvisor.MemoryStore()
    target.module.idempotency_store = store  # type: ignore[attr-defined]
    assert _module_store(target) is store
    target.module.idempotency_store = "sqlite.db"  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="not an idempotency store"):
        _module_store(target)
    assert isinstance(target.module, types.ModuleType)
