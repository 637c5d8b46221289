"""Fixtures for the fuzz suite and the corpus replay: the three real apps over the example cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from serving.metrics import Metrics
from tests.fuzz import apps

ClientFactory = Callable[..., Any]
Client = TestClient[web.Request, web.Application]
Served = tuple[str, Client, list[str]]


def post_routes(app: web.Application) -> list[str]:
    """Canonical paths of the app's POST routes, from its router (the truth, not a list here)."""
    found = {r.resource.canonical for r in app.router.routes() if r.method == "POST" and r.resource}
    return sorted(found)


def build(name: str, **deps: Any) -> web.Application:
    if not apps.available(name):
        pytest.skip(f"{name}/app.py has not landed yet")
    cluster = deps.pop("cluster", None) or apps.example_cluster()
    return apps.make_app(name, apps.static_state(), apps.AppDeps(cluster=cluster, metrics=Metrics(), **deps))


@pytest.fixture(params=apps.APP_NAMES)
async def served(request: pytest.FixtureRequest, aiohttp_client: ClientFactory) -> AsyncIterator[Served]:
    """(app name, in-process client on 127.0.0.1, its POST routes) for each of the three apps."""
    name: str = request.param
    app = build(name)
    client: Client = await aiohttp_client(app)
    yield name, client, post_routes(app)
