"""Two webhook replicas with peer listeners over real TLS on 127.0.0.1 (webhook/peer.py): they
elect a ledger leader on the fake API server's Lease, the follower's quota steps are decided and
written by the leader (no compare-and-swap race between them), quota stays exact, and the peer
route answers only a verified `accel-webhook` client certificate."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from accel.quota.ledger import Ledger
from accel.quota.rules import LEDGER_NAME
from certs.issue import create_client_cert
from certs.state import CertState, write_cert_dir
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.ledger import LedgerClient
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.builders import example_policy, gpu_pod, make_inventory
from tests.hostile.peer_fixtures import Pki, make_pki
from tests.integration.test_webhook_https import admit
from tests.integration.tls_fixtures import NOW
from webhook.app import ADMITTER, make_app
from webhook.peer import PEER_CLIENT_NAME, PEER_PATH, PeerService


@dataclass
class Replica:
    port: int
    service: PeerService
    ledger: LedgerClient
    metrics: Metrics


def peer_cert_dir(pki: Pki, directory: Path, name: str = PEER_CLIENT_NAME) -> Path:
    """A client certificate directory as `accel certs client --name accel-webhook` writes it."""
    pair = create_client_cert(pki.ca, common_name=name, now=NOW)
    write_cert_dir(directory, CertState(bundle=pki.ca.cert_pem, serving=pair))
    return directory


@asynccontextmanager
async def replicas(tmp_path: Path, count: int = 2) -> AsyncIterator[tuple[list[Replica], FakeCluster, Pki]]:
    pki = make_pki(tmp_path / "server")
    client_dir = peer_cert_dir(pki, tmp_path / "peer-client")
    cluster = FakeCluster()
    out: list[Replica] = []
    async with AsyncExitStack() as stack:
        for i in range(count):
            metrics = Metrics()
            state = ClusterState.static(example_policy(), make_inventory(), watermark=0)
            app = make_app(state, metrics=metrics, ledger_store=cluster, replica_id=f"r{i}",
                           max_concurrency=1000)
            admitter = app[ADMITTER]
            assert admitter.ledger is not None
            service = PeerService(
                admitter, host="127.0.0.1", port=0, advertise="127.0.0.1",
                tls=ReloadingTLS(pki.dir, client_ca=client_dir / "ca.crt"), client_cert_dir=client_dir,
                server_name="accel-webhook.accel-system.svc", lease_store=cluster, metrics=metrics,
            )
            app.cleanup_ctx.append(service.cleanup_ctx)
            port = await stack.enter_async_context(serving(app, tls=ReloadingTLS(pki.dir)))
            out.append(Replica(port, service, admitter.ledger, metrics))
        yield out, cluster, pki


async def settled(group: list[Replica]) -> tuple[Replica, Replica]:
    """(leader, follower) once one leads and the other forwards to it (polled with a deadline)."""
    for _ in range(500):
        leading = [r for r in group if r.service.leadership is not None and r.service.leadership.leading]
        others = [r for r in group if r not in leading]
        following = all(r.service.leadership and r.service.leadership.forward_to() for r in others)
        if len(leading) == 1 and following:
            return leading[0], others[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no ledger leader elected within 10 s")


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_the_follower_forwards_and_quota_stays_exact(tmp_path: Path) -> None:
    async with replicas(tmp_path) as (group, cluster, pki):
        leader, follower = await settled(group)
        ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
        pod = gpu_pod(profile="a100-80gb", namespace="nlp", gpus="1")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
            answers = await asyncio.gather(*(
                admit(session, (leader.port, follower.port)[i % 2], pod, f"pod-{i}", ctx) for i in range(60)
            ))
        forwarded = sample(follower.metrics, "accel_quota_ledger_forwarded_total", result="decided")
        fallbacks = sample(follower.metrics, "accel_quota_ledger_forwarded_total", result="fallback")
    allowed = [a for a in answers if a["allowed"]]
    data, _ = await cluster.read(LEDGER_NAME)
    held = Ledger.from_data(data).reservations
    limit = example_policy_limit()
    assert sum((r.amount for r in held.values()), Fraction(0)) == limit
    assert len(allowed) == len(held) == limit
    assert forwarded == 30 and fallbacks == 0  # every follower admission decided by the leader
    assert follower.ledger.writes == 0 and follower.ledger.conflicts == 0 and leader.ledger.conflicts == 0
    denied = [a for a in answers if not a["allowed"]]
    assert denied and all(a["auditAnnotations"]["decision"] == "quota-exceeded" for a in denied)
    assert all("in use" in a["status"]["message"] for a in denied)  # the figures the leader answered


def example_policy_limit() -> int:
    """The a100 quota of team nlp in the example policy (what a burst of 60 exceeds)."""
    return 16


@pytest.mark.parametrize(
    ("client", "status", "needle"),
    [
        (None, 401, "client certificate required"),
        ("other", 403, "someone-else"),
        ("stranger", None, ""),  # a foreign CA's certificate: the handshake itself fails
    ],
)
async def test_the_peer_route_answers_only_another_replica(
    tmp_path: Path, client: str | None, status: int | None, needle: str
) -> None:
    async with replicas(tmp_path, count=1) as (group, cluster, pki):
        port = group[0].service.port
        ctx = pki.context("other" if client == "other" else None)
        if client == "stranger":
            foreign = make_pki(tmp_path / "foreign")
            foreign_dir = peer_cert_dir(foreign, tmp_path / "foreign-client")
            ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
            ctx.load_cert_chain(foreign_dir / "tls.crt", foreign_dir / "tls.key")
        body = {"requests": [forged_request()]}
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(f"https://127.0.0.1:{port}{PEER_PATH}", json=body, ssl=ctx) as resp:
                    got, text = resp.status, await resp.text()
            except (aiohttp.ClientError, ssl.SSLError):
                got, text = None, ""
        data, _ = await cluster.read(LEDGER_NAME)
    assert got == status and needle in text
    assert not Ledger.from_data(data).reservations  # nothing reserved


def forged_request() -> dict[str, Any]:
    return {"id": "forged", "team": "nlp", "commit": True, "candidates": None,
            "reservation": {"team": "nlp", "type": "nvidia-a100-80gb", "amount": "16", "expires": 1e12}}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", ""),
        (orjson.dumps({"requests": "all"}), "expected {\\\"requests\\\""),
        (orjson.dumps({"requests": [{"id": "x"}]}), "requests[0].team"),
        (orjson.dumps({"requests": [{**forged_request(), "reservation": {"team": "nlp"}}]}),
         "requests[0].reservation"),
        (orjson.dumps({"requests": [{**forged_request(), "team": "vision"}]}), "is not the request's team"),
    ],
)
async def test_a_malformed_peer_body_is_400_with_a_reason(tmp_path: Path, body: bytes, needle: str) -> None:
    async with replicas(tmp_path, count=1) as (group, cluster, pki):
        port = group[0].service.port
        client_dir = tmp_path / "peer-client"
        ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
        ctx.load_cert_chain(client_dir / "tls.crt", client_dir / "tls.key")
        async with aiohttp.ClientSession() as session, session.post(
            f"https://127.0.0.1:{port}{PEER_PATH}", data=body, ssl=ctx,
            headers={"Content-Type": "application/json"},
        ) as resp:
            status, text = resp.status, await resp.text()
        data, _ = await cluster.read(LEDGER_NAME)
    assert status == 400 and needle in text and "error" in text
    assert not Ledger.from_data(data).reservations


async def test_an_authenticated_peer_request_is_decided_by_the_leader(tmp_path: Path) -> None:
    async with replicas(tmp_path, count=1) as (group, cluster, pki):
        port = group[0].service.port
        client_dir = tmp_path / "peer-client"
        ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
        ctx.load_cert_chain(client_dir / "tls.crt", client_dir / "tls.key")
        forged = forged_request()
        over = {**forged, "id": "big", "reservation": {**forged["reservation"], "amount": "17"}}
        body = {"requests": [forged_request(), over]}
        async with aiohttp.ClientSession() as session, session.post(
            f"https://127.0.0.1:{port}{PEER_PATH}", json=body, ssl=ctx
        ) as resp:
            status, answer = resp.status, await resp.json()
        data, _ = await cluster.read(LEDGER_NAME)
    assert status == 200
    first, second = answer["results"]
    assert first["excess"] == [] and second["excess"][0]["limit"] == "16"
    assert set(Ledger.from_data(data).reservations) == {"forged"}


async def test_a_rotated_peer_client_certificate_is_used_from_the_next_call(tmp_path: Path) -> None:
    from webhook.peer import ForwardFailed, PeerForwarder

    async with replicas(tmp_path) as (group, _cluster, pki):
        _leader, follower = await settled(group)
        forwarder = follower.ledger.forwarder
        assert isinstance(forwarder, PeerForwarder) and follower.service.leadership is not None
        target = follower.service.leadership.forward_to()
        assert target is not None
        assert await forwarder.forward(target, [], (follower.ledger.writer, 1)) == []  # registered
        client_dir = tmp_path / "peer-client"
        peer_cert_dir(pki, client_dir, name="someone-else")  # rotated to a certificate the leader refuses
        with pytest.raises(ForwardFailed, match="403"):
            await forwarder.forward(target, [], (follower.ledger.writer, 2))
        peer_cert_dir(pki, client_dir)  # and back to a good one
        assert await forwarder.forward(target, [], (follower.ledger.writer, 3)) == []


async def test_a_half_written_peer_certificate_is_tried_once_and_the_old_one_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from webhook.peer import PeerForwarder

    async with replicas(tmp_path) as (group, _cluster, _pki):
        _leader, follower = await settled(group)
        forwarder = follower.ledger.forwarder
        assert isinstance(forwarder, PeerForwarder) and follower.service.leadership is not None
        target = follower.service.leadership.forward_to()
        assert target is not None
        (tmp_path / "peer-client" / "tls.key").write_text("not a key")  # the volume mid-update
        with caplog.at_level(logging.WARNING, logger="webhook.peer"):
            for mark in (1, 2, 3):  # the previous certificate still serves every call
                assert await forwarder.forward(target, [], (follower.ledger.writer, mark)) == []
        unreadable = [r for r in caplog.records if "certificate unreadable" in r.getMessage()]
        assert len(unreadable) == 1
