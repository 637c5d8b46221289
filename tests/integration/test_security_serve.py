"""The real `accel serve webhook` process: no plaintext listener, TLS >= 1.2, SIGTERM drains in-flight
requests with none failed.

These start the console entry point as a subprocess (python -m cli.main), exactly what the
Deployment runs, so they cover the CLI wiring as well as serving/. Waiting is polling with a
deadline against that real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.corpus.make_corpus import review
from tests.integration.tls_fixtures import client_context, make_cert_dir

REPO = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-m", "cli.main", "serve", "webhook", "--snapshot", "examples/cluster.yaml",
         "--policy", "examples/policy", "--host", "127.0.0.1"]  # fmt: skip
IN_FLIGHT = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(*extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*SERVE, *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip


@pytest.mark.parametrize("extra", [[], ["--insecure-plaintext"]], ids=["no-cert-dir", "insecure-flag"])
def test_webhook_without_cert_dir_refuses_to_start(extra: list[str]) -> None:
    proc = start("--port", str(free_port()), *extra)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "refusing to serve 'webhook' without TLS" in out and "--cert-dir" in out


@contextlib.contextmanager
def webhook_process(cert_dir: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = start("--port", str(port), "--cert-dir", str(cert_dir))
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def wait_ready(
    session: aiohttp.ClientSession, base: str, ctx: ssl.SSLContext, proc: subprocess.Popen[str]
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server exited"
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(f"{base}/readyz", ssl=ctx) as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)  # polling a real external process, with a deadline
    raise AssertionError("accel serve webhook never became ready")


async def inflight(session: aiohttp.ClientSession, base: str, ctx: ssl.SSLContext) -> float:
    async with session.get(f"{base}/metrics", ssl=ctx) as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith('accel_http_inflight_requests{app="webhook"}'):
                return float(line.split()[-1]) - 1  # this /metrics request itself is in flight too
    return 0.0


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return True
    return False


async def test_real_webhook_refuses_tls_below_12_and_serves_12(tmp_path: Path) -> None:
    state = make_cert_dir(tmp_path)
    with webhook_process(tmp_path) as (proc, port):
        base = f"https://localhost:{port}"
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, client_context(state.bundle), proc)
        for version, ok in ((ssl.TLSVersion.TLSv1_1, False), (ssl.TLSVersion.TLSv1_2, True)):
            ctx = client_context(state.bundle, version=version)
            if ok:
                _r, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
                )
                assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
                writer.close()
            else:
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")


async def test_sigterm_drains_every_in_flight_admission(tmp_path: Path) -> None:
    """Requests whose bodies are still arriving when SIGTERM lands all complete with 200."""
    state = make_cert_dir(tmp_path)
    ctx = client_context(state.bundle)
    body = orjson.dumps(review(dryRun=True))
    half = len(body) // 2
    go = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield body[:half]
        await go.wait()  # the handler is running, reading this body, when SIGTERM arrives
        yield body[half:]

    with webhook_process(tmp_path) as (proc, port):
        base = f"https://localhost:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await wait_ready(session, base, ctx, proc)

            async def admit(route: str) -> tuple[int, bytes]:
                async with session.post(f"{base}{route}", data=slow_body(), ssl=ctx,
                                        headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
                    return resp.status, await resp.read()

            calls = [
                asyncio.create_task(admit("/mutate" if i % 2 else "/validate")) for i in range(IN_FLIGHT)
            ]
            async with aiohttp.ClientSession() as probe:
                deadline = time.monotonic() + 30
                while await inflight(probe, base, ctx) < IN_FLIGHT:
                    assert time.monotonic() < deadline, "requests never reached the handlers"
                    await asyncio.sleep(0.05)  # polling a real external process, with a deadline
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not refused(port):  # the listener closes first: no new work accepted
                assert time.monotonic() < deadline, "listener still open after SIGTERM"
                await asyncio.sleep(0.05)
            go.set()
            results = await asyncio.gather(*calls, return_exceptions=True)
        exit_code = await asyncio.to_thread(proc.wait, 30)
    log = proc.stdout.read() if proc.stdout else ""
    assert all(isinstance(r, tuple) and r[0] == 200 for r in results), (results, log[-3000:])
    for _status, raw in results:  # type: ignore[misc]
        assert orjson.loads(raw)["response"]["uid"] == review()["request"]["uid"]
    assert exit_code == 0
