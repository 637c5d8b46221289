"""`accel serve --reuse-port` (serving.run `reuse_port`): several servers share one port; the kernel
spreads new connections over them, as a Service spreads them over pods."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from serving.app import make_base_app
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.integration.tls_fixtures import client_context, make_cert_dir


def _named(name: str) -> web.Application:
    app = make_base_app(
        name="api", metrics=Metrics(), max_body_bytes=1024, max_concurrency=8, ready=lambda: (True, "ok")
    )

    async def who(_request: web.Request) -> web.Response:
        return web.json_response({"server": name})

    app.router.add_get("/who", who)
    return app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_two_servers_with_reuse_port_share_one_port_and_both_get_connections(tmp_path: Path) -> None:
    bundle = make_cert_dir(tmp_path).bundle
    port = _free_port()
    async with (
        serving(_named("one"), tls=ReloadingTLS(tmp_path), port=port, reuse_port=True) as first,
        serving(_named("two"), tls=ReloadingTLS(tmp_path), port=port, reuse_port=True) as second,
    ):
        assert first == second == port
        answered: set[str] = set()
        # A new connection per request (a new source port each): the kernel hashes each to one of the
        # listeners, so 64 connections all landing on one of two has probability 2**-63.
        connector = aiohttp.TCPConnector(force_close=True, ssl=client_context(bundle))
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(64):
                async with session.get(f"https://127.0.0.1:{port}/who") as response:
                    answered.add((await response.json())["server"])
                if len(answered) == 2:
                    break
        assert answered == {"one", "two"}


async def test_without_reuse_port_a_second_server_cannot_take_the_port(tmp_path: Path) -> None:
    make_cert_dir(tmp_path)
    port = _free_port()
    async with serving(_named("one"), tls=ReloadingTLS(tmp_path), port=port):
        with pytest.raises(OSError):
            async with serving(_named("two"), tls=ReloadingTLS(tmp_path), port=port, reuse_port=True):
                pass
