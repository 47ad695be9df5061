"""One test per finding of the adversarial run, through the public call path.

Each of these failed on the main branch of 2026-12-02: a call with bad input escaped the
documented errors, or a message or log said the wrong thing.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

import toolvisor as tv

RAN: list[dict[str, Any]] = []


async def lookup(args: dict[str, Any], ctx: tv.ExecutionContext) -> dict[str, Any]:
    RAN.append(args)
    await trio.lowlevel.checkpoint()
    return {"found": args.get("name"), "tenant": ctx.tenant_id}


def spec(name: str = "lookup", *, idempotent: bool = False) -> tv.FunctionToolSpec:
    made = tv.FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        parameters=[
            tv.StringParameter(name="name"),
            tv.ArrayParameter(name="tags", items=tv.StringParameter(name="t"), required=False),
            tv.ObjectParameter(name="extra", additional_properties=True, required=False),
        ],
    )
    made.idempotency.enabled = idempotent
    made.idempotency.persist_result = idempotent
    return made


@pytest.fixture
async def sup() -> Any:
    RAN.clear()
    async with tv.open_supervisor() as supervisor:
        await supervisor.spawn(spec(), lookup)
        await supervisor.spawn(spec("idem", idempotent=True), lookup)
        yield supervisor


# --------------------------------------------------------------------------- contexts


@pytest.mark.parametrize("tool", ["lookup", "idem"])
@pytest.mark.parametrize("ctx", [{"tenant_id": "acme"}, "acme", 3])
async def test_a_context_that_is_not_an_execution_context_is_a_type_error(
    sup: tv.Supervisor, tool: str, ctx: Any
) -> None:
    for call in (sup.execute, sup.submit):
        with pytest.raises(TypeError, match=r"^ctx must be a toolvisor\.ExecutionContext"):
            await call(tool, {"name": "x"}, ctx)
    assert RAN == []
    s = sup.stats(tool)
    assert s.calls == 0  # refused before it became a call


@pytest.mark.parametrize("tenant", [b"acme", 42, ["acme"]])
async def test_a_tenant_that_is_not_a_string_is_a_type_error(
    sup: tv.Supervisor, tenant: Any
) -> None:
    ctx = tv.ExecutionContext(tenant_id=tenant)
    with pytest.raises(TypeError, match=r"^ctx\.tenant_id must be a str or None"):
        await sup.execute("idem", {"name": "x"}, ctx)
    assert RAN == []


async def test_a_context_in_execute_many_is_checked_per_entry(sup: tv.Supervisor) -> None:
    results = await sup.execute_many(
        [("lookup", {"name": "a"}, {"tenant_id": "acme"}), ("lookup", {"name": "b"})]  # type: ignore[list-item]
    )
    assert isinstance(results[0].error, TypeError)
    assert str(results[0].error).startswith("ctx must be")
    assert results[1].ok


async def test_the_executor_checks_its_context_and_timeout() -> None:
    executor = tv.FunctionToolExecutor(spec("idem", idempotent=True), lookup)
    with pytest.raises(TypeError, match=r"^ctx must be"):
        await executor.execute({"name": "x"}, {"tenant_id": "a"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^timeout=.* is too large"):
        await executor.execute({"name": "x"}, timeout=10**400)


# --------------------------------------------------------------------------- names, timeouts


@pytest.mark.parametrize("name", [["lookup"], None, 3, b"lookup"])
async def test_a_tool_name_that_is_not_a_string_is_a_type_error(
    sup: tv.Supervisor, name: Any
) -> None:
    for call in (sup.execute, sup.submit):
        with pytest.raises(TypeError, match=r"^tool must be a tool's name \(a str\)"):
            await call(name, {"name": "x"})
    with pytest.raises(TypeError, match=r"^tool must be"):
        sup.stats(name)


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        pytest.param(10**400, ValueError, r"^timeout=.* is too large", id="10**400"),
        (True, TypeError, r"^timeout must be a number"),
        (float("nan"), ValueError, r"^timeout must be a number of seconds, got NaN"),
        (-1, ValueError, r"^timeout must be > 0"),
        ("5", TypeError, r"^timeout must be a number"),
    ],
)
async def test_bad_timeouts_name_the_parameter(
    sup: tv.Supervisor, timeout: Any, error: type[Exception], message: str
) -> None:
    for tool in ("lookup", "idem"):
        for call in (sup.execute, sup.submit):
            with pytest.raises(error, match=message):
                await call(tool, {"name": "x"}, timeout=timeout)
    with pytest.raises(error, match=message):
        await sup.execute_many([("lookup", {"name": "x"})], timeout=timeout)
    assert RAN == []


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("tool", ["lookup", "idem"])
async def test_arguments_nested_ten_thousand_levels_are_a_validation_error(
    sup: tv.Supervisor, tool: str
) -> None:
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(tv.ValidationError, match=r"InputLimits\.max_depth"):
        await sup.execute(tool, {"name": "x", "extra": {"deep": deep}})
    results = await sup.execute_many([(tool, {"name": "x", "tags": deep})])
    assert isinstance(results[0].error, tv.ValidationError)
    assert RAN == []


async def test_a_lone_surrogate_never_reaches_the_tool(sup: tv.Supervisor) -> None:
    for tool in ("lookup", "idem"):  # a closed schema: the old fast path let it through
        with pytest.raises(tv.ValidationError, match="lone surrogate"):
            await sup.execute(tool, {"name": "caf\udce9"})
        with pytest.raises(tv.ValidationError, match="lone surrogate"):
            await sup.execute(tool, {"name": "ok", "tags": ["\ud800"]})
    assert RAN == []


async def test_a_10_mb_argument_gives_a_message_of_a_few_hundred_characters(
    sup: tv.Supervisor,
) -> None:
    with pytest.raises(tv.ValidationError) as info:
        await sup.execute("lookup", {"name": 7, "tags": "y" * 9_000_000})
    assert len(str(info.value)) < 4096
    assert {e.path for e in info.value.errors} == {"/name", "/tags"}


# --------------------------------------------------------------------------- texts


async def test_a_deliberate_kill_logs_a_warning_that_says_kill(
    sup: tv.Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="toolvisor")
    await sup.kill("lookup")
    records = [r for r in caplog.records if r.name.startswith("toolvisor")]
    assert records, "kill() must be logged"
    assert all(r.levelno <= logging.WARNING for r in records)
    assert any(r.levelno == logging.WARNING and "kill" in r.getMessage() for r in records)
    assert await sup.execute("lookup", {"name": "after"}) == {"found": "after", "tenant": None}


async def test_a_store_failing_after_the_tool_ran_never_says_it_did_not_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tool ran; then the store refused to record its success (a real SQLite
    trigger refuses the write). The caller gets its value; no text may claim the call
    was not executed."""
    path = tmp_path / "idem.db"
    store = tv.SQLiteStore(path)
    caplog.set_level(logging.DEBUG, logger="toolvisor")
    RAN.clear()
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(spec("idem", idempotent=True), lookup)
        await sup.execute("idem", {"name": "first"})  # creates the file and schema
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE ON toolvisor_idempotency "
                "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        outcome: Any
        try:
            outcome = await sup.execute("idem", {"name": "second"})
        except tv.IdempotencyStoreError as exc:
            outcome = exc
        if isinstance(outcome, tv.IdempotencyStoreError):  # the lead may choose to raise
            assert outcome.tool_ran is True
            assert "the call was not executed" not in str(outcome)
        else:
            assert outcome == {"found": "second", "tenant": None}
    await store.aclose()
    assert [a["name"] for a in RAN] == ["first", "second"]
    texts = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("disk says no" in t for t in texts), "the store's failure must be logged"
    assert not [t for t in texts if "the call was not executed" in t]
