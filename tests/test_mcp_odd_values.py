"""toolvisor.mcp answers with a result a value JSON cannot carry (even one whose repr()
fails) and an unknown tool's name cut to a bounded length: neither takes the call down."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from toolvisor import FunctionToolSpec, IntegerParameter, open_supervisor
from toolvisor.mcp import mcp_server

pytestmark = pytest.mark.trio

ADD = FunctionToolSpec(
    id="add-v1",
    tool_name="add",
    parameters=[
        IntegerParameter(name="a", required=True),
        IntegerParameter(name="b", required=True),
    ],
)
DEEP = FunctionToolSpec(id="deep-v1", tool_name="deep")


async def add(args: dict[str, Any]) -> int:
    return int(args["a"]) + int(args["b"])


async def deep(args: dict[str, Any]) -> Any:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("tool", "args", "shown"),
    [
        # Both arguments valid (4,300 digits); the sum has 4,301, past int's str() limit.
        ("add", {"a": int("9" * 4300), "b": int("9" * 4300)}, "<an integer of"),
        ("deep", {}, "<list whose repr() raised RecursionError>"),
    ],
)
async def test_a_value_repr_cannot_show_is_still_one_result(
    tool: str, args: dict[str, Any], shown: str
) -> None:
    async with open_supervisor() as sup:
        await sup.spawn(ADD, add)
        await sup.spawn(DEEP, deep)
        async with Client(mcp_server(sup)) as client:
            result = await client.call_tool(tool, args)
            assert not result.is_error
            assert result.content[0].text.startswith(shown)  # type: ignore[union-attr]
            assert (await client.call_tool("add", {"a": 1, "b": 2})).content[0].text == "3"  # type: ignore[union-attr]
        assert sup.stats(tool).failures == 0  # counted as the success it was


async def test_an_unknown_tools_name_comes_back_cut() -> None:
    async with open_supervisor() as sup:
        await sup.spawn(ADD, add)
        async with Client(mcp_server(sup)) as client:
            with pytest.raises(MCPError) as raised:
                await client.call_tool("x" * 1_000_000, {})
    message = str(raised.value)
    assert "unknown tool" in message
    assert "1,000,000 characters" in message
    assert len(message) < 5_000
