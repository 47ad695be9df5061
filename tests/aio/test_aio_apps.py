"""toolvisor.aio inside asyncio applications: a FastAPI service (through httpx's ASGI
transport, no network) and tools built on asyncio-native clients (httpx, aiosqlite)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import fastapi
import httpx
import pytest
from aio_helpers import add_up, run

import toolvisor as tv
import toolvisor.aio as aio


class Declined(Exception):  # noqa: N818 - a tool's own failure, named as a user would
    """The payment back end declined."""


def payment_spec() -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id="pay-v1",
        tool_name="pay",
        parameters=[
            tv.StringParameter(name="tx", required=True),
            tv.NumericParameter(name="amount", required=True, minimum=0),
        ],
        timeout_s=0.2,
    )
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.0)
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    spec.idempotency.key_fields = ["tx"]
    return spec


def make_app(backend: httpx.AsyncClient) -> fastapi.FastAPI:
    """A service whose endpoint calls a supervised tool, the tool an HTTP back end."""

    async def pay(args: dict[str, Any]) -> dict[str, Any]:
        response = await backend.post("/charge", json=args)
        if response.status_code == 402:
            raise Declined(response.json()["reason"])
        response.raise_for_status()
        return dict(response.json())

    @asynccontextmanager
    async def lifespan(app: fastapi.FastAPI) -> AsyncIterator[None]:
        async with aio.open_supervisor() as sup:
            await sup.spawn(payment_spec(), pay)
            app.state.tools = sup
            yield

    app = fastapi.FastAPI(lifespan=lifespan)

    @app.post("/payments")
    async def create_payment(body: dict[str, Any], request: fastapi.Request) -> Any:
        sup: aio.Supervisor = request.app.state.tools
        try:
            return await sup.execute("pay", body, timeout=1.0)
        except tv.ValidationError as exc:
            raise fastapi.HTTPException(422, str(exc)) from exc
        except Declined as exc:
            raise fastapi.HTTPException(402, str(exc)) from exc
        except tv.ToolvisorError as exc:
            raise fastapi.HTTPException(503, str(exc)) from exc

    @app.get("/stats")
    async def stats(request: fastapi.Request) -> dict[str, int]:
        s = request.app.state.tools.stats("pay")
        return {"calls": s.calls, "successes": s.successes, "retries": s.retries}

    return app


def make_backend() -> tuple[fastapi.FastAPI, list[dict[str, Any]]]:
    """The payment back end: fails once with 500, declines large amounts, sleeps a bit."""
    charges: list[dict[str, Any]] = []
    backend = fastapi.FastAPI()
    state = {"requests": 0}

    @backend.post("/charge")
    async def charge(body: dict[str, Any]) -> Any:
        state["requests"] += 1
        await asyncio.sleep(0.005)
        if state["requests"] == 1:
            return fastapi.responses.JSONResponse({"error": "flaky"}, status_code=500)
        if body["amount"] > 1000:
            return fastapi.responses.JSONResponse({"reason": "limit"}, status_code=402)
        charges.append(body)
        return {"tx": body["tx"], "status": "charged"}

    return backend, charges


def test_a_fastapi_endpoint_calls_a_supervised_tool() -> None:
    async def main() -> None:
        backend_app, charges = make_backend()
        backend = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=backend_app), base_url="http://backend"
        )
        app = make_app(backend)
        async with (
            backend,
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://service"
            ) as client,
        ):
            first = await client.post("/payments", json={"tx": "tx-1", "amount": 10})
            assert first.status_code == 200, first.text
            assert first.json() == {"tx": "tx-1", "status": "charged"}
            again = await client.post("/payments", json={"tx": "tx-1", "amount": 10})
            assert again.json() == first.json()  # idempotent: not charged twice
            declined = await client.post("/payments", json={"tx": "tx-2", "amount": 5000})
            assert declined.status_code == 402 and "limit" in declined.text
            invalid = await client.post("/payments", json={"tx": "tx-3"})
            assert invalid.status_code == 422 and "amount" in invalid.text
            many = await asyncio.gather(
                *(client.post("/payments", json={"tx": f"p-{i}", "amount": i}) for i in range(20))
            )
            assert all(r.status_code == 200 for r in many)
            stats = (await client.get("/stats")).json()
            assert stats["retries"] >= 1  # the back end's first 500 was retried
        assert len(charges) == 21  # tx-1 once, p-0 ... p-19 once each

    run(main)


def test_an_aiosqlite_tool_is_cut_by_its_timeout_and_keeps_working(tmp_path: Path) -> None:
    db_path = tmp_path / "orders.db"
    cancelled: list[bool] = []

    async def lookup(args: dict[str, Any]) -> Any:
        async with aiosqlite.connect(db_path) as db:
            if args.get("slow"):
                try:
                    await asyncio.sleep(10)  # a stuck query, as the test has it
                except asyncio.CancelledError:
                    cancelled.append(True)
                    raise
            cursor = await db.execute("select total from orders where id = ?", (args["id"],))
            row = await cursor.fetchone()
            return None if row is None else row[0]

    async def main() -> None:
        async with aiosqlite.connect(db_path) as db:
            await db.execute("create table orders (id text primary key, total real)")
            await db.execute("insert into orders values ('o-1', 12.5)")
            await db.commit()
        spec = tv.FunctionToolSpec(
            id="lookup-v1",
            tool_name="lookup",
            parameters=[
                tv.StringParameter(name="id", required=True),
                tv.BooleanParameter(name="slow"),
            ],
            timeout_s=0.1,
        )
        async with aio.open_supervisor() as sup:
            await sup.spawn(spec, lookup)
            assert await sup.execute("lookup", {"id": "o-1"}) == 12.5
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("lookup", {"id": "o-1", "slow": True})
            assert cancelled == [True]  # the connection was closed by its own block
            assert await sup.execute("lookup", {"id": "o-2"}) is None
            stats = sup.stats("lookup")
            assert stats.calls == 3 and stats.timeouts == 1 and add_up(stats)

    run(main)


@pytest.mark.redis
def test_idempotency_on_redis_from_asyncio(aio_redis_url: str) -> None:
    """The trio guest runs coredis for the RedisStore; asyncio callers share its results."""
    runs: list[str] = []
    prefix = f"toolvisor-test:{uuid.uuid4().hex}:"

    async def charge(args: dict[str, Any]) -> dict[str, str]:
        await asyncio.sleep(0.01)
        runs.append(args["tx"])
        return {"tx": args["tx"], "status": "charged"}

    async def one_process_run() -> list[Any]:
        store = tv.RedisStore(aio_redis_url, prefix=prefix)
        async with aio.open_supervisor(idempotency_store=store) as sup:
            await sup.spawn(payment_spec(), charge)
            values = await asyncio.gather(
                *(sup.execute("pay", {"tx": "tx-9", "amount": 1}) for _ in range(4))
            )
        await aio.run_trio(store.aclose)
        return values

    async def main() -> None:
        first = await one_process_run()
        second = await one_process_run()  # a new guest run, a new store: the same answer
        assert first == second == [{"tx": "tx-9", "status": "charged"}] * 4

    run(main)
    assert runs == ["tx-9"]
