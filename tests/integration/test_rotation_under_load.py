"""Certificate rotation under steady admission load on the real webhook app: zero failed requests,
and new connections see the new certificate (issue 10).

The serving pair is re-issued from the same CA with `certs` (create_serving_cert + write_cert_dir,
key first then certificate, each atomically) while 8 clients post AdmissionReviews: half reconnect
for every request (new handshakes during the swap), half keep their connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import aiohttp
import orjson
import pytest
from cryptography import x509

from certs.issue import load_certificate
from serving.tls import ReloadingTLS
from tests.corpus.make_corpus import review
from tests.fuzz import apps
from tests.fuzz.conftest import build
from tests.integration.test_tls_reload import running
from tests.integration.tls_fixtures import client_context, make_cert_dir, reissue

CLIENTS = 8


async def peer_serial(port: int, ctx: ssl.SSLContext) -> int:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


async def test_webhook_rotation_under_load_fails_nothing(tmp_path: Path) -> None:
    if not apps.available("webhook"):
        pytest.skip("webhook/app.py has not landed yet")
    state = make_cert_dir(tmp_path)
    reloaded = asyncio.Event()
    tls = ReloadingTLS(tmp_path, poll_interval=0.01, on_expiry=lambda _ts: reloaded.set())
    reloaded.clear()
    ctx = client_context(state.bundle)
    body = orjson.dumps(review(dryRun=True))
    ok, failures, stop = [0], [], asyncio.Event()
    progress = asyncio.Condition()

    async def client(session: aiohttp.ClientSession, port: int) -> None:
        while not stop.is_set():
            try:
                async with session.post(f"https://localhost:{port}/mutate", data=body, ssl=ctx,
                                        headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
                    data = await resp.json()
                    assert resp.status == 200 and data["response"]["allowed"] is True, data
                    ok[0] += 1
            except Exception as exc:  # every failure is kept and fails the test
                failures.append(repr(exc))
            async with progress:
                progress.notify_all()

    async def more(count: int) -> None:
        target = ok[0] + count
        async with progress:
            await progress.wait_for(lambda: ok[0] >= target or bool(failures))

    async with running(build("webhook"), tls) as port:
        before = await peer_serial(port, ctx)
        sessions = [
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=i % 2 == 0))
            for i in range(CLIENTS)
        ]
        workers = [asyncio.create_task(client(s, port)) for s in sessions]
        await more(100)
        rotated = reissue(tmp_path, state)  # certs: new serving pair from the same CA, written atomically
        await reloaded.wait()
        await more(200)
        stop.set()
        await asyncio.gather(*workers)
        for s in sessions:
            await s.close()
        after = await peer_serial(port, ctx)
    assert failures == []
    assert ok[0] >= 300
    assert rotated.serving is not None
    assert after == load_certificate(rotated.serving.cert_pem).serial_number != before
