"""Bounded concurrency with back-pressure, verified per app on a real POST route.

Each app's handlers are held busy by requests whose bodies stall mid-upload (the handler has
taken a concurrency slot and is reading). `MAX_CONCURRENCY + EXTRA` such requests go out: exactly
EXTRA are refused fast with 503 + Retry-After (JSON reason), probes still answer, and once the
bodies finish every admitted request completes normally. A route mounted without the shared
middlewares would queue without bound instead.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator

import aiohttp
import orjson

from tests.fuzz import apps
from tests.fuzz.checks import check_answer
from tests.fuzz.conftest import Served
from tests.fuzz.strategies import BASES

EXTRA = 6


async def test_over_the_limit_is_503_fast_and_the_rest_complete(served: Served) -> None:
    name, client, routes = served
    limit: int = importlib.import_module(f"{name}.app").MAX_CONCURRENCY
    route = routes[0]
    body = orjson.dumps(BASES.get(route, BASES["/mutate"]))
    go = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield body[:10]
        await go.wait()
        yield body[10:]

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # no client-side cap

    async def call() -> tuple[int, bytes, str | None]:
        async with session.post(
            client.make_url(route),
            data=stalled(),
            headers={"Content-Type": "application/json", **apps.auth_headers(name)},
        ) as resp:
            return resp.status, await resp.read(), resp.headers.get("Retry-After")

    calls = [asyncio.create_task(call()) for _ in range(limit + EXTRA)]
    async with session, asyncio.timeout(20):
        while sum(t.done() for t in calls) < EXTRA:
            await asyncio.wait([t for t in calls if not t.done()], return_when=asyncio.FIRST_COMPLETED)
        assert (await client.get("/healthz")).status == 200  # probes bypass the limit
        refused = [t.result() for t in calls if t.done()]
        assert [status for status, _, _ in refused] == [503] * EXTRA
        assert all(retry == "1" and orjson.loads(raw)["error"] for _, raw, retry in refused)
        go.set()
        results = await asyncio.gather(*calls)
    admitted = [r for r in results if r[0] != 503]
    assert len(admitted) == limit
    for status, raw, _ in admitted:
        check_answer(name, route, status, raw, sent=body)
