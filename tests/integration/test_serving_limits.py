"""Limits over real HTTPS on 127.0.0.1: big, deep and broken bodies, and overload, never 5xx or a hang."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from serving.app import make_base_app
from serving.body import read_json
from serving.metrics import Metrics
from serving.tls import ReloadingTLS
from tests.integration.test_tls_reload import running
from tests.integration.tls_fixtures import client_context, make_cert_dir

MAX_BODY = 64 * 1024


class Server:
    def __init__(
        self,
        base: str,
        session: aiohttp.ClientSession,
        gate: asyncio.Event,
        entered: asyncio.Event,
        metrics: Metrics,
    ) -> None:
        self.base, self.session, self.gate, self.entered, self.metrics = base, session, gate, entered, metrics


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    state = make_cert_dir(tmp_path)
    metrics, gate, entered = Metrics(), asyncio.Event(), asyncio.Event()
    app = make_base_app(
        name="api",
        metrics=metrics,
        max_body_bytes=MAX_BODY,
        max_concurrency=2,
        ready=lambda: (True, "ok"),
        queue_timeout=0.1,
    )

    async def echo(request: web.Request) -> web.Response:
        body = await read_json(request)
        return web.json_response({"keys": sorted(body)})

    async def hold(_request: web.Request) -> web.Response:
        entered.set()
        await gate.wait()
        return web.json_response({"held": True})

    app.router.add_post("/echo", echo)
    app.router.add_get("/hold", hold)
    async with running(app, ReloadingTLS(tmp_path)) as port:
        connector = aiohttp.TCPConnector(ssl=client_context(state.bundle), limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield Server(f"https://localhost:{port}", session, gate, entered, metrics)
            gate.set()


async def _chunks(total: int) -> AsyncIterator[bytes]:
    yield b'{"a": "'
    sent = 0
    while sent < total:
        yield b"x" * 8192
        sent += 8192
    yield b'"}'


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b'{"a": "' + b"x" * (MAX_BODY * 4) + b'"}', 413, "limit"),
        ("chunked", 413, "larger than"),
        (b'{"a":' * 100 + b"{}" + b"}" * 100, 400, "deeper than 64"),
        (b'{"a": ', 400, "not valid JSON"),
        (b"[1,2,3]", 400, "JSON object"),
        (b"", 400, "empty body"),
    ],
    ids=[
        "huge-body-with-length",
        "huge-body-chunked",
        "nesting-101-deep",
        "truncated-json",
        "array",
        "empty",
    ],
)
async def test_bad_bodies_are_4xx_json(server: Server, body: bytes | str, status: int, error: str) -> None:
    data = _chunks(MAX_BODY * 4) if body == "chunked" else body
    async with server.session.post(
        f"{server.base}/echo", data=data, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == status
        assert error in (await resp.json())["error"]


async def test_good_body_passes(server: Server) -> None:
    async with server.session.post(f"{server.base}/echo", json={"b": 1, "a": [1, {"c": 2}]}) as resp:
        assert resp.status == 200 and await resp.json() == {"keys": ["a", "b"]}


async def test_over_concurrency_is_503_fast_not_a_hang(server: Server) -> None:
    held = [asyncio.create_task(server.session.get(f"{server.base}/hold")) for _ in range(2)]
    await server.entered.wait()
    async with asyncio.timeout(5):  # both holders must get inside; yield to the loop until they do
        while server.metrics.registry.get_sample_value("accel_http_inflight_requests", {"app": "api"}) != 2:
            await asyncio.sleep(0)
    started = time.perf_counter()
    async with server.session.get(f"{server.base}/hold") as resp:
        elapsed = time.perf_counter() - started
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert elapsed < 1.0
    async with server.session.get(f"{server.base}/readyz") as resp:
        assert resp.status == 200
    server.gate.set()
    for task in held:
        assert (await task).status == 200
