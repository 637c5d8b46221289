"""Hypothesis fuzzing of every POST route of the three apps, in-process over loopback HTTP.

Each example is one body (raw bytes, arbitrary JSON, or a valid request with parts replaced by
odd values: lone surrogates, RTL marks, NUL, 4-byte emoji, huge numbers, wrong types, missing
keys) sent to one route; `tests.fuzz.checks.check_answer` is the oracle (no 5xx, JSON, a reason
on every 4xx, no leaked internals, the webhook echoes the uid). Example counts are bounded so the
whole suite stays well under a minute on two cores; `ACCEL_FUZZ_EXAMPLES` raises them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import apps
from tests.fuzz.checks import check_answer
from tests.fuzz.conftest import build, post_routes
from tests.fuzz.strategies import any_body
from tests.fuzz.test_corpus_replay import KNOWN_CRASHES

EXAMPLES = int(os.environ.get("ACCEL_FUZZ_EXAMPLES", "250"))
TIMEOUT_S = 10.0


class Live:
    """One app served on 127.0.0.1 for a whole module, driven from sync hypothesis tests."""

    def __init__(self, app: web.Application) -> None:
        self.runner = asyncio.Runner()
        self.client: TestClient[web.Request, web.Application] = self.runner.run(self._start(app))

    @staticmethod
    async def _start(app: web.Application) -> TestClient[web.Request, web.Application]:
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        return client

    def post(self, route: str, raw: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        async def call() -> tuple[int, bytes]:
            async with asyncio.timeout(TIMEOUT_S):
                resp = await self.client.post(
                    route, data=raw, headers={"Content-Type": "application/json", **headers}
                )
                return resp.status, await resp.read()

        return self.runner.run(call())

    def close(self) -> None:
        self.runner.run(self.client.close())
        self.runner.close()


def _app_params() -> list[object]:
    """Apps with known, reported crashes (KNOWN_CRASHES) run as non-strict xfail; the rest must pass."""
    return [
        pytest.param(
            name,
            marks=pytest.mark.xfail(reason=f"known crashes: {sorted(KNOWN_CRASHES[name])}", strict=False),
        )
        if name in KNOWN_CRASHES
        else name
        for name in apps.APP_NAMES
    ]


@pytest.fixture(scope="module", params=_app_params())
def live(request: pytest.FixtureRequest) -> Iterator[tuple[str, Live, list[str]]]:
    name: str = request.param
    app = build(name)
    server = Live(app)
    try:
        yield name, server, post_routes(app)
    finally:
        server.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
          HealthCheck.too_slow, HealthCheck.data_too_large], database=None, derandomize=True)  # fmt: skip
@given(data=st.data())
def test_no_body_makes_any_route_fail(live: tuple[str, Live, list[str]], data: st.DataObject) -> None:
    name, server, routes = live
    route = data.draw(st.sampled_from(routes), label="route")
    raw = data.draw(any_body(route), label="body")
    status, body = server.post(route, raw, apps.auth_headers(name))
    check_answer(name, route, status, body, sent=raw)
