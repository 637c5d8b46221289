"""Shared server plumbing (serving/app.py): probes, JSON errors, limits, metrics once per request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from serving.app import make_base_app
from serving.body import BadRequest, read_json
from serving.metrics import Metrics

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class Gate:
    """Lets a test hold a handler inside its slot until released (no sleeps)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


def _app(
    metrics: Metrics,
    *,
    ready: tuple[bool, str] = (True, "ok"),
    gate: Gate | None = None,
    max_concurrency: int = 4,
) -> web.Application:
    app = make_base_app(
        name="test",
        metrics=metrics,
        max_body_bytes=1024,
        max_concurrency=max_concurrency,
        ready=lambda: ready,
        queue_timeout=0.05,
    )

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await read_json(request))

    async def bad(_request: web.Request) -> web.Response:
        raise BadRequest("field spec.x: expected a number")

    async def boom(_request: web.Request) -> web.Response:
        raise RuntimeError("secret-token-in-traceback")

    async def slow(_request: web.Request) -> web.Response:
        assert gate is not None
        gate.entered.set()
        await gate.release.wait()
        return web.json_response({"done": True})

    app.router.add_post("/echo", echo)
    app.router.add_get("/bad", bad)
    app.router.add_get("/boom", boom)
    app.router.add_get("/slow", slow)
    return app


def _count(metrics: Metrics, handler: str, code: str) -> float | None:
    return metrics.registry.get_sample_value(
        "accel_http_requests_total", {"app": "test", "handler": handler, "code": code}
    )


async def test_probes(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(Metrics(), ready=(False, "policy not loaded yet")))
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert await resp.json() == {"ready": False, "reason": "policy not loaded yet"}
    resp = await client.get("/metrics")
    assert resp.status == 200 and "accel_http_requests_total" in await resp.text()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("GET", "/bad", None, 400, "field spec.x: expected a number"),
        ("POST", "/echo", b"{oops", 400, "not valid JSON"),
        ("POST", "/echo", b"[]", 400, "must be a JSON object"),
        ("POST", "/echo", b'{"a": "' + b"x" * 2000 + b'"}', 413, "limit"),
        ("GET", "/nowhere", None, 404, "Not Found"),
        ("POST", "/healthz", None, 405, "Method Not Allowed"),
    ],
    ids=[
        "handler-bad-request",
        "invalid-json",
        "array-body",
        "body-over-limit",
        "unknown-path",
        "wrong-method",
    ],
)
async def test_client_errors_are_json(
    aiohttp_client: ClientFactory, method: str, path: str, body: bytes | None, status: int, error: str
) -> None:
    client = await aiohttp_client(_app(Metrics()))
    resp = await client.request(method, path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert error in (await resp.json())["error"]


async def test_unexpected_error_is_500_with_request_id_and_no_trace(aiohttp_client: ClientFactory) -> None:
    metrics = Metrics()
    client = await aiohttp_client(_app(metrics))
    resp = await client.get("/boom")
    payload = await resp.json()
    assert resp.status == 500
    assert payload["error"] == "internal error" and len(payload["request_id"]) == 16
    assert "secret-token" not in await resp.text()
    assert _count(metrics, "/boom", "500") == 1.0


async def test_metrics_recorded_once_per_request_by_route(aiohttp_client: ClientFactory) -> None:
    metrics = Metrics()
    client = await aiohttp_client(_app(metrics))
    for _ in range(3):
        assert (await client.post("/echo", json={"a": 1})).status == 200
    await client.post("/echo", data=b"{oops")
    await client.get("/nowhere/abc")
    assert _count(metrics, "/echo", "200") == 3.0
    assert _count(metrics, "/echo", "400") == 1.0
    assert _count(metrics, "unmatched", "404") == 1.0
    assert (
        metrics.registry.get_sample_value(
            "accel_http_request_duration_seconds_count", {"app": "test", "handler": "/echo"}
        )
        == 4.0
    )
    assert (
        metrics.registry.get_sample_value("accel_http_rejected_total", {"app": "test", "reason": "malformed"})
        == 1
    )
    assert metrics.registry.get_sample_value("accel_http_inflight_requests", {"app": "test"}) == 0.0


async def test_over_concurrency_gets_503_retry_after_and_probes_still_answer(
    aiohttp_client: ClientFactory,
) -> None:
    metrics, gate = Metrics(), Gate()
    client = await aiohttp_client(_app(metrics, gate=gate, max_concurrency=1))
    first = asyncio.create_task(client.get("/slow"))
    await gate.entered.wait()
    resp = await client.get("/slow")
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200
    gate.release.set()
    assert (await first).status == 200
    assert (
        metrics.registry.get_sample_value(
            "accel_http_rejected_total", {"app": "test", "reason": "overloaded"}
        )
        == 1
    )


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        make_base_app(
            name="x", metrics=Metrics(), max_body_bytes=0, max_concurrency=1, ready=lambda: (True, "")
        )
