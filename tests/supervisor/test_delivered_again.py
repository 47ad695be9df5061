"""``ExecutionContext.delivery``: an idempotent call delivered again (its worker died
holding it) follows ``on_unknown_outcome`` instead of running blind."""

from __future__ import annotations

from typing import Any

import pytest

import toolvisor as tv


def charge_spec(on_unknown: str = "fail") -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id="charge-v1", tool_name="charge", parameters=[tv.StringParameter(name="tx")]
    )
    spec.idempotency.enabled = True
    spec.idempotency.key_fields = ["tx"]
    spec.idempotency.on_unknown_outcome = on_unknown  # type: ignore[assignment]
    return spec


async def test_a_free_key_delivered_again_is_recorded_unknown_and_not_run() -> None:
    charged: list[str] = []

    async def charge(args: dict[str, Any]) -> Any:
        charged.append(args["tx"])
        return "charged"

    again = tv.ExecutionContext(delivery=2)
    async with tv.open_supervisor() as sup:
        await sup.spawn(charge_spec(), charge)
        assert await sup.execute("charge", {"tx": "done"}) == "charged"
        # Done already: the stored result answers the delivery, nothing runs.
        assert await sup.execute("charge", {"tx": "done"}, again) == "charged"
        with pytest.raises(tv.IdempotencyOutcomeUnknownError) as info:
            await sup.execute("charge", {"tx": "lost"}, again)
        assert "delivered 2 times" in "\n".join(info.value.__notes__)
        # Recorded: a first delivery of that key does not run it either, until forget().
        with pytest.raises(tv.IdempotencyOutcomeUnknownError):
            await sup.execute("charge", {"tx": "lost"})
        assert await sup.forget("charge", info.value.key)
        assert await sup.execute("charge", {"tx": "lost"}) == "charged"
        stats = sup.stats("charge")
    assert charged == ["done", "lost"]
    assert stats.calls == stats.successes + stats.failures


async def test_with_retry_a_delivery_runs_again_and_the_tool_sees_its_number() -> None:
    seen: list[int] = []

    async def charge(args: dict[str, Any], ctx: tv.ExecutionContext) -> Any:
        seen.append(ctx.delivery)
        return "charged"

    async with tv.open_supervisor() as sup:
        await sup.spawn(charge_spec("retry"), charge)
        ctx = tv.ExecutionContext(delivery=3)
        assert await sup.execute("charge", {"tx": "a"}, ctx) == "charged"
    assert seen == [3]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
async def test_a_bad_delivery_is_refused_naming_the_field(bad: object) -> None:
    async def echo(args: dict[str, Any]) -> Any:
        return "x"

    async with tv.open_supervisor() as sup:
        await sup.spawn(charge_spec(), echo)
        with pytest.raises(ValueError, match=r"ctx\.delivery must be an int >= 1"):
            await sup.execute("charge", {"tx": "a"}, tv.ExecutionContext(delivery=bad))  # type: ignore[arg-type]
