"""Real HTTPS on 127.0.0.1: protocol floor, hot certificate reload under load, SIGTERM drain."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from certs.issue import load_certificate
from certs.state import TLS_CERT_FILE, TLS_KEY_FILE, write_atomic
from serving.app import make_base_app
from serving.metrics import Metrics
from serving.run import PlaintextRefused, serving
from serving.tls import ReloadingTLS
from tests.integration.tls_fixtures import client_context, make_cert_dir, reissue

REPO = Path(__file__).resolve().parents[2]


def running(
    app: web.Application, tls: ReloadingTLS | None, *, allow_plaintext: bool = False
) -> contextlib.AbstractAsyncContextManager[int]:
    """Serve `app` on a free loopback port for the block; yields the port."""
    return serving(app, tls=tls, allow_plaintext=allow_plaintext)


def _app(metrics: Metrics | None = None) -> web.Application:
    app = make_base_app(
        name="webhook",
        metrics=metrics or Metrics(),
        max_body_bytes=1 << 20,
        max_concurrency=64,
        ready=lambda: (True, "ok"),
    )

    async def ping(_request: web.Request) -> web.Response:
        return web.json_response({"pong": True})

    app.router.add_get("/ping", ping)
    return app


async def _peer_cert(port: int, ctx: ssl.SSLContext) -> tuple[x509.Certificate, str]:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    ssl_object = writer.get_extra_info("ssl_object")
    der, version = ssl_object.getpeercert(binary_form=True), ssl_object.version()
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der), version


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        (ssl.TLSVersion.TLSv1, False),
        (ssl.TLSVersion.TLSv1_1, False),
        (ssl.TLSVersion.TLSv1_2, True),
        (ssl.TLSVersion.TLSv1_3, True),
    ],
    ids=["tls1.0-refused", "tls1.1-refused", "tls1.2-accepted", "tls1.3-accepted"],
)
async def test_protocol_floor_is_tls12(tmp_path: Path, version: ssl.TLSVersion, accepted: bool) -> None:
    state = make_cert_dir(tmp_path)
    async with running(_app(), ReloadingTLS(tmp_path)) as port:
        ctx = client_context(state.bundle, version=version)
        if accepted:
            _, negotiated = await _peer_cert(port, ctx)
            assert (
                negotiated == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            )
        else:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await _peer_cert(port, ctx)


def test_mismatched_or_half_written_pair_keeps_old_cert(tmp_path: Path) -> None:
    state = make_cert_dir(tmp_path)
    tls = ReloadingTLS(tmp_path)
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert state.serving is not None
    old_serial = load_certificate(state.serving.cert_pem).serial_number
    other = make_cert_dir(tmp_path / "other")
    assert other.serving is not None
    write_atomic(tmp_path / TLS_KEY_FILE, other.serving.key_pem, mode=0o600)  # key of another cert
    assert tls.check_and_reload() is False
    write_atomic(tmp_path / TLS_CERT_FILE, other.serving.cert_pem[:100])  # truncated certificate
    assert tls.check_and_reload() is False
    assert tls.check_and_reload() is False  # same bad pair is not retried
    assert tls.reloads == 1 and tls.not_after == load_certificate(state.serving.cert_pem).not_valid_after_utc
    write_atomic(tmp_path / TLS_CERT_FILE, other.serving.cert_pem)
    assert tls.check_and_reload() is True
    assert load_certificate(other.serving.cert_pem).serial_number != old_serial


def test_missing_pair_at_start_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="accel certs create"):
        ReloadingTLS(tmp_path)


async def test_webhook_refuses_plaintext() -> None:
    with pytest.raises(PlaintextRefused, match="webhook"):
        async with running(_app(), None, allow_plaintext=True):
            pass


async def test_rotation_under_load_has_zero_failures_and_new_connections_get_new_cert(tmp_path: Path) -> None:
    state = make_cert_dir(tmp_path)
    metrics = Metrics()
    reloaded = asyncio.Event()
    tls = ReloadingTLS(tmp_path, poll_interval=0.01, on_expiry=lambda _ts: reloaded.set())
    reloaded.clear()
    client_ctx = client_context(state.bundle)
    ok, failures, stop = [0], [], asyncio.Event()
    progress = asyncio.Condition()

    async def worker(session: aiohttp.ClientSession, port: int) -> None:
        while not stop.is_set():
            try:
                async with session.get(f"https://localhost:{port}/ping", ssl=client_ctx) as resp:
                    assert resp.status == 200, resp.status
                    await resp.read()
                    ok[0] += 1
            except Exception as exc:  # every failure is recorded and fails the test below
                failures.append(repr(exc))
            async with progress:
                progress.notify_all()

    async def wait_for_requests(count: int) -> None:
        target = ok[0] + count
        async with progress:
            await progress.wait_for(lambda: ok[0] >= target or bool(failures))

    async with running(_app(metrics), tls) as port:
        before, _ = await _peer_cert(port, client_ctx)
        # Half the workers reconnect for every request (new handshakes), half keep connections alive.
        sessions = [
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=i % 2 == 0)) for i in range(8)
        ]
        workers = [asyncio.create_task(worker(s, port)) for s in sessions]
        await wait_for_requests(50)
        new_state = reissue(tmp_path, state)  # the poll task picks this up by itself
        await reloaded.wait()
        await wait_for_requests(100)
        stop.set()
        await asyncio.gather(*workers)
        for s in sessions:
            await s.close()
        after, _ = await _peer_cert(port, client_ctx)
        assert (
            metrics.registry.get_sample_value("accel_tls_cert_expiry_timestamp_seconds", {"app": "webhook"})
            == after.not_valid_after_utc.timestamp()
        )
    assert failures == []
    assert ok[0] >= 150
    assert new_state.serving is not None
    assert after.serial_number == load_certificate(new_state.serving.cert_pem).serial_number
    assert after.serial_number != before.serial_number


def _wait_refused(port: int, deadline: float) -> bool:
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return True
        time.sleep(0.02)  # polling a real external process, with a deadline
    return False


async def test_sigterm_drains_in_flight_request(tmp_path: Path) -> None:
    state = make_cert_dir(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.slow_server", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[-1])
        async with aiohttp.ClientSession() as session:
            request = asyncio.create_task(
                session.get(f"https://localhost:{port}/slow", ssl=client_context(state.bundle))
            )
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line.strip() == "slow-started"
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(_wait_refused, port, time.monotonic() + 5)  # stopped accepting
            resp = await request
            assert resp.status == 200 and await resp.json() == {"slow": "done"}
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
